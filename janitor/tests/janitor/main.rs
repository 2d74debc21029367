//! The janitor against real Redis servers: the library's `sweep` and `Janitor::sweep_once`
//! (`sweep.rs`) and the `janitor` binary (`cli.rs`), and a sweep of every master of a Redis Cluster (`cluster.rs`).

mod cli;
mod cluster;
mod support;
mod sweep;
