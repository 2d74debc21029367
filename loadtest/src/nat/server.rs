//! The STUN/TURN server on the lab's public namespace: our turn-server or coturn, started by
//! this process (and stopped by PID when dropped, or by the kernel if this process dies),
//! listening on [`SERVER_IP`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::netns::{PUBLIC_NET, SERVER_IP};
use super::peer;
use super::thread::in_namespace;

/// The UDP port the lab's server listens on.
const PORT: u16 = 3478;

/// Which TURN server to run in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    /// Switchboard's turn-server, from this binary (a path, or `turn-server` on PATH).
    Switchboard(PathBuf),
    /// coturn's `turnserver` (on PATH).
    Coturn,
}

impl FromStr for ServerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "coturn" => Ok(Self::Coturn),
            "switchboard" => Ok(Self::Switchboard(default_turn_server())),
            path => Ok(Self::Switchboard(PathBuf::from(path))),
        }
    }
}

impl ServerKind {
    pub fn name(&self) -> String {
        match self {
            Self::Switchboard(path) => format!("switchboard ({})", path.display()),
            Self::Coturn => "coturn".to_owned(),
        }
    }
}

/// `turn-server` beside this executable (as cargo and the images lay them out), else on PATH.
fn default_turn_server() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("turn-server")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("turn-server"))
}

/// A running server; SIGTERM then kill on drop.
#[derive(Debug)]
pub(super) struct Server {
    child: Child,
    pub(super) addr: SocketAddr,
    /// The server's output, shown when it fails to start; deleted on drop.
    log: PathBuf,
}

impl Server {
    /// Starts `kind` in namespace `ns` with TURN REST shared secret `secret`, and waits (up to
    /// `ready_within`) until it answers a STUN Binding request.
    pub(super) async fn start(
        kind: &ServerKind,
        ns: &str,
        secret: &str,
        ready_within: Duration,
    ) -> Result<Self, String> {
        let addr = SocketAddr::from((SERVER_IP, PORT));
        if let ServerKind::Switchboard(path) = kind
            && path.components().count() > 1
            && !path.is_file()
        {
            return Err(format!("no turn-server binary at {}", path.display()));
        }
        let log = std::env::temp_dir().join(format!("{ns}-server.log"));
        let out = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // setpriv asks the kernel to stop the server if this process dies, even by SIGKILL
        // (Drop never runs then): `ip netns exec` execs the server in place, and the
        // parent-death signal survives exec.
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "TERM", "ip", "netns", "exec", ns]);
        match kind {
            ServerKind::Switchboard(path) => {
                command
                    .arg(path)
                    .args(["--listen-udp", &addr.to_string()])
                    .args(["--http-listen", "127.0.0.1:9641"])
                    .args(["--relay-ip", &SERVER_IP.to_string()])
                    // The lab's public range is a TEST-NET one, which the server refuses to
                    // relay into by default.
                    .args(["--allow-peer", PUBLIC_NET])
                    .args(["--log-format", "json"])
                    .env("TURN_SECRETS", secret);
            }
            ServerKind::Coturn => {
                command
                    .arg("turnserver")
                    .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"])
                    .args(["--listening-ip", &SERVER_IP.to_string()])
                    .args(["--listening-port", &PORT.to_string()])
                    .args(["--relay-ip", &SERVER_IP.to_string()])
                    .args(["--use-auth-secret", "--realm", "switchboard"])
                    // On argv, unlike ours: a throwaway secret for this run's lab only.
                    .arg(format!("--static-auth-secret={secret}"))
                    .args(["--log-file", "stdout", "--simple-log"]);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the TURN server ({}): {e}", kind.name()))?;
        let mut server = Self { child, addr, log };
        let deadline = Instant::now() + ready_within;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "the TURN server ({}) exited at start: {status}\n{}",
                    kind.name(),
                    server.log_tail()
                ));
            }
            let probe = in_namespace(ns, move || peer::stun_binding_once(addr)).await;
            if matches!(probe, Ok(Ok(_))) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the TURN server ({}) did not answer STUN on {addr} within {ready_within:?}\n{}",
                    kind.name(),
                    server.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Server {
    /// The last lines the server printed.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
        // `ip netns exec` execs the server, so this PID is the server's own.
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}
