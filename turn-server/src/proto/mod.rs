//! Sans-IO wire codec for STUN (RFC 8489) and TURN (RFC 8656): bytes in, typed values out, and back.
//!
//! Decoding borrows from the input and does not allocate; encoding appends to a caller's `Vec<u8>`.
//! Nothing here touches sockets, clocks or allocation state. Any input, however malformed, yields a
//! [`DecodeError`] rather than a panic.

mod attr_type;
mod attributes;
mod builder;
mod channel_data;
mod error;
mod integrity;
mod message;

pub use attr_type::AttrType;
pub use attributes::{AddressFamily, AttrTypeList, Attribute, ErrorCode, PROTOCOL_UDP};
pub use builder::MessageBuilder;
pub use channel_data::{
    CHANNEL_DATA_HEADER_LEN, ChannelData, ChannelNumber, channel_data_header, peek_frame_len,
};
pub use error::{DecodeError, EncodeError};
pub use integrity::long_term_key;
pub use message::{
    Class, HEADER_LEN, MAGIC_COOKIE, Message, Method, RawAttribute, RawAttributes, TransactionId,
};

/// One packet from a TURN client: a STUN message or a ChannelData frame.
#[derive(Clone, Copy, Debug)]
pub enum Packet<'a> {
    /// A STUN message (first two bits `00`).
    Stun(Message<'a>),
    /// A ChannelData frame (first two bits `01`).
    ChannelData(ChannelData<'a>),
}

impl<'a> Packet<'a> {
    /// Tells the two apart by their first two bits (RFC 8656 §12) and decodes accordingly.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match bytes.first().map(|b| b & 0xC0) {
            Some(0x40) => ChannelData::decode(bytes).map(Self::ChannelData),
            _ => Message::decode(bytes).map(Self::Stun),
        }
    }
}
