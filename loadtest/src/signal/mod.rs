//! `loadtest signal`: N concurrent peer pairs doing the real signaling exchange.
//!
//! Each pair: A creates a room on its replica and watches `answer`; B watches `offer` on the
//! next replica; then for each round A puts an offer, B is notified and puts an answer, A is
//! notified. `notify` is the time from starting a put to the other peer's watcher seeing it.
//! Every loop is bounded by `--rounds` and `--max-duration`.
//!
//! `live.rs` holds the counters the run updates as it goes; `watch.rs` the watchers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::stats::Tally;
use crate::timeline::Timeline;

mod live;
mod watch;

pub use live::Live;
use watch::Watch;

/// How watchers receive changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    WebSocket,
    LongPoll,
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sse" => Ok(Self::Sse),
            "ws" | "websocket" => Ok(Self::WebSocket),
            "long-poll" | "longpoll" | "poll" => Ok(Self::LongPoll),
            _ => Err(format!("unknown transport {s:?}: sse, ws or long-poll")),
        }
    }
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::WebSocket => "ws",
            Self::LongPoll => "long-poll",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URLs of signal-server replicas; pair `i` uses `urls[i]` and `urls[i + 1]`.
    pub urls: Vec<String>,
    pub rooms: usize,
    pub rounds: usize,
    pub transport: Transport,
    /// Puts go over the writer's own watch WebSocket (`transport` must be WebSocket).
    pub socket_writes: bool,
    /// Peers put without waiting for each other's notification (a write-throughput run).
    pub puts_only: bool,
    /// Puts a peer sends back to back before awaiting their answers (`socket_writes` only):
    /// `burst - 1` candidate slots, then its offer or answer, like a peer sending a batch of
    /// ICE candidates with its description. 1 is one put at a time.
    pub burst: usize,
    /// Target puts per second over all rooms; 0 means as fast as possible.
    pub rate: f64,
    pub blob_bytes: usize,
    pub max_duration: Duration,
    /// One step may take at most this long before it counts as a timeout error.
    pub step_timeout: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub tally: Tally,
    pub elapsed: Duration,
    /// Rooms that finished every round.
    pub completed_rooms: usize,
    /// Per second: `completed_rooms`, `rounds` (offer/answer rounds done) and `errors`
    /// (failed rooms), each summing to its total.
    pub timeline: Timeline,
    /// From the first put's start to the last put's answer, over all pairs.
    pub put_span: PutSpan,
}

/// When puts were being made: the first one's start and the last one's answer (none yet: `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PutSpan(Option<(Instant, Instant)>);

impl PutSpan {
    fn widen(&mut self, start: Instant, end: Instant) {
        self.0 = Some(match self.0 {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => (start, end),
        });
    }

    fn merge(&mut self, other: PutSpan) {
        if let Some((start, end)) = other.0 {
            self.widen(start, end);
        }
    }

    /// How long puts were being made; zero when none was.
    pub fn duration(&self) -> Duration {
        self.0.map_or(Duration::ZERO, |(start, end)| {
            end.saturating_duration_since(start)
        })
    }
}

impl Report {
    pub fn puts(&self) -> u64 {
        self.tally.count("put")
    }

