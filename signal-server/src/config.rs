//! Command-line and environment configuration. Every flag has an `SB_*` environment twin;
//! secrets (Redis URL with password, TURN shared secrets) are never shown in `--help` or logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::redacted::Redacted;
use common::telemetry::LogFormat;
use common::turn_auth::SharedSecret;
use ipnet::IpNet;

use crate::model::Limits;

/// Switchboard signal-server: ephemeral client-encrypted blobs in rooms.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on for HTTP.
    #[arg(long, env = "SB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Redis URL (`redis://host:port/db`), or a comma-separated list of cluster seed URLs,
    /// or one URL with `?cluster=true`. Without it, rooms live in memory (one process only).
    #[arg(long, env = "SB_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Redacted>,

    /// File holding the Redis URL (for Kubernetes secrets); wins over `--redis-url`.
    #[arg(long, env = "SB_REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,

    /// How long a Redis command may take before the request fails with 503.
    #[arg(long, env = "SB_REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Prefix of every Redis key and channel.
    #[arg(long, env = "SB_KEY_PREFIX", default_value = "sb")]
    pub key_prefix: String,

    /// A room goes this long after its last write.
    #[arg(long, env = "SB_IDLE_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub idle_ttl: Duration,

    /// A room goes this long after its creation, whatever is written.
    #[arg(long, env = "SB_MAX_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_age: Duration,

    /// Largest blob accepted (bytes); bigger ones get 413.
    #[arg(long, env = "SB_MAX_BLOB_BYTES", default_value_t = 64 * 1024)]
    pub max_blob_bytes: usize,

    /// Most slots one room may hold.
    #[arg(long, env = "SB_MAX_SLOTS", default_value_t = 64)]
    pub max_slots: usize,

    /// Recent changes kept per room for `Last-Event-ID` / `after=` resume.
    #[arg(long, env = "SB_CHANGE_LOG_LEN", default_value_t = 128)]
    pub change_log_len: usize,

    /// Let clients pick their own room codes with `PUT /v1/rooms/{code}` (pypeer does).
    #[arg(long, env = "SB_CLIENT_CODES", default_value_t = true, action = clap::ArgAction::Set)]
    pub client_codes: bool,

    /// TURN REST shared secrets, comma-separated, newest first (the first one mints).
    #[arg(long, env = "SB_TURN_SECRETS", hide_env_values = true)]
    pub turn_secrets: Option<Redacted>,

    /// File with TURN shared secrets, one per line, newest first; wins over `--turn-secrets`.
    #[arg(long, env = "SB_TURN_SECRETS_FILE")]
    pub turn_secrets_file: Option<PathBuf>,

    /// STUN URLs handed to clients, comma-separated (e.g. `stun:turn.example.com:3478`).
    #[arg(long, env = "SB_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// TURN URLs handed to clients with credentials, comma-separated.
    #[arg(long, env = "SB_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// Lifetime of minted TURN credentials.
    #[arg(long, env = "SB_TURN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub turn_ttl: Duration,

    /// Rooms one client IP may create per minute (token bucket; burst is the same number).
    #[arg(long, env = "SB_CREATE_PER_MINUTE", default_value_t = 60)]
    pub create_per_minute: u32,

    /// Writes (puts and deletes) one client IP may make per second (burst: twice this).
    #[arg(long, env = "SB_WRITES_PER_SECOND", default_value_t = 100)]
    pub writes_per_second: u32,

    /// Concurrent watchers of one room on this replica.
    #[arg(long, env = "SB_MAX_WATCHERS_PER_ROOM", default_value_t = 16)]
    pub max_watchers_per_room: usize,

    /// Concurrent watchers from one client IP on this replica.
    #[arg(long, env = "SB_MAX_WATCHERS_PER_IP", default_value_t = 256)]
    pub max_watchers_per_ip: usize,

    /// Time limit of a non-streaming request.
    #[arg(long, env = "SB_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Proxies whose `X-Forwarded-For` is believed (CIDRs, comma-separated).
    #[arg(long, env = "SB_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    /// Origins allowed by CORS (comma-separated); `*` allows any.
    #[arg(
        long,
        env = "SB_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,

    /// On SIGTERM, how long open streams and requests get to finish.
    #[arg(long, env = "SB_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Log format: `json` or `text`.
    #[arg(long, env = "SB_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Runtime worker threads; 0 is one per CPU core the host has. Set it to the CPU limit in a
    /// container (the runtime sees the host's cores), or to 1 on a small host shared with Redis.
    /// At most 256: the runtime starts them all at once.
    #[arg(long, env = "SB_WORKER_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=256))]
    pub worker_threads: u16,

    #[command(flatten)]
    pub compat: crate::compat::CompatConfig,

    /// Serve the browser client module (`/client/v1/switchboard.js`) and the demo page
    /// (`/demo/`).
    #[arg(long, env = "SB_WEB", default_value_t = true, action = clap::ArgAction::Set)]
    pub web: bool,

    /// Serve the web files from this directory (laid out like `signal-server/web/`) instead of
    /// the copies built into the binary: edit and reload without rebuilding.
    #[arg(long, env = "SB_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Check the configuration, print a summary without secrets, and exit.
    #[arg(long)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Probe the server running on `--listen` (`/healthz`, or `/readyz` with `--ready`) and exit
    /// 0 when healthy, 1 when not: the container image's HEALTHCHECK.
    Healthcheck(common::health::HealthcheckArgs),
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Parses flags from `args` (the first is the program name); for tests.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    /// The Redis URL from the file or the flag, if any.
    pub fn redis_url(&self) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.redis_url_file {
            let text = read(path)?;
            return Ok(Some(text.trim().to_owned()).filter(|u| !u.is_empty()));
        }
        Ok(self
            .redis_url
            .as_ref()
            .map(|u| u.0.trim().to_owned())
            .filter(|u| !u.is_empty()))
    }

    /// Configured TURN secrets, newest first (empty: TURN credentials are not offered).
    pub fn turn_secrets(&self) -> Result<Vec<SharedSecret>, ConfigError> {
        let text = match (&self.turn_secrets_file, &self.turn_secrets) {
            (Some(path), _) => read(path)?,
            (None, Some(list)) => list.0.replace(',', "\n"),
            (None, None) => return Ok(Vec::new()),
        };
        SharedSecret::parse_list(&text)
            .map_err(|e| ConfigError::Invalid(format!("TURN secrets: {e}")))
    }

    pub fn limits(&self) -> Limits {
        Limits {
            idle_ttl_ms: self.idle_ttl.as_millis() as u64,
            max_age_ms: self.max_age.as_millis() as u64,
            max_slots: self.max_slots,
            log_len: self.change_log_len,
        }
    }

    /// Rejects settings that would make the service misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.idle_ttl.is_zero() || self.max_age.is_zero() {
            return bad("--idle-ttl and --max-age must be positive");
        }
        if self.idle_ttl > self.max_age {
            return bad("--idle-ttl may not exceed --max-age");
        }
        if self.max_blob_bytes == 0 || self.max_slots == 0 || self.change_log_len == 0 {
            return bad("--max-blob-bytes, --max-slots and --change-log-len must be positive");
        }
        if self.create_per_minute == 0 || self.writes_per_second == 0 {
            return bad("rate limits must be positive");
        }
        if self.max_watchers_per_room == 0 || self.max_watchers_per_ip == 0 {
            return bad("watcher limits must be positive");
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ':']) {
            return bad("--key-prefix must be non-empty and free of '{', '}' and ':'");
        }
        let secrets = self.turn_secrets()?;
        if !self.turn_urls.is_empty() && secrets.is_empty() {
            return bad("--turn-urls needs --turn-secrets or --turn-secrets-file");
        }
        if self.turn_ttl.is_zero() {
            return bad("--turn-ttl must be positive");
        }
        self.redis_url()?;
        self.compat
            .settings(self.client_codes)
            .map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// A one-screen summary with secrets replaced by what kind of value is set.
    pub fn summary(&self) -> String {
        let store = match self.redis_url() {
            Ok(Some(_)) => "redis (URL hidden)",
            Ok(None) => "memory (embedded)",
            Err(_) => "unreadable Redis URL file",
        };
        let secrets = self.turn_secrets().map(|s| s.len()).unwrap_or(0);
        format!(
            "listen={} store={store} idle_ttl={:?} max_age={:?} max_blob_bytes={} max_slots={} \
             change_log_len={} client_codes={} turn_secrets={secrets} stun_urls={:?} turn_urls={:?} \
             turn_ttl={:?} worker_threads={}",
            self.listen,
            self.idle_ttl,
            self.max_age,
            self.max_blob_bytes,
            self.max_slots,
            self.change_log_len,
            self.client_codes,
            self.stun_urls,
            self.turn_urls,
            self.turn_ttl,
            self.worker_threads,
        )
    }
}

