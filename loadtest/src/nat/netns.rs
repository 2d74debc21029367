//! Network namespaces for the NAT lab, built and torn down with `ip` and `nft`.
//!
//! Layout (addresses stay inside the namespaces; the root namespace is never touched):
//!
//! ```text
//!  host ns  10.0.0.2 ── lan │ NAT ns │ wan 203.0.113.k ── p<k> ┐
//!  host ns  10.0.0.2 ── lan │ NAT ns │ wan 203.0.113.m ── p<m> ┤ br0 203.0.113.1 (server)
//!                                                              └ "public" ns
//! ```
//!
//! Every namespace is named `<prefix>-...`, with a prefix unique to this process, and deleted
//! when its owner is dropped, so a failed or interrupted run leaves nothing behind; [`Lab`]'s
//! drop removes any that are left.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::rules::{GATEWAY, HOST, NatKind};

/// The lab's "internet": a TEST-NET range that exists only inside its namespaces.
pub(super) const PUBLIC_NET: &str = "203.0.113.0/24";
/// The server's address on the public bridge.
pub(super) const SERVER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// WAN addresses of NATs: 203.0.113.FIRST_WAN and up.
const FIRST_WAN: u8 = 10;
/// NATs that may exist at once (WAN addresses .10 to .249).
pub(super) const MAX_NATS: usize = 240;

/// Why a namespace command failed: the command and what it printed.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {output}")]
pub struct NetnsError {
    command: String,
    output: String,
}

/// Runs `program args` (with `stdin` fed in, if any) and fails with its stderr.
pub(super) async fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(), NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let fail = |output: String| NetnsError {
        command: command.clone(),
        output,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// `ip -n <ns> args...`
async fn ip_in(ns: &str, args: &[&str]) -> Result<(), NetnsError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all, None).await
}

/// `ip netns exec <ns> program args...`
async fn exec_in(
    ns: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(), NetnsError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all, stdin).await
}

/// Creates namespace `name` with its loopback up.
async fn add_namespace(name: &str) -> Result<(), NetnsError> {
    run("ip", &["netns", "add", name], None).await?;
    ip_in(name, &["link", "set", "lo", "up"]).await
}

/// Deletes namespace `name` synchronously (drop paths cannot await); a missing one is fine.
fn delete_namespace(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The prefix of every namespace process `pid` makes.
pub(super) fn prefix_for(pid: u32) -> String {
    format!("sbnat{pid}")
}

/// Deletes namespaces left by earlier runs that were killed before they could clean up
/// (SIGKILL): their prefix names a process that no longer exists.
pub(super) fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sbnat")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(&name);
        }
    }
}

/// The "public" namespace with its bridge; the server runs in it.
#[derive(Debug)]
pub(super) struct Lab {
    prefix: String,
    pub(super) public: String,
}

impl Lab {
    /// Builds the public namespace. `prefix` must be unique to this process.
    pub(super) async fn create(prefix: String) -> Result<Self, NetnsError> {
        let lab = Self {
            public: format!("{prefix}-pub"),
            prefix,
        };
        add_namespace(&lab.public).await?;
        let ns = lab.public.as_str();
        // A fixed address: otherwise the bridge takes the lowest of its ports' addresses and
        // changes it as sites come and go, and every NAT's ARP entry for the server goes stale
        // (their packets to it vanish for seconds).
        ip_in(
            ns,
            &[
                "link",
                "add",
                "br0",
                "address",
                "02:5b:00:00:00:01",
                "type",
                "bridge",
            ],
        )
        .await?;
        ip_in(
            ns,
            &["addr", "add", &format!("{SERVER_IP}/24"), "dev", "br0"],
        )
        .await?;
        ip_in(ns, &["link", "set", "br0", "up"]).await?;
        Ok(lab)
    }

    /// A NAT of `kind` on WAN address slot `slot` (< [`MAX_NATS`]) with one host behind it.
    pub(super) async fn site(&self, slot: usize, kind: NatKind) -> Result<Site, NetnsError> {
        assert!(slot < MAX_NATS, "NAT slot out of range");
        let wan = Ipv4Addr::new(203, 0, 113, FIRST_WAN + slot as u8);
        let site = Site {
            nat: format!("{}-n{slot}", self.prefix),
            host: format!("{}-h{slot}", self.prefix),
            public: self.public.clone(),
            port: format!("p{slot}"),
            wan,
        };
        // Owned from here on: a failure below drops it, which deletes what was made.
        site.build(kind).await?;
        Ok(site)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Sites delete their own; this catches any left by a task that was cut short.
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}-", self.prefix)) && name != self.public {
                    delete_namespace(&name);
                }
            }
        }
        delete_namespace(&self.public);
    }
}

/// One NAT namespace and the host namespace behind it; both deleted on drop.
#[derive(Debug)]
pub(super) struct Site {
    pub(super) nat: String,
    pub(super) host: String,
    /// The lab's public namespace, and this NAT's port on its bridge.
    public: String,
    port: String,
    pub(super) wan: Ipv4Addr,
}

impl Site {
    async fn build(&self, kind: NatKind) -> Result<(), NetnsError> {
        let (nat, host, public, port) = (
            self.nat.as_str(),
            self.host.as_str(),
            self.public.as_str(),
            self.port.as_str(),
        );
        add_namespace(nat).await?;
        add_namespace(host).await?;
        // Each veth end is created straight in its namespace: nothing appears in the root one.
        run(
            "ip",
            &[
                "link", "add", "wan", "netns", nat, "type", "veth", "peer", "name", port, "netns",
                public,
            ],
            None,
        )
        .await?;
        run(
            "ip",
            &[
                "link", "add", "lan", "netns", nat, "type", "veth", "peer", "name", "eth0",
                "netns", host,
            ],
            None,
        )
        .await?;
        ip_in(public, &["link", "set", port, "master", "br0", "up"]).await?;
        ip_in(
            nat,
            &["addr", "add", &format!("{}/24", self.wan), "dev", "wan"],
        )
        .await?;
        ip_in(
            nat,
            &["addr", "add", &format!("{GATEWAY}/24"), "dev", "lan"],
        )
        .await?;
        ip_in(nat, &["link", "set", "wan", "up"]).await?;
        ip_in(nat, &["link", "set", "lan", "up"]).await?;
        ip_in(host, &["addr", "add", &format!("{HOST}/24"), "dev", "eth0"]).await?;
        ip_in(host, &["link", "set", "eth0", "up"]).await?;
        ip_in(
            host,
            &["route", "add", "default", "via", &GATEWAY.to_string()],
        )
        .await?;
        exec_in(nat, "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None).await?;
        exec_in(nat, "nft", &["-f", "-"], Some(&kind.ruleset(self.wan))).await
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // The kernel destroys a deleted namespace later, in the background, and its veth ends
        // with it; deleting the bridge port now (which takes its peer, `wan`, along) frees the
        // port name and the WAN address for the next site on this slot at once.
        let _ = std::process::Command::new("ip")
            .args(["-n", &self.public, "link", "del", &self.port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        delete_namespace(&self.host);
        delete_namespace(&self.nat);
    }
}

/// Whether namespaces can be made here: root, `ip` and `nft` present. The error says what is
/// missing, for the message a non-root run prints.
pub(super) fn check_prerequisites() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("it builds network namespaces and nftables rules: run it as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN)".into());
    }
    for tool in ["ip", "nft", "sysctl", "setpriv"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "it needs `{tool}` on PATH (Debian: apt-get install iproute2 nftables procps util-linux)"
            ));
        }
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err("it needs network namespaces (/proc/self/ns/net is missing)".into());
    }
    Ok(())
}
