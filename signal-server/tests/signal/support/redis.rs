//! Real `redis-server` processes and a Redis Cluster on free loopback ports: the workspace's
//! shared harness in `common::testing`.

pub use common::testing::{RedisCluster, RedisServer, TempDir};
