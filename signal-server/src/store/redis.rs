//! The Redis store: each operation is one Lua function (Redis Functions, `FCALL`) over one room's
//! hash-tagged keys, so it is atomic on a single server and on a Redis Cluster. Changes are
//! published from inside the functions (in version order) and every replica feeds them to its
//! local watchers.
//!
//! On a standalone Redis, concurrent puts share calls (`put_batch.rs`).
//!
//! The function library is loaded on connect (on every master of a cluster) and again whenever
//! Redis answers that a function is missing (Redis restarted without it), then the call is
//! retried. Its name carries a hash of its source, so replicas running different versions of
//! this code do not replace each other's functions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::keys::KeySchema;
pub use common::redis_url::RedisTarget;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio_util::sync::CancellationToken;

use super::StoreError;
use super::put_batch::{MAX_BATCH, PutArgs, PutBatcher};
use crate::fanout::Fanout;
use crate::model::{
    Blob, Change, ChangesSince, Limits, Precondition, PutBlob, RoomCode, RoomInfo, SlotInfo,
    SlotName,
};

/// Queue of relayed PeerJS messages between the subscriber and the local sessions.
const PEER_FEED_CAPACITY: usize = 1024;

/// Keys `SCAN` looks at per call when listing rooms.
const SCAN_COUNT: usize = 500;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Runs of puts in one room, shared by the `put` and `put_many` functions (see `lua/put.lua`).
const PUT_RUN: &str = include_str!("lua/put.lua");

/// One multiplexed connection of either kind; both reconnect on their own.
#[derive(Clone)]
pub(super) enum Conn {
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

/// The operations, one Lua function each (`lua/<file>.lua` is the function's body; `put` and
/// `put_many` both call `put_run`, defined once in `lua/put.lua`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Create,
    Info,
    Put,
    PutMany,
    Get,
    DeleteBlob,
    DeleteRoom,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::Create,
        Op::Info,
        Op::Put,
        Op::PutMany,
        Op::Get,
        Op::DeleteBlob,
        Op::DeleteRoom,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Info => "info",
            Op::Put => "put",
            Op::PutMany => "put_many",
            Op::Get => "get",
            Op::DeleteBlob => "delete_blob",
            Op::DeleteRoom => "delete_room",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Op::Create => include_str!("lua/create.lua"),
            Op::Info => include_str!("lua/info.lua"),
            Op::Put => "local out = {}\nput_run(KEYS, ARGV, 0, 0, out, nil)\nreturn out",
            Op::PutMany => include_str!("lua/put_many.lua"),
            Op::Get => include_str!("lua/get.lua"),
            Op::DeleteBlob => include_str!("lua/delete_blob.lua"),
            Op::DeleteRoom => include_str!("lua/delete_room.lua"),
        }
    }
}

/// The Redis Functions library: the deployment's settings as constants, the prelude, then one
/// registered function per [`Op`].
pub(super) struct Library {
    /// `FUNCTION LOAD` source, starting with the `#!lua name=...` shebang.
    source: String,
    /// Function names, in [`Op::ALL`] order.
    functions: [String; 7],
}

impl Library {
    fn build(keys: &KeySchema, limits: &Limits) -> Self {
        // A Lua string literal of any bytes: decimal escapes only.
        let channel: String = keys
            .events_channel()
            .bytes()
            .map(|b| format!("\\{b}"))
            .collect();
        let mut code = format!(
            "local channel, idle, max_age, log_len, max_slots = '{channel}', {}, {}, {}, {}\n{PRELUDE}\n{PUT_RUN}\n",
            limits.idle_ttl_ms, limits.max_age_ms, limits.log_len, limits.max_slots
        );
        for op in Op::ALL {
            code.push_str(&format!(
                "\nredis.register_function('{{name}}_{}', function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n{}\nend)\n",
                op.name(),
                op.body()
            ));
        }
        // FNV-1a: stable across builds and processes, unlike std's hasher.
        let hash = code.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let name = format!("switchboard_{hash:016x}");
        Self {
            source: format!("#!lua name={name}\n{}", code.replace("{name}", &name)),
            functions: Op::ALL.map(|op| format!("{name}_{}", op.name())),
        }
    }

