//! In-process fan-out: one bounded broadcast channel per watched room.
//!
//! Stores publish changes here (the memory store directly, the Redis store from its pub/sub
//! subscription). A slow watcher lags instead of growing a queue; it then catches up from the
//! store's change log, so nothing unbounded is ever held for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::Change;

/// What a room's watchers receive.
#[derive(Debug, Clone)]
pub enum FanoutEvent {
    Change(Arc<Change>),
    /// The change feed broke (Redis pub/sub lost): watchers must end and let clients resume.
    Unavailable,
}

/// Registry of rooms that have local watchers.
#[derive(Debug)]
pub struct Fanout {
    rooms: Mutex<HashMap<String, broadcast::Sender<FanoutEvent>>>,
    capacity: usize,
    available: AtomicBool,
    delivered: prometheus::IntCounter,
}

impl Fanout {
    /// `capacity` bounds each room's queue; `available` is false until a feed is connected.
    pub fn new(capacity: usize, available: bool) -> Arc<Self> {
        let unregistered =
            prometheus::IntCounter::new("fanout_delivered", "unexported").expect("valid metric");
        Self::with_counter(capacity, available, unregistered)
    }

    /// Like [`Fanout::new`], counting changes delivered to watched rooms in `delivered`.
    pub fn with_counter(
        capacity: usize,
        available: bool,
        delivered: prometheus::IntCounter,
    ) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::default(),
            capacity: capacity.max(1),
            available: AtomicBool::new(available),
            delivered,
        })
    }

    /// Starts receiving a room's changes; dropping the subscription forgets the room when it was the last.
    pub fn subscribe(self: &Arc<Self>, room: &str) -> Subscription {
        let mut rooms = self.rooms.lock().expect("fanout lock poisoned");
        let rx = rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        Subscription {
            rx,
            fanout: Arc::clone(self),
            room: room.to_owned(),
        }
    }

    /// Delivers a change to the room's local watchers, if it has any. Returns whether any got it.
    pub fn publish(&self, change: Change) -> bool {
        let rooms = self.rooms.lock().expect("fanout lock poisoned");
        match rooms.get(&change.room) {
            Some(tx) => {
                self.delivered.inc();
                tx.send(FanoutEvent::Change(Arc::new(change))).is_ok()
            }
            None => false,
        }
    }

    /// Marks the feed up or down; going down tells every watcher.
    pub fn set_available(&self, available: bool) {
        let was = self.available.swap(available, Ordering::SeqCst);
        if was && !available {
            let rooms = self.rooms.lock().expect("fanout lock poisoned");
            for tx in rooms.values() {
                let _ = tx.send(FanoutEvent::Unavailable);
            }
        }
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    /// Whether the room has local watchers now (a later subscriber catches up from the log).
    pub fn is_watched(&self, room: &str) -> bool {
        self.rooms
            .lock()
            .expect("fanout lock poisoned")
            .contains_key(room)
    }

    /// Number of rooms with local watchers.
    pub fn watched_rooms(&self) -> usize {
        self.rooms.lock().expect("fanout lock poisoned").len()
    }
}

/// A room subscription; see [`Fanout::subscribe`].
#[derive(Debug)]
pub struct Subscription {
    pub rx: broadcast::Receiver<FanoutEvent>,
    fanout: Arc<Fanout>,
    room: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut rooms = self.fanout.rooms.lock().expect("fanout lock poisoned");
        // Our own receiver is still alive here, so 1 means we are the last.
        if rooms
            .get(&self.room)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            rooms.remove(&self.room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeOp;

    fn change(room: &str, version: u64) -> Change {
        Change {
            room: room.into(),
            version,
            op: ChangeOp::Put,
            slot: Some("offer".into()),
            size: Some(1),
            content_type: None,
            expires_at: None,
            at: 0,
            room_expires_at: 0,
        }
    }

    #[tokio::test]
    async fn delivers_to_subscribers_and_forgets_rooms_nobody_watches() {
        let fanout = Fanout::new(4, true);
        assert!(!fanout.publish(change("A", 1)));
        let mut a = fanout.subscribe("A");
        let b = fanout.subscribe("A");
        assert!(fanout.is_watched("A") && !fanout.is_watched("B"));
        assert!(fanout.publish(change("A", 2)));
        match a.rx.recv().await.unwrap() {
            FanoutEvent::Change(c) => assert_eq!(c.version, 2),
            other => panic!("{other:?}"),
        }
        drop(b);
        assert_eq!(fanout.watched_rooms(), 1);
        drop(a);
        assert_eq!(fanout.watched_rooms(), 0);
    }

    #[tokio::test]
    async fn going_unavailable_tells_watchers() {
        let fanout = Fanout::new(4, true);
        let mut a = fanout.subscribe("A");
        fanout.set_available(false);
        assert!(matches!(a.rx.recv().await, Ok(FanoutEvent::Unavailable)));
        assert!(!fanout.is_available());
    }
}
