//! Switchboard turn-server: STUN/TURN relay.
//!
//! # Layout
//! - `main.rs`: placeholder entry point; the implementation is tracked in issue 3.

fn main() -> std::process::ExitCode {
    eprintln!("turn-server is not implemented yet (issue 3); see README.md");
    std::process::ExitCode::from(2)
}
