//! `turn-server` binary: parse config, set up logs, relay until SIGTERM, then drain.
//! Exit codes: 0 after a drain, 64 for bad configuration, 1 for runtime failures.

use std::process::ExitCode;

use clap::Parser;
use turn_server::config::{Command, Config};

const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Healthcheck(args)) = &config.command {
        return common::health::run("turn-server", config.http_listen, args).await;
    }
    common::telemetry::init(config.log_format);
    if let Err(err) = config.validate() {
        eprintln!("turn-server: invalid configuration: {err}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if config.check_config {
        println!("configuration ok: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    let listeners = match turn_server::Listeners::bind(&config).await {
        Ok(listeners) => listeners,
        Err(err) => {
            eprintln!("turn-server: cannot bind: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Several workers may share one address (SO_REUSEPORT): print each address once.
    let mut udp: Vec<_> = listeners
        .udp
        .iter()
        .filter_map(|socket| socket.local_addr().ok())
        .collect();
    udp.dedup();
    for addr in udp {
        println!("turn-server: stun:{addr} turn:{addr}?transport=udp");
    }
    if let Ok(addr) = listeners.http.local_addr() {
        println!("turn-server: metrics http://{addr}/metrics");
    }
    let shutdown = common::shutdown::token_on_signal();
    match turn_server::run(config, listeners, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("turn-server: {err}");
            ExitCode::FAILURE
        }
    }
}
