//! Operations endpoints and TURN credentials.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiQuery;
use crate::app::{AppState, ClientIp};
use crate::error::ApiError;
use crate::limits::Bucket;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers and the change feed is connected, and not draining.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down",
        ));
    }
    state.store.ping().await?;
    if !state.store.fanout().is_available() {
        return Err(ApiError::unavailable("the change feed is not connected"));
    }
    Ok(Json(json!({"status": "ready"})))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(bytes) = state.store.bytes_stored().await {
        state.metrics.bytes_stored.set(bytes as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CredentialParams {
    /// Optional user id folded into the TURN username (`<expiry>:<user>`).
    user: Option<String>,
}

/// `GET /turn-credentials`: `{"iceServers": [...], "ttl": seconds}` with TURN REST credentials
/// minted by the newest configured secret, as the seed apps' backends answer.
pub async fn turn_credentials(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiQuery(params): ApiQuery<CredentialParams>,
) -> Result<Json<Value>, ApiError> {
    let settings = &state.settings;
    if settings.stun_urls.is_empty() && settings.turn_urls.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "turn_not_configured",
            "this server has no STUN or TURN URLs configured",
        ));
    }
    let user = params.user.as_deref().filter(|u| !u.is_empty());
    if user.is_some_and(|u| u.len() > 64 || !u.bytes().all(|b| b.is_ascii_graphic() && b != b':')) {
        return Err(ApiError::bad_request(
            "invalid_user",
            "user must be 1-64 visible ASCII characters without ':'",
        ));
    }
    state.rate_limits.check(Bucket::Write, ip)?;
    let mut servers = Vec::new();
    if !settings.stun_urls.is_empty() {
        servers.push(json!({"urls": settings.stun_urls}));
    }
    if let (Some(secret), false) = (settings.turn_secrets.first(), settings.turn_urls.is_empty()) {
        let minted =
            common::turn_auth::mint(secret, user, settings.turn_ttl, state.clock.now_unix())
                .map_err(|e| ApiError::bad_request("invalid_user", e.to_string()))?;
        state.metrics.credentials_minted.inc();
        servers.push(json!({
            "urls": settings.turn_urls,
            "username": minted.username,
            "credential": minted.credential,
        }));
    }
    Ok(Json(
        json!({"iceServers": servers, "ttl": settings.turn_ttl.as_secs()}),
    ))
}
