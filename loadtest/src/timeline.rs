//! Counts per time bucket, recorded while a run goes on, for plots and `--json`.
//!
//! Hot loops pay one relaxed atomic add per event and no clock read of their own (they pass
//! an `Instant` they already took): buckets are allocated up front for the run's bound, so
//! nothing is allocated or locked while recording. A bound longer than [`MAX_BUCKETS`]
//! seconds gets wider buckets instead of more of them, so memory stays bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// At most 24 h of 1 s buckets (675 KiB per series).
pub const MAX_BUCKETS: usize = 86_400;

/// Where the buckets of one run start and how wide they are.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    start: Instant,
    width_s: u64,
    len: usize,
}

impl Grid {
    /// Buckets from `start` covering at least `bound`.
    pub fn new(start: Instant, bound: Duration) -> Self {
        // +1: the partial last second needs a bucket too.
        let secs = bound.as_secs() + 1;
        let width_s = secs.div_ceil(MAX_BUCKETS as u64).max(1);
        let len = (secs.div_ceil(width_s) as usize + 1).min(MAX_BUCKETS);
        Self {
            start,
            width_s,
            len,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn width_s(&self) -> u64 {
        self.width_s
    }

    /// The bucket of `at`. Anything past the bound lands in the last bucket, so the sum of the
    /// buckets always equals the number of events.
    fn index(&self, at: Instant) -> usize {
        let secs = at.saturating_duration_since(self.start).as_secs();
        usize::try_from(secs / self.width_s).map_or(self.len - 1, |i| i.min(self.len - 1))
    }

    /// Buckets needed to show `elapsed` (at least one).
    fn covering(&self, elapsed: Duration) -> usize {
        (elapsed.as_secs_f64() / self.width_s as f64)
            .ceil()
            .max(1.0) as usize
    }
}

/// Event counts per bucket, safe to add to from any task.
#[derive(Debug)]
pub struct Series {
    grid: Grid,
    buckets: Box<[AtomicU64]>,
}

impl Series {
    pub fn new(grid: Grid) -> Self {
        Self {
            grid,
            buckets: (0..grid.len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts `n` events that happened at `at`.
    pub fn add(&self, at: Instant, n: u64) {
        self.buckets[self.grid.index(at)].fetch_add(n, Ordering::Relaxed);
    }

    /// All events so far.
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// Named per-bucket counts of a finished run, every series of the same length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Width of one bucket in seconds (1 unless the run's bound exceeded 24 h).
    pub bucket_s: u64,
    pub series: Vec<(&'static str, Vec<u64>)>,
}

impl Timeline {
    /// A snapshot of `series` (all on one grid), cut to the run's `elapsed` time but never
    /// dropping a bucket that holds events.
    pub fn snapshot(grid: &Grid, elapsed: Duration, series: &[(&'static str, &Series)]) -> Self {
        let counts: Vec<(&'static str, Vec<u64>)> =
            series.iter().map(|(n, s)| (*n, s.counts())).collect();
        let last_used = counts
            .iter()
            .filter_map(|(_, c)| c.iter().rposition(|&v| v > 0))
            .max()
            .map_or(0, |i| i + 1);
        let len = grid.covering(elapsed).max(last_used).min(grid.len);
        Self {
            bucket_s: grid.width_s,
            series: counts
                .into_iter()
                .map(|(n, mut c)| {
                    c.truncate(len);
                    (n, c)
                })
                .collect(),
        }
    }

    /// Adds a series computed from the others; it must have the same length.
    pub fn push(&mut self, name: &'static str, counts: Vec<u64>) {
        debug_assert_eq!(counts.len(), self.len());
        self.series.push((name, counts));
    }

    /// Removes a series (one only needed to compute another); empty if there is none.
    pub fn take(&mut self, name: &str) -> Vec<u64> {
        match self.series.iter().position(|(n, _)| *n == name) {
            Some(i) => self.series.remove(i).1,
            None => Vec::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&[u64]> {
        self.series
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.as_slice())
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.series.first().map_or(0, |(_, c)| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `{"bucket_s": 1, "<name>": [counts...], ...}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("bucket_s".into(), json!(self.bucket_s));
        for (name, counts) in &self.series {
            map.insert((*name).to_owned(), json!(counts));
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_second_and_late_ones_in_the_last_bucket() {
        let start = Instant::now();
        let grid = Grid::new(start, Duration::from_secs(3));
        let s = Series::new(grid);
        s.add(start, 1);
        s.add(start + Duration::from_millis(1500), 2);
        s.add(start + Duration::from_secs(3600), 4);
        assert_eq!(s.total(), 7);
        let t = Timeline::snapshot(&grid, Duration::from_millis(1600), &[("x", &s)]);
        assert_eq!(t.bucket_s, 1);
        // Cut to 2 s of run, but the late event's bucket is kept.
        assert_eq!(t.get("x"), Some(&[1, 2, 0, 0, 4][..]));
    }

    #[test]
    fn long_bounds_widen_buckets_instead_of_growing() {
        let grid = Grid::new(Instant::now(), Duration::from_secs(10 * 86_400));
        assert_eq!(grid.width_s(), 11);
        assert!(grid.len <= MAX_BUCKETS);
        let t = Timeline::snapshot(&grid, Duration::from_secs(22), &[("x", &Series::new(grid))]);
        assert_eq!(t.get("x"), Some(&[0, 0][..]));
    }
}
