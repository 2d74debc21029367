//! Test harness: boots the real signal-server on 127.0.0.1:0 over a chosen store, plus
//! clients for its HTTP, SSE and WebSocket surfaces.

#![allow(dead_code, unreachable_pub)]

pub mod proxy;
pub mod redis;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use signal_server::clock::Clock;
use signal_server::config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Test waits are bounded; a hang fails instead of stalling CI.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running signal-server.
pub struct Server {
    pub base: String,
    pub clock: Clock,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), signal_server::RunError>>,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a server with `redis_url` (None: memory) and extra flags.
    pub async fn start(redis_url: Option<&str>, extra: &[&str]) -> Self {
        Self::start_with_clock(redis_url, extra, Clock::default()).await
    }

    pub async fn start_with_clock(redis_url: Option<&str>, extra: &[&str], clock: Clock) -> Self {
        let mut args = vec![
            "signal-server",
            "--log-format",
            "text",
            "--shutdown-grace",
            "2s",
        ];
        if let Some(url) = redis_url {
            args.extend(["--redis-url", url]);
        }
        args.extend_from_slice(extra);
        let config = Config::from_args(args).expect("test flags parse");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(signal_server::serve(
            config,
            listener,
            shutdown.clone(),
            clock.clone(),
        ));
        let server = Self {
            base,
            clock,
            shutdown,
            task,
            http: reqwest::Client::new(),
        };
        server.await_ready().await;
        server
    }

    /// Polls `/readyz` (the Redis change feed connects in the background).
    pub async fn await_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create_room(&self) -> String {
        let r = self.http.post(self.url("/v1/rooms")).send().await.unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn put(&self, code: &str, slot: &str, body: &'static str) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/v1/rooms/{code}/blobs/{slot}")))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_ok(&self, code: &str, slot: &str, body: &'static str) -> u64 {
        let r = self.put(code, slot, body).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        r.json::<Value>().await.unwrap()["version"]
            .as_u64()
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http.delete(self.url(path)).send().await.unwrap()
    }

    pub async fn sse(&self, path: &str, last_event_id: Option<u64>) -> SseClient {
        let mut req = self.http.get(self.url(path));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        SseClient::from_response(r)
    }

    pub async fn ws(&self, path: &str) -> WsClient {
        let url = self.url(path).replacen("http://", "ws://", 1);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        WsClient { ws }
    }

    /// Cancels the server and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
}

pub struct SseClient {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseClient {
    pub fn from_response(r: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("SSE event in time")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(SseEvent {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = self.stream.next().await?.ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What the WebSocket delivered next.
#[derive(Debug)]
pub enum WsItem {
    Event(Value),
    Close(u16),
    End,
}

impl WsClient {
    /// Sends one frame: text for a JSON value, binary for bytes.
    pub async fn send(&mut self, frame: tokio_tungstenite::tungstenite::Message) {
        use futures_util::SinkExt;
        tokio::time::timeout(WAIT, self.ws.send(frame))
            .await
            .expect("WS send in time")
            .expect("WS send");
    }

    /// Sends JSON text frames back to back, flushed once (one TCP write when they fit).
    pub async fn send_together(&mut self, frames: &[Value]) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        for frame in frames {
            let text = Message::Text(frame.to_string().into());
            self.ws.feed(text).await.expect("WS feed");
        }
        tokio::time::timeout(WAIT, self.ws.flush())
            .await
            .expect("WS flush in time")
            .expect("WS flush");
    }

    /// Sends `frames` back to back ([`Self::send_together`]) and returns the next event for
    /// each: their answers, when nothing else is due.
    pub async fn answers_together(&mut self, frames: &[Value]) -> Vec<Value> {
        self.send_together(frames).await;
        let mut answers = Vec::with_capacity(frames.len());
        for _ in frames {
            match self.next().await {
                WsItem::Event(answer) => answers.push(answer),
                other => panic!("socket ended: {other:?}"),
            }
        }
        answers
    }

    /// Sends a JSON text frame and returns the next event (the answer, when nothing else is due).
    pub async fn request(&mut self, frame: Value) -> Value {
        let text = frame.to_string();
        self.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await;
        match self.next().await {
            WsItem::Event(e) => e,
            other => panic!("no answer to {frame}: {other:?}"),
        }
    }

    pub async fn next(&mut self) -> WsItem {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("WS message in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return WsItem::Event(serde_json::from_str(&t).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsItem::Close(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return WsItem::End,
            }
        }
    }
}

/// Runs a third-party client driver (off the async workers) that prints one JSON summary line
/// and exits 0; fails the test with its output otherwise.
pub async fn run_driver(what: &str, mut cmd: std::process::Command) -> Value {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("{what} did not start: {err}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON summary line")
}

/// Reads the `type` of a watch event JSON.
pub fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

/// A loopback port free for both TCP and UDP right now (TURN listens on both), and SIGTERM
/// for a process the test started.
pub use common::testing::{free_port, sigterm};
