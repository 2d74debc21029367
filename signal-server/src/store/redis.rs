//! The Redis store: each operation is one Lua script over one room's hash-tagged keys, so it is
//! atomic on a single server and on a Redis Cluster. Changes are published from inside the
//! scripts (in version order) and every replica feeds them to its local watchers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::keys::KeySchema;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio_util::sync::CancellationToken;

use super::StoreError;
use crate::fanout::Fanout;
use crate::model::{
    Blob, Change, ChangesSince, Limits, Precondition, PutBlob, RoomCode, RoomInfo, SlotInfo,
    SlotName,
};

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// `redis://…` is one server; a comma-separated list of URLs is a cluster's seed nodes.
    pub fn parse(urls: &str) -> Self {
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        match urls.as_slice() {
            [one] if !one.contains("cluster=") => Self::Single(one.clone()),
            _ => Self::Cluster(
                urls.iter()
                    .map(|u| u.replace("?cluster=true", "").replace("&cluster=true", ""))
                    .collect(),
            ),
        }
    }

    fn pubsub_urls(&self) -> Vec<String> {
        match self {
            Self::Single(url) => vec![url.clone()],
            Self::Cluster(urls) => urls.clone(),
        }
    }
}

/// One multiplexed connection of either kind; both reconnect on their own.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

struct Scripts {
    create: Script,
    info: Script,
    put: Script,
    get: Script,
    delete_blob: Script,
    delete_room: Script,
}

impl Scripts {
    fn load() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            create: with_prelude(include_str!("lua/create.lua")),
            info: with_prelude(include_str!("lua/info.lua")),
            put: with_prelude(include_str!("lua/put.lua")),
            get: with_prelude(include_str!("lua/get.lua")),
            delete_blob: with_prelude(include_str!("lua/delete_blob.lua")),
            delete_room: with_prelude(include_str!("lua/delete_room.lua")),
        }
    }
}

