//! End-to-end tests of signal-server over real sockets: the shared suite against the embedded
//! store, a real `redis-server` and a 3-master Redis Cluster, plus replicas and Redis outages.

mod binary;
mod browser;
mod bundle;
mod compat;
mod peerjs;
mod put_batch;
mod pypeer;
mod suite;
mod support;
mod web;

use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use support::proxy::ChaosProxy;
use support::redis::{RedisCluster, RedisServer};
use support::{Server, WsItem};

/// One test per suite case and backend.
macro_rules! suite_on {
    ($backend:ident, $boot:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (boot, _guard) = $boot;
                    crate::suite::$case(&boot).await;
                }
            )*
        }
    };
}

fn memory() -> (
    impl Fn(&'static [&'static str]) -> futures_util::future::BoxFuture<'static, Server> + Sync,
    (),
) {
    (
        |extra: &'static [&'static str]| Server::start(None, extra).boxed(),
        (),
    )
}

fn redis<T>(
    url: String,
    guard: T,
) -> (
    impl Fn(&'static [&'static str]) -> futures_util::future::BoxFuture<'static, Server> + Sync,
    T,
) {
    let boot = move |extra: &'static [&'static str]| {
        let url = url.clone();
        async move { Server::start(Some(&url), extra).await }.boxed()
    };
    (boot, guard)
}

fn single_redis() -> (
    impl Fn(&'static [&'static str]) -> futures_util::future::BoxFuture<'static, Server> + Sync,
    RedisServer,
) {
    let server = RedisServer::start();
    redis(server.url(), server)
}

fn cluster() -> (
    impl Fn(&'static [&'static str]) -> futures_util::future::BoxFuture<'static, Server> + Sync,
    RedisCluster,
) {
    let cluster = RedisCluster::start();
    redis(cluster.url(), cluster)
}

/// Every case of the shared suite, on one backend: the embedded store and a single Redis must
/// pass the same list (a case added here runs on both).
macro_rules! full_suite_on {
    ($backend:ident, $boot:expr) => {
        suite_on!(
            $backend,
            $boot,
            [
                rooms_lifecycle,
                blobs_versions_and_preconditions,
                ttls_follow_server_time,
                sse_sees_every_change_in_order,
                sse_resumes_from_last_event_id,
                change_log_serves_exactly_its_length,
                websocket_watch,
                websocket_writes,
                websocket_writes_back_to_back,
                websocket_bad_frames_within_a_burst,
                long_poll,
                watchers_see_room_expiry,
                turn_credentials,
                abuse_limits,
                ops_endpoints,
                shutdown_ends_streams_with_a_final_event,
                firebase_rest,
                firebase_limits,
                firebase_streams,
                firebase_admin_listing,
                twilio_tokens,
                peerjs_http,
                peerjs_connect_rules,
                peerjs_relay_rules,
                peerjs_queue_bounds_and_liveness,
            ]
        );
    };
}

full_suite_on!(memory_store, memory());

full_suite_on!(redis_store, single_redis());

suite_on!(
    redis_cluster,
    cluster(),
    [
        rooms_lifecycle,
        blobs_versions_and_preconditions,
        sse_sees_every_change_in_order,
        long_poll,
        ttls_follow_server_time,
        firebase_rest,
        firebase_streams,
        firebase_admin_listing,
    ]
);

/// A write on one replica reaches watchers on another, over every transport.
async fn replicas_share_rooms(url: &str) {
    let a = Server::start(Some(url), &[]).await;
    let b = Server::start(Some(url), &[]).await;
    let code = a.create_room().await;
    let mut sse = b.sse(&format!("/v1/rooms/{code}/events"), None).await;
    let mut ws = b.ws(&format!("/v1/rooms/{code}/ws")).await;
    assert_eq!(sse.next().await.unwrap().event, "ready");
    let WsItem::Event(_) = ws.next().await else {
        panic!()
    };
    let poll_path = format!("/v1/rooms/{code}/changes?after=0&wait=10");
    let poll = b.get(&poll_path);
    let (polled, _) = tokio::join!(poll, async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.put_ok(&code, "offer", "o").await
    });
    assert_eq!(
        polled.json::<Value>().await.unwrap()["events"][0]["slot"],
        "offer"
    );
    b.put_ok(&code, "answer", "a").await;
    for (slot, version) in [("offer", 1), ("answer", 2)] {
        let e = sse.next().await.unwrap();
        assert_eq!(
            (e.data["slot"].as_str().unwrap(), e.id.unwrap()),
            (slot, version)
        );
        let WsItem::Event(w) = ws.next().await else {
            panic!()
        };
        assert_eq!(w["version"], version);
    }
    let got = a.get(&format!("/v1/rooms/{code}/blobs/answer")).await;
    assert_eq!(got.text().await.unwrap(), "a");
}

