//! Blobs: opaque bytes under a named slot, with versions, conditional writes and optional TTLs.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiPath, ApiQuery, room_and_slot};
use crate::app::{AppState, ClientIp};
use crate::error::ApiError;
use crate::limits::Bucket;
use crate::model::{Change, Precondition, PutBlob, RoomCode, SlotName};

/// Longest content type kept; clients send short MIME types.
const MAX_CONTENT_TYPE: usize = 200;
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Debug, Deserialize)]
pub struct PutParams {
    /// Blob TTL: seconds, or a duration such as `30s` or `5m`; at most the room's idle TTL.
    ttl: Option<String>,
}

/// `PUT /v1/rooms/{code}/blobs/{slot}`.
pub async fn put(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<PutParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (code, slot) = room_and_slot(&raw)?;
    let precondition = precondition(&headers)?;
    let content_type = content_type(&headers)?;
    let ttl_ms = params
        .ttl
        .as_deref()
        .map(|t| blob_ttl(t, state.settings.idle_ttl))
        .transpose()?;
    let data = read_body(&headers, body, state.settings.max_blob_bytes).await?;
    let put = PutBlob {
        slot,
        data,
        content_type,
        precondition,
        ttl_ms,
    };
    let change = store_put(&state, ip, &code, put).await?;
    Ok((
        [(header::ETAG, etag(change.version))],
        Json(put_answer(&change)),
    )
        .into_response())
}

/// A put as every native face makes it (HTTP `PUT`, a WebSocket `put`): the write bucket, then
/// the store, then the metrics.
pub(crate) async fn store_put(
    state: &AppState,
    ip: IpAddr,
    code: &RoomCode,
    put: PutBlob,
) -> Result<Change, ApiError> {
    state.rate_limits.check(Bucket::Write, ip)?;
    let size = put.data.len() as u64;
    let change = state
        .store
        .put_blob(code, put, state.clock.now_ms())
        .await?;
    count_put(state, size);
    Ok(change)
}

/// Puts in one room whose write tokens are taken, stored together in order (see
/// [`crate::store::Store::put_blobs`]), counted in the metrics.
pub(crate) async fn store_puts(
    state: &AppState,
    code: &RoomCode,
    puts: Vec<PutBlob>,
) -> Vec<Result<Change, ApiError>> {
    let sizes: Vec<u64> = puts.iter().map(|put| put.data.len() as u64).collect();
    let outcomes = state
        .store
        .put_blobs(code, puts, state.clock.now_ms())
        .await;
    outcomes
        .into_iter()
        .zip(sizes)
        .map(|(outcome, size)| {
            let change = outcome?;
            count_put(state, size);
            Ok(change)
        })
        .collect()
}

/// Counts a stored put of `size` bytes in the metrics.
fn count_put(state: &AppState, size: u64) {
    state.metrics.blobs_written.inc();
    state.metrics.blob_bytes_written.inc_by(size);
}

/// A blob delete as every native face makes it.
pub(crate) async fn store_delete(
    state: &AppState,
    ip: IpAddr,
    code: &RoomCode,
    slot: &SlotName,
    precondition: Precondition,
) -> Result<Change, ApiError> {
    state.rate_limits.check(Bucket::Write, ip)?;
    Ok(state
        .store
        .delete_blob(code, slot, precondition, state.clock.now_ms())
        .await?)
}

/// The body of a successful put.
pub(crate) fn put_answer(change: &Change) -> serde_json::Value {
    json!({
        "version": change.version,
        "room_expires_at": change.room_expires_at,
        "expires_at": change.expires_at,
    })
}

/// `GET /v1/rooms/{code}/blobs/{slot}`: the bytes as written, with their content type.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (code, slot) = room_and_slot(&raw)?;
    let blob = state.store.blob(&code, &slot, state.clock.now_ms()).await?;
    let content_type = HeaderValue::from_str(&blob.info.content_type)
        .unwrap_or(HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::ETAG, etag(blob.info.version)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, blob.data).into_response())
}

