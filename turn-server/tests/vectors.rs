//! RFC 5769 STUN test vectors: decode, verify MESSAGE-INTEGRITY and FINGERPRINT, re-encode.
//!
//! The hex is the RFC's own dumps (§2.1 to §2.4). FINGERPRINT and MESSAGE-INTEGRITY verifying is
//! what proves the bytes were transcribed exactly.

use std::net::SocketAddr;

use turn_server::proto::{
    AttrType, Attribute, Class, Message, MessageBuilder, Method, TransactionId, long_term_key,
};

/// §2.1 sample request: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT.
const SAMPLE_REQUEST: &str = "
    0001 0058 2112a442 b7e7a701 bc34d686 fa87dfae
    8022 0010 5354554e 20746573 7420636c 69656e74
    0024 0004 6e0001ff
    8029 0008 932ff9b1 51263b36
    0006 0009 6576746a 3a683676 59202020
    0008 0014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
    8028 0004 e57a3bcf";

/// §2.2 sample IPv4 response: SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
const SAMPLE_IPV4_RESPONSE: &str = "
    0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
    8022 000b 74657374 20766563 746f7220
    0020 0008 0001a147 e112a643
    0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
    8028 0004 c07d4c96";

/// §2.3 sample IPv6 response: as §2.2 with an IPv6 XOR-MAPPED-ADDRESS.
const SAMPLE_IPV6_RESPONSE: &str = "
    0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
    8022 000b 74657374 20766563 746f7220
    0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
    0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
    8028 0004 c8fb0b4c";

/// §2.4 sample request with long-term authentication: USERNAME, NONCE, REALM, MESSAGE-INTEGRITY.
const SAMPLE_LONG_TERM_REQUEST: &str = "
    0001 0060 2112a442 78ad3433 c6ad72c0 29da412e
    0006 0012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
    0015 001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
    0014 000b 6578616d 706c652e 6f726700
    0008 0014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666";

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const RESPONSE_TRANSACTION: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

#[test]
fn sample_request_decodes_and_verifies() {
    let bytes = hex(SAMPLE_REQUEST);
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        (msg.class(), msg.method()),
        (Class::Request, Method::BINDING)
    );
    assert_eq!(msg.transaction_id(), TransactionId(RESPONSE_TRANSACTION));
    assert!(msg.has_fingerprint());
    msg.verify_integrity(SHORT_TERM_PASSWORD).unwrap();
    assert_eq!(
        attrs(&msg),
        [
            Attribute::Software("STUN test client"),
            Attribute::Priority(0x6e00_01ff),
            Attribute::IceControlled(0x932f_f9b1_5126_3b36),
            Attribute::Username("evtj:h6vY"),
            Attribute::MessageIntegrity(&tag(&bytes, 0x4c)),
            Attribute::Fingerprint(0xe57a_3bcf),
        ]
    );
    assert_eq!(msg.unknown_comprehension_required().count(), 0);
}

#[test]
fn sample_request_reencodes_byte_for_byte() {
    let bytes = hex(SAMPLE_REQUEST);
    let mut out = Vec::new();
    let mut b = MessageBuilder::new(
        &mut out,
        Class::Request,
        Method::BINDING,
        TransactionId(RESPONSE_TRANSACTION),
    );
    // RFC 5769 pads USERNAME with spaces; RFC 8489 senders pad with zeros, hence the override.
    b.padding_byte(b' ')
        .add(&Attribute::Software("STUN test client"))
        .add(&Attribute::Priority(0x6e00_01ff))
        .add(&Attribute::IceControlled(0x932f_f9b1_5126_3b36))
        .add(&Attribute::Username("evtj:h6vY"))
        .message_integrity(SHORT_TERM_PASSWORD)
        .fingerprint();
    assert_eq!(b.finish().unwrap(), &bytes[..]);
}

#[test]
fn ipv4_response_decodes_verifies_and_reencodes() {
    check_response(SAMPLE_IPV4_RESPONSE, "192.0.2.1:32853");
}

#[test]
fn ipv6_response_decodes_verifies_and_reencodes() {
    check_response(
        SAMPLE_IPV6_RESPONSE,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
    );
}

