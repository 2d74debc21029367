//! One pass over every key under the prefix: `sweep(conn, schema, now, policy) -> SweepReport`.
//!
//! Idempotent and safe to run twice, even concurrently: every change is a small Lua script on
//! one room's hash slot that re-checks what the sweep read before it acts (purge only if
//! `_state` is unchanged, drop a `data`/`log` key only if its room hash is still absent, add a
//! TTL only where there is none with `PEXPIREAT .. NX`), so a room signal-server touched in the
//! meantime is left alone and no key is counted as purged twice.

use std::time::{Duration, Instant};

use common::keys::{KeySchema, RoomKeyKind};
use redis::aio::ConnectionLike;
use redis::{Pipeline, RedisError, Script, Value};

use crate::report::SweepReport;
use crate::state::{RoomState, Verdict, judge};

/// What a sweep purges and how hard it may push Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Rooms created longer ago than this are purged (match signal-server's `--max-age`).
    pub max_age: Duration,
    /// `SCAN ... COUNT` hint and the most commands pipelined at once.
    pub batch: usize,
    /// Most keys deleted per second; 0 for no limit.
    pub max_deletes_per_sec: u32,
    /// Percent of wall time spent on batches (1..=100); the rest is spent pausing.
    pub duty_cycle: u8,
    /// Report what would be done and change nothing.
    pub dry_run: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(3600),
            batch: 200,
            max_deletes_per_sec: 0,
            duty_cycle: 50,
            dry_run: false,
        }
    }
}

/// A sweep that could not finish (what it did until then stays done).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
}

/// Sweeps every key under `schema`'s prefix at server time `now_ms` (unix ms, from Redis
/// `TIME`) and reports what it did.
pub async fn sweep<C>(
    conn: &mut C,
    schema: &KeySchema,
    now_ms: u64,
    policy: &Policy,
) -> Result<SweepReport, SweepError>
where
    C: ConnectionLike + Send,
{
    let started = Instant::now();
    let scripts = Scripts::new();
    // Dry runs use the same scripts in their counting mode, so they load them too.
    scripts.load(conn).await?;
    let mut sweeper = Sweeper {
        conn,
        schema,
        now_ms,
        policy,
        scripts,
        lock_key: schema.lock_key(),
        pacer: Pacer::new(policy.max_deletes_per_sec),
        report: SweepReport {
            dry_run: policy.dry_run,
            ..SweepReport::default()
        },
    };
    let mut cursor = 0u64;
    loop {
        let batch_started = Instant::now();
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(schema.all_pattern())
            .arg("COUNT")
            .arg(policy.batch.max(1))
            .query_async(sweeper.conn)
            .await?;
        sweeper.batch(keys).await?;
        if next == 0 {
            break;
        }
        cursor = next;
        pause_for_duty_cycle(batch_started.elapsed(), policy.duty_cycle).await;
    }
    let mut report = sweeper.report;
    report.duration = started.elapsed();
    Ok(report)
}

/// Purge a room only if `_state` is still what the sweep read; returns the keys unlinked.
const PURGE_ROOM: &str = r"
if redis.call('HGET', KEYS[1], '_state') == ARGV[1] then
  return redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
end
return 0
";

/// Drop a PeerJS key only while it still has no TTL (signal-server always sets one, so a key
/// without one belongs to no live client). ARGV[1] `dry` counts without unlinking.
const PURGE_TTLLESS: &str = r"
if redis.call('PTTL', KEYS[1]) == -1 then
  if ARGV[1] == 'dry' then return 1 end
  return redis.call('UNLINK', KEYS[1])
end
return 0
";

/// Drop a `data`/`log` key (KEYS[2]) only while its room hash (KEYS[1]) is absent.
/// ARGV[1] `dry` counts without unlinking.
const PURGE_ORPHAN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == 'dry' then return redis.call('EXISTS', KEYS[2]) end
  return redis.call('UNLINK', KEYS[2])
end
return 0
";

struct Scripts {
    purge_room: Script,
    purge_orphan: Script,
    purge_ttlless: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            purge_room: Script::new(PURGE_ROOM),
            purge_orphan: Script::new(PURGE_ORPHAN),
            purge_ttlless: Script::new(PURGE_TTLLESS),
        }
    }

    /// Loads both scripts so batches can pipeline EVALSHA.
    async fn load<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        self.purge_room.load_async(conn).await?;
        self.purge_orphan.load_async(conn).await?;
        self.purge_ttlless.load_async(conn).await?;
        Ok(())
    }
}

