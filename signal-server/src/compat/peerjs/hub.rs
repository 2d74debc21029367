//! Who is connected under which ID, and how a message reaches its destination: directly when
//! the destination's socket is on this replica, over Redis pub/sub when it is on another, into
//! a bounded queue when it is offline (delivered when it connects, or expired by its sender).
//!
//! With Redis, an ID is registered as `{p}:{peerjs:KEY:ID}:peer` holding the socket's owner
//! (replica and session) followed by the client's token, with a TTL of the liveness timeout, so
//! an ID is unique across replicas and a crashed replica's IDs free themselves. A re-attach
//! with the same token takes the registration over and tells every replica to close the
//! socket it replaced; that socket's later leave or refresh no longer matches the value.
//! Each step that must not race (register and drain the queue; check the registration and
//! publish or queue) is one Lua script on the ID's hash slot.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::{RedisStore, Store, StoreError};

/// What a session's socket is told to do.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// Another socket took this ID over with the same token.
    Replaced,
}

/// Result of a connection attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Join {
    /// New registration; the queued messages follow `OPEN`.
    Open(Vec<String>),
    /// The same ID and token again: the new socket replaces the old one, without `OPEN`.
    Reattached(Vec<String>),
    Taken,
    Full,
}

/// Result of relaying one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// Held for the offline destination; the id lets the sender expire it.
    Queued(String),
    /// The destination is offline and the message is not worth queueing (LEAVE, EXPIRE).
    Dropped,
    /// The destination's queue is full.
    QueueFull,
}

/// One registered socket on this replica.
struct LocalPeer {
    token: String,
    session: u64,
    /// [`Hub::owner`] of the session, so a takeover announced by another replica spares it.
    owner: String,
    tx: mpsc::Sender<Outbound>,
}

/// A queued message: its id (for expiry) and its frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Queued {
    m: String,
    t: String,
}

/// A message crossing replicas: a frame for `dst`, or news that the socket `replaced_by` now
/// holds `dst`, so any other socket holding it must close.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Relayed {
    dst: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced_by: Option<String>,
}

/// Limits the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    pub concurrent: usize,
    pub queue_len: usize,
    pub expire: Duration,
    pub alive: Duration,
}

pub struct Hub {
    api_key: String,
    limits: HubLimits,
    local: Mutex<HashMap<String, LocalPeer>>,
    backend: Backend,
    next_session: AtomicU64,
    /// Tells this replica's sessions from every other's in the registrations.
    replica: u64,
}

/// Length of [`Hub::owner`]: the registration's value is the owner, then the token.
const OWNER_LEN: usize = 32;

enum Backend {
    Memory {
        queues: Mutex<HashMap<String, VecDeque<Queued>>>,
    },
    Redis {
        store: std::sync::Arc<RedisStore>,
        scripts: Box<Scripts>,
    },
}

/// The Lua scripts, hashed once (`Script::new` digests its source) rather than per message.
struct Scripts {
    join: redis::Script,
    route: redis::Script,
    refresh: redis::Script,
    leave: redis::Script,
    queued: redis::Script,
    unqueue: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            join: redis::Script::new(JOIN),
            route: redis::Script::new(ROUTE),
            refresh: redis::Script::new(REFRESH),
            leave: redis::Script::new(LEAVE),
            queued: redis::Script::new("return redis.call('LRANGE', KEYS[1], 0, -1)"),
            unqueue: redis::Script::new("return redis.call('LREM', KEYS[1], 1, ARGV[1])"),
        }
    }
}

/// SET the registration (ARGV[1], owner then token) unless another token holds it; announce a
/// takeover from another owner so its replica closes the old socket; hand over the queue.
const JOIN: &str = r"
local cur = redis.call('GET', KEYS[1])
local status = 'open'
local owner_len = tonumber(ARGV[3])
if cur and string.sub(cur, owner_len + 1) == string.sub(ARGV[1], owner_len + 1) then
  status = 'reattached'
  if cur ~= ARGV[1] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
