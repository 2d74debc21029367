//! Writes over the watch WebSocket: a client holding `/v1/rooms/{code}/ws` open may put and
//! delete that room's blobs through it, one JSON text frame each, instead of one HTTP request
//! each. Same checks, limits, versions and change events as `PUT`/`DELETE .../blobs/{slot}`;
//! it saves the per-request HTTP work, which is most of a small write's cost.
//!
//! Request: `{"id": any, "op": "put" | "delete", "slot": name, "data": base64 (put),
//! "content_type", "if_none_match": "*", "if_match": version, "ttl": seconds or "30s"}`.
//! Answer, one frame per request in request order: `{"type": "ack", "id", "version", ...}` or
//! `{"type": "error", "id", "status", "error": {"code", "message"}}`. A client may send frames
//! back to back without awaiting answers; they are applied in order, each as if alone (a
//! conditional write sees the writes before it). Puts received together go to the store
//! together ([`crate::store::Store::put_blobs`]): on Redis, one read and one write of the room.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::blobs::{
    DEFAULT_CONTENT_TYPE, blob_ttl, bounded_blob_ttl, checked_content_type, store_delete,
    store_puts, too_large,
};
use crate::app::AppState;
use crate::error::{ApiError, retry_after_secs};
use crate::limits::Bucket;
use crate::model::{Change, Precondition, PutBlob, RoomCode, SlotName};

/// Room for the request's JSON around the base64 of a largest blob.
const FRAME_OVERHEAD: usize = 4096;

/// The largest frame a client may send: a largest blob, base64-encoded, with its fields.
pub(super) fn max_frame_bytes(max_blob_bytes: usize) -> usize {
    max_blob_bytes.div_ceil(3) * 4 + FRAME_OVERHEAD
}

/// A write frame; the long fields borrow from it (base64 and slot names need no unescaping).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<'a> {
    #[serde(default)]
    id: Value,
    op: Op,
    #[serde(borrow)]
    slot: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<Cow<'a, str>>,
    content_type: Option<String>,
    if_none_match: Option<String>,
    if_match: Option<u64>,
    ttl: Option<Ttl>,
}

/// A successful write's answer frame.
#[derive(Serialize)]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a Value,
    version: u64,
    room_expires_at: u64,
    /// Puts only: the blob's own expiry, `null` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Option<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Put,
    Delete,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Ttl {
    Seconds(u64),
    Text(String),
}

/// The answer frames to request frames received together, in order; `None` is a binary frame.
pub(super) async fn answer_all(
    state: &AppState,
    ip: IpAddr,
    code: &RoomCode,
    frames: &[Option<&str>],
) -> Vec<String> {
    let mut answers = vec![String::new(); frames.len()];
    // Checked puts not yet stored, with the frame index each answers.
    let mut run = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let Some(frame) = frame else {
            answers[i] = binary_refused();
            continue;
        };
        let request = match parse(frame) {
            Ok(request) => request,
            Err(refusal) => {
                answers[i] = refusal;
                continue;
            }
        };
        match request.op {
            Op::Put => match checked_put(state, ip, &request) {
                Ok(put) => run.push((i, request, put)),
                Err(err) => answers[i] = error_answer(state, &request.id, &err),
            },
            Op::Delete => {
                // The puts before it go first: order is the client's.
                store_run(state, code, &mut run, &mut answers).await;
                let outcome = state
                    .within_time_limit(delete(state, ip, code, &request))
                    .await;
                answers[i] = match outcome {
                    Ok(change) => ack(state, &request, &change),
                    Err(err) => error_answer(state, &request.id, &err),
                };
            }
        }
    }
    store_run(state, code, &mut run, &mut answers).await;
    answers
}

/// The request in a text frame, or the refusal to send back.
fn parse(frame: &str) -> Result<Request<'_>, String> {
    serde_json::from_str::<Request>(frame).map_err(|err| {
        // Echo the id when the frame is JSON with one, so the client can match the refusal.
        let id = serde_json::from_str::<Value>(frame)
            .ok()
            .and_then(|mut v| v.get_mut("id").map(Value::take))
            .unwrap_or(Value::Null);
        let err = ApiError::bad_request("invalid_request", format!("bad write frame: {err}"));
        error_frame(&id, &err)
    })
}

