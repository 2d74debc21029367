//! Keys and checksums: long-term key, MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32).
//!
//! RFC 8489 §9.2.2 (key), §14.5 (MESSAGE-INTEGRITY), §14.7 (FINGERPRINT).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// XORed into the CRC-32 so a STUN FINGERPRINT differs from a plain CRC of the same bytes.
const FINGERPRINT_XOR: u32 = 0x5354_554E;

type HmacSha1 = Hmac<Sha1>;

/// The long-term credential key: MD5(username ":" realm ":" password).
///
/// The strings are used as given: SASLprep/OpaqueString processing is the caller's business.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    Md5::new()
        .chain_update(username)
        .chain_update(":")
        .chain_update(realm)
        .chain_update(":")
        .chain_update(password)
        .finalize()
        .into()
}

/// HMAC-SHA1 over `prefix` (the message up to MESSAGE-INTEGRITY) with its length field replaced
/// by `covered_len`, the length that ends right after MESSAGE-INTEGRITY.
pub(crate) fn message_integrity(key: &[u8], prefix: &[u8], covered_len: u16) -> [u8; 20] {
    mac_over(key, prefix, covered_len)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of `tag` against the HMAC that [`message_integrity`] would compute.
pub(crate) fn verify_message_integrity(
    key: &[u8],
    prefix: &[u8],
    covered_len: u16,
    tag: &[u8],
) -> bool {
    mac_over(key, prefix, covered_len).verify_slice(tag).is_ok()
}

/// The FINGERPRINT value of `prefix`, the message up to FINGERPRINT with its final length field.
pub(crate) fn fingerprint(prefix: &[u8]) -> u32 {
    crc32fast::hash(prefix) ^ FINGERPRINT_XOR
}

/// Feeds the message to an HMAC in three slices so the length field is adjusted without a copy.
fn mac_over(key: &[u8], prefix: &[u8], covered_len: u16) -> HmacSha1 {
    // HMAC accepts keys of any length; `new_from_slice` only fails for fixed-size-key MACs.
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(&prefix[..2]);
    mac.update(&covered_len.to_be_bytes());
    mac.update(&prefix[4..]);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_key_is_md5_of_joined_fields() {
        // MD5("user:realm:pass") computed independently with `printf 'user:realm:pass' | md5sum`.
        let key = long_term_key("user", "realm", "pass");
        assert_eq!(hex(&key), "8493fbc53ba582fb4c044c456bdc40eb");
    }

    #[test]
    fn fingerprint_is_crc32_xor_stun() {
        // CRC-32 of "123456789" is the classic check value 0xCBF43926.
        assert_eq!(fingerprint(b"123456789"), 0xCBF4_3926 ^ 0x5354_554E);
    }

    #[test]
    fn verify_rejects_a_flipped_bit() {
        let prefix = [0u8; 24];
        let tag = message_integrity(b"key", &prefix, 28);
        assert!(verify_message_integrity(b"key", &prefix, 28, &tag));
        let mut bad = tag;
        bad[19] ^= 1;
        assert!(!verify_message_integrity(b"key", &prefix, 28, &bad));
        assert!(!verify_message_integrity(b"key", &prefix, 28, &tag[..19]));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
