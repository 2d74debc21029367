//! The browser client module and the demo page, served by signal-server itself so a newcomer
//! needs nothing else: `/client/v1/switchboard.js` (a stable, versioned path apps import) and
//! `/demo/`. The files are compiled in; `--web-dir` serves them from disk instead, so a web
//! developer can edit and reload without rebuilding.

use std::path::PathBuf;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::error::ApiError;

/// Where the web files come from, and whether they are served at all.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    pub enabled: bool,
    /// Serve from this directory (laid out like `signal-server/web/`) instead of the copies
    /// compiled into the binary.
    pub dir: Option<PathBuf>,
}

/// One served file: URL path, path under the web directory, content type, compiled-in bytes.
struct Asset {
    url: &'static str,
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        url: "/client/v1/switchboard.js",
        file: "client/switchboard.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/client/switchboard.js"),
    },
    Asset {
        url: "/demo/",
        file: "demo/index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../web/demo/index.html"),
    },
    Asset {
        url: "/demo/demo.js",
        file: "demo/demo.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/demo/demo.js"),
    },
    Asset {
        url: "/demo/demo.css",
        file: "demo/demo.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/demo/demo.css"),
    },
];

/// The page may talk only to this origin (signaling) and load only its own files; WebRTC
/// traffic is not subject to CSP. Blob URLs are for received files offered for download.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Routes of the web files; empty when the web UI is turned off.
pub fn routes(web: &WebSettings) -> Router<AppState> {
    if !web.enabled {
        return Router::new();
    }
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::to("/demo/") }))
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }));
    for (index, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.url,
            get(move |state: State<AppState>| serve(state, index)),
        );
    }
    router
}

async fn serve(State(state): State<AppState>, index: usize) -> Response {
    let asset = &ASSETS[index];
    let body = match &state.settings.web.dir {
        None => asset.bytes.to_vec(),
        Some(dir) => match tokio::fs::read(dir.join(asset.file)).await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(file = %dir.join(asset.file).display(), %err, "web file unreadable");
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "web file missing from --web-dir",
                )
                .into_response();
            }
        },
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate each load: a release changes files behind the same v1 path.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}
