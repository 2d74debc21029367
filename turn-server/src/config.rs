//! Flags and environment (`TURN_*`). Secrets (shared secrets, user passwords) never appear in
//! `--help`, `Debug` or `--check-config` output.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use common::redacted::Redacted;
use common::telemetry::LogFormat;
use common::turn_auth::SharedSecret;
use ipnet::IpNet;

use crate::core::auth::Credentials;
use crate::core::filter::PeerFilter;
use crate::core::{self, ExternalIp};

/// Switchboard turn-server: a STUN/TURN relay that checks signal-server's credentials.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// UDP addresses for STUN/TURN (comma-separated, repeatable).
    #[arg(
        long,
        env = "TURN_LISTEN_UDP",
        value_delimiter = ',',
        default_value = "127.0.0.1:3478"
    )]
    pub listen_udp: Vec<SocketAddr>,

    /// TCP addresses for STUN/TURN (comma-separated); none by default.
    #[arg(long, env = "TURN_LISTEN_TCP", value_delimiter = ',')]
    pub listen_tcp: Vec<SocketAddr>,

    /// Sockets (and reader tasks) per UDP address, spread by SO_REUSEPORT; 0 means one per CPU.
    #[arg(long, env = "TURN_UDP_WORKERS", default_value_t = 0)]
    pub udp_workers: usize,

    /// TLS addresses for `turns:` (comma-separated); needs --tls-cert and --tls-key.
    #[arg(long, env = "TURN_LISTEN_TLS", value_delimiter = ',')]
    pub listen_tls: Vec<SocketAddr>,

    /// PEM certificate chain for TLS.
    #[arg(long, env = "TURN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS.
    #[arg(long, env = "TURN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Most TCP and TLS client connections at once; more are closed on accept.
    #[arg(long, env = "TURN_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,

    /// A TCP/TLS client without an allocation is closed after this long without sending.
    #[arg(long, env = "TURN_STREAM_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stream_idle_timeout: Duration,

    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "TURN_HTTP_LISTEN", default_value = "127.0.0.1:9641")]
    pub http_listen: SocketAddr,

    /// Realm of the long-term credentials.
    #[arg(long, env = "TURN_REALM", default_value = "switchboard")]
    pub realm: String,

    /// TURN REST shared secrets, comma-separated, newest first (rotation: all are accepted).
    #[arg(long, env = "TURN_SECRETS", hide_env_values = true)]
    pub secrets: Option<Redacted>,

    /// File with shared secrets, one per line; wins over `--secrets`.
    #[arg(long, env = "TURN_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,

    /// File of static users, one `username:password` per line (`#` comments).
    #[arg(long, env = "TURN_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Address relays bind on; defaults to the unspecified address of the client's family.
    #[arg(long, env = "TURN_RELAY_IP")]
    pub relay_ip: Option<IpAddr>,

    /// Relay port range, `LOW-HIGH`.
    #[arg(long, env = "TURN_RELAY_PORTS", default_value = "49152-65535")]
    pub relay_ports: PortRange,

    /// Advertised relay address behind a NAT: `PUBLIC` or `PUBLIC/PRIVATE`.
    #[arg(long, env = "TURN_EXTERNAL_IP")]
    pub external_ip: Option<ExternalIpArg>,

    /// Peer ranges allowed despite the default deny list (comma-separated CIDRs).
    #[arg(long, env = "TURN_ALLOW_PEER", value_delimiter = ',')]
    pub allow_peer: Vec<IpNet>,

    /// Peer ranges always refused (comma-separated CIDRs).
    #[arg(long, env = "TURN_DENY_PEER", value_delimiter = ',')]
    pub deny_peer: Vec<IpNet>,

    #[arg(long, env = "TURN_MAX_ALLOCATIONS", default_value_t = 10_000)]
    pub max_allocations: usize,

    /// Allocations per user; a REST credential's user is the part after `<expiry>:`.
    #[arg(long, env = "TURN_MAX_ALLOCATIONS_PER_USER", default_value_t = 100)]
    pub max_allocations_per_user: usize,

    #[arg(long, env = "TURN_MAX_ALLOCATIONS_PER_IP", default_value_t = 100)]
    pub max_allocations_per_ip: usize,

    /// Relay bandwidth per allocation and direction, bytes per second (0: unlimited).
    #[arg(long, env = "TURN_BANDWIDTH", default_value_t = 0)]
    pub bandwidth: u64,

    /// Allocation lifetime when the client asks for none or less.
    #[arg(long, env = "TURN_DEFAULT_LIFETIME", default_value = "10m", value_parser = humantime::parse_duration)]
    pub default_lifetime: Duration,

    /// Longest allocation lifetime granted.
    #[arg(long, env = "TURN_MAX_LIFETIME", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_lifetime: Duration,

    /// How long a nonce stays valid (then 438 Stale Nonce).
    #[arg(long, env = "TURN_NONCE_LIFETIME", default_value = "10m", value_parser = humantime::parse_duration)]
    pub nonce_lifetime: Duration,

    /// On SIGTERM, how long existing allocations keep relaying before the process exits.
    #[arg(long, env = "TURN_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Log format: `json` or `text`.
    #[arg(long, env = "TURN_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Check the configuration, print a summary without secrets, and exit.
    #[arg(long)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of relaying.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Probe the server's HTTP listener (`--http-listen`: `/healthz`, or `/readyz` with
    /// `--ready`) and exit 0 when healthy, 1 when not: the container image's HEALTHCHECK.
    Healthcheck(common::health::HealthcheckArgs),
}

