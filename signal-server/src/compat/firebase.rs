//! The Firebase Realtime Database REST subset pypeer speaks: `GET`/`PUT`/`DELETE` (and streaming
//! `GET` with `Accept: text/event-stream`) of `/rooms/{ID}.json` and `/rooms/{ID}/{slot}.json`,
//! plus the admin listing `GET /rooms.json?auth=`.
//!
//! A room ID is a room code and each child a slot holding the child's JSON (content type
//! `application/json`), so these rooms share the native store's TTLs, limits, janitor and
//! metrics. Firebase paths exist implicitly: the first write creates the room under the
//! client's code. Errors answer Firebase's shape, `{"error": "..."}`, with our status codes.

use std::net::IpAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::CompatConfig;
use super::firebase_stream;
use crate::app::{AppState, ClientIp};
use crate::error::ApiError;
use crate::limits::Bucket;
use crate::model::{Blob, NameError, Precondition, PutBlob, RoomCode, SlotName};
use crate::routes::blobs::read_body;
use crate::store::StoreError;

const JSON: &str = "application/json";

/// The Firebase layer's settings.
#[derive(Debug, Clone)]
pub struct FirebaseSettings {
    /// Path prefix without a trailing slash (`/firebase`), or empty for the root.
    pub prefix: String,
    pub admin_secret: Option<String>,
    pub keep_alive: Duration,
    pub list_max: usize,
}

impl FirebaseSettings {
    /// `None` when the layer is off.
    pub fn from_config(config: &CompatConfig, client_codes: bool) -> Result<Option<Self>, String> {
        let prefix = config.firebase_prefix.trim();
        if prefix == "off" {
            return Ok(None);
        }
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains(['{', '}', '*'])) {
            return Err("--firebase-prefix must start with '/' (or be `off`)".into());
        }
        if !client_codes {
            return Err(
                "--firebase-prefix needs --client-codes (Firebase clients name their rooms); \
                 set --firebase-prefix off to disable the layer"
                    .into(),
            );
        }
        if config.firebase_keep_alive.is_zero() || config.firebase_list_max == 0 {
            return Err("--firebase-keep-alive and --firebase-list-max must be positive".into());
        }
        Ok(Some(Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
            admin_secret: config
                .firebase_admin_secret
                .as_ref()
                .map(|s| s.0.clone())
                .filter(|s| !s.is_empty()),
            keep_alive: config.firebase_keep_alive,
            list_max: config.firebase_list_max,
        }))
    }
}

/// The layer's routes under `prefix`. They sit outside the request time limit (streams live
/// long); non-streaming calls bound their own store time.
pub fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/rooms.json"), any(list))
        .route(&format!("{prefix}/rooms/{{file}}"), any(room))
        .route(&format!("{prefix}/rooms/{{room}}/{{file}}"), any(slot))
        .route(&format!("{prefix}/{{*rest}}"), any(unsupported))
}

/// What a request addresses.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Room(RoomCode),
    Slot(RoomCode, SlotName),
}

impl Target {
    pub(super) fn code(&self) -> &RoomCode {
        match self {
            Self::Room(code) | Self::Slot(code, _) => code,
        }
    }
}

/// `axum::extract::Path` answering bad input in Firebase's error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(FirebaseError))]
struct FbPath<T>(T);

/// `axum::extract::Query` answering bad input in Firebase's error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(FirebaseError))]
struct FbQuery<T>(T);

/// A Firebase-shaped error: `{"error": message}` with the native error's status.
#[derive(Debug)]
pub struct FirebaseError(ApiError);

impl<E: Into<ApiError>> From<E> for FirebaseError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for FirebaseError {
    fn into_response(self) -> Response {
        let mut response = self.0.clone().into_response();
        let body = serde_json::json!({ "error": self.0.message }).to_string();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(JSON));
        *response.body_mut() = Body::from(body);
        response
    }
}

type FbResult = Result<Response, FirebaseError>;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    auth: Option<String>,
}

/// `GET {prefix}/rooms.json?auth=SECRET`: every live room with its children.
async fn list(
    State(state): State<AppState>,
    method: Method,
    FbQuery(params): FbQuery<ListParams>,
    headers: HeaderMap,
) -> FbResult {
    let settings = firebase(&state)?;
    if method != Method::GET {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the room listing supports GET only",
        )
        .into());
    }
    let allowed = match (&settings.admin_secret, &params.auth) {
        (Some(secret), Some(given)) => bool::from(secret.as_bytes().ct_eq(given.as_bytes())),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "permission_denied",
            "Permission denied",
        )
        .into());
    }
    if wants_stream(&headers) {
        return Err(ApiError::bad_request(
            "stream_unsupported",
            "the room listing cannot be streamed",
        )
        .into());
    }
    let limit = settings.list_max;
    let listing = state
        .within_time_limit(async {
            let now = state.clock.now_ms();
            let codes = state.store.room_codes(limit + 1, now).await?;
            if codes.len() > limit {
                return Ok(None);
            }
            let mut rooms = Map::new();
            for code in codes {
                if let Value::Object(children) = room_value(&state, &code, now).await? {
                    rooms.insert(code.as_str().to_owned(), Value::Object(children));
                }
            }
            Ok(Some(rooms))
        })
        .await?;
    match listing {
        Some(rooms) if rooms.is_empty() => Ok(json(Value::Null)),
        Some(rooms) => Ok(json(Value::Object(rooms))),
        None => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_rooms",
            format!(
                "Data requested exceeds the maximum size that can be accessed with a single \
                 request (more than {limit} rooms)"
            ),
        )
        .into()),
    }
}

