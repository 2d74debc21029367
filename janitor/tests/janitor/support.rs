//! Real `redis-server` processes on free loopback ports, stopped (by PID) when dropped, and
//! seeding in exactly the format signal-server's `store/lua/prelude.lua` writes.

#![allow(unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};

/// One redis-server child.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir = TempDir::new(&format!("redis-{port}"));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", dir.0.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        server.await_ping();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn conn(&self) -> MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls PING until the server answers (it binds within milliseconds).
    fn await_ping(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]) == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 3-master Redis Cluster on loopback ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.await_ok();
        cluster
    }

    /// Comma-separated seed URLs, as `--redis-url` takes them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub async fn conn(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        redis::cluster::ClusterClient::new(urls)
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }

    /// Every key on every node, sorted.
    pub fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
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

    fn await_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster did not become ok");
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("janitor-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
