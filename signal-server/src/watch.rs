//! One watch of a room, shared by the SSE, WebSocket and long-poll transports.
//!
//! A watcher subscribes to the fan-out *before* reading the room, so no change falls between
//! the two; it then delivers every change after its start exactly once and in version order.
//! Gaps (a lagging queue, a missed pub/sub message) are filled from the store's bounded change
//! log; when the log no longer reaches back far enough the client is told to `resync`. A timer
//! at the room's (and earliest blob's) expiry turns silent TTL expiry into events.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::fanout::{FanoutEvent, Subscription};
use crate::model::{Change, ChangeOp, ChangesSince, RoomCode, SlotName};
use crate::store::{Store, StoreError};

/// What a watcher tells its client.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The watch is live; changes after `version` follow.
    Ready {
        version: u64,
    },
    Change(Arc<Change>),
    /// Changes were lost to the bounded log: re-read the room, then continue from `version`.
    Resync {
        version: u64,
    },
    /// The room reached its TTL. Final.
    RoomExpired {
        version: u64,
    },
    /// The store or its change feed failed; reconnect with the last id to resume. Final.
    Unavailable,
    /// The server is shutting down; reconnect (to another replica) to resume. Final.
    Shutdown,
}

impl WatchEvent {
    /// The event's name on the wire (`type` in JSON, `event:` in SSE).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "ready",
            Self::Change(_) => "change",
            Self::Resync { .. } => "resync",
            Self::RoomExpired { .. } => "room_expired",
            Self::Unavailable => "unavailable",
            Self::Shutdown => "shutdown",
        }
    }

    /// The version a client resumes after (SSE `id:`), when the event moves it.
    pub fn version(&self) -> Option<u64> {
        match self {
            Self::Ready { version } | Self::Resync { version } | Self::RoomExpired { version } => {
                Some(*version)
            }
            Self::Change(change) => Some(change.version),
            Self::Unavailable | Self::Shutdown => None,
        }
    }

    /// No event follows this one.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Change(change) => change.op == ChangeOp::RoomDeleted,
            Self::RoomExpired { .. } | Self::Unavailable | Self::Shutdown => true,
            Self::Ready { .. } | Self::Resync { .. } => false,
        }
    }

    /// `{"type": kind, ...}`; a change carries its own fields.
    pub fn to_json(&self) -> Value {
        let mut value = match self {
            Self::Change(change) => serde_json::to_value(&**change).unwrap_or(Value::Null),
            _ => json!({}),
        };
        if let Value::Object(map) = &mut value {
            map.insert("type".into(), self.kind().into());
            if !matches!(self, Self::Change(_))
                && let Some(version) = self.version()
            {
                map.insert("version".into(), version.into());
            }
        }
        value
    }
}

/// An open watch. Call [`Watcher::next`] until it returns `None`.
pub struct Watcher {
    store: Store,
    clock: Clock,
    code: RoomCode,
    slot: Option<SlotName>,
    subscription: Subscription,
    shutdown: CancellationToken,
    /// Highest version delivered (or skipped by the slot filter).
    last: u64,
    pending: VecDeque<WatchEvent>,
    room_expires_at: u64,
    next_blob_expiry: Option<u64>,
    done: bool,
}

impl Watcher {
    /// Starts watching `code` (only `slot`, if given) after version `after` (`None`: from now).
    pub async fn start(
        store: Store,
        clock: Clock,
        code: RoomCode,
        slot: Option<SlotName>,
        after: Option<u64>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let subscription = store.fanout().subscribe(code.as_str());
        if !store.fanout().is_available() {
            return Err(StoreError::Unavailable("change feed is down".into()));
        }
        let since = store.changes_since(&code, after, clock.now_ms()).await?;
        let mut watcher = Self {
            store,
            clock,
            code,
            slot,
            subscription,
            shutdown,
            last: after.unwrap_or(since.version),
            pending: VecDeque::new(),
            room_expires_at: since.room_expires_at,
            next_blob_expiry: since.next_blob_expiry,
            done: false,
        };
        watcher.pending.push_back(WatchEvent::Ready {
            version: if since.truncated {
                since.version
            } else {
                watcher.last
            },
        });
        watcher.absorb(since);
        Ok(watcher)
    }

    /// The next event, or `None` after a final one.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let wake_at = self
                .next_blob_expiry
                .map_or(self.room_expires_at, |e| e.min(self.room_expires_at));
            let sleep = tokio::time::sleep(self.clock.until(wake_at));
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    self.done = true;
                    return Some(WatchEvent::Shutdown);
                }
                received = self.subscription.rx.recv() => match received {
                    Ok(FanoutEvent::Change(change)) if change.version <= self.last + 1 => {
                        self.accept(change);
                    }
                    // A version gap or a lagging queue: the log has what we missed.
                    Ok(FanoutEvent::Change(_)) | Err(RecvError::Lagged(_)) => self.catch_up().await,
                    Ok(FanoutEvent::Unavailable) | Err(RecvError::Closed) => {
                        self.done = true;
                        return Some(WatchEvent::Unavailable);
                    }
                },
                () = sleep => self.catch_up().await,
            }
        }
    }

    /// The watched room.
    pub fn code(&self) -> &RoomCode {
        &self.code
    }

    /// Events already due, without waiting (for long-poll batching).
    pub fn ready_now(&mut self) -> Vec<WatchEvent> {
        while let Ok(received) = self.subscription.rx.try_recv() {
            match received {
                FanoutEvent::Change(change) if change.version <= self.last + 1 => {
                    self.accept(change)
                }
                // Left for `next`, which catches up from the log.
                _ => break,
            }
        }
        self.pending.drain(..).collect()
    }

    async fn catch_up(&mut self) {
        let now = self.clock.now_ms();
        match self
            .store
            .changes_since(&self.code, Some(self.last), now)
            .await
        {
            Ok(since) => self.absorb(since),
            Err(StoreError::NoRoom) => {
                self.pending
                    .push_back(WatchEvent::RoomExpired { version: self.last });
                self.done = true;
            }
            Err(err) => {
                tracing::warn!(room = %self.code, %err, "watch catch-up failed");
                self.pending.push_back(WatchEvent::Unavailable);
                self.done = true;
            }
        }
    }

    fn absorb(&mut self, since: ChangesSince) {
        self.room_expires_at = since.room_expires_at;
        self.next_blob_expiry = since.next_blob_expiry;
        if since.truncated {
            self.last = since.version;
            self.pending.push_back(WatchEvent::Resync {
                version: since.version,
            });
            return;
        }
        for change in since.changes {
            self.accept(Arc::new(change));
        }
    }

    fn accept(&mut self, change: Arc<Change>) {
        if change.version <= self.last || self.done {
            return;
        }
        self.last = change.version;
        self.room_expires_at = change.room_expires_at;
        if let Some(expiry) = change.expires_at {
            self.next_blob_expiry = Some(self.next_blob_expiry.map_or(expiry, |e| e.min(expiry)));
        }
        let room_deleted = change.op == ChangeOp::RoomDeleted;
        let wanted = match &self.slot {
            Some(slot) => room_deleted || change.slot.as_deref() == Some(slot.as_str()),
            None => true,
        };
        if wanted {
            self.pending.push_back(WatchEvent::Change(change));
        }
        if room_deleted {
            self.done = true;
        }
    }
}