/// `/rooms/{ID}.json`.
async fn room(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    method: Method,
    FbPath(file): FbPath<String>,
    headers: HeaderMap,
    body: Body,
) -> FbResult {
    firebase(&state)?;
    let code = RoomCode::parse(json_file(&file)?)?;
    serve(state, ip, method, Target::Room(code), headers, body).await
}

/// `/rooms/{ID}/{slot}.json`.
async fn slot(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    method: Method,
    FbPath((room, file)): FbPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> FbResult {
    firebase(&state)?;
    let code = RoomCode::parse(&room)?;
    let slot = SlotName::parse(json_file(&file)?)?;
    serve(state, ip, method, Target::Slot(code, slot), headers, body).await
}

async fn unsupported() -> FirebaseError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unsupported_path",
        "this server's Firebase layer serves /rooms.json, /rooms/{ID}.json and \
         /rooms/{ID}/{child}.json",
    )
    .into()
}

async fn serve(
    state: AppState,
    ip: IpAddr,
    method: Method,
    target: Target,
    headers: HeaderMap,
    body: Body,
) -> FbResult {
    match method {
        Method::GET if wants_stream(&headers) => Ok(firebase_stream::open(state, ip, target)
            .await?
            .into_response()),
        Method::GET => {
            let value = state.within_time_limit(read_value(&state, &target)).await?;
            Ok(json(value))
        }
        Method::PUT => {
            // The upload counts against the time limit too, as on the native PUT.
            let value = state
                .within_time_limit(async {
                    let data = read_body(&headers, body, state.settings.max_blob_bytes).await?;
                    let value: Value = serde_json::from_slice(&data).map_err(|_| {
                        ApiError::bad_request(
                            "invalid_json",
                            "Invalid data; couldn't parse JSON object, array, or value.",
                        )
                    })?;
                    write(&state, ip, &target, &value).await?;
                    Ok(value)
                })
                .await?;
            Ok(json(value))
        }
        Method::DELETE => {
            state
                .within_time_limit(write(&state, ip, &target, &Value::Null))
                .await?;
            Ok(json(Value::Null))
        }
        _ => Err(not_allowed()),
    }
}

/// The current value at `target`: a slot's JSON, a room's object of children, or `null`.
pub(super) async fn read_value(state: &AppState, target: &Target) -> Result<Value, ApiError> {
    let now = state.clock.now_ms();
    match target {
        Target::Slot(code, slot) => match state.store.blob(code, slot, now).await {
            Ok(blob) => Ok(blob_value(&blob).unwrap_or(Value::Null)),
            Err(StoreError::NoRoom | StoreError::NoSlot) => Ok(Value::Null),
            Err(err) => Err(err.into()),
        },
        Target::Room(code) => room_value(state, code, now).await,
    }
}

/// A room's children as one object; `null` for a missing or empty room. Blobs written through
/// the native API that are not JSON have no Firebase value and are left out.
///
/// The room and its blobs are separate reads, so a write in between could mix two states (a
/// stream once sent `{"offer": 2}` from before a delete, without the `answer` deleted with it):
/// a read that saw the room change is retried, a few times under constant writes.
async fn room_value(state: &AppState, code: &RoomCode, now: u64) -> Result<Value, ApiError> {
    let mut value = Value::Null;
    for _ in 0..CONSISTENT_READ_ATTEMPTS {
        match room_snapshot(state, code, now).await? {
            Snapshot::Consistent(consistent) => return Ok(consistent),
            Snapshot::Changed(last) => value = last,
        }
    }
    Ok(value)
}

const CONSISTENT_READ_ATTEMPTS: usize = 8;

enum Snapshot {
    Consistent(Value),
    /// The room changed while its blobs were read: this value may mix two states.
    Changed(Value),
}

async fn room_snapshot(state: &AppState, code: &RoomCode, now: u64) -> Result<Snapshot, ApiError> {
    let info = match state.store.room(code, now).await {
        Ok(info) => info,
        Err(StoreError::NoRoom) => return Ok(Snapshot::Consistent(Value::Null)),
        Err(err) => return Err(err.into()),
    };
    let mut children = Map::new();
    let mut changed = false;
    for slot in info.slots {
        match state.store.blob(code, &slot.name, now).await {
            Ok(blob) => {
                changed |= blob.info.version > info.version;
                if let Some(value) = blob_value(&blob) {
                    children.insert(slot.name.as_str().to_owned(), value);
                }
            }
            // Deleted since the room was read: the room as it is now is gone.
            Err(StoreError::NoRoom) => return Ok(Snapshot::Consistent(Value::Null)),
            Err(StoreError::NoSlot) => changed = true,
            Err(err) => return Err(err.into()),
        }
    }
    let value = if children.is_empty() {
        Value::Null
    } else {
        Value::Object(children)
    };
    Ok(if changed {
        Snapshot::Changed(value)
    } else {
        Snapshot::Consistent(value)
    })
}

