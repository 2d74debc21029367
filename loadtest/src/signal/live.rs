//! The counters a `loadtest signal` run updates as it goes.

use std::time::{Duration, Instant};

use super::Options;
use crate::timeline::{Grid, Series, Timeline};

/// Counters a run updates as it goes: read by a progress bar, kept in [`super::Report::timeline`].
#[derive(Debug)]
pub struct Live {
    /// Rooms in the run.
    pub rooms: usize,
    grid: Grid,
    /// Rooms that finished every round, when they finished.
    pub completed_rooms: Series,
    /// Offer/answer rounds done, when the second peer was notified.
    pub rounds: Series,
    /// Rooms that failed, when they failed (a room stops at its first error).
    pub errors: Series,
}

impl Live {
    /// Counters for a run of `o` that starts now.
    pub fn new(o: &Options) -> Self {
        // The run ends by `max_duration`; the slack covers joining the tasks.
        let grid = Grid::new(Instant::now(), o.max_duration + o.step_timeout);
        Self {
            rooms: o.rooms,
            grid,
            completed_rooms: Series::new(grid),
            rounds: Series::new(grid),
            errors: Series::new(grid),
        }
    }

    pub fn started(&self) -> Instant {
        self.grid.start()
    }

    pub(super) fn timeline(&self, elapsed: Duration) -> Timeline {
        Timeline::snapshot(
            &self.grid,
            elapsed,
            &[
                ("completed_rooms", &self.completed_rooms),
                ("rounds", &self.rounds),
                ("errors", &self.errors),
            ],
        )
    }
}
