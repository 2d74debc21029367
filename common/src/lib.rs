//! Contracts shared by several Switchboard binaries, each pure and tested.
//!
//! # Layout
//! - [`turn_auth`]: TURN REST API credentials (mint in signal-server, verify in turn-server).
//! - [`keys`]: the Redis key schema every binary reads and writes (hash-tagged per room).
//! - [`redis_url`]: the `--redis-url` syntax (one server or a cluster's seeds).
//! - [`redacted`]: secret flag values whose `Debug` hides them.
//! - [`telemetry`]: `tracing` set-up (JSON or text logs).
//! - [`health`]: the `healthcheck` subcommand of every service (container health probes).
//! - [`shutdown`]: the SIGTERM/SIGINT future behind every service's drain.
//! - `testing` (feature `testing`, dev-dependencies only): real Redis servers and clusters on
//!   loopback ports for the integration tests of every crate.

pub mod health;
pub mod keys;
pub mod redacted;
pub mod redis_url;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod turn_auth;
