//! The `--redis-url` syntax every binary accepts: one server, or a Redis Cluster's seed nodes.

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
}
