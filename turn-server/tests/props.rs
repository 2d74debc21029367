//! Property tests: no input makes the decoder panic, and every valid message round-trips.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use turn_server::proto::{
    AddressFamily, AttrType, AttrTypeList, Attribute, ChannelData, ChannelNumber, Class, ErrorCode,
    MAGIC_COOKIE, Message, MessageBuilder, Method, Packet, TransactionId, peek_frame_len,
};

/// An owned description of one attribute, since strategies cannot yield borrowed values.
#[derive(Clone, Debug)]
enum Spec {
    Addr(u8, SocketAddr),
    Text(u8, String),
    Error(u16, String),
    Unknown(Vec<AttrType>),
    Channel(u16),
    Number(u8, u32),
    Data(Vec<u8>),
    Transport(u8),
    Family(bool, u8),
    EvenPort(bool),
    Flag(bool),
    Token([u8; 8]),
    Tiebreaker(bool, u64),
    Other(u16, Vec<u8>),
}

impl Spec {
    fn attr(&self) -> Attribute<'_> {
        match self {
            Self::Addr(0, a) => Attribute::MappedAddress(*a),
            Self::Addr(1, a) => Attribute::XorMappedAddress(*a),
            Self::Addr(2, a) => Attribute::XorPeerAddress(*a),
            Self::Addr(3, a) => Attribute::XorRelayedAddress(*a),
            Self::Addr(_, a) => Attribute::AlternateServer(*a),
            Self::Text(0, s) => Attribute::Username(s),
            Self::Text(1, s) => Attribute::Realm(s),
            Self::Text(2, s) => Attribute::Nonce(s),
            Self::Text(_, s) => Attribute::Software(s),
            Self::Error(code, reason) => Attribute::ErrorCode(ErrorCode::new(*code, reason)),
            Self::Unknown(types) => Attribute::UnknownAttributes(AttrTypeList::new(types)),
            Self::Channel(n) => Attribute::ChannelNumber(ChannelNumber::new(*n).unwrap()),
            Self::Number(0, n) => Attribute::Lifetime(*n),
            Self::Number(_, n) => Attribute::Priority(*n),
            Self::Data(d) => Attribute::Data(d),
            Self::Transport(p) => Attribute::RequestedTransport(*p),
            Self::Family(true, f) => Attribute::RequestedAddressFamily(AddressFamily(*f)),
            Self::Family(false, f) => Attribute::AdditionalAddressFamily(AddressFamily(*f)),
            Self::EvenPort(r) => Attribute::EvenPort(*r),
            Self::Flag(true) => Attribute::DontFragment,
            Self::Flag(false) => Attribute::UseCandidate,
            Self::Token(t) => Attribute::ReservationToken(*t),
            Self::Tiebreaker(true, n) => Attribute::IceControlled(*n),
            Self::Tiebreaker(false, n) => Attribute::IceControlling(*n),
            Self::Other(typ, value) => Attribute::Other {
                typ: AttrType(*typ),
                value,
            },
        }
    }
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ];
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (0..5u8, socket_addr()).prop_map(|(k, a)| Spec::Addr(k, a)),
        (0..4u8, text()).prop_map(|(k, s)| Spec::Text(k, s)),
        (300..=699u16, text()).prop_map(|(c, s)| Spec::Error(c, s)),
        prop::collection::vec(any::<u16>().prop_map(AttrType), 0..6).prop_map(Spec::Unknown),
        (0x4000..=0x4FFFu16).prop_map(Spec::Channel),
        (0..2u8, any::<u32>()).prop_map(|(k, n)| Spec::Number(k, n)),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(Spec::Data),
        any::<u8>().prop_map(Spec::Transport),
        (any::<bool>(), any::<u8>()).prop_map(|(r, f)| Spec::Family(r, f)),
        any::<bool>().prop_map(Spec::EvenPort),
        any::<bool>().prop_map(Spec::Flag),
        any::<[u8; 8]>().prop_map(Spec::Token),
        (any::<bool>(), any::<u64>()).prop_map(|(c, n)| Spec::Tiebreaker(c, n)),
        (
            any::<u16>().prop_filter("unknown type", |t| !AttrType(*t).is_known()),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(t, v)| Spec::Other(t, v)),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error),
    ]
}

