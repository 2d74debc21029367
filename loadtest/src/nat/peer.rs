//! One peer of a NAT trial, run on a thread inside its host namespace: learn the
//! server-reflexive address with STUN, punch a hole towards the other peer, and fall back to
//! a TURN relay (an allocation each, relay to relay through channels) when punching fails.
//!
//! The two peers of a trial tell each other their addresses over in-process channels (that is
//! signaling's job, not what is measured). A path counts as open when both peers have each
//! heard the other on it: a peer that hears an answer to its probe says so with
//! [`Signal::Heard`], and a peer is done when it has heard the other and the other has heard it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use turn_server::proto::{
    AttrType, Attribute, Class, Message, MessageBuilder, Method, TransactionId, channel_data_header,
};

use crate::turn::{CHANNEL, Source, Transport, TurnClient};

/// How often probes are sent while a path is tried.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long a peer that has heard the other waits for the other's [`Signal::Heard`] past the
/// deadline, so both peers of a trial reach the same verdict.
const GRACE: Duration = Duration::from_millis(500);
/// How often a STUN Binding request is retransmitted.
const STUN_RETRY: Duration = Duration::from_millis(200);

const PROBE: &[u8] = b"sb-nat-probe";
const ANSWER: &[u8] = b"sb-nat-answer";

/// What the peers of a trial tell each other.
#[derive(Debug, Clone, Copy)]
pub(super) enum Signal {
    /// My server-reflexive address.
    Reflexive(SocketAddr),
    /// My relayed address.
    Relayed(SocketAddr),
    /// I have heard you on the path being tried.
    Heard,
    /// I could not get what the next step needs (no reflexive or relayed address).
    GaveUp,
}

/// How a peer's trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Direct,
    Relayed,
    Failed,
}

/// One peer's account of a trial.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) path: Path,
    /// When this peer was done (both directions open).
    pub(super) done_at: Option<Instant>,
    /// Why a step failed, as error kinds (`stun_timeout`, `allocate_401`...).
    pub(super) errors: Vec<String>,
}

/// What a peer needs; moved onto its thread.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) server: SocketAddr,
    pub(super) secret: String,
    pub(super) punch_timeout: Duration,
    pub(super) step_timeout: Duration,
    pub(super) to_other: mpsc::Sender<Signal>,
    pub(super) from_other: mpsc::Receiver<Signal>,
    /// Signals that arrived before the step that needs them (the other peer may give up
    /// punching and send its relayed address while this one still punches).
    pub(super) early: Vec<Signal>,
}

impl Peer {
    pub(super) async fn run(mut self) -> Outcome {
        let mut outcome = Outcome {
            path: Path::Failed,
            done_at: None,
            errors: Vec::new(),
        };
        match self.try_direct().await {
            Ok(true) => {
                outcome.path = Path::Direct;
                outcome.done_at = Some(Instant::now());
                return outcome;
            }
            Ok(false) => {}
            Err(kind) => outcome.errors.push(kind),
        }
        match self.try_relay().await {
            Ok(()) => {
                outcome.path = Path::Relayed;
                outcome.done_at = Some(Instant::now());
            }
            Err(kind) => outcome.errors.push(kind),
        }
        outcome
    }

