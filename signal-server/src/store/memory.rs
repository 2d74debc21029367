//! The embedded store: rooms in a map behind one lock, expired by a deadline index.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{StoreError, select_since};
use crate::fanout::Fanout;
use crate::model::{
    Blob, Change, ChangeOp, ChangesSince, Limits, Precondition, PutBlob, RoomCode, RoomInfo,
    SlotInfo, SlotName,
};

/// In-memory rooms with the same semantics as the Redis store.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    limits: Limits,
    fanout: Arc<Fanout>,
    bytes: AtomicU64,
    /// Woken when a room gets a deadline earlier than the sweeper is sleeping towards.
    pub(crate) deadline_changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    rooms: HashMap<RoomCode, Room>,
    /// (deadline, room) for every room, so sweeping never scans all rooms.
    deadlines: BTreeSet<(u64, RoomCode)>,
}

#[derive(Debug)]
struct Room {
    created_at: u64,
    version: u64,
    deadline: u64,
    slots: BTreeMap<SlotName, (SlotInfo, Bytes)>,
    log: VecDeque<Change>,
}

impl MemoryStore {
    pub fn new(limits: Limits, fanout: Arc<Fanout>) -> Self {
        fanout.set_available(true);
        Self {
            inner: Mutex::default(),
            limits,
            fanout,
            bytes: AtomicU64::new(0),
            deadline_changed: tokio::sync::Notify::new(),
        }
    }

    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    pub fn bytes_stored(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Codes of up to `limit` live rooms, in no particular order.
    pub fn room_codes(&self, limit: usize, now: u64) -> Vec<RoomCode> {
        let inner = self.lock();
        inner
            .rooms
            .iter()
            .filter(|(_, room)| room.deadline > now)
            .map(|(code, _)| code.clone())
            .take(limit)
            .collect()
    }

    pub fn create_room(&self, code: &RoomCode, now: u64) -> Result<RoomInfo, StoreError> {
        let mut inner = self.lock();
        if inner.live_room(code, now, &self.bytes).is_some() {
            return Err(StoreError::RoomExists);
        }
        let deadline = self.limits.room_deadline(now, now);
        inner.rooms.insert(
            code.clone(),
            Room {
                created_at: now,
                version: 0,
                deadline,
                slots: BTreeMap::new(),
                log: VecDeque::new(),
            },
        );
        inner.deadlines.insert((deadline, code.clone()));
        drop(inner);
        self.deadline_changed.notify_one();
        Ok(RoomInfo {
            code: code.as_str().to_owned(),
            version: 0,
            created_at: now,
            expires_at: deadline,
            slots: Vec::new(),
        })
    }

    pub fn room(&self, code: &RoomCode, now: u64) -> Result<RoomInfo, StoreError> {
        let mut inner = self.lock();
        let room = self.reaped_room(&mut inner, code, now)?;
        Ok(RoomInfo {
            code: code.as_str().to_owned(),
            version: room.version,
            created_at: room.created_at,
            expires_at: room.deadline,
            slots: room.slots.values().map(|(info, _)| info.clone()).collect(),
        })
    }

    pub fn delete_room(&self, code: &RoomCode, now: u64) -> Result<Change, StoreError> {
        let mut inner = self.lock();
        let room = self.reaped_room(&mut inner, code, now)?;
        let change = Change {
            room: code.as_str().to_owned(),
            version: room.version + 1,
            op: ChangeOp::RoomDeleted,
            slot: None,
            size: None,
            content_type: None,
            expires_at: None,
            at: now,
            room_expires_at: now,
        };
        inner.remove_room(code, &self.bytes);
        self.fanout.publish(change.clone());
        Ok(change)
    }

    pub fn put_blob(&self, code: &RoomCode, put: PutBlob, now: u64) -> Result<Change, StoreError> {
        let mut inner = self.lock();
        let limits = self.limits;
        let room = self.reaped_room(&mut inner, code, now)?;
        let current = room.slots.get(&put.slot).map(|(info, _)| info.version);
        check_precondition(put.precondition, current)?;
        if current.is_none() && room.slots.len() >= limits.max_slots {
            return Err(StoreError::TooManySlots);
        }
        let old_deadline = room.deadline;
        room.version += 1;
        room.deadline = limits.room_deadline(room.created_at, now);
        let size = put.data.len() as u64;
        let expires_at = put.ttl_ms.map(|ttl| (now + ttl).min(room.deadline));
        let info = SlotInfo {
            name: put.slot.clone(),
            version: room.version,
            size,
            content_type: put.content_type.clone(),
            expires_at,
        };
        let old = room.slots.insert(put.slot.clone(), (info, put.data));
        let freed = old.map_or(0, |(info, _)| info.size);
        let change = Change {
            room: code.as_str().to_owned(),
            version: room.version,
            op: ChangeOp::Put,
            slot: Some(put.slot.as_str().to_owned()),
            size: Some(size),
            content_type: Some(put.content_type),
            expires_at,
            at: now,
            room_expires_at: room.deadline,
        };
        push_log(room, change.clone(), limits.log_len);
        let new_deadline = room.deadline;
        inner.move_deadline(code, old_deadline, new_deadline);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        self.fanout.publish(change.clone());
        Ok(change)
    }

    pub fn blob(&self, code: &RoomCode, slot: &SlotName, now: u64) -> Result<Blob, StoreError> {
        let mut inner = self.lock();
        let room = self.reaped_room(&mut inner, code, now)?;
        let (info, data) = room.slots.get(slot).ok_or(StoreError::NoSlot)?;
        Ok(Blob {
            info: info.clone(),
            data: data.clone(),
        })
    }

    pub fn delete_blob(
        &self,
        code: &RoomCode,
        slot: &SlotName,
        precondition: Precondition,
        now: u64,
    ) -> Result<Change, StoreError> {
        let mut inner = self.lock();
        let limits = self.limits;
        let room = self.reaped_room(&mut inner, code, now)?;
        let current = room.slots.get(slot).map(|(info, _)| info.version);
        if current.is_none() {
            return Err(StoreError::NoSlot);
        }
        check_precondition(precondition, current)?;
        let (info, _) = room.slots.remove(slot).ok_or(StoreError::NoSlot)?;
        let old_deadline = room.deadline;
        room.version += 1;
        room.deadline = limits.room_deadline(room.created_at, now);
        let change = Change {
            room: code.as_str().to_owned(),
            version: room.version,
            op: ChangeOp::Delete,
            slot: Some(slot.as_str().to_owned()),
            size: None,
            content_type: None,
            expires_at: None,
            at: now,
            room_expires_at: room.deadline,
        };
        push_log(room, change.clone(), limits.log_len);
        let new_deadline = room.deadline;
        inner.move_deadline(code, old_deadline, new_deadline);
        self.bytes.fetch_sub(info.size, Ordering::Relaxed);
        self.fanout.publish(change.clone());
        Ok(change)
    }

    pub fn changes_since(
        &self,
        code: &RoomCode,
        after: Option<u64>,
        now: u64,
    ) -> Result<ChangesSince, StoreError> {
        let mut inner = self.lock();
        let room = self.reaped_room(&mut inner, code, now)?;
        let oldest = room.log.front().map(|c| c.version);
        let (changes, truncated) =
            select_since(room.log.iter().cloned(), oldest, room.version, after);
        Ok(ChangesSince {
            version: room.version,
            changes,
            truncated,
            room_expires_at: room.deadline,
            next_blob_expiry: room.slots.values().filter_map(|(i, _)| i.expires_at).min(),
        })
    }

    /// Drops every room past its deadline; returns how many went and the next deadline, if
    /// any room is left.
    pub fn expire_due(&self, now: u64) -> (u64, Option<u64>) {
        let mut inner = self.lock();
        let mut removed = 0;
        while let Some((deadline, code)) = inner.deadlines.first().cloned() {
            if deadline > now {
                return (removed, Some(deadline));
            }
            inner.remove_room(&code, &self.bytes);
            removed += 1;
        }
        (removed, None)
    }

    /// Number of rooms held (live or not yet swept).
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("memory store lock poisoned")
    }

