//! turn-server with its neighbours and its binary: credentials from a real signal-server, static
//! users, IPv6, exit codes and secrets kept out of output.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;
use turn_server::proto::{
    AddressFamily, AttrType, Attribute, Class, Message, MessageBuilder, Method, PROTOCOL_UDP,
    TransactionId, long_term_key,
};

const WAIT: Duration = Duration::from_secs(5);

async fn start_turn(args: &[&str]) -> (SocketAddr, CancellationToken) {
    let (addrs, stop) = start_turn_on_all(args).await;
    (addrs[0], stop)
}

/// Starts turn-server; returns each UDP listen address once (in flag order) and its stop token.
async fn start_turn_on_all(args: &[&str]) -> (Vec<SocketAddr>, CancellationToken) {
    let mut all = vec![
        "turn-server",
        "--http-listen",
        "127.0.0.1:0",
        "--log-format",
        "text",
    ];
    all.extend_from_slice(args);
    let config = Config::from_args(all).unwrap();
    let listeners = turn_server::Listeners::bind(&config).await.unwrap();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for socket in &listeners.udp {
        let addr = socket.local_addr().unwrap();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(turn_server::run(config, listeners, shutdown.clone()));
    (addrs, shutdown)
}

/// Allocates with `username`/`password`, answering the nonce challenge; returns the response.
async fn allocate(
    server: SocketAddr,
    username: &str,
    password: &str,
    extra: &[Attribute<'_>],
) -> Vec<u8> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).await.unwrap();
    let (mut realm, mut nonce) = (String::new(), String::new());
    for round in 0..2u8 {
        let mut out = Vec::new();
        let mut b = MessageBuilder::new(
            &mut out,
            Class::Request,
            Method::ALLOCATE,
            TransactionId([round; 12]),
        );
        b.add(&Attribute::RequestedTransport(PROTOCOL_UDP));
        for a in extra {
            b.add(a);
        }
        if round == 1 {
            let key = long_term_key(username, &realm, password);
            b.add(&Attribute::Username(username))
                .add(&Attribute::Realm(&realm))
                .add(&Attribute::Nonce(&nonce))
                .message_integrity(&key);
        }
        b.finish().unwrap();
        socket.send_to(&out, server).await.unwrap();
        let mut buf = vec![0u8; 1500];
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf.truncate(n);
        if round == 1 {
            return buf;
        }
        let msg = Message::decode(&buf).unwrap();
        if let Some(Ok(Attribute::Realm(r))) = msg.attribute(AttrType::REALM) {
            realm = r.to_owned();
        }
        if let Some(Ok(Attribute::Nonce(n))) = msg.attribute(AttrType::NONCE) {
            nonce = n.to_owned();
        }
    }
    unreachable!()
}

