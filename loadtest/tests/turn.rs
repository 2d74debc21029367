//! `loadtest turn` end to end against our turn-server on loopback: every figure in the report is
//! consistent with what was sent, and the JSON, the HTML report and the time series agree.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use loadtest::turn::{CredentialSource, Options, run};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;

/// Our turn-server on loopback, accepting `load-secret` and relaying within 127.0.0.0/8.
async fn turn_server() -> (
    SocketAddr,
    CancellationToken,
    JoinHandle<Result<(), turn_server::RunError>>,
) {
    let config = Config::from_args([
        "turn-server",
        "--listen-udp",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--secrets",
        "load-secret",
        "--allow-peer",
        "127.0.0.0/8",
        "--log-format",
        "text",
    ])
    .unwrap();
    let listeners = turn_server::Listeners::bind(&config).await.unwrap();
    let server = listeners.udp[0].local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(turn_server::run(config, listeners, shutdown.clone()));
    (server, shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_between_allocation_pairs_and_reports_what_arrived() {
    let (server, shutdown, task) = turn_server().await;

    let report = run(Options {
        server,
        credentials: CredentialSource::Secret("load-secret".into()),
        pairs: 2,
        rate: 100,
        size: 64,
        duration: Duration::from_secs(1),
        step_timeout: Duration::from_secs(5),
    })
    .await;
    assert_eq!(report.ready_pairs, 2, "{}", report.human());
    assert!(
        report.sent >= 4 * 90,
        "4 clients at 100/s for 1 s: {}",
        report.sent
    );
    assert!(report.received <= report.sent);
    assert!(report.loss() < 0.05, "{}", report.human());
    assert_eq!(report.tally.count("one_way"), report.received);
    assert_eq!(report.tally.count("allocate"), 4);
    assert_eq!(report.tally.count("bind"), 4);
    assert_eq!(report.to_json()["received"], report.received);
    let t = &report.timeline;
    assert_eq!(sum(t.get("sent")), report.sent);
    assert_eq!(sum(t.get("received")), report.received);
    assert_eq!(sum(t.get("bytes_received")), report.bytes_received);
    assert_eq!(sum(t.get("lost")), report.sent - report.received);

    // The same with credentials fetched from a real signal-server, as apps get them.
    let turn_url = format!("turn:{server}");
    let signal = signal_server::config::Config::from_args([
        "signal-server",
        "--log-format",
        "text",
        "--turn-secrets",
        "load-secret",
        "--turn-urls",
        &turn_url,
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/turn-credentials", listener.local_addr().unwrap());
    tokio::spawn(signal_server::run(signal, listener, shutdown.clone()));
    let fetched = run(Options {
        server,
        credentials: CredentialSource::Url(url),
        pairs: 1,
        rate: 50,
        size: 64,
        duration: Duration::from_millis(500),
        step_timeout: Duration::from_secs(5),
    })
    .await;
    assert_eq!(fetched.ready_pairs, 1, "{}", fetched.human());
    assert!(fetched.received > 0);

    // A wrong secret fails every allocation, counted by kind.
    let refused = run(Options {
        server,
        credentials: CredentialSource::Secret("wrong".into()),
        pairs: 1,
        rate: 10,
        size: 64,
        duration: Duration::from_millis(100),
        step_timeout: Duration::from_secs(2),
    })
    .await;
    assert_eq!(refused.ready_pairs, 0);
    assert_eq!(
        refused.tally.errors.get("allocate_auth"),
        Some(&1),
        "{:?}",
        refused.tally.errors
    );
    shutdown.cancel();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_html_report_and_time_series_agree() {
    let (server, shutdown, task) = turn_server().await;
    let dir = scratch("turn-report");
    let html_path = dir.join("r.html");
    let out = loadtest(&[
        "turn",
        "--server",
        &server.to_string(),
        "--secret",
        "load-secret",
        "--pairs",
        "2",
        "--rate",
        "50",
        "--size",
        "64",
        "--duration",
        "1500ms",
        "--json",
        "--report",
        html_path.to_str().unwrap(),
    ])
    .await;
    shutdown.cancel();
    task.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // stdout is the JSON and nothing else; no progress bar on a non-terminal stderr either.
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!stderr.contains("packets/s"), "{stderr}");
    assert_eq!(json["ready_pairs"], 2);
    let (sent, received) = (
        json["sent"].as_u64().unwrap(),
        json["received"].as_u64().unwrap(),
    );
    assert!(received > 0 && received <= sent, "{json}");

    let timeline = &json["timeline"];
    assert_eq!(timeline["bucket_s"], 1);
    let len = series(timeline, "sent").len();
    assert!(len >= 2, "1.5 s of sending spans two buckets: {timeline}");
    for name in ["sent", "received", "bytes_received", "lost"] {
        assert_eq!(series(timeline, name).len(), len, "{name}");
    }
    let total = |name| series(timeline, name).iter().sum::<u64>();
    assert_eq!(total("sent"), sent);
    assert_eq!(total("received"), received);
    assert_eq!(total("bytes_received"), received * 64, "64-byte payloads");
    assert_eq!(total("lost"), sent - received);

    let html = std::fs::read_to_string(&html_path).unwrap();
    for id in ["ready_pairs", "pairs", "sent", "received"] {
        assert!(
            html.contains(&format!("id=\"{id}\">{}</td>", json[id])),
            "{id}"
        );
    }
    for (step, figures) in json["steps"].as_object().unwrap() {
        let count = &figures["count"];
        assert!(
            html.contains(&format!("id=\"count-{step}\">{count}</td>")),
            "{step}"
        );
    }
    // Histograms for allocate, bind and one-way delay; packets/s and Mbit/s over time.
    assert_eq!(json["steps"].as_object().unwrap().len(), 3);
    assert_eq!(html.matches("<svg").count(), 3 + 2);
    assert!(
        !html.contains("load-secret"),
        "the secret stays out of the report"
    );
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unwritable_report_path_fails_before_any_load_with_a_message() {
    let dir = scratch("turn-unwritable");
    let file = dir.join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let target = file.join("r.html");
    let out = loadtest(&[
        "turn",
        "--server",
        "127.0.0.1:9",
        "--secret",
        "s",
        "--report",
        target.to_str().unwrap(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot write report"), "{stderr}");
    assert!(stderr.contains(target.to_str().unwrap()), "{stderr}");
    assert!(out.stdout.is_empty(), "no run happened");
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn loadtest(args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .env_remove("LOADTEST_REPORT")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("loadtest ends within a minute")
        .unwrap()
}

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn series(timeline: &Value, name: &str) -> Vec<u64> {
    timeline[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} in {timeline}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn sum(counts: Option<&[u64]>) -> u64 {
    counts.unwrap().iter().sum()
}