    /// The live room with expired blobs removed (each logged and published as `expire`).
    fn reaped_room<'a>(
        &self,
        inner: &'a mut Inner,
        code: &RoomCode,
        now: u64,
    ) -> Result<&'a mut Room, StoreError> {
        let room = inner
            .live_room(code, now, &self.bytes)
            .ok_or(StoreError::NoRoom)?;
        let expired: Vec<SlotName> = room
            .slots
            .iter()
            .filter(|(_, (info, _))| info.expires_at.is_some_and(|e| now >= e))
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            if let Some((info, _)) = room.slots.remove(&name) {
                self.bytes.fetch_sub(info.size, Ordering::Relaxed);
            }
            room.version += 1;
            let change = Change {
                room: code.as_str().to_owned(),
                version: room.version,
                op: ChangeOp::Expire,
                slot: Some(name.as_str().to_owned()),
                size: None,
                content_type: None,
                expires_at: None,
                at: now,
                room_expires_at: room.deadline,
            };
            push_log(room, change.clone(), self.limits.log_len);
            self.fanout.publish(change);
        }
        Ok(room)
    }
}

impl Inner {
    /// The room if it exists and is before its deadline; a room past it is dropped on the spot.
    fn live_room(&mut self, code: &RoomCode, now: u64, bytes: &AtomicU64) -> Option<&mut Room> {
        let expired = self.rooms.get(code)?.deadline <= now;
        if expired {
            self.remove_room(code, bytes);
            return None;
        }
        self.rooms.get_mut(code)
    }

