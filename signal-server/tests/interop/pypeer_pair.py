#!/usr/bin/env python3
"""Drive a real pypeer 0.1.0 host and joiner against a Firebase-RTDB-compatible server.

Interop check for signal-server: runs the PyPI package `pypeer` (0.1.0) signaling
and WebRTC (aiortc) code unmodified, as two subprocesses, until the data channel
opens and messages cross in both directions.

Setup (once):
    python3 -m venv /tmp/pypeer-venv && /tmp/pypeer-venv/bin/pip install pypeer==0.1.0

Usage:
    PYPEER_URL=http://127.0.0.1:PORT [PYPEER_URL_JOINER=http://127.0.0.1:PORT2] \
        [PYPEER_PYTHON=/tmp/pypeer-venv/bin/python] python3 pypeer_pair.py [options]

Environment:
    PYPEER_URL          base URL for the host side (required). pypeer itself reads this
                        variable at import time (pypeer.constants.FIREBASE_DB_URL) and
                        requests {PYPEER_URL without trailing /}/rooms/{ID}/....
    PYPEER_URL_JOINER   base URL for the joiner side (default: PYPEER_URL); point it at
                        another replica for a two-replica test.
    PYPEER_PYTHON       interpreter with pypeer installed, used for the two children
                        (default: this interpreter if it can import pypeer, else
                        /tmp/pypeer-venv/bin/python if it exists).
    PYPEER_PASSWORD     optional room password (pypeer's key = sha256(room + password)).
    PYPEER_TIMEOUT      overall budget in seconds (default 60).

Options:
    --order host-first   (default) host publishes its offer first, then the joiner is
                         started: the joiner's SSE GET of offer.json gets the offer in
                         its initial event; the host's SSE GET of answer.json always
                         waits (initial null, then a put event).
    --order joiner-first the joiner subscribes to offer.json before the host has
                         published anything (both SSE streams start from null).
    -v / --verbose       relay the children's event lines to stderr.

Output / exit codes:
    0  success; stdout gets exactly one JSON line, e.g.
       {"room": "K3ZQ9A", "connected": true, "message": "ping-...", "reply": "pong-...",
        "host_url": "...", "joiner_url": "...", "order": "host-first", "elapsed_s": 2.1}
    1  the handshake or message exchange failed (reason on stderr, and a JSON line with
       "connected": false and "error" on stdout)
    2  usage / environment problem (PYPEER_URL missing, pypeer not importable)

How host and joiner are driven: pypeer 0.1.0 is a Textual TUI with no CLI flags, so
each child builds a headless stand-in for the App and calls pypeer's own
ConnectionManager.start_engine(room_id, is_host, password) -- exactly what the TUI
does when "Create Room" / "Connect" are pressed. That constructs pypeer's
FirebaseSignaler(FIREBASE_DB_URL, ...) and RTCEngine and runs setup_as_host() /
setup_as_peer() (full aiortc offer/answer, ICE, DTLS, SCTP). The room ID comes from
pypeer's generate_room_id(). Messages go through RTCEngine.send_message() and arrive
through on_message_callback. Cleanup is pypeer's PyPeer.cleanup_engine() (DELETE of
the room + close), as run by the TUI on exit. No pypeer HTTP call is reimplemented;
the only wrapper is an observer around FirebaseSignaler.post_signal that reports
when the offer PUT has returned (to sequence the joiner start).

ICE / network: pypeer hard-codes four Google STUN servers in
pypeer.constants.ICE_SERVERS, bound by `from ... import` into
pypeer.engine.rtc_engine.ICE_SERVERS. The children clear that list in place before
any RTCEngine is built, so RTCConfiguration(iceServers=[]) is used (an empty list --
not None, which would make aiortc fall back to stun.l.google.com). aioice's host
candidate gathering skips 127.0.0.1 and would use every other interface address, so
aioice.ice.get_host_addresses is replaced to return ["127.0.0.1"]: the only ICE
candidates are loopback host candidates, and no STUN/TURN/mDNS traffic happens.
httpx (used by pypeer) honours *_proxy env vars, so the children run with those
removed. The only network traffic is HTTP to the PYPEER_URL hosts plus loopback
UDP between the two peers.
"""

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import queue

EVENT_PREFIX = "@@PYPEER_PAIR "
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


# --------------------------------------------------------------------------- child side

def emit(**ev):
    sys.stdout.write(EVENT_PREFIX + json.dumps(ev) + "\n")
    sys.stdout.flush()


