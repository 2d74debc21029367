//! `loadtest turn`: pairs of TURN allocations relaying to each other through channels, as two
//! relayed WebRTC peers do (client A -> relay A -> relay B -> client B, and back). Works against
//! any RFC 8656 server that accepts TURN REST credentials (ours, coturn), with clients talking to
//! the server over UDP or TCP (the relayed leg is UDP either way).
//!
//! Both clients of a pair live in this process, so one-way latency is measured exactly with one
//! monotonic clock: each packet carries its sequence number and send time.
//!
//! `conn.rs` is the transport (UDP datagrams, or frames on a TCP stream); `client.rs` the TURN
//! client (allocate, authenticate, bind); `credentials.rs` where credentials come from;
//! `flows.rs` what each client does while traffic flows (send, receive, refresh); `results.rs`
//! the report; `live.rs` the counters the run updates as it goes.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use turn_server::proto::{Attribute, Method};

use crate::stats::{Latency, Tally};

mod client;
mod conn;
mod credentials;
mod flows;
mod live;
mod results;

pub(crate) use client::TurnClient;
pub(crate) use credentials::Source;
pub(crate) use flows::CHANNEL;
pub use live::{Live, Traffic};
pub use results::Report;

/// How long receivers keep listening after the senders stop.
const DRAIN: Duration = Duration::from_millis(500);

/// Where allocations get their TURN REST credentials.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// Minted here from the shared secret the server accepts.
    Secret(String),
    /// Fetched per allocation from a signal-server `/turn-credentials` URL, as apps do.
    Url(String),
}

/// How clients reach the TURN server (RFC 8656 §3.1); relayed traffic is UDP either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// One UDP socket per client.
    #[default]
    Udp,
    /// One TCP connection per client (TCP_NODELAY), ChannelData padded to 4 bytes.
    Tcp,
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            _ => Err(format!("unknown transport {s:?}: udp or tcp")),
        }
    }
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub server: SocketAddr,
    pub transport: Transport,
    pub credentials: CredentialSource,
    pub pairs: usize,
    /// Packets per second each client sends (both directions run).
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    pub step_timeout: Duration,
    /// How often each client refreshes its allocation and rebinds its channel while sending
    /// (permissions last 300 s, RFC 8656 §9).
    pub refresh: Duration,
}

/// Runs the scenario; bounded by `duration` plus setup and drain timeouts.
pub async fn run(options: Options) -> Report {
    let live = Arc::new(Live::new(&options));
    run_with(options, live).await
}

/// [`run`], updating `live` (made for these options) as it goes.
pub async fn run_with(options: Options, live: Arc<Live>) -> Report {
    let source = match Source::new(&options.credentials) {
        Ok(s) => s,
        Err(kind) => {
            let mut tally = Tally::default();
            tally.error(kind);
            return Report {
                options,
                tally,
                sent: 0,
                received: 0,
                bytes_received: 0,
                elapsed: Duration::ZERO,
                jitter_ms: 0.0,
                ready_pairs: 0,
                timeline: Traffic::new(Instant::now(), Duration::ZERO).timeline(Duration::ZERO),
            };
        }
    };
    let mut tally = Tally::default();
    // Each client with the relay address of the other client of its pair.
    let mut clients = Vec::new();
    for _ in 0..options.pairs {
        match setup_pair(&options, &source, &mut tally).await {
            Ok((a, b)) => {
                let (relay_a, relay_b) = (a.relay, b.relay);
                clients.push((a, relay_b));
                clients.push((b, relay_a));
            }
            Err(kind) => {
                tally.error(kind);
                live.setup_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        live.set_up.fetch_add(1, Ordering::Relaxed);
    }
    let ready_pairs = clients.len() / 2;
    let started = Instant::now();
    let traffic = Arc::new(Traffic::new(started, options.duration + DRAIN));
    // Set once here, so it cannot already hold a value.
    let _ = live.traffic.set(Arc::clone(&traffic));
    let until = started + options.duration;
    let mut running = Vec::new();
    for (client, peer) in clients {
        let TurnClient {
            tx,
            rx,
            session,
            relay,
        } = client;
        let (responses, inbox) = mpsc::channel(16);
        let o = &options;
        let t = &traffic;
        let send = flows::send_loop(tx.clone(), o.clone(), until, Arc::clone(t));
        let receive = flows::receive_loop(rx, responses, until + DRAIN, Arc::clone(t));
        let refresh = flows::refresh_loop(
            session,
            tx.clone(),
            inbox,
            peer,
            o.clone(),
            until,
            until + DRAIN,
        );
        let tasks = (
            tokio::spawn(send),
            tokio::spawn(receive),
            tokio::spawn(refresh),
        );
        running.push((tx, relay, tasks));
    }
    let mut latency = Latency::default();
    let mut jitter_sum = 0.0;
    let mut jitter_n = 0u64;
    let mut clients = Vec::new();
    for (tx, relay, (send, receive, refresh)) in running {
        if let Ok(t) = send.await {
            tally.merge(&t);
        }
        let rx = receive.await.ok().map(|(rx, r)| {
            latency.merge(&r.latency);
            jitter_sum += r.jitter_sum;
            jitter_n += r.jitter_n;
            tally.merge(&r.tally);
            rx
        });
        let session = refresh.await.ok().map(|(session, t)| {
            tally.merge(&t);
            session
        });
        if let (Some(rx), Some(session)) = (rx, session) {
            clients.push(TurnClient {
                tx,
                rx,
                session,
                relay,
            });
        }
    }
    let elapsed = options.duration.min(started.elapsed());
    tally.steps.insert("one_way", latency);
    // Release the allocations so repeated runs do not exhaust quotas.
    for client in &mut clients {
        let _ = client
            .request(
                Method::REFRESH,
                &[Attribute::Lifetime(0)],
                options.step_timeout,
            )
            .await;
    }
    Report {
        sent: traffic.sent.total(),
        received: traffic.received.total(),
        bytes_received: traffic.bytes.total(),
        timeline: traffic.timeline(elapsed),
        options,
        tally,
        elapsed,
        jitter_ms: if jitter_n == 0 {
            0.0
        } else {
            jitter_sum / jitter_n as f64
        },
        ready_pairs,
    }
}

/// Two allocations with a channel each towards the other's relay address (ChannelBind also
/// installs the permission, RFC 8656 §12.1).
async fn setup_pair(
    o: &Options,
    source: &Source,
    tally: &mut Tally,
) -> Result<(TurnClient, TurnClient), String> {
    let frame_len = flows::data_frame(o.size, o.transport).len();
    let mut allocate = async || {
        let t = Instant::now();
        let c = TurnClient::connect(o.transport, o.server, source, frame_len, o.step_timeout);
        let c = c.await?;
        tally.record("allocate", t.elapsed());
        Ok::<_, String>(c)
    };
    let mut a = allocate().await?;
    let mut b = allocate().await?;
    let (relay_a, relay_b) = (a.relay, b.relay);
    for (client, peer) in [(&mut a, relay_b), (&mut b, relay_a)] {
        let t = Instant::now();
        client
            .request(
                Method::CHANNEL_BIND,
                &[
                    Attribute::ChannelNumber(flows::CHANNEL),
                    Attribute::XorPeerAddress(peer),
                ],
                o.step_timeout,
            )
            .await?;
        tally.record("bind", t.elapsed());
    }
    Ok((a, b))
}
