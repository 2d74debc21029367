//! One allocation's state: relay address, lifetime, permissions, channels, bandwidth budget.

use rustc_hash::FxHashMap as HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::auth::Key;
use super::{ClientAddr, TransactionId};
use crate::proto::ChannelNumber;

/// Lifetime of a permission (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Most permissions, and most channels, one allocation may hold: bounds its memory.
pub const MAX_PEERS_PER_ALLOCATION: usize = 256;
/// Lifetime of a channel binding (RFC 8656 §11).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Allocation {
    pub client: ClientAddr,
    /// Where the driver bound the relay socket.
    pub relay: SocketAddr,
    pub username: String,
    pub key: Key,
    pub expires: Instant,
    /// The Allocate transaction and its success response, for retransmissions (RFC 8656 §7.2).
    pub created_by: TransactionId,
    pub created_response: Vec<u8>,
    permissions: HashMap<IpAddr, Instant>,
    channels_by_number: HashMap<ChannelNumber, (SocketAddr, Instant)>,
    channels_by_peer: HashMap<SocketAddr, ChannelNumber>,
    budget: Budget,
}

impl Allocation {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: ClientAddr,
        relay: SocketAddr,
        username: String,
        key: Key,
        expires: Instant,
        created_by: TransactionId,
        bytes_per_sec: Option<u64>,
        now: Instant,
    ) -> Self {
        Self {
            client,
            relay,
            username,
            key,
            expires,
            created_by,
            created_response: Vec::new(),
            permissions: HashMap::default(),
            channels_by_number: HashMap::default(),
            channels_by_peer: HashMap::default(),
            budget: Budget::new(bytes_per_sec, now),
        }
    }

    pub fn permit(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .insert(ip.to_canonical(), now + PERMISSION_LIFETIME)
            .is_none()
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .get(&ip.to_canonical())
            .is_some_and(|&until| now < until)
    }

    /// Whether `number` may be bound to `peer`: each side free or already bound to the other.
    pub fn can_bind(&self, number: ChannelNumber, peer: SocketAddr) -> bool {
        let by_number = self.channels_by_number.get(&number).map(|(p, _)| *p);
        let by_peer = self.channels_by_peer.get(&peer).copied();
        by_number.is_none_or(|p| p == peer) && by_peer.is_none_or(|n| n == number)
    }

    /// Binds or refreshes a channel; returns whether it is new.
    pub fn bind(&mut self, number: ChannelNumber, peer: SocketAddr, now: Instant) -> bool {
        self.channels_by_peer.insert(peer, number);
        self.channels_by_number
            .insert(number, (peer, now + CHANNEL_LIFETIME))
            .is_none()
    }

    pub fn channel_peer(&self, number: ChannelNumber, now: Instant) -> Option<SocketAddr> {
        self.channels_by_number
            .get(&number)
            .filter(|(_, until)| now < *until)
            .map(|(peer, _)| *peer)
    }

    pub fn channel_for(&self, peer: SocketAddr) -> Option<ChannelNumber> {
        self.channels_by_peer.get(&peer).copied()
    }

    /// Whether installing these peers stays within [`MAX_PEERS_PER_ALLOCATION`].
    pub fn has_room_for(&self, peers: &[SocketAddr], channel: bool) -> bool {
        let new_ips = peers
            .iter()
            .filter(|p| !self.permissions.contains_key(&p.ip().to_canonical()))
            .count();
        let new_channel = channel && peers.iter().any(|p| !self.channels_by_peer.contains_key(p));
        self.permissions.len() + new_ips <= MAX_PEERS_PER_ALLOCATION
            && self.channels_by_number.len() + usize::from(new_channel) <= MAX_PEERS_PER_ALLOCATION
    }

    pub fn permission_count(&self) -> usize {
        self.permissions.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels_by_number.len()
    }

    /// Drops expired permissions and channels; returns how many of each went.
    pub fn expire(&mut self, now: Instant) -> (usize, usize) {
        let (perms, chans) = (self.permissions.len(), self.channels_by_number.len());
        self.permissions.retain(|_, until| now < *until);
        let peers = &mut self.channels_by_peer;
        self.channels_by_number.retain(|_, (peer, until)| {
            let keep = now < *until;
            if !keep {
                peers.remove(peer);
            }
            keep
        });
        (
            perms - self.permissions.len(),
            chans - self.channels_by_number.len(),
        )
    }

    /// The earliest moment something of this allocation expires.
    pub fn next_deadline(&self) -> Instant {
        let perms = self.permissions.values().copied();
        let chans = self.channels_by_number.values().map(|(_, until)| *until);
        perms.chain(chans).fold(self.expires, Instant::min)
    }

    /// Takes `bytes` from the bandwidth budget; false means drop the packet.
    pub fn spend(&mut self, bytes: usize, now: Instant) -> bool {
        self.budget.spend(bytes as u64, now)
    }
}

/// A token bucket of bytes per second with one second of burst; unlimited when `None`.
#[derive(Debug)]
struct Budget {
    rate: Option<u64>,
    tokens: u64,
    refilled: Instant,
}

impl Budget {
    fn new(rate: Option<u64>, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.unwrap_or(0),
            refilled: now,
        }
    }

    fn spend(&mut self, bytes: u64, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = (elapsed.as_micros() as u64).saturating_mul(rate) / 1_000_000;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(rate);
            self.refilled = now;
        }
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refills_over_time_with_one_second_of_burst() {
        let t0 = Instant::now();
        let mut budget = Budget::new(Some(1000), t0);
        assert!(budget.spend(600, t0));
        assert!(!budget.spend(600, t0));
        assert!(budget.spend(600, t0 + Duration::from_millis(300)));
        assert!(!budget.spend(1001, t0 + Duration::from_secs(10)));
        assert!(budget.spend(1000, t0 + Duration::from_secs(10)));
        let mut free = Budget::new(None, t0);
        assert!(free.spend(u64::MAX, t0));
    }
}