    pub(super) fn function(&self, op: Op) -> &str {
        &self.functions[op as usize]
    }
}

/// Rooms in Redis.
pub struct RedisStore {
    conn: Conn,
    /// Messages of the PeerJS relay channel, for the PeerJS layer (it shares the subscription).
    peer_feed: tokio::sync::broadcast::Sender<Bytes>,
    target: RedisTarget,
    keys: KeySchema,
    fanout: Arc<Fanout>,
    library: Arc<Library>,
    /// Batches concurrent puts (standalone Redis only).
    put_batcher: Option<PutBatcher>,
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

pub(super) type Reply = Vec<Value>;

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
        let library = Arc::new(Library::build(&keys, &limits));
        let connected = async {
            let mut conn = open(&target, timeout).await.map_err(unavailable)?;
            load_library(&mut conn, &library).await.map_err(|err| {
                StoreError::Unavailable(format!(
                    "loading the function library failed (Redis 7 or newer needed): {err}"
                ))
            })?;
            Ok(conn)
        };
        let conn = tokio::time::timeout(timeout, connected)
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to Redis".into()))??;
        let put_batcher = matches!(conn, Conn::Single(_)).then(|| {
            PutBatcher::spawn(conn.clone(), Arc::clone(&library), timeout, errors.clone())
        });
        Ok(Self {
            conn,
            put_batcher,
            peer_feed: tokio::sync::broadcast::channel(PEER_FEED_CAPACITY).0,
            target,
            keys,
            fanout,
            library,
            timeout,
            errors,
        })
    }

    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    /// Messages published on the PeerJS relay channel.
    pub fn peer_feed(&self) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.peer_feed.subscribe()
    }

    pub fn keys(&self) -> &KeySchema {
        &self.keys
    }

    /// Runs a Lua script over `keys` (all in one hash slot) within the Redis timeout.
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        self.bounded(async move { invocation.invoke_async(&mut conn).await })
            .await
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
        let reply = self.run(Op::Create, code, now, &[]).await?;
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
        let reply = self.run(Op::Info, code, now, &[b"slots"]).await?;
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
        let reply = self.run(Op::DeleteRoom, code, now, &[]).await?;
        expect_ok(&reply)?;
        change_at(&reply, 1)
    }

    pub async fn put_blob(
        &self,
        code: &RoomCode,
        put: PutBlob,
        now: u64,
    ) -> Result<Change, StoreError> {
        let mut results = self.put_blobs(code, vec![put], now).await;
        results
            .pop()
            .unwrap_or(Err(StoreError::Unavailable("no put result".into())))
    }

    /// Puts in one room, applied in order, each as it would be alone; one result per put. On a
    /// standalone Redis they go out as runs (see `put_batch.rs`).
    pub async fn put_blobs(
        &self,
        code: &RoomCode,
        puts: Vec<PutBlob>,
        now: u64,
    ) -> Vec<Result<Change, StoreError>> {
        let mut args: Vec<PutArgs> = puts.into_iter().map(put_args).collect();
        let mut results = Vec::with_capacity(args.len());
        let Some(batcher) = &self.put_batcher else {
            for args in &args {
                let args = args.each_ref().map(|arg| &arg[..]);
                let reply = self.run(Op::Put, code, now, &args).await;
                results.push(reply.and_then(|reply| put_change(&reply)));
            }
            return results;
        };
        while !args.is_empty() {
            let run: Vec<PutArgs> = args.drain(..args.len().min(MAX_BATCH)).collect();
            let puts = run.len();
            let keys = self.keys.room_keys(code.as_str());
            match batcher.put_run(keys, now, code.as_str(), run).await {
                Ok(replies) => results.extend(replies.iter().map(put_change)),
                Err(err) => results.extend(std::iter::repeat_n(Err(err), puts)),
            }
        }
        results
    }

    pub async fn blob(
        &self,
        code: &RoomCode,
        slot: &SlotName,
        now: u64,
    ) -> Result<Blob, StoreError> {
        let reply = self
            .run(Op::Get, code, now, &[slot.as_str().as_bytes()])
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
        let reply = self.run(Op::DeleteBlob, code, now, &args).await?;
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
        let reply = self.run(Op::Info, code, now, &args).await?;
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
        let peer_channel = self.keys.peerjs_channel();
        let urls = self.target.urls();
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0usize;
        loop {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            let session = async {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&[&channel, &peer_channel]).await?;
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
                        if msg.get_channel_name() == peer_channel {
                            // No receiver (PeerJS off or idle) is fine: nobody waits for it.
                            let _ = self
                                .peer_feed
                                .send(Bytes::copy_from_slice(msg.get_payload_bytes()));
                            continue;
                        }
                        // One change, or a put_many batch of them, one per line.
                        for change in msg.get_payload_bytes().split(|&b| b == b'\n') {
                            self.deliver(change);
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

    /// Hands one published change to the room's local watchers, if it has any.
    fn deliver(&self, payload: &[u8]) {
        // Every replica hears every change; most are for rooms watched elsewhere, so those are
        // dropped before the JSON is parsed.
        if room_of_change(payload).is_some_and(|room| !self.fanout.is_watched(room)) {
            return;
        }
        match serde_json::from_slice::<Change>(payload) {
            Ok(change) => {
                self.fanout.publish(change);
            }
            Err(err) => tracing::warn!(%err, "malformed change on feed"),
        }
    }

    /// Codes of up to `limit` rooms found by `SCAN` (on a cluster, on every master).
    pub async fn room_codes(&self, limit: usize) -> Result<Vec<RoomCode>, StoreError> {
        let keys = self.scan_keys(&self.keys.room_pattern(), limit).await?;
        Ok(keys
            .iter()
            .filter_map(|key| self.keys.parse(key))
            .filter_map(|key| RoomCode::parse(key.code).ok())
            .collect())
    }

    /// Up to `limit` keys matching `pattern`, by `SCAN` (on a cluster, on every master).
    pub async fn scan_keys(&self, pattern: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        match &self.conn {
            Conn::Single(conn) => {
                self.scan_node(pattern, limit, &mut found, |cmd| {
                    let mut conn = conn.clone();
                    async move { cmd.query_async::<Value>(&mut conn).await }
                })
                .await?;
            }
            Conn::Cluster(conn) => {
                let mut nodes_conn = conn.clone();
                let nodes: String = self
                    .bounded(async move {
                        redis::cmd("CLUSTER")
                            .arg("NODES")
                            .query_async(&mut nodes_conn)
                            .await
                    })
                    .await?;
                let seed_host = self.seed_host();
                for (host, port) in common::redis_url::masters(&nodes, &seed_host) {
                    if found.len() >= limit {
                        break;
                    }
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port,
                    });
                    self.scan_node(pattern, limit, &mut found, |cmd| {
                        let mut conn = conn.clone();
                        let route = route.clone();
                        async move { conn.route_command(cmd, route).await }
                    })
                    .await?;
                }
            }
        }
        Ok(found)
    }

    /// Pages through one node's keys with `SCAN` until it ends or `limit` keys are held.
    async fn scan_node<F, Fut>(
        &self,
        pattern: &str,
        limit: usize,
        found: &mut Vec<String>,
        send: F,
    ) -> Result<(), StoreError>
    where
        F: Fn(Cmd) -> Fut,
        Fut: Future<Output = redis::RedisResult<Value>>,
    {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply = self.bounded(send(cmd)).await?;
            let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            for key in keys {
                if found.len() >= limit {
                    return Ok(());
                }
                found.push(key);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Host of the first seed, for cluster nodes that report an empty address.
    fn seed_host(&self) -> String {
        use redis::IntoConnectionInfo;
        let first = self.target.urls().into_iter().next().unwrap_or_default();
        match first.into_connection_info().map(|info| info.addr().clone()) {
            Ok(
                redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. },
            ) => host,
            _ => "127.0.0.1".to_owned(),
        }
    }

    /// Calls `op`'s function (see `lua/prelude.lua` for the arguments), loading the library and
    /// retrying once if Redis lost it.
    async fn run(
        &self,
        op: Op,
        code: &RoomCode,
        now: u64,
        extra: &[&[u8]],
    ) -> Result<Reply, StoreError> {
        let mut call = redis::cmd("FCALL");
        call.arg(self.library.function(op)).arg(3);
        for key in self.keys.room_keys(code.as_str()) {
            call.arg(key);
        }
        call.arg(now).arg(code.as_str());
        for arg in extra {
            call.arg(*arg);
        }
        let mut conn = self.conn.clone();
        let library = &self.library;
        self.bounded(async move { query_reloading(&mut conn, library, &call).await })
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

/// Runs a function call, loading the library and retrying once if Redis lost it.
pub(super) async fn query_reloading(
    conn: &mut Conn,
    library: &Library,
    call: &Cmd,
) -> redis::RedisResult<Reply> {
    match call.query_async::<Reply>(conn).await {
        Err(err) if is_function_missing(&err) => {
            tracing::info!("Redis lost the function library; loading it again");
            load_library(conn, library).await?;
            call.query_async::<Reply>(conn).await
        }
        other => other,
    }
}

/// `FUNCTION LOAD REPLACE` (on every master of a cluster: redis-rs routes it there).
async fn load_library(conn: &mut Conn, library: &Library) -> redis::RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&library.source)
        .query_async::<Value>(conn)
        .await
        .map(drop)
}

/// The room of a change as the Lua library writes it (`{"version":N,"room":"CODE",...`), read
/// without parsing the JSON; `None` for any other shape (the caller then parses it all).
fn room_of_change(payload: &[u8]) -> Option<&str> {
    let rest = payload.strip_prefix(b"{\"version\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",\"room\":\"")?;
    let len = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..len]).ok()
}

