//! pypeer (PyPI, 0.1.0), unmodified, signals through our Firebase layer: its host and joiner
//! complete the aiortc handshake, exchange messages over the data channel, and its cleanup
//! deletes the room. `tests/interop/pypeer_pair.py` drives pypeer's own code; `scripts/test`
//! makes the venv and sets `SB_PYTHON`.

use std::path::PathBuf;
use std::process::Command;

use common::testing::venv_python;
use serde_json::Value;

use crate::support::redis::RedisServer;
use crate::support::{Server, run_driver};

/// Runs a host against `host` and a joiner against `joiner`; returns the script's summary.
async fn pair(host: &Server, joiner: &Server, order: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pypeer_pair.py");
    let mut cmd = Command::new(venv_python("pypeer"));
    cmd.arg(script)
        .args(["--order", order])
        .env("PYPEER_URL", format!("{}/firebase", host.base))
        .env("PYPEER_URL_JOINER", format!("{}/firebase/", joiner.base))
        .env("PYPEER_PYTHON", venv_python("pypeer"))
        .env("PYPEER_TIMEOUT", "60");
    let summary = run_driver("pypeer pair", cmd).await;
    assert_eq!(summary["connected"], true, "{summary}");
    summary
}

/// pypeer's cleanup (DELETE of the room) left nothing behind.
async fn room_is_gone(s: &Server, summary: &Value) {
    let room = summary["room"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/rooms/{room}")).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypeer_signals_through_one_server() {
    let s = Server::start(None, &[]).await;
    let summary = pair(&s, &s, "host-first").await;
    room_is_gone(&s, &summary).await;
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("route=\"/firebase/rooms/{room}/{file}\""),
        "Firebase requests are counted by route"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypeer_host_and_joiner_on_two_replicas() {
    let redis = RedisServer::start();
    let a = Server::start(Some(&redis.url()), &[]).await;
    let b = Server::start(Some(&redis.url()), &[]).await;
    // The joiner waits on replica B before the host writes its offer on A.
    let summary = pair(&a, &b, "joiner-first").await;
    room_is_gone(&a, &summary).await;
    assert_eq!(redis.cli(&["DBSIZE"]), "0", "the room left no keys");
}
