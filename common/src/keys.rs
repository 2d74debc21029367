//! The Redis key schema: the contract between signal-server (writes) and janitor (sweeps).
//!
//! Every key of a room carries the room code as a hash tag (`{CODE}`), so one room lives in one
//! Redis Cluster slot and its Lua scripts may touch all of its keys atomically.
//!
//! | key                | type | holds                                                              |
//! |--------------------|------|--------------------------------------------------------------------|
//! | `{p}:{CODE}:room`  | hash | `_state` = `created|version|deadline|next|slots|kexp` (times in unix ms; |
//! |                    |      | `next` the earliest blob expiry or empty, `slots` a count, `kexp` the keys' PEXPIREAT), |
//! |                    |      | and per slot `m:<slot>` = `version|expires|size|content type`      |
//! | `{p}:{CODE}:data`  | hash | slot name -> blob bytes                                            |
//! | `{p}:{CODE}:log`   | list | recent changes as JSON, oldest first, bounded (log_len to 2 x log_len) |
//! | `{p}:{peerjs:KEY:ID}:peer`  | string | a PeerJS client's token; TTL = its liveness timeout |
//! | `{p}:{peerjs:KEY:ID}:queue` | list | messages waiting for that ID; TTL twice the expiry |
//!
//! Besides rooms, only [`KeySchema::lock_key`] (`{p}:janitor:lock`, the janitor's lock token)
//! lives under the prefix.
//!
//! Every key of a live room carries a PEXPIREAT at or after the room's deadline (at most a minute
//! after); a room hash without a TTL, or whose `_state` deadline has passed, is stale.
//! Changes are published on the plain pub/sub channel [`KeySchema::events_channel`], one change
//! JSON per message or several separated by newlines; in a cluster a PUBLISH reaches subscribers
//! on every node.

/// Which part of a room a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKeyKind {
    Room,
    Data,
    Log,
}

impl RoomKeyKind {
    /// Every kind, in the order scripts take them as `KEYS`.
    pub const ALL: [RoomKeyKind; 3] = [Self::Room, Self::Data, Self::Log];

    fn suffix(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Data => "data",
            Self::Log => "log",
        }
    }

    fn from_suffix(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.suffix() == s)
    }
}

/// A parsed room key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomKey<'a> {
    pub code: &'a str,
    pub kind: RoomKeyKind,
}

/// Key names under one prefix (several deployments may share a Redis with different prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    prefix: String,
}

impl Default for KeySchema {
    fn default() -> Self {
        Self::new("sb")
    }
}

impl KeySchema {
    /// A schema under `prefix` (no `:`, `{` or `}` so parsing stays unambiguous).
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        assert!(
            !prefix.is_empty() && !prefix.contains([':', '{', '}']),
            "key prefix must be non-empty without ':', '{{' or '}}'"
        );
        Self { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of one part of a room.
    pub fn room_key(&self, code: &str, kind: RoomKeyKind) -> String {
        format!("{}:{{{code}}}:{}", self.prefix, kind.suffix())
    }

    /// All keys of a room, in [`RoomKeyKind::ALL`] order.
    pub fn room_keys(&self, code: &str) -> [String; 3] {
        RoomKeyKind::ALL.map(|kind| self.room_key(code, kind))
    }

    /// The `SCAN MATCH` pattern that finds every room's main hash.
    pub fn room_pattern(&self) -> String {
        format!("{}:{{*}}:room", self.prefix)
    }

    /// The `SCAN MATCH` pattern for every key under this prefix.
    pub fn all_pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    /// The pub/sub channel carrying every room's changes (one JSON per line of a message).
    pub fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// A PeerJS client's registration (`:peer`, its token, with a TTL of the liveness timeout)
    /// and its queue of messages waiting for it (`:queue`), under one hash tag.
    pub fn peerjs_keys(&self, api_key: &str, id: &str) -> [String; 2] {
        let tag = format!("{}:{{peerjs:{api_key}:{id}}}", self.prefix);
        [format!("{tag}:peer"), format!("{tag}:queue")]
    }

    /// The `SCAN MATCH` pattern for the registrations of one PeerJS API key.
    pub fn peerjs_pattern(&self, api_key: &str) -> String {
        format!("{}:{{peerjs:{api_key}:*}}:peer", self.prefix)
    }

    /// The API key and ID of a PeerJS registration or queue key of this schema.
    pub fn parse_peerjs<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let tag = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{peerjs:")
            .and_then(|rest| {
                rest.strip_suffix("}:peer")
                    .or_else(|| rest.strip_suffix("}:queue"))
            })?;
        if tag.contains(['{', '}']) {
            return None;
        }
        tag.split_once(':')
    }

    /// Whether `key` is a PeerJS registration or queue of this schema (any API key and ID).
    pub fn is_peerjs_key(&self, key: &str) -> bool {
        self.parse_peerjs(key).is_some()
    }

    /// The pub/sub channel carrying PeerJS messages between replicas.
    pub fn peerjs_channel(&self) -> String {
        format!("{}:peerjs", self.prefix)
    }

    /// The janitor's distributed lock. It sits under the prefix (so a deployment's keys stay
    /// together) but outside the room grammar: [`KeySchema::parse`] rejects it.
    pub fn lock_key(&self) -> String {
        format!("{}:janitor:lock", self.prefix)
    }

    /// Parses a key of this schema; `None` for foreign or malformed keys.
    pub fn parse<'a>(&self, key: &'a str) -> Option<RoomKey<'a>> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let (code, suffix) = rest.split_once("}:")?;
        if code.is_empty() || code.contains(['{', '}']) {
            return None;
        }
        Some(RoomKey {
            code,
            kind: RoomKeyKind::from_suffix(suffix)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peerjs_keys_are_recognised() {
        let schema = KeySchema::default();
        let [peer, queue] = schema.peerjs_keys("peerjs", "alice");
        assert_eq!(peer, "sb:{peerjs:peerjs:alice}:peer");
        assert!(schema.is_peerjs_key(&peer) && schema.is_peerjs_key(&queue));
        assert_eq!(schema.parse_peerjs(&queue), Some(("peerjs", "alice")));
        for other in [
            "sb:{peerjs}:peer",
            "sb:{ABC123}:room",
            "x:{peerjs:k:a}:peer",
        ] {
            assert!(!schema.is_peerjs_key(other), "{other}");
        }
        assert!(schema.parse(&peer).is_none(), "not a room key");
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = KeySchema::default().room_keys("AB23CD");
        assert_eq!(
            keys,
            ["sb:{AB23CD}:room", "sb:{AB23CD}:data", "sb:{AB23CD}:log"]
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_foreign_keys() {
        let schema = KeySchema::new("t1");
        for kind in RoomKeyKind::ALL {
            let key = schema.room_key("XY", kind);
            assert_eq!(schema.parse(&key), Some(RoomKey { code: "XY", kind }));
        }
        for bad in [
            "t1:{XY}:other",
            "t2:{XY}:room",
            "t1:XY:room",
            "t1:{}:room",
            "t1:{X{Y}:room",
            "",
        ] {
            assert_eq!(schema.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn patterns_and_channel() {
        let schema = KeySchema::default();
        assert_eq!(schema.room_pattern(), "sb:{*}:room");
        assert_eq!(schema.events_channel(), "sb:events");
    }

    #[test]
    fn lock_key_is_under_the_prefix_but_no_room_key() {
        let schema = KeySchema::default();
        assert_eq!(schema.lock_key(), "sb:janitor:lock");
        assert!(schema.lock_key().starts_with("sb:"));
        assert_eq!(schema.parse(&schema.lock_key()), None);
    }
}
