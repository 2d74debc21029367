//! Attribute type numbers (IANA "STUN Attributes" registry) and which ones the codec knows.

/// An attribute type number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrType(pub u16);

impl AttrType {
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub const MAPPED_ADDRESS: Self = Self(0x0001);
    /// USERNAME (RFC 8489 §14.3).
    pub const USERNAME: Self = Self(0x0006);
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5).
    pub const MESSAGE_INTEGRITY: Self = Self(0x0008);
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: Self = Self(0x0009);
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    pub const UNKNOWN_ATTRIBUTES: Self = Self(0x000A);
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    pub const CHANNEL_NUMBER: Self = Self(0x000C);
    /// LIFETIME (RFC 8656 §18.2).
    pub const LIFETIME: Self = Self(0x000D);
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    pub const XOR_PEER_ADDRESS: Self = Self(0x0012);
    /// DATA (RFC 8656 §18.4).
    pub const DATA: Self = Self(0x0013);
    /// REALM (RFC 8489 §14.9).
    pub const REALM: Self = Self(0x0014);
    /// NONCE (RFC 8489 §14.10).
    pub const NONCE: Self = Self(0x0015);
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub const XOR_RELAYED_ADDRESS: Self = Self(0x0016);
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
    pub const REQUESTED_ADDRESS_FAMILY: Self = Self(0x0017);
    /// EVEN-PORT (RFC 8656 §18.7).
    pub const EVEN_PORT: Self = Self(0x0018);
    /// REQUESTED-TRANSPORT (RFC 8656 §18.8).
    pub const REQUESTED_TRANSPORT: Self = Self(0x0019);
    /// DONT-FRAGMENT (RFC 8656 §18.9).
    pub const DONT_FRAGMENT: Self = Self(0x001A);
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    pub const MESSAGE_INTEGRITY_SHA256: Self = Self(0x001C);
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: Self = Self(0x0020);
    /// RESERVATION-TOKEN (RFC 8656 §18.10).
    pub const RESERVATION_TOKEN: Self = Self(0x0022);
    /// PRIORITY (RFC 8445 §16.1).
    pub const PRIORITY: Self = Self(0x0024);
    /// USE-CANDIDATE (RFC 8445 §16.1).
    pub const USE_CANDIDATE: Self = Self(0x0025);
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
    pub const ADDITIONAL_ADDRESS_FAMILY: Self = Self(0x8000);
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: Self = Self(0x8022);
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub const ALTERNATE_SERVER: Self = Self(0x8023);
    /// FINGERPRINT (RFC 8489 §14.7).
    pub const FINGERPRINT: Self = Self(0x8028);
    /// ICE-CONTROLLED (RFC 8445 §16.1).
    pub const ICE_CONTROLLED: Self = Self(0x8029);
    /// ICE-CONTROLLING (RFC 8445 §16.1).
    pub const ICE_CONTROLLING: Self = Self(0x802A);

    /// Whether a receiver that does not know this type must reject the message (type < 0x8000).
    pub const fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Whether [`super::Attribute::decode`] has a typed form for this type.
    pub const fn is_known(self) -> bool {
        matches!(self.0, 0x0001 | 0x0006 | 0x0008..=0x000A | 0x000C | 0x000D)
            || matches!(
                self.0,
                0x0012..=0x001A | 0x001C | 0x0020 | 0x0022 | 0x0024 | 0x0025
            )
            || matches!(self.0, 0x8000 | 0x8022 | 0x8023 | 0x8028..=0x802A)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comprehension_range_splits_at_0x8000() {
        assert!(AttrType(0x7FFF).is_comprehension_required());
        assert!(!AttrType(0x8000).is_comprehension_required());
    }

    #[test]
    fn every_named_type_is_known_and_nothing_else_nearby() {
        let named = [
            0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015,
            0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x001C, 0x0020, 0x0022, 0x0024, 0x0025, 0x8000,
            0x8022, 0x8023, 0x8028, 0x8029, 0x802A,
        ];
        for t in 0..=0x8100u16 {
            assert_eq!(AttrType(t).is_known(), named.contains(&t), "{t:#06x}");
        }
    }
}
