//! Twilio's Network Traversal token endpoint, `POST /2010-04-01/Accounts/{AccountSid}/Tokens.json`,
//! answering Twilio's JSON shape with our own STUN URLs and TURN REST credentials, so code
//! written against Twilio's SDK or REST API works with a changed base URL.

use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::CompatConfig;
use crate::app::{AppState, ClientIp};
use crate::error::{ApiError, set_retry_after};
use crate::limits::Bucket;
use crate::routes::blobs::read_body;

/// Largest form body read: the only field is `Ttl`.
const MAX_FORM_BYTES: usize = 4096;

/// Twilio's own ceiling for a token's `Ttl`.
const MAX_TTL: Duration = Duration::from_secs(48 * 3600);

/// The endpoint's account and secret.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    auth_token: String,
}

impl TwilioSettings {
    /// `None` unless both the SID and the token are set.
    pub fn from_config(config: &CompatConfig) -> Result<Option<Self>, String> {
        let sid = config.twilio_account_sid.as_deref().map(str::trim);
        let token = config.twilio_auth_token.as_ref().map(|t| t.0.trim());
        match (sid, token) {
            (None, None) => Ok(None),
            (Some(sid), Some(token)) if !sid.is_empty() && !token.is_empty() => {
                if !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err("--twilio-account-sid must be letters and digits".into());
                }
                Ok(Some(Self {
                    account_sid: sid.to_owned(),
                    auth_token: token.to_owned(),
                }))
            }
            _ => Err("--twilio-account-sid and --twilio-auth-token go together".into()),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/2010-04-01/Accounts/{sid}/Tokens.json", post(create_token))
}

/// A Twilio REST error body (`code`, `message`, `more_info`, `status`).
#[derive(Debug)]
struct TwilioError {
    status: StatusCode,
    code: u32,
    message: String,
    retry_after: Option<Duration>,
}

/// `axum::extract::Path` answering bad input in Twilio's error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(TwilioError))]
struct TwilioPath<T>(T);

impl TwilioError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            set_retry_after(&mut response, after);
        }
        response
    }
}

impl From<ApiError> for TwilioError {
    fn from(err: ApiError) -> Self {
        Self {
            retry_after: err.retry_after,
            ..Self::new(
                err.status,
                20_000 + u32::from(err.status.as_u16()),
                err.message,
            )
        }
    }
}

impl From<PathRejection> for TwilioError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::from(rejection).into()
    }
}

/// `POST /2010-04-01/Accounts/{sid}/Tokens.json` (HTTP Basic `sid:token`; optional form `Ttl`).
async fn create_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    TwilioPath(sid): TwilioPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TwilioError> {
    let Some(twilio) = &state.settings.compat.twilio else {
        return Err(TwilioError::new(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ));
    };
    if !authorized(twilio, &sid, &headers) {
        return Err(TwilioError::new(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authenticate",
        ));
    }
    // This layer sits outside the request time limit, so the upload is bounded here.
    let body = state
        .within_time_limit(read_body(&headers, body, MAX_FORM_BYTES))
        .await
        .map_err(|err| match err.status {
            StatusCode::PAYLOAD_TOO_LARGE => TwilioError::new(
                err.status,
                20413,
                format!("the form body exceeds {MAX_FORM_BYTES} bytes"),
            ),
            _ => err.into(),
        })?;
    let ttl = requested_ttl(&body)?.unwrap_or(state.settings.turn_ttl);
    // Our credentials never outlive the server's configured TURN TTL.
    let ttl = ttl.min(state.settings.turn_ttl);
    let settings = &state.settings;
    let Some(secret) = settings.turn_secrets.first() else {
        return Err(TwilioError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "this server has no TURN secret configured",
        ));
    };
    state.rate_limits.check(Bucket::Write, ip)?;
    let now = state.clock.now_unix();
    let minted = common::turn_auth::mint(secret, None, ttl, now)
        .map_err(|e| TwilioError::new(StatusCode::INTERNAL_SERVER_ERROR, 20500, e.to_string()))?;
    state.metrics.credentials_minted.inc();
    let mut servers: Vec<Value> = settings
        .stun_urls
        .iter()
        .map(|url| json!({"url": url, "urls": url}))
        .collect();
    servers.extend(settings.turn_urls.iter().map(|url| {
        json!({
            "url": url,
            "urls": url,
            "username": minted.username,
            "credential": minted.credential,
        })
    }));
    let date = twilio_date(now);
    let body = json!({
        "account_sid": twilio.account_sid,
        "date_created": date,
        "date_updated": date,
        "username": minted.username,
        "password": minted.credential,
        "ttl": ttl.as_secs().to_string(),
        "ice_servers": servers,
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// Basic auth with the configured SID and token, for the SID in the path.
fn authorized(twilio: &TwilioSettings, path_sid: &str, headers: &HeaderMap) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some((user, password)) = std::str::from_utf8(&decoded)
        .ok()
        .and_then(|s| s.split_once(':'))
    else {
        return false;
    };
    let user_ok = user.as_bytes().ct_eq(twilio.account_sid.as_bytes());
    let token_ok = password.as_bytes().ct_eq(twilio.auth_token.as_bytes());
    bool::from(user_ok & token_ok) && path_sid == twilio.account_sid
}

/// The form field `Ttl` (seconds, 1 to 48 h), if sent.
fn requested_ttl(body: &[u8]) -> Result<Option<Duration>, TwilioError> {
    let bad = || {
        TwilioError::new(
            StatusCode::BAD_REQUEST,
            21602,
            format!(
                "Ttl must be a whole number of seconds from 1 to {}",
                MAX_TTL.as_secs()
            ),
        )
    };
    for (key, value) in form_urlencoded::parse(body) {
        if key == "Ttl" {
            let secs: u64 = value.trim().parse().map_err(|_| bad())?;
            let ttl = Duration::from_secs(secs);
            if ttl.is_zero() || ttl > MAX_TTL {
                return Err(bad());
            }
            return Ok(Some(ttl));
        }
    }
    Ok(None)
}

/// RFC 2822 time as Twilio writes it: `Mon, 23 Nov 2026 22:00:00 +0000`.
fn twilio_date(unix: u64) -> String {
    let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix));
    http.strip_suffix(" GMT")
        .map_or(http.clone(), |t| format!("{t} +0000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_use_twilio_format() {
        assert_eq!(twilio_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn ttl_is_read_from_the_form() {
        assert_eq!(requested_ttl(b"").unwrap(), None);
        assert_eq!(
            requested_ttl(b"Ttl=3600").unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert!(requested_ttl(b"Ttl=0").is_err());
        assert!(requested_ttl(b"Ttl=soon").is_err());
        assert!(requested_ttl(b"Ttl=999999").is_err());
    }
}
