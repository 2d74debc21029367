//! Switchboard signal-server: rooms of opaque client-encrypted blobs with TTLs, watched over
//! SSE, WebSocket or long-poll, stored in Redis (shared by replicas) or in memory.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`model`]: room codes, slot names, changes — the grammar and the data.
//! - [`store`]: the two back ends (Lua scripts on Redis; a map in memory) with one semantics.
//! - [`fanout`]: per-room broadcast of changes to this process's watchers.
//! - [`watch`]: a gap-free, ordered watch of one room, shared by every transport.
//! - [`compat`]: Firebase RTDB, PeerJS and Twilio faces over the same rooms.
//! - [`web`]: the browser client module and demo page (`web/`), compiled in.
//! - `routes/`: HTTP handlers; `app`: state, router and middleware; `limits`: abuse limits.
//! - [`run`]: binds it all together and drains on shutdown.

pub mod app;
pub mod clock;
pub mod compat;
pub mod config;
pub mod error;
pub mod fanout;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod store;
pub mod watch;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::keys::KeySchema;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState, Settings};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::fanout::Fanout;
use crate::limits::{RateLimits, WatchCaps};
use crate::metrics::Metrics;
use crate::store::{MemoryStore, RedisStore, RedisTarget, Store, StoreError};

/// Queue length of one watched room's fan-out; a watcher further behind catches up from the log.
const FANOUT_CAPACITY: usize = 256;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot reach Redis: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown` is cancelled, then drains for `--shutdown-grace`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    serve(config, listener, shutdown, Clock::default()).await
}

/// [`run`] with an explicit clock (tests move it to expire rooms without waiting).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Clock,
) -> Result<(), RunError> {
    config.validate()?;
    let metrics = Metrics::new();
    let (store, kind) = open_store(&config, &metrics, &clock, &shutdown).await?;
    let settings = Arc::new(settings(&config)?);
    let peerjs = settings
        .compat
        .peerjs
        .as_ref()
        .map(|pj| compat::peerjs::start(pj, &store, shutdown.clone()));
    let state = AppState::new(App {
        peerjs,
        store,
        clock,
        settings,
        metrics,
        rate_limits: Arc::new(RateLimits::new(
            config.create_per_minute,
            config.writes_per_second,
        )),
        watch_caps: WatchCaps::new(config.max_watchers_per_room, config.max_watchers_per_ip),
        shutdown: shutdown.clone(),
    });
    tokio::spawn(forget_idle_clients(
        Arc::clone(&state.rate_limits),
        shutdown.clone(),
    ));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = kind, "signal-server listening");
    let app = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown.cancelled() => {}
    }
    tracing::info!(grace = ?config.shutdown_grace, "draining");
    match tokio::time::timeout(config.shutdown_grace, server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("drain timed out; closing remaining connections"),
    }
    tracing::info!("signal-server stopped");
    Ok(())
}

async fn open_store(
    config: &Config,
    metrics: &Metrics,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> Result<(Store, &'static str), RunError> {
    let limits = config.limits();
    match config.redis_url()? {
        None => {
            let fanout =
                Fanout::with_counter(FANOUT_CAPACITY, true, metrics.fanout_messages.clone());
            let store = Arc::new(MemoryStore::new(limits, fanout));
            // The embedded store's own janitor: rooms go at their deadline, counted in metrics.
            tokio::spawn(store::run_sweeper(
                Arc::clone(&store),
                clock.clone(),
                shutdown.clone(),
                metrics.rooms_swept.clone(),
            ));
            Ok((Store::Memory(store), "memory"))
        }
        Some(url) => {
            let fanout =
                Fanout::with_counter(FANOUT_CAPACITY, false, metrics.fanout_messages.clone());
            let store = Arc::new(
                RedisStore::connect(
                    RedisTarget::parse(&url),
                    KeySchema::new(config.key_prefix.clone()),
                    limits,
                    fanout,
                    config.redis_timeout,
                    metrics.redis_errors.clone(),
                )
                .await?,
            );
            tokio::spawn(Arc::clone(&store).run_subscriber(shutdown.clone()));
            Ok((Store::Redis(store), "redis"))
        }
    }
}

fn settings(config: &Config) -> Result<Settings, ConfigError> {
    Ok(Settings {
        max_blob_bytes: config.max_blob_bytes,
        idle_ttl: config.idle_ttl,
        client_codes: config.client_codes,
        trusted_proxies: config.trusted_proxies.clone(),
        request_timeout: config.request_timeout,
        turn_secrets: config.turn_secrets()?,
        stun_urls: config.stun_urls.clone(),
        turn_urls: config.turn_urls.clone(),
        turn_ttl: config.turn_ttl,
        cors_origins: config.cors_origins.clone(),
        web: web::WebSettings {
            enabled: config.web,
            dir: config.web_dir.clone(),
        },
        compat: config
            .compat
            .settings(config.client_codes)
            .map_err(ConfigError::Invalid)?,
    })
}

async fn forget_idle_clients(limits: Arc<RateLimits>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => limits.forget_idle(),
        }
    }
}
