//! A sweep of every master of a 3-master Redis Cluster on loopback ports.

use std::time::Duration;

use common::keys::KeySchema;
use janitor::{Janitor, Outcome, Policy};

use crate::support::{Connect, EXPECTED, RedisCluster, Seed, cluster_keys, counts};

fn janitor_for(cluster: &RedisCluster, policy: Policy) -> Janitor {
    Janitor {
        redis_url: cluster.url(),
        redis_timeout: Duration::from_secs(5),
        schema: KeySchema::default(),
        policy,
        lock_ttl: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn sweeps_every_master_of_a_cluster() {
    let cluster = RedisCluster::start();
    let mut conn = cluster.conn().await;
    Seed::seed_now(&mut conn).await;
    let before = cluster_keys(&cluster);
    let masters_with_keys = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]) != "0")
        .count();
    assert!(masters_with_keys >= 2, "the seed should span masters");

    let dry = janitor_for(
        &cluster,
        Policy {
            dry_run: true,
            ..Policy::default()
        },
    );
    let Outcome::Swept(report) = dry.sweep_once().await.unwrap() else {
        panic!("a dry run takes no lock");
    };
    assert_eq!(counts(&report), EXPECTED, "{report}");
    assert_eq!(report.scanned, Seed::SCANNED);
    assert_eq!(cluster_keys(&cluster), before);

    let real = janitor_for(&cluster, Policy::default());
    let Outcome::Swept(report) = real.sweep_once().await.unwrap() else {
        panic!("nobody else holds the lock");
    };
    assert_eq!(counts(&report), EXPECTED, "{report}");
    assert_eq!(report.scanned, Seed::SCANNED);
    assert_eq!(cluster_keys(&cluster), Seed::survivors());
}