fn class(bytes: &[u8]) -> Class {
    Message::decode(bytes).unwrap().class()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_minted_by_signal_server_allocate_here() {
    let (turn, stop_turn) = start_turn(&[
        "--listen-udp",
        "127.0.0.1:0",
        "--secrets",
        "shared-new,shared-old",
    ])
    .await;
    let turn_url = format!("turn:{turn}");
    let signal_config = signal_server::config::Config::from_args([
        "signal-server",
        "--log-format",
        "text",
        "--turn-secrets",
        "shared-new",
        "--turn-urls",
        &turn_url,
        "--twilio-account-sid",
        "AC0123",
        "--twilio-auth-token",
        "tok3n",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop_signal = CancellationToken::new();
    tokio::spawn(signal_server::run(
        signal_config,
        listener,
        stop_signal.clone(),
    ));

    let body: serde_json::Value = reqwest::get(format!("{base}/turn-credentials?user=alice"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let server = &body["iceServers"][0];
    assert_eq!(server["urls"][0], turn_url.as_str());
    let resp = allocate(
        turn,
        server["username"].as_str().unwrap(),
        server["credential"].as_str().unwrap(),
        &[],
    )
    .await;
    assert_eq!(class(&resp), Class::Success);
    let resp = allocate(turn, server["username"].as_str().unwrap(), "forged", &[]).await;
    assert_eq!(class(&resp), Class::Error);

    // The Twilio-shaped token endpoint hands out credentials this server accepts too.
    let token = reqwest::Client::new()
        .post(format!("{base}/2010-04-01/Accounts/AC0123/Tokens.json"))
        .basic_auth("AC0123", Some("tok3n"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 201);
    let token: serde_json::Value = token.json().await.unwrap();
    let server = &token["ice_servers"][0];
    assert_eq!(server["urls"], turn_url.as_str());
    assert_eq!(server["username"], token["username"]);
    let resp = allocate(
        turn,
        token["username"].as_str().unwrap(),
        token["password"].as_str().unwrap(),
        &[],
    )
    .await;
    assert_eq!(class(&resp), Class::Success);
    stop_signal.cancel();
    stop_turn.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_users_ipv6_relays_and_two_listen_addresses() {
    let dir = common::testing::TempDir::new("turn-users");
    let users = dir.0.join("users");
    std::fs::write(&users, "# comment\nbob:hunter2\n").unwrap();
    let (addrs, stop) = start_turn_on_all(&[
        "--listen-udp",
        "[::1]:0",
        "--listen-udp",
        "127.0.0.1:0",
        "--users-file",
        users.to_str().unwrap(),
    ])
    .await;
    let (turn, turn_v4) = (addrs[0], addrs[1]);
    assert!(turn.is_ipv6() && turn_v4.is_ipv4(), "{addrs:?}");
    // The IPv4 listener serves too, and relays from IPv4 by default.
    let resp = allocate(turn_v4, "bob", "hunter2", &[]).await;
    let msg = Message::decode(&resp).unwrap();
    assert!(matches!(
        msg.attribute(AttrType::XOR_RELAYED_ADDRESS),
        Some(Ok(Attribute::XorRelayedAddress(relay))) if relay.is_ipv4()
    ));
    let family = [Attribute::RequestedAddressFamily(AddressFamily::IPV6)];
    let resp = allocate(turn, "bob", "hunter2", &family).await;
    let msg = Message::decode(&resp).unwrap();
    assert_eq!(msg.class(), Class::Success);
    let Some(Ok(Attribute::XorRelayedAddress(relay))) =
        msg.attribute(AttrType::XOR_RELAYED_ADDRESS)
    else {
        panic!("no relay")
    };
    assert!(relay.is_ipv6(), "{relay}");
    assert_eq!(
        class(&allocate(turn, "bob", "wrong", &[]).await),
        Class::Error
    );
    stop.cancel();
}

#[test]
fn binary_exit_codes_and_secret_hygiene() {
    let bin = env!("CARGO_BIN_EXE_turn-server");
    let out = Command::new(bin)
        .args(["--listen-udp", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "no credentials is a configuration error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials"));
    let out = Command::new(bin)
        .args([
            "--check-config",
            "--secrets",
            "very-secret",
            "--external-ip",
            "203.0.113.9",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("configuration ok") && !text.contains("very-secret"),
        "{text}"
    );
    let help = Command::new(bin)
        .arg("--help")
        .env("TURN_SECRETS", "very-secret")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("very-secret"));
    let out = Command::new(bin)
        .args(["--secrets", "x", "--listen-tls", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "TLS without a certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_zero() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_turn-server"))
        .args([
            "--listen-udp",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--secrets",
            "s",
        ])
        .args(["--drain-timeout", "30s", "--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The first stdout line names the UDP address: "turn-server: stun:ADDR turn:...".
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("stun:"))
        .unwrap()
        .parse()
        .unwrap();
    let resp = allocate(addr, &format!("{}:x", u64::MAX / 2), "wrong", &[]).await;
    assert_eq!(
        class(&resp),
        Class::Error,
        "the server answers before the signal"
    );
    common::testing::sigterm(child.id().unwrap()).unwrap();
    // No allocations are open, so the drain ends at once and the process exits cleanly.
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
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every log line is JSON");
    }
}
