//! `sweep` and `Janitor::sweep_once` against a seeded real Redis.

use std::time::Duration;

use common::keys::KeySchema;
use janitor::{Janitor, Outcome, Policy, sweep};

use crate::support::{
    Connect, EXPECTED, RedisServer, Seed, all_keys, counts, exists, now, pttl, set,
};

fn janitor_for(redis: &RedisServer, policy: Policy) -> Janitor {
    Janitor {
        redis_url: redis.url(),
        redis_timeout: Duration::from_secs(5),
        schema: KeySchema::default(),
        policy,
        lock_ttl: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn purges_exactly_the_stale_and_orphaned_keys() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let t = now(&mut conn).await;
    Seed::write(&mut conn, t).await;

    let report = sweep(&mut conn, &KeySchema::default(), t, &Policy::default())
        .await
        .unwrap();
    assert_eq!(counts(&report), EXPECTED, "{report}");
    assert_eq!(report.scanned, Seed::SCANNED);
    assert!(!report.dry_run);
    assert_eq!(all_keys(&mut conn).await, Seed::survivors());

    // The TTL-less live room got the expiry signal-server believes it has (kexp), on every key.
    for part in ["room", "data", "log"] {
        let ttl = pttl(&mut conn, &format!("sb:{{{}}}:{part}", Seed::TTLLESS)).await;
        assert!((9 * 60_000..=10 * 60_000).contains(&ttl), "{part}: {ttl}");
    }
    // Malformed room hashes are left without a TTL: the janitor does not guess.
    assert_eq!(pttl(&mut conn, "sb:{NOSTAT}:room").await, -1);
}

#[tokio::test]
async fn second_sweep_finds_nothing_more() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let t = now(&mut conn).await;
    Seed::write(&mut conn, t).await;
    let policy = Policy {
        batch: 3,
        ..Policy::default()
    };
    let first = sweep(&mut conn, &KeySchema::default(), t, &policy)
        .await
        .unwrap();
    assert_eq!(counts(&first), EXPECTED, "small batches: {first}");
    let again = sweep(&mut conn, &KeySchema::default(), t, &policy)
        .await
        .unwrap();
    assert_eq!(counts(&again), (0, 0, 0, 0, 5), "{again}");
    assert_eq!(all_keys(&mut conn).await, Seed::survivors());
}

#[tokio::test]
async fn dry_run_changes_nothing_and_reports_the_same_counts() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let t = now(&mut conn).await;
    Seed::write(&mut conn, t).await;
    let before = all_keys(&mut conn).await;

    let dry = Policy {
        dry_run: true,
        ..Policy::default()
    };
    let report = sweep(&mut conn, &KeySchema::default(), t, &dry)
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(counts(&report), EXPECTED, "{report}");
    assert_eq!(report.scanned, Seed::SCANNED);
    assert_eq!(all_keys(&mut conn).await, before);
    assert_eq!(pttl(&mut conn, "sb:{NOTTL1}:room").await, -1);

    let real = sweep(&mut conn, &KeySchema::default(), t, &Policy::default())
        .await
        .unwrap();
    assert_eq!(counts(&real), counts(&report));
}

#[tokio::test]
async fn max_age_follows_the_policy() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let t = now(&mut conn).await;
    Seed::write(&mut conn, t).await;
    let lenient = Policy {
        max_age: Duration::from_secs(3 * 3600),
        ..Policy::default()
    };
    let report = sweep(&mut conn, &KeySchema::default(), t, &lenient)
        .await
        .unwrap();
    assert_eq!(report.purged.max_age, 0);
    assert!(exists(&mut conn, "sb:{OLDONE}:room").await);
}

#[tokio::test]
async fn concurrent_sweeps_never_double_delete() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let t = now(&mut conn).await;
    Seed::write(&mut conn, t).await;
    // No lock here: the per-room compare-and-delete scripts alone keep the counts exact.
    let policy = Policy {
        batch: 2,
        ..Policy::default()
    };
    let (mut a, mut b) = (redis.conn().await, redis.conn().await);
    let schema = KeySchema::default();
    let (ra, rb) = tokio::join!(
        sweep(&mut a, &schema, t, &policy),
        sweep(&mut b, &schema, t, &policy)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.purged.expired + rb.purged.expired, 2, "{ra} / {rb}");
    assert_eq!(ra.purged.max_age + rb.purged.max_age, 1, "{ra} / {rb}");
    assert_eq!(ra.purged.orphaned + rb.purged.orphaned, 4, "{ra} / {rb}");
    assert_eq!(ra.repaired + rb.repaired, 1, "{ra} / {rb}");
    assert_eq!(all_keys(&mut conn).await, Seed::survivors());
}

