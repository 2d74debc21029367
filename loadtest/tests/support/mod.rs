//! What the loadtest test binaries share: running the real `loadtest` binary, scratch
//! directories, and reading the JSON report's time series.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub(crate) async fn loadtest(args: &[&str]) -> std::process::Output {
    loadtest_env(args, &[]).await
}

/// The binary with `args`, and of the `LOADTEST_*` environment only `env`.
pub(crate) async fn loadtest_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("LOADTEST_")) {
        cmd.env_remove(name);
    }
    let run = cmd
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("loadtest ends within a minute")
        .unwrap()
}

/// The JSON report a successful run printed on stdout; a failed run fails the test with its
/// stderr and stdout.
pub(crate) fn json_stdout(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "loadtest failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is the JSON report and nothing else")
}

/// A run refused before any load because its `--report` path cannot be written: it fails, names
/// the path, and prints no report.
pub(crate) fn assert_report_path_refused(out: &std::process::Output, target: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot write report"), "{stderr}");
    assert!(stderr.contains(target.to_str().unwrap()), "{stderr}");
    assert!(out.stdout.is_empty(), "no run happened");
}

/// A fresh directory for this test's files.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn series(timeline: &Value, name: &str) -> Vec<u64> {
    timeline[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} in {timeline}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

pub(crate) fn sum(counts: Option<&[u64]>) -> u64 {
    counts.unwrap().iter().sum()
}
