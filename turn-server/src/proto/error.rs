//! Errors of the wire codec: one enum for bytes that came in, one for values going out.

/// Why bytes from the wire are not an acceptable STUN message or ChannelData frame.
///
/// Every malformed input maps to one of these; the codec never panics on wire data. A server answers
/// most of them with 400 (or drops the packet), [`DecodeError::BadIntegrity`] with 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed header (20 for STUN, 4 for ChannelData).
    #[error("truncated header: {len} bytes")]
    TruncatedHeader {
        /// Bytes that were available.
        len: usize,
    },
    /// The first two bits are neither `00` (STUN) nor `01` (ChannelData).
    #[error("not a STUN message or ChannelData frame (first byte {0:#04x})")]
    NotStun(u8),
    /// The magic cookie field is not 0x2112A442 (RFC 8489 §5).
    #[error("bad magic cookie {0:#010x}")]
    BadMagicCookie(u32),
    /// The message length field is not a multiple of 4.
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(u16),
    /// The length field disagrees with the number of bytes given.
    #[error("length field says {declared} bytes after the header, buffer has {actual}")]
    LengthMismatch {
        /// Bytes the header (or ChannelData length) announces after the header.
        declared: usize,
        /// Bytes actually present after the header.
        actual: usize,
    },
    /// An attribute's value (with its padding) runs past the end of the message.
    #[error("attribute {0:#06x} overruns the message")]
    AttributeOverrun(u16),
    /// A known attribute has a value of the wrong size or content.
    #[error("invalid attribute {attr:#06x}: {reason}")]
    InvalidAttribute {
        /// The attribute type.
        attr: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// The FINGERPRINT value does not match the message's CRC-32.
    #[error("FINGERPRINT mismatch")]
    BadFingerprint,
    /// Integrity was checked but the message carries no MESSAGE-INTEGRITY.
    #[error("no MESSAGE-INTEGRITY attribute")]
    MissingIntegrity,
    /// MESSAGE-INTEGRITY does not match the key.
    #[error("MESSAGE-INTEGRITY mismatch")]
    BadIntegrity,
    /// A ChannelData frame or CHANNEL-NUMBER outside 0x4000..=0x7FFE (RFC 8656 §12, RFC 5766).
    #[error("channel number {0:#06x} outside 0x4000..=0x7FFE")]
    BadChannelNumber(u16),
}

/// Why a message could not be encoded; the builder leaves the output buffer as it found it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An attribute value does not fit the 16-bit length field.
    #[error("attribute {attr:#06x} value of {len} bytes exceeds 65535")]
    AttributeTooLong {
        /// The attribute type.
        attr: u16,
        /// The value length that was attempted.
        len: usize,
    },
    /// The attributes together exceed the 16-bit message length field.
    #[error("message body exceeds 65535 bytes")]
    MessageTooLong,
    /// A value the wire format cannot carry (an error code outside 300..=699, an over-long text).
    #[error("invalid value for attribute {attr:#06x}: {reason}")]
    InvalidValue {
        /// The attribute type.
        attr: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// ChannelData payload larger than its 16-bit length field.
    #[error("ChannelData payload of {0} bytes exceeds 65535")]
    ChannelDataTooLong(usize),
    /// An attribute added after FINGERPRINT, or after MESSAGE-INTEGRITY where receivers ignore it.
    #[error("attribute {0:#06x} added after MESSAGE-INTEGRITY or FINGERPRINT")]
    Misordered(u16),
}