fn read(path: &PathBuf) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_secrets_stay_out_of_the_summary() {
        let config = Config::from_args([
            "signal-server",
            "--turn-secrets",
            "newest,older",
            "--redis-url",
            "redis://:hunter2@localhost",
        ])
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.turn_secrets().unwrap().len(), 2);
        let summary = config.summary();
        assert!(
            !summary.contains("hunter2") && !summary.contains("newest"),
            "{summary}"
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("newest") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn secrets_come_from_files_which_win_over_flags() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = dir.join("secrets");
        let url = dir.join("url");
        std::fs::write(&secrets, "from-file-new\nfrom-file-old\n").unwrap();
        std::fs::write(&url, "redis://127.0.0.1:6390\n").unwrap();
        let config = Config::from_args([
            "s",
            "--turn-secrets",
            "from-flag",
            "--turn-secrets-file",
            secrets.to_str().unwrap(),
            "--redis-url-file",
            url.to_str().unwrap(),
        ])
        .unwrap();
        let minted = common::turn_auth::mint(
            &config.turn_secrets().unwrap()[0],
            None,
            Duration::from_secs(60),
            0,
        )
        .unwrap();
        let expected = common::turn_auth::SharedSecret::new("from-file-new").unwrap();
        assert_eq!(
            minted.credential,
            common::turn_auth::credential_for(&expected, "60")
        );
        assert_eq!(
            config.redis_url().unwrap().as_deref(),
            Some("redis://127.0.0.1:6390")
        );
        let missing = Config::from_args(["s", "--turn-secrets-file", "/nonexistent/x"]).unwrap();
        assert!(missing.validate().is_err());
        assert!(matches!(
            missing.turn_secrets(),
            Err(ConfigError::Read { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        for args in [
            vec!["s", "--idle-ttl", "2h", "--max-age", "1h"],
            vec!["s", "--turn-urls", "turn:x:3478"],
            vec!["s", "--key-prefix", "a{b"],
            vec!["s", "--client-codes", "false"],
            vec!["s", "--firebase-prefix", "firebase"],
            vec!["s", "--twilio-account-sid", "AC1"],
        ] {
            assert!(Config::from_args(args).unwrap().validate().is_err());
        }
    }
}