#[test]
fn long_term_request_decodes_verifies_and_reencodes() {
    let bytes = hex(SAMPLE_LONG_TERM_REQUEST);
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        (msg.class(), msg.method()),
        (Class::Request, Method::BINDING)
    );
    assert!(!msg.has_fingerprint());
    let (username, nonce, realm) = (
        "マトリックス",
        "f//499k954d6OL34oL9FSTvy64sA",
        "example.org",
    );
    assert_eq!(
        attrs(&msg)[..3],
        [
            Attribute::Username(username),
            Attribute::Nonce(nonce),
            Attribute::Realm(realm),
        ]
    );
    // The RFC's password "The<U+00AD>M<U+00AA>tr<U+2168>" is "TheMatrIX" after SASLprep.
    let key = long_term_key(username, realm, "TheMatrIX");
    msg.verify_integrity(&key).unwrap();
    assert_eq!(
        msg.verify_integrity(&long_term_key(username, realm, "TheMatrix")),
        Err(turn_server::proto::DecodeError::BadIntegrity)
    );

    // Zero padding here, as RFC 8489 wants, so the default builder reproduces it.
    let mut out = Vec::new();
    let mut b = MessageBuilder::new(
        &mut out,
        Class::Request,
        Method::BINDING,
        msg.transaction_id(),
    );
    b.add(&Attribute::Username(username))
        .add(&Attribute::Nonce(nonce))
        .add(&Attribute::Realm(realm))
        .message_integrity(&key);
    assert_eq!(b.finish().unwrap(), &bytes[..]);
}

#[test]
fn decoded_attributes_reencode_verbatim() {
    // Copying every decoded attribute (integrity and fingerprint as found) rebuilds each vector.
    let padding = [b' ', b' ', b' ', 0];
    let vectors = [
        SAMPLE_REQUEST,
        SAMPLE_IPV4_RESPONSE,
        SAMPLE_IPV6_RESPONSE,
        SAMPLE_LONG_TERM_REQUEST,
    ];
    for (vector, pad) in vectors.into_iter().zip(padding) {
        let bytes = hex(vector);
        let msg = Message::decode(&bytes).unwrap();
        let mut out = vec![0xAA; 3];
        let mut b = MessageBuilder::new(&mut out, msg.class(), msg.method(), msg.transaction_id());
        b.padding_byte(pad);
        for attr in msg.attributes() {
            b.add(&attr.unwrap());
        }
        assert_eq!(b.finish().unwrap(), &bytes[..]);
        assert_eq!(out[..3], [0xAA; 3], "bytes before the message are kept");
    }
}

#[test]
fn wrong_short_term_password_fails_integrity() {
    for vector in [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE] {
        let bytes = hex(vector);
        let msg = Message::decode(&bytes).unwrap();
        assert!(msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu").is_err());
        assert!(msg.verify_integrity(b"").is_err());
    }
}

fn check_response(vector: &str, addr: &str) {
    let bytes = hex(vector);
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        (msg.class(), msg.method()),
        (Class::Success, Method::BINDING)
    );
    assert!(msg.has_fingerprint());
    msg.verify_integrity(SHORT_TERM_PASSWORD).unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    assert_eq!(
        msg.attribute(AttrType::XOR_MAPPED_ADDRESS),
        Some(Ok(Attribute::XorMappedAddress(addr)))
    );
    assert_eq!(
        msg.attribute(AttrType::SOFTWARE),
        Some(Ok(Attribute::Software("test vector")))
    );

    let mut out = Vec::new();
    let mut b = MessageBuilder::new(
        &mut out,
        Class::Success,
        Method::BINDING,
        msg.transaction_id(),
    );
    // RFC 5769 pads the 11-byte SOFTWARE with a space; see `padding_byte`.
    b.padding_byte(b' ')
        .add(&Attribute::Software("test vector"))
        .add(&Attribute::XorMappedAddress(addr))
        .message_integrity(SHORT_TERM_PASSWORD)
        .fingerprint();
    assert_eq!(b.finish().unwrap(), &bytes[..]);
}

fn attrs<'a>(msg: &Message<'a>) -> Vec<Attribute<'a>> {
    msg.attributes().collect::<Result<_, _>>().unwrap()
}

/// The 20-byte MESSAGE-INTEGRITY value whose attribute header starts at `at`.
fn tag(bytes: &[u8], at: usize) -> [u8; 20] {
    bytes[at + 4..at + 24].try_into().unwrap()
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}
