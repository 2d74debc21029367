//! The PeerJS server protocol at the wire: every rule of the reference server (NOTES §2) on one
//! server and on each store, then across two replicas on one Redis.

#![allow(unreachable_pub)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::suite::Boot;
use crate::support::{Server, WAIT};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A PeerJS client's socket.
pub struct Client {
    ws: Ws,
}

impl Client {
    pub async fn connect(s: &Server, query: &str) -> Self {
        let url = format!("{}/peerjs/peerjs?{query}", s.base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws }
    }

    /// Connects as `id` with `token` and the default key.
    pub async fn open(s: &Server, id: &str, token: &str) -> Self {
        let mut c = Self::connect(
            s,
            &format!("key=peerjs&id={id}&token={token}&version=1.5.5"),
        )
        .await;
        assert_eq!(c.next().await, Some(json!({"type": "OPEN"})));
        c
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next JSON frame; `None` once the server closed the socket.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT)
            .await
            .expect("a frame or close in time")
    }

    /// `Err` when nothing arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<Value>, ()> {
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next())
                .await
                .map_err(|_| ())?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(&t).unwrap())),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Nothing arrives for a short while.
    pub async fn quiet(&mut self) {
        assert_eq!(
            self.next_within(Duration::from_millis(300)).await,
            Err(()),
            "unexpected frame"
        );
    }
}

fn offer(dst: &str, n: u64) -> Value {
    json!({"type": "OFFER", "dst": dst, "src": "mallory", "payload": {"sdp": {"type": "offer", "sdp": "v=0"}, "n": n}, "extra": 1})
}

pub async fn peerjs_http(boot: Boot<'_>) {
    let s = boot(&[]).await;
    let info: Value = s.get("/peerjs").await.json().await.unwrap();
    assert_eq!(info["name"], "PeerJS Server");
    let r = s
        .http
        .get(s.url("/peerjs/peerjs/id?ts=123&version=1.5.5"))
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("access-control-allow-origin"),
        "CORS on"
    );
    let id = r.text().await.unwrap();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "{id}");
    assert_eq!(s.get("/peerjs/wrong/id").await.status(), 401);
    assert_eq!(s.get("/peerjs/peerjs/peers").await.status(), 401);
    // A plain GET of the socket path is refused with a JSON error, as on the native /ws.
    for path in [
        "/peerjs/peerjs?key=peerjs&id=a&token=t",
        "/v1/rooms/ROOM42/ws",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "websocket_required", "{path}");
    }

    let s = boot(&["--peerjs-discovery", "true"]).await;
    let _a = Client::open(&s, "alice", "t1").await;
    let peers: Vec<String> = s.get("/peerjs/peerjs/peers").await.json().await.unwrap();
    assert_eq!(peers, ["alice"]);
    let off = boot(&["--peerjs-path", "off"]).await;
    assert_eq!(off.get("/peerjs").await.status(), 404);
}

