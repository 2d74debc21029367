//! Encoding STUN messages straight into a caller's reusable buffer.

use super::attr_type::AttrType;
use super::attributes::Attribute;
use super::error::EncodeError;
use super::integrity;
use super::message::{
    ATTR_HEADER_LEN, Class, FINGERPRINT_LEN, HEADER_LEN, INTEGRITY_LEN, MAGIC_COOKIE, Method,
    TransactionId, message_type, padded,
};

/// Writes one STUN message at the end of a `Vec<u8>`, attribute by attribute, with no temporary
/// buffers.
///
/// Bytes already in the vector are kept, so a caller can reserve headroom or batch messages. The
/// header length is kept current after every attribute, which is what lets
/// [`MessageBuilder::message_integrity`] and [`MessageBuilder::fingerprint`] hash the buffer in
/// place. Errors are sticky: the first one truncates the buffer back to where the message began,
/// later calls do nothing, and [`MessageBuilder::finish`] reports it.
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    transaction_id: TransactionId,
    padding: u8,
    stage: Stage,
    error: Option<EncodeError>,
}

/// Where the builder is relative to the integrity attributes, which constrain what may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Open,
    AfterIntegrity,
    AfterIntegritySha256,
    Sealed,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message at the end of `buf`.
    pub fn new(
        buf: &'b mut Vec<u8>,
        class: Class,
        method: Method,
        transaction_id: TransactionId,
    ) -> Self {
        let start = buf.len();
        buf.extend(message_type(class, method).to_be_bytes());
        buf.extend([0, 0]);
        buf.extend(MAGIC_COOKIE.to_be_bytes());
        buf.extend(transaction_id.0);
        Self {
            buf,
            start,
            transaction_id,
            padding: 0,
            stage: Stage::Open,
            error: None,
        }
    }

    /// Sets the byte used to pad attribute values to 4 bytes (default 0, as RFC 8489 §14 requires).
    ///
    /// Exists to reproduce RFC 5769's vectors byte for byte: they were made when padding content
    /// was free and pad with spaces (0x20).
    pub fn padding_byte(&mut self, byte: u8) -> &mut Self {
        self.padding = byte;
        self
    }

    /// Appends `attr`. MESSAGE-INTEGRITY and FINGERPRINT values are written as given; use
    /// [`Self::message_integrity`] and [`Self::fingerprint`] to compute them.
    pub fn add(&mut self, attr: &Attribute<'_>) -> &mut Self {
        let Some(at) = self.begin(attr.attr_type()) else {
            return self;
        };
        match attr.write_value(&self.transaction_id, self.buf) {
            Ok(()) => self.end(at),
            Err(e) => self.fail(e),
        }
    }

    /// Appends an attribute of any type with a ready-made value.
    pub fn add_raw(&mut self, typ: AttrType, value: &[u8]) -> &mut Self {
        if let Some(at) = self.begin(typ) {
            self.buf.extend_from_slice(value);
            self.end(at);
        }
        self
    }

    /// Appends MESSAGE-INTEGRITY computed with `key` over everything before it (RFC 8489 §14.5).
    pub fn message_integrity(&mut self, key: &[u8]) -> &mut Self {
        let Some(at) = self.begin(AttrType::MESSAGE_INTEGRITY) else {
            return self;
        };
        // `begin` already wrote the attribute header; only the value is still to come.
        let Some(covered) = self.body_len_with(INTEGRITY_LEN) else {
            return self.fail(EncodeError::MessageTooLong);
        };
        let tag = integrity::message_integrity(key, &self.buf[self.start..at], covered);
        self.buf.extend_from_slice(&tag);
        self.end(at)
    }

    /// Appends FINGERPRINT over everything before it; nothing may follow (RFC 8489 §14.7).
    pub fn fingerprint(&mut self) -> &mut Self {
        let Some(at) = self.begin(AttrType::FINGERPRINT) else {
            return self;
        };
        let Some(total) = self.body_len_with(FINGERPRINT_LEN) else {
            return self.fail(EncodeError::MessageTooLong);
        };
        // The CRC covers the header with its final length, so set that first.
        self.set_body_len(total);
        let crc = integrity::fingerprint(&self.buf[self.start..at]);
        self.buf.extend(crc.to_be_bytes());
        self.end(at)
    }

    /// Ends the message and returns its bytes, or the first error met.
    pub fn finish(self) -> Result<&'b [u8], EncodeError> {
        let Self {
            buf, start, error, ..
        } = self;
        match error {
            Some(e) => Err(e),
            None => {
                let buf: &'b Vec<u8> = buf;
                Ok(&buf[start..])
            }
        }
    }

    /// Checks ordering and writes an attribute header with a zero length; returns its offset.
    fn begin(&mut self, typ: AttrType) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        let allowed = match self.stage {
            Stage::Open => true,
            Stage::AfterIntegrity => matches!(
                typ,
                AttrType::MESSAGE_INTEGRITY_SHA256 | AttrType::FINGERPRINT
            ),
            Stage::AfterIntegritySha256 => typ == AttrType::FINGERPRINT,
            Stage::Sealed => false,
        };
        if !allowed {
            self.fail(EncodeError::Misordered(typ.0));
            return None;
        }
        self.stage = match typ {
            AttrType::MESSAGE_INTEGRITY => Stage::AfterIntegrity,
            AttrType::MESSAGE_INTEGRITY_SHA256 => Stage::AfterIntegritySha256,
            AttrType::FINGERPRINT => Stage::Sealed,
            _ => self.stage,
        };
        let at = self.buf.len();
        self.buf.extend(typ.0.to_be_bytes());
        self.buf.extend([0, 0]);
        Some(at)
    }

    /// Patches the length of the attribute at `at`, pads it and updates the message length.
    fn end(&mut self, at: usize) -> &mut Self {
        let value_len = self.buf.len() - at - ATTR_HEADER_LEN;
        let Ok(len) = u16::try_from(value_len) else {
            let attr = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
            return self.fail(EncodeError::AttributeTooLong {
                attr,
                len: value_len,
            });
        };
        self.buf[at + 2..at + ATTR_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        let fill = padded(value_len) - value_len;
        self.buf.extend(std::iter::repeat_n(self.padding, fill));
        match self.body_len_with(0) {
            Some(body) => self.set_body_len(body),
            None => return self.fail(EncodeError::MessageTooLong),
        }
        self
    }

    /// Length of the message body plus `extra` bytes, if it fits the 16-bit length field.
    fn body_len_with(&self, extra: usize) -> Option<u16> {
        u16::try_from(self.buf.len() - self.start - HEADER_LEN + extra).ok()
    }

    fn set_body_len(&mut self, len: u16) {
        let at = self.start + 2;
        self.buf[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }

    fn fail(&mut self, error: EncodeError) -> &mut Self {
        self.buf.truncate(self.start);
        self.error = Some(error);
        self
    }
}