/// Rooms in Redis.
pub struct RedisStore {
    conn: Conn,
    target: RedisTarget,
    keys: KeySchema,
    limits: Limits,
    fanout: Arc<Fanout>,
    scripts: Scripts,
    timeout: Duration,
    errors: prometheus::IntCounter,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

type Reply = Vec<Value>;

impl RedisStore {
    /// Connects (failing fast if Redis does not answer within `timeout`).
    pub async fn connect(
        target: RedisTarget,
        keys: KeySchema,
        limits: Limits,
        fanout: Arc<Fanout>,
        timeout: Duration,
        errors: prometheus::IntCounter,
    ) -> Result<Self, StoreError> {
        let conn = tokio::time::timeout(timeout, open(&target, timeout))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to Redis".into()))?
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            target,
            keys,
            limits,
            fanout,
            scripts: Scripts::load(),
            timeout,
            errors,
        })
    }

    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        self.bounded(async move { cmd.query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    /// Redis `used_memory` of a single server; `None` on a cluster or when Redis does not answer.
    pub async fn used_memory(&self) -> Option<u64> {
        let Conn::Single(conn) = &self.conn else {
            return None;
        };
        let mut conn = conn.clone();
        let cmd = redis::cmd("INFO").arg("memory").clone();
        let info = self
            .bounded(async move { cmd.query_async::<String>(&mut conn).await })
            .await
            .ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
    }

    pub async fn create_room(&self, code: &RoomCode, now: u64) -> Result<RoomInfo, StoreError> {
        let reply = self.run(&self.scripts.create, code, now, &[]).await?;
        match status(&reply)? {
            "ok" => Ok(RoomInfo {
                code: code.as_str().to_owned(),
                version: 0,
                created_at: int(&reply, 1)?,
                expires_at: int(&reply, 3)?,
                slots: Vec::new(),
            }),
            "exists" => Err(StoreError::RoomExists),
            other => Err(unexpected(other)),
        }
    }

    pub async fn room(&self, code: &RoomCode, now: u64) -> Result<RoomInfo, StoreError> {
        let reply = self.run(&self.scripts.info, code, now, &[b"slots"]).await?;
        expect_ok(&reply)?;
        let mut slots = Vec::new();
        for pair in reply[5..].chunks(2) {
            let [name, meta] = pair else { break };
            let name = SlotName::parse(&text(name)?).map_err(|_| unexpected("slot name"))?;
            slots.push(parse_slot_meta(name, &text(meta)?)?);
        }
        Ok(RoomInfo {
            code: code.as_str().to_owned(),
            version: int(&reply, 2)?,
            created_at: int(&reply, 1)?,
            expires_at: int(&reply, 3)?,
            slots,
        })
    }

    pub async fn delete_room(&self, code: &RoomCode, now: u64) -> Result<Change, StoreError> {
        let reply = self.run(&self.scripts.delete_room, code, now, &[]).await?;
        expect_ok(&reply)?;
        change_at(&reply, 1)
    }

    pub async fn put_blob(
        &self,
        code: &RoomCode,
        put: PutBlob,
        now: u64,
    ) -> Result<Change, StoreError> {
        let ttl = put.ttl_ms.map(|t| t.to_string()).unwrap_or_default();
        let max_slots = self.limits.max_slots.to_string();
        let precondition = precondition_arg(put.precondition);
        let args: [&[u8]; 6] = [
            put.slot.as_str().as_bytes(),
            &put.data,
            put.content_type.as_bytes(),
            precondition.as_bytes(),
            ttl.as_bytes(),
            max_slots.as_bytes(),
        ];
        let reply = self.run(&self.scripts.put, code, now, &args).await?;
        expect_ok(&reply)?;
        change_at(&reply, 1)
    }

    pub async fn blob(
        &self,
        code: &RoomCode,
        slot: &SlotName,
        now: u64,
    ) -> Result<Blob, StoreError> {
        let reply = self
            .run(&self.scripts.get, code, now, &[slot.as_str().as_bytes()])
            .await?;
        expect_ok(&reply)?;
        let info = parse_slot_meta(slot.clone(), &text(&reply[1])?)?;
        let data = match reply.get(2) {
            Some(Value::BulkString(b)) => Bytes::copy_from_slice(b),
            _ => Bytes::new(),
        };
        Ok(Blob { info, data })
    }

    pub async fn delete_blob(
        &self,
        code: &RoomCode,
        slot: &SlotName,
        precondition: Precondition,
        now: u64,
    ) -> Result<Change, StoreError> {
        let precondition = precondition_arg(precondition);
        let args: [&[u8]; 2] = [slot.as_str().as_bytes(), precondition.as_bytes()];
        let reply = self
            .run(&self.scripts.delete_blob, code, now, &args)
            .await?;
        expect_ok(&reply)?;
        change_at(&reply, 1)
    }

    pub async fn changes_since(
        &self,
        code: &RoomCode,
        after: Option<u64>,
        now: u64,
    ) -> Result<ChangesSince, StoreError> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let args: [&[u8]; 2] = [b"since", after.as_bytes()];
        let reply = self.run(&self.scripts.info, code, now, &args).await?;
        expect_ok(&reply)?;
        let truncated = text(&reply[5])? == "truncated";
        let changes = (6..reply.len())
            .map(|i| change_at(&reply, i))
            .collect::<Result<Vec<_>, _>>()?;
        let next = text(&reply[4])?;
        Ok(ChangesSince {
            version: int(&reply, 2)?,
            changes,
            truncated,
            room_expires_at: int(&reply, 3)?,
            next_blob_expiry: next.parse().ok(),
        })
    }

    /// Feeds published changes to local watchers until `shutdown`, reconnecting with backoff.
    /// While disconnected the fan-out is marked unavailable, which ends every local watch.
    pub async fn run_subscriber(self: Arc<Self>, shutdown: CancellationToken) {
        let channel = self.keys.events_channel();
        let urls = self.target.pubsub_urls();
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0usize;
        loop {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            let session = async {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                () = shutdown.cancelled() => return,
                r = tokio::time::timeout(self.timeout, session) => r,
            };
            match pubsub {
                Ok(Ok(mut pubsub)) => {
                    tracing::info!("subscribed to change feed");
                    backoff = Duration::from_millis(50);
                    self.fanout.set_available(true);
                    let mut messages = pubsub.on_message();
                    loop {
                        let msg = tokio::select! {
                            () = shutdown.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        match serde_json::from_slice::<Change>(msg.get_payload_bytes()) {
                            Ok(change) => {
                                self.fanout.publish(change);
                            }
                            Err(err) => tracing::warn!(%err, "malformed change on feed"),
                        }
                    }
                    tracing::warn!("change feed lost");
                }
                Ok(Err(err)) => tracing::warn!(%err, "change feed connect failed"),
                Err(_) => tracing::warn!("change feed connect timed out"),
            }
            self.errors.inc();
            self.fanout.set_available(false);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn run(
        &self,
        script: &Script,
        code: &RoomCode,
        now: u64,
        extra: &[&[u8]],
    ) -> Result<Reply, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys.room_keys(code.as_str()) {
            invocation.key(key);
        }
        invocation
            .arg(now)
            .arg(code.as_str())
            .arg(self.keys.events_channel())
            .arg(self.limits.idle_ttl_ms)
            .arg(self.limits.max_age_ms)
            .arg(self.limits.log_len);
        for arg in extra {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        self.bounded(async move { invocation.invoke_async::<Reply>(&mut conn).await })
            .await
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(err)) => Err(unavailable(err)),
            Err(_) => Err(StoreError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        };
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}

async fn open(target: &RedisTarget, timeout: Duration) -> redis::RedisResult<Conn> {
    match target {
        RedisTarget::Single(url) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            let client = redis::Client::open(url.as_str())?;
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster(urls) => {
            let client = redis::cluster::ClusterClientBuilder::new(urls.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from Redis script: {what}"))
}

fn precondition_arg(p: Precondition) -> String {
    match p {
        Precondition::None => String::new(),
        Precondition::Absent => "*".into(),
        Precondition::Version(v) => v.to_string(),
    }
}

fn text(v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| unexpected("utf-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(unexpected(&format!("{other:?}"))),
    }
}

fn status(reply: &Reply) -> Result<&str, StoreError> {
    match reply.first() {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).map_err(|_| unexpected("status")),
        Some(Value::SimpleString(s)) => Ok(s),
        _ => Err(unexpected("empty reply")),
    }
}

/// Maps a script's non-`ok` status to the matching error.
fn expect_ok(reply: &Reply) -> Result<(), StoreError> {
    match status(reply)? {
        "ok" => Ok(()),
        "no_room" => Err(StoreError::NoRoom),
        "no_slot" => Err(StoreError::NoSlot),
        "too_many_slots" => Err(StoreError::TooManySlots),
        "exists" => Err(StoreError::RoomExists),
        "precondition" => Err(StoreError::PreconditionFailed {
            current: reply.get(1).and_then(|v| text(v).ok()?.parse().ok()),
        }),
        other => Err(unexpected(other)),
    }
}

fn int(reply: &Reply, i: usize) -> Result<u64, StoreError> {
    let v = reply.get(i).ok_or_else(|| unexpected("short reply"))?;
    text(v)?.parse().map_err(|_| unexpected("integer"))
}

fn change_at(reply: &Reply, i: usize) -> Result<Change, StoreError> {
    let raw = text(reply.get(i).ok_or_else(|| unexpected("short reply"))?)?;
    serde_json::from_str(&raw).map_err(|_| unexpected("change json"))
}

fn parse_slot_meta(name: SlotName, meta: &str) -> Result<SlotInfo, StoreError> {
    let mut parts = meta.splitn(4, '|');
    let mut next = || parts.next().ok_or_else(|| unexpected("slot meta"));
    let version = next()?.parse().map_err(|_| unexpected("slot version"))?;
    let expires_at = next()?.parse().ok();
    let size = next()?.parse().map_err(|_| unexpected("slot size"))?;
    let content_type = next()?.to_owned();
    Ok(SlotInfo {
        name,
        version,
        size,
        content_type,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(
            RedisTarget::parse("redis://a:1"),
            RedisTarget::Single(_)
        ));
        match RedisTarget::parse("redis://a:1,redis://b:2") {
            RedisTarget::Cluster(urls) => assert_eq!(urls.len(), 2),
            other => panic!("{other:?}"),
        }
        match RedisTarget::parse("redis://a:1?cluster=true") {
            RedisTarget::Cluster(urls) => assert_eq!(urls, ["redis://a:1"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slot_meta_keeps_pipes_in_content_type() {
        let info = parse_slot_meta(SlotName::parse("a").unwrap(), "3||10|text/x|y").unwrap();
        assert_eq!((info.version, info.expires_at, info.size), (3, None, 10));
        assert_eq!(info.content_type, "text/x|y");
    }
}
