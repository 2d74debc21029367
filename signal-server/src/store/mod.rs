//! Room storage with one set of semantics and two back ends: Redis (production, shared by
//! replicas) and an embedded in-memory store (the default when no Redis URL is configured).
//!
//! Every operation takes `now` (unix ms) and is atomic: a room is a unit (one Lua script on
//! Redis, one lock on memory). Both stores reap blobs past their own TTL inside every operation,
//! logging an `expire` change, and treat a room past its deadline as gone.

mod memory;
mod put_batch;
mod redis;

use std::sync::Arc;

pub use self::memory::{MemoryStore, run_sweeper};
pub use self::redis::{RedisStore, RedisTarget};

use crate::fanout::Fanout;
use crate::model::{Blob, Change, ChangesSince, PutBlob, RoomCode, RoomInfo, SlotName};

/// Why a store operation did not happen. Nothing was changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("room not found")]
    NoRoom,
    #[error("room already exists")]
    RoomExists,
    #[error("slot not found")]
    NoSlot,
    #[error("precondition failed")]
    PreconditionFailed { current: Option<u64> },
    #[error("room has reached its slot limit")]
    TooManySlots,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The configured store.
#[derive(Debug, Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Memory($s) => $call,
            Store::Redis($s) => $call.await,
        }
    };
}

impl Store {
    /// Creates a room under `code`; [`StoreError::RoomExists`] if a live room has it.
    pub async fn create_room(&self, code: &RoomCode, now: u64) -> Result<RoomInfo, StoreError> {
        dispatch!(self, s => s.create_room(code, now))
    }

    pub async fn room(&self, code: &RoomCode, now: u64) -> Result<RoomInfo, StoreError> {
        dispatch!(self, s => s.room(code, now))
    }

    /// Deletes a room and everything in it; its watchers get a final `room_deleted`.
    pub async fn delete_room(&self, code: &RoomCode, now: u64) -> Result<Change, StoreError> {
        dispatch!(self, s => s.delete_room(code, now))
    }

    pub async fn put_blob(
        &self,
        code: &RoomCode,
        put: PutBlob,
        now: u64,
    ) -> Result<Change, StoreError> {
        dispatch!(self, s => s.put_blob(code, put, now))
    }

    /// Puts in one room, applied in order, each exactly as it would be alone (so a conditional
    /// put sees the puts before it); one result per put. Redis writes them together.
    pub async fn put_blobs(
        &self,
        code: &RoomCode,
        puts: Vec<PutBlob>,
        now: u64,
    ) -> Vec<Result<Change, StoreError>> {
        match self {
            Store::Memory(s) => puts.into_iter().map(|p| s.put_blob(code, p, now)).collect(),
            Store::Redis(s) => s.put_blobs(code, puts, now).await,
        }
    }

    pub async fn blob(
        &self,
        code: &RoomCode,
        slot: &SlotName,
        now: u64,
    ) -> Result<Blob, StoreError> {
        dispatch!(self, s => s.blob(code, slot, now))
    }

    pub async fn delete_blob(
        &self,
        code: &RoomCode,
        slot: &SlotName,
        precondition: crate::model::Precondition,
        now: u64,
    ) -> Result<Change, StoreError> {
        dispatch!(self, s => s.delete_blob(code, slot, precondition, now))
    }

    /// Changes after version `after` (with `None`: none, only the current version), reaping
    /// expired blobs first. `truncated` when the bounded log no longer reaches `after`.
    pub async fn changes_since(
        &self,
        code: &RoomCode,
        after: Option<u64>,
        now: u64,
    ) -> Result<ChangesSince, StoreError> {
        dispatch!(self, s => s.changes_since(code, after, now))
    }

    /// Codes of up to `limit` rooms (on Redis some may have just expired: read them to know).
    pub async fn room_codes(&self, limit: usize, now: u64) -> Result<Vec<RoomCode>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.room_codes(limit, now)),
            Store::Redis(s) => s.room_codes(limit).await,
        }
    }

    /// Checks the back end answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(s) => s.ping().await,
        }
    }

    pub fn fanout(&self) -> &Arc<Fanout> {
        match self {
            Store::Memory(s) => s.fanout(),
            Store::Redis(s) => s.fanout(),
        }
    }

    /// Bytes held: blob bytes in memory, or Redis `used_memory` (single server only).
    pub async fn bytes_stored(&self) -> Option<u64> {
        match self {
            Store::Memory(s) => Some(s.bytes_stored()),
            Store::Redis(s) => s.used_memory().await,
        }
    }
}

/// Which retained changes answer a catch-up from `after`, and whether the log still reaches it.
pub(crate) fn select_since(
    log: impl IntoIterator<Item = Change>,
    oldest: Option<u64>,
    version: u64,
    after: Option<u64>,
) -> (Vec<Change>, bool) {
    let Some(after) = after else {
        return (Vec::new(), false);
    };
    if after > version {
        return (Vec::new(), true);
    }
    if after == version {
        return (Vec::new(), false);
    }
    match oldest {
        Some(oldest) if oldest <= after + 1 => (
            log.into_iter().filter(|c| c.version > after).collect(),
            false,
        ),
        _ => (Vec::new(), true),
    }
}
