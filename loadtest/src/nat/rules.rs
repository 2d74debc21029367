//! The nftables ruleset that makes a NAT namespace behave as one kind of NAT (RFC 4787
//! terms: how mappings are chosen, and which inbound packets are let through).
//!
//! Each NAT namespace has `lan` (10.0.0.1/24, one host behind it at 10.0.0.2) and `wan` (its
//! public address on the lab bridge). Linux conntrack keeps the source port when it is free, so
//! with one host behind the NAT a cone mapping is "WAN port = host port".

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The host behind every NAT, on that NAT's own LAN.
pub(super) const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The NAT's LAN address: the host's default gateway.
pub(super) const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// The NAT behaviours peers sit behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering: anyone may send to a mapped port.
    FullCone,
    /// Endpoint-independent mapping; inbound only from IP addresses the host has sent to.
    AddressRestricted,
    /// Endpoint-independent mapping; inbound only from the exact address and port sent to.
    PortRestricted,
    /// A new mapping per destination: the port a STUN server sees is not the one a peer sees.
    Symmetric,
}

impl NatKind {
    pub const ALL: [NatKind; 4] = [
        Self::FullCone,
        Self::AddressRestricted,
        Self::PortRestricted,
        Self::Symmetric,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::FullCone => "full-cone",
            Self::AddressRestricted => "address-restricted",
            Self::PortRestricted => "port-restricted",
            Self::Symmetric => "symmetric",
        }
    }

    /// Whether UDP hole punching between hosts behind `self` and `other` can work: it fails
    /// only when a symmetric NAT meets a port-restricted or symmetric one (the mapping a
    /// symmetric NAT opens towards the peer is not the address the peer learned by STUN, and
    /// the other side filters on that exact address).
    pub fn punches_through_with(self, other: NatKind) -> bool {
        use NatKind::{PortRestricted, Symmetric};
        !matches!(
            (self, other),
            (Symmetric, Symmetric) | (Symmetric, PortRestricted) | (PortRestricted, Symmetric)
        )
    }

    /// The ruleset for a NAT whose WAN address is `wan`, loaded with `nft -f -` into a fresh
    /// namespace (so it starts from an empty ruleset).
    pub(super) fn ruleset(self, wan: Ipv4Addr) -> String {
        let (mapping, inbound) = match self {
            // Symmetric: a random port for every new flow (5-tuple).
            Self::Symmetric => ("masquerade fully-random".to_owned(), String::new()),
            // Port-restricted: plain conntrack; only replies to a flow get in.
            Self::PortRestricted => ("masquerade".to_owned(), String::new()),
            // Cone NATs: a static source NAT keeps the host's port, and new inbound flows to a
            // port go back to the host, from anyone (full cone) or from addresses it has sent
            // to (address-restricted, a set filled by its outbound packets).
            Self::FullCone => (
                format!("snat to {wan}"),
                format!("iifname \"wan\" udp dport 1024-65535 dnat to {HOST}"),
            ),
            Self::AddressRestricted => (
                format!("snat to {wan}"),
                format!("iifname \"wan\" udp dport . ip saddr @contacted dnat to {HOST}"),
            ),
        };
        format!(
            "table ip sbnat {{
  set contacted {{
    type inet_service . ipv4_addr
    flags dynamic,timeout
    timeout 120s
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    {inbound}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" {mapping}
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    iifname \"lan\" oifname \"wan\" meta l4proto udp update @contacted {{ udp sport . ip daddr }}
    iifname \"lan\" accept
    ct state established,related accept
    ct status dnat accept
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    # An unsolicited packet must not reach the router itself: its conntrack entry would take
    # the port the host's own flow needs, and the NAT would map that flow elsewhere.
    iifname \"wan\" ct state new drop
  }}
}}
"
        )
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NatKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown NAT kind {s:?}: full-cone, address-restricted, port-restricted or symmetric")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in NatKind::ALL {
            assert_eq!(kind.name().parse::<NatKind>(), Ok(kind));
        }
        assert!("cone".parse::<NatKind>().is_err());
    }

    #[test]
    fn punching_fails_only_between_symmetric_and_port_restricted_or_symmetric() {
        let failing: Vec<_> = NatKind::ALL
            .into_iter()
            .flat_map(|a| NatKind::ALL.map(|b| (a, b)))
            .filter(|(a, b)| !a.punches_through_with(*b))
            .collect();
        use NatKind::*;
        assert_eq!(
            failing,
            [
                (PortRestricted, Symmetric),
                (Symmetric, PortRestricted),
                (Symmetric, Symmetric)
            ]
        );
    }

    #[test]
    fn rulesets_differ_in_mapping_and_inbound_filter() {
        let wan = Ipv4Addr::new(203, 0, 113, 10);
        let sym = NatKind::Symmetric.ruleset(wan);
        assert!(sym.contains("masquerade fully-random") && !sym.contains("dnat to"));
        let port = NatKind::PortRestricted.ruleset(wan);
        assert!(port.contains("oifname \"wan\" masquerade\n") && !port.contains("dnat to"));
        let full = NatKind::FullCone.ruleset(wan);
        assert!(
            full.contains("snat to 203.0.113.10")
                && full.contains("dport 1024-65535 dnat to 10.0.0.2")
        );
        let addr = NatKind::AddressRestricted.ruleset(wan);
        assert!(addr.contains("ip saddr @contacted dnat to 10.0.0.2"));
    }
}
