//! Switchboard janitor: stale-room sweeper.
//!
//! # Layout
//! - `main.rs`: placeholder entry point; the implementation is tracked in issue 5.

fn main() -> std::process::ExitCode {
    eprintln!("janitor is not implemented yet (issue 5); see README.md");
    std::process::ExitCode::from(2)
}
