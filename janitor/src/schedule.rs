//! `janitor schedule`: a locked sweep on every tick of a cron expression until shutdown.
//!
//! A tick that finds Redis down or the lock held is reported and the schedule goes on. Ticks
//! missed while a sweep ran are skipped, not queued. Shutdown waits for a running sweep to end
//! (each of its steps is atomic, and the lock is then released rather than left to expire).

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::{Janitor, Outcome, RunError};

/// Sweeps on each tick of `cron`, handing every outcome to `on_sweep`, until `shutdown`.
pub async fn run(
    janitor: &Janitor,
    cron: &cron::Schedule,
    shutdown: CancellationToken,
    mut on_sweep: impl FnMut(Result<Outcome, RunError>),
) {
    while let Some(next) = cron.upcoming(Utc).next() {
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        on_sweep(janitor.sweep_once().await);
        if shutdown.is_cancelled() {
            return;
        }
    }
    tracing::info!("the cron expression has no further ticks");
}
