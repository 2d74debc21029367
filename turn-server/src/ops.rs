//! The HTTP side: `/metrics` (Prometheus text of live counters), `/healthz`, `/readyz`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::UdpSocket;

use crate::core::auth::AuthFailure;
use crate::driver::Shared;
use crate::proto::{Class, Message, MessageBuilder, Method, TransactionId};

#[derive(Clone)]
struct Ops {
    shared: Arc<Shared>,
    /// Where `/readyz` sends its STUN Binding (a UDP listener, reached over loopback).
    probe: Option<SocketAddr>,
}

pub fn router(shared: Arc<Shared>, probe: Option<SocketAddr>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Ops { shared, probe })
}

/// Ready when not draining and a STUN Binding to our own UDP listener is answered.
async fn readyz(State(ops): State<Ops>) -> Response {
    if ops.shared.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let Some(target) = ops.probe else {
        return "ok (no UDP listener to probe)\n".into_response();
    };
    match tokio::time::timeout(Duration::from_secs(1), stun_binding(target)).await {
        Ok(Ok(())) => "ok\n".into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "STUN binding probe failed\n",
        )
            .into_response(),
    }
}

async fn stun_binding(target: SocketAddr) -> std::io::Result<()> {
    let bind: SocketAddr = if target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .expect("valid");
    let socket = UdpSocket::bind(bind).await?;
    let transaction = TransactionId(rand::random());
    let mut request = Vec::with_capacity(32);
    MessageBuilder::new(&mut request, Class::Request, Method::BINDING, transaction)
        .finish()
        .map_err(std::io::Error::other)?;
    socket.send_to(&request, target).await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).await?;
        if let Ok(msg) = Message::decode(&buf[..n])
            && msg.transaction_id() == transaction
            && msg.class() == Class::Success
        {
            return Ok(());
        }
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let s = ops.shared.core().stats();
    let d = &ops.shared.stats;
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "turn_allocations_active",
        "gauge",
        "Allocations now",
        s.allocations_active,
    );
    metric(
        "turn_allocations_created_total",
        "counter",
        "Allocations created",
        s.allocations_created,
    );
    metric(
        "turn_allocations_expired_total",
        "counter",
        "Allocations that reached their lifetime",
        s.allocations_expired,
    );
    metric(
        "turn_permissions_active",
        "gauge",
        "Permissions now",
        s.permissions_active,
    );
    metric(
        "turn_channels_active",
        "gauge",
        "Channel bindings now",
        s.channels_active,
    );
    metric(
        "turn_quota_rejections_total",
        "counter",
        "Allocations refused by a quota (486)",
        s.quota_rejections,
    );
    metric(
        "turn_denied_peers_total",
        "counter",
        "Permissions refused by the peer filter (403)",
        s.denied_peers,
    );
    metric(
        "turn_bandwidth_drops_total",
        "counter",
        "Packets dropped by the bandwidth cap",
        s.bandwidth_drops,
    );
    metric(
        "turn_malformed_total",
        "counter",
        "Packets that did not parse",
        s.malformed,
    );
    metric(
        "turn_bindings_total",
        "counter",
        "STUN Binding requests answered",
        s.bindings,
    );
    metric(
        "turn_streams_refused_total",
        "counter",
        "TCP/TLS connections closed at --max-streams",
        d.streams_refused.load(Ordering::Relaxed),
    );
    metric(
        "turn_streams_idle_closed_total",
        "counter",
        "TCP/TLS clients closed for idling without an allocation",
        d.streams_idle_closed.load(Ordering::Relaxed),
    );
    metric(
        "turn_send_errors_total",
        "counter",
        "Socket send failures",
        d.send_errors.load(Ordering::Relaxed),
    );
    metric(
        "turn_relay_bind_failures_total",
        "counter",
        "Relay sockets that could not be bound",
        d.relay_bind_failures.load(Ordering::Relaxed),
    );
    metric(
        "turn_tcp_queue_drops_total",
        "counter",
        "Frames dropped for slow TCP clients",
        d.tcp_queue_drops.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP turn_relayed_packets_total Packets relayed by direction\n# TYPE turn_relayed_packets_total counter"
    );
    let _ = writeln!(
        out,
        "turn_relayed_packets_total{{direction=\"to_peer\"}} {}",
        s.packets_to_peer
    );
    let _ = writeln!(
        out,
        "turn_relayed_packets_total{{direction=\"to_client\"}} {}",
        s.packets_to_client
    );
    let _ = writeln!(
        out,
        "# HELP turn_relayed_bytes_total Payload bytes relayed by direction\n# TYPE turn_relayed_bytes_total counter"
    );
    let _ = writeln!(
        out,
        "turn_relayed_bytes_total{{direction=\"to_peer\"}} {}",
        s.bytes_to_peer
    );
    let _ = writeln!(
        out,
        "turn_relayed_bytes_total{{direction=\"to_client\"}} {}",
        s.bytes_to_client
    );
    let _ = writeln!(
        out,
        "# HELP turn_auth_failures_total Refused credentials by reason\n# TYPE turn_auth_failures_total counter"
    );
    for (why, n) in AuthFailure::ALL.iter().zip(s.auth_failures) {
        let _ = writeln!(
            out,
            "turn_auth_failures_total{{reason=\"{}\"}} {n}",
            why.label()
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
