//! A real WebRTC stack, aiortc (PyPI), opens a relay-only data channel through our server and
//! exchanges messages. `scripts/test` makes the Python venv and sets `SB_PYTHON`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::testing::venv_python;
use common::turn_auth::{SharedSecret, mint};
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_relay_only_data_channel() {
    let config = Config::from_args([
        "turn-server",
        "--listen-udp",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--secrets",
        "webrtc-secret",
        "--allow-peer",
        "127.0.0.0/8",
        "--log-format",
        "text",
    ])
    .unwrap();
    let listeners = turn_server::Listeners::bind(&config).await.unwrap();
    let addr = listeners.udp[0].local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(turn_server::run(config, listeners, shutdown.clone()));

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = SharedSecret::new("webrtc-secret").unwrap();
    let cred = mint(&secret, Some("aiortc"), Duration::from_secs(600), now).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiortc_relay.py");
    let run = tokio::process::Command::new(venv_python("aiortc"))
        .args([
            script,
            &format!("turn:{addr}"),
            &cred.username,
            &cred.credential,
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("aiortc finished")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK relay 20"), "{text}");
    shutdown.cancel();
    server.abort();
}
