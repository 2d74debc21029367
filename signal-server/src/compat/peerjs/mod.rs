//! The PeerJS server protocol (npm `peer` 1.0, clients `peerjs` 1.5): `GET {path}`,
//! `GET {path}{key}/id`, `GET {path}{key}/peers` and the WebSocket `{path}peerjs?key&id&token`
//! relaying OFFER/ANSWER/CANDIDATE/LEAVE with the server stamping `src`.
//!
//! Unlike the reference server it scales out: with Redis an ID is unique across replicas and
//! a message reaches its destination on any of them ([`hub`]). Queues are bounded.

pub mod hub;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::hub::{Hub, HubLimits};
use super::CompatConfig;
use crate::app::{AppState, ClientIp};
use crate::error::ApiError;
use crate::routes::{ApiPath, ApiQuery, ApiWebSocket};
use crate::store::Store;

/// Most IDs a discovery listing returns.
const MAX_LISTED: usize = 10_000;

/// The PeerJS layer's settings.
#[derive(Debug, Clone)]
pub struct PeerjsSettings {
    /// Mount path, starting and ending with `/` (`/peerjs/`).
    pub path: String,
    pub key: String,
    pub discovery: bool,
    pub limits: HubLimits,
}

impl PeerjsSettings {
    /// `None` when the layer is off.
    pub fn from_config(config: &CompatConfig) -> Result<Option<Self>, String> {
        let path = config.peerjs_path.trim();
        if path == "off" {
            return Ok(None);
        }
        if !path.starts_with('/') || path.contains(['{', '}', '*']) {
            return Err("--peerjs-path must start with '/' (or be `off`)".into());
        }
        let key = config.peerjs_key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("--peerjs-key must be letters, digits, '-' or '_'".into());
        }
        if config.peerjs_concurrent_limit == 0
            || config.peerjs_queue_len == 0
            || config.peerjs_expire_timeout.is_zero()
            || config.peerjs_alive_timeout.is_zero()
        {
            return Err("PeerJS limits and timeouts must be positive".into());
        }
        let path = format!("{}/", path.trim_end_matches('/'));
        Ok(Some(Self {
            path,
            key: key.to_owned(),
            discovery: config.peerjs_discovery,
            limits: HubLimits {
                concurrent: config.peerjs_concurrent_limit,
                queue_len: config.peerjs_queue_len,
                expire: config.peerjs_expire_timeout,
                alive: config.peerjs_alive_timeout,
            },
        }))
    }
}

/// Builds the hub over `store` and starts feeding it other replicas' messages.
pub fn start(settings: &PeerjsSettings, store: &Store, shutdown: CancellationToken) -> Arc<Hub> {
    let hub = Arc::new(Hub::new(settings.key.clone(), settings.limits, store));
    if let Some(mut feed) = hub.remote_feed() {
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            loop {
                let payload = tokio::select! {
                    () = shutdown.cancelled() => return,
                    p = feed.recv() => p,
                };
                match payload {
                    Ok(payload) => hub.deliver_remote(&payload),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "PeerJS relay feed lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    hub
}

/// The layer's routes under `path`.
pub fn routes(path: &str) -> Router<AppState> {
    let root = path.trim_end_matches('/');
    let mut router = Router::new()
        .route(path, get(info))
        .route(&format!("{path}{{key}}/id"), get(new_id))
        .route(&format!("{path}{{key}}/peers"), get(peers))
        .route(&format!("{path}peerjs"), get(websocket));
    if !root.is_empty() {
        router = router.route(root, get(info));
    }
    router
}

fn settings(state: &AppState) -> Result<(&PeerjsSettings, &Arc<Hub>), ApiError> {
    match (&state.settings.compat.peerjs, &state.peerjs) {
        (Some(settings), Some(hub)) => Ok((settings, hub)),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET {path}`: who we are, as the reference server answers.
async fn info(State(state): State<AppState>) -> Result<Response, ApiError> {
    settings(&state)?;
    Ok(axum::Json(json!({
        "name": "PeerJS Server",
        "description": "A server side element to broker connections between PeerJS clients.",
        "website": "https://peerjs.com/",
    }))
    .into_response())
}

/// `GET {path}{key}/id`: a fresh random ID, as text.
async fn new_id(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (settings, _) = settings(&state)?;
    if key != settings.key {
        return Err(invalid_key());
    }
    let id = uuid_v4();
    Ok(([(header::CONTENT_TYPE, "text/plain")], id).into_response())
}

/// `GET {path}{key}/peers`: connected IDs, only when discovery is on.
async fn peers(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (settings, hub) = settings(&state)?;
    if key != settings.key {
        return Err(invalid_key());
    }
    if !settings.discovery {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "discovery_disabled",
            "peer discovery is disabled on this server",
        ));
    }
    let ids = state
        .within_time_limit(async { Ok(hub.ids(MAX_LISTED).await?) })
        .await?;
    Ok(axum::Json(ids).into_response())
}

#[derive(Debug, Deserialize)]
pub struct WsParams {
    key: Option<String>,
    id: Option<String>,
    token: Option<String>,
}

/// `GET {path}peerjs?key&id&token`: the signaling socket. Refusals are protocol frames on the
/// opened socket, as PeerJS clients expect.
async fn websocket(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiQuery(params): ApiQuery<WsParams>,
    ApiWebSocket(upgrade): ApiWebSocket,
) -> Result<Response, ApiError> {
    let (settings, hub) = settings(&state)?;
    let hub = Arc::clone(hub);
    let key = settings.key.clone();
    let max = state.settings.max_blob_bytes;
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session::run(socket, state, hub, ip, key, params))
        .into_response())
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_key",
        "Invalid key provided",
    )
}

/// A random RFC 4122 version-4 UUID, as the reference server hands out.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// PeerJS's own ID grammar (the client checks it too): alphanumeric words joined by single
/// spaces, `_` or `-`; we also cap the length.
pub fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric();
    (1..=128).contains(&bytes.len())
        && word(bytes[0])
        && word(bytes[bytes.len() - 1])
        && bytes.windows(2).all(|w| word(w[0]) || word(w[1]))
        && bytes
            .iter()
            .all(|&b| word(b) || matches!(b, b' ' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_peerjs_grammar() {
        for ok in [
            "a",
            "alice",
            "a-b_c d",
            "4f0c2d1e-0000-4000-8000-000000000000",
        ] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a b ",
            "a{b}",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(valid_id(&uuid_v4()));
    }
}