struct Sweeper<'a, C> {
    conn: &'a mut C,
    schema: &'a KeySchema,
    now_ms: u64,
    policy: &'a Policy,
    scripts: Scripts,
    lock_key: String,
    pacer: Pacer,
    report: SweepReport,
}

/// A room hash judged stale, with the `_state` it was judged on.
struct Stale {
    code: String,
    state: String,
    verdict: Verdict,
}

impl<C: ConnectionLike + Send> Sweeper<'_, C> {
    /// Sorts one SCAN batch into room hashes and room parts, then handles each group.
    async fn batch(&mut self, keys: Vec<Vec<u8>>) -> Result<(), RedisError> {
        let mut rooms = Vec::new();
        let mut parts = Vec::new();
        let mut peerjs = Vec::new();
        for raw in keys {
            if raw == self.lock_key.as_bytes() {
                continue;
            }
            self.report.scanned += 1;
            let Ok(key) = String::from_utf8(raw) else {
                self.report.malformed += 1;
                continue;
            };
            if self.schema.is_peerjs_key(&key) {
                peerjs.push([key]);
                continue;
            }
            match self.schema.parse(&key) {
                None => self.report.malformed += 1,
                Some(parsed) if parsed.kind == RoomKeyKind::Room => {
                    rooms.push(parsed.code.to_owned());
                }
                Some(parsed) => {
                    let room = self.schema.room_key(parsed.code, RoomKeyKind::Room);
                    parts.push([room, key]);
                }
            }
        }
        self.rooms(rooms).await?;
        self.orphans(parts).await?;
        self.peerjs(peerjs).await
    }

    /// Reads `_state` and PTTL of each room hash, then purges or repairs.
    async fn rooms(&mut self, codes: Vec<String>) -> Result<(), RedisError> {
        if codes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors(); // a room key of another type fails HGET: malformed, not fatal
        for code in &codes {
            let key = self.schema.room_key(code, RoomKeyKind::Room);
            pipe.cmd("HGET")
                .arg(&key)
                .arg("_state")
                .cmd("PTTL")
                .arg(&key);
        }
        let replies: Vec<Value> = pipe.query_async(self.conn).await?;
        let mut stale = Vec::new();
        let mut repairs = Vec::new();
        for (code, reply) in codes.into_iter().zip(replies.chunks_exact(2)) {
            let pttl: i64 = redis::from_redis_value_ref(&reply[1])?;
            if pttl == -2 {
                continue; // gone since SCAN saw it
            }
            let raw: Option<String> = redis::from_redis_value_ref(&reply[0]).unwrap_or(None);
            let Some((raw, state)) = raw.and_then(|s| RoomState::parse(&s).map(|st| (s, st)))
            else {
                self.report.malformed += 1;
                continue;
            };
            match judge(&state, pttl, self.now_ms, millis(self.policy.max_age)) {
                Verdict::Keep => {}
                Verdict::Repair { at_ms } => repairs.push((code, at_ms)),
                verdict => stale.push(Stale {
                    code,
                    state: raw,
                    verdict,
                }),
            }
        }
        self.purge_rooms(stale).await?;
        self.repair(repairs).await
    }

    async fn purge_rooms(&mut self, stale: Vec<Stale>) -> Result<(), RedisError> {
        let per_chunk = (self.pacer.chunk(self.policy.batch) / 3).max(1);
        for chunk in stale.chunks(per_chunk) {
            let unlinked: Vec<u64> = if self.policy.dry_run {
                vec![3; chunk.len()]
            } else {
                let mut pipe = redis::pipe();
                for room in chunk {
                    let keys = self.schema.room_keys(&room.code);
                    evalsha(&mut pipe, &self.scripts.purge_room, &keys, &[&room.state]);
                }
                pipe.query_async(self.conn).await?
            };
            for (room, &n) in chunk.iter().zip(&unlinked) {
                if n == 0 {
                    continue;
                }
                match room.verdict {
                    Verdict::MaxAge => self.report.purged.max_age += 1,
                    _ => self.report.purged.expired += 1,
                }
            }
            if !self.policy.dry_run {
                self.pacer.record(unlinked.iter().sum()).await;
            }
        }
        Ok(())
    }

    /// Gives TTL-less live rooms their TTL back; `NX` never shortens a TTL set meanwhile.
    async fn repair(&mut self, repairs: Vec<(String, u64)>) -> Result<(), RedisError> {
        if repairs.is_empty() {
            return Ok(());
        }
        if self.policy.dry_run {
            self.report.repaired += repairs.len() as u64;
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (code, at_ms) in &repairs {
            for key in self.schema.room_keys(code) {
                pipe.cmd("PEXPIREAT").arg(key).arg(*at_ms).arg("NX");
            }
        }
        let set: Vec<i64> = pipe.query_async(self.conn).await?;
        // The first of each three replies is the room hash's.
        self.report.repaired += set.chunks_exact(3).filter(|r| r[0] == 1).count() as u64;
        Ok(())
    }

    /// Purges `data`/`log` keys whose room hash does not exist. Nearly every part belongs to
    /// a live room, so a pipeline of plain EXISTS picks the candidates first: a script call
    /// per part costs Redis several times more, and that time is taken from live traffic.
    async fn orphans(&mut self, parts: Vec<[String; 2]>) -> Result<(), RedisError> {
        if parts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for [room, _] in &parts {
            pipe.cmd("EXISTS").arg(room);
        }
        let exists: Vec<u64> = pipe.query_async(self.conn).await?;
        let candidates: Vec<[String; 2]> = parts
            .into_iter()
            .zip(exists)
            .filter(|&(_, exists)| exists == 0)
            .map(|(part, _)| part)
            .collect();
        self.purge_checked(|s| &s.purge_orphan, &candidates).await
    }

    /// Purges PeerJS registrations and queues left without a TTL (no client holds them).
    async fn peerjs(&mut self, keys: Vec<[String; 1]>) -> Result<(), RedisError> {
        self.purge_checked(|s| &s.purge_ttlless, &keys).await
    }

    /// Runs a re-checking purge script over each group of keys, in paced pipelines, counting
    /// what it unlinked as orphaned. A dry run runs the same scripts in `dry` mode, which
    /// count what they would unlink and change nothing.
    async fn purge_checked<K: AsRef<[String]>>(
        &mut self,
        script: fn(&Scripts) -> &Script,
        groups: &[K],
    ) -> Result<(), RedisError> {
        let mode = if self.policy.dry_run { "dry" } else { "purge" };
        for chunk in groups.chunks(self.pacer.chunk(self.policy.batch)) {
            let mut pipe = redis::pipe();
            for keys in chunk {
                evalsha(&mut pipe, script(&self.scripts), keys.as_ref(), &[mode]);
            }
            let replies: Vec<u64> = pipe.query_async(self.conn).await?;
            let purged = replies.iter().sum();
            self.report.purged.orphaned += purged;
            if !self.policy.dry_run {
                self.pacer.record(purged).await;
            }
        }
        Ok(())
    }
}

