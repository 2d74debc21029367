//! `signal-server` binary: parse config, set up logs, serve until SIGTERM.

use anyhow::Context;
use clap::Parser;
use signal_server::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    common::telemetry::init(config.log_format);
    if config.check_config {
        config.validate()?;
        println!("configuration ok: {}", config.summary());
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = common::shutdown::token_on_signal();
    signal_server::run(config, listener, shutdown).await?;
    Ok(())
}
