//! `loadtest turn` end to end against our turn-server on loopback, over UDP and TCP, and against
//! coturn's `turnserver` (installed by `scripts/test`): every figure in the report is consistent
//! with what was sent, and the JSON, the HTML report and the time series agree.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use loadtest::turn::{CredentialSource, Options, Report, Transport, run};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;

mod support;
use support::{
    assert_report_path_refused, json_stdout, loadtest, loadtest_env, scratch, series, sum,
};

/// Our turn-server on loopback (UDP and TCP listeners), accepting `load-secret` and relaying
/// within 127.0.0.0/8.
struct TurnServer {
    udp: SocketAddr,
    tcp: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), turn_server::RunError>>,
}

impl TurnServer {
    fn stop(self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

async fn turn_server() -> TurnServer {
    let config = Config::from_args([
        "turn-server",
        "--listen-udp",
        "127.0.0.1:0",
        "--listen-tcp",
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
    let udp = listeners.udp[0].local_addr().unwrap();
    let tcp = listeners.tcp[0].local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(turn_server::run(config, listeners, shutdown.clone()));
    TurnServer {
        udp,
        tcp,
        shutdown,
        task,
    }
}

/// A small run: 2 pairs, 100 packets/s per client of 64 bytes for 1 s, no refresh.
fn options(server: SocketAddr, transport: Transport, secret: &str) -> Options {
    Options {
        server,
        transport,
        credentials: CredentialSource::Secret(secret.into()),
        pairs: 2,
        rate: 100,
        size: 64,
        duration: Duration::from_secs(1),
        step_timeout: Duration::from_secs(5),
        refresh: Duration::from_secs(240),
    }
}

/// Every figure of `report` agrees with what was sent: all pairs set up, nothing delivered that
/// was not sent, every payload whole, loss and the time series adding up, no data-path errors.
fn assert_consistent(report: &Report) {
    let o = &report.options;
    let human = report.human();
    assert_eq!(report.ready_pairs, o.pairs, "{human}");
    assert_eq!(
        report.tally.count("allocate"),
        2 * o.pairs as u64,
        "{human}"
    );
    assert_eq!(report.tally.count("bind"), 2 * o.pairs as u64, "{human}");
    assert!(
        report.received > 0 && report.received <= report.sent,
        "{human}"
    );
    assert_eq!(report.bytes_received, report.received * o.size as u64);
    assert_eq!(report.tally.count("one_way"), report.received);
    let t = &report.timeline;
    assert_eq!(sum(t.get("sent")), report.sent);
    assert_eq!(sum(t.get("received")), report.received);
    assert_eq!(sum(t.get("bytes_received")), report.bytes_received);
    assert_eq!(sum(t.get("lost")), report.sent - report.received);
    let json = report.to_json();
    assert_eq!(json["transport"], o.transport.name());
    assert_eq!(json["received"], report.received);
    // A refresh started in the run's last moments may time out on a busy machine; nothing else.
    assert!(
        report.tally.errors.keys().all(|k| k == "refresh_timeout"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_between_allocation_pairs_and_reports_what_arrived() {
    let turn = turn_server().await;
    let server = turn.udp;

    let report = run(options(server, Transport::Udp, "load-secret")).await;
    assert_consistent(&report);
    assert!(
        report.sent >= 4 * 90,
        "4 clients at 100/s for 1 s: {}",
        report.sent
    );
    assert!(report.loss() < 0.05, "{}", report.human());

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
    tokio::spawn(signal_server::run(signal, listener, turn.shutdown.clone()));
    let fetched = run(Options {
        credentials: CredentialSource::Url(url),
        pairs: 1,
        rate: 50,
        duration: Duration::from_millis(500),
        ..options(server, Transport::Udp, "")
    })
    .await;
    assert_eq!(fetched.ready_pairs, 1, "{}", fetched.human());
    assert!(fetched.received > 0);

    // A wrong secret fails every allocation, counted by kind.
    let refused = run(Options {
        pairs: 1,
        rate: 10,
        duration: Duration::from_millis(100),
        step_timeout: Duration::from_secs(2),
        ..options(server, Transport::Udp, "wrong")
    })
    .await;
    assert_refused_by_auth(&refused);
    turn.stop();
}

/// The same over TCP: one connection per client, ChannelData padded on the stream (66-byte
/// payloads need 2 bytes of padding), STUN responses to refreshes picked out of the data stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_over_tcp_with_refreshes_and_reports_what_arrived() {
    let turn = turn_server().await;
    let report = run(Options {
        size: 66,
        refresh: Duration::from_millis(300),
        ..options(turn.tcp, Transport::Tcp, "load-secret")
    })
    .await;
    assert_consistent(&report);
    assert!(report.loss() < 0.05, "{}", report.human());
    assert!(report.tally.count("refresh") > 0, "{}", report.human());
    assert!(report.human().contains("over TCP"), "{}", report.human());

    // The CLI takes the transport from its environment variable too.
    let out = loadtest_env(
        &[
            "turn",
            "--server",
            &turn.tcp.to_string(),
            "--secret",
            "load-secret",
            "--pairs",
            "1",
            "--duration",
            "300ms",
            "--json",
        ],
        &[("LOADTEST_TURN_TRANSPORT", "tcp")],
    )
    .await;
    turn.stop();
    let json = json_stdout(&out);
    assert_eq!(json["transport"], "tcp");
    assert_eq!(json["ready_pairs"], 1);
}

/// coturn's `turnserver` on loopback ports with a shared secret: UDP and TCP listeners on one
/// port, loopback peers allowed, nothing else. Killed when dropped. The port is free for UDP
/// when picked but may be taken for TCP, or taken before coturn binds it: then coturn never
/// answers there, and it is started again on another port.
async fn coturn(secret: &str) -> (SocketAddr, tokio::process::Child) {
    for _ in 0..3 {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip",
                "127.0.0.1",
                "--relay-ip",
                "127.0.0.1",
            ])
            .args(["--listening-port", &port.to_string()])
            .args(["--use-auth-secret", "--static-auth-secret", secret])
            .args(["--realm", "switchboard", "--allow-loopback-peers"])
            .args(["--no-cli", "--no-tls", "--no-dtls", "--log-file", "stdout"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("turnserver is installed (scripts/test installs coturn)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // coturn has no readiness endpoint; its TCP listener answering is the sign.
        let ready = async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            true
        };
        if tokio::time::timeout(Duration::from_secs(10), ready).await == Ok(true) {
            return (addr, child);
        }
        let _ = child.kill().await;
    }
    panic!("coturn did not listen on any of 3 ports within 10 s each");
}

/// Works against another RFC 8656 server: coturn, over UDP and over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_through_coturn_over_udp_and_tcp() {
    let (server, mut coturn) = coturn("coturn-secret").await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let report = run(Options {
            size: 66,
            refresh: Duration::from_millis(300),
            ..options(server, transport, "coturn-secret")
        })
        .await;
        assert_consistent(&report);
        assert!(report.tally.count("refresh") > 0, "{}", report.human());
    }
    let refused = run(Options {
        pairs: 1,
        duration: Duration::from_millis(100),
        ..options(server, Transport::Tcp, "wrong")
    })
    .await;
    assert_refused_by_auth(&refused);
    coturn.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_html_report_and_time_series_agree() {
    let turn = turn_server().await;
    let server = turn.udp;
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
    turn.stop();
    // stdout is the JSON and nothing else; no progress bar on a non-terminal stderr either.
    let json = json_stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("packets/s"), "{stderr}");
    assert_eq!(json["ready_pairs"], 2);
    assert_eq!(json["transport"], "udp", "the default");
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
    assert!(html.contains("<th>transport</th><td>udp</td>"));
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
    assert_report_path_refused(&out, &target);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run with a wrong secret: no pair ready, its one allocation refused as `allocate_auth`.
fn assert_refused_by_auth(refused: &Report) {
    assert_eq!(refused.ready_pairs, 0);
    assert_eq!(
        refused.tally.errors.get("allocate_auth"),
        Some(&1),
        "{:?}",
        refused.tally.errors
    );
}