def patch_loopback_only():
    """Loopback host candidates only, no STUN servers (see module docstring)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

    import pypeer.constants
    import pypeer.engine.rtc_engine as rtc_engine

    pypeer.constants.ICE_SERVERS.clear()  # same list object as rtc_engine.ICE_SERVERS
    assert rtc_engine.ICE_SERVERS == [], rtc_engine.ICE_SERVERS


class HeadlessApp:
    """The parts of pypeer.main.PyPeer that ConnectionManager/cleanup_engine touch."""

    def __init__(self, role):
        self.role = role
        self.engine = None
        self.statuses = []
        self.messages = asyncio.Queue()
        self.live = asyncio.Event()
        self.failed = None

    def handle_status_change(self, status):
        self.statuses.append(status)
        emit(event="status", role=self.role, status=status)
        if status == "Live":  # host's channel 'open' handler; "Connected" is only ICE/DTLS
            self.live.set()
        if status.startswith(("Error", "Timeout")) or status in ("Failed", "Closed", "Disconnected"):
            if self.failed is None:
                self.failed = status

    def handle_incoming_message(self, message):
        self.messages.put_nowait(message)

    def log(self, *args, **kwargs):
        emit(event="log", role=self.role, text=" ".join(map(str, args)))


async def wait_or_fail(app, awaitable, timeout, what):
    """Await `awaitable` unless pypeer reports a failure status first."""
    task = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + timeout
    try:
        while not task.done():
            if app.failed:
                raise RuntimeError(f"{what}: pypeer {app.role} reported {app.failed!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: timed out after {timeout:.0f}s "
                                   f"(statuses so far: {app.statuses})")
            await asyncio.wait({task}, timeout=0.05)
        return task.result()
    finally:
        if not task.done():
            task.cancel()


async def cleanup(app):
    from pypeer.main import PyPeer

    await PyPeer.cleanup_engine(app)  # pypeer's own: clear_room() (DELETE) then close()


async def run_host(args):
    patch_loopback_only()
    from pypeer.constants import FIREBASE_DB_URL
    from pypeer.engine.signaler import FirebaseSignaler
    from pypeer.logic.connection_manager import ConnectionManager
    from pypeer.utils.id_generator import generate_room_id

    room = generate_room_id()  # as PyPeer.start_hosting_sequence does
    emit(event="room", room=room, url=FIREBASE_DB_URL)

    if args.wait_go:  # joiner-first: parent says when the joiner is subscribed
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise RuntimeError("host: parent did not send 'go'")

    # Observe (not replace) pypeer's offer PUT so the parent can sequence the joiner.
    original_post = FirebaseSignaler.post_signal

    async def observed_post(self, key, data):
        await original_post(self, key, data)
        emit(event="posted", key=key)

    FirebaseSignaler.post_signal = observed_post

    app = HeadlessApp("host")
    ConnectionManager(app).start_engine(room, is_host=True, password=args.password)
    try:
        await wait_or_fail(app, app.live.wait(), args.timeout, "host: waiting for data channel")
        # "Live" is emitted by the host's channel 'open' handler (which also fires
        # pypeer's DELETE of the room).
        nonce = secrets.token_hex(4)
        ping = f"ping-{nonce}"
        app.engine.send_message(ping)
        emit(event="sent", text=ping)
        reply = await wait_or_fail(app, app.messages.get(), args.timeout, "host: waiting for reply")
        if reply != f"pong-{nonce}":
            raise RuntimeError(f"host: unexpected reply {reply!r}")
        app.engine.send_message("bye")
        await asyncio.sleep(0.3)  # let 'bye' leave before the peer connection closes
        emit(event="done", room=room, message=ping, reply=reply, statuses=app.statuses)
    finally:
        await cleanup(app)


async def run_joiner(args):
    patch_loopback_only()
    from pypeer.constants import FIREBASE_DB_URL
    from pypeer.logic.connection_manager import ConnectionManager

    room = args.room.strip().upper()  # as JoinScreen does
    app = HeadlessApp("joiner")
    ConnectionManager(app).start_engine(room, is_host=False, password=args.password)
    emit(event="joining", room=room, url=FIREBASE_DB_URL)
    try:
        # The joiner never sees 'open' (aiortc opens an incoming channel before
        # pypeer binds its handlers), so it waits for the host's first message.
        ping = await wait_or_fail(app, app.messages.get(), args.timeout, "joiner: waiting for message")
        if not ping.startswith("ping-"):
            raise RuntimeError(f"joiner: unexpected message {ping!r}")
        app.engine.send_message("pong-" + ping[len("ping-"):])
        try:
            bye = await wait_or_fail(app, app.messages.get(), 5, "joiner: waiting for bye")
        except RuntimeError:
            bye = None  # host may already be gone; the host decides success
        emit(event="done", room=room, message=ping, bye=bye, statuses=app.statuses)
    finally:
        await cleanup(app)


def child_main(args):
    runner = run_host if args.role == "host" else run_joiner
    try:
        asyncio.run(asyncio.wait_for(runner(args), args.timeout + 5))
    except BaseException as e:  # report everything, including timeouts
        emit(event="error", role=args.role, error=f"{type(e).__name__}: {e}")
        sys.exit(1)


# -------------------------------------------------------------------------- parent side

class Child:
    def __init__(self, role, python, url, extra, timeout, verbose):
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env["PYPEER_URL"] = url
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [python, os.path.abspath(__file__), "--role", role, "--timeout", str(timeout)] + extra
        self.role = role
        self.verbose = verbose
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for line in self.proc.stdout:
            if line.startswith(EVENT_PREFIX):
                ev = json.loads(line[len(EVENT_PREFIX):])
                if self.verbose:
                    print(f"[{self.role}] {json.dumps(ev)}", file=sys.stderr)
                self.events.put(ev)
        self.events.put({"event": "exit"})

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            if self.verbose:
                print(f"[{self.role} stderr] {line.rstrip()}", file=sys.stderr)

    def wait_event(self, names, deadline):
        """Next event whose name is in `names`; raises on child error/exit/timeout."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.role}: timed out waiting for {names}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["event"] in names:
                return ev
            if ev["event"] == "error":
                raise RuntimeError(ev["error"])
            if ev["event"] == "exit":
                tail = "".join(self.stderr[-15:]).strip()
                raise RuntimeError(f"{self.role} exited (rc={self.proc.wait()}) before {names}"
                                   + (f"; stderr:\n{tail}" if tail else ""))

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, grace):
        try:
            self.proc.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pick_python():
    if os.environ.get("PYPEER_PYTHON"):
        return os.environ["PYPEER_PYTHON"]
    try:
        import pypeer.engine.signaler  # noqa: F401
        return sys.executable
    except ImportError:
        venv = "/tmp/pypeer-venv/bin/python"
        return venv if os.path.exists(venv) else sys.executable