    fn remove_room(&mut self, code: &RoomCode, bytes: &AtomicU64) {
        if let Some(room) = self.rooms.remove(code) {
            self.deadlines.remove(&(room.deadline, code.clone()));
            let held: u64 = room.slots.values().map(|(info, _)| info.size).sum();
            bytes.fetch_sub(held, Ordering::Relaxed);
        }
    }

    fn move_deadline(&mut self, code: &RoomCode, old: u64, new: u64) {
        if old != new {
            self.deadlines.remove(&(old, code.clone()));
            self.deadlines.insert((new, code.clone()));
        }
    }
}

fn check_precondition(precondition: Precondition, current: Option<u64>) -> Result<(), StoreError> {
    let ok = match precondition {
        Precondition::None => true,
        Precondition::Absent => current.is_none(),
        Precondition::Version(v) => current == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::PreconditionFailed { current })
    }
}

fn push_log(room: &mut Room, change: Change, log_len: usize) {
    room.log.push_back(change);
    while room.log.len() > log_len {
        room.log.pop_front();
    }
}

/// Sweeps expired rooms at their deadlines until `shutdown`; memory stays bounded by live rooms.
pub async fn run_sweeper(
    store: Arc<MemoryStore>,
    clock: crate::clock::Clock,
    shutdown: tokio_util::sync::CancellationToken,
    swept: prometheus::IntCounter,
) {
    loop {
        let (removed, next) = store.expire_due(clock.now_ms());
        swept.inc_by(removed);
        let wait = next.map_or(std::time::Duration::from_secs(3600), |d| {
            std::time::Duration::from_millis(d.saturating_sub(clock.now_ms()))
        });
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = store.deadline_changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(log_len: usize) -> MemoryStore {
        let limits = Limits {
            idle_ttl_ms: 1_000,
            max_age_ms: 5_000,
            max_slots: 2,
            log_len,
        };
        MemoryStore::new(limits, Fanout::new(8, true))
    }

    fn put(
        slot: &str,
        data: &'static [u8],
        precondition: Precondition,
        ttl_ms: Option<u64>,
    ) -> PutBlob {
        PutBlob {
            slot: SlotName::parse(slot).unwrap(),
            data: Bytes::from_static(data),
            content_type: "application/octet-stream".into(),
            precondition,
            ttl_ms,
        }
    }

    #[test]
    fn idle_ttl_and_max_age_follow_the_passed_clock() {
        let s = store(8);
        let code = RoomCode::parse("ROOM01").unwrap();
        s.create_room(&code, 0).unwrap();
        // Writes every 900 ms keep it alive until the hard max age.
        for t in (900..5_000).step_by(900) {
            s.put_blob(&code, put("offer", b"x", Precondition::None, None), t)
                .unwrap();
        }
        assert_eq!(s.room(&code, 4_999).unwrap().expires_at, 5_000);
        assert_eq!(s.room(&code, 5_000).unwrap_err(), StoreError::NoRoom);
        assert_eq!(s.bytes_stored(), 0);
    }

    #[test]
    fn versions_preconditions_and_slot_cap() {
        let s = store(8);
        let code = RoomCode::parse("ROOM02").unwrap();
        s.create_room(&code, 0).unwrap();
        assert_eq!(s.create_room(&code, 1).unwrap_err(), StoreError::RoomExists);
        let v1 = s
            .put_blob(&code, put("offer", b"a", Precondition::Absent, None), 1)
            .unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(
            s.put_blob(&code, put("offer", b"b", Precondition::Absent, None), 2)
                .unwrap_err(),
            StoreError::PreconditionFailed { current: Some(1) }
        );
        assert_eq!(
            s.put_blob(&code, put("offer", b"b", Precondition::Version(7), None), 2)
                .unwrap_err(),
            StoreError::PreconditionFailed { current: Some(1) }
        );
        let v2 = s
            .put_blob(&code, put("offer", b"b", Precondition::Version(1), None), 3)
            .unwrap();
        assert_eq!(v2.version, 2);
        s.put_blob(&code, put("answer", b"c", Precondition::None, None), 4)
            .unwrap();
        assert_eq!(
            s.put_blob(&code, put("third", b"d", Precondition::None, None), 5)
                .unwrap_err(),
            StoreError::TooManySlots
        );
        assert_eq!(s.bytes_stored(), 2);
    }

    #[test]
    fn blob_ttl_reaps_with_a_logged_change() {
        let s = store(8);
        let code = RoomCode::parse("ROOM03").unwrap();
        s.create_room(&code, 0).unwrap();
        s.put_blob(
            &code,
            put("cand-1", b"a", Precondition::None, Some(100)),
            10,
        )
        .unwrap();
        let slot = SlotName::parse("cand-1").unwrap();
        assert!(s.blob(&code, &slot, 109).is_ok());
        assert_eq!(s.blob(&code, &slot, 110).unwrap_err(), StoreError::NoSlot);
        let since = s.changes_since(&code, Some(1), 111).unwrap();
        assert_eq!(since.changes.len(), 1);
        assert_eq!(since.changes[0].op, ChangeOp::Expire);
        assert_eq!(since.version, 2);
    }

    #[test]
    fn bounded_log_reports_truncation() {
        let s = store(2);
        let code = RoomCode::parse("ROOM04").unwrap();
        s.create_room(&code, 0).unwrap();
        for t in 1..=4 {
            s.put_blob(&code, put("offer", b"a", Precondition::None, None), t)
                .unwrap();
        }
        assert!(s.changes_since(&code, Some(1), 5).unwrap().truncated);
        let ok = s.changes_since(&code, Some(2), 5).unwrap();
        assert!(!ok.truncated);
        assert_eq!(
            ok.changes.iter().map(|c| c.version).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(s.changes_since(&code, Some(9), 5).unwrap().truncated);
    }

    #[test]
    fn sweeper_index_drops_expired_rooms() {
        let s = store(2);
        for (i, t) in [0u64, 300, 600].into_iter().enumerate() {
            s.create_room(&RoomCode::parse(&format!("ROOMX{i}")).unwrap(), t)
                .unwrap();
        }
        assert_eq!(s.expire_due(1_300), (2, Some(1_600)));
        assert_eq!(s.room_count(), 1);
        assert_eq!(s.expire_due(1_600), (1, None));
    }
}