elseif cur then return {'taken'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local queued = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return {status, queued}
";

/// Publish to the destination's replica if it is registered, else queue (bounded, with TTL).
const ROUTE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 'delivered'
end
if ARGV[5] == '0' then return 'dropped' end
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[4]) then return 'full' end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 'queued'
";

/// Keep the registration alive while this session holds it (re-SET if it lapsed).
const REFRESH: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

const LEAVE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

impl Hub {
    pub fn new(api_key: String, limits: HubLimits, store: &Store) -> Self {
        let backend = match store {
            Store::Memory(_) => Backend::Memory {
                queues: Mutex::default(),
            },
            Store::Redis(redis) => Backend::Redis {
                store: std::sync::Arc::clone(redis),
                scripts: Box::new(Scripts::new()),
            },
        };
        Self {
            api_key,
            limits,
            local: Mutex::default(),
            backend,
            next_session: AtomicU64::new(1),
            replica: rand::random(),
        }
    }

    /// Who holds a registration: this replica and one of its sessions ([`OWNER_LEN`] chars).
    fn owner(&self, session: u64) -> String {
        format!("{:016x}{session:016x}", self.replica)
    }

    /// The registration's value in Redis.
    fn registration(&self, session: u64, token: &str) -> String {
        self.owner(session) + token
    }

    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    /// The feed of messages other replicas publish for sockets here (Redis only).
    pub fn remote_feed(&self) -> Option<tokio::sync::broadcast::Receiver<Bytes>> {
        match &self.backend {
            Backend::Redis { store, .. } => Some(store.peer_feed()),
            Backend::Memory { .. } => None,
        }
    }

    /// Registers `id` for this socket; returns the outcome and the session number to leave with.
    pub async fn join(
        &self,
        id: &str,
        token: &str,
        tx: mpsc::Sender<Outbound>,
    ) -> Result<(Join, u64), StoreError> {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let held_here = {
            let local = self.lock_local();
            match local.get(id) {
                Some(peer) if peer.token != token => return Ok((Join::Taken, session)),
                Some(_) => true,
                None if local.len() >= self.limits.concurrent => {
                    return Ok((Join::Full, session));
                }
                None => false,
            }
        };
        // Registered here before the queue is handed over, so a message sent meanwhile reaches
        // this socket's channel, behind the queued ones, instead of a queue already drained.
        let old = self.lock_local().insert(
            id.to_owned(),
            LocalPeer {
                token: token.to_owned(),
                session,
                owner: self.owner(session),
                tx,
            },
        );
        if let Some(old) = old {
            let _ = old.tx.try_send(Outbound::Replaced);
        }
        let join = match self.take_queue(id, token, session, held_here).await {
            Ok(join) => join,
            Err(err) => {
                self.forget_session(id, session);
                return Err(err);
            }
        };
        if !matches!(join, Join::Open(_) | Join::Reattached(_)) {
            self.forget_session(id, session);
        }
        Ok((join, session))
    }

    /// Registers `id` in the store and hands over its queue: `Open`/`Reattached` with the
    /// queued frames, or `Taken` when another token holds it.
    async fn take_queue(
        &self,
        id: &str,
        token: &str,
        session: u64,
        held_here: bool,
    ) -> Result<Join, StoreError> {
        Ok(match &self.backend {
            Backend::Memory { queues } => {
                let queued = queues.lock().expect("queue lock poisoned").remove(id);
                let texts = queued.into_iter().flatten().map(|q| q.t).collect();
                if held_here {
                    Join::Reattached(texts)
                } else {
                    Join::Open(texts)
                }
            }
            Backend::Redis { store, scripts } => {
                let keys = store.keys().peerjs_keys(&self.api_key, id);
                let alive = self.limits.alive.as_millis().to_string();
                let takeover = serde_json::to_string(&Relayed {
                    dst: id.to_owned(),
                    replaced_by: Some(self.owner(session)),
                    ..Relayed::default()
                })
                .unwrap_or_default();
                let args = [
                    self.registration(session, token),
                    alive,
                    OWNER_LEN.to_string(),
                    store.keys().peerjs_channel(),
                    takeover,
                ];
                let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
                let (status, queued): (String, Vec<String>) = match store
                    .eval::<redis::Value>(&scripts.join, &keys, &args)
                    .await?
                {
                    redis::Value::Array(items) => {
                        let mut items = items.into_iter();
                        let status = items
                            .next()
                            .and_then(|v| redis::from_redis_value(v).ok())
                            .unwrap_or_default();
                        let queued = items
                            .next()
                            .and_then(|v| redis::from_redis_value(v).ok())
                            .unwrap_or_default();
                        (status, queued)
                    }
                    _ => return Err(StoreError::Unavailable("bad JOIN reply".into())),
                };
                let texts = queued
                    .iter()
                    .filter_map(|q| serde_json::from_str::<Queued>(q).ok())
                    .map(|q| q.t)
                    .collect();
                match status.as_str() {
                    "open" => Join::Open(texts),
                    "reattached" => Join::Reattached(texts),
                    _ => Join::Taken,
                }
            }
        })
    }

