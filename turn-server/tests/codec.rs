//! Round trips of every encodable attribute, and the errors malformed input must produce.

use std::net::SocketAddr;

use turn_server::proto::{
    AddressFamily, AttrType, AttrTypeList, Attribute, ChannelData, ChannelNumber, Class,
    DecodeError, EncodeError, ErrorCode, Message, MessageBuilder, Method, PROTOCOL_UDP, Packet,
    TransactionId, channel_data_header, peek_frame_len,
};

const ID: TransactionId = TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
const KEY: &[u8] = b"secret key";

fn build(f: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::ALLOCATE, ID);
    f(&mut b);
    b.finish().unwrap();
    out
}

fn every_attribute() -> Vec<Attribute<'static>> {
    let v4: SocketAddr = "203.0.113.7:3478".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::42]:49152".parse().unwrap();
    const UNKNOWN: &[AttrType] = &[AttrType(0x0030), AttrType(0x7FFF)];
    vec![
        Attribute::MappedAddress(v4),
        Attribute::MappedAddress(v6),
        Attribute::XorMappedAddress(v4),
        Attribute::XorMappedAddress(v6),
        Attribute::XorPeerAddress(v4),
        Attribute::XorPeerAddress(v6),
        Attribute::XorRelayedAddress(v4),
        Attribute::XorRelayedAddress(v6),
        Attribute::AlternateServer(v6),
        Attribute::Username("1700000000:alice"),
        Attribute::Realm("switchboard"),
        Attribute::Nonce("abc"),
        Attribute::Software("switchboard turn-server"),
        Attribute::ErrorCode(ErrorCode::STALE_NONCE),
        Attribute::ErrorCode(ErrorCode::new(699, "")),
        Attribute::UnknownAttributes(AttrTypeList::new(UNKNOWN)),
        Attribute::ChannelNumber(ChannelNumber::new(0x4123).unwrap()),
        Attribute::Lifetime(600),
        Attribute::Data(b"hello"),
        Attribute::Data(b""),
        Attribute::RequestedTransport(PROTOCOL_UDP),
        Attribute::RequestedAddressFamily(AddressFamily::IPV6),
        Attribute::AdditionalAddressFamily(AddressFamily::IPV6),
        Attribute::EvenPort(true),
        Attribute::EvenPort(false),
        Attribute::DontFragment,
        Attribute::ReservationToken(*b"tokentok"),
        Attribute::Priority(0x6e00_01ff),
        Attribute::UseCandidate,
        Attribute::IceControlled(u64::MAX),
        Attribute::IceControlling(1),
        Attribute::Other {
            typ: AttrType(0xC001),
            value: b"opaque",
        },
    ]
}

#[test]
fn each_attribute_round_trips_alone() {
    for attr in every_attribute() {
        let bytes = build(|b| {
            b.add(&attr);
        });
        let msg = Message::decode(&bytes).unwrap();
        let decoded: Vec<_> = msg.attributes().collect();
        assert_eq!(decoded, [Ok(attr)], "{attr:?}");
    }
}

#[test]
fn all_attributes_round_trip_with_integrity_and_fingerprint() {
    let attrs = every_attribute();
    let bytes = build(|b| {
        attrs.iter().for_each(|a| {
            b.add(a);
        });
        b.message_integrity(KEY).fingerprint();
    });
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        (msg.class(), msg.method()),
        (Class::Request, Method::ALLOCATE)
    );
    msg.verify_integrity(KEY).unwrap();
    let decoded: Vec<_> = msg.attributes().map(Result::unwrap).collect();
    assert_eq!(decoded[..attrs.len()], attrs[..]);
    assert!(matches!(
        decoded[attrs.len()],
        Attribute::MessageIntegrity(_)
    ));
    assert!(matches!(
        decoded[attrs.len() + 1],
        Attribute::Fingerprint(_)
    ));
}

