//! Command-line and environment configuration. Every flag has a `JANITOR_*` environment twin;
//! the Redis URL (it may hold a password) is never shown in `--help` or logs.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use common::keys::KeySchema;
use common::redacted::Redacted;
use common::telemetry::LogFormat;

use crate::{Janitor, Policy};

/// Switchboard janitor: purges stale rooms and orphaned keys, once or on a cron schedule.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// One sweep, then exit: 0 after a sweep, 75 when another janitor holds the lock,
    /// 1 when Redis fails, 64 for bad configuration.
    Run(SweepArgs),
    /// Sweep on every tick of a cron schedule until SIGTERM or SIGINT.
    Schedule {
        /// When to sweep: a `cron` crate expression with seconds first
        /// (`0 */5 * * * *` is every five minutes).
        #[arg(long, env = "JANITOR_CRON", value_parser = parse_cron)]
        cron: Box<cron::Schedule>,
        /// Serve `/metrics`, `/healthz` and `/readyz` here while scheduling (e.g. `0.0.0.0:9642`).
        #[arg(long, env = "JANITOR_METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Probe a scheduling janitor's `/healthz` (or `/readyz` with `--ready`) on
    /// `--metrics-listen` and exit 0 when healthy, 1 when not: the container image's HEALTHCHECK.
    Healthcheck {
        /// Where the scheduling janitor serves its metrics (`schedule --metrics-listen`).
        #[arg(long, env = "JANITOR_METRICS_LISTEN")]
        metrics_listen: std::net::SocketAddr,
        #[command(flatten)]
        probe: common::health::HealthcheckArgs,
    },
}

/// The flags every sweeping subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Redis URL (`redis://[:password@]host:port/db`), or a comma-separated list of cluster
    /// seed URLs, or one URL with `?cluster=true` (every master is swept).
    #[arg(long, env = "JANITOR_REDIS_URL", hide_env_values = true)]
    pub redis_url: Redacted,

    /// Connect and per-command time limit.
    #[arg(long, env = "JANITOR_REDIS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Prefix of every Redis key (signal-server's `--key-prefix`).
    #[arg(long, env = "JANITOR_KEY_PREFIX", default_value = "sb")]
    pub key_prefix: String,

    /// Rooms created longer ago than this are purged (signal-server's `--max-age`).
    #[arg(long, env = "JANITOR_MAX_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_age: Duration,

    /// Keys per SCAN and most commands per pipeline. Smaller batches let other clients in
    /// between (at 200, a 1M-key sweep kept a concurrent signal p99 within 1.4x; at 1000, 2.4x).
    #[arg(long, env = "JANITOR_BATCH", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,

    /// Most keys deleted per second; 0 for no limit.
    #[arg(long, env = "JANITOR_MAX_DELETES_PER_SEC", default_value_t = 0)]
    pub max_deletes_per_sec: u32,

    /// Percent of the sweep's time spent working Redis; it pauses between batches for the
    /// rest, so live traffic keeps most of Redis. 100 sweeps flat out.
    #[arg(long, env = "JANITOR_DUTY_CYCLE", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub duty_cycle: u8,

    /// How long the lock outlives a janitor that died mid-sweep.
    #[arg(long, env = "JANITOR_LOCK_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub lock_ttl: Duration,

    /// Report what would be done and change nothing (takes no lock).
    #[arg(long, env = "JANITOR_DRY_RUN")]
    pub dry_run: bool,

    /// Print each sweep's report as one line of JSON instead of a sentence.
    #[arg(long, env = "JANITOR_JSON")]
    pub json: bool,

    /// Push the sweep metrics to this Prometheus Pushgateway (`http://host:9091`) after each
    /// sweep, under job `switchboard_janitor`.
    #[arg(long, env = "JANITOR_PUSHGATEWAY")]
    pub pushgateway: Option<String>,

    /// Log format: `json` or `text`.
    #[arg(long, env = "JANITOR_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

