//! Switchboard load generator.
//!
//! # Layout
//! - [`signal`]: room round trips (create, put offer, watch, put answer, notified, delete)
//!   against one or several signal-server replicas over SSE, WebSocket or long-poll.
//! - [`stats`]: latency histograms and error tallies.
//!
//! TURN relaying and NAT traversal scenarios arrive with issue 6.

pub mod signal;
pub mod stats;
