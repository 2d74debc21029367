//! Switchboard load generator.
//!
//! # Layout
//! - [`signal`]: room round trips (create, put offer, watch, put answer, notified, delete)
//!   against one or several signal-server replicas over SSE, WebSocket or long-poll.
//! - [`turn`]: pairs of TURN allocations relaying to each other through channels, clients
//!   reaching the server over UDP or TCP.
//! - [`nat`]: peers behind simulated NATs (network namespaces, nftables) trying a direct path
//!   and falling back to a TURN relay; per NAT pairing, success, relay use and time to connect.
//! - [`stats`]: latency histograms and error tallies.
//! - [`timeline`]: per-second counts recorded during a run (one atomic add per event), for
//!   plots and the JSON `timeline`.
//! - [`progress`]: the progress bar on stderr, redrawn by a ticker reading the run's counters.
//! - [`report`]: `--report FILE.html`, a self-contained page with tables and SVG plots
//!   (`report/html.rs`, `report/plots.rs`, and one file per scenario).
//!
//! Each scenario has `run(options)` and `run_with(options, live)`, where `live` holds the
//! counters a progress bar reads while the run goes on.

pub mod nat;
pub mod progress;
pub mod report;
pub mod signal;
pub mod stats;
pub mod timeline;
pub mod turn;
