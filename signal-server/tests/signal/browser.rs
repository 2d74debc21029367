//! The stock `peerjs` client (npm 1.5.5) in two headless Chromium pages connects through our
//! PeerJS endpoint and exchanges DataConnection messages, on one server and across two
//! replicas. `tests/browser/peerjs_pair.mjs` drives the pages; `scripts/test` installs
//! Chromium and its npm packages.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::redis::RedisServer;
use crate::support::{Server, run_driver};

/// Runs the page pair: page A on `a`, page B on `b`; returns the script's summary.
async fn pair(a: &Server, b: &Server, server_ids: bool) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/peerjs").exists(),
        "run scripts/test, which installs the browser test's npm packages"
    );
    let port = |s: &Server| s.base.rsplit(':').next().unwrap().to_owned();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("peerjs_pair.mjs"))
        .current_dir(&dir)
        .env("SB_PEERJS_PORT_A", port(a))
        .env("SB_PEERJS_PORT_B", port(b))
        .env("SB_PEERJS_PATH", "/peerjs")
        .env("SB_PEERJS_SERVER_IDS", if server_ids { "1" } else { "0" })
        .env("SB_PEERJS_TIMEOUT_MS", "60000");
    let summary = run_driver("peerjs pair", cmd).await;
    assert_eq!(summary["receivedByA"], "hello from B", "{summary}");
    assert_eq!(summary["receivedByB"], "hello from A", "{summary}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peerjs_pages_connect_through_one_server() {
    let s = Server::start(None, &[]).await;
    // Both pages ask the server for their IDs first (GET /peerjs/peerjs/id, cross-origin).
    pair(&s, &s, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peerjs_pages_connect_across_two_replicas() {
    let redis = RedisServer::start();
    let a = Server::start(Some(&redis.url()), &[]).await;
    let b = Server::start(Some(&redis.url()), &[]).await;
    pair(&a, &b, false).await;
}