pub async fn peerjs_connect_rules(boot: Boot<'_>) {
    let s = boot(&["--peerjs-concurrent-limit", "2"]).await;
    let error = |msg: &str| json!({"type": "ERROR", "payload": {"msg": msg}});
    for query in ["id=a&token=t", "key=peerjs&token=t", "key=peerjs&id=a"] {
        let mut c = Client::connect(&s, query).await;
        assert_eq!(
            c.next().await,
            Some(error("No id, token, or key supplied to websocket server"))
        );
        assert_eq!(c.next().await, None);
    }
    let mut c = Client::connect(&s, "key=nope&id=a&token=t").await;
    assert_eq!(c.next().await, Some(error("Invalid key provided")));
    let mut c = Client::connect(&s, "key=peerjs&id=a%7Bb&token=t").await;
    assert_eq!(c.next().await.unwrap()["type"], "ERROR");

    let mut first = Client::open(&s, "alice", "t1").await;
    let mut taken = Client::connect(&s, "key=peerjs&id=alice&token=other").await;
    assert_eq!(
        taken.next().await,
        Some(json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}))
    );
    assert_eq!(taken.next().await, None);
    // The same token re-attaches without OPEN; the old socket is closed.
    let mut again = Client::connect(&s, "key=peerjs&id=alice&token=t1").await;
    assert_eq!(first.next().await, None);
    let _bob = Client::open(&s, "bob", "t2").await;
    let mut bob_peer = Client::connect(&s, "key=peerjs&id=carol&token=t3").await;
    assert_eq!(
        bob_peer.next().await,
        Some(error("Server has reached its concurrent user limit"))
    );
    // Relays count against the native write rate limit (1/s, burst 2).
    let limited = boot(&["--writes-per-second", "1"]).await;
    let mut x = Client::open(&limited, "x", "tx").await;
    let _y = Client::open(&limited, "y", "ty").await;
    let mut refused = None;
    for n in 0..4 {
        x.send(offer("y", n)).await;
        if let Ok(Some(frame)) = x.next_within(Duration::from_millis(200)).await {
            refused = Some(frame);
            break;
        }
    }
    assert_eq!(refused, Some(error("Rate limit exceeded; slow down")));
    // PeerJS sockets count against the per-IP watcher cap, and a refusal is counted like any
    // other watcher's.
    let capped = boot(&["--max-watchers-per-ip", "1"]).await;
    let _p = Client::open(&capped, "p", "tp").await;
    let mut q = Client::connect(&capped, "key=peerjs&id=q&token=tq").await;
    assert_eq!(
        q.next().await,
        Some(error(
            "Too many connections from this address or to this ID"
        ))
    );
    let metrics = capped.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("sb_rate_limited_total{limit=\"watchers\"} 1"),
        "{metrics}"
    );
    // The re-attached socket is the live one.
    let mut bob2 = Client::connect(&s, "key=peerjs&id=bob&token=t2").await;
    bob2.send(offer("alice", 1)).await;
    assert_eq!(again.next().await.unwrap()["src"], "bob");
}

pub async fn peerjs_relay_rules(boot: Boot<'_>) {
    let s = boot(&["--peerjs-expire-timeout", "500ms"]).await;
    let mut alice = Client::open(&s, "alice", "ta").await;
    let mut bob = Client::open(&s, "bob", "tb").await;
    // Bad JSON and unknown types are dropped; the socket stays.
    alice.send_text("{not json".into()).await;
    alice.send(json!({"type": "WHATEVER", "dst": "bob"})).await;
    alice.send(json!({"type": "HEARTBEAT"})).await;
    bob.quiet().await;
    // src is stamped by the server; only type, src, dst and payload are relayed.
    alice.send(offer("bob", 1)).await;
    assert_eq!(
        bob.next().await,
        Some(
            json!({"type": "OFFER", "src": "alice", "dst": "bob", "payload": {"sdp": {"type": "offer", "sdp": "v=0"}, "n": 1}})
        )
    );
    for kind in ["ANSWER", "CANDIDATE", "LEAVE"] {
        bob.send(json!({"type": kind, "dst": "alice", "payload": {"k": kind}}))
            .await;
        let got = alice.next().await.unwrap();
        assert_eq!(
            (got["type"].as_str(), got["src"].as_str()),
            (Some(kind), Some("bob"))
        );
    }
    // An offline destination: queued, delivered after OPEN when it connects in time ...
    alice.send(offer("carol", 1)).await;
    alice.send(offer("carol", 2)).await;
    let mut carol = Client::open(&s, "carol", "tc").await;
    for n in [1, 2] {
        assert_eq!(carol.next().await.unwrap()["payload"]["n"], n);
    }
    alice.quiet().await;
    // ... or expired: one EXPIRE per destination back to the sender, and nothing delivered.
    alice.send(offer("dave", 1)).await;
    alice.send(offer("dave", 2)).await;
    assert_eq!(
        alice.next().await,
        Some(json!({"type": "EXPIRE", "src": "dave", "dst": "alice"}))
    );
    alice.quiet().await;
    let mut dave = Client::open(&s, "dave", "td").await;
    dave.quiet().await;
    // LEAVE to an offline peer is not queued.
    alice.send(json!({"type": "LEAVE", "dst": "erin"})).await;
    // Alice's frames are handled in order: once bob has this one, the LEAVE was handled.
    alice.send(offer("bob", 7)).await;
    assert_eq!(bob.next().await.unwrap()["payload"]["n"], 7);
    let mut erin = Client::open(&s, "erin", "te").await;
    erin.quiet().await;
    alice.quiet().await;
}

