//! The counters a `loadtest turn` run updates as it goes.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::Options;
use crate::timeline::{Grid, Series, Timeline};

/// Counters a run updates as it goes: read by a progress bar, kept in [`super::Report::timeline`].
#[derive(Debug)]
pub struct Live {
    /// Pairs in the run.
    pub pairs: usize,
    /// How long the sending phase lasts.
    pub duration: Duration,
    /// Pairs whose set-up ended, ready or failed.
    pub set_up: AtomicU64,
    /// Pairs whose set-up failed.
    pub setup_errors: AtomicU64,
    pub(super) traffic: OnceLock<Arc<Traffic>>,
}

impl Live {
    pub fn new(o: &Options) -> Self {
        Self {
            pairs: o.pairs,
            duration: o.duration,
            set_up: AtomicU64::new(0),
            setup_errors: AtomicU64::new(0),
            traffic: OnceLock::new(),
        }
    }

    /// The sending phase's counters, once set-up is over.
    pub fn traffic(&self) -> Option<&Traffic> {
        self.traffic.get().map(Arc::as_ref)
    }
}

/// Packet counts of the sending phase, on a grid that starts when sending starts.
#[derive(Debug)]
pub struct Traffic {
    grid: Grid,
    /// Packets sent, by send time.
    pub sent: Series,
    /// Packets delivered, by arrival time.
    pub received: Series,
    /// Payload bytes delivered, by arrival time.
    pub bytes: Series,
    /// Packets delivered, by their send time: per bucket, `sent` minus this is what was lost.
    pub(super) delivered_by_send: Series,
}

impl Traffic {
    pub(super) fn new(start: Instant, bound: Duration) -> Self {
        let grid = Grid::new(start, bound);
        Self {
            grid,
            sent: Series::new(grid),
            received: Series::new(grid),
            bytes: Series::new(grid),
            delivered_by_send: Series::new(grid),
        }
    }

    pub fn started(&self) -> Instant {
        self.grid.start()
    }

    pub(super) fn timeline(&self, elapsed: Duration) -> Timeline {
        let mut t = Timeline::snapshot(
            &self.grid,
            elapsed,
            &[
                ("sent", &self.sent),
                ("received", &self.received),
                ("bytes_received", &self.bytes),
                ("delivered_by_send", &self.delivered_by_send),
            ],
        );
        let delivered = t.take("delivered_by_send");
        let lost = t.get("sent").unwrap_or_default().iter().zip(delivered);
        let lost = lost.map(|(s, d)| s.saturating_sub(d)).collect();
        t.push("lost", lost);
        t
    }
}
