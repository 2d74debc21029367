//! `janitor` binary: parse config, set up logs, sweep once or on a schedule, or probe a
//! scheduling janitor's health.
//! Exit codes: 0 after a sweep (or a clean stop of the schedule), 75 when `run` finds the lock
//! held, 64 for bad configuration, 1 when Redis is unreachable or fails.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use janitor::config::{Cli, Command, SweepArgs};
use janitor::metrics::Metrics;
use janitor::{Janitor, Outcome, RunError};

/// `EX_USAGE` from sysexits.h: the configuration was wrong.
const EXIT_CONFIG: u8 = 64;
/// `EX_TEMPFAIL` from sysexits.h: another janitor is sweeping; try again later.
const EXIT_LOCKED: u8 = 75;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Healthcheck {
            metrics_listen,
            probe,
        } => common::health::run("janitor", *metrics_listen, probe).await,
        Command::Run(args) => match prepare(args) {
            Ok(janitor) => run_once(&janitor, args).await,
            Err(code) => code,
        },
        Command::Schedule {
            cron,
            metrics_listen,
            sweep: args,
        } => match prepare(args) {
            Ok(janitor) => schedule(&janitor, args, cron, *metrics_listen).await,
            Err(code) => code,
        },
    }
}

/// Logs set up and the sweep settings validated, or the exit code of bad configuration.
fn prepare(args: &SweepArgs) -> Result<Janitor, ExitCode> {
    common::telemetry::init(args.log_format);
    args.janitor().map_err(|err| {
        eprintln!("janitor: invalid configuration: {err}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn run_once(janitor: &Janitor, args: &SweepArgs) -> ExitCode {
    let metrics = Metrics::new();
    let result = janitor.sweep_once().await;
    metrics.record(&result);
    let code = match result {
        Ok(outcome) => {
            print(&outcome, args.json);
            match outcome {
                Outcome::Swept(_) => ExitCode::SUCCESS,
                Outcome::Locked { .. } => ExitCode::from(EXIT_LOCKED),
            }
        }
        Err(err) => {
            eprintln!("janitor: {err}");
            ExitCode::FAILURE
        }
    };
    if let Some(url) = &args.pushgateway
        && let Err(err) = metrics.push(url, janitor.redis_timeout).await
    {
        // Monitoring would go blind: fail the run so the CronJob shows it.
        eprintln!("janitor: {err}");
        return ExitCode::FAILURE;
    }
    code
}

async fn schedule(
    janitor: &Janitor,
    args: &SweepArgs,
    cron: &cron::Schedule,
    metrics_listen: Option<SocketAddr>,
) -> ExitCode {
    let metrics = Metrics::new();
    let shutdown = common::shutdown::token_on_signal();
    if let Some(addr) = metrics_listen {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("janitor: cannot listen on {addr}: {err}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(metrics.clone().serve(listener, shutdown.clone()));
    }
    tracing::info!(cron = %cron, "janitor schedule started");
    let timeout = janitor.redis_timeout;
    let json = args.json;
    janitor::schedule::run(janitor, cron, shutdown, |result| {
        metrics.record(&result);
        report(result, json);
        if let Some(url) = args.pushgateway.clone() {
            let metrics = metrics.clone();
            tokio::spawn(async move {
                if let Err(err) = metrics.push(&url, timeout).await {
                    tracing::error!(%err, "metrics push failed");
                }
            });
        }
    })
    .await;
    tracing::info!("janitor schedule stopped");
    ExitCode::SUCCESS
}

fn print(outcome: &Outcome, json: bool) {
    if json {
        println!("{}", outcome.to_json());
    } else {
        println!("janitor: {outcome}");
    }
}

fn report(result: Result<Outcome, RunError>, json: bool) {
    match result {
        Ok(outcome) => print(&outcome, json),
        Err(err) => tracing::error!(%err, "sweep failed"),
    }
}
