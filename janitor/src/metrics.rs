//! Prometheus metrics of the sweeps: served on `/metrics` in schedule mode and pushed to a
//! Pushgateway (`--pushgateway`) after each sweep, so a CronJob's short life still reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, Gauge, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

use crate::{Outcome, RunError};

/// Pushgateway job name the metrics are grouped under.
pub const JOB: &str = "switchboard_janitor";

/// Counters of every sweep this process ran.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    sweeps: IntCounterVec,
    scanned: IntCounter,
    purged: IntCounterVec,
    repaired: IntCounter,
    malformed: IntCounter,
    last_duration: Gauge,
    last_success: Gauge,
    /// The last sweep reached Redis (readiness in schedule mode).
    healthy: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("janitor".into()), None).expect("a constant prefix is valid");
        let sweeps = IntCounterVec::new(
            Opts::new("sweeps_total", "Sweeps by outcome: swept, locked or failed"),
            &["outcome"],
        )
        .expect("valid metric");
        let scanned = IntCounter::new("keys_scanned_total", "Keys SCAN returned").expect("valid");
        let purged = IntCounterVec::new(
            Opts::new("purged_total", "Rooms or keys purged, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let repaired = IntCounter::new("rooms_repaired_total", "TTL-less live rooms given a TTL")
            .expect("valid");
        let malformed =
            IntCounter::new("keys_malformed_total", "Keys skipped as malformed").expect("valid");
        let last_duration =
            Gauge::new("last_sweep_duration_seconds", "Wall time of the last sweep")
                .expect("valid");
        let last_success = Gauge::new(
            "last_success_timestamp_seconds",
            "Unix time the last sweep finished",
        )
        .expect("valid");
        for metric in [
            Box::new(sweeps.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(scanned.clone()),
            Box::new(purged.clone()),
            Box::new(repaired.clone()),
            Box::new(malformed.clone()),
            Box::new(last_duration.clone()),
            Box::new(last_success.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        for outcome in ["swept", "locked", "failed"] {
            sweeps.with_label_values(&[outcome]);
        }
        Self {
            registry,
            sweeps,
            scanned,
            purged,
            repaired,
            malformed,
            last_duration,
            last_success,
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Counts one sweep's result.
    pub fn record(&self, result: &Result<Outcome, RunError>) {
        match result {
            Ok(Outcome::Swept(report)) => {
                self.sweeps.with_label_values(&["swept"]).inc();
                self.scanned.inc_by(report.scanned);
                for (reason, n) in [
                    ("expired", report.purged.expired),
                    ("max_age", report.purged.max_age),
                    ("orphaned", report.purged.orphaned),
                ] {
                    self.purged.with_label_values(&[reason]).inc_by(n);
                }
                self.repaired.inc_by(report.repaired);
                self.malformed.inc_by(report.malformed);
                self.last_duration.set(report.duration.as_secs_f64());
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                self.last_success.set(now.as_secs_f64());
                self.healthy.store(true, Ordering::Relaxed);
            }
            Ok(Outcome::Locked { .. }) => {
                self.sweeps.with_label_values(&["locked"]).inc();
                self.healthy.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                self.sweeps.with_label_values(&["failed"]).inc();
                self.healthy.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// Replaces this job's metrics on the Pushgateway at `base` (`PUT /metrics/job/<job>`).
    pub async fn push(&self, base: &str, timeout: Duration) -> Result<(), PushError> {
        let url = format!("{}/metrics/job/{JOB}", base.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .put(url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(self.render())
            .timeout(timeout)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(PushError::Status(response.status().as_u16()));
        }
        Ok(())
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` (ready while the last sweep reached Redis)
    /// on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route(
                "/metrics",
                get(|State(m): State<Metrics>| async move { m.render() }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(|State(m): State<Metrics>| async move {
                    if m.healthy.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the last sweep could not reach Redis",
                        )
                    }
                }),
            )
            .with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

/// Why metrics did not reach the Pushgateway.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushgateway unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("pushgateway answered HTTP {0}")]
    Status(u16),
}