/// A well-formed STUN header (any type, right length) followed by arbitrary attribute bytes.
fn framed_body() -> impl Strategy<Value = Vec<u8>> {
    (any::<[u8; 2]>(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(t, mut body)| {
        body.truncate(body.len() / 4 * 4);
        let mut bytes = vec![t[0] & 0x3F, t[1]];
        bytes.extend((body.len() as u16).to_be_bytes());
        bytes.extend(MAGIC_COOKIE.to_be_bytes());
        bytes.extend([9; 12]);
        bytes.extend(body);
        bytes
    })
}

/// Touches everything a server would look at, so a panic anywhere in decoding shows up.
fn exercise(bytes: &[u8]) {
    let _ = peek_frame_len(bytes);
    let _ = ChannelData::decode(bytes);
    if let Ok(Packet::Stun(msg)) = Packet::decode(bytes) {
        let _ = msg.attributes().count();
        let _ = msg.unknown_comprehension_required().count();
        let _ = msg.verify_integrity(b"key");
        let _ = msg.attribute(AttrType::XOR_PEER_ADDRESS);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_attribute_bytes_after_a_valid_header_never_panic(bytes in framed_body()) {
        exercise(&bytes);
        if let Ok(msg) = Message::decode(&bytes) {
            for attr in msg.attributes() {
                let _ = attr;
            }
        }
    }

    #[test]
    fn peek_frame_len_agrees_with_the_frame(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some(n)) = peek_frame_len(&bytes) {
            prop_assert!(n >= 4);
            if let Ok(Packet::Stun(msg)) = Packet::decode(&bytes) {
                prop_assert_eq!(n, msg.as_bytes().len());
            }
        }
    }

    #[test]
    fn valid_messages_round_trip(
        class in class(),
        method in 0..=0x0FFFu16,
        id in any::<[u8; 12]>(),
        specs in prop::collection::vec(spec(), 0..12),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        fingerprint in any::<bool>(),
        padding in any::<u8>(),
    ) {
        let method = Method::new(method).unwrap();
        let id = TransactionId(id);
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(&mut buf, class, method, id);
        b.padding_byte(padding);
        for spec in &specs {
            b.add(&spec.attr());
        }
        if let Some(key) = &key {
            b.message_integrity(key);
        }
        if fingerprint {
            b.fingerprint();
        }
        let bytes = b.finish().unwrap().to_vec();

        prop_assert_eq!(peek_frame_len(&bytes), Ok(Some(bytes.len())));
        let msg = Message::decode(&bytes).unwrap();
        prop_assert_eq!((msg.class(), msg.method(), msg.transaction_id()), (class, method, id));
        prop_assert_eq!(msg.has_fingerprint(), fingerprint);
        let decoded: Vec<Attribute<'_>> = msg.attributes().map(Result::unwrap).collect();
        let want: Vec<Attribute<'_>> = specs.iter().map(Spec::attr).collect();
        prop_assert_eq!(&decoded[..want.len()], &want[..]);
        prop_assert_eq!(decoded.len(), want.len() + usize::from(key.is_some()) + usize::from(fingerprint));
        if let Some(key) = &key {
            prop_assert!(msg.verify_integrity(key).is_ok());
            // HMAC zero-pads short keys, so appending a zero would not change the key.
            let mut wrong = key.clone();
            wrong.push(1);
            prop_assert!(msg.verify_integrity(&wrong).is_err());
        }

        let mut again = Vec::new();
        let mut b = MessageBuilder::new(&mut again, class, method, id);
        b.padding_byte(padding);
        for attr in &decoded {
            b.add(attr);
        }
        prop_assert_eq!(b.finish().unwrap(), &bytes[..]);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        specs in prop::collection::vec(spec(), 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::ALLOCATE, TransactionId([3; 12]));
        for spec in &specs {
            b.add(&spec.attr());
        }
        b.message_integrity(b"key").fingerprint();
        let mut bytes = b.finish().unwrap().to_vec();
        // Keep the header intact so mutations reach the attribute parser.
        for (at, byte) in flips {
            let i = 20 + at.index(bytes.len() - 20);
            bytes[i] = byte;
        }
        exercise(&bytes);
        exercise(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn channel_data_round_trips(
        channel in 0x4000..=0x4FFFu16,
        data in prop::collection::vec(any::<u8>(), 0..200),
        pad in any::<bool>(),
    ) {
        let frame = ChannelData { channel: ChannelNumber::new(channel).unwrap(), data: &data };
        let mut out = Vec::new();
        frame.encode(&mut out, pad).unwrap();
        prop_assert_eq!(ChannelData::decode(&out), Ok(frame));
        let framed = peek_frame_len(&out).unwrap().unwrap();
        prop_assert!(framed >= out.len() && framed <= out.len() + 3);
    }
}
