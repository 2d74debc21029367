//! The sans-IO TURN core driven message by message: what it answers, what it asks the driver to
//! do, and what it forwards. Time is passed in; nothing sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::turn_auth::{SharedSecret, credential_for};
use turn_server::core::auth::Credentials;
use turn_server::core::filter::PeerFilter;
use turn_server::core::{
    ClientAction, ClientAddr, Command, Config, ExternalIp, PeerAction, Server, Transport,
};
use turn_server::proto::{
    AttrType, Attribute, ChannelNumber, Class, Message, MessageBuilder, Method, PROTOCOL_UDP,
    TransactionId, long_term_key,
};

const REALM: &str = "switchboard";
const UNIX0: u64 = 1_800_000_000;

struct Harness {
    server: Server,
    t0: Instant,
    now: Instant,
    secret: SharedSecret,
    next_txn: u8,
}

/// A REST user valid for an hour from UNIX0.
fn rest_user(name: &str) -> String {
    format!("{}:{name}", UNIX0 + 3600)
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut Config)) -> Self {
        let secret = SharedSecret::new("rest-secret").unwrap();
        let mut config = Config {
            realm: REALM.into(),
            credentials: Credentials {
                secrets: vec![secret.clone()],
                users: [("static".to_owned(), "pw".to_owned())].into(),
            },
            nonce_secret: [9; 32],
            filter: PeerFilter::new(
                vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                vec![],
            ),
            ..Config::default()
        };
        tweak(&mut config);
        let t0 = Instant::now();
        Self {
            server: Server::new(config, t0, UNIX0),
            t0,
            now: t0,
            secret,
            next_txn: 0,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.server.handle_timeout(self.now);
    }

    fn txn(&mut self) -> TransactionId {
        self.next_txn += 1;
        TransactionId([self.next_txn; 12])
    }

    fn key(&self, username: &str) -> [u8; 16] {
        let password = if username == "static" {
            "pw".to_owned()
        } else {
            credential_for(&self.secret, username)
        };
        long_term_key(username, REALM, &password)
    }

    /// Sends a request and returns the one response it produced.
    fn call(&mut self, client: ClientAddr, bytes: &[u8]) -> Vec<u8> {
        assert_eq!(
            self.server.handle_client(self.now, client, bytes),
            ClientAction::Done
        );
        let t = self.server.poll_transmit().expect("a response");
        assert_eq!(t.to, client);
        assert!(self.server.poll_transmit().is_none());
        t.data
    }

    /// A nonce, by asking without credentials (the 401 challenge).
    fn nonce(&mut self, client: ClientAddr) -> String {
        let txn = self.txn();
        let req = build(
            Method::ALLOCATE,
            txn,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            None,
        );
        let resp = self.call(client, &req);
        let msg = Message::decode(&resp).unwrap();
        assert_eq!(error_code(&msg), Some(401));
        assert!(matches!(
            msg.attribute(AttrType::REALM),
            Some(Ok(Attribute::Realm(REALM)))
        ));
        match msg.attribute(AttrType::NONCE) {
            Some(Ok(Attribute::Nonce(n))) => n.to_owned(),
            other => panic!("no nonce: {other:?}"),
        }
    }

    fn authed(
        &mut self,
        client: ClientAddr,
        user: &str,
        method: Method,
        attrs: &[Attribute<'_>],
    ) -> Vec<u8> {
        let nonce = self.nonce(client);
        let txn = self.txn();
        let key = self.key(user);
        let req = build(method, txn, attrs, Some((user, &nonce, &key)));
        self.call(client, &req)
    }

    /// Allocates for `client` as `user`, binding the relay at `relay`; returns the success.
    fn allocate(&mut self, client: ClientAddr, user: &str, relay: SocketAddr) -> Vec<u8> {
        let nonce = self.nonce(client);
        let txn = self.txn();
        let key = self.key(user);
        let req = build(
            Method::ALLOCATE,
            txn,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            Some((user, &nonce, &key)),
        );
        assert_eq!(
            self.server.handle_client(self.now, client, &req),
            ClientAction::Done
        );
        let Some(Command::BindRelay {
            id,
            client: c,
            ipv6: false,
            even_port: false,
        }) = self.server.poll_command()
        else {
            panic!("no BindRelay");
        };
        assert_eq!(c, client);
        self.server.relay_bound(self.now, id, Some(relay));
        let resp = self.server.poll_transmit().unwrap().data;
        // A retransmission of the same request gets the same answer.
        assert_eq!(self.call(client, &req), resp);
        resp
    }
}

fn client(port: u16) -> ClientAddr {
    ClientAddr {
        transport: Transport::Udp,
        remote: SocketAddr::from(([127, 0, 0, 1], port)),
        local: "127.0.0.1:3478".parse().unwrap(),
    }
}

fn build(
    method: Method,
    txn: TransactionId,
    attrs: &[Attribute<'_>],
    auth: Option<(&str, &str, &[u8; 16])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = MessageBuilder::new(&mut out, Class::Request, method, txn);
    for attr in attrs {
        b.add(attr);
    }
    if let Some((user, nonce, key)) = auth {
        b.add(&Attribute::Username(user))
            .add(&Attribute::Realm(REALM))
            .add(&Attribute::Nonce(nonce));
        b.message_integrity(key);
    }
    b.fingerprint();
    b.finish().unwrap();
    out
}

fn error_code(msg: &Message<'_>) -> Option<u16> {
    match msg.attribute(AttrType::ERROR_CODE) {
        Some(Ok(Attribute::ErrorCode(e))) => Some(e.code),
        _ => None,
    }
}

fn code_of(bytes: &[u8]) -> Option<u16> {
    error_code(&Message::decode(bytes).unwrap())
}

#[test]
fn binding_answers_with_the_reflexive_address() {
    let mut h = Harness::new(|_| {});
    let txn = h.txn();
    let resp = h.call(client(5000), &build(Method::BINDING, txn, &[], None));
    let msg = Message::decode(&resp).unwrap();
    assert_eq!(
        (msg.class(), msg.method(), msg.transaction_id()),
        (Class::Success, Method::BINDING, txn)
    );
    assert!(msg.has_fingerprint());
    assert!(
        matches!(msg.attribute(AttrType::XOR_MAPPED_ADDRESS), Some(Ok(Attribute::XorMappedAddress(a))) if a == client(5000).remote)
    );
    assert!(msg.attribute(AttrType::SOFTWARE).is_some());
}

#[test]
fn allocate_challenges_then_grants_with_rest_and_static_credentials() {
    let mut h = Harness::new(|c| {
        c.external_ip = Some(ExternalIp {
            public: "203.0.113.7".parse().unwrap(),
            private: None,
        })
    });
    for (port, user) in [(5000, rest_user("alice")), (5001, "static".to_owned())] {
        let resp = h.allocate(
            client(port),
            &user,
            SocketAddr::from(([127, 0, 0, 1], 40000 + port)),
        );
        let msg = Message::decode(&resp).unwrap();
        assert_eq!(msg.class(), Class::Success);
        msg.verify_integrity(&h.key(&user)).unwrap();
        assert!(matches!(
            msg.attribute(AttrType::LIFETIME),
            Some(Ok(Attribute::Lifetime(600)))
        ));
        let Some(Ok(Attribute::XorRelayedAddress(relay))) =
            msg.attribute(AttrType::XOR_RELAYED_ADDRESS)
        else {
            panic!()
        };
        assert_eq!(
            relay,
            SocketAddr::from(([203, 0, 113, 7], 40000 + port)),
            "advertised external IP"
        );
    }
    assert_eq!(h.server.stats().allocations_active, 2);
    // A second Allocate on the same 5-tuple is a mismatch.
    let resp = h.authed(
        client(5000),
        &rest_user("alice"),
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
    );
    assert_eq!(code_of(&resp), Some(437));
}

#[test]
fn bad_credentials_are_refused_with_the_right_codes() {
    let mut h = Harness::new(|_| {});
    let c = client(5000);
    let nonce = h.nonce(c);
    let user = rest_user("alice");
    let wrong = long_term_key(&user, REALM, "not-the-credential");
    let txn = h.txn();
    let resp = h.call(
        c,
        &build(
            Method::ALLOCATE,
            txn,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            Some((&user, &nonce, &wrong)),
        ),
    );
    assert_eq!(code_of(&resp), Some(401));

    let expired = format!("{}:bob", UNIX0 - 1);
    let key = h.key(&expired);
    let txn = h.txn();
    let resp = h.call(
        c,
        &build(
            Method::ALLOCATE,
            txn,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            Some((&expired, &nonce, &key)),
        ),
    );
    assert_eq!(code_of(&resp), Some(401));

    // A nonce from another host, or an old one, is stale: 438 with a fresh nonce.
    let key = h.key(&user);
    let txn = h.txn();
    let elsewhere = ClientAddr {
        remote: "127.0.0.2:5000".parse().unwrap(),
        ..c
    };
    let resp = h.call(
        elsewhere,
        &build(
            Method::ALLOCATE,
            txn,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            Some((&user, &nonce, &key)),
        ),
    );
    assert_eq!(code_of(&resp), Some(438));
    h.advance(Duration::from_secs(601));
    let txn = h.txn();
    let resp = h.call(
        c,
        &build(
            Method::ALLOCATE,
            txn,
            &[Attribute::RequestedTransport(PROTOCOL_UDP)],
            Some((&user, &nonce, &key)),
        ),
    );
    let msg = Message::decode(&resp).unwrap();
    assert_eq!(error_code(&msg), Some(438));
    assert!(msg.attribute(AttrType::NONCE).is_some());

    // Missing REQUESTED-TRANSPORT is 400, TCP is 442.
    let resp = h.authed(c, &user, Method::ALLOCATE, &[]);
    assert_eq!(code_of(&resp), Some(400));
    let resp = h.authed(
        c,
        &user,
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(6)],
    );
    assert_eq!(code_of(&resp), Some(442));
    let stats = h.server.stats();
    assert!(stats.auth_failures.iter().sum::<u64>() >= 4);
}

#[test]
fn channels_and_indications_relay_both_ways_only_to_permitted_peers() {
    let mut h = Harness::new(|_| {});
    let c = client(5000);
    let user = rest_user("alice");
    let relay: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    h.allocate(c, &user, relay);
    let peer: SocketAddr = "127.0.0.1:6000".parse().unwrap();

    // Nothing flows before a permission.
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, b"early"),
        PeerAction::Drop
    );
    let send = {
        let mut out = Vec::new();
        let mut b = MessageBuilder::new(
            &mut out,
            Class::Indication,
            Method::SEND,
            TransactionId([7; 12]),
        );
        b.add(&Attribute::XorPeerAddress(peer))
            .add(&Attribute::Data(b"hello"));
        b.finish().unwrap();
        out
    };
    assert_eq!(h.server.handle_client(h.now, c, &send), ClientAction::Done);

    let resp = h.authed(
        c,
        &user,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(peer)],
    );
    assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
    let ClientAction::ToPeer {
        relay: r,
        peer: p,
        data,
    } = h.server.handle_client(h.now, c, &send)
    else {
        panic!()
    };
    assert_eq!((r, p, &send[data]), (relay, peer, &b"hello"[..]));

    // Peer -> client without a channel: a Data indication.
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, b"pong"),
        PeerAction::Queued
    );
    let data = h.server.poll_transmit().unwrap();
    let msg = Message::decode(&data.data).unwrap();
    assert_eq!(
        (msg.class(), msg.method()),
        (Class::Indication, Method::DATA)
    );
    assert!(matches!(
        msg.attribute(AttrType::DATA),
        Some(Ok(Attribute::Data(b"pong")))
    ));

    // With a channel: ChannelData both ways.
    let number = ChannelNumber::new(0x4001).unwrap();
    let resp = h.authed(
        c,
        &user,
        Method::CHANNEL_BIND,
        &[
            Attribute::ChannelNumber(number),
            Attribute::XorPeerAddress(peer),
        ],
    );
    assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
    let frame = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
    let ClientAction::ToPeer { data, .. } = h.server.handle_client(h.now, c, &frame) else {
        panic!()
    };
    assert_eq!(&frame[data], b"abc");
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, b"xyz!"),
        PeerAction::ChannelData {
            to: c,
            header: [0x40, 0x01, 0x00, 0x04]
        }
    );
    // The same number for another peer, or another number for this peer, is refused.
    let other: SocketAddr = "127.0.0.1:6001".parse().unwrap();
    let resp = h.authed(
        c,
        &user,
        Method::CHANNEL_BIND,
        &[
            Attribute::ChannelNumber(number),
            Attribute::XorPeerAddress(other),
        ],
    );
    assert_eq!(code_of(&resp), Some(400));
    let stats = h.server.stats();
    assert_eq!((stats.packets_to_peer, stats.packets_to_client), (2, 2));
    assert_eq!((stats.permissions_active, stats.channels_active), (1, 1));

    // Permissions lapse after 300 s without refresh; channels after 600 s.
    h.advance(Duration::from_secs(301));
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, b"late"),
        PeerAction::Drop
    );
    assert_eq!(h.server.stats().permissions_active, 0);
    let _ = h.t0;
}

