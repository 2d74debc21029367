//! ChannelData frames (RFC 8656 §12.4, §12.5) and stream framing for TCP/TLS readers.

use super::error::{DecodeError, EncodeError};
use super::message::{HEADER_LEN, MAGIC_COOKIE, be16, be32, padded};

/// Size of the ChannelData header: channel number and data length.
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// A channel number: 0x4000..=0x7FFE. RFC 8656 §12 gives clients 0x4000..=0x4FFF, but RFC 5766
/// allowed up to 0x7FFE and deployed clients (coturn's own test client among them) still use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(u16);

impl ChannelNumber {
    /// The lowest valid channel number.
    pub const MIN: Self = Self(0x4000);
    /// The highest valid channel number.
    pub const MAX: Self = Self(0x7FFE);

    /// A channel number, `None` outside 0x4000..=0x7FFE.
    pub const fn new(value: u16) -> Option<Self> {
        if value >= Self::MIN.0 && value <= Self::MAX.0 {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The number as on the wire.
    pub const fn value(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for ChannelNumber {
    type Error = DecodeError;

    fn try_from(value: u16) -> Result<Self, Self::Error> {
        Self::new(value).ok_or(DecodeError::BadChannelNumber(value))
    }
}

/// A decoded ChannelData frame borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel the data travels on.
    pub channel: ChannelNumber,
    /// The application data, padding excluded.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Decodes one frame; up to 3 trailing padding bytes are accepted (required over TCP, optional
    /// over UDP per RFC 8656 §12.5), anything else after the data is an error.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() < CHANNEL_DATA_HEADER_LEN {
            return Err(DecodeError::TruncatedHeader { len: bytes.len() });
        }
        let number = be16(bytes, 0);
        if number & 0xC000 != 0x4000 {
            return Err(DecodeError::NotStun(bytes[0]));
        }
        let channel = ChannelNumber::try_from(number)?;
        let len = usize::from(be16(bytes, 2));
        let actual = bytes.len() - CHANNEL_DATA_HEADER_LEN;
        if actual != len && actual != padded(len) {
            return Err(DecodeError::LengthMismatch {
                declared: len,
                actual,
            });
        }
        let data = &bytes[CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len];
        Ok(Self { channel, data })
    }

    /// Appends this frame to `out`, padded to a multiple of 4 when `pad` (TCP/TLS) is set.
    ///
    /// Fails, leaving `out` untouched, when the data exceeds 65535 bytes.
    pub fn encode(&self, out: &mut Vec<u8>, pad: bool) -> Result<(), EncodeError> {
        let header = channel_data_header(self.channel, self.data.len())
            .ok_or(EncodeError::ChannelDataTooLong(self.data.len()))?;
        out.extend_from_slice(&header);
        out.extend_from_slice(self.data);
        if pad {
            let fill = padded(self.data.len()) - self.data.len();
            out.extend_from_slice(&[0; 3][..fill]);
        }
        Ok(())
    }
}

/// The 4 header bytes of a ChannelData frame carrying `len` bytes, `None` if `len` > 65535.
///
/// A relay writes these into headroom kept in front of a received payload, so forwarding needs no
/// allocation and no copy of the data.
pub fn channel_data_header(channel: ChannelNumber, len: usize) -> Option<[u8; 4]> {
    let len = u16::try_from(len).ok()?;
    let [c0, c1] = channel.0.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    Some([c0, c1, l0, l1])
}

/// How many bytes the STUN message or ChannelData frame at the start of a TCP/TLS stream needs.
///
/// `Ok(None)`: too few bytes buffered to tell, read more. `Ok(Some(n))`: the frame is `n` bytes
/// (ChannelData including its padding, RFC 8656 §12.5); once `n` are buffered, parse `&buf[..n]`.
/// `Err`: the stream carries neither, so the connection should be closed. Checks made here are
/// only those that decide framing; the parse does the rest.
pub fn peek_frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first & 0xC0 {
        0x00 => peek_stun_len(buf),
        0x40 => peek_channel_data_len(buf),
        _ => Err(DecodeError::NotStun(first)),
    }
}

fn peek_stun_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be16(buf, 2);
    if !len.is_multiple_of(4) {
        return Err(DecodeError::UnalignedLength(len));
    }
    // A wrong cookie means the stream lost framing; say so now instead of waiting for the frame.
    if buf.len() >= 8 && be32(buf, 4) != MAGIC_COOKIE {
        return Err(DecodeError::BadMagicCookie(be32(buf, 4)));
    }
    Ok(Some(HEADER_LEN + usize::from(len)))
}

fn peek_channel_data_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    ChannelNumber::try_from(be16(buf, 0))?;
    if buf.len() < CHANNEL_DATA_HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(be16(buf, 2));
    Ok(Some(CHANNEL_DATA_HEADER_LEN + padded(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_number_range_is_inclusive() {
        assert_eq!(ChannelNumber::new(0x3FFF), None);
        assert_eq!(ChannelNumber::new(0x4000), Some(ChannelNumber::MIN));
        assert_eq!(ChannelNumber::new(0x7FFE), Some(ChannelNumber::MAX));
        assert_eq!(ChannelNumber::new(0x7FFF), None);
    }

    #[test]
    fn header_rejects_oversized_payload() {
        assert_eq!(channel_data_header(ChannelNumber::MIN, 65_536), None);
        assert_eq!(
            channel_data_header(ChannelNumber::MIN, 5),
            Some([0x40, 0x00, 0x00, 0x05])
        );
    }

    #[test]
    fn peek_needs_two_bytes_for_channel_and_four_for_length() {
        assert_eq!(peek_frame_len(&[]), Ok(None));
        assert_eq!(peek_frame_len(&[0x40]), Ok(None));
        assert_eq!(peek_frame_len(&[0x40, 0x01, 0x00]), Ok(None));
        assert_eq!(peek_frame_len(&[0x40, 0x01, 0x00, 0x05]), Ok(Some(12)));
        assert_eq!(
            peek_frame_len(&[0x7F, 0xFF]),
            Err(DecodeError::BadChannelNumber(0x7FFF))
        );
    }
}
