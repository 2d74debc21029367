//! Watch transports over [`crate::watch::Watcher`]: Server-Sent Events, WebSocket, long-poll.
//!
//! All three share the event JSON (`{"type": ...}`), resume by version (SSE `Last-Event-ID`,
//! `?after=`), the watcher caps, and end with a final event on expiry, outage or shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use futures_util::{FutureExt, SinkExt};
use serde::Deserialize;
use serde_json::json;

use super::{ApiPath, ApiQuery, ApiWebSocket, room_code, socket_writes};
use crate::app::{AppState, ClientIp};
use crate::error::ApiError;
use crate::limits::WatchPermit;
use crate::model::{RoomCode, SlotName};
use crate::watch::{WatchEvent, Watcher};

/// Longest long-poll wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub struct WatchParams {
    /// Only this slot's changes (room deletion and expiry still arrive).
    slot: Option<String>,
    /// Deliver changes after this version (SSE: `Last-Event-ID` wins).
    after: Option<u64>,
    /// Long-poll only: seconds to wait for a change, at most 60.
    wait: Option<u64>,
}

/// A started watch with its cap permit and active-watchers gauge held for its lifetime.
struct OpenWatch {
    watcher: Watcher,
    _permit: WatchPermit,
    _gauge: GaugeGuard,
}

/// Decrements its gauge when dropped, so a stream counts itself out however it ends.
pub(crate) struct GaugeGuard(pub(crate) prometheus::IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn open(
    state: &AppState,
    ip: std::net::IpAddr,
    raw_code: &str,
    params: &WatchParams,
    after: Option<u64>,
    transport: &str,
) -> Result<OpenWatch, ApiError> {
    let code = room_code(raw_code)?;
    let slot = params.slot.as_deref().map(SlotName::parse).transpose()?;
    let permit = state.admit_watcher(code.as_str(), ip)?;
    let watcher = Watcher::start(
        state.store.clone(),
        state.clock.clone(),
        code,
        slot,
        after,
        state.shutdown.clone(),
    )
    .await?;
    let gauge = state.metrics.watchers.with_label_values(&[transport]);
    gauge.inc();
    Ok(OpenWatch {
        watcher,
        _permit: permit,
        _gauge: GaugeGuard(gauge),
    })
}

/// `GET /v1/rooms/{code}/events`: an SSE stream; `id:` is the room version to resume after.
pub async fn sse(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(params): ApiQuery<WatchParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID must be a version number",
                    )
                })
        })
        .transpose()?;
    let after = last_event_id.or(params.after);
    let watch = open(&state, ip, &raw, &params, after, "sse").await?;
    let events = stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        let event = watch.watcher.next().await?;
        let next = (!event.is_final()).then_some(watch);
        Some((Ok(sse_event(&event)), next))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE)))
}

fn sse_event(event: &WatchEvent) -> Event {
    let sse = Event::default()
        .event(event.kind())
        .data(event.to_json().to_string());
    match event.version() {
        Some(version) => sse.id(version.to_string()),
        None => sse,
    }
}

/// `GET /v1/rooms/{code}/ws`: the same events as JSON text frames, then a close frame.
pub async fn websocket(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(params): ApiQuery<WatchParams>,
    ApiWebSocket(upgrade): ApiWebSocket,
) -> Result<Response, ApiError> {
    // Open before upgrading, so a missing room or an outage is a plain HTTP error.
    let watch = open(&state, ip, &raw, &params, params.after, "websocket").await?;
    let code = watch.watcher.code().clone();
    let max_frame = socket_writes::max_frame_bytes(state.settings.max_blob_bytes);
    Ok(upgrade
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| pump_websocket(socket, watch, state, ip, code)))
}

