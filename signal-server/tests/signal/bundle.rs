//! The one-command bundle (`scripts/run`, the README's run command) with the demo page in
//! headless Chromium: two pages meet by room code, connect directly and with relay forced
//! through our turn-server (which must count the relay in its metrics), exchange messages and a
//! 1 MiB file whose SHA-256 matches on both sides; a wrong passphrase is reported on the page.
//! `tests/browser/demo_pair.mjs` drives the pages and saves screenshots of both under
//! `<target>/demo-screenshots/<case>/`. The binaries are the test profile's (`scripts/test`
//! builds them all before testing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::redis::RedisServer;
use crate::support::{free_port, run_driver, sigterm};

const START_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(40);

/// `target/debug` (or the profile dir) of this test executable, which holds every binary.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for bin in ["signal-server", "turn-server", "janitor"] {
        assert!(
            dir.join(bin).exists(),
            "{} missing: build every binary first (`cargo build --workspace --bins`; scripts/test does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// `scripts/run` on free loopback ports; stopped with SIGTERM like a user's Ctrl-C.
struct Bundle {
    child: Option<Child>,
    base: String,
    turn_http: String,
}

impl Bundle {
    async fn start(extra_env: &[(&str, String)]) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let turn: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let turn_http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cmd = Command::new(root.join("scripts/run"));
        cmd.env("SB_BIN_DIR", bin_dir())
            .env("SB_LISTEN", listen.to_string())
            .env("TURN_LISTEN_UDP", turn.to_string())
            .env("TURN_HTTP_LISTEN", turn_http.to_string())
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("scripts/run starts");
        let bundle = Self {
            child: Some(child),
            base: format!("http://{listen}"),
            turn_http: format!("http://{turn_http}"),
        };
        await_ready(&format!("{}/readyz", bundle.base)).await;
        await_ready(&format!("{}/readyz", bundle.turn_http)).await;
        bundle
    }

    /// SIGTERM to the launcher, as Ctrl-C would; returns its exit status.
    fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        sigterm(child.id()).unwrap();
        let deadline = Instant::now() + STOP_WITHIN;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "scripts/run did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // A failed test: stop the launcher; its trap stops the servers.
            let _ = sigterm(child.id());
            let _ = child.wait();
        }
    }
}

/// Polls a readiness endpoint: the bundle's own signal that it is up, not a sleep.
async fn await_ready(url: &str) {
    let deadline = Instant::now() + START_WITHIN;
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metric_sum(url: &str, name: &str) -> f64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the page pair in `mode` against the bundle; returns the driver's summary.
async fn demo_pair(bundle: &Bundle, mode: &str, relay: bool) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "run scripts/test, which installs the browser test's npm packages"
    );
    let case = format!("{mode}{}", if relay { "-relay" } else { "" });
    let shots = bin_dir().join("..").join("demo-screenshots").join(&case);
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("demo_pair.mjs"))
        .current_dir(&dir)
        .env("SB_BASE", &bundle.base)
        .env("SB_MODE", mode)
        .env("SB_RELAY", if relay { "1" } else { "0" })
        .env("SB_SCREENSHOT_DIR", &shots)
        .env("SB_TIMEOUT_MS", "90000");
    let summary = run_driver(&format!("demo pair ({case})"), cmd).await;
    assert_eq!(summary["ok"], true, "{summary}");
    for shot in ["a.png", "b.png"] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
    summary
}

/// The client module's own tests (Node's runner), its SignalClient ones against this bundle.
fn module_tests_against(bundle: &Bundle) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .args(["--experimental-eventsource", "--test", "web/test/"])
        .current_dir(&root)
        .env("SB_BASE", &bundle.base)
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node --test failed:\n{text}");
    assert!(
        text.contains("# skipped 0"),
        "server tests skipped:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pages_connect_through_the_one_command_bundle() {
    let bundle = Bundle::start(&[]).await;
    let metrics = format!("{}/metrics", bundle.turn_http);

    let direct = demo_pair(&bundle, "link", false).await;
    assert_eq!(direct["sha256"], direct["expectedSha256"], "{direct}");
    let before = metric_sum(&metrics, "turn_allocations_created_total").await;

    let relayed = demo_pair(&bundle, "passphrase", true).await;
    assert_eq!(relayed["sha256"], relayed["expectedSha256"], "{relayed}");
    assert_eq!(relayed["path"]["a"], "relay", "{relayed}");
    assert_eq!(relayed["path"]["b"], "relay", "{relayed}");
    let after = metric_sum(&metrics, "turn_allocations_created_total").await;
    assert!(
        after > before,
        "turn-server saw no allocation: {before} -> {after}"
    );
    assert!(
        metric_sum(&metrics, "turn_relayed_bytes_total").await >= 1024.0 * 1024.0,
        "the 1 MiB file did not cross the relay"
    );

    demo_pair(&bundle, "wrong-passphrase", false).await;
    module_tests_against(&bundle);

    let status = bundle.stop();
    assert!(
        status.success(),
        "scripts/run exited {status} after SIGTERM"
    );
}

/// With a Redis URL the same command runs signal-server on Redis and adds `janitor schedule`,
/// whose health endpoint answers; SIGTERM stops all three cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_runs_on_redis_with_a_scheduled_janitor() {
    let redis = RedisServer::start();
    let janitor: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let bundle = Bundle::start(&[
        ("SB_REDIS_URL", redis.url()),
        ("JANITOR_METRICS_LISTEN", janitor.to_string()),
    ])
    .await;
    await_ready(&format!("http://{janitor}/readyz")).await;
    let created = reqwest::Client::new()
        .post(format!("{}/v1/rooms", bundle.base))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let keys: u64 = redis.cli(&["DBSIZE"]).parse().unwrap();
    assert!(keys > 0, "the room is not in Redis");
    let status = bundle.stop();
    assert!(
        status.success(),
        "scripts/run exited {status} after SIGTERM"
    );
}
