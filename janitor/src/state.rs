//! A room's `_state` field as signal-server's `store/lua/prelude.lua` writes it, and the verdict
//! a sweep reaches on it. Pure: time is an argument.

/// The parts of `_state` (`created|version|deadline|next|slots|kexp`, unix ms) a sweep needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomState {
    /// When the room was created.
    pub created: u64,
    /// When the room ends (idle deadline, already capped by signal-server's max age).
    pub deadline: u64,
    /// The PEXPIREAT signal-server put on the room's keys (at or after `deadline`).
    pub kexp: u64,
}

impl RoomState {
    /// Parses `_state`; `None` unless it has exactly the six fields prelude.lua writes
    /// (`next` may be empty, every other field is digits).
    pub fn parse(s: &str) -> Option<Self> {
        let mut fields = s.split('|');
        let created = number(fields.next()?)?;
        number(fields.next()?)?; // version
        let deadline = number(fields.next()?)?;
        let next = fields.next()?;
        if !next.is_empty() {
            number(next)?;
        }
        number(fields.next()?)?; // slots
        let kexp = number(fields.next()?)?;
        if fields.next().is_some() {
            return None;
        }
        Some(Self {
            created,
            deadline,
            kexp,
        })
    }
}

/// What a sweep does with one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its deadline has passed: purge.
    Expired,
    /// Older than the policy's max age: purge.
    MaxAge,
    /// Live, but the room hash has no TTL: PEXPIREAT it at `at_ms`.
    Repair { at_ms: u64 },
    /// Live with a TTL: leave it.
    Keep,
}

/// The verdict on a room with `state` whose hash has `pttl` (Redis `PTTL`: -1 for none) at
/// server time `now_ms`.
///
/// A repair restores the expiry signal-server believes the keys have (`kexp`, never before the
/// deadline), not the bare deadline: signal-server re-applies PEXPIREAT only once a write moves
/// the deadline past `kexp`, so a TTL at the old deadline could end a room a write had extended.
pub fn judge(state: &RoomState, pttl: i64, now_ms: u64, max_age_ms: u64) -> Verdict {
    if state.deadline <= now_ms {
        Verdict::Expired
    } else if state.created.saturating_add(max_age_ms) <= now_ms {
        Verdict::MaxAge
    } else if pttl == -1 {
        Verdict::Repair {
            at_ms: state.kexp.max(state.deadline),
        }
    } else {
        Verdict::Keep
    }
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn state(created: u64, deadline: u64, kexp: u64) -> RoomState {
        RoomState {
            created,
            deadline,
            kexp,
        }
    }

    #[test]
    fn parses_what_prelude_writes() {
        assert_eq!(
            RoomState::parse("1000|3|5000||0|65000"),
            Some(state(1000, 5000, 65000))
        );
        assert_eq!(
            RoomState::parse("1000|3|5000|4000|2|65000"),
            Some(state(1000, 5000, 65000))
        );
    }

    #[test]
    fn rejects_malformed_state() {
        for bad in [
            "",
            "garbage",
            "1|2|3|4|5",
            "1|2|3|4|5|6|7",
            "1|2|x|4|5|6",
            "1|2|-3||5|6",
            "|2|3||5|6",
            "1|2|3||5|",
            "99999999999999999999999|2|3||5|6",
        ] {
            assert_eq!(RoomState::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn verdicts() {
        let now = 10 * HOUR;
        let live = state(now - 60_000, now + 540_000, now + 600_000);
        assert_eq!(judge(&live, 600_000, now, HOUR), Verdict::Keep);
        assert_eq!(
            judge(&live, -1, now, HOUR),
            Verdict::Repair {
                at_ms: now + 600_000
            }
        );
        let due = state(now - 60_000, now, now + 60_000);
        assert_eq!(judge(&due, 60_000, now, HOUR), Verdict::Expired);
        let old = state(now - HOUR, now + 1, now + 60_001);
        assert_eq!(judge(&old, 60_000, now, HOUR), Verdict::MaxAge);
        assert_eq!(judge(&old, 60_000, now, 2 * HOUR), Verdict::Keep);
    }

    #[test]
    fn repair_never_sets_a_ttl_before_the_deadline() {
        let now = 10 * HOUR;
        let stale_kexp = state(now, now + 600_000, now + 1);
        assert_eq!(
            judge(&stale_kexp, -1, now, HOUR),
            Verdict::Repair {
                at_ms: now + 600_000
            }
        );
    }

    #[test]
    fn huge_max_age_does_not_overflow() {
        assert_eq!(
            judge(&state(5, u64::MAX, u64::MAX), 1, 10, u64::MAX),
            Verdict::Keep
        );
    }
}