/// Sends the watch's events and answers the client's write frames (see `socket_writes`). The
/// frames already received are applied in the order sent before the next ones are read, so
/// one socket's writes apply in order.
async fn pump_websocket(
    mut socket: WebSocket,
    mut watch: OpenWatch,
    state: AppState,
    ip: std::net::IpAddr,
    code: RoomCode,
) {
    loop {
        tokio::select! {
            event = watch.watcher.next() => {
                let Some(event) = event else { break };
                let text = event.to_json().to_string();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                if event.is_final() {
                    let code = match event {
                        WatchEvent::Unavailable => close_code::AGAIN,
                        WatchEvent::Shutdown => close_code::AWAY,
                        _ => close_code::NORMAL,
                    };
                    let frame = CloseFrame { code, reason: event.kind().into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
            incoming = socket.recv() => {
                if !answer_frames(&mut socket, incoming, &state, ip, &code).await {
                    return;
                }
            }
        }
    }
}

/// Most frames taken together before their answers are flushed, so a client streaming writes
/// without pause still gets its answers (and its watch events) in good time.
const FRAMES_PER_FLUSH: usize = 64;

/// Why a socket's frame-taking stopped.
enum SocketEnd {
    /// Nothing more is waiting: answer and go on.
    Open,
    /// Closed by the client, or gone.
    Closed,
    /// Broken by a bad frame: answer what came before it, then close with this.
    Refused(CloseFrame),
}

/// Answers `first` and every further frame the socket has already received (up to
/// [`FRAMES_PER_FLUSH`]), then flushes once: a client that sends writes back to back gets
/// their answers in one send, not one send each, and its puts reach the store together.
/// `false`: the socket is finished (closed by either side, or broken).
async fn answer_frames(
    socket: &mut WebSocket,
    first: Option<Result<Message, axum::Error>>,
    state: &AppState,
    ip: std::net::IpAddr,
    code: &RoomCode,
) -> bool {
    let mut frames = Vec::new();
    let mut next = Some(first);
    let mut end = SocketEnd::Open;
    // Messages taken, pings included: a ping flood cannot hold the loop either.
    let mut taken = 0;
    while let Some(incoming) = next.take() {
        taken += 1;
        match incoming {
            Some(Ok(Message::Text(frame))) => frames.push(Some(frame)),
            Some(Ok(Message::Binary(_))) => frames.push(None),
            // Pings are answered by the library.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => {
                end = SocketEnd::Closed;
                break;
            }
            Some(Err(err)) => {
                end = SocketEnd::Refused(refusal(&err));
                break;
            }
        }
        if taken < FRAMES_PER_FLUSH {
            // Ready now: already read from the socket. Not ready: nothing is waiting.
            next = socket.recv().now_or_never();
        }
    }
    let texts: Vec<Option<&str>> = frames
        .iter()
        .map(|frame| frame.as_ref().map(|text| text.as_str()))
        .collect();
    for answer in socket_writes::answer_all(state, ip, code, &texts).await {
        if socket.feed(Message::Text(answer.into())).await.is_err() {
            return false;
        }
    }
    match end {
        SocketEnd::Open => socket.flush().await.is_ok(),
        SocketEnd::Closed => false,
        SocketEnd::Refused(frame) => {
            let _ = socket.send(Message::Close(Some(frame))).await;
            false
        }
    }
}

/// The close frame for a frame the socket could not take.
fn refusal(err: &axum::Error) -> CloseFrame {
    // axum hides tungstenite's error type; its text names an oversized frame.
    let (code, reason) = if err.to_string().contains("too long") {
        (close_code::SIZE, "frame over the size limit")
    } else {
        (close_code::PROTOCOL, "invalid frame")
    };
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// `GET /v1/rooms/{code}/changes?after=N&wait=S`: changes after `after` as soon as there are
/// any, or an empty list after `wait`. Poll again with `after` set to the returned `version`.
pub async fn long_poll(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(params): ApiQuery<WatchParams>,
) -> Result<Response, ApiError> {
    let wait = params.wait.map_or(DEFAULT_WAIT, Duration::from_secs);
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(
            "invalid_wait",
            "wait may be at most 60 seconds",
        ));
    }
    let mut watch = open(&state, ip, &raw, &params, params.after, "long_poll").await?;
    let mut version = 0;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        for event in watch.watcher.ready_now() {
            version = event.version().unwrap_or(version);
            if !matches!(event, WatchEvent::Ready { .. }) {
                events.push(event);
            }
        }
        if !events.is_empty() {
            break;
        }
        match tokio::time::timeout_at(deadline, watch.watcher.next()).await {
            Ok(Some(WatchEvent::Ready { version: v })) => version = v,
            Ok(Some(WatchEvent::Unavailable)) => {
                return Err(ApiError::unavailable(
                    "the change feed is unavailable; poll again",
                ));
            }
            Ok(Some(event)) => {
                version = event.version().unwrap_or(version);
                events.push(event);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let events: Vec<_> = events.iter().map(WatchEvent::to_json).collect();
    Ok((
        StatusCode::OK,
        Json(json!({"version": version, "events": events})),
    )
        .into_response())
}
