//! Concurrent puts on a standalone Redis share `put_many` calls. On a current-thread runtime
//! every put below is queued before the batching task runs, so they go out as one call: each
//! must still get exactly the answer a lone put would, and their changes go out as one message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::keys::KeySchema;
use futures_util::future::join_all;
use signal_server::fanout::{Fanout, FanoutEvent};
use signal_server::model::{Change, Limits, Precondition, PutBlob, RoomCode, SlotName};
use signal_server::store::{RedisStore, RedisTarget, StoreError};
use support::redis::RedisServer;
use tokio_util::sync::CancellationToken;

use crate::support;

const NOW: u64 = 1_800_000_000_000;

async fn store(redis: &RedisServer) -> RedisStore {
    store_with(redis, Fanout::new(64, true)).await
}

async fn store_with(redis: &RedisServer, fanout: Arc<Fanout>) -> RedisStore {
    let limits = Limits {
        idle_ttl_ms: 600_000,
        max_age_ms: 3_600_000,
        max_slots: 4,
        log_len: 128,
    };
    let errors = prometheus::IntCounter::new("errors", "test").unwrap();
    RedisStore::connect(
        RedisTarget::Single(redis.url()),
        KeySchema::default(),
        limits,
        fanout,
        Duration::from_secs(5),
        errors,
    )
    .await
    .unwrap()
}

fn put(slot: &str, precondition: Precondition) -> PutBlob {
    PutBlob {
        slot: SlotName::parse(slot).unwrap(),
        data: Bytes::from_static(b"blob"),
        content_type: "text/plain".into(),
        precondition,
        ttl_ms: None,
    }
}