#[test]
fn peer_policy_refuses_private_addresses_by_default() {
    let mut h = Harness::new(|c| c.filter = PeerFilter::default());
    let c = client(5000);
    let user = rest_user("alice");
    h.allocate(c, &user, "127.0.0.1:41000".parse().unwrap());
    for denied in [
        "127.0.0.1:6000",
        "10.0.0.1:80",
        "169.254.169.254:80",
        "192.168.1.1:53",
    ] {
        let peer: SocketAddr = denied.parse().unwrap();
        let resp = h.authed(
            c,
            &user,
            Method::CREATE_PERMISSION,
            &[Attribute::XorPeerAddress(peer)],
        );
        assert_eq!(code_of(&resp), Some(403), "{denied}");
    }
    let v6: SocketAddr = "[2001:4860::1]:80".parse().unwrap();
    let resp = h.authed(
        c,
        &user,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(v6)],
    );
    assert_eq!(code_of(&resp), Some(443), "family mismatch");
    let public: SocketAddr = "8.8.8.8:53".parse().unwrap();
    let resp = h.authed(
        c,
        &user,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(public)],
    );
    assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
    assert_eq!(h.server.stats().denied_peers, 4);
}

#[test]
fn refresh_expiry_quotas_and_drain() {
    let mut h = Harness::new(|c| {
        c.max_allocations_per_user = 1;
        c.max_lifetime = Duration::from_secs(1200);
    });
    let user = rest_user("alice");
    let relay: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    h.allocate(client(5000), &user, relay);
    let resp = h.authed(
        client(5001),
        &user,
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
    );
    assert_eq!(code_of(&resp), Some(486), "per-user quota");
    // A credential for the same user minted a second later counts against the same quota.
    let resp = h.authed(
        client(5001),
        &format!("{}:alice", UNIX0 + 3601),
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
    );
    assert_eq!(
        code_of(&resp),
        Some(486),
        "per-user quota, fresh credential"
    );

    // Refresh extends within the maximum; another user on the allocation is 441.
    let resp = h.authed(
        client(5000),
        &user,
        Method::REFRESH,
        &[Attribute::Lifetime(5000)],
    );
    assert!(matches!(
        Message::decode(&resp)
            .unwrap()
            .attribute(AttrType::LIFETIME),
        Some(Ok(Attribute::Lifetime(1200)))
    ));
    let resp = h.authed(client(5000), "static", Method::REFRESH, &[]);
    assert_eq!(code_of(&resp), Some(441));
    let resp = h.authed(client(5002), &user, Method::REFRESH, &[]);
    assert_eq!(code_of(&resp), Some(437), "no allocation");

    // It expires on its own at its lifetime and the relay is released.
    h.advance(Duration::from_secs(1199));
    assert!(h.server.poll_command().is_none());
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.server.poll_command(),
        Some(Command::ReleaseRelay { relay })
    );
    assert_eq!(h.server.stats().allocations_expired, 1);

    // Refresh with lifetime 0 deletes; a draining server refuses new allocations with 508.
    h.allocate(client(5000), &user, relay);
    let resp = h.authed(
        client(5000),
        &user,
        Method::REFRESH,
        &[Attribute::Lifetime(0)],
    );
    assert!(matches!(
        Message::decode(&resp)
            .unwrap()
            .attribute(AttrType::LIFETIME),
        Some(Ok(Attribute::Lifetime(0)))
    ));
    assert_eq!(
        h.server.poll_command(),
        Some(Command::ReleaseRelay { relay })
    );
    h.server.start_drain();
    let resp = h.authed(
        client(5000),
        &user,
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
    );
    assert_eq!(code_of(&resp), Some(508));
    assert_eq!(h.server.poll_timeout(), None, "no timers left");
}

