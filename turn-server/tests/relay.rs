//! turn-server end to end on loopback: real UDP/TCP sockets, a client speaking our codec, a UDP
//! peer, REST credentials minted with `common::turn_auth` as signal-server mints them.

use std::net::SocketAddr;
use std::time::Duration;

use common::testing::TempDir;
use common::turn_auth::{SharedSecret, mint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use turn_server::config::Config;
use turn_server::proto::{
    AttrType, Attribute, ChannelNumber, Class, Message, MessageBuilder, Method, PROTOCOL_UDP,
    TransactionId, long_term_key, peek_frame_len,
};

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    cert: Vec<u8>,
    _dir: TempDir,
    http: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), turn_server::RunError>>,
}

/// A self-signed certificate for 127.0.0.1, made with the openssl command-line tool.
fn self_signed() -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tls = TempDir::new(&format!("turn-tls-{nanos}"));
    let dir = &tls.0;
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // An end-entity certificate: webpki refuses a CA certificate as a server identity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    tls
}

async fn tls_connect(server: &Running) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&server.cert) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(server.tls).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

async fn start() -> Running {
    start_with(&[]).await
}

async fn start_with(extra: &[&str]) -> Running {
    let dir = self_signed();
    let (cert_path, key_path) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let args = [
        "turn-server",
        "--listen-udp",
        "127.0.0.1:0",
        "--listen-tcp",
        "127.0.0.1:0",
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--http-listen",
        "127.0.0.1:0",
        "--secrets",
        "newest,older",
        "--allow-peer",
        "127.0.0.0/8",
        "--relay-ports",
        "20000-60000",
        "--drain-timeout",
        "5s",
        "--log-format",
        "text",
    ]
    .into_iter()
    .chain(extra.iter().copied());
    let config = Config::from_args(args).unwrap();
    let listeners = turn_server::Listeners::bind(&config).await.unwrap();
    let udp = listeners.udp[0].local_addr().unwrap();
    let tcp = listeners.tcp[0].local_addr().unwrap();
    let tls = listeners.tls[0].local_addr().unwrap();
    let cert = std::fs::read(&cert_path).unwrap();
    let http = format!("http://{}", listeners.http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(turn_server::run(config, listeners, shutdown.clone()));
    Running {
        udp,
        tcp,
        tls,
        cert,
        _dir: dir,
        http,
        shutdown,
        task,
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Something that carries STUN/ChannelData to the server: a UDP socket or a TCP/TLS stream.
enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(Box<dyn Stream>, Vec<u8>),
}

impl Link {
    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Link::Udp(s, to) => {
                s.send_to(bytes, *to).await.unwrap();
            }
            Link::Tcp(s, _) => {
                let mut framed = bytes.to_vec();
                framed.resize(framed.len().next_multiple_of(4), 0);
                s.write_all(&framed).await.unwrap();
            }
        }
    }

    async fn recv(&mut self) -> Vec<u8> {
        tokio::time::timeout(WAIT, self.recv_inner())
            .await
            .expect("a packet in time")
    }

    async fn recv_inner(&mut self) -> Vec<u8> {
        match self {
            Link::Udp(s, _) => {
                let mut buf = vec![0; 65536];
                let n = s.recv(&mut buf).await.unwrap();
                buf.truncate(n);
                buf
            }
            Link::Tcp(s, pending) => loop {
                if let Ok(Some(len)) = peek_frame_len(pending)
                    && pending.len() >= len
                {
                    return pending.drain(..len).collect();
                }
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "server closed the stream");
                pending.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

struct Client {
    link: Link,
    user: String,
    key: [u8; 16],
    nonce: String,
    txn: u8,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Client {
    /// A client of user "alice" with REST credentials valid for 600 s from now.
    async fn new(link: Link) -> Self {
        let mut client = Self {
            link,
            user: String::new(),
            key: [0; 16],
            nonce: String::new(),
            txn: 0,
        };
        client.use_credentials(Duration::from_secs(600), unix_now());
        client
    }

    /// Switches to REST credentials minted at `issued` (Unix seconds) that last `ttl`.
    fn use_credentials(&mut self, ttl: Duration, issued: u64) {
        let secret = SharedSecret::new("newest").unwrap();
        let cred = mint(&secret, Some("alice"), ttl, issued).unwrap();
        self.key = long_term_key(&cred.username, "switchboard", &cred.credential);
        self.user = cred.username;
    }

    fn txn(&mut self) -> TransactionId {
        self.txn += 1;
        TransactionId([self.txn; 12])
    }

    /// Sends an authenticated request (fetching a nonce on 401/438 and trying once more) and
    /// returns the last response.
    async fn request(&mut self, method: Method, attrs: &[Attribute<'_>]) -> Vec<u8> {
        let resp = self.request_once(method, attrs).await;
        if self.take_nonce(&resp) {
            return self.request_once(method, attrs).await;
        }
        resp
    }

    /// Sends one request with the credentials and nonce held now.
    async fn request_once(&mut self, method: Method, attrs: &[Attribute<'_>]) -> Vec<u8> {
        let txn = self.txn();
        let mut out = Vec::new();
        let mut b = MessageBuilder::new(&mut out, Class::Request, method, txn);
        for a in attrs {
            b.add(a);
        }
        if !self.nonce.is_empty() {
            b.add(&Attribute::Username(&self.user))
                .add(&Attribute::Realm("switchboard"))
                .add(&Attribute::Nonce(&self.nonce))
                .message_integrity(&self.key);
        }
        b.fingerprint();
        b.finish().unwrap();
        self.link.send(&out).await;
        let resp = self.link.recv().await;
        assert_eq!(Message::decode(&resp).unwrap().transaction_id(), txn);
        resp
    }

    /// Keeps the nonce of a 401 or 438 challenge; whether there was one.
    fn take_nonce(&mut self, resp: &[u8]) -> bool {
        let msg = Message::decode(resp).unwrap();
        if matches!(error_code(resp), Some(401 | 438))
            && let Some(Ok(Attribute::Nonce(n))) = msg.attribute(AttrType::NONCE)
        {
            self.nonce = n.to_owned();
            return true;
        }
        false
    }

    async fn allocate(&mut self) -> SocketAddr {
        let resp = self
            .request(
                Method::ALLOCATE,
                &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            )
            .await;
        let msg = Message::decode(&resp).unwrap();
        assert_eq!(
            msg.class(),
            Class::Success,
            "{:?}",
            msg.attribute(AttrType::ERROR_CODE)
        );
        msg.verify_integrity(&self.key).unwrap();
        match msg.attribute(AttrType::XOR_RELAYED_ADDRESS) {
            Some(Ok(Attribute::XorRelayedAddress(a))) => a,
            other => panic!("{other:?}"),
        }
    }
}

fn class_of(bytes: &[u8]) -> Class {
    Message::decode(bytes).unwrap().class()
}

fn error_code(bytes: &[u8]) -> Option<u16> {
    match Message::decode(bytes)
        .unwrap()
        .attribute(AttrType::ERROR_CODE)
    {
        Some(Ok(Attribute::ErrorCode(e))) => Some(e.code),
        _ => None,
    }
}

async fn relay_round_trips(mut client: Client) {
    let relay = client.allocate().await;
    assert!(
        (20000..=60000).contains(&relay.port()),
        "--relay-ports: {relay}"
    );
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let resp = client
        .request(
            Method::CREATE_PERMISSION,
            &[Attribute::XorPeerAddress(peer_addr)],
        )
        .await;
    assert_eq!(class_of(&resp), Class::Success);

    // Send indication -> peer sees it from the relay address.
    let mut send = Vec::new();
    let mut b = MessageBuilder::new(
        &mut send,
        Class::Indication,
        Method::SEND,
        TransactionId([99; 12]),
    );
    b.add(&Attribute::XorPeerAddress(peer_addr))
        .add(&Attribute::Data(b"via send"));
    b.finish().unwrap();
    client.link.send(&send).await;
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"via send"[..], relay));

    // Peer -> client as a Data indication.
    peer.send_to(b"pong", relay).await.unwrap();
    let data = client.link.recv().await;
    let msg = Message::decode(&data).unwrap();
    assert_eq!(
        (msg.class(), msg.method()),
        (Class::Indication, Method::DATA)
    );
    assert!(matches!(
        msg.attribute(AttrType::DATA),
        Some(Ok(Attribute::Data(b"pong")))
    ));

    // A channel: ChannelData both ways.
    let number = ChannelNumber::new(0x4000).unwrap();
    let resp = client
        .request(
            Method::CHANNEL_BIND,
            &[
                Attribute::ChannelNumber(number),
                Attribute::XorPeerAddress(peer_addr),
            ],
        )
        .await;
    assert_eq!(class_of(&resp), Class::Success);
    client
        .link
        .send(&[0x40, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .await;
    let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"hello"[..], relay));
    peer.send_to(b"back!", relay).await.unwrap();
    let frame = client.link.recv().await;
    assert_eq!(&frame[..4], &[0x40, 0x00, 0x00, 0x05]);
    assert_eq!(&frame[4..9], b"back!");

    // Refresh with lifetime 0 releases the relay.
    let resp = client
        .request(Method::REFRESH, &[Attribute::Lifetime(0)])
        .await;
    assert_eq!(class_of(&resp), Class::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_over_udp_and_tcp_and_counts_it() {
    let server = start().await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    relay_round_trips(Client::new(Link::Udp(udp, server.udp)).await).await;
    let tcp = TcpStream::connect(server.tcp).await.unwrap();
    relay_round_trips(Client::new(Link::Tcp(Box::new(tcp), Vec::new())).await).await;
    let tls = tls_connect(&server).await;
    relay_round_trips(Client::new(Link::Tcp(Box::new(tls), Vec::new())).await).await;

    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{}/metrics", server.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "turn_allocations_created_total 3",
        "turn_relayed_packets_total{direction=\"to_peer\"} 6",
        "turn_relayed_packets_total{direction=\"to_client\"} 6",
        "turn_allocations_active 0",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert_eq!(
        http.get(format!("{}/readyz", server.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{}/healthz", server.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown.cancel();
    tokio::time::timeout(WAIT, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_allocations_but_keeps_relaying() {
    let server = start().await;
    let mut old = Client::new(Link::Udp(
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        server.udp,
    ))
    .await;
    let relay = old.allocate().await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    old.request(
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(peer_addr)],
    )
    .await;

    server.shutdown.cancel();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while http
        .get(format!("{}/readyz", server.http))
        .send()
        .await
        .unwrap()
        .status()
        != 503
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut new = Client::new(Link::Udp(
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        server.udp,
    ))
    .await;
    let resp = new
        .request(
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
        )
        .await;
    assert!(
        matches!(Message::decode(&resp).unwrap().attribute(AttrType::ERROR_CODE), Some(Ok(Attribute::ErrorCode(e))) if e.code == 508)
    );

    peer.send_to(b"still here", relay).await.unwrap();
    let data = old.link.recv().await;
    assert!(matches!(
        Message::decode(&data).unwrap().attribute(AttrType::DATA),
        Some(Ok(Attribute::Data(b"still here")))
    ));
    // The last allocation ending lets the server exit before the drain timeout.
    old.request(Method::REFRESH, &[Attribute::Lifetime(0)])
        .await;
    tokio::time::timeout(WAIT, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_excess_streams_are_closed() {
    let server = start_with(&["--max-streams", "1", "--stream-idle-timeout", "300ms"]).await;
    let mut first = TcpStream::connect(server.tcp).await.unwrap();
    // Over the limit: closed on accept.
    let mut second = TcpStream::connect(server.tcp).await.unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, second.read(&mut byte))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the second stream is closed");
    // Quiet and without an allocation: closed after the idle timeout.
    let n = tokio::time::timeout(WAIT, first.read(&mut byte))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle stream is closed");
    let metrics = reqwest::get(format!("{}/metrics", server.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("turn_streams_refused_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("turn_streams_idle_closed_total 1"),
        "{metrics}"
    );
    // With the place free again, a client with an allocation may stay quiet.
    let tcp = TcpStream::connect(server.tcp).await.unwrap();
    let mut client = Client::new(Link::Tcp(Box::new(tcp), Vec::new())).await;
    client.allocate().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let resp = client
        .request(Method::REFRESH, &[Attribute::Lifetime(0)])
        .await;
    assert_eq!(
        class_of(&resp),
        Class::Success,
        "still connected after idling with an allocation"
    );
    server.shutdown.cancel();
}

/// Binds `number` on `client`'s allocation to `peer`.
async fn bind_channel(client: &mut Client, number: u16, peer: SocketAddr) {
    let resp = client
        .request(
            Method::CHANNEL_BIND,
            &[
                Attribute::ChannelNumber(ChannelNumber::new(number).unwrap()),
                Attribute::XorPeerAddress(peer),
            ],
        )
        .await;
    assert_eq!(class_of(&resp), Class::Success);
}

/// Datagram `index` of a burst: `size` bytes that name their place, so a merged, split or
/// reordered datagram shows.
fn patterned(index: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| (index * 7 + j) as u8).collect()
}

fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = number.to_be_bytes().to_vec();
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Size patterns that start, extend and end GSO runs: equal sizes, a shorter one inside a run,
/// sizes around the largest batched segment, and every size different.
fn burst_sizes() -> Vec<Vec<usize>> {
    vec![
        vec![160; 64],
        (0..64).map(|i| if i % 5 == 4 { 37 } else { 120 }).collect(),
        (0..48)
            .map(|i| [1, 700, 1_395, 1_396, 1_397, 1_450][i % 6])
            .collect(),
        (0..64).map(|i| 8 + i * 3).collect(),
    ]
}

/// A burst on channel 0x4001 from one client reaches the other whole and in order.
async fn client_to_client(from: &mut Client, to: &mut Client, sizes: &[usize]) {
    for (i, &size) in sizes.iter().enumerate() {
        from.link
            .send(&channel_data(0x4001, &patterned(i, size)))
            .await;
    }
    for (i, &size) in sizes.iter().enumerate() {
        let frame = to.link.recv().await;
        assert_eq!(frame, channel_data(0x4001, &patterned(i, size)), "#{i}");
    }
}

/// Bursts sent without waiting (so the server reads them in batches and sends runs of them in
/// one call) arrive whole and in order, in every direction: client to client through two relays
/// (relay to relay, where the receiving relay gets GRO trains), peer to client and client to peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_arrive_whole_and_in_order() {
    let server = start().await;
    let udp_client = || async { UdpSocket::bind("127.0.0.1:0").await.unwrap() };
    let mut a = Client::new(Link::Udp(udp_client().await, server.udp)).await;
    let mut b = Client::new(Link::Udp(udp_client().await, server.udp)).await;
    let (relay_a, relay_b) = (a.allocate().await, b.allocate().await);
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    bind_channel(&mut a, 0x4001, relay_b).await;
    bind_channel(&mut b, 0x4001, relay_a).await;
    bind_channel(&mut a, 0x4002, peer.local_addr().unwrap()).await;

    for sizes in burst_sizes() {
        client_to_client(&mut a, &mut b, &sizes).await;
        client_to_client(&mut b, &mut a, &sizes).await;

        for (i, &size) in sizes.iter().enumerate() {
            peer.send_to(&patterned(i, size), relay_a).await.unwrap();
        }
        for (i, &size) in sizes.iter().enumerate() {
            let frame = a.link.recv().await;
            assert_eq!(frame, channel_data(0x4002, &patterned(i, size)), "#{i}");
        }

        for (i, &size) in sizes.iter().enumerate() {
            a.link
                .send(&channel_data(0x4002, &patterned(i, size)))
                .await;
        }
        let mut buf = vec![0u8; 65_536];
        for (i, &size) in sizes.iter().enumerate() {
            let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
                .await
                .expect("a datagram in time")
                .unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&patterned(i, size)[..], relay_a),
                "#{i}"
            );
        }
    }
    server.shutdown.cancel();
}

/// A new connection to the server over `transport`.
async fn link(server: &Running, transport: &str) -> Link {
    match transport {
        "udp" => Link::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap(), server.udp),
        "tcp" => Link::Tcp(
            Box::new(TcpStream::connect(server.tcp).await.unwrap()),
            Vec::new(),
        ),
        _ => Link::Tcp(Box::new(tls_connect(server).await), Vec::new()),
    }
}

/// The refusals of RFC 8656 over every transport: 403 for a private peer, 438 (with a fresh
/// nonce) for a stale nonce, 486 over the per-user quota, 401 for a wrong password and for
/// expired REST credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_udp_tcp_and_tls() {
    let server = start_with(&["--max-allocations-per-user", "1"]).await;
    let udp_transport = [Attribute::RequestedTransport(PROTOCOL_UDP)];
    for transport in ["udp", "tcp", "tls"] {
        let mut owner = Client::new(link(&server, transport).await).await;
        owner.allocate().await;

        let private_peer = Attribute::XorPeerAddress("10.0.0.1:9".parse().unwrap());
        let resp = owner
            .request(Method::CREATE_PERMISSION, &[private_peer])
            .await;
        assert_eq!(error_code(&resp), Some(403), "{transport}");

        // A nonce we never minted (or one past its expiry) is stale: 438 and a fresh nonce.
        owner.nonce = "1.00000000000000000000".to_owned();
        let resp = owner
            .request_once(Method::REFRESH, &[Attribute::Lifetime(600)])
            .await;
        assert_eq!(error_code(&resp), Some(438), "{transport}");
        assert!(owner.take_nonce(&resp), "{transport}: 438 carries a nonce");
        let resp = owner
            .request_once(Method::REFRESH, &[Attribute::Lifetime(600)])
            .await;
        assert_eq!(class_of(&resp), Class::Success, "{transport}");

        let mut second = Client::new(link(&server, transport).await).await;
        let resp = second.request(Method::ALLOCATE, &udp_transport).await;
        assert_eq!(error_code(&resp), Some(486), "{transport}");

        let mut wrong = Client::new(link(&server, transport).await).await;
        wrong.key = [0; 16];
        let resp = wrong.request(Method::ALLOCATE, &udp_transport).await;
        assert_eq!(error_code(&resp), Some(401), "{transport}");

        let mut expired = Client::new(link(&server, transport).await).await;
        expired.use_credentials(Duration::from_secs(60), unix_now() - 3600);
        let resp = expired.request(Method::ALLOCATE, &udp_transport).await;
        assert_eq!(error_code(&resp), Some(401), "{transport}");

        let resp = owner
            .request(Method::REFRESH, &[Attribute::Lifetime(0)])
            .await;
        assert_eq!(class_of(&resp), Class::Success, "{transport}");
    }
    server.shutdown.cancel();
}

/// An allocation nobody refreshes expires on the server's clock (tokio's, paused here, so 601 s
/// pass at once): a Refresh then finds no allocation (437).
#[tokio::test(start_paused = true)]
async fn unrefreshed_allocations_expire() {
    let server = start().await;
    let mut client = Client::new(link(&server, "udp").await).await;
    // Credentials that outlive the wait, so only the allocation expires.
    client.use_credentials(Duration::from_secs(7200), unix_now());
    client.allocate().await;
    let resp = client
        .request(Method::REFRESH, &[Attribute::Lifetime(600)])
        .await;
    assert_eq!(class_of(&resp), Class::Success);

    tokio::time::sleep(Duration::from_secs(601)).await;
    let resp = client
        .request(Method::REFRESH, &[Attribute::Lifetime(600)])
        .await;
    assert_eq!(error_code(&resp), Some(437));
    server.shutdown.cancel();
}
