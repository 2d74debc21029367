//! Sweep metrics reach a real Prometheus Pushgateway (`janitor run --pushgateway`) and are
//! served on `/metrics` while scheduling (`--metrics-listen`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Connect, RedisServer, Seed, exists, free_port};

/// A `prometheus-pushgateway` on a free loopback port, stopped by PID on drop.
struct Pushgateway {
    child: Child,
    url: String,
}

impl Pushgateway {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway (scripts/test installs it)");
        let gateway = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = reqwest::get(format!("{}/-/ready", gateway.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "pushgateway did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gateway
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn janitor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_janitor"))
        .args(args)
        .env("JANITOR_LOG_FORMAT", "text")
        .output()
        .expect("run janitor")
}

#[tokio::test]
async fn run_pushes_its_metrics_to_a_pushgateway() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;
    let gateway = Pushgateway::start().await;
    let out = janitor(&[
        "run",
        "--redis-url",
        &redis.url(),
        "--pushgateway",
        &gateway.url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = gateway.metrics().await;
    for line in [
        r#"janitor_purged_total{instance="",job="switchboard_janitor",reason="expired"} 2"#,
        r#"janitor_purged_total{instance="",job="switchboard_janitor",reason="orphaned"} 4"#,
        r#"janitor_sweeps_total{instance="",job="switchboard_janitor",outcome="swept"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
    // An unreachable gateway fails the run (monitoring would be blind), saying why.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = janitor(&["run", "--redis-url", &redis.url(), "--pushgateway", &dead]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pushgateway unreachable"));
    // Only http:// is accepted.
    let out = janitor(&[
        "run",
        "--redis-url",
        &redis.url(),
        "--pushgateway",
        "ftp://x",
    ]);
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn schedule_serves_metrics_while_it_runs() {
    let redis = RedisServer::start();
    let mut conn = redis.conn().await;
    Seed::seed_now(&mut conn).await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_janitor"))
        .args(["schedule", "--cron", "* * * * * *"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("JANITOR_REDIS_URL", redis.url())
        .env("JANITOR_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        let text = match reqwest::get(format!("{base}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(r#"janitor_purged_total{reason="expired"} 2"#) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no swept metrics in time:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("janitor_last_success_timestamp_seconds"));
    assert!(!exists(&mut conn, "sb:{EXPIR1}:room").await);
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}
