//! The `janitor` binary: exit statuses, output, and the schedule's SIGTERM stop.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Connect, EXPECTED, RedisServer, Seed, all_keys, exists, free_port, set};

fn janitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_janitor"))
        .args(args)
        .env("JANITOR_LOG_FORMAT", "text")
        .output()
        .expect("run janitor")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn run_sweeps_and_prints_json() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;

    let out = janitor(&["run", "--redis-url", &redis.url(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let (expired, max_age, orphaned, repaired, malformed) = EXPECTED;
    assert_eq!(report["purged"]["expired"], expired);
    assert_eq!(report["purged"]["max_age"], max_age);
    assert_eq!(report["purged"]["orphaned"], orphaned);
    assert_eq!(report["repaired"], repaired);
    assert_eq!(report["malformed"], malformed);
    assert_eq!(report["scanned"], Seed::SCANNED);
    assert_eq!(all_keys(&mut conn).await, Seed::survivors());
}

#[tokio::test]
async fn dry_run_prints_a_summary_and_changes_nothing() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;
    let before = all_keys(&mut conn).await;

    let out = janitor(&["run", "--dry-run", "--redis-url", &redis.url()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.contains("would purge 2 expired rooms, 1 rooms past max age, 4 orphaned keys"),
        "{line}"
    );
    assert!(line.contains("skipped 5 malformed"), "{line}");
    assert_eq!(all_keys(&mut conn).await, before);
}

#[tokio::test]
async fn held_lock_exits_75() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    set(&mut conn, "sb:janitor:lock").await;
    let out = janitor(&["run", "--redis-url", &redis.url()]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&out).contains("skipped: locked"), "{}", stdout(&out));
}

#[test]
fn unreachable_redis_fails_with_a_clear_error() {
    let url = format!("redis://:hunter2@127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = janitor(&["run", "--redis-url", &url, "--redis-timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_configuration_exits_64() {
    let out = janitor(&[
        "run",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--key-prefix",
        "a:b",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--key-prefix"));
}

#[tokio::test]
async fn schedule_sweeps_on_ticks_and_stops_on_sigterm() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_janitor"))
        .args(["schedule", "--cron", "* * * * * *", "--json"])
        .env("JANITOR_REDIS_URL", redis.url())
        .env("JANITOR_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(&mut conn, "sb:{EXPIR1}:room").await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swept = !exists(&mut conn, "sb:{EXPIR1}:room").await;

    common::testing::sigterm(child.id()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(swept, "no sweep within 15 s");
    let status = status.expect("janitor schedule did not stop within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
    let output = child.wait_with_output().unwrap();
    let first = stdout(&output)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(report["purged"]["expired"], 2, "{first}");
    assert_eq!(all_keys(&mut conn).await, Seed::survivors());
}
