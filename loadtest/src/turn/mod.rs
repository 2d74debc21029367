//! `loadtest turn`: pairs of TURN allocations relaying to each other through channels, as two
//! relayed WebRTC peers do (client A -> relay A -> relay B -> client B, and back). Works against
//! any RFC 8656 server that accepts TURN REST credentials (ours, coturn).
//!
//! Both clients of a pair live in this process, so one-way latency is measured exactly with one
//! monotonic clock: each packet carries its sequence number and send time.
//!
//! `client.rs` is the TURN client (allocate, authenticate, bind); `live.rs` the counters the
//! run updates as it goes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::UdpSocket;
use turn_server::proto::{Attribute, ChannelNumber, Method};

use crate::stats::{Latency, Tally};
use crate::timeline::Timeline;

mod client;
mod live;

use client::{Source, TurnClient};
pub use live::{Live, Traffic};

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

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub server: SocketAddr,
    pub credentials: CredentialSource,
    pub pairs: usize,
    /// Packets per second each client sends (both directions run).
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    pub step_timeout: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub tally: Tally,
    pub sent: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub elapsed: Duration,
    pub jitter_ms: f64,
    pub ready_pairs: usize,
    /// Per second of the sending phase: `sent` (by send time), `received` and
    /// `bytes_received` (by arrival time) and `lost` (packets sent in that second that never
    /// arrived); each sums to its total.
    pub timeline: Timeline,
}