#[tokio::test]
async fn concurrent_locked_runs_purge_each_key_once() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;
    let janitor = janitor_for(&redis, Policy::default());
    let (a, b) = tokio::join!(janitor.sweep_once(), janitor.sweep_once());
    let reports: Vec<_> = [a.unwrap(), b.unwrap()]
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Swept(r) => Some(r),
            Outcome::Locked { .. } => None,
        })
        .collect();
    assert!(!reports.is_empty());
    let total = |f: fn(&janitor::SweepReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert_eq!(total(|r| r.purged.expired), 2);
    assert_eq!(total(|r| r.purged.max_age), 1);
    assert_eq!(total(|r| r.purged.orphaned), 4);
    assert_eq!(all_keys(&mut conn).await, Seed::survivors());
}

#[tokio::test]
async fn held_lock_skips_the_sweep_and_is_never_malformed() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;
    set(&mut conn, "sb:janitor:lock").await;
    let before = all_keys(&mut conn).await;

    let janitor = janitor_for(&redis, Policy::default());
    let outcome = janitor.sweep_once().await.unwrap();
    assert!(matches!(outcome, Outcome::Locked { .. }), "{outcome}");
    assert_eq!(
        outcome.to_json(),
        r#"{"skipped":"locked","lock":"sb:janitor:lock"}"#
    );
    assert_eq!(all_keys(&mut conn).await, before);

    // A dry run takes no lock, and the lock key is neither scanned nor malformed.
    let dry = janitor_for(
        &redis,
        Policy {
            dry_run: true,
            ..Policy::default()
        },
    );
    let Outcome::Swept(report) = dry.sweep_once().await.unwrap() else {
        panic!("a dry run takes no lock");
    };
    assert_eq!(counts(&report), EXPECTED);
    assert_eq!(report.scanned, Seed::SCANNED);
}

#[tokio::test]
async fn sweep_once_releases_its_lock() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;
    let janitor = janitor_for(&redis, Policy::default());
    let Outcome::Swept(report) = janitor.sweep_once().await.unwrap() else {
        panic!("nobody else holds the lock");
    };
    assert_eq!(counts(&report), EXPECTED, "{report}");
    assert!(!exists(&mut conn, "sb:janitor:lock").await);
    assert!(matches!(
        janitor.sweep_once().await.unwrap(),
        Outcome::Swept(_)
    ));
}

#[tokio::test]
async fn lock_release_checks_the_token() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    let key = "sb:janitor:lock";
    let ttl = Duration::from_secs(30);
    let lock = janitor::Lock::acquire(&mut conn, key, ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(
        janitor::Lock::acquire(&mut conn, key, ttl)
            .await
            .unwrap()
            .is_none()
    );
    // The lock expired and someone else took it: releasing ours must not free theirs.
    let () = redis::cmd("SET")
        .arg(key)
        .arg("theirs")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!lock.release(&mut conn).await.unwrap());
    assert!(exists(&mut conn, key).await);
}

#[tokio::test]
async fn deletion_rate_is_capped() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    for i in 0..40 {
        set(&mut conn, &format!("sb:{{ORPH{i:02}}}:data")).await;
    }
    let policy = Policy {
        max_deletes_per_sec: 20,
        ..Policy::default()
    };
    let t = now(&mut conn).await;
    let report = sweep(&mut conn, &KeySchema::default(), t, &policy)
        .await
        .unwrap();
    assert_eq!(report.purged.orphaned, 40);
    assert!(report.duration >= Duration::from_millis(1900), "{report}");
}

#[tokio::test]
async fn binary_and_wrong_type_keys_are_malformed_not_fatal() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    set(&mut conn, "sb:{STRNG}:room").await;
    let () = redis::cmd("SET")
        .arg(b"sb:{\xff\xfe}:room".as_slice())
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let t = now(&mut conn).await;
    let report = sweep(&mut conn, &KeySchema::default(), t, &Policy::default())
        .await
        .unwrap();
    assert_eq!((report.scanned, report.malformed), (2, 2), "{report}");
    assert!(exists(&mut conn, "sb:{STRNG}:room").await);
}