#[test]
fn message_integrity_sha256_parses() {
    let bytes = build(|b| {
        b.add(&Attribute::MessageIntegritySha256(&[7; 32]));
    });
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        msg.attribute(AttrType::MESSAGE_INTEGRITY_SHA256),
        Some(Ok(Attribute::MessageIntegritySha256(&[7; 32])))
    );
    let bad = build(|b| {
        b.add_raw(AttrType::MESSAGE_INTEGRITY_SHA256, &[7; 12]);
    });
    let msg = Message::decode(&bad).unwrap();
    assert!(matches!(
        msg.attributes().next(),
        Some(Err(DecodeError::InvalidAttribute { attr: 0x001C, .. }))
    ));
}

#[test]
fn xor_addresses_differ_on_the_wire_from_plain_ones() {
    let addr: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    let plain = build(|b| {
        b.add(&Attribute::MappedAddress(addr));
    });
    let xored = build(|b| {
        b.add(&Attribute::XorMappedAddress(addr));
    });
    assert_eq!(plain[24..], [0, 1, 0x80, 0x55, 192, 0, 2, 1]);
    // Port ^ 0x2112 and address ^ 0x2112A442, as in RFC 5769 §2.2.
    assert_eq!(xored[24..], [0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
}

#[test]
fn unknown_comprehension_required_attributes_are_reported() {
    let bytes = build(|b| {
        b.add_raw(AttrType(0x0030), b"x")
            .add_raw(AttrType(0x001E), b"userhash")
            .add_raw(AttrType(0x8030), b"optional")
            .add(&Attribute::Lifetime(1));
    });
    let msg = Message::decode(&bytes).unwrap();
    let unknown: Vec<_> = msg.unknown_comprehension_required().collect();
    assert_eq!(unknown, [AttrType(0x0030), AttrType(0x001E)]);
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    // Hand-made: a LIFETIME after MESSAGE-INTEGRITY, which the builder refuses to write.
    let mut bytes = build(|b| {
        b.add(&Attribute::Username("u")).message_integrity(KEY);
    });
    bytes.extend([0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 9]);
    set_len(&mut bytes);
    let msg = Message::decode(&bytes).unwrap();
    let types: Vec<_> = msg.raw_attributes().map(|a| a.typ).collect();
    assert_eq!(types, [AttrType::USERNAME, AttrType::MESSAGE_INTEGRITY]);
    assert_eq!(msg.attribute(AttrType::LIFETIME), None);
    msg.verify_integrity(KEY).unwrap();
}

#[test]
fn truncated_header_is_rejected() {
    let bytes = build(|_| {});
    for len in 0..20 {
        assert_eq!(
            Message::decode(&bytes[..len]).unwrap_err(),
            DecodeError::TruncatedHeader { len }
        );
    }
}

#[test]
fn header_checks_reject_bad_first_bits_cookie_and_length() {
    let good = build(|b| {
        b.add(&Attribute::Lifetime(600));
    });
    assert!(Message::decode(&good).is_ok());

    let mut bad = good.clone();
    bad[0] |= 0x80;
    assert_eq!(
        Message::decode(&bad).unwrap_err(),
        DecodeError::NotStun(0x80)
    );

    let mut bad = good.clone();
    bad[4] = 0x21 ^ 1;
    assert!(matches!(
        Message::decode(&bad),
        Err(DecodeError::BadMagicCookie(_))
    ));

    let mut bad = good.clone();
    bad[3] = 6;
    assert_eq!(
        Message::decode(&bad).unwrap_err(),
        DecodeError::UnalignedLength(6)
    );

    let mut longer = good.clone();
    longer.extend([0; 4]);
    assert_eq!(
        Message::decode(&longer).unwrap_err(),
        DecodeError::LengthMismatch {
            declared: 8,
            actual: 12
        }
    );
    assert_eq!(
        Message::decode(&good[..24]).unwrap_err(),
        DecodeError::LengthMismatch {
            declared: 8,
            actual: 4
        }
    );
}

#[test]
fn attribute_overrunning_the_message_is_rejected() {
    let mut bytes = build(|b| {
        b.add(&Attribute::Lifetime(600));
    });
    bytes[23] = 8; // LIFETIME now claims 8 bytes where 4 remain.
    assert_eq!(
        Message::decode(&bytes).unwrap_err(),
        DecodeError::AttributeOverrun(0x000D)
    );
    bytes[23] = 5; // 5 bytes padded to 8: the padding runs past the end too.
    assert_eq!(
        Message::decode(&bytes).unwrap_err(),
        DecodeError::AttributeOverrun(0x000D)
    );
}

#[test]
fn malformed_attribute_values_are_rejected_lazily() {
    let cases: [(AttrType, &[u8]); 9] = [
        (AttrType::XOR_MAPPED_ADDRESS, &[0, 1, 0, 0, 1, 2, 3]),
        (AttrType::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4]),
        (AttrType::MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4]),
        (AttrType::USERNAME, &[0xff, 0xfe]),
        (AttrType::ERROR_CODE, &[0, 0, 7, 0]),
        (AttrType::ERROR_CODE, &[0, 0, 4, 100]),
        (AttrType::LIFETIME, &[0, 0, 1]),
        (AttrType::UNKNOWN_ATTRIBUTES, &[0, 1, 0]),
        (AttrType::DONT_FRAGMENT, &[0]),
    ];
    for (typ, value) in cases {
        let bytes = build(|b| {
            b.add_raw(typ, value);
        });
        let msg = Message::decode(&bytes).expect("framing is fine");
        assert!(
            matches!(msg.attribute(typ), Some(Err(DecodeError::InvalidAttribute { attr, .. })) if attr == typ.0),
            "{typ:?} {value:?}"
        );
    }
    let long_username = "u".repeat(509);
    let bytes = build(|b| {
        b.add_raw(AttrType::USERNAME, long_username.as_bytes());
    });
    let msg = Message::decode(&bytes).unwrap();
    assert!(matches!(msg.attribute(AttrType::USERNAME), Some(Err(_))));
}