pub async fn peerjs_queue_bounds_and_liveness(boot: Boot<'_>) {
    let s = boot(&[
        "--peerjs-queue-len",
        "2",
        "--peerjs-alive-timeout",
        "600ms",
        "--peerjs-expire-timeout",
        "10s",
    ])
    .await;
    let mut alice = Client::open(&s, "alice", "ta").await;
    for n in 0..2 {
        alice.send(offer("zed", n)).await;
    }
    alice.send(offer("zed", 3)).await;
    assert_eq!(
        alice.next().await,
        Some(json!({"type": "EXPIRE", "src": "zed", "dst": "alice"})),
        "a full queue refuses at once"
    );
    // Heartbeats keep a client; silence closes it and frees its ID.
    let mut quiet = Client::open(&s, "quiet", "tq").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        alice.send(json!({"type": "HEARTBEAT"})).await;
    }
    assert_eq!(quiet.next().await, None, "the silent client was closed");
    let mut other = Client::open(&s, "quiet", "another-token").await;
    alice.send(offer("quiet", 9)).await;
    assert_eq!(other.next().await.unwrap()["src"], "alice");
}

/// Two replicas on one Redis: IDs are unique across them, messages cross, queues are shared,
/// and an ID freed by silence on one is free on the other.
pub async fn peerjs_across_replicas(url: &str) {
    let flags = [
        "--peerjs-expire-timeout",
        "500ms",
        "--peerjs-alive-timeout",
        "1s",
    ];
    let a = Server::start(Some(url), &flags).await;
    let b = Server::start(Some(url), &flags).await;
    let mut alice = Client::open(&a, "alice", "ta").await;
    let mut taken = Client::connect(&b, "key=peerjs&id=alice&token=other").await;
    assert_eq!(taken.next().await.unwrap()["type"], "ID-TAKEN");
    let mut bob = Client::open(&b, "bob", "tb").await;
    alice.send(offer("bob", 1)).await;
    let got = bob.next().await.unwrap();
    assert_eq!(
        (got["src"].as_str(), got["payload"]["n"].as_u64()),
        (Some("alice"), Some(1))
    );
    bob.send(json!({"type": "ANSWER", "dst": "alice", "payload": {}}))
        .await;
    assert_eq!(alice.next().await.unwrap()["src"], "bob");
    // Bob re-attaches on A with his token: B closes the old socket, and its leave does not
    // unregister the new one, so the next offer reaches the new socket, not a queue.
    let mut bob_on_a = Client::connect(&a, "key=peerjs&id=bob&token=tb").await;
    assert_eq!(bob.next().await, None, "the replaced socket on B is closed");
    alice.send(offer("bob", 4)).await;
    assert_eq!(bob_on_a.next().await.unwrap()["payload"]["n"], 4);
    alice.quiet().await;
    // Queued on A, delivered when the destination connects to B.
    alice.send(offer("carol", 2)).await;
    let mut carol = Client::open(&b, "carol", "tc").await;
    assert_eq!(carol.next().await.unwrap()["payload"]["n"], 2);
    // Expired on A while nobody connects anywhere.
    alice.send(offer("dave", 3)).await;
    assert_eq!(
        alice.next().await,
        Some(json!({"type": "EXPIRE", "src": "dave", "dst": "alice"}))
    );
    // A closed socket frees its ID everywhere at once.
    drop(carol);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::connect(&a, "key=peerjs&id=carol&token=new").await;
        if c.next().await.unwrap()["type"] == "OPEN" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol's ID never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A silent client is dropped by its replica and its ID freed for the other.
    let mut silent = Client::open(&b, "silent", "ts").await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        alice.send(json!({"type": "HEARTBEAT"})).await;
    }
    assert_eq!(silent.next().await, None);
    let _again = Client::open(&a, "silent", "another").await;
}
