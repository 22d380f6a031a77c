//! Keep-alives answered by the leader from memory, run the same way against a 3-member Cairn
//! cluster and a 3-member etcd cluster.
//!
//! - Keep-alives sent to a follower renew the lease without adding entries to the Raft log
//!   (the raft index stays put), and another follower reports the renewed TTL.
//! - A lease kept alive through a follower survives the loss of the leader, past its TTL, and
//!   ends once nobody keeps it alive.
//! - A lease nobody ever kept alive: etcd gives it its full TTL again when a new leader is
//!   elected; Cairn keeps its replicated deadline (a deliberate difference, documented in
//!   docs/etcd-differences.md), so a Redis key's expiry does not move with a failover.

use std::time::{Duration, Instant};

use cairn_tests::cluster::{Backend, Cluster};
use cairn_tests::runtime;
use etcd_client::{Client, ConnectOptions, PutOptions};

async fn connect(url: String) -> Client {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(10));
    Client::connect([url], Some(opts)).await.expect("connect")
}

/// One keep-alive on a fresh stream; the TTL it answered, or `None` when the call failed
/// (no leader for a moment).
async fn keep_alive_once(c: &mut Client, id: i64) -> Option<i64> {
    let (mut keeper, mut replies) = c.lease_keep_alive(id).await.ok()?;
    keeper.keep_alive().await.ok()?;
    Some(replies.message().await.ok()??.ttl())
}

async fn raft_index(c: &mut Client) -> u64 {
    c.status().await.expect("status").raft_index()
}

fn scenario(backend: Backend) {
    let mut cluster = Cluster::start(backend, 3);
    let leader = cluster.leader();
    let followers: Vec<usize> = cluster.members().into_iter().filter(|&i| i != leader).collect();
    let (first, second) = (cluster.url(followers[0]), cluster.url(followers[1]));
    let rt = runtime();
    let (kept, plain, granted_at) = rt.block_on(async {
        let mut a = connect(first.clone()).await;
        let mut b = connect(second.clone()).await;
        let kept = a.lease_grant(6, None).await.unwrap().id();
        let granted_at = Instant::now();
        let plain = a.lease_grant(40, None).await.unwrap().id();
        a.put("svc/kept", "up", Some(PutOptions::new().with_lease(kept))).await.unwrap();
        a.put("svc/plain", "up", Some(PutOptions::new().with_lease(plain))).await.unwrap();

        // Renewed every second through a follower, on one stream.
        let (mut keeper, mut replies) = a.lease_keep_alive(kept).await.unwrap();
        let mut index_before = 0;
        for round in 1..=4 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if round == 2 {
                // The first renewal may go through the log; the ones after it do not.
                index_before = raft_index(&mut b).await;
            }
            keeper.keep_alive().await.unwrap();
            assert_eq!(replies.message().await.unwrap().unwrap().ttl(), 6);
        }
        for _ in 0..50 {
            keeper.keep_alive().await.unwrap();
            assert_eq!(replies.message().await.unwrap().unwrap().ttl(), 6);
        }
        let index_after = raft_index(&mut b).await;
        assert!(
            index_after <= index_before + 1,
            "{backend:?}: 53 keep-alives moved the raft index from {index_before} to {index_after}"
        );
        // The other follower sees the renewal: 6 s from the last keep-alive, where the grant
        // or a renewal through the log 4 s ago would leave at most 3.
        let ttl = b.lease_time_to_live(kept, None).await.unwrap().ttl();
        assert!(ttl >= 4, "{backend:?}: {ttl} s left on the other follower right after a keep-alive");
        (kept, plain, granted_at)
    });

    cluster.kill9(leader);
    let killed_at = Instant::now();
    rt.block_on(async {
        let mut a = connect(first.clone()).await;
        let mut b = connect(second.clone()).await;
        // Kept alive through the election and well past its TTL.
        let mut renewed = 0;
        while killed_at.elapsed() < Duration::from_secs(12) {
            if keep_alive_once(&mut a, kept).await == Some(6) {
                renewed += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(renewed >= 10, "{backend:?}: only {renewed} keep-alives answered while a new leader took over");
        let left = b.get("svc/kept", None).await.unwrap();
        assert_eq!(left.kvs().len(), 1, "{backend:?}: the kept-alive lease ended after a leader change");
        assert_eq!(keep_alive_once(&mut a, kept).await, Some(6));

        // The lease never kept alive.
        let ttl = b.lease_time_to_live(plain, None).await.unwrap().ttl();
        let since_grant = granted_at.elapsed().as_secs() as i64;
        match backend {
            Backend::Cairn => assert!(
                ttl <= 40 - since_grant + 1,
                "Cairn: a lease never kept alive keeps its deadline across a failover: {ttl} s left, granted for 40 s {since_grant} s ago"
            ),
            Backend::Etcd => assert!(
                ttl > 40 - since_grant + 2,
                "etcd resets every lease to its full TTL on a new leader: {ttl} s left, granted for 40 s {since_grant} s ago"
            ),
        }

        // Nobody keeps it alive any more: it ends, with its key.
        let stopped = Instant::now();
        while !b.get("svc/kept", None).await.unwrap().kvs().is_empty() {
            assert!(stopped.elapsed() < Duration::from_secs(20), "{backend:?}: the lease never ended");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // etcd-client's first keep-alive answers TTL 0 (the lease is gone) as this error.
        let ended = a.lease_keep_alive(kept).await.err().map(|e| e.to_string());
        assert_eq!(ended.as_deref(), Some("lease keep alive error: lease not found"), "{backend:?}");
        assert_eq!(b.lease_time_to_live(kept, None).await.unwrap().ttl(), -1);
    });
}

#[test]
fn keep_alives_through_followers_and_a_leader_loss_etcd() {
    scenario(Backend::Etcd);
}

#[test]
fn keep_alives_through_followers_and_a_leader_loss_cairn() {
    scenario(Backend::Cairn);
}
