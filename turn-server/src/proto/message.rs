//! The STUN header and lazy, borrowing message decoding (RFC 8489 §5, §6, §14).

use super::attr_type::AttrType;
use super::attributes::Attribute;
use super::error::DecodeError;
use super::integrity;

/// The fixed value of the header's magic cookie field (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN message header in bytes.
pub const HEADER_LEN: usize = 20;
/// Size of an attribute's type + length header in bytes.
pub(crate) const ATTR_HEADER_LEN: usize = 4;
/// Size of a MESSAGE-INTEGRITY value (HMAC-SHA1).
pub(crate) const INTEGRITY_LEN: usize = 20;
/// Size of a FINGERPRINT value (CRC-32).
pub(crate) const FINGERPRINT_LEN: usize = 4;

/// The message class: the two C bits of the message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request, answered by a success or error response.
    Request,
    /// An indication, never answered.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// The 12-bit STUN method (Binding, Allocate, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Self = Self(0x001);
    /// Allocate (RFC 8656).
    pub const ALLOCATE: Self = Self(0x003);
    /// Refresh (RFC 8656).
    pub const REFRESH: Self = Self(0x004);
    /// Send, an indication only (RFC 8656).
    pub const SEND: Self = Self(0x006);
    /// Data, an indication only (RFC 8656).
    pub const DATA: Self = Self(0x007);
    /// CreatePermission (RFC 8656).
    pub const CREATE_PERMISSION: Self = Self(0x008);
    /// ChannelBind (RFC 8656).
    pub const CHANNEL_BIND: Self = Self(0x009);

    /// A method from its 12-bit number; `None` above 0xFFF.
    pub const fn new(value: u16) -> Option<Self> {
        if value <= 0x0FFF {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The method number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// The 96-bit transaction id that pairs a response with its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// A decoded STUN message borrowing the datagram or frame it came from.
///
/// [`Message::decode`] checks the header and the attribute framing and verifies FINGERPRINT when
/// present, without allocating; attribute values are decoded lazily by [`Message::attributes`].
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    bytes: &'a [u8],
    class: Class,
    method: Method,
    transaction_id: TransactionId,
    /// Offset of the MESSAGE-INTEGRITY attribute header that counts, if any.
    integrity: Option<usize>,
    fingerprint: bool,
}

impl<'a> Message<'a> {
    /// Decodes one whole message: `bytes` must be exactly the header plus its announced length.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (message_type, transaction_id) = check_header(bytes)?;
        let layout = scan_attributes(bytes)?;
        if let Some(at) = layout.fingerprint {
            check_fingerprint(bytes, at)?;
        }
        let (class, method) = split_message_type(message_type);
        Ok(Self {
            bytes,
            class,
            method,
            transaction_id,
            integrity: layout.integrity,
            fingerprint: layout.fingerprint.is_some(),
        })
    }

    /// The message class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The message method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether a MESSAGE-INTEGRITY attribute is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether a FINGERPRINT attribute is present (it was verified by `decode`).
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint
    }

    /// The attributes as type and value, skipping those RFC 8489 §14.5 says to ignore after
    /// MESSAGE-INTEGRITY.
    pub fn raw_attributes(&self) -> RawAttributes<'a> {
        RawAttributes {
            bytes: self.bytes,
            offset: HEADER_LEN,
            seen: Seen::Nothing,
        }
    }

    /// The attributes, each decoded into its typed form when first reached.
    pub fn attributes(&self) -> impl Iterator<Item = Result<Attribute<'a>, DecodeError>> + 'a {
        let transaction_id = self.transaction_id;
        self.raw_attributes()
            .map(move |raw| Attribute::decode(raw, &transaction_id))
    }

    /// The first attribute of type `typ`, decoded.
    pub fn attribute(&self, typ: AttrType) -> Option<Result<Attribute<'a>, DecodeError>> {
        let raw = self.raw_attributes().find(|raw| raw.typ == typ)?;
        Some(Attribute::decode(raw, &self.transaction_id))
    }

    /// Comprehension-required attributes (type < 0x8000) this codec does not know, for a 420 answer.
    pub fn unknown_comprehension_required(&self) -> impl Iterator<Item = AttrType> + 'a {
        self.raw_attributes()
            .map(|raw| raw.typ)
            .filter(|typ| typ.is_comprehension_required() && !typ.is_known())
    }

    /// Checks MESSAGE-INTEGRITY against `key` in constant time (RFC 8489 §14.5).
    ///
    /// `key` is the password for short-term credentials or [`super::long_term_key`] for long-term ones.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), DecodeError> {
        let at = self.integrity.ok_or(DecodeError::MissingIntegrity)?;
        let value_at = at + ATTR_HEADER_LEN;
        let tag = &self.bytes[value_at..value_at + INTEGRITY_LEN];
        // The HMAC covers the header with its length field pointing at the end of
        // MESSAGE-INTEGRITY, so attributes after it (FINGERPRINT) do not change the result.
        let covered_len = (value_at + INTEGRITY_LEN - HEADER_LEN) as u16;
        if integrity::verify_message_integrity(key, &self.bytes[..at], covered_len, tag) {
            Ok(())
        } else {
            Err(DecodeError::BadIntegrity)
        }
    }
}

