//! The real `signal-server` binary: exit codes, printed URL, SIGTERM drain.

use std::process::{Command, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{SseClient, WAIT, sigterm};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_signal-server"))
}

#[test]
fn bad_configuration_exits_64_with_a_message() {
    let out = binary()
        .args(["--idle-ttl", "2h", "--max-age", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--idle-ttl"));
}

#[test]
fn too_many_worker_threads_are_refused_before_the_runtime_starts() {
    let out = binary()
        .args(["--worker-threads", "100000", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--worker-threads"), "{err}");
}

#[test]
fn check_config_hides_secrets() {
    let out = binary()
        .args([
            "--check-config",
            "--turn-secrets",
            "s3cr3t",
            "--turn-urls",
            "turn:127.0.0.1:3478",
        ])
        .env("SB_REDIS_URL", "redis://:hunter2@127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("configuration ok"));
    assert!(text.contains("worker_threads=0"), "{text}");
    assert!(
        !text.contains("s3cr3t") && !text.contains("hunter2"),
        "{text}"
    );
    let help = binary()
        .arg("--help")
        .env("SB_TURN_SECRETS", "s3cr3t")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("s3cr3t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_streams_and_exits_cleanly() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_signal-server"))
        // One worker thread: the runtime the flag builds serves and drains like the default.
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--worker-threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The first stdout line names the bound address.
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let room: serde_json::Value = http
        .post(format!("{base}/v1/rooms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = room["code"].as_str().unwrap().to_owned();
    let r = http
        .get(format!("{base}/v1/rooms/{code}/events"))
        .send()
        .await
        .unwrap();
    let mut sse = SseClient::from_response(r);
    assert_eq!(sse.next().await.unwrap().event, "ready");

    sigterm(child.id().unwrap()).unwrap();
    assert_eq!(sse.next().await.unwrap().event, "shutdown");
    assert!(sse.next().await.is_none());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    let mut logs = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut logs)
        .await
        .unwrap();
    assert!(logs.contains("draining"), "{logs}");
    assert!(
        !logs.contains(&code),
        "logs must not carry full room codes:\n{logs}"
    );
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every log line is JSON");
    }
}
