//! The `--redis-url` syntax every binary accepts (one server, or a Redis Cluster's seed nodes),
//! and which masters of a cluster to visit for a keyspace-wide `SCAN`.

/// One server, or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// `redis://…` is one server; a comma-separated list of URLs, or a URL with
    /// `cluster=true`, is a cluster's seed nodes.
    pub fn parse(urls: &str) -> Self {
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        match urls.as_slice() {
            [one] if !one.contains("cluster=") => Self::Single(one.clone()),
            _ => Self::Cluster(
                urls.iter()
                    .map(|u| u.replace("?cluster=true", "").replace("&cluster=true", ""))
                    .collect(),
            ),
        }
    }

    /// Every URL given: the server, or each seed node.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Self::Single(url) => vec![url.clone()],
            Self::Cluster(urls) => urls.clone(),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_servers_and_cluster_seeds() {
        assert_eq!(
            RedisTarget::parse("redis://a:1"),
            RedisTarget::Single("redis://a:1".into())
        );
        assert_eq!(
            RedisTarget::parse("redis://a:1, redis://b:2"),
            RedisTarget::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            RedisTarget::parse("redis://a:1?cluster=true"),
            RedisTarget::Cluster(vec!["redis://a:1".into()])
        );
        assert_eq!(RedisTarget::parse("redis://a:1").urls(), ["redis://a:1"]);
    }

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
}