    /// STUN, then hole punching until `punch_timeout`; Ok(false) if no direct path opened.
    async fn try_direct(&mut self) -> Result<bool, String> {
        let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(|_| "bind")?;
        let deadline = Instant::now() + self.punch_timeout;
        let mine = match stun_binding(&socket, self.server, self.step_timeout).await {
            Ok(addr) => addr,
            Err(kind) => {
                let _ = self.to_other.send(Signal::GaveUp).await;
                return Err(kind);
            }
        };
        let _ = self.to_other.send(Signal::Reflexive(mine)).await;
        let theirs = match self
            .expect(deadline, |s| match s {
                Signal::Reflexive(a) => Some(a),
                _ => None,
            })
            .await
        {
            Some(addr) => addr,
            None => return Ok(false),
        };
        let mut targets = vec![theirs];
        let mut buf = [0u8; 1500];
        let (mut heard, mut they_heard) = (false, false);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        while !(heard && they_heard) {
            // Once this side has heard the other, it waits a little longer for the other's word.
            let until = if heard { deadline + GRACE } else { deadline };
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => return Ok(false),
                _ = probe.tick() => {
                    for t in &targets {
                        let _ = socket.send_to(PROBE, t).await;
                    }
                }
                got = socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    if from == self.server {
                        continue; // a late STUN retransmission's answer
                    }
                    match &buf[..n] {
                        // A probe from an address not yet known (a symmetric NAT's new mapping,
                        // a peer-reflexive address): answer there, and probe there from now on.
                        PROBE => {
                            if !targets.contains(&from) {
                                targets.push(from);
                            }
                            let _ = socket.send_to(ANSWER, from).await;
                        }
                        ANSWER if !heard => {
                            heard = true;
                            let _ = self.to_other.send(Signal::Heard).await;
                        }
                        _ => {}
                    }
                }
                signal = self.from_other.recv() => they_heard |= self.heard_from(signal)?,
            }
        }
        // Keep answering briefly: the other side may still be waiting for an answer in flight.
        let linger = Instant::now() + PROBE_EVERY * 3;
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(linger.into(), socket.recv_from(&mut buf)).await
        {
            if &buf[..n] == PROBE {
                let _ = socket.send_to(ANSWER, from).await;
            }
        }
        Ok(true)
    }

    /// An allocation each, a channel towards the other's relayed address, and probes through
    /// both relays until each side has heard the other.
    async fn try_relay(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.step_timeout * 2;
        let source = Source::new(&crate::turn::CredentialSource::Secret(self.secret.clone()))?;
        let frame_len = PROBE.len() + 4;
        let client = TurnClient::connect(
            Transport::Udp,
            self.server,
            &source,
            frame_len,
            self.step_timeout,
        )
        .await;
        let mut client = match client {
            Ok(c) => c,
            Err(kind) => {
                let _ = self.to_other.send(Signal::GaveUp).await;
                return Err(kind);
            }
        };
        let _ = self.to_other.send(Signal::Relayed(client.relay)).await;
        let result = self.relay_exchange(&mut client, deadline).await;
        // Release the allocation either way.
        let _ = client
            .request(
                Method::REFRESH,
                &[Attribute::Lifetime(0)],
                self.step_timeout,
            )
            .await;
        result
    }

    async fn relay_exchange(
        &mut self,
        client: &mut TurnClient,
        deadline: Instant,
    ) -> Result<(), String> {
        let theirs = self
            .expect(deadline, |s| match s {
                Signal::Relayed(a) => Some(a),
                _ => None,
            })
            .await
            .ok_or("relay_no_peer_address")?;
        // ChannelBind installs the permission for the other relay too (RFC 8656 §12.1).
        client
            .request(
                Method::CHANNEL_BIND,
                &[
                    Attribute::ChannelNumber(CHANNEL),
                    Attribute::XorPeerAddress(theirs),
                ],
                self.step_timeout,
            )
            .await?;
        let mut frame = Vec::with_capacity(PROBE.len() + 4);
        frame.extend_from_slice(&channel_data_header(CHANNEL, PROBE.len()).ok_or("encode")?);
        frame.extend_from_slice(PROBE);
        let (mut heard, mut they_heard) = (false, false);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        while !(heard && they_heard) {
            let until = if heard { deadline + GRACE } else { deadline };
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => return Err("relay_timeout".into()),
                _ = probe.tick() => {
                    let _ = client.tx.send_data(&frame).await;
                }
                got = client.rx.next() => {
                    // ChannelData (first two bits 01) carrying the other's probe: heard through
                    // both relays. Anything else (a Data indication before the other's bind,
                    // a late response) is skipped.
                    let Ok(bytes) = got else { continue };
                    if bytes.len() >= 4 + PROBE.len() && bytes[0] & 0xC0 == 0x40 && &bytes[4..4 + PROBE.len()] == PROBE && !heard {
                        heard = true;
                        let _ = self.to_other.send(Signal::Heard).await;
                    }
                }
                signal = self.from_other.recv() => they_heard |= self.heard_from(signal)?,
            }
        }
        Ok(())
    }

    /// Whether `signal` says the other peer has heard this one; any other signal is kept for
    /// the step that needs it.
    fn heard_from(&mut self, signal: Option<Signal>) -> Result<bool, String> {
        match signal {
            Some(Signal::Heard) => Ok(true),
            Some(other) => {
                self.early.push(other);
                Ok(false)
            }
            None => Err("peer_gone".into()),
        }
    }

    /// The next signal `pick` accepts before `deadline`; `None` on timeout or if the other peer
    /// gave up. Others (a late `Heard` from the direct phase) are skipped.
    async fn expect<T>(
        &mut self,
        deadline: Instant,
        pick: impl Fn(Signal) -> Option<T>,
    ) -> Option<T> {
        for s in std::mem::take(&mut self.early) {
            match s {
                Signal::GaveUp => return None,
                s => {
                    if let Some(v) = pick(s) {
                        return Some(v);
                    }
                }
            }
        }
        loop {
            let signal = tokio::time::timeout_at(deadline.into(), self.from_other.recv()).await;
            match signal {
                Ok(Some(Signal::GaveUp)) | Ok(None) | Err(_) => return None,
                Ok(Some(s)) => {
                    if let Some(v) = pick(s) {
                        return Some(v);
                    }
                }
            }
        }
    }
}

/// The address `server` sees `socket` at (STUN Binding, RFC 8489 §3), retransmitted every
/// [`STUN_RETRY`] until `timeout`.
pub(super) async fn stun_binding(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let txn = TransactionId(rand::random());
    let mut request = Vec::with_capacity(28);
    let mut b = MessageBuilder::new(&mut request, Class::Request, Method::BINDING, txn);
    b.fingerprint();
    b.finish().map_err(|_| "encode")?;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + timeout;
    let mut retry = tokio::time::interval(STUN_RETRY);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => return Err("stun_timeout".into()),
            _ = retry.tick() => {
                socket.send_to(&request, server).await.map_err(|_| "stun_send")?;
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                if from != server {
                    continue;
                }
                let Ok(msg) = Message::decode(&buf[..n]) else { continue };
                if msg.transaction_id() != txn {
                    continue;
                }
                return match msg.attribute(AttrType::XOR_MAPPED_ADDRESS) {
                    Some(Ok(Attribute::XorMappedAddress(a))) => Ok(a),
                    _ => Err("stun_no_mapped_address".into()),
                };
            }
        }
    }
}

/// One STUN Binding from a fresh socket: the server's readiness probe.
pub(super) async fn stun_binding_once(server: SocketAddr) -> Result<SocketAddr, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(|_| "bind")?;
    stun_binding(&socket, server, Duration::from_millis(300)).await
}
