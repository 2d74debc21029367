//! Rooms: create (server or client code), read, delete.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiPath, room_code};
use crate::app::{AppState, ClientIp};
use crate::error::ApiError;
use crate::limits::Bucket;
use crate::model::RoomCode;
use crate::store::StoreError;

/// Random codes tried before giving up; with 31^6 codes a clash is already rare.
const CODE_ATTEMPTS: usize = 8;

/// `POST /v1/rooms`: a new room under a fresh server-allocated code.
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
) -> Result<Response, ApiError> {
    state.rate_limits.check(Bucket::Create, ip)?;
    for _ in 0..CODE_ATTEMPTS {
        let code = RoomCode::random();
        match state.store.create_room(&code, state.clock.now_ms()).await {
            Ok(room) => {
                state.metrics.rooms_created.inc();
                tracing::info!(room = %code, "room created");
                let location = format!("/v1/rooms/{}", room.code);
                return Ok((
                    StatusCode::CREATED,
                    [(header::LOCATION, location)],
                    Json(room),
                )
                    .into_response());
            }
            Err(StoreError::RoomExists) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::unavailable(
        "could not allocate a free room code; retry",
    ))
}

/// `PUT /v1/rooms/{code}`: creates the room under the client's code (201), or returns the live
/// room of that code (200), so two peers may both "create" it.
pub async fn create_with_code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !state.settings.client_codes {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "client_codes_disabled",
            "this server allocates room codes itself: use POST /v1/rooms",
        ));
    }
    let code = room_code(&raw)?;
    state.rate_limits.check(Bucket::Create, ip)?;
    let now = state.clock.now_ms();
    match state.store.create_room(&code, now).await {
        Ok(room) => {
            state.metrics.rooms_created.inc();
            Ok((StatusCode::CREATED, Json(room)).into_response())
        }
        Err(StoreError::RoomExists) => {
            Ok(Json(state.store.room(&code, now).await?).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

/// `GET /v1/rooms/{code}`: the room's version, expiry and slot list.
pub async fn info(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Response, ApiError> {
    let code = room_code(&raw)?;
    let room = state.store.room(&code, state.clock.now_ms()).await?;
    Ok(Json(room).into_response())
}

/// `DELETE /v1/rooms/{code}`: the room and all its blobs; watchers get `room_deleted`.
pub async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let code = room_code(&raw)?;
    state.rate_limits.check(Bucket::Write, ip)?;
    state.store.delete_room(&code, state.clock.now_ms()).await?;
    tracing::info!(room = %code, "room deleted");
    Ok(StatusCode::NO_CONTENT)
}