/// Redis answers `ERR Function not found` after a restart or `FUNCTION FLUSH`.
fn is_function_missing(err: &redis::RedisError) -> bool {
    err.to_string().contains("Function not found")
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

/// `put.lua`'s own arguments, after `now` and `code`.
fn put_args(put: PutBlob) -> PutArgs {
    let ttl = put.ttl_ms.map(|t| t.to_string()).unwrap_or_default();
    // A JSON string literal; content types are checked header values, but quoting stays exact.
    let content_type_json = serde_json::Value::from(put.content_type.as_str()).to_string();
    [
        Bytes::copy_from_slice(put.slot.as_str().as_bytes()),
        put.data,
        Bytes::from(put.content_type),
        Bytes::from(precondition_arg(put.precondition)),
        Bytes::from(ttl),
        Bytes::from(content_type_json),
    ]
}

/// A put's change, or why it did not happen.
fn put_change(reply: &Reply) -> Result<Change, StoreError> {
    expect_ok(reply)?;
    change_at(reply, 1)
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
    fn room_of_change_reads_the_library_shape_only() {
        let put = br#"{"version":12,"room":"AB12CD","op":"put","at":1,"room_expires_at":2,"slot":"offer"}"#;
        assert_eq!(room_of_change(put), Some("AB12CD"));
        let parsed: Change = serde_json::from_slice(put).unwrap();
        assert_eq!(parsed.room, "AB12CD");
        for other in [
            &br#"{"room":"AB12CD","version":12}"#[..],
            br#"{"version":12,"room":"AB12CD"#,
            br#"{"version":x,"room":"AB12CD"}"#,
            b"",
        ] {
            assert_eq!(
                room_of_change(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn library_names_follow_source_and_settings() {
        let limits = |log_len| Limits {
            idle_ttl_ms: 600_000,
            max_age_ms: 3_600_000,
            max_slots: 64,
            log_len,
        };
        let a = Library::build(&KeySchema::default(), &limits(128));
        let b = Library::build(&KeySchema::default(), &limits(4));
        let name = a.function(Op::Put).strip_suffix("_put").unwrap();
        assert!(a.source.starts_with(&format!("#!lua name={name}\n")));
        assert!(name.starts_with("switchboard_"));
        assert_eq!(a.source.matches("redis.register_function(").count(), 7);
        assert_eq!(
            a.source,
            Library::build(&KeySchema::default(), &limits(128)).source
        );
        assert_ne!(a.function(Op::Put), b.function(Op::Put));
    }

    #[test]
    fn slot_meta_keeps_pipes_in_content_type() {
        let info = parse_slot_meta(SlotName::parse("a").unwrap(), "3||10|text/x|y").unwrap();
        assert_eq!((info.version, info.expires_at, info.size), (3, None, 10));
        assert_eq!(info.content_type, "text/x|y");
    }
}