#[test]
fn channel_number_attribute_out_of_range_is_rejected() {
    let bytes = build(|b| {
        b.add_raw(AttrType::CHANNEL_NUMBER, &[0x3F, 0xFF, 0, 0]);
    });
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(
        msg.attribute(AttrType::CHANNEL_NUMBER),
        Some(Err(DecodeError::BadChannelNumber(0x3FFF)))
    );
}

#[test]
fn bad_fingerprint_is_rejected() {
    let good = build(|b| {
        b.add(&Attribute::Software("x")).fingerprint();
    });
    assert!(Message::decode(&good).unwrap().has_fingerprint());
    let mut bad = good.clone();
    bad[24] ^= 0x01; // a byte of SOFTWARE
    assert_eq!(
        Message::decode(&bad).unwrap_err(),
        DecodeError::BadFingerprint
    );
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x01; // the CRC itself
    assert_eq!(
        Message::decode(&bad).unwrap_err(),
        DecodeError::BadFingerprint
    );
}

#[test]
fn fingerprint_must_be_last_and_four_bytes() {
    let mut bytes = build(|b| {
        b.fingerprint();
    });
    bytes.extend([0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 9]);
    set_len(&mut bytes);
    assert_eq!(
        Message::decode(&bytes).unwrap_err(),
        DecodeError::FingerprintNotLast
    );
    let bytes = build(|b| {
        b.add_raw(AttrType::FINGERPRINT, &[0; 8]);
    });
    assert!(matches!(
        Message::decode(&bytes),
        Err(DecodeError::InvalidAttribute { attr: 0x8028, .. })
    ));
}