def parent_main(args):
    host_url = os.environ.get("PYPEER_URL")
    if not host_url:
        print("pypeer_pair: PYPEER_URL is not set", file=sys.stderr)
        return 2
    joiner_url = os.environ.get("PYPEER_URL_JOINER") or host_url
    password = os.environ.get("PYPEER_PASSWORD", "")
    total = float(os.environ.get("PYPEER_TIMEOUT", "60"))
    python = pick_python()
    probe = subprocess.run([python, "-c", "import pypeer.logic.connection_manager, aiortc"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"pypeer_pair: {python} cannot import pypeer/aiortc (pip install pypeer==0.1.0):\n"
              f"{probe.stderr.strip()}", file=sys.stderr)
        return 2

    start = time.monotonic()
    deadline = start + total - 3  # leave room for cleanup
    child_timeout = max(total - 8, 5)
    pw = ["--password", password]
    summary = {"room": None, "connected": False, "host_url": host_url, "joiner_url": joiner_url,
               "order": args.order}
    host = joiner = None
    try:
        host = Child("host", python, host_url,
                     pw + (["--wait-go"] if args.order == "joiner-first" else []),
                     child_timeout, args.verbose)
        room = host.wait_event({"room"}, deadline)["room"]
        summary["room"] = room
        if args.order == "host-first":
            host.wait_event({"posted"}, deadline)  # offer PUT returned 2xx
            joiner = Child("joiner", python, joiner_url, pw + ["--room", room],
                           child_timeout, args.verbose)
            joiner.wait_event({"joining"}, deadline)
        else:
            joiner = Child("joiner", python, joiner_url, pw + ["--room", room],
                           child_timeout, args.verbose)
            joiner.wait_event({"joining"}, deadline)
            time.sleep(1.0)  # let the joiner's SSE GET of offer.json get established
            host.send("go")
            host.wait_event({"posted"}, deadline)
        hd = host.wait_event({"done"}, deadline)
        jd = joiner.wait_event({"done"}, deadline)
        host.stop(deadline - time.monotonic())
        joiner.stop(deadline - time.monotonic())
        if host.proc.returncode != 0 or joiner.proc.returncode != 0:
            raise RuntimeError(f"children exited rc host={host.proc.returncode} "
                               f"joiner={joiner.proc.returncode}")
        summary.update(connected=True, message=hd["message"], reply=hd["reply"],
                       joiner_received=jd["message"], host_statuses=hd["statuses"],
                       joiner_statuses=jd["statuses"],
                       elapsed_s=round(time.monotonic() - start, 2))
        print(json.dumps(summary))
        return 0
    except Exception as e:
        summary.update(error=str(e), elapsed_s=round(time.monotonic() - start, 2))
        print(f"pypeer_pair: FAILED: {e}", file=sys.stderr)
        for c in (host, joiner):
            if c and c.stderr and not args.verbose:
                print(f"--- {c.role} stderr (tail) ---\n" + "".join(c.stderr[-20:]), file=sys.stderr)
        print(json.dumps(summary))
        return 1
    finally:
        for c in (host, joiner):
            if c and c.proc.poll() is None:
                c.stop(max(deadline + 2 - time.monotonic(), 0.5))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--order", choices=("host-first", "joiner-first"), default="host-first")
    ap.add_argument("-v", "--verbose", action="store_true")
    # internal (child) options
    ap.add_argument("--role", choices=("host", "joiner"), help=argparse.SUPPRESS)
    ap.add_argument("--room", help=argparse.SUPPRESS)
    ap.add_argument("--password", default="", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=50, help=argparse.SUPPRESS)
    ap.add_argument("--wait-go", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        child_main(args)
    else:
        sys.exit(parent_main(args))


if __name__ == "__main__":
    main()
