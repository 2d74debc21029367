//! HTTP handlers, one file per resource, and the extractors they share.

pub mod blobs;
pub mod ops;
pub mod rooms;
pub mod watch;

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};

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