    /// Puts over the whole run, room setup and teardown included.
    pub fn puts_per_second(&self) -> f64 {
        self.puts() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Puts while puts were being made (from the first put's start to the last put's answer):
    /// the write rate without room creation, watch setup and room deletion around it.
    pub fn write_phase_puts_per_second(&self) -> f64 {
        self.puts() as f64 / self.put_span.duration().as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": "signal",
            "transport": self.options.transport.name(),
            "writes": self.writes_name(),
            "burst": self.options.burst,
            "replicas": self.options.urls.len(),
            "rooms": self.options.rooms,
            "rounds": self.options.rounds,
            "completed_rooms": self.completed_rooms,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "puts": self.puts(),
            "puts_per_s": self.puts_per_second(),
            "write_phase_s": self.put_span.duration().as_secs_f64(),
            "write_phase_puts_per_s": self.write_phase_puts_per_second(),
            "steps": self.tally.steps_json(),
            "errors": self.tally.errors,
            "timeline": self.timeline.to_json(),
        })
    }

    /// How puts were sent.
    pub fn writes_name(&self) -> &'static str {
        if self.options.socket_writes {
            "websocket"
        } else {
            "http"
        }
    }

    pub fn human(&self) -> String {
        let o = &self.options;
        let mut out = format!(
            "signal: {} rooms x {} rounds over {} (puts over {}) on {} replica(s): {}/{} rooms completed in {:.2} s\n\
             puts: {} ({:.0}/s; {:.0}/s while writing)\n",
            o.rooms,
            o.rounds,
            o.transport.name(),
            self.writes_name(),
            o.urls.len(),
            self.completed_rooms,
            o.rooms,
            self.elapsed.as_secs_f64(),
            self.puts(),
            self.puts_per_second(),
            self.write_phase_puts_per_second(),
        );
        out.push_str(&self.tally.table());
        if self.tally.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            for (kind, n) in &self.tally.errors {
                out.push_str(&format!("error {kind}: {n}\n"));
            }
        }
        out
    }
}

/// Runs the scenario; never longer than `max_duration` plus one step timeout.
pub async fn run(options: Options) -> Report {
    let live = Arc::new(Live::new(&options));
    run_with(options, live).await
}

/// [`run`], updating `live` (made for these options) as it goes.
pub async fn run_with(options: Options, live: Arc<Live>) -> Report {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.rooms * 2 + 16)
        .timeout(options.step_timeout)
        .build()
        .expect("HTTP client");
    let started = live.started();
    let deadline = tokio::time::Instant::from_std(started) + options.max_duration;
    let shared = Arc::new(options.clone());
    let mut tasks = Vec::with_capacity(options.rooms);
    for i in 0..options.rooms {
        let (http, opts, live) = (http.clone(), Arc::clone(&shared), Arc::clone(&live));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut span = PutSpan::default();
            let exchange = pair(i, &http, &opts, &mut tally, &mut span, &live);
            let outcome = tokio::time::timeout_at(deadline, exchange).await;
            let ok = match outcome {
                Ok(Ok(())) => true,
                Ok(Err(kind)) => {
                    tally.error(kind);
                    false
                }
                Err(_) => {
                    tally.error("max_duration");
                    false
                }
            };
            let counter = if ok {
                &live.completed_rooms
            } else {
                &live.errors
            };
            counter.add(Instant::now(), 1);
            (tally, ok, span)
        }));
    }
    let mut tally = Tally::default();
    let mut put_span = PutSpan::default();
    let mut completed_rooms = 0;
    for task in tasks {
        match task.await {
            Ok((t, ok, span)) => {
                tally.merge(&t);
                put_span.merge(span);
                completed_rooms += usize::from(ok);
            }
            Err(_) => {
                tally.error("task_panicked");
                live.errors.add(Instant::now(), 1);
            }
        }
    }
    let elapsed = started.elapsed();
    Report {
        options,
        tally,
        elapsed,
        completed_rooms,
        timeline: live.timeline(elapsed),
        put_span,
    }
}