impl Cli {
    /// The flags shared by the sweeping subcommands.
    pub fn sweep_args(&self) -> Option<&SweepArgs> {
        match &self.command {
            Command::Run(sweep) | Command::Schedule { sweep, .. } => Some(sweep),
            Command::Healthcheck { .. } => None,
        }
    }
}

impl SweepArgs {
    /// The validated settings of a sweep, or why they cannot run.
    pub fn janitor(&self) -> Result<Janitor, String> {
        let prefix = &self.key_prefix;
        if prefix.is_empty() || prefix.contains([':', '{', '}', '*', '?', '[', ']', '\\']) {
            return Err(format!(
                "--key-prefix `{prefix}` must be non-empty without `:{{}}` or glob characters"
            ));
        }
        // Surrounding blanks (a file or env value with a newline) are not part of the URL.
        let url = self.redis_url.0.trim();
        if url.is_empty() {
            return Err("--redis-url is empty".into());
        }
        if let Some(url) = &self.pushgateway
            && !url.starts_with("http://")
        {
            return Err(format!("--pushgateway `{url}` must be an http:// URL"));
        }
        if self.lock_ttl < Duration::from_secs(1) {
            return Err("--lock-ttl must be at least 1s".into());
        }
        Ok(Janitor {
            redis_url: url.to_owned(),
            redis_timeout: self.redis_timeout,
            schema: KeySchema::new(prefix.as_str()),
            policy: Policy {
                max_age: self.max_age,
                batch: self.batch as usize,
                max_deletes_per_sec: self.max_deletes_per_sec,
                duty_cycle: self.duty_cycle,
                dry_run: self.dry_run,
            },
            lock_ttl: self.lock_ttl,
        })
    }
}

fn parse_cron(expr: &str) -> Result<Box<cron::Schedule>, String> {
    expr.parse().map(Box::new).map_err(|err| {
        format!("not a cron expression (seconds first, e.g. `0 */5 * * * *`): {err}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["janitor", "run", "--redis-url", "redis://x"]).unwrap();
        let janitor = cli.sweep_args().unwrap().janitor().unwrap();
        assert_eq!(janitor.schema.prefix(), "sb");
        assert_eq!(janitor.policy, Policy::default());
        assert_eq!(janitor.policy.duty_cycle, 50);
        assert_eq!(janitor.lock_ttl, Duration::from_secs(300));
        assert!(!cli.sweep_args().unwrap().json);
    }

    #[test]
    fn schedule_takes_a_cron_expression() {
        let cli = Cli::try_parse_from([
            "janitor",
            "schedule",
            "--cron",
            "0 */5 * * * *",
            "--redis-url",
            "redis://x",
            "--dry-run",
            "--max-age",
            "30m",
        ])
        .unwrap();
        let Command::Schedule { sweep, .. } = &cli.command else {
            panic!("schedule expected");
        };
        let janitor = sweep.janitor().unwrap();
        assert!(janitor.policy.dry_run);
        assert_eq!(janitor.policy.max_age, Duration::from_secs(1800));
        assert!(
            Cli::try_parse_from([
                "janitor",
                "schedule",
                "--cron",
                "every day",
                "--redis-url",
                "redis://x"
            ])
            .is_err()
        );
    }

    #[test]
    fn rejects_bad_settings() {
        for extra in [
            ["--key-prefix", "a:b"],
            ["--key-prefix", "s*"],
            ["--lock-ttl", "10ms"],
        ] {
            let cli = Cli::try_parse_from(
                ["janitor", "run", "--redis-url", "redis://x"]
                    .into_iter()
                    .chain(extra),
            )
            .unwrap();
            assert!(cli.sweep_args().unwrap().janitor().is_err(), "{extra:?}");
        }
        for bad in [
            ["--batch", "0"],
            ["--duty-cycle", "0"],
            ["--duty-cycle", "101"],
        ] {
            let args = ["janitor", "run", "--redis-url", "r"]
                .into_iter()
                .chain(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redis_url_is_redacted() {
        let cli =
            Cli::try_parse_from(["janitor", "run", "--redis-url", "redis://:hunter2@h"]).unwrap();
        assert!(!format!("{cli:?}").contains("hunter2"));
    }
}
