//! HTTP handlers, one file per resource, and the extractors they share.

pub mod blobs;
pub mod openapi;
pub mod ops;
pub mod rooms;
mod socket_writes;
pub mod watch;

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::WebSocketUpgrade;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::model::{RoomCode, SlotName};

/// `axum::extract::Path` answering bad input with our JSON error.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` answering bad input with our JSON error.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `WebSocketUpgrade` answering a request that is no WebSocket handshake with our JSON error,
/// with a small read buffer (see [`WS_READ_BUFFER`]).
pub struct ApiWebSocket(pub WebSocketUpgrade);

/// tungstenite zero-fills its free read capacity, up to this much, before every socket read:
/// its 128 KiB default cost more CPU than all else a watch socket does (a profile showed 38% of
/// the server in memset). Larger frames still arrive whole; the buffer grows for them.
pub const WS_READ_BUFFER: usize = 4096;

impl<S: Send + Sync> FromRequestParts<S> for ApiWebSocket {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(|upgrade| Self(upgrade.read_buffer_size(WS_READ_BUFFER)))
            .map_err(|rejection| {
                ApiError::new(
                    rejection.status(),
                    "websocket_required",
                    rejection.body_text(),
                )
            })
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

/// Parses the `{code}` path segment.
pub fn room_code(raw: &str) -> Result<RoomCode, ApiError> {
    Ok(RoomCode::parse(raw)?)
}

/// Parses the `{code}` and `{slot}` path segments.
pub fn room_and_slot(raw: &(String, String)) -> Result<(RoomCode, SlotName), ApiError> {
    Ok((RoomCode::parse(&raw.0)?, SlotName::parse(&raw.1)?))
}
