//! Switchboard janitor: the safety net behind Redis TTLs. It purges rooms past their deadline
//! or max age, `data`/`log` keys whose room is gone and PeerJS keys without a TTL, gives TTL-less live rooms their TTL
//! back, and reports what it did, once (`janitor run`) or on a cron schedule.
//!
//! Time is always Redis server time (`TIME`), never this machine's clock.
//!
//! # Layout
//! - [`config`]: flags and `JANITOR_*` environment.
//! - [`sweep`]: `sweep(conn, schema, now, policy) -> SweepReport`, the heart.
//! - [`state`]: the room `_state` grammar and the verdict on one room (pure).
//! - [`report`]: counters, the one-line summary and JSON.
//! - [`lock`]: the token-checked distributed lock.
//! - [`metrics`]: Prometheus counters, `/metrics` in schedule mode, Pushgateway pushes.
//! - [`schedule`]: the cron loop of `janitor schedule`.
//! - [`target`]: one server or a cluster's seeds; a cluster's masters from `CLUSTER NODES`.
//! - [`Janitor`]: one locked sweep against a Redis URL.

pub mod config;
pub mod lock;
pub mod metrics;
pub mod report;
pub mod schedule;
pub mod state;
pub mod sweep;
pub mod target;

use std::time::{Duration, Instant};

use common::keys::KeySchema;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo};
use serde::Serialize;

pub use crate::lock::Lock;
pub use crate::report::{Purged, SweepReport};
pub use crate::sweep::{Policy, SweepError, sweep};
pub use crate::target::RedisTarget;

/// Everything one sweep needs: where Redis is, which keys, and the policy.
#[derive(Debug, Clone)]
pub struct Janitor {
    /// Redis URL, or comma-separated cluster seed URLs (or one with `?cluster=true`); may hold
    /// a password, so never printed.
    pub redis_url: String,
    /// Connect and per-command time limit.
    pub redis_timeout: Duration,
    pub schema: KeySchema,
    pub policy: Policy,
    /// How long the lock lives if this process dies mid-sweep.
    pub lock_ttl: Duration,
}

/// How a locked sweep ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// The sweep ran.
    Swept(SweepReport),
    /// Another janitor holds the lock; nothing was done.
    Locked { skipped: &'static str, lock: String },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Swept(report) => report.fmt(f),
            Self::Locked { lock, .. } => {
                write!(f, "skipped: locked (another janitor holds {lock})")
            }
        }
    }
}

impl Outcome {
    /// The outcome as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an outcome of plain counters always serializes")
    }
}

/// Why a sweep could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to Redis: {0}")]
    Connect(redis::RedisError),
    #[error("Redis failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("sweep failed: {0}")]
    Sweep(#[from] SweepError),
    #[error("no Redis Cluster seed URL given")]
    NoSeeds,
}

impl Janitor {
    /// Connects, takes the lock (a dry run changes nothing, so it takes none), reads the server
    /// time, sweeps (every master of a cluster, one after another), and releases the lock even
    /// when the sweep failed.
    pub async fn sweep_once(&self) -> Result<Outcome, RunError> {
        match RedisTarget::parse(&self.redis_url) {
            RedisTarget::Single(url) => {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(RunError::Connect)?;
                let mut conn = self.connect(info).await?;
                let nodes = vec![conn.clone()];
                self.locked(&mut conn, nodes).await
            }
            RedisTarget::Cluster(seeds) => {
                let mut cluster = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(self.redis_timeout)
                    .response_timeout(self.redis_timeout)
                    .retries(1)
                    .build()
                    .map_err(RunError::Connect)?
                    .get_async_connection()
                    .await
                    .map_err(RunError::Connect)?;
                let masters = self.masters(&seeds).await?;
                self.locked(&mut cluster, masters).await
            }
        }
    }

    /// The sweep under the lock, which lives on `control` (the server, or the whole cluster).
    async fn locked<C: ConnectionLike + Send>(
        &self,
        control: &mut C,
        nodes: Vec<MultiplexedConnection>,
    ) -> Result<Outcome, RunError> {
        if self.policy.dry_run {
            let now = server_time_ms(control).await?;
            return Ok(Outcome::Swept(self.sweep_nodes(nodes, now).await?));
        }
        let lock_key = self.schema.lock_key();
        let Some(lock) = Lock::acquire(control, &lock_key, self.lock_ttl).await? else {
            return Ok(Outcome::Locked {
                skipped: "locked",
                lock: lock_key,
            });
        };
        let result = match server_time_ms(control).await {
            Ok(now) => self.sweep_nodes(nodes, now).await,
            Err(err) => Err(err.into()),
        };
        match lock.release(control).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(lock = %lock_key, "the lock expired during the sweep"),
            Err(err) => tracing::warn!(%err, lock = %lock_key, "cannot release the lock"),
        }
        Ok(Outcome::Swept(result?))
    }

    /// Sweeps each node in turn (so the deletion rate cap holds overall) into one report.
    async fn sweep_nodes(
        &self,
        nodes: Vec<MultiplexedConnection>,
        now: u64,
    ) -> Result<SweepReport, RunError> {
        let started = Instant::now();
        let mut total = SweepReport {
            dry_run: self.policy.dry_run,
            ..SweepReport::default()
        };
        for mut node in nodes {
            total.absorb(&sweep(&mut node, &self.schema, now, &self.policy).await?);
        }
        total.duration = started.elapsed();
        Ok(total)
    }

    /// A connection to each master serving slots, from the first seed that answers
    /// `CLUSTER NODES`.
    async fn masters(&self, seeds: &[String]) -> Result<Vec<MultiplexedConnection>, RunError> {
        let mut last_err = None;
        for seed in seeds {
            let info = seed
                .as_str()
                .into_connection_info()
                .map_err(RunError::Connect)?;
            let nodes: Result<String, RunError> = match self.connect(info).await {
                Ok(mut conn) => redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
                    .map_err(RunError::from),
                Err(err) => Err(err),
            };
            let nodes = match nodes {
                Ok(nodes) => nodes,
                Err(err) => {
                    last_err = Some(err);
                    continue;
                }
            };
            let host = target::seed_host(seed).map_err(RunError::Connect)?;
            let mut conns = Vec::new();
            for (host, port) in target::masters(&nodes, &host) {
                let info = target::node_info(seed, &host, port).map_err(RunError::Connect)?;
                conns.push(self.connect(info).await?);
            }
            return Ok(conns);
        }
        Err(last_err.unwrap_or(RunError::NoSeeds))
    }

    async fn connect(&self, info: ConnectionInfo) -> Result<MultiplexedConnection, RunError> {
        let client = redis::Client::open(info).map_err(RunError::Connect)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.redis_timeout))
            .set_response_timeout(Some(self.redis_timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(RunError::Connect)
    }
}

/// Redis server time in unix ms (`TIME`), so no client's clock ever decides what is stale.
pub async fn server_time_ms<C: ConnectionLike + Send>(
    conn: &mut C,
) -> Result<u64, redis::RedisError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}
