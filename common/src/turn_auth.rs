//! TURN REST API credentials (draft-uberti-behave-turn-rest, coturn `use-auth-secret`).
//!
//! username = `<expiry unix seconds>[:<user id>]`, credential = base64(HMAC-SHA1(secret, username)).
//! Time is always an argument so callers (and tests) decide what "now" is.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A shared secret; its `Debug` never shows the value so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(String);

impl SharedSecret {
    /// Wraps a secret; empty secrets are refused because they would make credentials forgeable.
    pub fn new(value: impl Into<String>) -> Result<Self, CredentialError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Self(value))
    }

    /// Parses a comma- or newline-separated list, newest first (the first one mints).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, CredentialError> {
        text.split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Self::new)
            .collect()
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// A minted username/credential pair, valid until `expires_at` (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub credential: String,
    pub expires_at: u64,
}

/// Why a REST username or credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("shared secret is empty")]
    EmptySecret,
    #[error("user id may not contain ':'")]
    BadUserId,
    #[error("username is not `<expiry>[:<user>]`")]
    Malformed,
    #[error("credential expired")]
    Expired,
    #[error("credential does not match any configured secret")]
    Mismatch,
    #[error("no shared secret configured")]
    NoSecrets,
}

/// Mints a credential valid for `ttl` from `now_unix` with the given secret.
pub fn mint(
    secret: &SharedSecret,
    user_id: Option<&str>,
    ttl: Duration,
    now_unix: u64,
) -> Result<Credential, CredentialError> {
    if user_id.is_some_and(|u| u.contains(':')) {
        return Err(CredentialError::BadUserId);
    }
    let expires_at = now_unix.saturating_add(ttl.as_secs());
    let username = match user_id {
        Some(user) if !user.is_empty() => format!("{expires_at}:{user}"),
        _ => expires_at.to_string(),
    };
    let credential = credential_for(secret, &username);
    Ok(Credential {
        username,
        credential,
        expires_at,
    })
}

/// The credential (password) a secret gives for `username`.
pub fn credential_for(secret: &SharedSecret, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose())
        .expect("HMAC-SHA1 accepts keys of any length");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Reads the expiry from a REST username and refuses it once `now_unix` has reached it.
pub fn check_expiry(username: &str, now_unix: u64) -> Result<u64, CredentialError> {
    let stamp = username.split(':').next().unwrap_or_default();
    let expires_at: u64 = stamp.parse().map_err(|_| CredentialError::Malformed)?;
    if now_unix >= expires_at {
        return Err(CredentialError::Expired);
    }
    Ok(expires_at)
}

/// The user id a REST username was minted for (`"{expiry}:{user}"`), or `None` when it names
/// no user (a bare expiry) or is not a REST username at all.
pub fn rest_user_id(username: &str) -> Option<&str> {
    let (stamp, user) = username.split_once(':')?;
    let is_stamp = !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit());
    (is_stamp && !user.is_empty()).then_some(user)
}

/// The credentials each configured secret yields for an unexpired username, newest secret first.
///
/// A TURN server needs these (not a yes/no) because it checks MESSAGE-INTEGRITY with each in turn.
pub fn candidate_credentials(
    secrets: &[SharedSecret],
    username: &str,
    now_unix: u64,
) -> Result<Vec<String>, CredentialError> {
    if secrets.is_empty() {
        return Err(CredentialError::NoSecrets);
    }
    check_expiry(username, now_unix)?;
    Ok(secrets
        .iter()
        .map(|secret| credential_for(secret, username))
        .collect())
}

/// Checks a username/credential pair against every configured secret (rotation) and its expiry.
pub fn verify(
    secrets: &[SharedSecret],
    username: &str,
    credential: &str,
    now_unix: u64,
) -> Result<(), CredentialError> {
    let candidates = candidate_credentials(secrets, username, now_unix)?;
    if candidates
        .iter()
        .any(|c| constant_time_eq(c.as_bytes(), credential.as_bytes()))
    {
        Ok(())
    } else {
        Err(CredentialError::Mismatch)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SharedSecret {
        SharedSecret::new(s).unwrap()
    }

    #[test]
    fn fixed_vector_matches_coturn_formula() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(
            credential_for(&secret("north"), "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }

    #[test]
    fn mint_then_verify_round_trips() {
        let s = secret("north");
        let c = mint(&s, Some("alice"), Duration::from_secs(60), 1_000).unwrap();
        assert_eq!(c.username, "1060:alice");
        assert_eq!(c.expires_at, 1060);
        verify(&[s], &c.username, &c.credential, 1_059).unwrap();
    }

    #[test]
    fn rest_user_id_is_the_part_after_the_expiry() {
        assert_eq!(rest_user_id("1060:alice"), Some("alice"));
        assert_eq!(rest_user_id("1060:a:b"), Some("a:b"));
        for no_user in ["1060", "1060:", "static", "x1:alice", ":alice"] {
            assert_eq!(rest_user_id(no_user), None, "{no_user}");
        }
    }

    #[test]
    fn expiry_is_enforced_at_the_second() {
        let s = secret("north");
        let c = mint(&s, None, Duration::from_secs(10), 100).unwrap();
        assert_eq!(c.username, "110");
        assert_eq!(
            verify(std::slice::from_ref(&s), &c.username, &c.credential, 110),
            Err(CredentialError::Expired)
        );
    }

    #[test]
    fn any_configured_secret_verifies_during_rotation() {
        let old = secret("old");
        let new = secret("new");
        let c = mint(&old, Some("u"), Duration::from_secs(60), 0).unwrap();
        verify(&[new.clone(), old], &c.username, &c.credential, 1).unwrap();
        assert_eq!(
            verify(&[new], &c.username, &c.credential, 1),
            Err(CredentialError::Mismatch)
        );
    }

    #[test]
    fn malformed_usernames_and_bad_input_are_refused() {
        let s = [secret("x")];
        assert_eq!(verify(&s, "alice", "c", 0), Err(CredentialError::Malformed));
        assert_eq!(verify(&s, "", "c", 0), Err(CredentialError::Malformed));
        assert_eq!(verify(&[], "10:a", "c", 0), Err(CredentialError::NoSecrets));
        assert_eq!(SharedSecret::new("  "), Err(CredentialError::EmptySecret));
        assert_eq!(
            mint(&s[0], Some("a:b"), Duration::ZERO, 0),
            Err(CredentialError::BadUserId)
        );
    }

    #[test]
    fn secret_lists_parse_newest_first_and_debug_is_redacted() {
        let list = SharedSecret::parse_list("new, old\nolder\n").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0], secret("new"));
        assert!(!format!("{list:?}").contains("new"));
    }
}