/// Firebase streams on one replica see writes made through another.
async fn firebase_across_replicas(url: &str) {
    let a = Server::start(Some(url), &[]).await;
    let b = Server::start(Some(url), &[]).await;
    let mut joiner = compat::fb_stream(&b, "/rooms/REPL01/offer.json").await;
    assert_eq!(compat::next_put(&mut joiner).await, Value::Null);
    let offer = serde_json::json!({"payload": "p", "timestamp": 1});
    let r = a
        .http
        .put(a.url("/firebase/rooms/REPL01/offer.json"))
        .body(offer.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(compat::next_put(&mut joiner).await, offer);
    assert_eq!(a.delete("/firebase/rooms/REPL01.json").await.status(), 200);
    assert_eq!(compat::next_put(&mut joiner).await, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_mounted_route() {
    compat::openapi_describes_every_mounted_route().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_redis() {
    let redis = RedisServer::start();
    replicas_share_rooms(&redis.url()).await;
    firebase_across_replicas(&redis.url()).await;
    peerjs::peerjs_across_replicas(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_cluster() {
    let cluster = RedisCluster::start();
    replicas_share_rooms(&cluster.url()).await;
    firebase_across_replicas(&cluster.url()).await;
    peerjs::peerjs_across_replicas(&cluster.url()).await;
    // Rooms spread over every master, each room's keys on one.
    let a = Server::start(Some(&cluster.url()), &["--create-per-minute", "1000"]).await;
    for _ in 0..30 {
        let code = a.create_room().await;
        a.put_ok(&code, "offer", "o").await;
    }
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "a master holds no rooms");
        assert!(
            node.cli(&["FUNCTION", "LIST"]).contains("switchboard_"),
            "a master lacks the function library"
        );
    }
    // Masters that lose the library (a restart) get it again on the next call.
    for node in &cluster.nodes {
        node.cli(&["FUNCTION", "FLUSH"]);
    }
    for _ in 0..10 {
        let code = a.create_room().await;
        a.put_ok(&code, "offer", "o").await;
        let got = a.get(&format!("/v1/rooms/{code}/blobs/offer")).await;
        assert_eq!(got.text().await.unwrap(), "o");
    }
}

/// Redis that lost the function library (restarted, or `FUNCTION FLUSH`) gets it loaded again
/// and the call retried: no error reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_library_reloaded_when_redis_loses_it() {
    let redis = RedisServer::start();
    let s = Server::start(Some(&redis.url()), &[]).await;
    let code = s.create_room().await;
    s.put_ok(&code, "offer", "o").await;
    assert_eq!(redis.cli(&["FUNCTION", "FLUSH"]), "OK");
    s.put_ok(&code, "answer", "a").await;
    assert_eq!(redis.cli(&["FUNCTION", "FLUSH"]), "OK");
    let got = s.get(&format!("/v1/rooms/{code}/blobs/offer")).await;
    assert_eq!(got.text().await.unwrap(), "o");
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("sb_redis_errors_total 0"),
        "a reload is not an error"
    );
}

/// Redis goes away and comes back: 503 + Retry-After meanwhile, watchers told, then recovery
/// without a restart and every acknowledged write still readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_and_recovery() {
    let redis = RedisServer::start();
    let proxy = ChaosProxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let s = Server::start(Some(&proxy.url()), &["--redis-timeout", "500ms"]).await;
    let code = s.create_room().await;
    s.put_ok(&code, "offer", "before").await;
    let mut sse = s.sse(&format!("/v1/rooms/{code}/events"), None).await;
    assert_eq!(sse.next().await.unwrap().event, "ready");

    proxy.cut();
    let told = sse.next().await.unwrap();
    assert_eq!(told.event, "unavailable");
    assert!(sse.next().await.is_none());
    let r = s.put(&code, "answer", "during").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "store_unavailable"
    );
    assert_eq!(s.get("/readyz").await.status(), 503);
    assert_eq!(
        s.get(&format!("/v1/rooms/{code}/events")).await.status(),
        503
    );

    proxy.restore();
    s.await_ready().await;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while s.put(&code, "answer", "after").await.status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = s
        .get(&format!("/v1/rooms/{code}/blobs/offer"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(before, "before");
    // The watcher resumes where it stopped.
    let mut resumed = s.sse(&format!("/v1/rooms/{code}/events"), Some(1)).await;
    assert_eq!(resumed.next().await.unwrap().event, "ready");
    let e = resumed.next().await.unwrap();
    assert_eq!((e.data["slot"].as_str(), e.id), (Some("answer"), Some(2)));
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("sb_redis_errors_total 0"),
        "errors were counted"
    );
}

/// In the one-command bundle (embedded store) the sweeper plays the janitor: a room goes at
/// its deadline without any request touching it, and the sweep is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_sweeps_rooms_at_their_deadline() {
    let s = Server::start(None, &["--idle-ttl", "300ms"]).await;
    let code = s.create_room().await;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let metrics = s.get("/metrics").await.text().await.unwrap();
        if metrics.contains("sb_rooms_swept_total 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never swept:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.get(&format!("/v1/rooms/{code}")).await.status(), 404);
}

/// Every key a room leaves in Redis expires on its own, even after a single write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_key_carries_a_ttl() {
    let redis = RedisServer::start();
    let s = Server::start(
        Some(&redis.url()),
        &["--idle-ttl", "10m", "--max-age", "1h"],
    )
    .await;
    let code = s.create_room().await;
    s.put_ok(&code, "offer", "o").await;
    let keys = common::keys::KeySchema::default().room_keys(&code);
    let check = |keys: &[String]| {
        for key in keys {
            let pttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
            // Up to the idle TTL plus the one-minute key slack, never "no TTL" (-1).
            assert!(pttl > 0 && pttl <= 11 * 60 * 1000, "{key}: PTTL {pttl}");
        }
    };
    check(&keys);
    assert_eq!(
        s.delete(&format!("/v1/rooms/{code}/blobs/offer"))
            .await
            .status(),
        204
    );
    s.put_ok(&code, "answer", "a").await;
    check(&keys);
    assert_eq!(s.delete(&format!("/v1/rooms/{code}")).await.status(), 204);
    assert_eq!(redis.cli(&["DBSIZE"]), "0", "a deleted room leaves no keys");
}
