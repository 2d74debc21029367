"""A real WebRTC stack (aiortc) opens a relay-only data channel through our TURN server.

Usage: aiortc_relay.py TURN_URL USERNAME CREDENTIAL
Prints "OK <candidate type> <messages>" and exits 0 when both peers exchanged messages over a
relayed candidate pair; exits 1 otherwise. Bounded: gives up after 30 seconds.
"""

import asyncio
import sys

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

MESSAGES = 20


async def main(url: str, username: str, credential: str) -> int:
    config = RTCConfiguration(
        iceServers=[RTCIceServer(urls=[url], username=username, credential=credential)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    received = []
    done = asyncio.Event()

    @b.on("datachannel")
    def on_channel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send("echo:" + message)

    channel = a.createDataChannel("chat")

    @channel.on("open")
    def on_open():
        for i in range(MESSAGES):
            channel.send(f"m{i}")

    @channel.on("message")
    def on_echo(message):
        received.append(message)
        if len(received) == MESSAGES:
            done.set()

    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    try:
        await asyncio.wait_for(done.wait(), 30)
    except asyncio.TimeoutError:
        print(f"FAIL: {len(received)} of {MESSAGES} echoes", flush=True)
        return 1
    finally:
        pair = a.sctp.transport.transport._connection._nominated  # aioice internals, for the report
        kinds = sorted({p.local_candidate.type for p in pair.values()}) if pair else []
        await a.close()
        await b.close()
    if received != [f"echo:m{i}" for i in range(MESSAGES)]:
        print(f"FAIL: wrong echoes {received[:3]}", flush=True)
        return 1
    print(f"OK {','.join(kinds) or 'unknown'} {len(received)}", flush=True)
    return 0 if kinds == ["relay"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