#[tokio::test]
async fn batched_puts_answer_as_lone_puts_would() {
    let redis = RedisServer::start();
    let store = Arc::new(store(&redis).await);
    let rooms: Vec<RoomCode> = ["BATCH2", "BATCH3"]
        .iter()
        .map(|c| RoomCode::parse(c).unwrap())
        .collect();
    for room in &rooms {
        store.create_room(room, NOW).await.unwrap();
    }
    let missing = RoomCode::parse("NOROOM").unwrap();

    // Per room, in queue order: 4 plain puts, 3 write-once puts of one slot (the first wins),
    // a compare-and-set at the version the 2nd put makes, then new slots up to the cap of 4.
    let mut calls = Vec::new();
    for room in &rooms {
        for _ in 0..4 {
            calls.push((room.clone(), put("offer", Precondition::None)));
        }
        for _ in 0..3 {
            calls.push((room.clone(), put("once", Precondition::Absent)));
        }
        calls.push((room.clone(), put("offer", Precondition::Version(2))));
        for slot in ["c1", "c2", "c3"] {
            calls.push((room.clone(), put(slot, Precondition::None)));
        }
        calls.push((missing.clone(), put("offer", Precondition::None)));
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let fcalls_before = fcalls(&mut conn).await;
    let results = join_all(calls.into_iter().map(|(room, p)| {
        let store = Arc::clone(&store);
        async move { store.put_blob(&room, p, NOW).await }
    }))
    .await;
    assert_eq!(
        fcalls(&mut conn).await - fcalls_before,
        1,
        "one call for all 24 puts"
    );

    for per_room in results.chunks(12) {
        assert_eq!(
            versions(per_room),
            [
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                None,
                None,
                None,
                Some(6),
                Some(7),
                None,
                None
            ],
            "{per_room:?}"
        );
        for refused in &per_room[5..7] {
            assert_eq!(
                refused.as_ref().unwrap_err(),
                &StoreError::PreconditionFailed { current: Some(5) }
            );
        }
        assert_eq!(
            per_room[7].as_ref().unwrap_err(),
            &StoreError::PreconditionFailed { current: Some(4) }
        );
        assert_eq!(
            per_room[10].as_ref().unwrap_err(),
            &StoreError::TooManySlots
        );
        assert_eq!(per_room[11].as_ref().unwrap_err(), &StoreError::NoRoom);
    }
    for room in &rooms {
        let info = store.room(room, NOW).await.unwrap();
        assert_eq!(info.version, 7);
        assert_eq!(info.slots.len(), 4);
    }

    // Redis lost its functions (a restart, `FUNCTION FLUSH`): the batch loads them and retries.
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let again = join_all(
        rooms
            .iter()
            .map(|room| store.put_blob(room, put("offer", Precondition::None), NOW)),
    )
    .await;
    for change in again {
        assert_eq!(change.unwrap().version, 8);
    }
}

#[tokio::test]
async fn a_batch_reaches_watchers_as_one_message_in_order() {
    let redis = RedisServer::start();
    let fanout = Fanout::new(64, false);
    let store = Arc::new(store_with(&redis, Arc::clone(&fanout)).await);
    let shutdown = CancellationToken::new();
    let subscriber = tokio::spawn(Arc::clone(&store).run_subscriber(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), async {
        while !fanout.is_available() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the change feed connects");
    let rooms: Vec<RoomCode> = ["FEED22", "FEED33"]
        .iter()
        .map(|c| RoomCode::parse(c).unwrap())
        .collect();
    let mut watchers = Vec::new();
    for room in &rooms {
        store.create_room(room, NOW).await.unwrap();
        watchers.push(fanout.subscribe(room.as_str()));
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (fcalls_before, publishes_before) = (fcalls(&mut conn).await, publishes(&mut conn).await);

    // Six puts per room, interleaved, all queued before the batching task runs.
    let results = join_all((0..12).map(|i| {
        let store = Arc::clone(&store);
        let room = rooms[i % 2].clone();
        async move {
            store
                .put_blob(&room, put("offer", Precondition::None), NOW)
                .await
        }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fcalls(&mut conn).await - fcalls_before, 1);
    assert_eq!(publishes(&mut conn).await - publishes_before, 1);

    for watcher in &mut watchers {
        for version in 1..=6 {
            let event = tokio::time::timeout(Duration::from_secs(10), watcher.rx.recv())
                .await
                .expect("every change arrives")
                .unwrap();
            match event {
                FanoutEvent::Change(change) => assert_eq!(change.version, version),
                other => panic!("{other:?}"),
            }
        }
    }
    shutdown.cancel();
    subscriber.await.unwrap();
}

/// The version each put made, `None` where it was refused.
fn versions(results: &[Result<Change, StoreError>]) -> Vec<Option<u64>> {
    results
        .iter()
        .map(|r| r.as_ref().ok().map(|c| c.version))
        .collect()
}

/// `FCALL`s Redis has run, from `INFO commandstats`.
async fn fcalls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    command_calls(conn, "fcall").await
}

/// `PUBLISH`es Redis has run, from scripts or clients.
async fn publishes(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    command_calls(conn, "publish").await
}

async fn command_calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_run_of_puts_in_one_room_answers_as_lone_puts_would_in_one_call() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let room = RoomCode::parse("RUN234").unwrap();
    store.create_room(&room, NOW).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (fcalls_before, publishes_before) = (fcalls(&mut conn).await, publishes(&mut conn).await);

    // Each put sees the ones before it: write-once twice, compare-and-set at a stale and a
    // current version, then new slots up to the cap of 4.
    let run = vec![
        put("offer", Precondition::Absent),
        put("offer", Precondition::Absent),
        put("offer", Precondition::Version(7)),
        put("offer", Precondition::Version(1)),
        put("c1", Precondition::None),
        put("c2", Precondition::None),
        put("c3", Precondition::None),
        put("c4", Precondition::None),
        put("c1", Precondition::None),
    ];
    let results = store.put_blobs(&room, run, NOW).await;
    assert_eq!(fcalls(&mut conn).await - fcalls_before, 1, "one call");
    assert_eq!(
        publishes(&mut conn).await - publishes_before,
        1,
        "one message"
    );
    assert_eq!(
        versions(&results),
        [
            Some(1),
            None,
            None,
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            None,
            Some(6)
        ],
        "{results:?}"
    );
    assert_eq!(
        results[1].as_ref().unwrap_err(),
        &StoreError::PreconditionFailed { current: Some(1) }
    );
    assert_eq!(
        results[2].as_ref().unwrap_err(),
        &StoreError::PreconditionFailed { current: Some(1) }
    );
    assert_eq!(results[7].as_ref().unwrap_err(), &StoreError::TooManySlots);

    // What the run stored reads back as lone puts would have left it.
    let info = store.room(&room, NOW).await.unwrap();
    assert_eq!(info.version, 6);
    let slots: Vec<(String, u64)> = info
        .slots
        .iter()
        .map(|s| (s.name.as_str().to_owned(), s.version))
        .collect();
    for expected in [("offer", 2), ("c1", 6), ("c2", 4), ("c3", 5)] {
        assert!(
            slots.contains(&(expected.0.to_owned(), expected.1)),
            "{slots:?}"
        );
    }
    let since = store.changes_since(&room, Some(0), NOW).await.unwrap();
    let logged: Vec<u64> = since.changes.iter().map(|c| c.version).collect();
    assert_eq!(logged, [1, 2, 3, 4, 5, 6]);
    let blob = store
        .blob(&room, &SlotName::parse("c1").unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(&blob.data[..], b"blob");

    // A run in a room that does not exist: every put is refused, nothing is created.
    let missing = RoomCode::parse("NORUN2").unwrap();
    let results = store
        .put_blobs(&missing, vec![put("a", Precondition::None); 3], NOW)
        .await;
    assert!(results.iter().all(|r| r == &Err(StoreError::NoRoom)));
    assert_eq!(
        store.room(&missing, NOW).await.unwrap_err(),
        StoreError::NoRoom
    );
}
