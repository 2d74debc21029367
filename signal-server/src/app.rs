//! Shared state of the HTTP handlers and the router that wires them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use common::turn_auth::SharedSecret;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::limits::{RateLimits, WatchCaps, WatchPermit, client_ip};
use crate::metrics::Metrics;
use crate::routes;
use crate::store::Store;

/// Settings the handlers need, taken from the config once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_blob_bytes: usize,
    pub idle_ttl: Duration,
    pub client_codes: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub request_timeout: Duration,
    pub turn_secrets: Vec<SharedSecret>,
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub turn_ttl: Duration,
    pub cors_origins: Vec<String>,
    pub compat: crate::compat::CompatSettings,
    pub web: crate::web::WebSettings,
}

/// Everything a handler may touch, shared behind one `Arc` so per-request clones stay cheap.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> Self {
        Self(Arc::new(app))
    }

    /// Admits one more watcher of `room` from `ip`, counting a refusal in the metrics.
    pub fn admit_watcher(&self, room: &str, ip: IpAddr) -> Result<WatchPermit, ApiError> {
        self.watch_caps.admit(room, ip).inspect_err(|_| {
            self.metrics
                .rate_limited
                .with_label_values(&["watchers"])
                .inc();
        })
    }

    /// Runs `work` within the request time limit: the time-limit layer, and handlers outside it
    /// (the compatibility layers, whose streams live long) that answer in their own shape.
    pub async fn within_time_limit<T>(
        &self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout(self.settings.request_timeout, work)
            .await
            .unwrap_or_else(|_| Err(ApiError::timeout()))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The process-wide parts of the service.
pub struct App {
    pub store: Store,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub rate_limits: Arc<RateLimits>,
    pub watch_caps: Arc<WatchCaps>,
    /// The PeerJS relay, when that layer is on.
    pub peerjs: Option<Arc<crate::compat::peerjs::hub::Hub>>,
    /// Cancelled on SIGTERM: watches send a final `shutdown` event and end.
    pub shutdown: CancellationToken,
}

/// The client's IP (see [`client_ip`] for proxies).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.settings.trusted_proxies,
        )))
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let spec = routes::openapi::OpenApi::new(&state.settings.compat);
    let bounded = Router::new()
        .route("/v1/rooms", post(routes::rooms::create))
        .route(
            "/v1/rooms/{code}",
            put(routes::rooms::create_with_code)
                .get(routes::rooms::info)
                .delete(routes::rooms::delete),
        )
        .route(
            "/v1/rooms/{code}/blobs/{slot}",
            put(routes::blobs::put)
                .get(routes::blobs::get)
                .delete(routes::blobs::delete),
        )
        .route("/turn-credentials", get(routes::ops::turn_credentials))
        .route("/v1/turn-credentials", get(routes::ops::turn_credentials))
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .route(
            "/openapi.json",
            get(move || std::future::ready(spec.response())),
        )
        .layer(middleware::from_fn_with_state(state.clone(), time_limit));
    // Streams and long-polls keep their own clocks, so they sit outside the request time limit.
    let streams = Router::new()
        .route("/v1/rooms/{code}/events", get(routes::watch::sse))
        .route("/v1/rooms/{code}/ws", get(routes::watch::websocket))
        .route("/v1/rooms/{code}/changes", get(routes::watch::long_poll))
        .merge(crate::compat::routes(&state.settings.compat))
        .merge(crate::web::routes(&state.settings.web));
    bounded
        .merge(streams)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(cors(&state.settings.cors_origins))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(Any)
        .expose_headers([
            HeaderName::from_static("etag"),
            HeaderName::from_static("retry-after"),
        ])
        .max_age(Duration::from_secs(600))
}

/// Counts every request by route template (never the raw path: it holds room codes).
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(elapsed.as_secs_f64());
    tracing::debug!(%route, %method, status = status.as_u16(), ?elapsed, "request");
    response
}

async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state
        .within_time_limit(async { Ok(next.run(request).await) })
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
