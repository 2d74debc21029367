//! A peer's watch of the other's slot over SSE, WebSocket or long-poll.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Transport, http_error};

type SseStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;
type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One peer's watch of the other's slot.
pub(super) enum Watch {
    Sse {
        stream: SseStream,
        buf: String,
    },
    Ws {
        ws: Box<WsStream>,
        /// Events that arrived while a write waited for its answer.
        pending: VecDeque<Value>,
        next_id: u64,
    },
    Poll {
        http: reqwest::Client,
        url: String,
        after: u64,
    },
}

impl Watch {
    pub(super) async fn open(
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
                // tungstenite zero-fills its free read capacity before every read: its 128 KiB
                // default made that most of this client's CPU. Frames here are small.
                let config = WebSocketConfig::default().read_buffer_size(4096);
                let (ws, _) =
                    tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                        .await
                        .map_err(|_| "watch_ws_connect".to_owned())?;
                Self::Ws {
                    ws: Box::new(ws),
                    pending: VecDeque::new(),
                    next_id: 0,
                }
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
    pub(super) async fn until_version(
        &mut self,
        version: u64,
        step_timeout: Duration,
    ) -> Result<(), String> {
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

    /// Puts `data` (base64) into each of `slots` over this watch's WebSocket, all frames sent
    /// back to back before any answer is awaited. Returns when each answer arrived, in slot
    /// order, and the last put's room version.
    pub(super) async fn put_burst(
        &mut self,
        slots: &[String],
        data: &str,
        step_timeout: Duration,
    ) -> Result<(Vec<Instant>, u64), String> {
        let Self::Ws {
            ws,
            pending,
            next_id,
        } = self
        else {
            return Err("put_needs_websocket".into());
        };
        let first_id = *next_id + 1;
        for slot in slots {
            *next_id += 1;
            let id = *next_id;
            // Formatted by hand, not through serde_json: the generator's CPU is taken from the
            // server it measures. Slot names and base64 need no escaping.
            let frame = format!(
                r#"{{"id":{id},"op":"put","slot":"{slot}","data":"{data}","content_type":"application/octet-stream"}}"#
            );
            ws.feed(Message::Text(frame.into()))
                .await
                .map_err(|_| "put_ws_send".to_owned())?;
        }
        ws.flush().await.map_err(|_| "put_ws_send".to_owned())?;
        let mut answered = Vec::with_capacity(slots.len());
        let mut version = 0;
        while answered.len() < slots.len() {
            let text = next_ws_text(ws, step_timeout, "put_timeout").await?;
            let awaited = first_id + answered.len() as u64;
            match serde_json::from_str::<Reply>(&text) {
                Ok(Reply {
                    kind: "ack",
                    id: Some(got),
                    version: got_version,
                    ..
                }) if got == awaited => {
                    version = got_version.ok_or_else(|| "put_body".to_owned())?;
                    answered.push(Instant::now());
                }
                Ok(Reply {
                    kind: "ack" | "error",
                    id: Some(got),
                    ..
                }) if got != awaited => return Err("put_out_of_order".into()),
                Ok(Reply {
                    kind: "error",
                    status,
                    ..
                }) => {
                    return Err(format!("put_{}", status.unwrap_or_default()));
                }
                _ => pending.push_back(parse_event(&text)?),
            }
        }
        Ok((answered, version))
    }

    async fn next_event(&mut self, step_timeout: Duration) -> Result<Value, String> {
        match self {
            Self::Sse { stream, buf } => timeout(step_timeout, next_sse(stream, buf))
                .await
                .map_err(|_| "notify_timeout".to_owned())?,
            Self::Ws { ws, pending, .. } => match pending.pop_front() {
                Some(event) => Ok(event),
                None => next_ws(ws, step_timeout, "notify_timeout").await,
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

/// The fields of a frame a put waits on; any other frame is kept as an event.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    id: Option<u64>,
    version: Option<u64>,
    status: Option<u16>,
}

fn parse_event(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|_| "watch_bad_event".to_owned())
}

async fn next_ws(ws: &mut WsStream, step_timeout: Duration, late: &str) -> Result<Value, String> {
    parse_event(&next_ws_text(ws, step_timeout, late).await?)
}

async fn next_ws_text(
    ws: &mut WsStream,
    step_timeout: Duration,
    late: &str,
) -> Result<Utf8Bytes, String> {
    loop {
        let msg = timeout(step_timeout, ws.next())
            .await
            .map_err(|_| late.to_owned())?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                return Err("watch_closed".into());
            }
            Some(Ok(_)) => {}
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
