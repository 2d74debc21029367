//! The one error shape every endpoint answers with: `{"error":{"code","message"}}`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::model::NameError;
use crate::store::StoreError;

/// An HTTP error with a stable machine-readable `code`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(retry_after)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        )
        .retry_after(Duration::from_secs(1))
    }

    /// A request that ran past `--request-timeout`.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .retry_after(Duration::from_secs(1))
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            set_retry_after(&mut response, after);
        }
        response
    }
}

/// Sets `Retry-After` to [`retry_after_secs`].
pub fn set_retry_after(response: &mut Response, after: Duration) {
    if let Ok(value) = HeaderValue::from_str(&retry_after_secs(after).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// A retry delay in whole seconds, rounded up so clients never retry early (at least 1).
pub fn retry_after_secs(after: Duration) -> u64 {
    u64::try_from(after.as_millis().div_ceil(1000).max(1)).unwrap_or(u64::MAX)
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NoRoom => Self::new(
                StatusCode::NOT_FOUND,
                "room_not_found",
                "no such room (it may have expired)",
            ),
            StoreError::NoSlot => {
                Self::new(StatusCode::NOT_FOUND, "slot_not_found", "no such slot")
            }
            StoreError::RoomExists => Self::new(
                StatusCode::CONFLICT,
                "room_exists",
                "a room with this code exists",
            ),
            StoreError::TooManySlots => Self::new(
                StatusCode::CONFLICT,
                "too_many_slots",
                "the room has reached its slot limit",
            ),
            StoreError::PreconditionFailed { current } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                match current {
                    Some(v) => format!("the slot is at version {v}"),
                    None => "the slot does not exist".to_owned(),
                },
            ),
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                Self::unavailable("the room store is unavailable; retry shortly")
            }
        }
    }
}

impl From<NameError> for ApiError {
    fn from(err: NameError) -> Self {
        let code = match err {
            NameError::RoomCode => "invalid_room_code",
            NameError::Slot => "invalid_slot_name",
        };
        Self::bad_request(code, err.to_string())
    }
}