/// An inclusive port range `LOW-HIGH`.
#[derive(Debug, Clone)]
pub struct PortRange(pub RangeInclusive<u16>);

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (low, high) = s.split_once('-').ok_or("expected LOW-HIGH")?;
        let low: u16 = low.trim().parse().map_err(|_| "bad low port")?;
        let high: u16 = high.trim().parse().map_err(|_| "bad high port")?;
        if low == 0 || low > high {
            return Err("need 0 < LOW <= HIGH".into());
        }
        Ok(Self(low..=high))
    }
}

/// `PUBLIC` or `PUBLIC/PRIVATE`.
#[derive(Debug, Clone, Copy)]
pub struct ExternalIpArg(pub ExternalIp);

impl FromStr for ExternalIpArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (public, private) = match s.split_once('/') {
            Some((public, private)) => (public, Some(private)),
            None => (s, None),
        };
        let public = public
            .trim()
            .parse()
            .map_err(|_| format!("bad public IP {public:?}"))?;
        let private = private
            .map(|p| {
                p.trim()
                    .parse()
                    .map_err(|_| format!("bad private IP {p:?}"))
            })
            .transpose()?;
        Ok(Self(ExternalIp { public, private }))
    }
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
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        let secrets = match (&self.secrets_file, &self.secrets) {
            (Some(path), _) => read(path)?,
            (None, Some(list)) => list.0.clone(),
            (None, None) => String::new(),
        };
        let secrets = SharedSecret::parse_list(&secrets)
            .map_err(|e| ConfigError::Invalid(format!("shared secrets: {e}")))?;
        let mut users = HashMap::new();
        if let Some(path) = &self.users_file {
            for (n, line) in read(path)?.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (user, password) = line.split_once(':').ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "{}:{}: expected username:password",
                        path.display(),
                        n + 1
                    ))
                })?;
                users.insert(user.to_owned(), password.to_owned());
            }
        }
        Ok(Credentials { secrets, users })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.listen_udp.is_empty() && self.listen_tcp.is_empty() && self.listen_tls.is_empty() {
            return bad("need at least one --listen-udp, --listen-tcp or --listen-tls address");
        }
        if !self.listen_tls.is_empty() {
            self.tls_acceptor()?;
        }
        let credentials = self.credentials()?;
        if credentials.secrets.is_empty() && credentials.users.is_empty() {
            return bad("no credentials: set --secrets, --secrets-file or --users-file");
        }
        if self.default_lifetime.is_zero() || self.max_lifetime < self.default_lifetime {
            return bad("need 0 < --default-lifetime <= --max-lifetime");
        }
        if self.realm.is_empty() || self.realm.len() > 127 {
            return bad("--realm must be 1-127 bytes");
        }
        if self.max_allocations == 0 {
            return bad("--max-allocations must be positive");
        }
        Ok(())
    }

    /// The sans-IO core's configuration; `nonce_secret` is fresh randomness from the caller.
    pub fn core(&self, nonce_secret: [u8; 32]) -> Result<core::Config, ConfigError> {
        Ok(core::Config {
            realm: self.realm.clone(),
            software: concat!("switchboard-turn/", env!("CARGO_PKG_VERSION")).into(),
            credentials: self.credentials()?,
            nonce_secret,
            nonce_lifetime: self.nonce_lifetime,
            default_lifetime: self.default_lifetime,
            max_lifetime: self.max_lifetime,
            filter: PeerFilter::new(self.allow_peer.clone(), self.deny_peer.clone()),
            max_allocations: self.max_allocations,
            max_allocations_per_user: self.max_allocations_per_user,
            max_allocations_per_ip: self.max_allocations_per_ip,
            bandwidth: (self.bandwidth > 0).then_some(self.bandwidth),
            external_ip: self.external_ip.map(|e| e.0),
            ipv6_relays: true,
        })
    }

    /// UDP sockets per address: `--udp-workers`, or one per available CPU.
    pub fn udp_workers(&self) -> usize {
        match self.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n.min(64),
        }
    }

    /// The TLS acceptor from `--tls-cert` and `--tls-key`.
    pub fn tls_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err(ConfigError::Invalid(
                "--listen-tls needs --tls-cert and --tls-key".into(),
            ));
        };
        let pem_error = |path: &PathBuf, e: rustls_pki_types::pem::Error| {
            ConfigError::Invalid(format!("{}: {e}", path.display()))
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_error(cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert, e))?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
            .map_err(|e| ConfigError::Invalid(format!("TLS: {e}")))?;
        Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
    }

    pub fn summary(&self) -> String {
        let creds = self.credentials().map(|c| (c.secrets.len(), c.users.len()));
        let (secrets, users) = creds.unwrap_or((0, 0));
        format!(
            "udp={:?} tcp={:?} tls={:?} http={} realm={} secrets={secrets} static_users={users} relay_ports={:?} \
             external_ip={:?} allow_peer={:?} deny_peer={:?}",
            self.listen_udp,
            self.listen_tcp,
            self.listen_tls,
            self.http_listen,
            self.realm,
            self.relay_ports.0,
            self.external_ip.map(|e| e.0),
            self.allow_peer,
            self.deny_peer,
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
    fn verify_cli() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn parses_and_hides_secrets() {
        let config = Config::from_args([
            "t",
            "--secrets",
            "topsecret,older",
            "--external-ip",
            "203.0.113.1/10.0.0.5",
            "--relay-ports",
            "50000-50100",
        ])
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.credentials().unwrap().secrets.len(), 2);
        assert!(!format!("{config:?}").contains("topsecret"));
        assert!(!config.summary().contains("topsecret"));
        assert!(Config::from_args(["t", "--relay-ports", "9-1"]).is_err());
        assert!(
            Config::from_args(["t"]).unwrap().validate().is_err(),
            "no credentials"
        );
    }
}
