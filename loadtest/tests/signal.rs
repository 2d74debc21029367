//! `loadtest signal` end to end against a real signal-server (embedded store) on loopback:
//! the report counts exactly what was sent.

use std::time::Duration;

use loadtest::signal::{Options, Transport, run};
use signal_server::config::Config;
use tokio_util::sync::CancellationToken;

async fn server() -> (String, CancellationToken) {
    let config = Config::from_args(["signal-server", "--log-format", "text"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_server::run(config, listener, shutdown.clone()));
    (base, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_what_was_sent_on_every_transport() {
    let (a, stop_a) = server().await;
    for transport in [Transport::Sse, Transport::WebSocket, Transport::LongPoll] {
        // Two in-memory servers do not share rooms, so pairs stay on one URL here.
        let report = run(Options {
            urls: vec![a.clone()],
            rooms: 4,
            rounds: 3,
            transport,
            rate: 0.0,
            blob_bytes: 64,
            max_duration: Duration::from_secs(30),
            step_timeout: Duration::from_secs(5),
        })
        .await;
        assert_eq!(report.completed_rooms, 4, "{}", report.human());
        assert!(report.tally.errors.is_empty(), "{:?}", report.tally.errors);
        assert_eq!(report.puts(), 4 * 3 * 2);
        assert_eq!(report.tally.count("notify"), 4 * 3 * 2);
        assert_eq!(report.tally.count("create"), 4);
        assert_eq!(report.tally.count("delete"), 4);
        let json = report.to_json();
        assert_eq!(json["puts"], 24);
        assert_eq!(json["transport"], transport.name());
    }
    // Errors are counted by kind, not hidden: a server that is not there fails every room.
    let report = run(Options {
        urls: vec!["http://127.0.0.1:9".into()],
        rooms: 2,
        rounds: 1,
        transport: Transport::Sse,
        rate: 0.0,
        blob_bytes: 8,
        max_duration: Duration::from_secs(10),
        step_timeout: Duration::from_secs(2),
    })
    .await;
    assert_eq!(report.completed_rooms, 0);
    assert_eq!(report.tally.errors.get("create_connect"), Some(&2));
    stop_a.cancel();
}
