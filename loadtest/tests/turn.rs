//! `loadtest turn` end to end against our turn-server on loopback: every figure in the report is
//! consistent with what was sent.

use std::time::Duration;

use loadtest::turn::{CredentialSource, Options, run};
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_between_allocation_pairs_and_reports_what_arrived() {
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