/// One attribute as it appears on the wire, padding excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The attribute type.
    pub typ: AttrType,
    /// The value, without padding.
    pub value: &'a [u8],
}

/// Iterator over a message's attributes; see [`Message::raw_attributes`].
#[derive(Clone, Debug)]
pub struct RawAttributes<'a> {
    bytes: &'a [u8],
    offset: usize,
    seen: Seen,
}

/// Which integrity attributes the iterator has passed; after them most attributes are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Nothing,
    Integrity,
    IntegritySha256,
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (typ, value, next) = attribute_at(self.bytes, self.offset)?;
            self.offset = next;
            let visible = match self.seen {
                Seen::Nothing => true,
                Seen::Integrity => matches!(
                    typ,
                    AttrType::MESSAGE_INTEGRITY_SHA256 | AttrType::FINGERPRINT
                ),
                Seen::IntegritySha256 => typ == AttrType::FINGERPRINT,
            };
            if !visible {
                continue;
            }
            match typ {
                AttrType::MESSAGE_INTEGRITY => self.seen = Seen::Integrity,
                AttrType::MESSAGE_INTEGRITY_SHA256 => self.seen = Seen::IntegritySha256,
                _ => {}
            }
            return Some(RawAttribute { typ, value });
        }
    }
}

/// Rounds an attribute value length up to the 4-byte boundary of the next attribute.
pub(crate) const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds the 16-bit message type from class and method (RFC 8489 §5, figure 3).
pub(crate) fn message_type(class: Class, method: Method) -> u16 {
    let c = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    let m = method.0;
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// Splits a message type (top two bits already known zero) into class and method.
fn split_message_type(t: u16) -> (Class, Method) {
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0b00 => Class::Request,
        0b01 => Class::Indication,
        0b10 => Class::Success,
        _ => Class::Error,
    };
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    (class, Method(method))
}

/// Reads a big-endian u16; callers have checked `at + 2 <= bytes.len()`.
pub(crate) fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a big-endian u32; callers have checked `at + 4 <= bytes.len()`.
pub(crate) fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the fixed header; returns the message type and transaction id.
fn check_header(bytes: &[u8]) -> Result<(u16, TransactionId), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TruncatedHeader { len: bytes.len() });
    }
    if bytes[0] & 0xC0 != 0 {
        return Err(DecodeError::NotStun(bytes[0]));
    }
    let cookie = be32(bytes, 4);
    if cookie != MAGIC_COOKIE {
        return Err(DecodeError::BadMagicCookie(cookie));
    }
    let len = be16(bytes, 2);
    if !len.is_multiple_of(4) {
        return Err(DecodeError::UnalignedLength(len));
    }
    let actual = bytes.len() - HEADER_LEN;
    if usize::from(len) != actual {
        return Err(DecodeError::LengthMismatch {
            declared: len.into(),
            actual,
        });
    }
    let mut id = [0; 12];
    id.copy_from_slice(&bytes[8..HEADER_LEN]);
    Ok((be16(bytes, 0), TransactionId(id)))
}