fn blob_value(blob: &Blob) -> Option<Value> {
    serde_json::from_slice(&blob.data).ok()
}

/// Sets `target` to `value` (`null` deletes), under the native rate limits.
async fn write(
    state: &AppState,
    ip: IpAddr,
    target: &Target,
    value: &Value,
) -> Result<(), ApiError> {
    let now = state.clock.now_ms();
    match (target, value) {
        (Target::Slot(code, slot), Value::Null) => {
            state.rate_limits.check(Bucket::Write, ip)?;
            ignore_missing(
                state
                    .store
                    .delete_blob(code, slot, Precondition::None, now)
                    .await,
            )
        }
        (Target::Slot(code, slot), value) => {
            state.rate_limits.check(Bucket::Write, ip)?;
            put_child(state, ip, code, slot, value, now).await
        }
        (Target::Room(code), Value::Null) => {
            state.rate_limits.check(Bucket::Write, ip)?;
            ignore_missing(state.store.delete_room(code, now).await)
        }
        (Target::Room(code), Value::Object(children)) => {
            let children = children
                .iter()
                .map(|(name, value)| Ok((SlotName::parse(name)?, value)))
                .collect::<Result<Vec<_>, NameError>>()?;
            for _ in 0..children.len().max(1) {
                state.rate_limits.check(Bucket::Write, ip)?;
            }
            replace_room(state, ip, code, children, now).await
        }
        (Target::Room(_), _) => Err(ApiError::bad_request(
            "invalid_room_value",
            "a room's value must be an object of children (or null to delete it)",
        )),
    }
}

/// Makes the room hold exactly `children`: writes each, then deletes the ones not named.
async fn replace_room(
    state: &AppState,
    ip: IpAddr,
    code: &RoomCode,
    children: Vec<(SlotName, &Value)>,
    now: u64,
) -> Result<(), ApiError> {
    let existing = match state.store.room(code, now).await {
        Ok(info) => info.slots.into_iter().map(|s| s.name).collect(),
        Err(StoreError::NoRoom) => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    for stale in existing
        .iter()
        .filter(|name| !children.iter().any(|(n, v)| n == *name && !v.is_null()))
    {
        ignore_missing(
            state
                .store
                .delete_blob(code, stale, Precondition::None, now)
                .await,
        )?;
    }
    for (slot, value) in children.iter().filter(|(_, v)| !v.is_null()) {
        put_child(state, ip, code, slot, value, now).await?;
    }
    Ok(())
}

/// Writes one child, creating the room under the client's code on first use.
async fn put_child(
    state: &AppState,
    ip: IpAddr,
    code: &RoomCode,
    slot: &SlotName,
    value: &Value,
    now: u64,
) -> Result<(), ApiError> {
    let data = bytes::Bytes::from(value.to_string());
    let put = || PutBlob {
        slot: slot.clone(),
        data: data.clone(),
        content_type: JSON.to_owned(),
        precondition: Precondition::None,
        ttl_ms: None,
    };
    let size = data.len() as u64;
    match state.store.put_blob(code, put(), now).await {
        Err(StoreError::NoRoom) => {
            state.rate_limits.check(Bucket::Create, ip)?;
            match state.store.create_room(code, now).await {
                Ok(_) => state.metrics.rooms_created.inc(),
                // Another writer created it first.
                Err(StoreError::RoomExists) => {}
                Err(err) => return Err(err.into()),
            }
            state.store.put_blob(code, put(), now).await?;
        }
        other => {
            other?;
        }
    }
    state.metrics.blobs_written.inc();
    state.metrics.blob_bytes_written.inc_by(size);
    Ok(())
}

fn ignore_missing<T>(result: Result<T, StoreError>) -> Result<(), ApiError> {
    match result {
        Ok(_) | Err(StoreError::NoRoom | StoreError::NoSlot) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn firebase(state: &AppState) -> Result<&FirebaseSettings, ApiError> {
    state
        .settings
        .compat
        .firebase
        .as_ref()
        .ok_or_else(ApiError::not_found)
}

/// The name before `.json`; Firebase REST paths always end in it.
fn json_file(file: &str) -> Result<&str, ApiError> {
    file.strip_suffix(".json").ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_json_path",
            "Firebase REST paths end in .json",
        )
    })
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

fn json(value: Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, JSON),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn not_allowed() -> FirebaseError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this Firebase layer supports GET, PUT and DELETE",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_end_in_json() {
        assert_eq!(json_file("ABC123.json").unwrap(), "ABC123");
        assert!(json_file("ABC123").is_err());
    }

    #[test]
    fn streams_are_asked_for_by_accept() {
        let mut headers = HeaderMap::new();
        assert!(!wants_stream(&headers));
        headers.insert(header::ACCEPT, "text/event-stream".parse().unwrap());
        assert!(wants_stream(&headers));
    }
}
