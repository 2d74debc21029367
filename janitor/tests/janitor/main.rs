//! The janitor against real Redis servers: the library's `sweep` and `Janitor::sweep_once`
//! (`sweep.rs`) and the `janitor` binary (`cli.rs`), a sweep of every master of a Redis Cluster
//! (`cluster.rs`), and metrics on a real Pushgateway and in schedule mode (`metrics.rs`).

mod cli;
mod cluster;
mod metrics;
mod support;
mod sweep;