#[test]
fn relay_bind_failure_is_an_error_reply() {
    let mut h = Harness::new(|_| {});
    let c = client(5000);
    let user = rest_user("alice");
    let nonce = h.nonce(c);
    let key = h.key(&user);
    let txn = h.txn();
    let req = build(
        Method::ALLOCATE,
        txn,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
        Some((&user, &nonce, &key)),
    );
    h.server.handle_client(h.now, c, &req);
    let Some(Command::BindRelay { id, .. }) = h.server.poll_command() else {
        panic!()
    };
    h.server.relay_bound(h.now, id, None);
    let resp = h.server.poll_transmit().unwrap().data;
    assert_eq!(code_of(&resp), Some(508));
    Message::decode(&resp)
        .unwrap()
        .verify_integrity(&key)
        .unwrap();
    assert_eq!(h.server.stats().allocations_active, 0);
}

#[test]
fn unknown_required_attributes_get_420_and_unknown_methods_400() {
    let mut h = Harness::new(|_| {});
    let txn = h.txn();
    let mut out = Vec::new();
    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::BINDING, txn);
    b.add_raw(AttrType(0x7777), &[1, 2, 3, 4]);
    b.finish().unwrap();
    let msg_bytes = h.call(client(5000), &out);
    let msg = Message::decode(&msg_bytes).unwrap();
    assert_eq!(error_code(&msg), Some(420));
    assert!(msg.attribute(AttrType::UNKNOWN_ATTRIBUTES).is_some());
    let txn = h.txn();
    let resp = h.call(
        client(5000),
        &build(Method::new(0x0AB).unwrap(), txn, &[], None),
    );
    assert_eq!(code_of(&resp), Some(400));
}

