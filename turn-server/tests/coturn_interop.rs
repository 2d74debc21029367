//! Interop with real third-party clients: coturn's `turnutils_stunclient` (Binding), and
//! `turnutils_uclient` relaying through our server to coturn's `turnutils_peer` echo peer, over UDP (channels and Send indications) and
//! TCP, with TURN REST credentials from a shared secret. `scripts/test` installs coturn.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// uclient takes one port for UDP and TCP. The port can be taken between probe and bind, so
/// probe-and-bind is retried with a fresh port.
async fn bind_udp_and_tcp_on_one_port() -> (u16, Config, turn_server::Listeners) {
    let mut last_error = String::new();
    for _ in 0..20 {
        let port = common::testing::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = Config::from_args([
            "turn-server",
            "--listen-udp",
            &addr,
            "--listen-tcp",
            &addr,
            "--http-listen",
            "127.0.0.1:0",
            "--secrets",
            "interop-secret",
            "--allow-peer",
            "127.0.0.0/8",
            "--log-format",
            "text",
        ])
        .unwrap();
        match turn_server::Listeners::bind(&config).await {
            Ok(listeners) => return (port, config, listeners),
            Err(error) => last_error = error.to_string(),
        }
    }
    panic!("no port was free for both UDP and TCP in 20 tries: {last_error}");
}

/// Runs uclient and returns (messages sent, messages received, lost packets line seen at 0%).
async fn uclient(port: u16, peer_port: u16, secret: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args([
        "-c",
        "-p",
        &port.to_string(),
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port.to_string(),
    ])
    .args([
        "-W", secret, "-u", "alice", "-n", "40", "-m", "3", "-l", "180",
    ])
    .args(extra)
    .arg("127.0.0.1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("uclient finished in time")
        .expect("turnutils_uclient is installed (scripts/test installs coturn)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_uclient_relays_through_us() {
    let (port, config, listeners) = bind_udp_and_tcp_on_one_port().await;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(turn_server::run(config, listeners, shutdown.clone()));

    // STUN first: coturn's stunclient learns its reflexive address from us.
    let stun = Command::new("turnutils_stunclient")
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .kill_on_drop(true)
        .output();
    let stun = tokio::time::timeout(Duration::from_secs(30), stun)
        .await
        .unwrap()
        .unwrap();
    let stun =
        String::from_utf8_lossy(&stun.stdout).to_string() + &String::from_utf8_lossy(&stun.stderr);
    assert!(stun.contains("UDP reflexive addr: 127.0.0.1:"), "{stun}");

    let peer_port = free_udp_port();
    let mut peer = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_peer is installed (scripts/test installs coturn)");

    for (name, extra) in [
        ("udp channels", &[][..]),
        ("udp send indications", &["-s"][..]),
        ("tcp", &["-t"][..]),
    ] {
        let report = uclient(port, peer_port, "interop-secret", extra).await;
        assert!(
            report.contains("tot_send_msgs=120, tot_recv_msgs=120"),
            "{name}:\n{report}"
        );
        assert!(
            report.contains("Total lost packets 0 (0.000000%)"),
            "{name}:\n{report}"
        );
    }
    let refused = uclient(port, peer_port, "wrong-secret", &[]).await;
    assert!(refused.contains("Cannot complete Allocation"), "{refused}");

    peer.kill().await.unwrap();
    shutdown.cancel();
    // Allocations still open drain until their lifetime; the test does not wait for that.
    server.abort();
}
