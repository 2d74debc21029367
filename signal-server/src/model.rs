//! Domain types shared by the stores and the HTTP layer: names with their grammar, and changes.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Alphabet of server-allocated codes: no 0/O, 1/I/L, so codes survive being read aloud.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Length of server-allocated codes.
pub const CODE_LEN: usize = 6;

/// A room code. Its `Display`/`Debug` show only a prefix so logs never carry a full code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomCode(String);

impl RoomCode {
    /// Parses a client-supplied code: 4 to 32 of `A-Z a-z 0-9 _ -` (pypeer uses 6 of A-Z0-9).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::RoomCode)
        }
    }

    /// A fresh random code from [`CODE_ALPHABET`].
    pub fn random() -> Self {
        let mut rng = rand::rng();
        let code = (0..CODE_LEN)
            .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
            .collect();
        Self(code)
    }

    /// The full code, for keys and responses to the client, never for logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(2).collect();
        write!(f, "{shown}…")
    }
}

impl fmt::Debug for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomCode({self})")
    }
}

/// A slot name inside a room: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SlotName(String);

impl SlotName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bytes = s.as_bytes();
        let ok = (1..=64).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Slot)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name that breaks its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("room code must be 4-32 characters of A-Z, a-z, 0-9, '_' or '-'")]
    RoomCode,
    #[error(
        "slot name must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    Slot,
}

/// What a write may require of the slot's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// `If-None-Match: *`: the slot must not exist (write-once).
    Absent,
    /// `If-Match: "<version>"`: the slot must exist at exactly this version (compare-and-set).
    Version(u64),
}

/// Metadata of one stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    pub name: SlotName,
    pub version: u64,
    pub size: u64,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// A blob with its metadata.
#[derive(Debug, Clone)]
pub struct Blob {
    pub info: SlotInfo,
    pub data: bytes::Bytes,
}

/// A room as clients see it. Times are unix milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct RoomInfo {
    pub code: String,
    pub version: u64,
    pub created_at: u64,
    /// When the room goes if nothing is written before: min(last write + idle TTL, created + max age).
    pub expires_at: u64,
    pub slots: Vec<SlotInfo>,
}

/// The kind of a change in a room's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Put,
    Delete,
    /// A blob reached its own TTL.
    Expire,
    /// The whole room was deleted; the last change a room has.
    RoomDeleted,
}

/// One entry of a room's change log, as stored, published and sent to watchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub room: String,
    pub version: u64,
    pub op: ChangeOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The blob's own expiry, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Server time of the change (unix ms).
    pub at: u64,
    /// The room's expiry after this change (unix ms).
    pub room_expires_at: u64,
}

/// Changes after a version, for catch-up.
#[derive(Debug, Clone)]
pub struct ChangesSince {
    /// The room's version now.
    pub version: u64,
    pub changes: Vec<Change>,
    /// The log no longer reaches back to the requested version: the client must re-read the room.
    pub truncated: bool,
    pub room_expires_at: u64,
    /// The earliest blob expiry, so watchers can wake to reap it.
    pub next_blob_expiry: Option<u64>,
}

/// The part of a write the stores need.
#[derive(Debug, Clone)]
pub struct PutBlob {
    pub slot: SlotName,
    pub data: bytes::Bytes,
    pub content_type: String,
    pub precondition: Precondition,
    /// Per-blob TTL in ms, already checked against the room's idle TTL.
    pub ttl_ms: Option<u64>,
}

/// Room lifetime and size limits, identical for every store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_ttl_ms: u64,
    pub max_age_ms: u64,
    pub max_slots: usize,
    pub log_len: usize,
}

impl Limits {
    /// The room's deadline after a write at `now`.
    pub fn room_deadline(&self, created_at: u64, now: u64) -> u64 {
        (now + self.idle_ttl_ms).min(created_at + self.max_age_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_codes_use_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let code = RoomCode::random();
            assert_eq!(code.as_str().len(), CODE_LEN);
            assert!(code.as_str().bytes().all(|b| CODE_ALPHABET.contains(&b)));
            RoomCode::parse(code.as_str()).unwrap();
        }
    }

    #[test]
    fn codes_are_redacted_in_logs() {
        let code = RoomCode::parse("SECRET").unwrap();
        assert_eq!(code.to_string(), "SE…");
        assert!(!format!("{code:?}").contains("SECRET"));
    }

    #[test]
    fn name_grammar() {
        for ok in ["offer", "answer", "cand-alice-3", "a", "x.y_z"] {
            SlotName::parse(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(SlotName::parse(bad).is_err(), "{bad}");
        }
        for bad in ["abc", "a/bcd", "AB CD", &"A".repeat(33)] {
            assert!(RoomCode::parse(bad).is_err(), "{bad}");
        }
        RoomCode::parse("AB12CD").unwrap();
    }
}
