//! `loadtest turn`: pairs of TURN allocations relaying to each other through channels, as two
//! relayed WebRTC peers do (client A -> relay A -> relay B -> client B, and back). Works against
//! any RFC 8656 server that accepts TURN REST credentials (ours, coturn).
//!
//! Both clients of a pair live in this process, so one-way latency is measured exactly with one
//! monotonic clock: each packet carries its sequence number and send time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::turn_auth::{SharedSecret, mint};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use turn_server::proto::{
    AttrType, Attribute, ChannelNumber, Class, Message, MessageBuilder, Method, PROTOCOL_UDP,
    TransactionId, long_term_key,
};

use crate::stats::{Latency, Tally};

/// Where allocations get their TURN REST credentials.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// Minted here from the shared secret the server accepts.
    Secret(String),
    /// Fetched per allocation from a signal-server `/turn-credentials` URL, as apps do.
    Url(String),
}

/// A ready credential source.
enum Source {
    Secret(SharedSecret),
    Url(reqwest::Client, String),
}

impl Source {
    fn new(from: &CredentialSource) -> Result<Self, String> {
        match from {
            CredentialSource::Secret(s) => SharedSecret::new(s.clone())
                .map(Self::Secret)
                .map_err(|_| "empty_secret".to_owned()),
            CredentialSource::Url(url) => Ok(Self::Url(reqwest::Client::new(), url.clone())),
        }
    }

    /// A username and password for one allocation.
    async fn credential(&self, timeout: Duration) -> Result<(String, String), String> {
        match self {
            Self::Secret(secret) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let cred = mint(secret, Some("loadtest"), Duration::from_secs(3600), now)
                    .map_err(|e| e.to_string())?;
                Ok((cred.username, cred.credential))
            }
            Self::Url(http, url) => {
                let response = http
                    .get(url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|_| "credentials_http".to_owned())?;
                if !response.status().is_success() {
                    return Err(format!("credentials_{}", response.status().as_u16()));
                }
                let body: Value = response
                    .json()
                    .await
                    .map_err(|_| "credentials_body".to_owned())?;
                let servers = body["iceServers"].as_array().cloned().unwrap_or_default();
                servers
                    .iter()
                    .find_map(|s| {
                        Some((
                            s["username"].as_str()?.to_owned(),
                            s["credential"].as_str()?.to_owned(),
                        ))
                    })
                    .ok_or_else(|| "credentials_missing".to_owned())
            }
        }
    }
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

/// Counters shared by every receiving task.
#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    received: AtomicU64,
    bytes: AtomicU64,
}

/// One TURN client with its allocation.
struct TurnClient {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    username: String,
    realm: String,
    nonce: String,
    key: [u8; 16],
    password: String,
    relay: SocketAddr,
    txn: u64,
}

impl TurnClient {
    async fn connect(
        server: SocketAddr,
        source: &Source,
        timeout: Duration,
    ) -> Result<Self, String> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("valid");
        let socket = UdpSocket::bind(bind).await.map_err(|_| "bind".to_owned())?;
        let (username, password) = source.credential(timeout).await?;
        let mut client = Self {
            socket: Arc::new(socket),
            server,
            username,
            realm: String::new(),
            nonce: String::new(),
            key: [0; 16],
            password,
            relay: server,
            txn: rand::random(),
        };
        let resp = client
            .request(
                Method::ALLOCATE,
                &[Attribute::RequestedTransport(PROTOCOL_UDP)],
                timeout,
            )
            .await?;
        let msg = Message::decode(&resp).map_err(|_| "allocate_bad_response".to_owned())?;
        client.relay = match msg.attribute(AttrType::XOR_RELAYED_ADDRESS) {
            Some(Ok(Attribute::XorRelayedAddress(a))) => a,
            _ => return Err("allocate_no_relay".into()),
        };
        Ok(client)
    }

    /// An authenticated request; a 401/438 challenge is answered once with its realm and nonce.
    async fn request(
        &mut self,
        method: Method,
        attrs: &[Attribute<'_>],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        for _ in 0..3 {
            self.txn = self.txn.wrapping_add(1);
            let mut id = [0u8; 12];
            id[4..].copy_from_slice(&self.txn.to_be_bytes());
            let txn = TransactionId(id);
            let mut out = Vec::with_capacity(256);
            let mut b = MessageBuilder::new(&mut out, Class::Request, method, txn);
            for a in attrs {
                b.add(a);
            }
            if !self.nonce.is_empty() {
                b.add(&Attribute::Username(&self.username))
                    .add(&Attribute::Realm(&self.realm))
                    .add(&Attribute::Nonce(&self.nonce))
                    .message_integrity(&self.key);
            }
            b.fingerprint();
            b.finish().map_err(|_| "encode".to_owned())?;
            self.socket
                .send_to(&out, self.server)
                .await
                .map_err(|_| "send".to_owned())?;
            let resp = self.response(txn, timeout).await?;
            let msg = Message::decode(&resp).map_err(|_| "bad_response".to_owned())?;
            if msg.class() == Class::Success {
                return Ok(resp);
            }
            let code = match msg.attribute(AttrType::ERROR_CODE) {
                Some(Ok(Attribute::ErrorCode(e))) => e.code,
                _ => 0,
            };
            if matches!(code, 401 | 438) {
                if let Some(Ok(Attribute::Realm(r))) = msg.attribute(AttrType::REALM) {
                    self.realm = r.to_owned();
                }
                if let Some(Ok(Attribute::Nonce(n))) = msg.attribute(AttrType::NONCE) {
                    self.nonce = n.to_owned();
                }
                self.key = long_term_key(&self.username, &self.realm, &self.password);
                continue;
            }
            return Err(format!("{}_{code}", method_name(method)));
        }
        Err(format!("{}_auth", method_name(method)))
    }

    async fn response(&self, txn: TransactionId, timeout: Duration) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; 2048];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .map_err(|_| "timeout".to_owned())?
                .map_err(|_| "recv".to_owned())?;
            if Message::decode(&buf[..n]).is_ok_and(|m| m.transaction_id() == txn) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::ALLOCATE => "allocate",
        Method::CHANNEL_BIND => "channel_bind",
        Method::REFRESH => "refresh",
        _ => "request",
    }
}

