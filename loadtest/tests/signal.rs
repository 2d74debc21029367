//! `loadtest signal` end to end against real signal-servers on loopback (the embedded store,
//! and two replicas sharing a real redis-server): the report counts exactly what was sent, and
//! the JSON, the HTML report and the time series all agree.

use std::time::Duration;

use common::testing::RedisServer;
use loadtest::signal::{Options, Transport, run};
use signal_server::config::Config;
use tokio_util::sync::CancellationToken;

mod support;
use support::{assert_report_path_refused, json_stdout, loadtest, scratch, series, sum};

async fn server() -> (String, CancellationToken) {
    replica(&[]).await
}

/// A signal-server with extra flags (e.g. `--redis-url`), on a free loopback port.
async fn replica(flags: &[&str]) -> (String, CancellationToken) {
    // Every pair writes from one IP (loopback): a burst run exceeds the default write bucket.
    let mut args = vec![
        "signal-server",
        "--log-format",
        "text",
        "--writes-per-second",
        "100000",
    ];
    args.extend_from_slice(flags);
    let config = Config::from_args(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_server::run(config, listener, shutdown.clone()));
    (base, shutdown)
}

/// `rooms` pairs doing `rounds` rounds as fast as they can, 64-byte blobs, generous limits.
fn options(urls: Vec<String>, rooms: usize, rounds: usize, transport: Transport) -> Options {
    Options {
        urls,
        rooms,
        rounds,
        transport,
        socket_writes: false,
        puts_only: false,
        burst: 1,
        rate: 0.0,
        blob_bytes: 64,
        max_duration: Duration::from_secs(30),
        step_timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_what_was_sent_on_every_transport() {
    let (a, stop_a) = server().await;
    for transport in [Transport::Sse, Transport::WebSocket, Transport::LongPoll] {
        // Two in-memory servers do not share rooms, so pairs stay on one URL here.
        let report = run(options(vec![a.clone()], 4, 3, transport)).await;
        assert_eq!(report.completed_rooms, 4, "{}", report.human());
        assert!(report.tally.errors.is_empty(), "{:?}", report.tally.errors);
        assert_eq!(report.puts(), 4 * 3 * 2);
        assert_eq!(report.tally.count("notify"), 4 * 3 * 2);
        assert_eq!(report.tally.count("create"), 4);
        assert_eq!(report.tally.count("delete"), 4);
        let json = report.to_json();
        assert_eq!(json["puts"], 24);
        assert_eq!(json["transport"], transport.name());
        let t = &report.timeline;
        assert_eq!(sum(t.get("completed_rooms")), 4);
        assert_eq!(sum(t.get("rounds")), 4 * 3);
        assert_eq!(sum(t.get("errors")), 0);
    }
    // Puts through each writer's own watch socket: the same exchange; a puts-only run, which
    // measures no notifications; and bursts of 5 puts sent before their answers are awaited
    // (one notification a burst, at its last put).
    for (puts_only, burst) in [(false, 1), (true, 1), (false, 5), (true, 5)] {
        let report = run(Options {
            socket_writes: true,
            puts_only,
            burst,
            ..options(vec![a.clone()], 4, 3, Transport::WebSocket)
        })
        .await;
        assert_eq!(report.completed_rooms, 4, "{}", report.human());
        assert!(report.tally.errors.is_empty(), "{:?}", report.tally.errors);
        assert_eq!(report.puts(), 4 * 3 * 2 * burst as u64);
        let notified = if puts_only { 0 } else { 4 * 3 * 2 };
        assert_eq!(report.tally.count("notify"), notified);
        let json = report.to_json();
        assert_eq!(json["writes"], "websocket");
        assert_eq!(json["burst"], burst);
        // The write phase lies inside the run, so its rate is at least the whole run's.
        let phase = report.put_span.duration();
        assert!(!phase.is_zero() && phase <= report.elapsed, "{phase:?}");
        assert!(report.write_phase_puts_per_second() >= report.puts_per_second());
        assert_eq!(json["write_phase_s"], phase.as_secs_f64());
    }
    // Errors are counted by kind, not hidden: a server that is not there fails every room.
    let report = run(Options {
        blob_bytes: 8,
        max_duration: Duration::from_secs(10),
        step_timeout: Duration::from_secs(2),
        ..options(vec!["http://127.0.0.1:9".into()], 2, 1, Transport::Sse)
    })
    .await;
    assert_eq!(report.completed_rooms, 0);
    assert_eq!(report.tally.errors.get("create_connect"), Some(&2));
    assert_eq!(sum(report.timeline.get("errors")), 2);
    assert_eq!(sum(report.timeline.get("completed_rooms")), 0);
    stop_a.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_rate_paces_the_puts() {
    let (a, stop) = server().await;
    // 5 rooms at 50 puts/s: each room puts an offer and an answer every 0.2 s, so 4 rounds
    // cannot take less than 3 periods (0.6 s), however fast the server is.
    let report = run(Options {
        rate: 50.0,
        blob_bytes: 16,
        ..options(vec![a], 5, 4, Transport::Sse)
    })
    .await;
    stop.cancel();
    assert_eq!(report.completed_rooms, 5, "{}", report.human());
    assert_eq!(report.puts(), 40);
    assert!(
        report.elapsed >= Duration::from_millis(600),
        "{:?}",
        report.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_split_across_two_replicas_on_one_redis_complete_every_round() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (a, stop_a) = replica(&["--redis-url", &url]).await;
    let (b, stop_b) = replica(&["--redis-url", &url]).await;
    // A replica answers watches once its Redis subscription is up (503 before): /readyz says when.
    for base in [&a, &b] {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(std::time::Instant::now() < until, "{base} never ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for transport in [Transport::Sse, Transport::WebSocket, Transport::LongPoll] {
        // Pair i writes on urls[i] and watches on urls[i + 1]: every notification crosses
        // from one replica to the other through Redis.
        let report = run(options(vec![a.clone(), b.clone()], 6, 3, transport)).await;
        assert_eq!(report.completed_rooms, 6, "{}", report.human());
        assert!(report.tally.errors.is_empty(), "{:?}", report.tally.errors);
        assert_eq!(report.puts(), 6 * 3 * 2);
        assert_eq!(report.tally.count("notify"), 6 * 3 * 2);
        assert_eq!(sum(report.timeline.get("rounds")), 6 * 3);
    }
    // Writes through the writer's socket on one replica reach the watcher on the other.
    let report = run(Options {
        socket_writes: true,
        ..options(vec![a.clone(), b.clone()], 6, 3, Transport::WebSocket)
    })
    .await;
    assert_eq!(report.completed_rooms, 6, "{}", report.human());
    assert!(report.tally.errors.is_empty(), "{:?}", report.tally.errors);
    assert_eq!(report.tally.count("notify"), 6 * 3 * 2);
    // Both replicas did work: each created rooms (pairs alternate which one creates).
    for base in [&a, &b] {
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let created: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("sb_rooms_created_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(created, 12.0, "{base}: 4 runs x 3 of the 6 pairs");
    }
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_html_report_and_time_series_agree() {
    let (url, stop) = server().await;
    let dir = scratch("signal-report");
    let html_path = dir.join("r.html");
    let out = loadtest(&[
        "signal",
        "--urls",
        &url,
        "--rooms",
        "3",
        "--rounds",
        "2",
        "--transport",
        "ws",
        "--max-duration",
        "30s",
        "--step-timeout",
        "5s",
        "--json",
        "--report",
        html_path.to_str().unwrap(),
    ])
    .await;
    stop.cancel();
    // stdout is the JSON and nothing else: no progress bar there (nor on a non-terminal stderr).
    let json = json_stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("rooms"), "{stderr}");
    assert_eq!(json["completed_rooms"], 3);
    assert_eq!(json["puts"], 3 * 2 * 2);

    let timeline = &json["timeline"];
    assert_eq!(timeline["bucket_s"], 1);
    let len = series(timeline, "rounds").len();
    assert!(len >= 1);
    for name in ["completed_rooms", "rounds", "errors"] {
        assert_eq!(series(timeline, name).len(), len, "{name}");
    }
    assert_eq!(
        series(timeline, "completed_rooms").iter().sum::<u64>(),
        json["completed_rooms"].as_u64().unwrap()
    );
    assert_eq!(
        series(timeline, "rounds").iter().sum::<u64>() * 2,
        json["puts"].as_u64().unwrap()
    );
    assert_eq!(series(timeline, "errors").iter().sum::<u64>(), 0);

    let html = std::fs::read_to_string(&html_path).unwrap();
    for id in ["completed_rooms", "rooms", "puts"] {
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
    // One histogram per step and one chart over time.
    let steps = json["steps"].as_object().unwrap().len();
    assert_eq!(steps, 4);
    assert_eq!(html.matches("<svg").count(), steps + 1);
    assert!(html.contains(&url), "parameters name the URL");
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unwritable_report_path_fails_before_any_load_with_a_message() {
    let dir = scratch("signal-unwritable");
    let file = dir.join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    for target in [file.join("r.html"), dir.clone()] {
        let out = loadtest(&[
            "signal",
            "--urls",
            "http://127.0.0.1:9",
            "--rooms",
            "1",
            "--rounds",
            "1",
            "--report",
            target.to_str().unwrap(),
        ])
        .await;
        assert_report_path_refused(&out, &target);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_write_flags_are_refused_with_a_message() {
    let burst = "--burst must be 1 to 32, and above 1 only with --socket-writes";
    for (flags, says) in [
        (
            &["--socket-writes"][..],
            "--socket-writes needs --transport ws",
        ),
        (&["--burst", "0"], burst),
        (
            &["--burst", "33", "--transport", "ws", "--socket-writes"],
            burst,
        ),
        (&["--burst", "4", "--transport", "ws"], burst),
    ] {
        let mut args = vec!["signal", "--no-progress", "--urls", "http://127.0.0.1:9"];
        args.extend_from_slice(flags);
        let out = loadtest(&args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
        assert!(out.stdout.is_empty(), "{flags:?}: no report");
    }
}
