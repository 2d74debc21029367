//! Switchboard loadtest: load generator for signaling, TURN and NAT traversal.
//!
//! # Layout
//! - `main.rs`: placeholder entry point; the implementation is tracked in issue 6.

fn main() -> std::process::ExitCode {
    eprintln!("loadtest is not implemented yet (issue 6); see README.md");
    std::process::ExitCode::from(2)
}
