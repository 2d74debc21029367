//! The `healthcheck` subcommand every service binary has, for container `HEALTHCHECK`s: an
//! HTTP GET of the service's own `/healthz` (or `/readyz`) on loopback. Images carry no curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `<service> healthcheck`. The address comes from the service's own listen flag (and
/// its environment twin), so the check finds the port the container was configured with.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// Probe `/readyz` (dependencies reachable) instead of `/healthz` (process alive).
    #[arg(long)]
    pub ready: bool,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
}

/// Where to reach a server listening on `listen` from the same host: a wildcard address is
/// probed on loopback of the same family.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `/healthz` (or `/readyz`) of the server listening on `listen`; Ok on a 2xx answer.
pub async fn probe(listen: SocketAddr, args: &HealthcheckArgs) -> Result<(), ProbeError> {
    let path = if args.ready { "readyz" } else { "healthz" };
    let url = format!("http://{}/{path}", probe_addr(listen));
    let http = |source| ProbeError::Http {
        url: url.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .no_proxy()
        .build()
        .map_err(http)?;
    let response = client.get(&url).send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProbeError::Status {
            url,
            status: status.as_u16(),
        });
    }
    Ok(())
}

/// Runs the probe for `service` and turns it into the exit code `HEALTHCHECK` reads: 0 healthy,
/// 1 not.
pub async fn run(service: &str, listen: SocketAddr, args: &HealthcheckArgs) -> ExitCode {
    match probe(listen, args).await {
        Ok(()) => {
            println!("{service}: healthy");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{service}: unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(probe_addr(v4), "127.0.0.1:8080".parse().unwrap());
        let v6: SocketAddr = "[::]:9641".parse().unwrap();
        assert_eq!(probe_addr(v6), "[::1]:9641".parse().unwrap());
        let given: SocketAddr = "10.0.0.5:80".parse().unwrap();
        assert_eq!(probe_addr(given), given);
    }
}
