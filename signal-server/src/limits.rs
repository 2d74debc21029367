//! Abuse limits: per-client-IP token buckets, watcher caps, and who the client is.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::ApiError;

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy)]
pub enum Bucket {
    Create,
    Write,
}

/// Token buckets keyed by client IP.
pub struct RateLimits {
    create: DefaultKeyedRateLimiter<IpAddr>,
    write: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimits {
    pub fn new(create_per_minute: u32, writes_per_second: u32) -> Self {
        let per_minute = NonZeroU32::new(create_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let per_second = NonZeroU32::new(writes_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        Self {
            create: RateLimiter::keyed(Quota::per_minute(per_minute)),
            write: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        }
    }

    /// Takes a token for `ip`, or says how long until one is free (429 + Retry-After).
    pub fn check(&self, bucket: Bucket, ip: IpAddr) -> Result<(), ApiError> {
        let limiter = match bucket {
            Bucket::Create => &self.create,
            Bucket::Write => &self.write,
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let what = match bucket {
                Bucket::Create => "room creations",
                Bucket::Write => "writes",
            };
            ApiError::too_many("rate_limited", format!("too many {what}; slow down"), wait)
        })
    }

    /// Forgets idle clients so the key maps stay bounded by recently active IPs.
    pub fn forget_idle(&self) {
        self.create.retain_recent();
        self.write.retain_recent();
        self.create.shrink_to_fit();
        self.write.shrink_to_fit();
    }
}

/// Counts of open watches per room and per client IP on this replica.
#[derive(Debug)]
pub struct WatchCaps {
    per_room: usize,
    per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    rooms: HashMap<String, usize>,
    ips: HashMap<IpAddr, usize>,
}

/// Holds one watcher's place; dropping it frees the place.
#[derive(Debug)]
pub struct WatchPermit {
    caps: Arc<WatchCaps>,
    room: String,
    ip: IpAddr,
}

impl WatchCaps {
    pub fn new(per_room: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            per_room,
            per_ip,
            counts: Mutex::default(),
        })
    }

    /// A place for one more watcher of `room` from `ip`, unless a cap is reached.
    pub fn admit(self: &Arc<Self>, room: &str, ip: IpAddr) -> Result<WatchPermit, ApiError> {
        let mut counts = self.counts.lock().expect("watch caps lock poisoned");
        let in_room = counts.rooms.get(room).copied().unwrap_or(0);
        let from_ip = counts.ips.get(&ip).copied().unwrap_or(0);
        let retry = Duration::from_secs(5);
        if in_room >= self.per_room {
            return Err(ApiError::too_many(
                "too_many_watchers",
                "this room has too many watchers",
                retry,
            ));
        }
        if from_ip >= self.per_ip {
            return Err(ApiError::too_many(
                "too_many_watchers",
                "too many watches from this address",
                retry,
            ));
        }
        *counts.rooms.entry(room.to_owned()).or_default() += 1;
        *counts.ips.entry(ip).or_default() += 1;
        Ok(WatchPermit {
            caps: Arc::clone(self),
            room: room.to_owned(),
            ip,
        })
    }
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut counts = self.caps.counts.lock().expect("watch caps lock poisoned");
        decrement(&mut counts.rooms, &self.room);
        decrement(&mut counts.ips, &self.ip);
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest untrusted
/// address in `X-Forwarded-For` (read right to left, so clients cannot forge their way past).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer_ip = peer.ip().to_canonical();
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap(),
        );
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let direct: SocketAddr = "9.9.9.9:5000".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(direct, &headers, &trusted),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy.ip());
    }

    #[test]
    fn watch_caps_free_places_on_drop() {
        let caps = WatchCaps::new(2, 3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = caps.admit("R", ip).unwrap();
        let _b = caps.admit("R", ip).unwrap();
        assert_eq!(caps.admit("R", ip).unwrap_err().code, "too_many_watchers");
        let _c = caps.admit("S", ip).unwrap();
        assert!(caps.admit("T", ip).is_err());
        drop(a);
        caps.admit("R", ip).unwrap();
    }

    #[test]
    fn buckets_refuse_with_a_retry_time() {
        let limits = RateLimits::new(2, 1);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        limits.check(Bucket::Create, ip).unwrap();
        limits.check(Bucket::Create, ip).unwrap();
        let err = limits.check(Bucket::Create, ip).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(err.retry_after.unwrap() > Duration::ZERO);
    }
}
