//! What a sweep did: counters, a one-line summary for people and JSON for machines.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// The outcome of one sweep. In a dry run the counters say what a real sweep would have done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Keys under the prefix that SCAN returned (the janitor's own lock excluded).
    pub scanned: u64,
    /// What was purged, by reason.
    pub purged: Purged,
    /// Live rooms whose keys had no TTL and got one.
    pub repaired: u64,
    /// Keys skipped because they fit no part of the key schema, or room hashes whose `_state`
    /// is missing or malformed. They are left alone.
    pub malformed: u64,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Wall time of the sweep.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

/// Purges by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Rooms whose `_state` deadline had passed (all three keys unlinked).
    pub expired: u64,
    /// Rooms older than the max age (all three keys unlinked).
    pub max_age: u64,
    /// `data` or `log` keys whose room hash no longer exists, and PeerJS registrations or
    /// queues without a TTL (one key each).
    pub orphaned: u64,
}

impl Purged {
    /// Rooms and orphaned keys together.
    pub fn total(&self) -> u64 {
        self.expired + self.max_age + self.orphaned
    }
}

impl SweepReport {
    /// Adds another sweep's counters to this one's (one sweep per cluster master).
    pub fn absorb(&mut self, other: &SweepReport) {
        self.scanned += other.scanned;
        self.purged.expired += other.purged.expired;
        self.purged.max_age += other.purged.max_age;
        self.purged.orphaned += other.purged.orphaned;
        self.repaired += other.repaired;
        self.malformed += other.malformed;
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of plain counters always serializes")
    }
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (purge, repair) = if self.dry_run {
            ("dry run, nothing changed: would purge", "would repair")
        } else {
            ("purged", "repaired")
        };
        write!(
            f,
            "swept {} keys in {:.3}s; {purge} {} expired rooms, {} rooms past max age, \
             {} orphaned keys; {repair} {} TTL-less rooms; skipped {} malformed",
            self.scanned,
            self.duration.as_secs_f64(),
            self.purged.expired,
            self.purged.max_age,
            self.purged.orphaned,
            self.repaired,
            self.malformed,
        )
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SweepReport {
        SweepReport {
            scanned: 25,
            purged: Purged {
                expired: 2,
                max_age: 1,
                orphaned: 2,
            },
            repaired: 1,
            malformed: 5,
            dry_run: false,
            duration: Duration::from_millis(1234),
        }
    }

    #[test]
    fn json_shape() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "scanned": 25,
                "purged": {"expired": 2, "max_age": 1, "orphaned": 2},
                "repaired": 1,
                "malformed": 5,
                "dry_run": false,
                "duration_ms": 1234
            })
        );
    }

    #[test]
    fn summary_line() {
        let line = report().to_string();
        assert_eq!(
            line,
            "swept 25 keys in 1.234s; purged 2 expired rooms, 1 rooms past max age, \
             2 orphaned keys; repaired 1 TTL-less rooms; skipped 5 malformed"
        );
        let dry = SweepReport {
            dry_run: true,
            ..report()
        };
        assert!(dry.to_string().contains("would purge 2 expired"));
        assert!(!dry.to_string().contains('\n'));
    }
}
