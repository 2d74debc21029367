//! Where allocations get their TURN REST credentials: minted from a shared secret, or fetched
//! from a signal-server `/turn-credentials` URL as apps do.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::turn_auth::{SharedSecret, mint};
use serde_json::Value;

use super::CredentialSource;

/// A ready credential source.
pub(crate) enum Source {
    Secret(SharedSecret),
    Url(reqwest::Client, String),
}

impl Source {
    pub(crate) fn new(from: &CredentialSource) -> Result<Self, String> {
        match from {
            CredentialSource::Secret(s) => SharedSecret::new(s.clone())
                .map(Self::Secret)
                .map_err(|_| "empty_secret".to_owned()),
            CredentialSource::Url(url) => Ok(Self::Url(reqwest::Client::new(), url.clone())),
        }
    }

    /// A username and password for one allocation.
    pub(super) async fn credential(&self, timeout: Duration) -> Result<(String, String), String> {
        match self {
            Self::Secret(secret) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let cred = mint(secret, Some("loadtest"), Duration::from_secs(3600), now)
                    .map_err(|e| e.to_string())?;
                Ok((cred.username, cred.credential))
            }
            Self::Url(http, url) => {
                let response = http
                    .get(url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|_| "credentials_http".to_owned())?;
                if !response.status().is_success() {
                    return Err(format!("credentials_{}", response.status().as_u16()));
                }
                let body: Value = response
                    .json()
                    .await
                    .map_err(|_| "credentials_body".to_owned())?;
                let servers = body["iceServers"].as_array().cloned().unwrap_or_default();
                servers
                    .iter()
                    .find_map(|s| {
                        Some((
                            s["username"].as_str()?.to_owned(),
                            s["credential"].as_str()?.to_owned(),
                        ))
                    })
                    .ok_or_else(|| "credentials_missing".to_owned())
            }
        }
    }
}
