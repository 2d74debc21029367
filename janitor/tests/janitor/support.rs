//! Real `redis-server` processes on free loopback ports, stopped (by PID) when dropped, and
//! seeding in exactly the format signal-server's `store/lua/prelude.lua` writes.

#![allow(unreachable_pub)]

use redis::aio::{ConnectionLike, MultiplexedConnection};

pub use common::testing::{RedisCluster, RedisServer, free_port};

/// Async connections to the shared harness's servers (common has no Redis client).
pub trait Connect {
    type Conn;
    async fn conn(&self) -> Self::Conn;
}

impl Connect for RedisServer {
    type Conn = MultiplexedConnection;
    async fn conn(&self) -> MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Connect for RedisCluster {
    type Conn = redis::cluster_async::ClusterConnection;
    async fn conn(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        redis::cluster::ClusterClient::new(urls)
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }
}

/// Every key on every node of `cluster`, sorted.
pub fn cluster_keys(cluster: &RedisCluster) -> Vec<String> {
    let mut keys: Vec<String> = cluster
        .nodes
        .iter()
        .flat_map(|n| {
            n.cli(&["--no-raw", "KEYS", "*"])
                .lines()
                .filter_map(|l| Some(l.split_once(") ")?.1.trim_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys
}

pub const MIN: u64 = 60_000;
pub const HOUR: u64 = 60 * MIN;

/// Writes a room's three keys as prelude.lua does; `ttl` puts PEXPIREAT `kexp` on each.
pub async fn seed_room(
    conn: &mut (impl ConnectionLike + Send),
    code: &str,
    created: u64,
    deadline: u64,
    kexp: u64,
    ttl: bool,
) {
    let state = format!("{created}|2|{deadline}||1|{kexp}");
    let room = format!("sb:{{{code}}}:room");
    let data = format!("sb:{{{code}}}:data");
    let log = format!("sb:{{{code}}}:log");
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(&room)
        .arg("_state")
        .arg(state)
        .arg("m:offer")
        .arg("2||5|application/octet-stream")
        .ignore();
    pipe.cmd("HSET")
        .arg(&data)
        .arg("offer")
        .arg("bytes")
        .ignore();
    pipe.cmd("RPUSH")
        .arg(&log)
        .arg(format!(
            r#"{{"version":2,"room":"{code}","op":"put","slot":"offer"}}"#
        ))
        .ignore();
    if ttl {
        for key in [&room, &data, &log] {
            pipe.cmd("PEXPIREAT").arg(key).arg(kexp).ignore();
        }
    }
    let () = pipe.query_async(conn).await.unwrap();
}

/// Sets a plain string key.
pub async fn set(conn: &mut (impl ConnectionLike + Send), key: &str) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg("x")
        .query_async(conn)
        .await
        .unwrap();
}

pub async fn exists(conn: &mut (impl ConnectionLike + Send), key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap();
    n == 1
}

pub async fn pttl(conn: &mut (impl ConnectionLike + Send), key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// Every key in the database, sorted.
pub async fn all_keys(conn: &mut (impl ConnectionLike + Send)) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    keys.sort();
    keys
}

/// The full seed of the sweep tests, relative to server time `now`; see [`expected`].
pub struct Seed;

impl Seed {
    /// Fresh rooms (kept).
    pub const FRESH: [&str; 2] = ["FRESH1", "FRESH2"];
    /// Past their deadline: one with TTLs inside signal-server's slack, one that lost them.
    pub const EXPIRED: [&str; 2] = ["EXPIR1", "EXPIR2"];
    /// Created two hours ago with a deadline still ahead (a server with a longer max age).
    pub const OLD: &str = "OLDONE";
    /// Live but without any TTL (repaired).
    pub const TTLLESS: &str = "NOTTL1";
    /// `data`/`log` keys whose room hash is gone, and PeerJS keys without a TTL.
    pub const ORPHANS: [&str; 4] = [
        "sb:{ORPHA1}:data",
        "sb:{ORPHA2}:log",
        "sb:{peerjs:peerjs:ghost}:peer",
        "sb:{peerjs:peerjs:ghost}:queue",
    ];
    /// A live PeerJS registration (it has its TTL): kept.
    pub const PEER: &str = "sb:{peerjs:peerjs:alice}:peer";
    /// Under the prefix but no room key, or a room hash without a valid `_state`.
    pub const MALFORMED: [&str; 5] = [
        "sb:junk",
        "sb:{X}:other",
        "sb:{}:room",
        "sb:{NOSTAT}:room",
        "sb:{BADSTA}:room",
    ];
    /// Outside the prefix, expired-looking or not: never touched.
    pub const FOREIGN: [&str; 4] = ["other:{EXPIR1}:room", "sbx:{A}:data", "foo", "sbroom"];

    /// Writes the seed relative to the server's time now.
    pub async fn seed_now(conn: &mut (impl ConnectionLike + Send)) {
        let t = now(conn).await;
        Self::write(conn, t).await;
    }

    pub async fn write(conn: &mut (impl ConnectionLike + Send), now: u64) {
        for code in Self::FRESH {
            seed_room(conn, code, now - MIN, now + 9 * MIN, now + 10 * MIN, true).await;
        }
        let [exp1, exp2] = Self::EXPIRED;
        seed_room(
            conn,
            exp1,
            now - 20 * MIN,
            now - MIN / 2,
            now + MIN / 2,
            true,
        )
        .await;
        seed_room(
            conn,
            exp2,
            now - 2 * HOUR,
            now - HOUR,
            now - HOUR + MIN,
            false,
        )
        .await;
        seed_room(
            conn,
            Self::OLD,
            now - 2 * HOUR,
            now + 5 * MIN,
            now + 6 * MIN,
            true,
        )
        .await;
        seed_room(
            conn,
            Self::TTLLESS,
            now - MIN,
            now + 9 * MIN,
            now + 10 * MIN,
            false,
        )
        .await;
        for key in Self::ORPHANS {
            set(conn, key).await;
        }
        let () = redis::cmd("SET")
            .arg(Self::PEER)
            .arg("token")
            .arg("PX")
            .arg(90_000)
            .query_async(conn)
            .await
            .unwrap();
        for key in &Self::MALFORMED[..3] {
            set(conn, key).await;
        }
        let () = redis::cmd("HSET")
            .arg("sb:{NOSTAT}:room")
            .arg("m:offer")
            .arg("1||1|x")
            .query_async(conn)
            .await
            .unwrap();
        let () = redis::cmd("HSET")
            .arg("sb:{BADSTA}:room")
            .arg("_state")
            .arg("garbage")
            .query_async(conn)
            .await
            .unwrap();
        let () = redis::cmd("HSET")
            .arg("other:{EXPIR1}:room")
            .arg("_state")
            .arg(format!("1|1|{}||0|1", now - HOUR))
            .query_async(conn)
            .await
            .unwrap();
        for key in &Self::FOREIGN[1..] {
            set(conn, key).await;
        }
    }

    /// Keys under `sb:` SCAN sees: 6 rooms x 3 keys, 4 orphans, 1 PeerJS peer, 5 malformed.
    pub const SCANNED: u64 = 6 * 3 + 4 + 1 + 5;

    /// Every key that must survive a real sweep.
    pub fn survivors() -> Vec<String> {
        let mut keys: Vec<String> = Self::FRESH
            .into_iter()
            .chain([Self::TTLLESS])
            .flat_map(|code| ["room", "data", "log"].map(|k| format!("sb:{{{code}}}:{k}")))
            .chain(Self::MALFORMED.map(String::from))
            .chain([Self::PEER.to_owned()])
            .chain(Self::FOREIGN.map(String::from))
            .collect();
        keys.sort();
        keys
    }
}

/// The report counters a sweep of [`Seed`] must reach: (expired, max_age, orphaned, repaired,
/// malformed).
pub fn counts(report: &janitor::SweepReport) -> (u64, u64, u64, u64, u64) {
    (
        report.purged.expired,
        report.purged.max_age,
        report.purged.orphaned,
        report.repaired,
        report.malformed,
    )
}

pub const EXPECTED: (u64, u64, u64, u64, u64) = (2, 1, 4, 1, 5);

/// Redis server time in unix ms.
pub async fn now(conn: &mut (impl ConnectionLike + Send)) -> u64 {
    janitor::server_time_ms(conn).await.unwrap()
}
