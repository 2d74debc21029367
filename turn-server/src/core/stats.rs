//! Live counters of one core, read by the driver for `/metrics`.

use super::auth::AuthFailure;

/// Monotonic counters (and two gauges) of a [`super::Server`].
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub allocations_active: u64,
    pub allocations_created: u64,
    pub allocations_expired: u64,
    pub permissions_active: u64,
    pub channels_active: u64,
    /// Client -> peer.
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    /// Peer -> client.
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    pub auth_failures: [u64; AuthFailure::ALL.len()],
    pub quota_rejections: u64,
    pub denied_peers: u64,
    pub bandwidth_drops: u64,
    pub malformed: u64,
    pub bindings: u64,
}

impl Stats {
    pub fn auth_failed(&mut self, why: AuthFailure) {
        if let Some(i) = AuthFailure::ALL.iter().position(|f| *f == why) {
            self.auth_failures[i] += 1;
        }
    }
}
