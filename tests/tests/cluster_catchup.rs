//! A member that falls behind the leader's log (which snapshots and purges it) catches up by
//! receiving a snapshot, ends up with the same history as the others (HashKV), and keeps its
//! own identity across the install and a restart.
//!
//! Cairn only: etcd keeps 5000 entries for catching up beyond its snapshot, so a test that
//! forces a snapshot transfer on etcd would need far more writes than this one.

use std::time::Duration;

use cairn_tests::cluster::{Backend, Cluster, Timing};
use etcd_client::GetOptions;

#[test]
fn a_member_behind_the_purged_log_catches_up_by_snapshot() {
    let timing = Timing { snapshot_count: Some(100), ..Timing::default() };
    let mut cluster = Cluster::start_with(Backend::Cairn, 3, timing);
    let rt = cairn_tests::runtime();
    let behind = cluster.follower();
    let behind_id = cluster_status_id(&rt, &cluster.url(behind));
    cluster.kill9(behind);

    // Sequential puts: each one its own log entry, so the log grows past what the leader keeps
    // after a snapshot (the last snapshot_count entries).
    let leader = cluster.leader();
    let url = cluster.url(leader);
    let written = rt.block_on(async {
        let mut c = etcd_client::Client::connect([url], None).await.map_err(|e| e.to_string())?;
        for i in 0..400 {
            c.put(format!("key{i:05}"), format!("value{i}"), None).await.map_err(|e| format!("put {i}: {e}"))?;
        }
        Ok::<_, String>(())
    });
    if let Err(e) = written {
        panic!("{e}\nleader's log:\n{}", cluster.log(leader));
    }

    cluster.restart(behind);
    cluster.wait_healthy(Duration::from_secs(60));
    let behind_url = cluster.url(behind);
    let caught_up = cluster.wait_for(Duration::from_secs(60), |_| {
        rt.block_on(async {
            let Ok(mut c) = etcd_client::Client::connect([behind_url.clone()], None).await else { return false };
            let opts = GetOptions::new().with_serializable().with_prefix().with_count_only();
            c.get("key", Some(opts)).await.map(|r| r.count() == 400).unwrap_or(false)
        })
    });
    assert!(caught_up, "the member did not catch up:\n{}", cluster.log(behind));
    assert!(
        cluster.log(behind).contains("installed a snapshot from the leader"),
        "the member caught up without a snapshot: the log was not purged?\n{}",
        cluster.log(behind)
    );
    cluster.check_hash_kv().expect("HashKV agrees on every member");

    // The snapshot carried the leader's meta; the member kept its own id, also after a restart.
    assert_eq!(cluster_status_id(&rt, &cluster.url(behind)), behind_id);
    cluster.kill9(behind);
    cluster.restart(behind);
    cluster.wait_healthy(Duration::from_secs(60));
    assert_eq!(cluster_status_id(&rt, &cluster.url(behind)), behind_id);
    cluster.check_hash_kv().expect("HashKV agrees after the restart");
}

fn cluster_status_id(rt: &tokio::runtime::Runtime, url: &str) -> u64 {
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([url], None).await.expect("connect");
        c.status().await.expect("status").header().expect("header").member_id()
    })
}
