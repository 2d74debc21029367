//! Which peers a relay may talk to. By default nothing private, local or special-purpose: a TURN
//! relay must not become a way into the network it runs in (cloud metadata, internal services).

use std::net::IpAddr;

use ipnet::IpNet;

/// Ranges refused unless explicitly allowed (RFC 6890 special-purpose and private ranges).
const DEFAULT_DENY: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Peer address policy: explicit deny wins, then explicit allow, then the default deny list.
#[derive(Debug, Clone)]
pub struct PeerFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    default_deny: Vec<IpNet>,
}

impl PeerFilter {
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        let default_deny = DEFAULT_DENY
            .iter()
            .map(|net| net.parse().expect("built-in CIDRs are valid"))
            .collect();
        Self {
            allow,
            deny,
            default_deny,
        }
    }

    /// Whether relaying to `ip` is allowed. IPv4-mapped IPv6 addresses are judged as IPv4.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let within = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&ip));
        if within(&self.deny) {
            return false;
        }
        within(&self.allow) || !within(&self.default_deny)
    }
}

impl Default for PeerFilter {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_ranges_are_refused_by_default() {
        let filter = PeerFilter::default();
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!filter.permits(ip(denied)), "{denied}");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(filter.permits(ip(allowed)), "{allowed}");
        }
    }

    #[test]
    fn explicit_deny_beats_allow_beats_default() {
        let filter = PeerFilter::new(
            vec!["127.0.0.0/8".parse().unwrap()],
            vec![
                "127.0.0.9/32".parse().unwrap(),
                "8.8.8.0/24".parse().unwrap(),
            ],
        );
        assert!(filter.permits(ip("127.0.0.1")));
        assert!(!filter.permits(ip("127.0.0.9")));
        assert!(!filter.permits(ip("8.8.8.8")));
        assert!(filter.permits(ip("1.1.1.1")));
    }
}
