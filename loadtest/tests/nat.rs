//! `loadtest nat` end to end: real network namespaces, nftables NATs, and our turn-server
//! (and coturn) on the lab's public side. Needs root, `ip` and `nft` (scripts/test installs
//! nftables); elsewhere each test prints why it skips and passes.
//!
//! The report must match what NATs of each kind allow (RFC 4787): hole punching works unless a
//! symmetric NAT meets a port-restricted or symmetric one, and then the relay carries the pair.
//! Every namespace the run made is gone afterwards, also when it is interrupted.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

#[allow(dead_code)] // each test binary uses its own part of it
mod support;
use support::{json_stdout, loadtest, scratch};

/// Why namespaces cannot be made here, if they cannot.
fn skip_reason() -> Option<String> {
    // Root, `ip` and `nft`: what the binary itself checks before it builds anything.
    if let Err(why) = loadtest::nat::check_prerequisites() {
        return Some(why);
    }
    // Tests run in parallel: each probes with its own name.
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = format!("sbnat-probe-{}-{n}", std::process::id());
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &probe])
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &probe])
        .status();
    (!made).then(|| "`ip netns add` fails here (no CAP_SYS_ADMIN?)".into())
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

macro_rules! require_namespaces {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: loadtest nat needs root and network namespaces: {why}");
            return;
        }
    };
}

/// turn-server beside the loadtest binary (scripts/test builds every binary first).
fn turn_server() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_loadtest")).with_file_name("turn-server");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin.display().to_string()
}

/// A `loadtest nat` run long enough to be interrupted while its lab stands.
fn long_run(stderr: std::process::Stdio) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "nat",
            "--trials",
            "50",
            "--no-progress",
            "--server",
            &turn_server(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Namespaces whose name starts with the prefix of process `pid`.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("sbnat{pid}-");
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Every pairing connected every trial, directly exactly where punching can work.
fn assert_matrix(report: &Value, trials: u64) {
    let pairings = report["pairings"].as_array().unwrap();
    for p in pairings {
        let name = format!("{} <-> {}", p["a"], p["b"]);
        let (direct, relayed, failed) = (
            p["direct"].as_u64().unwrap(),
            p["relayed"].as_u64().unwrap(),
            p["failed"].as_u64().unwrap(),
        );
        assert_eq!(p["trials"], trials, "{name}");
        assert_eq!(direct + relayed + failed, trials, "{name}: counts add up");
        assert_eq!(failed, 0, "{name}: {p}");
        if p["punch_expected"] == true {
            assert_eq!(direct, trials, "{name}: hole punching should work: {p}");
        } else {
            assert_eq!(relayed, trials, "{name}: only the relay can connect: {p}");
        }
        // One time-to-connect sample per connected trial, under each path's own name.
        assert_eq!(p["connect_ms"]["count"], direct + relayed, "{name}");
        let steps = &p["steps"];
        let count = |step: &str| steps[step]["count"].as_u64().unwrap_or(0);
        assert_eq!(
            (count("direct"), count("relayed")),
            (direct, relayed),
            "{name}"
        );
    }
    let total: u64 = pairings.iter().map(|p| p["trials"].as_u64().unwrap()).sum();
    assert_eq!(report["trials"], total);
    assert_eq!(report["failed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nat_pairing_connects_directly_where_punching_can_work_else_through_our_relay() {
    require_namespaces!();
    let dir = scratch("nat");
    let html = dir.join("nat.html");
    let out = loadtest(&[
        "nat",
        "--trials",
        "2",
        "--concurrency",
        "4",
        "--server",
        &turn_server(),
        "--json",
        "--no-progress",
        "--report",
        html.to_str().unwrap(),
    ])
    .await;
    let report = json_stdout(&out);
    assert_eq!(
        report["pairings"].as_array().unwrap().len(),
        10,
        "4 kinds, 10 pairings"
    );
    assert_matrix(&report, 2);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("symmetric &lt;-&gt; symmetric") && page.contains("<svg"),
        "report page"
    );
    assert!(page.contains(&format!("id=\"trials\">{}<", report["trials"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_relays_the_pairs_punching_cannot_connect() {
    require_namespaces!();
    assert!(on_path("turnserver"), "coturn is installed by scripts/test");
    let out = loadtest(&[
        "nat",
        "--kinds",
        "port-restricted,symmetric",
        "--trials",
        "1",
        "--server",
        "coturn",
        "--json",
        "--no-progress",
    ])
    .await;
    let report = json_stdout(&out);
    assert_matrix(&report, 1);
    assert!(
        report["options"]["server"]
            .as_str()
            .unwrap()
            .contains("coturn")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_deletes_every_namespace_it_made() {
    require_namespaces!();
    let child = long_run(std::process::Stdio::piped());
    let pid = child.id().unwrap();
    // Interrupt once it has built NATs (bounded wait).
    let until = Instant::now() + Duration::from_secs(20);
    while namespaces_of(pid).len() < 3 {
        assert!(Instant::now() < until, "no namespaces appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid_t = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid_t, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits soon after SIGINT")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_takes_its_turn_server_down() {
    require_namespaces!();
    let mut child = long_run(std::process::Stdio::null());
    let pid = child.id().unwrap();
    // The lab's server is a child of the run (bounded wait).
    let until = Instant::now() + Duration::from_secs(20);
    let server = loop {
        if let Some(server) = children_named(pid, "turn-server").first() {
            break *server;
        }
        assert!(
            Instant::now() < until,
            "the lab's turn-server never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // SIGKILL: the run cannot stop the server itself.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while is_running(server) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outlived = is_running(server);
    // Clear up what a killed run leaves (the next run would delete the namespaces), pass or fail.
    if outlived {
        let server = nix::unistd::Pid::from_raw(server as i32);
        let _ = nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGKILL);
    }
    for ns in namespaces_of(pid) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
    }
    assert!(!outlived, "turn-server {server} outlived its run");
}

/// Processes whose parent is `parent` and whose name is `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
            let comm = stat
                .split_once(" (")
                .and_then(|(_, rest)| rest.rsplit_once(')'));
            comm.is_some_and(|(comm, rest)| {
                comm == name && rest.split_whitespace().nth(1) == Some(&parent.to_string())
            })
        })
        .collect()
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_root_it_says_why_and_exits_non_zero() {
    if !nix_is_root() || !on_path("setpriv") {
        eprintln!("skipped: needs root (to drop to an unprivileged user) and setpriv");
        return;
    }
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_loadtest"))
        .arg("nat")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run it as root"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_with_a_message_before_anything_is_built() {
    for (flags, code, says) in [
        (&["--trials", "0"][..], 1, "--trials be 1 to 1000"),
        (&["--trials", "1001"], 1, "--trials be 1 to 1000"),
        (
            &["--concurrency", "121"],
            1,
            "--concurrency must be 1 to 120",
        ),
        (&["--punch-timeout", "61s"], 1, "at most 60s"),
        (&["--kinds", "cone"], 2, "unknown NAT kind \"cone\""),
        (&["--kinds", ""], 2, "unknown NAT kind"),
    ] {
        let mut args = vec!["nat", "--no-progress"];
        args.extend_from_slice(flags);
        let out = loadtest(&args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
        assert!(out.stdout.is_empty(), "{flags:?}: no report");
    }
}