#[test]
fn bad_or_missing_integrity_is_rejected() {
    let bytes = build(|b| {
        b.add(&Attribute::Username("alice"))
            .message_integrity(KEY)
            .fingerprint();
    });
    let msg = Message::decode(&bytes).unwrap();
    msg.verify_integrity(KEY).unwrap();
    assert_eq!(
        msg.verify_integrity(b"other"),
        Err(DecodeError::BadIntegrity)
    );

    // Tampering with a covered byte breaks integrity (no FINGERPRINT here to notice it first).
    let mut tampered = build(|b| {
        b.add(&Attribute::Username("alicf")).message_integrity(KEY);
    });
    tampered[24..29].copy_from_slice(b"alice");
    let msg = Message::decode(&tampered).unwrap();
    assert_eq!(msg.verify_integrity(KEY), Err(DecodeError::BadIntegrity));

    let plain = build(|b| {
        b.add(&Attribute::Username("alice"));
    });
    let msg = Message::decode(&plain).unwrap();
    assert!(!msg.has_integrity());
    assert_eq!(
        msg.verify_integrity(KEY),
        Err(DecodeError::MissingIntegrity)
    );

    let wrong_len = build(|b| {
        b.add_raw(AttrType::MESSAGE_INTEGRITY, &[0; 16]);
    });
    assert!(matches!(
        Message::decode(&wrong_len),
        Err(DecodeError::InvalidAttribute { attr: 0x0008, .. })
    ));
}

#[test]
fn builder_refuses_misordered_and_oversized_attributes_and_restores_buffer() {
    let mut out = b"keep".to_vec();
    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::BINDING, ID);
    b.fingerprint().add(&Attribute::Lifetime(1));
    assert_eq!(b.finish(), Err(EncodeError::Misordered(0x000D)));
    assert_eq!(out, b"keep");

    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::BINDING, ID);
    b.message_integrity(KEY).add(&Attribute::Lifetime(1));
    assert_eq!(b.finish(), Err(EncodeError::Misordered(0x000D)));

    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::BINDING, ID);
    b.message_integrity(KEY)
        .add(&Attribute::MessageIntegritySha256(&[0; 32]))
        .fingerprint();
    assert!(b.finish().is_ok());
    out.truncate(4);

    let big = vec![0u8; 70_000];
    let mut b = MessageBuilder::new(&mut out, Class::Indication, Method::SEND, ID);
    b.add(&Attribute::Data(&big));
    assert_eq!(
        b.finish(),
        Err(EncodeError::AttributeTooLong {
            attr: 0x0013,
            len: 70_000
        })
    );
    assert_eq!(out, b"keep");

    let half = vec![0u8; 40_000];
    let mut b = MessageBuilder::new(&mut out, Class::Indication, Method::SEND, ID);
    b.add(&Attribute::Data(&half)).add(&Attribute::Data(&half));
    assert_eq!(b.finish(), Err(EncodeError::MessageTooLong));
    assert_eq!(out, b"keep");
}

