//! Switchboard load generator.
//!
//! # Layout
//! - [`signal`]: room round trips (create, put offer, watch, put answer, notified, delete)
//!   against one or several signal-server replicas over SSE, WebSocket or long-poll.
//! - [`turn`]: pairs of TURN allocations relaying to each other through channels.
//! - [`stats`]: latency histograms and error tallies.
//!
//! The NAT traversal scenario arrives with issue 6.

pub mod signal;
pub mod stats;
pub mod turn;
