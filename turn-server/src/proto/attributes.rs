//! Typed STUN/TURN attributes: decoding from borrowed values and encoding into a buffer.
//!
//! RFC 8489 §14 (STUN), RFC 8656 §18 (TURN), RFC 8445 §16.1 (the ICE attributes of RFC 5769's
//! sample request). PASSWORD-ALGORITHM(S), USERHASH and ALTERNATE-DOMAIN are left as
//! [`Attribute::Other`]; the comprehension-required ones among them are reported as unknown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::attr_type::AttrType;
use super::channel_data::ChannelNumber;
use super::error::{DecodeError, EncodeError};
use super::message::{MAGIC_COOKIE, RawAttribute, TransactionId, be16, be32};

/// Longest USERNAME value accepted: "fewer than 509 bytes" (RFC 8489 §14.3).
const MAX_USERNAME: usize = 508;
/// Longest REALM, NONCE, SOFTWARE or error reason: "fewer than 763 bytes" (RFC 8489 §14).
const MAX_TEXT: usize = 762;

/// A decoded attribute. Text and byte values borrow from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// MAPPED-ADDRESS: the client's address in the clear (RFC 3489 clients).
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the client's reflexive address.
    XorMappedAddress(SocketAddr),
    /// XOR-PEER-ADDRESS: a peer of an allocation.
    XorPeerAddress(SocketAddr),
    /// XOR-RELAYED-ADDRESS: the relayed transport address of an allocation.
    XorRelayedAddress(SocketAddr),
    /// ALTERNATE-SERVER: where to retry after a 300 Try Alternate.
    AlternateServer(SocketAddr),
    /// USERNAME.
    Username(&'a str),
    /// REALM.
    Realm(&'a str),
    /// NONCE.
    Nonce(&'a str),
    /// SOFTWARE.
    Software(&'a str),
    /// ERROR-CODE.
    ErrorCode(ErrorCode<'a>),
    /// UNKNOWN-ATTRIBUTES: the types a 420 response complains about.
    UnknownAttributes(AttrTypeList<'a>),
    /// MESSAGE-INTEGRITY as found; the builder computes a new one with a key.
    MessageIntegrity(&'a [u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256 as found (16 to 32 bytes); parsed, not verified.
    MessageIntegritySha256(&'a [u8]),
    /// FINGERPRINT as found; `Message::decode` has verified it.
    Fingerprint(u32),
    /// CHANNEL-NUMBER.
    ChannelNumber(ChannelNumber),
    /// LIFETIME in seconds.
    Lifetime(u32),
    /// DATA: an application payload inside Send/Data indications.
    Data(&'a [u8]),
    /// REQUESTED-TRANSPORT: an IP protocol number, 17 for UDP.
    RequestedTransport(u8),
    /// REQUESTED-ADDRESS-FAMILY.
    RequestedAddressFamily(AddressFamily),
    /// ADDITIONAL-ADDRESS-FAMILY: ask for an IPv6 relay besides the IPv4 one.
    AdditionalAddressFamily(AddressFamily),
    /// EVEN-PORT; `true` when the R bit asks to reserve the next port too.
    EvenPort(bool),
    /// DONT-FRAGMENT.
    DontFragment,
    /// RESERVATION-TOKEN.
    ReservationToken([u8; 8]),
    /// PRIORITY (ICE).
    Priority(u32),
    /// USE-CANDIDATE (ICE).
    UseCandidate,
    /// ICE-CONTROLLED with its tie-breaker.
    IceControlled(u64),
    /// ICE-CONTROLLING with its tie-breaker.
    IceControlling(u64),
    /// Any attribute without a typed form here.
    Other {
        /// The attribute type.
        typ: AttrType,
        /// The raw value.
        value: &'a [u8],
    },
}

/// An ERROR-CODE value: a code 300..=699 and a reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The numeric code, class * 100 + number.
    pub code: u16,
    /// The reason phrase.
    pub reason: &'a str,
}

/// An address family number of REQUESTED-/ADDITIONAL-ADDRESS-FAMILY.
///
/// Unknown numbers decode so the server can answer 440 rather than 400 (RFC 8656 §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressFamily(pub u8);

impl AddressFamily {
    /// IPv4.
    pub const IPV4: Self = Self(0x01);
    /// IPv6.
    pub const IPV6: Self = Self(0x02);
}

/// IP protocol number of UDP, the only REQUESTED-TRANSPORT of RFC 8656.
pub const PROTOCOL_UDP: u8 = 17;

/// A list of attribute types, as carried by UNKNOWN-ATTRIBUTES.
#[derive(Clone, Copy, Debug)]
pub struct AttrTypeList<'a>(TypeListRepr<'a>);

#[derive(Clone, Copy, Debug)]
enum TypeListRepr<'a> {
    /// Big-endian u16s straight from the wire; even length checked on decode.
    Wire(&'a [u8]),
    Types(&'a [AttrType]),
}

impl<'a> AttrTypeList<'a> {
    /// A list to encode, e.g. the types a 420 response reports.
    pub fn new(types: &'a [AttrType]) -> Self {
        Self(TypeListRepr::Types(types))
    }

    /// The types in order.
    pub fn iter(&self) -> impl Iterator<Item = AttrType> + 'a {
        let (wire, types): (&'a [u8], &'a [AttrType]) = match self.0 {
            TypeListRepr::Wire(bytes) => (bytes, &[]),
            TypeListRepr::Types(types) => (&[], types),
        };
        let from_wire = wire.chunks_exact(2).map(|c| AttrType(be16(c, 0)));
        from_wire.chain(types.iter().copied())
    }
}

impl PartialEq for AttrTypeList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for AttrTypeList<'_> {}

impl<'a> Attribute<'a> {
    /// Decodes `raw`; `transaction_id` un-XORs the XOR-*-ADDRESS attributes.
    pub fn decode(
        raw: RawAttribute<'a>,
        transaction_id: &TransactionId,
    ) -> Result<Self, DecodeError> {
        let RawAttribute { typ, value: v } = raw;
        let xor = |v| decode_address(typ, v).map(|a| xor_address(a, transaction_id));
        Ok(match typ {
            AttrType::MAPPED_ADDRESS => Self::MappedAddress(decode_address(typ, v)?),
            AttrType::ALTERNATE_SERVER => Self::AlternateServer(decode_address(typ, v)?),
            AttrType::XOR_MAPPED_ADDRESS => Self::XorMappedAddress(xor(v)?),
            AttrType::XOR_PEER_ADDRESS => Self::XorPeerAddress(xor(v)?),
            AttrType::XOR_RELAYED_ADDRESS => Self::XorRelayedAddress(xor(v)?),
            AttrType::USERNAME => Self::Username(text(typ, v, MAX_USERNAME)?),
            AttrType::REALM => Self::Realm(text(typ, v, MAX_TEXT)?),
            AttrType::NONCE => Self::Nonce(text(typ, v, MAX_TEXT)?),
            AttrType::SOFTWARE => Self::Software(text(typ, v, MAX_TEXT)?),
            AttrType::ERROR_CODE => Self::ErrorCode(decode_error_code(v)?),
            AttrType::UNKNOWN_ATTRIBUTES => Self::UnknownAttributes(decode_type_list(v)?),
            AttrType::MESSAGE_INTEGRITY => Self::MessageIntegrity(fixed_ref(typ, v)?),
            AttrType::MESSAGE_INTEGRITY_SHA256 => Self::MessageIntegritySha256(sha256_tag(v)?),
            AttrType::FINGERPRINT => Self::Fingerprint(u32::from_be_bytes(fixed(typ, v)?)),
            AttrType::CHANNEL_NUMBER => {
                let [hi, lo, _, _] = fixed(typ, v)?;
                Self::ChannelNumber(ChannelNumber::try_from(u16::from_be_bytes([hi, lo]))?)
            }
            AttrType::LIFETIME => Self::Lifetime(u32::from_be_bytes(fixed(typ, v)?)),
            AttrType::DATA => Self::Data(v),
            AttrType::REQUESTED_TRANSPORT => Self::RequestedTransport(fixed::<4>(typ, v)?[0]),
            AttrType::REQUESTED_ADDRESS_FAMILY => {
                Self::RequestedAddressFamily(AddressFamily(fixed::<4>(typ, v)?[0]))
            }
            AttrType::ADDITIONAL_ADDRESS_FAMILY => {
                Self::AdditionalAddressFamily(AddressFamily(fixed::<4>(typ, v)?[0]))
            }
            AttrType::EVEN_PORT => Self::EvenPort(fixed::<1>(typ, v)?[0] & 0x80 != 0),
            AttrType::DONT_FRAGMENT => empty(typ, v, Self::DontFragment)?,
            AttrType::RESERVATION_TOKEN => Self::ReservationToken(fixed(typ, v)?),
            AttrType::PRIORITY => Self::Priority(u32::from_be_bytes(fixed(typ, v)?)),
            AttrType::USE_CANDIDATE => empty(typ, v, Self::UseCandidate)?,
            AttrType::ICE_CONTROLLED => Self::IceControlled(u64::from_be_bytes(fixed(typ, v)?)),
            AttrType::ICE_CONTROLLING => Self::IceControlling(u64::from_be_bytes(fixed(typ, v)?)),
            typ => Self::Other { typ, value: v },
        })
    }

    /// The attribute type this value is encoded as.
    pub fn attr_type(&self) -> AttrType {
        match self {
            Self::MappedAddress(_) => AttrType::MAPPED_ADDRESS,
            Self::XorMappedAddress(_) => AttrType::XOR_MAPPED_ADDRESS,
            Self::XorPeerAddress(_) => AttrType::XOR_PEER_ADDRESS,
            Self::XorRelayedAddress(_) => AttrType::XOR_RELAYED_ADDRESS,
            Self::AlternateServer(_) => AttrType::ALTERNATE_SERVER,
            Self::Username(_) => AttrType::USERNAME,
            Self::Realm(_) => AttrType::REALM,
            Self::Nonce(_) => AttrType::NONCE,
            Self::Software(_) => AttrType::SOFTWARE,
            Self::ErrorCode(_) => AttrType::ERROR_CODE,
            Self::UnknownAttributes(_) => AttrType::UNKNOWN_ATTRIBUTES,
            Self::MessageIntegrity(_) => AttrType::MESSAGE_INTEGRITY,
            Self::MessageIntegritySha256(_) => AttrType::MESSAGE_INTEGRITY_SHA256,
            Self::Fingerprint(_) => AttrType::FINGERPRINT,
            Self::ChannelNumber(_) => AttrType::CHANNEL_NUMBER,
            Self::Lifetime(_) => AttrType::LIFETIME,
            Self::Data(_) => AttrType::DATA,
            Self::RequestedTransport(_) => AttrType::REQUESTED_TRANSPORT,
            Self::RequestedAddressFamily(_) => AttrType::REQUESTED_ADDRESS_FAMILY,
            Self::AdditionalAddressFamily(_) => AttrType::ADDITIONAL_ADDRESS_FAMILY,
            Self::EvenPort(_) => AttrType::EVEN_PORT,
            Self::DontFragment => AttrType::DONT_FRAGMENT,
            Self::ReservationToken(_) => AttrType::RESERVATION_TOKEN,
            Self::Priority(_) => AttrType::PRIORITY,
            Self::UseCandidate => AttrType::USE_CANDIDATE,
            Self::IceControlled(_) => AttrType::ICE_CONTROLLED,
            Self::IceControlling(_) => AttrType::ICE_CONTROLLING,
            Self::Other { typ, .. } => *typ,
        }
    }

    /// Appends the value (no attribute header, no padding) to `out`.
    pub(crate) fn write_value(
        &self,
        transaction_id: &TransactionId,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let typ = self.attr_type();
        match *self {
            Self::MappedAddress(a) | Self::AlternateServer(a) => write_address(a, out),
            Self::XorMappedAddress(a) | Self::XorPeerAddress(a) | Self::XorRelayedAddress(a) => {
                write_address(xor_address(a, transaction_id), out);
            }
            Self::Username(s) => write_text(typ, s, MAX_USERNAME, out)?,
            Self::Realm(s) | Self::Nonce(s) | Self::Software(s) => {
                write_text(typ, s, MAX_TEXT, out)?
            }
            Self::ErrorCode(e) => write_error_code(e, out)?,
            Self::UnknownAttributes(list) => {
                list.iter().for_each(|t| out.extend(t.0.to_be_bytes()))
            }
            Self::MessageIntegrity(tag) => out.extend_from_slice(tag),
            Self::MessageIntegritySha256(tag) | Self::Data(tag) => out.extend_from_slice(tag),
            Self::Fingerprint(n) | Self::Lifetime(n) | Self::Priority(n) => {
                out.extend(n.to_be_bytes())
            }
            Self::ChannelNumber(c) => out.extend(((u32::from(c.value())) << 16).to_be_bytes()),
            Self::RequestedTransport(p) => out.extend([p, 0, 0, 0]),
            Self::RequestedAddressFamily(f) | Self::AdditionalAddressFamily(f) => {
                out.extend([f.0, 0, 0, 0])
            }
            Self::EvenPort(reserve) => out.push(if reserve { 0x80 } else { 0 }),
            Self::DontFragment | Self::UseCandidate => {}
            Self::ReservationToken(token) => out.extend_from_slice(&token),
            Self::IceControlled(n) | Self::IceControlling(n) => out.extend(n.to_be_bytes()),
            Self::Other { value, .. } => out.extend_from_slice(value),
        }
        Ok(())
    }
}

impl ErrorCode<'static> {
    /// 300 Try Alternate.
    pub const TRY_ALTERNATE: Self = Self::new(300, "Try Alternate");
    /// 400 Bad Request.
    pub const BAD_REQUEST: Self = Self::new(400, "Bad Request");
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: Self = Self::new(401, "Unauthenticated");
    /// 403 Forbidden.
    pub const FORBIDDEN: Self = Self::new(403, "Forbidden");
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: Self = Self::new(420, "Unknown Attribute");
    /// 437 Allocation Mismatch.
    pub const ALLOCATION_MISMATCH: Self = Self::new(437, "Allocation Mismatch");
    /// 438 Stale Nonce.
    pub const STALE_NONCE: Self = Self::new(438, "Stale Nonce");
    /// 440 Address Family not Supported.
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: Self = Self::new(440, "Address Family not Supported");
    /// 441 Wrong Credentials.
    pub const WRONG_CREDENTIALS: Self = Self::new(441, "Wrong Credentials");
    /// 442 Unsupported Transport Protocol.
    pub const UNSUPPORTED_TRANSPORT: Self = Self::new(442, "Unsupported Transport Protocol");
    /// 443 Peer Address Family Mismatch.
    pub const PEER_ADDRESS_FAMILY_MISMATCH: Self = Self::new(443, "Peer Address Family Mismatch");
    /// 486 Allocation Quota Reached.
    pub const ALLOCATION_QUOTA_REACHED: Self = Self::new(486, "Allocation Quota Reached");
    /// 500 Server Error.
    pub const SERVER_ERROR: Self = Self::new(500, "Server Error");
    /// 508 Insufficient Capacity.
    pub const INSUFFICIENT_CAPACITY: Self = Self::new(508, "Insufficient Capacity");
}

impl<'a> ErrorCode<'a> {
    /// An error code with its reason phrase; the code is checked when encoded.
    pub const fn new(code: u16, reason: &'a str) -> Self {
        Self { code, reason }
    }
}

/// XORs an address with the magic cookie (and the transaction id for IPv6); its own inverse.
fn xor_address(addr: SocketAddr, transaction_id: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match addr.ip() {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) ^ MAGIC_COOKIE)),
        IpAddr::V6(ip) => {
            let mut octets = ip.octets();
            let mask = cookie.iter().chain(&transaction_id.0);
            octets.iter_mut().zip(mask).for_each(|(o, m)| *o ^= m);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    SocketAddr::new(ip, port)
}

/// Decodes the MAPPED-ADDRESS layout: reserved byte, family, port, 4 or 16 address bytes.
fn decode_address(typ: AttrType, v: &[u8]) -> Result<SocketAddr, DecodeError> {
    let invalid = |reason| DecodeError::InvalidAttribute {
        attr: typ.0,
        reason,
    };
    let ip = match (v.get(1), v.len()) {
        (Some(1), 8) => IpAddr::V4(Ipv4Addr::from(be32(v, 4))),
        (Some(2), 20) => {
            let mut octets = [0; 16];
            octets.copy_from_slice(&v[4..20]);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        (Some(1 | 2), _) => return Err(invalid("address length does not match family")),
        _ => return Err(invalid("unknown address family")),
    };
    Ok(SocketAddr::new(ip, be16(v, 2)))
}

fn write_address(addr: SocketAddr, out: &mut Vec<u8>) {
    let [p0, p1] = addr.port().to_be_bytes();
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend([0, 1, p0, p1]);
            out.extend(ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend([0, 2, p0, p1]);
            out.extend(ip.octets());
        }
    }
}

/// A UTF-8 value of at most `max` bytes.
fn text(typ: AttrType, v: &[u8], max: usize) -> Result<&str, DecodeError> {
    let invalid = |reason| DecodeError::InvalidAttribute {
        attr: typ.0,
        reason,
    };
    if v.len() > max {
        return Err(invalid("text too long"));
    }
    std::str::from_utf8(v).map_err(|_| invalid("text is not UTF-8"))
}

fn write_text(typ: AttrType, s: &str, max: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if s.len() > max {
        return Err(EncodeError::InvalidValue {
            attr: typ.0,
            reason: "text too long",
        });
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// ERROR-CODE: 21 reserved bits, 3-bit class (3..=6), 8-bit number (0..=99), reason.
fn decode_error_code(v: &[u8]) -> Result<ErrorCode<'_>, DecodeError> {
    let invalid = |reason| DecodeError::InvalidAttribute {
        attr: AttrType::ERROR_CODE.0,
        reason,
    };
    if v.len() < 4 {
        return Err(invalid("shorter than 4 bytes"));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(invalid("code outside 300..=699"));
    }
    let reason = text(AttrType::ERROR_CODE, &v[4..], MAX_TEXT)?;
    Ok(ErrorCode {
        code: class * 100 + number,
        reason,
    })
}

fn write_error_code(e: ErrorCode<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if !(300..=699).contains(&e.code) {
        return Err(EncodeError::InvalidValue {
            attr: AttrType::ERROR_CODE.0,
            reason: "code outside 300..=699",
        });
    }
    // Both fit a byte: code / 100 is 3..=6 and code % 100 is below 100.
    out.extend([0, 0, (e.code / 100) as u8, (e.code % 100) as u8]);
    write_text(AttrType::ERROR_CODE, e.reason, MAX_TEXT, out)
}

fn decode_type_list(v: &[u8]) -> Result<AttrTypeList<'_>, DecodeError> {
    if !v.len().is_multiple_of(2) {
        return Err(DecodeError::InvalidAttribute {
            attr: AttrType::UNKNOWN_ATTRIBUTES.0,
            reason: "odd length",
        });
    }
    Ok(AttrTypeList(TypeListRepr::Wire(v)))
}

/// MESSAGE-INTEGRITY-SHA256: 16 to 32 bytes in steps of 4 (RFC 8489 §14.6).
fn sha256_tag(v: &[u8]) -> Result<&[u8], DecodeError> {
    if (16..=32).contains(&v.len()) && v.len().is_multiple_of(4) {
        Ok(v)
    } else {
        Err(DecodeError::InvalidAttribute {
            attr: AttrType::MESSAGE_INTEGRITY_SHA256.0,
            reason: "length not 16..=32 in steps of 4",
        })
    }
}

fn fixed<const N: usize>(typ: AttrType, v: &[u8]) -> Result<[u8; N], DecodeError> {
    fixed_ref(typ, v).copied()
}

fn fixed_ref<const N: usize>(typ: AttrType, v: &[u8]) -> Result<&[u8; N], DecodeError> {
    v.try_into().map_err(|_| DecodeError::InvalidAttribute {
        attr: typ.0,
        reason: "wrong length",
    })
}

fn empty<'a>(typ: AttrType, v: &[u8], attr: Attribute<'a>) -> Result<Attribute<'a>, DecodeError> {
    fixed::<0>(typ, v).map(|_| attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_is_an_involution() {
        let id = TransactionId([7; 12]);
        for addr in ["192.0.2.1:32853", "[2001:db8::1]:9"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_ne!(xor_address(addr, &id), addr);
            assert_eq!(xor_address(xor_address(addr, &id), &id), addr);
        }
    }
}