/// Stores the checked puts of `run` together and answers each.
async fn store_run(
    state: &AppState,
    code: &RoomCode,
    run: &mut Vec<(usize, Request<'_>, PutBlob)>,
    answers: &mut [String],
) {
    if run.is_empty() {
        return;
    }
    let (requests, puts): (Vec<_>, Vec<_>) = run
        .drain(..)
        .map(|(i, request, put)| ((i, request), put))
        .unzip();
    let stored = state
        .within_time_limit(async { Ok(store_puts(state, code, puts).await) })
        .await;
    match stored {
        Ok(outcomes) => {
            for ((i, request), outcome) in requests.iter().zip(outcomes) {
                answers[*i] = match outcome {
                    Ok(change) => ack(state, request, &change),
                    Err(err) => error_answer(state, &request.id, &err),
                };
            }
        }
        Err(err) => {
            for (i, request) in &requests {
                answers[*i] = error_answer(state, &request.id, &err);
            }
        }
    }
}

fn ack(state: &AppState, request: &Request<'_>, change: &Change) -> String {
    state.metrics.socket_writes_ok.inc();
    let ack = Ack {
        kind: "ack",
        id: &request.id,
        version: change.version,
        room_expires_at: change.room_expires_at,
        expires_at: matches!(request.op, Op::Put).then_some(change.expires_at),
    };
    serde_json::to_string(&ack).expect("an ack serializes")
}

fn error_answer(state: &AppState, id: &Value, err: &ApiError) -> String {
    let status = err.status.as_u16().to_string();
    state
        .metrics
        .socket_writes
        .with_label_values(&[&status])
        .inc();
    error_frame(id, err)
}

/// The answer to a binary frame: writes are JSON text frames.
pub(super) fn binary_refused() -> String {
    let err = ApiError::bad_request(
        "text_frames_only",
        "send writes as JSON text frames (blob data base64-encoded)",
    );
    error_frame(&Value::Null, &err)
}

fn error_frame(id: &Value, err: &ApiError) -> String {
    let mut frame = json!({
        "type": "error",
        "id": id,
        "status": err.status.as_u16(),
        "error": {"code": err.code, "message": err.message},
    });
    if let Some(after) = err.retry_after {
        frame["retry_after"] = retry_after_secs(after).into();
    }
    frame.to_string()
}

async fn delete(
    state: &AppState,
    ip: IpAddr,
    code: &RoomCode,
    request: &Request<'_>,
) -> Result<Change, ApiError> {
    let slot = SlotName::parse(&request.slot)?;
    let precondition = precondition(request.if_none_match.as_deref(), request.if_match)?;
    if request.data.is_some() || request.content_type.is_some() || request.ttl.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a delete takes only id, op, slot and if_match",
        ));
    }
    store_delete(state, ip, code, &slot, precondition).await
}

/// A put request checked and decoded, its write token taken: ready for the store.
fn checked_put(state: &AppState, ip: IpAddr, request: &Request<'_>) -> Result<PutBlob, ApiError> {
    let slot = SlotName::parse(&request.slot)?;
    let precondition = precondition(request.if_none_match.as_deref(), request.if_match)?;
    let content_type = match request.content_type.as_deref() {
        None => DEFAULT_CONTENT_TYPE.to_owned(),
        Some(text) => checked_content_type(Some(text))?,
    };
    let ttl_ms = match &request.ttl {
        None => None,
        Some(Ttl::Seconds(s)) => Some(bounded_blob_ttl(
            Duration::from_secs(*s),
            state.settings.idle_ttl,
        )?),
        Some(Ttl::Text(t)) => Some(blob_ttl(t, state.settings.idle_ttl)?),
    };
    let data = decode_data(request.data.as_deref(), state.settings.max_blob_bytes)?;
    state.rate_limits.check(Bucket::Write, ip)?;
    Ok(PutBlob {
        slot,
        data,
        content_type,
        precondition,
        ttl_ms,
    })
}

fn precondition(
    if_none_match: Option<&str>,
    if_match: Option<u64>,
) -> Result<Precondition, ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_precondition", m);
    match (if_none_match, if_match) {
        (None, None) => Ok(Precondition::None),
        (Some("*"), None) => Ok(Precondition::Absent),
        (Some(_), None) => Err(bad("if_none_match supports only \"*\"")),
        (None, Some(version)) => Ok(Precondition::Version(version)),
        (Some(_), Some(_)) => Err(bad("send if_match or if_none_match, not both")),
    }
}

fn decode_data(data: Option<&str>, max: usize) -> Result<bytes::Bytes, ApiError> {
    let data = data.ok_or_else(|| {
        ApiError::bad_request("invalid_request", "a put needs data (the blob, base64)")
    })?;
    // Refuse by the encoded length first, so an oversized blob is never decoded.
    if data.len() > max.div_ceil(3) * 4 {
        return Err(too_large(max));
    }
    let bytes = BASE64.decode(data).map_err(|_| {
        ApiError::bad_request("invalid_data", "data must be standard base64 with padding")
    })?;
    if bytes.len() > max {
        return Err(too_large(max));
    }
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_from_fields() {
        assert_eq!(precondition(None, None).unwrap(), Precondition::None);
        assert_eq!(precondition(Some("*"), None).unwrap(), Precondition::Absent);
        assert_eq!(
            precondition(None, Some(4)).unwrap(),
            Precondition::Version(4)
        );
        assert!(precondition(Some("3"), None).is_err());
        assert!(precondition(Some("*"), Some(4)).is_err());
    }

    #[test]
    fn data_is_bounded_before_and_after_decoding() {
        assert_eq!(&decode_data(Some("aGk="), 2).unwrap()[..], b"hi");
        assert_eq!(decode_data(Some("aGk="), 1).unwrap_err().status, 413);
        assert_eq!(decode_data(Some("aGVsbG8="), 2).unwrap_err().status, 413);
        assert_eq!(decode_data(Some("!!"), 8).unwrap_err().code, "invalid_data");
        assert_eq!(decode_data(None, 8).unwrap_err().code, "invalid_request");
        assert!(max_frame_bytes(65_536) > 65_536 * 4 / 3);
    }
}