impl Report {
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }

    pub fn packets_per_second(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mbit_per_second(&self) -> f64 {
        self.bytes_received as f64 * 8.0 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .tally
            .steps
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_json()))
            .collect();
        json!({
            "scenario": "turn",
            "server": self.options.server.to_string(),
            "pairs": self.options.pairs,
            "ready_pairs": self.ready_pairs,
            "size": self.options.size,
            "rate_per_client": self.options.rate,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sent": self.sent,
            "received": self.received,
            "loss": self.loss(),
            "packets_per_s": self.packets_per_second(),
            "mbit_per_s": self.mbit_per_second(),
            "jitter_ms": self.jitter_ms,
            "steps": steps,
            "errors": self.tally.errors,
            "timeline": self.timeline.to_json(),
        })
    }

    pub fn human(&self) -> String {
        let mut out = format!(
            "turn: {} pairs ({} ready) via {}, {} B packets at {}/s per client for {:.1} s\n\
             sent {} received {} loss {:.3}%  {:.0} packets/s  {:.2} Mbit/s  jitter {:.3} ms\n",
            self.options.pairs,
            self.ready_pairs,
            self.options.server,
            self.options.size,
            self.options.rate,
            self.elapsed.as_secs_f64(),
            self.sent,
            self.received,
            self.loss() * 100.0,
            self.packets_per_second(),
            self.mbit_per_second(),
            self.jitter_ms,
        );
        out.push_str(&self.tally.table());
        for (kind, n) in &self.tally.errors {
            out.push_str(&format!("error {kind}: {n}\n"));
        }
        out
    }
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
    let mut pairs = Vec::new();
    for _ in 0..options.pairs {
        match setup_pair(&options, &source, &mut tally).await {
            Ok(pair) => pairs.push(pair),
            Err(kind) => {
                tally.error(kind);
                live.setup_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        live.set_up.fetch_add(1, Ordering::Relaxed);
    }
    let ready_pairs = pairs.len();
    let started = Instant::now();
    let traffic = Arc::new(Traffic::new(started, options.duration + DRAIN));
    // Set once here, so it cannot already hold a value.
    let _ = live.traffic.set(Arc::clone(&traffic));
    let until = started + options.duration;
    let mut tasks = Vec::new();
    for (a, b) in &pairs {
        for (from, to) in [(a, b), (b, a)] {
            tasks.push(tokio::spawn(send_loop(
                Arc::clone(&from.socket),
                from.server,
                options.clone(),
                until,
                Arc::clone(&traffic),
            )));
            tasks.push(tokio::spawn(receive_loop(
                Arc::clone(&to.socket),
                until + DRAIN,
                Arc::clone(&traffic),
            )));
        }
    }
    let mut latency = Latency::default();
    let mut jitter_sum = 0.0;
    let mut jitter_n = 0u64;
    for task in tasks {
        if let Ok(Some((l, j, n))) = task.await {
            latency.merge(&l);
            jitter_sum += j;
            jitter_n += n;
        }
    }
    let elapsed = options.duration.min(started.elapsed());
    tally.steps.insert("one_way", latency);
    // Release the allocations so repeated runs do not exhaust quotas.
    for (a, b) in &mut pairs {
        for client in [a, b] {
            let _ = client
                .request(
                    Method::REFRESH,
                    &[Attribute::Lifetime(0)],
                    options.step_timeout,
                )
                .await;
        }
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

/// Two allocations with a channel each towards the other's relay address.
async fn setup_pair(
    o: &Options,
    source: &Source,
    tally: &mut Tally,
) -> Result<(TurnClient, TurnClient), String> {
    let t = Instant::now();
    let mut a = TurnClient::connect(o.server, source, o.step_timeout).await?;
    tally.record("allocate", t.elapsed());
    let t = Instant::now();
    let mut b = TurnClient::connect(o.server, source, o.step_timeout).await?;
    tally.record("allocate", t.elapsed());
    let channel = ChannelNumber::new(0x4000).expect("in range");
    let (relay_a, relay_b) = (a.relay, b.relay);
    for (client, peer) in [(&mut a, relay_b), (&mut b, relay_a)] {
        let t = Instant::now();
        client
            .request(
                Method::CHANNEL_BIND,
                &[
                    Attribute::ChannelNumber(channel),
                    Attribute::XorPeerAddress(peer),
                ],
                o.step_timeout,
            )
            .await?;
        tally.record("bind", t.elapsed());
    }
    Ok((a, b))
}

/// Sends ChannelData frames at the configured rate until `until`.
async fn send_loop(
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    o: Options,
    until: Instant,
    traffic: Arc<Traffic>,
) -> Option<(Latency, f64, u64)> {
    let size = o.size.max(32);
    let mut frame = vec![0u8; 4 + size];
    frame[..4].copy_from_slice(&[0x40, 0x00, (size >> 8) as u8, size as u8]);
    let period = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let mut next = tokio::time::Instant::now();
    let base = Instant::now();
    let id = base_id(&base);
    let mut seq = 0u64;
    while Instant::now() < until {
        seq += 1;
        let sent_at = base.elapsed().as_nanos() as u64;
        frame[4..12].copy_from_slice(&seq.to_be_bytes());
        frame[12..20].copy_from_slice(&sent_at.to_be_bytes());
        frame[20..28].copy_from_slice(&id.to_be_bytes());
        if socket.send_to(&frame, server).await.is_ok() {
            // The receiver buckets by the same stamp, so per-second loss is exact.
            let stamp = stamp_instant(id, sent_at).unwrap_or(until);
            traffic.sent.add(stamp, 1);
        }
        next += period;
        tokio::time::sleep_until(next).await;
    }
    None
}

/// A process-wide epoch so receivers can turn a sender's timestamp into latency.
fn base_id(base: &Instant) -> u64 {
    base.duration_since(*EPOCH).as_nanos() as u64
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// The send time a packet carries, as an `Instant`; `None` for a stamp out of range.
fn stamp_instant(sender_base: u64, sent_at: u64) -> Option<Instant> {
    EPOCH.checked_add(Duration::from_nanos(sender_base.checked_add(sent_at)?))
}

/// Receives ChannelData frames until `until`; returns latency, summed jitter and its sample count.
async fn receive_loop(
    socket: Arc<UdpSocket>,
    until: Instant,
    traffic: Arc<Traffic>,
) -> Option<(Latency, f64, u64)> {
    let mut latency = Latency::default();
    let mut buf = vec![0u8; 65536];
    let (mut last, mut jitter, mut samples) = (None::<f64>, 0.0, 0u64);
    loop {
        let deadline = tokio::time::Instant::from_std(until);
        let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        else {
            break;
        };
        // Only ChannelData carrying our stamp counts; stray STUN responses do not.
        if n < 28 || buf[0] & 0xC0 != 0x40 {
            continue;
        }
        let sent_at = u64::from_be_bytes(buf[12..20].try_into().expect("8 bytes"));
        let sender_base = u64::from_be_bytes(buf[20..28].try_into().expect("8 bytes"));
        let arrived = Instant::now();
        let now = arrived.duration_since(*EPOCH).as_nanos() as u64;
        let one_way = now.saturating_sub(sender_base.saturating_add(sent_at));
        let d = Duration::from_nanos(one_way);
        latency.record(d);
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(prev) = last {
            jitter += (ms - prev).abs();
            samples += 1;
        }
        last = Some(ms);
        traffic.received.add(arrived, 1);
        traffic.bytes.add(arrived, (n - 4) as u64);
        let stamp = stamp_instant(sender_base, sent_at).unwrap_or(arrived);
        traffic.delivered_by_send.add(stamp, 1);
    }
    Some((latency, jitter, samples))
}
