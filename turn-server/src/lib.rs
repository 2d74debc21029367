//! Switchboard turn-server: a STUN/TURN relay (RFC 8489/8656) that checks the TURN REST
//! credentials signal-server mints, refuses private peers by default, and drains on SIGTERM.
//!
//! # Layout
//! - `proto/`: sans-IO STUN/TURN codec (messages, attributes, integrity, ChannelData framing).
//! - `core/`: the sans-IO TURN server ([`core::Server`]): allocations, permissions, channels,
//!   auth (REST credentials via `common::turn_auth`, static users, stateless nonces), peer filter,
//!   quotas, bandwidth caps, timers. Bytes, addresses and `now` in; actions out.
//! - [`driver`]: the thin tokio layer (UDP/TCP listeners, relay sockets, timers).
//! - `ops`: `/metrics`, `/healthz`, `/readyz`. [`config`]: flags and env.
//! - [`run`]: wires it together and drains on shutdown.

pub mod config;
pub mod core;
pub mod driver;
pub mod ops;
pub mod proto;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::driver::Shared;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Bound sockets, so tests can pass `127.0.0.1:0` and learn the ports.
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let mut udp = Vec::new();
        for addr in &config.listen_udp {
            udp.extend(bind_udp_workers(*addr, config.udp_workers())?);
        }
        let mut tcp = Vec::new();
        for addr in &config.listen_tcp {
            tcp.push(TcpListener::bind(addr).await?);
        }
        let mut tls = Vec::new();
        for addr in &config.listen_tls {
            tls.push(TcpListener::bind(addr).await?);
        }
        Ok(Self {
            udp,
            tcp,
            tls,
            http: TcpListener::bind(config.http_listen).await?,
        })
    }
}

/// Serves until `shutdown`, then refuses new allocations and keeps relaying until the last
/// allocation ends or `--drain-timeout` passes.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    config.validate()?;
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let core = core::Server::new(
        config.core(rand::random())?,
        tokio::time::Instant::now().into_std(),
        now_unix,
    );
    let stop = CancellationToken::new();
    // Several sockets may share one address (SO_REUSEPORT workers); replies leave through any.
    let mut udp = HashMap::new();
    let mut workers = Vec::new();
    for socket in listeners.udp {
        let socket = Arc::new(driver::BatchSocket::new(socket)?);
        udp.entry(socket.local_addr()?)
            .or_insert_with(|| Arc::clone(&socket));
        workers.push(socket);
    }
    let probe = udp
        .keys()
        .next()
        .map(|addr: &SocketAddr| loopback_of(*addr));
    let streams = driver::StreamLimits {
        max: config.max_streams,
        idle: config.stream_idle_timeout,
    };
    let shared = Shared::new(
        core,
        udp.clone(),
        config.relay_ip,
        config.relay_ports.0.clone(),
        streams,
        stop.clone(),
    );
    for socket in workers {
        tokio::spawn(Arc::clone(&shared).udp_loop(socket));
    }
    for listener in listeners.tcp {
        tracing::info!(addr = ?listener.local_addr().ok(), "TURN over TCP");
        tokio::spawn(Arc::clone(&shared).tcp_accept_loop(listener));
    }
    if !listeners.tls.is_empty() {
        let acceptor = config.tls_acceptor()?;
        for listener in listeners.tls {
            tracing::info!(addr = ?listener.local_addr().ok(), "TURN over TLS");
            tokio::spawn(Arc::clone(&shared).tls_accept_loop(listener, acceptor.clone()));
        }
    }
    tokio::spawn(Arc::clone(&shared).timer_loop());
    let http = axum::serve(listeners.http, ops::router(Arc::clone(&shared), probe))
        .with_graceful_shutdown(stop.clone().cancelled_owned());
    let http = tokio::spawn(http.into_future());
    tracing::info!(udp = ?udp.keys().collect::<Vec<_>>(), "turn-server listening");

    shutdown.cancelled().await;
    shared.draining.store(true, Ordering::Relaxed);
    shared.core().start_drain();
    let remaining = shared.core().allocation_count();
    tracing::info!(remaining, timeout = ?config.drain_timeout, "draining: no new allocations");
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    while shared.core().allocation_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let _ = http.await;
    tracing::info!(
        left = shared.core().allocation_count(),
        "turn-server stopped"
    );
    Ok(())
}

/// `workers` UDP sockets on `addr` with SO_REUSEPORT, so the kernel spreads clients over them by
/// address hash and each worker task reads its own socket. Port 0 resolves once, then is shared.
fn bind_udp_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut sockets = Vec::with_capacity(workers);
    let mut bind_to = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(
            Domain::for_address(bind_to),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        if bind_to.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bind_to.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        driver::enlarge_buffers(&socket);
        bind_to = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// The loopback address of the listener's family when it listens on every address.
fn loopback_of(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), a.port())
        }
        other => other,
    }
}