/// One peer pair's whole exchange; an error is the kind of the first failure.
async fn pair(
    i: usize,
    http: &reqwest::Client,
    o: &Options,
    tally: &mut Tally,
    span: &mut PutSpan,
    live: &Live,
) -> Result<(), String> {
    let url_a = &o.urls[i % o.urls.len()];
    let url_b = &o.urls[(i + 1) % o.urls.len()];
    // Spread room starts over one pacing period so the rate is smooth from the start.
    let period = pacing_period(o);
    if !period.is_zero() {
        tokio::time::sleep(period.mul_f64(i as f64 / o.rooms as f64)).await;
    }

    let t = Instant::now();
    let code = create_room(http, url_a).await?;
    tally.record("create", t.elapsed());
    // A puts-only run watches a slot nobody writes: the sockets stay open but carry no events.
    let (watched_a, watched_b) = if o.puts_only {
        ("idle", "idle")
    } else {
        ("answer", "offer")
    };
    let mut watch_a =
        Watch::open(http, url_a, &code, watched_a, o.transport, o.step_timeout).await?;
    let mut watch_b =
        Watch::open(http, url_b, &code, watched_b, o.transport, o.step_timeout).await?;
    let body = bytes::Bytes::from(vec![b'x'; o.blob_bytes]);
    let socket_body = o.socket_writes.then(|| BASE64.encode(&body));
    let burst_slots = ["offer", "answer"].map(|slot| burst_slots(slot, o.burst));

    let mut next_round = tokio::time::Instant::now();
    for _ in 0..o.rounds {
        // Set by each direction below; the answer's notification ends the round.
        let mut notified = t;
        for offer in [true, false] {
            let (writer, slot, own, other) = if offer {
                (url_a, "offer", &mut watch_a, &mut watch_b)
            } else {
                (url_b, "answer", &mut watch_b, &mut watch_a)
            };
            let t = Instant::now();
            let version = match &socket_body {
                Some(data) => {
                    let slots = &burst_slots[usize::from(!offer)];
                    let (answered, version) = own.put_burst(slots, data, o.step_timeout).await?;
                    for at in answered {
                        tally.record("put", at - t);
                    }
                    version
                }
                None => {
                    let version = put(http, writer, &code, slot, body.clone()).await?;
                    tally.record("put", t.elapsed());
                    version
                }
            };
            notified = Instant::now();
            span.widen(t, notified);
            if !o.puts_only {
                other.until_version(version, o.step_timeout).await?;
                notified = Instant::now();
                tally.record("notify", notified - t);
            }
        }
        live.rounds.add(notified, 1);
        if !period.is_zero() {
            next_round += period;
            tokio::time::sleep_until(next_round).await;
        }
    }

    let t = Instant::now();
    let r = http
        .delete(format!("{url_a}/v1/rooms/{code}"))
        .send()
        .await
        .map_err(|e| http_error("delete", &e))?;
    if r.status() != 204 {
        return Err(format!("delete_{}", r.status().as_u16()));
    }
    tally.record("delete", t.elapsed());
    Ok(())
}

/// The slots one burst of puts writes: candidates `cand-<slot>-<j>`, then `slot` itself, the one
/// the other peer watches, so its notification comes after the whole burst is written.
fn burst_slots(slot: &str, burst: usize) -> Vec<String> {
    let candidates = (1..burst.max(1)).map(|j| format!("cand-{slot}-{j}"));
    candidates.chain(std::iter::once(slot.to_owned())).collect()
}

/// Time between one room's rounds for the target rate (each round is two bursts of puts).
fn pacing_period(o: &Options) -> Duration {
    if o.rate <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(o.rooms as f64 * 2.0 * o.burst.max(1) as f64 / o.rate)
}

pub(super) fn http_error(step: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{step}_timeout")
    } else if e.is_connect() {
        format!("{step}_connect")
    } else {
        format!("{step}_http")
    }
}

async fn create_room(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let r = http
        .post(format!("{url}/v1/rooms"))
        .send()
        .await
        .map_err(|e| http_error("create", &e))?;
    if r.status() != 201 {
        return Err(format!("create_{}", r.status().as_u16()));
    }
    let body: Value = r.json().await.map_err(|_| "create_body".to_owned())?;
    body["code"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "create_body".to_owned())
}

async fn put(
    http: &reqwest::Client,
    url: &str,
    code: &str,
    slot: &str,
    body: bytes::Bytes,
) -> Result<u64, String> {
    let r = http
        .put(format!("{url}/v1/rooms/{code}/blobs/{slot}"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| http_error("put", &e))?;
    if r.status() != 200 {
        return Err(format!("put_{}", r.status().as_u16()));
    }
    let body: Value = r.json().await.map_err(|_| "put_body".to_owned())?;
    body["version"]
        .as_u64()
        .ok_or_else(|| "put_body".to_owned())
}