/// Runs the scenario; bounded by `duration` plus setup and drain timeouts.
pub async fn run(options: Options) -> Report {
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
            };
        }
    };
    let mut tally = Tally::default();
    let mut pairs = Vec::new();
    for _ in 0..options.pairs {
        match setup_pair(&options, &source, &mut tally).await {
            Ok(pair) => pairs.push(pair),
            Err(kind) => tally.error(kind),
        }
    }
    let ready_pairs = pairs.len();
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let until = started + options.duration;
    let mut tasks = Vec::new();
    for (a, b) in &pairs {
        for (from, to) in [(a, b), (b, a)] {
            tasks.push(tokio::spawn(send_loop(
                Arc::clone(&from.socket),
                from.server,
                options.clone(),
                until,
                Arc::clone(&totals),
            )));
            tasks.push(tokio::spawn(receive_loop(
                Arc::clone(&to.socket),
                until + Duration::from_millis(500),
                Arc::clone(&totals),
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
        sent: totals.sent.load(Ordering::Relaxed),
        received: totals.received.load(Ordering::Relaxed),
        bytes_received: totals.bytes.load(Ordering::Relaxed),
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
    totals: Arc<Totals>,
) -> Option<(Latency, f64, u64)> {
    let size = o.size.max(32);
    let mut frame = vec![0u8; 4 + size];
    frame[..4].copy_from_slice(&[0x40, 0x00, (size >> 8) as u8, size as u8]);
    let period = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let mut next = tokio::time::Instant::now();
    let base = Instant::now();
    let mut seq = 0u64;
    while Instant::now() < until {
        seq += 1;
        let sent_at = base.elapsed().as_nanos() as u64;
        frame[4..12].copy_from_slice(&seq.to_be_bytes());
        frame[12..20].copy_from_slice(&sent_at.to_be_bytes());
        frame[20..28].copy_from_slice(&(base_id(&base)).to_be_bytes());
        if socket.send_to(&frame, server).await.is_ok() {
            totals.sent.fetch_add(1, Ordering::Relaxed);
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

/// Receives ChannelData frames until `until`; returns latency, summed jitter and its sample count.
async fn receive_loop(
    socket: Arc<UdpSocket>,
    until: Instant,
    totals: Arc<Totals>,
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
        let now = Instant::now().duration_since(*EPOCH).as_nanos() as u64;
        let one_way = now.saturating_sub(sender_base + sent_at);
        let d = Duration::from_nanos(one_way);
        latency.record(d);
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(prev) = last {
            jitter += (ms - prev).abs();
            samples += 1;
        }
        last = Some(ms);
        totals.received.fetch_add(1, Ordering::Relaxed);
        totals.bytes.fetch_add((n - 4) as u64, Ordering::Relaxed);
    }
    Some((latency, jitter, samples))
}