    /// Drops this replica's entry for `id` if it is still `session`'s.
    fn forget_session(&self, id: &str, session: u64) {
        let mut local = self.lock_local();
        if local.get(id).is_some_and(|p| p.session == session) {
            local.remove(id);
        }
    }

    /// Refreshes the registration's TTL; `false` if another socket now holds the ID.
    pub async fn refresh(&self, id: &str, token: &str, session: u64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory { .. } => Ok(true),
            Backend::Redis { store, scripts } => {
                let keys = store.keys().peerjs_keys(&self.api_key, id);
                let alive = self.limits.alive.as_millis().to_string();
                let value = self.registration(session, token);
                let held: i64 = store
                    .eval(
                        &scripts.refresh,
                        &keys[..1],
                        &[value.as_bytes(), alive.as_bytes()],
                    )
                    .await?;
                Ok(held == 1)
            }
        }
    }

    /// Ends `session`'s hold on `id` (a newer socket with the same token keeps it).
    pub async fn leave(&self, id: &str, token: &str, session: u64) {
        let held = {
            let mut local = self.lock_local();
            let held = local.get(id).is_some_and(|p| p.session == session);
            if held {
                local.remove(id);
            }
            held
        };
        if !held {
            return;
        }
        if let Backend::Redis { store, scripts } = &self.backend {
            let keys = store.keys().peerjs_keys(&self.api_key, id);
            let value = self.registration(session, token);
            if let Err(err) = store
                .eval::<i64>(&scripts.leave, &keys[..1], &[value.as_bytes()])
                .await
            {
                // Its TTL frees the ID anyway.
                tracing::warn!(%err, "PeerJS registration not removed");
            }
        }
    }

    /// Relays `text` (already stamped with `src`) to `dst`.
    pub async fn send(&self, dst: &str, text: String, queueable: bool) -> Result<Sent, StoreError> {
        // On Redis every message goes through the ROUTE script, even to a socket on this
        // replica: a shortcut would overtake messages to the same peer still in pub/sub.
        if matches!(self.backend, Backend::Memory { .. })
            && let Some(sent) = self.deliver_local(dst, &text)
        {
            return Ok(sent);
        }
        let id = format!("{:016x}", rand::random::<u64>());
        match &self.backend {
            Backend::Memory { queues } => {
                if !queueable {
                    return Ok(Sent::Dropped);
                }
                let mut queues = queues.lock().expect("queue lock poisoned");
                let queue = queues.entry(dst.to_owned()).or_default();
                if queue.len() >= self.limits.queue_len {
                    return Ok(Sent::QueueFull);
                }
                queue.push_back(Queued {
                    m: id.clone(),
                    t: text,
                });
                Ok(Sent::Queued(id))
            }
            Backend::Redis { store, scripts } => {
                let keys = store.keys().peerjs_keys(&self.api_key, dst);
                let channel = store.keys().peerjs_channel();
                let relayed = serde_json::to_string(&Relayed {
                    dst: dst.to_owned(),
                    text: text.clone(),
                    replaced_by: None,
                })
                .unwrap_or_default();
                let queued = serde_json::to_string(&Queued {
                    m: id.clone(),
                    t: text,
                })
                .unwrap_or_default();
                let max = self.limits.queue_len.to_string();
                // The queue outlives its expiry check, which removes what is left.
                let ttl = (self.limits.expire * 2).as_millis().to_string();
                let status: String = store
                    .eval(
                        &scripts.route,
                        &keys,
                        &[
                            channel.as_bytes(),
                            relayed.as_bytes(),
                            queued.as_bytes(),
                            max.as_bytes(),
                            if queueable { b"1" } else { b"0" },
                            ttl.as_bytes(),
                        ],
                    )
                    .await?;
                Ok(match status.as_str() {
                    "delivered" => Sent::Delivered,
                    "queued" => Sent::Queued(id),
                    "full" => Sent::QueueFull,
                    _ => Sent::Dropped,
                })
            }
        }
    }

    /// Removes queued messages `ids` for `dst` that were never delivered; `true` if any was.
    pub async fn expire(&self, dst: &str, ids: &[String]) -> bool {
        match &self.backend {
            Backend::Memory { queues } => {
                let mut queues = queues.lock().expect("queue lock poisoned");
                let Some(queue) = queues.get_mut(dst) else {
                    return false;
                };
                let before = queue.len();
                queue.retain(|q| !ids.contains(&q.m));
                let removed = queue.len() < before;
                if queue.is_empty() {
                    queues.remove(dst);
                }
                removed
            }
            Backend::Redis { store, scripts } => {
                let keys = store.keys().peerjs_keys(&self.api_key, dst);
                // LREM needs the exact element, which holds the id and the frame.
                let queued: Vec<String> = match store.eval(&scripts.queued, &keys[1..], &[]).await {
                    Ok(queued) => queued,
                    Err(_) => return false,
                };
                let mut removed = false;
                for raw in queued {
                    let ours =
                        serde_json::from_str::<Queued>(&raw).is_ok_and(|q| ids.contains(&q.m));
                    if ours {
                        let n: i64 = store
                            .eval(&scripts.unqueue, &keys[1..], &[raw.as_bytes()])
                            .await
                            .unwrap_or(0);
                        removed |= n > 0;
                    }
                }
                removed
            }
        }
    }

    /// IDs connected under this key (for discovery), up to `limit`.
    pub async fn ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Memory { .. } => Ok(self.lock_local().keys().take(limit).cloned().collect()),
            Backend::Redis { store, .. } => {
                let schema = store.keys();
                let keys = store
                    .scan_keys(&schema.peerjs_pattern(&self.api_key), limit)
                    .await?;
                Ok(keys
                    .iter()
                    .filter_map(|key| schema.parse_peerjs(key))
                    .filter(|(api_key, _)| *api_key == self.api_key)
                    .map(|(_, id)| id.to_owned())
                    .collect())
            }
        }
    }

    /// Delivers a message a replica published, if its destination is here; or closes the
    /// socket here that a re-attach elsewhere replaced.
    pub fn deliver_remote(&self, payload: &[u8]) {
        match serde_json::from_slice::<Relayed>(payload) {
            Ok(Relayed {
                dst,
                replaced_by: Some(owner),
                ..
            }) => self.close_replaced(&dst, &owner),
            Ok(relayed) => {
                self.deliver_local(&relayed.dst, &relayed.text);
            }
            Err(err) => tracing::warn!(%err, "malformed PeerJS relay message"),
        }
    }

    fn close_replaced(&self, id: &str, new_owner: &str) {
        if let Some(peer) = self.lock_local().get(id)
            && peer.owner != new_owner
        {
            // If its queue is full the next refresh finds the registration gone and closes it.
            let _ = peer.tx.try_send(Outbound::Replaced);
        }
    }

    fn deliver_local(&self, dst: &str, text: &str) -> Option<Sent> {
        let local = self.lock_local();
        let peer = local.get(dst)?;
        // A full socket queue means a stuck client: drop rather than grow without bound.
        if peer.tx.try_send(Outbound::Text(text.to_owned())).is_err() {
            tracing::debug!("PeerJS socket queue full; message dropped");
        }
        Some(Sent::Delivered)
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalPeer>> {
        self.local.lock().expect("peer map lock poisoned")
    }
}