#[test]
fn bandwidth_cap_drops_excess() {
    let mut h = Harness::new(|c| c.bandwidth = Some(1000));
    let c = client(5000);
    let user = rest_user("alice");
    let relay: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    h.allocate(c, &user, relay);
    let peer: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    h.authed(
        c,
        &user,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(peer)],
    );
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, &[0; 900]),
        PeerAction::Queued
    );
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, &[0; 900]),
        PeerAction::Drop
    );
    assert_eq!(h.server.stats().bandwidth_drops, 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.server.handle_peer(h.now, relay, peer, &[0; 900]),
        PeerAction::Queued
    );
}

proptest::proptest! {
    /// Whatever a client or peer sends, the core answers or drops; it never panics.
    #[test]
    fn arbitrary_packets_never_panic(packets in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 1..20)) {
        let mut h = Harness::new(|_| {});
        let c = client(5000);
        let relay: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        h.allocate(c, &rest_user("alice"), relay);
        for packet in &packets {
            let mut framed = packet.clone();
            // Half the cases look like ChannelData or STUN headers so parsing goes deeper.
            if let Some(first) = framed.first_mut() {
                *first &= 0x7F;
            }
            let _ = h.server.handle_client(h.now, c, &framed);
            let _ = h.server.handle_peer(h.now, relay, "127.0.0.1:6000".parse().unwrap(), packet);
            while h.server.poll_transmit().is_some() {}
        }
    }
}