fn evalsha(pipe: &mut Pipeline, script: &Script, keys: &[impl AsRef<str>], args: &[&str]) {
    let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(key.as_ref());
    }
    for arg in args {
        cmd.arg(*arg);
    }
}

/// After a batch that kept Redis busy for `busy`, leaves it to other clients long enough that
/// batches fill `duty_cycle` percent of the time. Measured per batch, it follows the load:
/// a busy Redis makes batches slower and the pauses longer.
async fn pause_for_duty_cycle(busy: Duration, duty_cycle: u8) {
    let duty = u32::from(duty_cycle.clamp(1, 100));
    if duty < 100 {
        tokio::time::sleep(busy * (100 - duty) / duty).await;
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// Spaces deletions so they average at most `per_sec` keys per second over the sweep.
struct Pacer {
    per_sec: u32,
    started: Instant,
    deleted: u64,
}

impl Pacer {
    fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            started: Instant::now(),
            deleted: 0,
        }
    }

    /// How many keys to delete in one round trip.
    fn chunk(&self, batch: usize) -> usize {
        match self.per_sec {
            0 => batch.max(1),
            n => batch.min(n as usize).max(1),
        }
    }

    async fn record(&mut self, deleted: u64) {
        self.deleted += deleted;
        if self.per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.deleted as f64 / f64::from(self.per_sec));
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}
