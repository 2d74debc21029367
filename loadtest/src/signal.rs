//! `loadtest signal`: N concurrent peer pairs doing the real signaling exchange.
//!
//! Each pair: A creates a room on its replica and watches `answer`; B watches `offer` on the
//! next replica; then for each round A puts an offer, B is notified and puts an answer, A is
//! notified. `notify` is the time from starting a put to the other peer's watcher seeing it.
//! Every loop is bounded by `--rounds` and `--max-duration`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::Tally;

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
}

impl Report {
    pub fn puts(&self) -> u64 {
        self.tally.count("put")
    }

    pub fn puts_per_second(&self) -> f64 {
        self.puts() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .tally
            .steps
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_json()))
            .collect();
        json!({
            "scenario": "signal",
            "transport": self.options.transport.name(),
            "replicas": self.options.urls.len(),
            "rooms": self.options.rooms,
            "rounds": self.options.rounds,
            "completed_rooms": self.completed_rooms,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "puts": self.puts(),
            "puts_per_s": self.puts_per_second(),
            "steps": steps,
            "errors": self.tally.errors,
        })
    }

    pub fn human(&self) -> String {
        let o = &self.options;
        let mut out = format!(
            "signal: {} rooms x {} rounds over {} on {} replica(s): {}/{} rooms completed in {:.2} s\n\
             puts: {} ({:.0}/s)\n",
            o.rooms,
            o.rounds,
            o.transport.name(),
            o.urls.len(),
            self.completed_rooms,
            o.rooms,
            self.elapsed.as_secs_f64(),
            self.puts(),
            self.puts_per_second(),
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.rooms * 2 + 16)
        .timeout(options.step_timeout)
        .build()
        .expect("HTTP client");
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + options.max_duration;
    let shared = Arc::new(options.clone());
    let mut tasks = Vec::with_capacity(options.rooms);
    for i in 0..options.rooms {
        let (http, opts) = (http.clone(), Arc::clone(&shared));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let ok =
                match tokio::time::timeout_at(deadline, pair(i, &http, &opts, &mut tally)).await {
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
            (tally, ok)
        }));
    }
    let mut tally = Tally::default();
    let mut completed_rooms = 0;
    for task in tasks {
        match task.await {
            Ok((t, ok)) => {
                tally.merge(&t);
                completed_rooms += usize::from(ok);
            }
            Err(_) => tally.error("task_panicked"),
        }
    }
    Report {
        options,
        tally,
        elapsed: started.elapsed(),
        completed_rooms,
    }
}

/// One peer pair's whole exchange; an error is the kind of the first failure.
async fn pair(
    i: usize,
    http: &reqwest::Client,
    o: &Options,
    tally: &mut Tally,
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
    let mut watch_a =
        Watch::open(http, url_a, &code, "answer", o.transport, o.step_timeout).await?;
    let mut watch_b = Watch::open(http, url_b, &code, "offer", o.transport, o.step_timeout).await?;
    let body = bytes::Bytes::from(vec![b'x'; o.blob_bytes]);

    let mut next_round = tokio::time::Instant::now();
    for _ in 0..o.rounds {
        for (writer, slot, watcher) in [
            (url_a, "offer", &mut watch_b),
            (url_b, "answer", &mut watch_a),
        ] {
            let t = Instant::now();
            let version = put(http, writer, &code, slot, body.clone()).await?;
            tally.record("put", t.elapsed());
            watcher.until_version(version, o.step_timeout).await?;
            tally.record("notify", t.elapsed());
        }
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

/// Time between one room's rounds for the target rate (each round is two puts).
fn pacing_period(o: &Options) -> Duration {
    if o.rate <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(o.rooms as f64 * 2.0 / o.rate)
}

fn http_error(step: &str, e: &reqwest::Error) -> String {
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

type SseStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;
type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One peer's watch of the other's slot.
enum Watch {
    Sse {
        stream: SseStream,
        buf: String,
    },
    Ws(Box<WsStream>),
    Poll {
        http: reqwest::Client,
        url: String,
        after: u64,
    },
}

impl Watch {
    async fn open(
        http: &reqwest::Client,
        base: &str,
        code: &str,
        slot: &str,
        transport: Transport,
        step_timeout: Duration,
    ) -> Result<Self, String> {
        let mut watch = match transport {
            Transport::Sse => {
                // No overall timeout on a stream: only the wait for each event is bounded.
                let client = reqwest::Client::new();
                let r = client
                    .get(format!("{base}/v1/rooms/{code}/events?slot={slot}"))
                    .send()
                    .await
                    .map_err(|e| http_error("watch", &e))?;
                if r.status() != 200 {
                    return Err(format!("watch_{}", r.status().as_u16()));
                }
                Self::Sse {
                    stream: Box::pin(r.bytes_stream()),
                    buf: String::new(),
                }
            }
            Transport::WebSocket => {
                let url =
                    format!("{base}/v1/rooms/{code}/ws?slot={slot}").replacen("http", "ws", 1);
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .map_err(|_| "watch_ws_connect".to_owned())?;
                Self::Ws(Box::new(ws))
            }
            Transport::LongPoll => {
                return Ok(Self::Poll {
                    http: http.clone(),
                    url: format!("{base}/v1/rooms/{code}/changes?slot={slot}&wait=30"),
                    after: 0,
                });
            }
        };
        let ready = watch.next_event(step_timeout).await?;
        if ready["type"] != "ready" {
            return Err("watch_no_ready".into());
        }
        Ok(watch)
    }

    /// Waits until a change at `version` or later arrives.
    async fn until_version(&mut self, version: u64, step_timeout: Duration) -> Result<(), String> {
        loop {
            let event = self.next_event(step_timeout).await?;
            match event["type"].as_str() {
                Some("change") if event["version"].as_u64() >= Some(version) => return Ok(()),
                Some("change" | "ready" | "resync") => continue,
                Some(other) => return Err(format!("watch_{other}")),
                None => return Err("watch_bad_event".into()),
            }
        }
    }

    async fn next_event(&mut self, step_timeout: Duration) -> Result<Value, String> {
        match self {
            Self::Sse { stream, buf } => timeout(step_timeout, next_sse(stream, buf))
                .await
                .map_err(|_| "notify_timeout".to_owned())?,
            Self::Ws(ws) => loop {
                let msg = timeout(step_timeout, ws.next())
                    .await
                    .map_err(|_| "notify_timeout".to_owned())?;
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        return serde_json::from_str(&t).map_err(|_| "watch_bad_event".to_owned());
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        return Err("watch_closed".into());
                    }
                    Some(Ok(_)) => {}
                }
            },
            Self::Poll { http, url, after } => loop {
                let r = http
                    .get(format!("{url}&after={after}"))
                    .timeout(Duration::from_secs(35))
                    .send()
                    .await
                    .map_err(|e| http_error("poll", &e))?;
                if r.status() != 200 {
                    return Err(format!("poll_{}", r.status().as_u16()));
                }
                let body: Value = r.json().await.map_err(|_| "poll_body".to_owned())?;
                *after = body["version"].as_u64().unwrap_or(*after);
                if let Some(last) = body["events"].as_array().and_then(|e| e.last()) {
                    return Ok(last.clone());
                }
            },
        }
    }
}

async fn next_sse(stream: &mut SseStream, buf: &mut String) -> Result<Value, String> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            if data.is_empty() {
                continue;
            }
            return serde_json::from_str(&data).map_err(|_| "watch_bad_event".to_owned());
        }
        match stream.next().await {
            Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return Err("watch_closed".into()),
        }
    }
}