#[test]
fn permissions_per_allocation_are_bounded() {
    let mut h = Harness::new(|c| c.filter = PeerFilter::default());
    let c = client(5000);
    let user = rest_user("alice");
    h.allocate(c, &user, "127.0.0.1:41000".parse().unwrap());
    let peers: Vec<Attribute<'_>> = (0..=255u8)
        .map(|i| Attribute::XorPeerAddress(SocketAddr::from(([8, 8, 0, i], 80))))
        .collect();
    let resp = h.authed(c, &user, Method::CREATE_PERMISSION, &peers);
    assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
    let resp = h.authed(
        c,
        &user,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress("8.8.1.1:80".parse().unwrap())],
    );
    assert_eq!(code_of(&resp), Some(508));
    // Refreshing one it already has is fine.
    let resp = h.authed(
        c,
        &user,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress("8.8.0.1:80".parse().unwrap())],
    );
    assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
}

#[test]
fn per_ip_and_total_quotas_refuse_with_486() {
    let mut h = Harness::new(|c| {
        c.max_allocations_per_ip = 2;
        c.max_allocations = 3;
    });
    let relay = |port| SocketAddr::from(([127, 0, 0, 1], port));
    h.allocate(client(5000), &rest_user("a"), relay(41000));
    h.allocate(client(5001), &rest_user("b"), relay(41001));
    // A third from the same IP, even as another user, is over the per-IP quota.
    let resp = h.authed(
        client(5002),
        &rest_user("c"),
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
    );
    assert_eq!(code_of(&resp), Some(486));
    // Another IP gets one more, then the server-wide total is reached.
    let other = |port| ClientAddr {
        remote: SocketAddr::from(([127, 0, 0, 2], port)),
        ..client(port)
    };
    h.allocate(other(6000), &rest_user("d"), relay(41002));
    let resp = h.authed(
        other(6001),
        &rest_user("e"),
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(PROTOCOL_UDP)],
    );
    assert_eq!(code_of(&resp), Some(486));
    assert_eq!(h.server.stats().quota_rejections, 2);
    // Freeing one makes room again.
    let resp = h.authed(
        client(5000),
        &rest_user("a"),
        Method::REFRESH,
        &[Attribute::Lifetime(0)],
    );
    assert_eq!(Message::decode(&resp).unwrap().class(), Class::Success);
    assert_eq!(
        h.server.poll_command(),
        Some(Command::ReleaseRelay {
            relay: relay(41000)
        })
    );
    h.allocate(other(6001), &rest_user("e"), relay(41003));
}