/// Where the attributes that need checking sit in a message.
#[derive(Default)]
struct Layout {
    integrity: Option<usize>,
    fingerprint: Option<usize>,
}

/// Walks the attribute headers once to prove the framing sound and find the integrity attributes.
fn scan_attributes(bytes: &[u8]) -> Result<Layout, DecodeError> {
    let mut layout = Layout::default();
    let mut integrity_seen = false;
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        if layout.fingerprint.is_some() {
            return Err(DecodeError::FingerprintNotLast);
        }
        // Header length is a multiple of 4 and so is every step, so 4 header bytes remain here.
        let typ = AttrType(be16(bytes, offset));
        let len = usize::from(be16(bytes, offset + 2));
        let next = offset + ATTR_HEADER_LEN + padded(len);
        if next > bytes.len() {
            return Err(DecodeError::AttributeOverrun(typ.0));
        }
        match typ {
            AttrType::MESSAGE_INTEGRITY if !integrity_seen => {
                expect_len(typ, len, INTEGRITY_LEN)?;
                layout.integrity = Some(offset);
                integrity_seen = true;
            }
            AttrType::MESSAGE_INTEGRITY_SHA256 => integrity_seen = true,
            AttrType::FINGERPRINT => {
                expect_len(typ, len, FINGERPRINT_LEN)?;
                layout.fingerprint = Some(offset);
            }
            _ => {}
        }
        offset = next;
    }
    Ok(layout)
}

fn expect_len(typ: AttrType, len: usize, want: usize) -> Result<(), DecodeError> {
    if len == want {
        Ok(())
    } else {
        Err(DecodeError::InvalidAttribute {
            attr: typ.0,
            reason: "wrong length",
        })
    }
}

/// Checks the FINGERPRINT at `at`, the last attribute, so the header length already covers it.
fn check_fingerprint(bytes: &[u8], at: usize) -> Result<(), DecodeError> {
    let stored = be32(bytes, at + ATTR_HEADER_LEN);
    if integrity::fingerprint(&bytes[..at]) == stored {
        Ok(())
    } else {
        Err(DecodeError::BadFingerprint)
    }
}

/// The attribute starting at `offset`: type, unpadded value, offset of the next one.
///
/// Bounds are re-checked with `get` so a bug in the caller yields `None`, not a panic.
fn attribute_at(bytes: &[u8], offset: usize) -> Option<(AttrType, &[u8], usize)> {
    let header = bytes.get(offset..offset + ATTR_HEADER_LEN)?;
    let typ = AttrType(be16(header, 0));
    let len = usize::from(be16(header, 2));
    let value_at = offset + ATTR_HEADER_LEN;
    let value = bytes.get(value_at..value_at + len)?;
    Some((typ, value, value_at + padded(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_matches_rfc_examples() {
        // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111, indication 0x0011.
        assert_eq!(message_type(Class::Request, Method::BINDING), 0x0001);
        assert_eq!(message_type(Class::Success, Method::BINDING), 0x0101);
        assert_eq!(message_type(Class::Error, Method::BINDING), 0x0111);
        assert_eq!(message_type(Class::Indication, Method::BINDING), 0x0011);
        assert_eq!(message_type(Class::Indication, Method::SEND), 0x0016);
    }

    #[test]
    fn message_type_splits_back_for_every_method_and_class() {
        for m in 0..=0x0FFF {
            let method = Method::new(m).unwrap();
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                let t = message_type(class, method);
                assert_eq!(t & 0xC000, 0);
                assert_eq!(split_message_type(t), (class, method));
            }
        }
    }

    #[test]
    fn method_above_12_bits_is_rejected() {
        assert_eq!(Method::new(0x1000), None);
        assert_eq!(Method::new(0x0FFF).map(Method::value), Some(0x0FFF));
    }
}
