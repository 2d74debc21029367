//! Prometheus metrics of one signal-server process, in their own registry.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the service exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub rooms_created: IntCounter,
    /// Rooms the embedded store's sweeper removed at their deadline.
    pub rooms_swept: IntCounter,
    pub watchers: IntGaugeVec,
    pub blobs_written: IntCounter,
    pub blob_bytes_written: IntCounter,
    pub bytes_stored: IntGauge,
    pub fanout_messages: IntCounter,
    pub redis_errors: IntCounter,
    pub credentials_minted: IntCounter,
    pub rate_limited: IntCounterVec,
    /// Writes sent over the watch WebSocket, by the HTTP status their HTTP twin would answer.
    pub socket_writes: IntCounterVec,
    /// `socket_writes` for status 200, resolved once: it counts nearly every socket write.
    pub socket_writes_ok: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "sb_http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "sb_http_request_duration_seconds",
                "Time to the response head",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        let watchers = IntGaugeVec::new(
            Opts::new("sb_watchers_active", "Open watches by transport"),
            &["transport"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "sb_rate_limited_total",
                "Requests refused by an abuse limit",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let socket_writes = IntCounterVec::new(
            Opts::new(
                "sb_websocket_writes_total",
                "Blob puts and deletes sent over the watch WebSocket, by the status their HTTP twin would answer",
            ),
            &["status"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let metrics = Self {
            requests,
            latency,
            rooms_created: counter("sb_rooms_created_total", "Rooms created"),
            rooms_swept: counter(
                "sb_rooms_swept_total",
                "Rooms the embedded store's sweeper removed at their deadline (Redis: the janitor's job)",
            ),
            watchers,
            blobs_written: counter("sb_blobs_written_total", "Blobs written"),
            blob_bytes_written: counter("sb_blob_bytes_written_total", "Bytes of blobs written"),
            bytes_stored: IntGauge::new(
                "sb_bytes_stored",
                "Bytes held by the store: blob bytes (embedded) or Redis used_memory (single Redis; not set on a cluster)",
            )
            .expect("valid metric"),
            fanout_messages: counter(
                "sb_fanout_messages_total",
                "Changes delivered to rooms watched on this replica",
            ),
            redis_errors: counter(
                "sb_redis_errors_total",
                "Failed or timed-out Redis operations",
            ),
            credentials_minted: counter(
                "sb_turn_credentials_minted_total",
                "TURN credentials minted",
            ),
            rate_limited,
            socket_writes_ok: socket_writes.with_label_values(&["200"]),
            socket_writes,
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.requests.clone()),
            Box::new(self.latency.clone()),
            Box::new(self.rooms_created.clone()),
            Box::new(self.rooms_swept.clone()),
            Box::new(self.watchers.clone()),
            Box::new(self.blobs_written.clone()),
            Box::new(self.blob_bytes_written.clone()),
            Box::new(self.bytes_stored.clone()),
            Box::new(self.fanout_messages.clone()),
            Box::new(self.redis_errors.clone()),
            Box::new(self.credentials_minted.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.socket_writes.clone()),
        ];
        for c in collectors {
            self.registry.register(c).expect("metric names are unique");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