#[test]
fn builder_rejects_values_the_wire_cannot_carry() {
    let mut out = Vec::new();
    for attr in [
        Attribute::ErrorCode(ErrorCode::new(299, "too low")),
        Attribute::ErrorCode(ErrorCode::new(700, "too high")),
    ] {
        let mut b = MessageBuilder::new(&mut out, Class::Error, Method::ALLOCATE, ID);
        b.add(&attr);
        assert!(matches!(
            b.finish(),
            Err(EncodeError::InvalidValue { attr: 0x0009, .. })
        ));
    }
    let long = "n".repeat(763);
    let mut b = MessageBuilder::new(&mut out, Class::Error, Method::ALLOCATE, ID);
    b.add(&Attribute::Nonce(&long));
    assert!(matches!(
        b.finish(),
        Err(EncodeError::InvalidValue { attr: 0x0015, .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn channel_data_round_trips_padded_and_unpadded() {
    let channel = ChannelNumber::new(0x4001).unwrap();
    for data in [&b""[..], b"a", b"abcd", b"abcde"] {
        let frame = ChannelData { channel, data };
        for pad in [false, true] {
            let mut out = Vec::new();
            frame.encode(&mut out, pad).unwrap();
            let want_len = if pad {
                4 + data.len().div_ceil(4) * 4
            } else {
                4 + data.len()
            };
            assert_eq!(out.len(), want_len);
            assert_eq!(ChannelData::decode(&out), Ok(frame));
            assert_eq!(
                peek_frame_len(&out),
                Ok(Some(4 + data.len().div_ceil(4) * 4))
            );
        }
    }
    assert_eq!(
        channel_data_header(channel, 3),
        Some([0x40, 0x01, 0x00, 0x03])
    );
}

#[test]
fn channel_data_errors() {
    assert_eq!(
        ChannelData::decode(&[0x40, 0x00, 0x00]),
        Err(DecodeError::TruncatedHeader { len: 3 })
    );
    assert_eq!(
        ChannelData::decode(&[0x7F, 0xFF, 0x00, 0x00]),
        Err(DecodeError::BadChannelNumber(0x7FFF))
    );
    assert_eq!(
        ChannelData::decode(&[0x00, 0x01, 0x00, 0x00]),
        Err(DecodeError::NotStun(0x00))
    );
    // Declares 5 bytes: 4 is short, 9 is neither exact nor padded (8).
    let frame = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0, 0];
    assert!(matches!(
        ChannelData::decode(&frame[..8]),
        Err(DecodeError::LengthMismatch {
            declared: 5,
            actual: 4
        })
    ));
    assert!(matches!(
        ChannelData::decode(&frame),
        Err(DecodeError::LengthMismatch {
            declared: 5,
            actual: 9
        })
    ));
    assert!(ChannelData::decode(&frame[..12]).is_ok());

    let channel = ChannelNumber::MIN;
    let big = vec![0; 65_536];
    let mut out = vec![1];
    assert_eq!(
        ChannelData {
            channel,
            data: &big
        }
        .encode(&mut out, true),
        Err(EncodeError::ChannelDataTooLong(65_536))
    );
    assert_eq!(out, [1]);
}

#[test]
fn peek_frame_len_frames_stun_on_a_stream() {
    let msg = build(|b| {
        b.add(&Attribute::Software("stream")).fingerprint();
    });
    for cut in 0..4 {
        assert_eq!(peek_frame_len(&msg[..cut]), Ok(None));
    }
    for cut in 4..=msg.len() {
        assert_eq!(peek_frame_len(&msg[..cut]), Ok(Some(msg.len())));
    }
    // A second message already buffered behind the first does not change the answer.
    let mut two = msg.clone();
    two.extend_from_slice(&msg);
    assert_eq!(peek_frame_len(&two), Ok(Some(msg.len())));

    assert_eq!(peek_frame_len(&[0x80]), Err(DecodeError::NotStun(0x80)));
    assert_eq!(
        peek_frame_len(&[0x00, 0x01, 0x00, 0x03]),
        Err(DecodeError::UnalignedLength(3))
    );
    let mut bad_cookie = msg.clone();
    bad_cookie[5] = 0;
    assert!(matches!(
        peek_frame_len(&bad_cookie),
        Err(DecodeError::BadMagicCookie(_))
    ));
}

#[test]
fn packet_demultiplexes_stun_and_channel_data() {
    let msg = build(|b| {
        b.add(&Attribute::Lifetime(0));
    });
    assert!(matches!(Packet::decode(&msg), Ok(Packet::Stun(_))));
    let frame = [0x40, 0x02, 0x00, 0x01, 0xAB];
    match Packet::decode(&frame) {
        Ok(Packet::ChannelData(cd)) => {
            assert_eq!(cd.channel.value(), 0x4002);
            assert_eq!(cd.data, [0xAB]);
        }
        other => panic!("expected ChannelData, got {other:?}"),
    }
    assert_eq!(
        Packet::decode(&[0xC0; 20]).unwrap_err(),
        DecodeError::NotStun(0xC0)
    );
    assert_eq!(
        Packet::decode(&[]).unwrap_err(),
        DecodeError::TruncatedHeader { len: 0 }
    );
}

/// Rewrites the header length after hand-appending bytes.
fn set_len(bytes: &mut [u8]) {
    let len = u16::try_from(bytes.len() - 20).unwrap();
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
}