/// `DELETE /v1/rooms/{code}/blobs/{slot}` (honours `If-Match`).
pub async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (code, slot) = room_and_slot(&raw)?;
    let precondition = precondition(&headers)?;
    store_delete(&state, ip, &code, &slot, precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

/// `If-None-Match: *` (write once) or `If-Match: "<version>"` (compare and set).
fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_precondition", m);
    let text = |name| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| bad("precondition header is not text"))
            })
            .transpose()
    };
    match (text(header::IF_NONE_MATCH)?, text(header::IF_MATCH)?) {
        (None, None) => Ok(Precondition::None),
        (Some("*"), None) => Ok(Precondition::Absent),
        (Some(_), None) => Err(bad("If-None-Match supports only `*`")),
        (None, Some(tag)) => {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.trim_matches('"')
                .parse()
                .map(Precondition::Version)
                .map_err(|_| bad("If-Match must be a version ETag such as \"3\""))
        }
        (Some(_), Some(_)) => Err(bad("send If-Match or If-None-Match, not both")),
    }
}

fn content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(DEFAULT_CONTENT_TYPE.to_owned()),
        Some(value) => checked_content_type(value.to_str().ok()),
    }
}

/// A content type as given, if it is 1-200 visible ASCII characters (`None`: not text).
pub(crate) fn checked_content_type(text: Option<&str>) -> Result<String, ApiError> {
    match text {
        Some(text)
            if !text.is_empty()
                && text.len() <= MAX_CONTENT_TYPE
                && text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) =>
        {
            Ok(text.to_owned())
        }
        _ => Err(ApiError::bad_request(
            "invalid_content_type",
            format!("Content-Type must be 1-{MAX_CONTENT_TYPE} visible ASCII characters"),
        )),
    }
}

/// A blob TTL given as seconds or a duration (`30s`, `5m`), in ms; see [`bounded_blob_ttl`].
pub(crate) fn blob_ttl(raw: &str, idle_ttl: Duration) -> Result<u64, ApiError> {
    let ttl = raw
        .parse::<u64>()
        .map(Duration::from_secs)
        .or_else(|_| humantime::parse_duration(raw))
        .map_err(|_| {
            ApiError::bad_request("invalid_ttl", "ttl must be seconds or a duration like 30s")
        })?;
    bounded_blob_ttl(ttl, idle_ttl)
}

/// A blob TTL in ms, if it is positive and at most the room's idle TTL.
pub(crate) fn bounded_blob_ttl(ttl: Duration, idle_ttl: Duration) -> Result<u64, ApiError> {
    if ttl.is_zero() || ttl > idle_ttl {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!(
                "ttl must be positive and at most the room idle TTL ({}s)",
                idle_ttl.as_secs()
            ),
        ));
    }
    Ok(ttl.as_millis() as u64)
}

pub(crate) fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "blob_too_large",
        format!("blobs are limited to {max} bytes"),
    )
}

/// Reads the body up to `max` bytes; refuses a larger declared length before reading any.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large(max));
    }
    axum::body::to_bytes(body, max).await.map_err(|err| {
        let over = std::error::Error::source(&err)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
        if over {
            too_large(max)
        } else {
            ApiError::bad_request("body_read_failed", "could not read the request body")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(precondition(&h).unwrap(), Precondition::None);
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert_eq!(precondition(&h).unwrap(), Precondition::Absent);
        h.insert(header::IF_MATCH, "\"3\"".parse().unwrap());
        assert!(precondition(&h).is_err());
        h.remove(header::IF_NONE_MATCH);
        assert_eq!(precondition(&h).unwrap(), Precondition::Version(3));
        h.insert(header::IF_MATCH, "nope".parse().unwrap());
        assert!(precondition(&h).is_err());
    }

    #[test]
    fn blob_ttls_are_bounded_by_the_room() {
        let idle = Duration::from_secs(600);
        assert_eq!(blob_ttl("30", idle).unwrap(), 30_000);
        assert_eq!(blob_ttl("2m", idle).unwrap(), 120_000);
        for bad in ["0", "601", "11m", "soon"] {
            assert!(blob_ttl(bad, idle).is_err(), "{bad}");
        }
    }
}
