//! Who may allocate: TURN REST credentials (shared secrets, checked with `common::turn_auth`)
//! and static long-term users; and stateless nonces (RFC 8489 §9.2).

use std::collections::HashMap;
use std::net::IpAddr;

use common::turn_auth::{CredentialError, SharedSecret, candidate_credentials};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::proto::long_term_key;

/// A long-term key: MD5(username:realm:password).
pub type Key = [u8; 16];

/// The credentials a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// TURN REST shared secrets, newest first; usernames are `<expiry>[:<user>]`.
    pub secrets: Vec<SharedSecret>,
    /// Static users: username -> password.
    pub users: HashMap<String, String>,
}

/// Why a request's credentials were refused, for metrics and logs (never the secret itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// No MESSAGE-INTEGRITY: the client is expected to retry with credentials.
    Missing,
    /// USERNAME, REALM or NONCE missing or malformed.
    BadRequest,
    UnknownUser,
    Expired,
    BadIntegrity,
    StaleNonce,
    /// A request on an allocation with a different username.
    WrongCredentials,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::BadRequest => "bad_request",
            Self::UnknownUser => "unknown_user",
            Self::Expired => "expired",
            Self::BadIntegrity => "bad_integrity",
            Self::StaleNonce => "stale_nonce",
            Self::WrongCredentials => "wrong_credentials",
        }
    }

    pub const ALL: [Self; 7] = [
        Self::Missing,
        Self::BadRequest,
        Self::UnknownUser,
        Self::Expired,
        Self::BadIntegrity,
        Self::StaleNonce,
        Self::WrongCredentials,
    ];
}

impl Credentials {
    /// The keys `username` may be using, in the order to try them; empty if unknown.
    pub fn candidate_keys(
        &self,
        username: &str,
        realm: &str,
        now_unix: u64,
    ) -> Result<Vec<Key>, AuthFailure> {
        if let Some(password) = self.users.get(username) {
            return Ok(vec![long_term_key(username, realm, password)]);
        }
        match candidate_credentials(&self.secrets, username, now_unix) {
            Ok(passwords) => Ok(passwords
                .iter()
                .map(|password| long_term_key(username, realm, password))
                .collect()),
            Err(CredentialError::Expired) => Err(AuthFailure::Expired),
            Err(_) => Err(AuthFailure::UnknownUser),
        }
    }
}

/// Mints and checks nonces without server state: `<expiry hex>.<HMAC(expiry, client ip) hex>`.
/// Binding the client address stops a nonce from being replayed by another host.
#[derive(Clone)]
pub struct Nonces {
    secret: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    pub fn new(secret: [u8; 32], lifetime_secs: u64) -> Self {
        Self {
            secret,
            lifetime_secs,
        }
    }

    pub fn mint(&self, client: IpAddr, now_unix: u64) -> String {
        let expiry = now_unix + self.lifetime_secs;
        format!("{expiry:x}.{}", self.tag(client, expiry))
    }

    /// Whether `nonce` was minted by us for `client` and has not expired.
    pub fn is_fresh(&self, nonce: &str, client: IpAddr, now_unix: u64) -> bool {
        let Some((expiry, tag)) = nonce.split_once('.') else {
            return false;
        };
        let Ok(expiry) = u64::from_str_radix(expiry, 16) else {
            return false;
        };
        // Compare MACs in constant time: recompute and verify through the MAC API.
        now_unix < expiry && self.verify_tag(client, expiry, tag)
    }

    fn mac(&self, client: IpAddr, expiry: u64) -> Hmac<Sha1> {
        let mut mac =
            Hmac::<Sha1>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(&expiry.to_be_bytes());
        match client.to_canonical() {
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac
    }

    fn tag(&self, client: IpAddr, expiry: u64) -> String {
        let bytes = self.mac(client, expiry).finalize().into_bytes();
        bytes[..10].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn verify_tag(&self, client: IpAddr, expiry: u64, tag: &str) -> bool {
        let Some(bytes) = decode_hex(tag) else {
            return false;
        };
        self.mac(client, expiry)
            .verify_truncated_left(&bytes)
            .is_ok()
            && bytes.len() == 10
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_expire_and_are_bound_to_the_client() {
        let nonces = Nonces::new([7; 32], 600);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let nonce = nonces.mint(a, 1_000);
        assert!(nonces.is_fresh(&nonce, a, 1_599));
        assert!(!nonces.is_fresh(&nonce, a, 1_600));
        assert!(!nonces.is_fresh(&nonce, b, 1_000));
        assert!(!nonces.is_fresh("zz.00", a, 1_000));
        assert!(!nonces.is_fresh(&nonce[..nonce.len() - 2], a, 1_000));
        let other = Nonces::new([8; 32], 600);
        assert!(!other.is_fresh(&nonce, a, 1_000));
    }

    #[test]
    fn rest_and_static_users() {
        let secret = SharedSecret::new("s3").unwrap();
        let creds = Credentials {
            secrets: vec![secret.clone()],
            users: [("alice".to_owned(), "pw".to_owned())].into(),
        };
        assert_eq!(
            creds.candidate_keys("alice", "r", 0).unwrap(),
            vec![long_term_key("alice", "r", "pw")]
        );
        let password = common::turn_auth::credential_for(&secret, "2000:bob");
        assert_eq!(
            creds.candidate_keys("2000:bob", "r", 1_999).unwrap(),
            vec![long_term_key("2000:bob", "r", &password)]
        );
        assert_eq!(
            creds.candidate_keys("2000:bob", "r", 2_000),
            Err(AuthFailure::Expired)
        );
        assert_eq!(
            creds.candidate_keys("mallory", "r", 0),
            Err(AuthFailure::UnknownUser)
        );
    }
}
