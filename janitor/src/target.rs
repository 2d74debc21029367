//! Where Redis is, as `--redis-url` says (one server or a cluster's seed nodes, the same syntax
//! as signal-server's), and how to reach each master a cluster sweep visits.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};

pub use common::redis_url::{RedisTarget, masters};

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
    fn node_info_keeps_the_password() {
        let info = node_info("redis://:pw@seed:1/0", "other", 2).unwrap();
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("other".into(), 2));
        assert_eq!(info.redis_settings().password(), Some("pw"));
    }
}
