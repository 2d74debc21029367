//! Where Redis is, as `--redis-url` says (one server or a cluster's seed nodes, the same syntax
//! as signal-server's), and the masters a cluster sweep visits.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};

pub use common::redis_url::RedisTarget;

/// The masters serving slots in a `CLUSTER NODES` answer, as `(host, port)`; an empty host
/// (a node that does not know its own address) becomes `seed_host`.
pub fn masters(cluster_nodes: &str, seed_host: &str) -> Vec<(String, u16)> {
    cluster_nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let serving = fields.len() > 8 && fields.get(7) == Some(&"connected");
            let master = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !(serving && master) {
                return None;
            }
            let addr = fields[1].split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            let host = if host.is_empty() { seed_host } else { host };
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// The seed's connection settings (password, TLS, db) aimed at another node.
pub fn node_info(seed: &str, host: &str, port: u16) -> Result<ConnectionInfo, RedisError> {
    let info = seed.into_connection_info()?;
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure,
            tls_params,
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    Ok(info.set_addr(addr))
}

/// The host of a seed URL, for nodes that report an empty address.
pub fn seed_host(seed: &str) -> Result<String, RedisError> {
    Ok(match seed.into_connection_info()?.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_serving_masters() {
        let nodes = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003,host3 master - 0 1426238318243 3 connected 10923-16383
e7d1 :30001@31001 myself,master - 0 0 1 connected 0-5460
aaaa 127.0.0.1:30009@31009 master,fail - 0 0 9 disconnected 1-2
bbbb 127.0.0.1:30010@31010 master - 0 0 10 connected
";
        assert_eq!(
            masters(nodes, "seed"),
            [
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
                ("seed".to_owned(), 30001),
            ]
        );
    }

    #[test]
    fn node_info_keeps_the_password() {
        let info = node_info("redis://:pw@seed:1/0", "other", 2).unwrap();
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("other".into(), 2));
        assert_eq!(info.redis_settings().password(), Some("pw"));
    }
}
