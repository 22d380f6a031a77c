//! Server-side lock and election of a real cairn process through the Rust `etcd-client`.

use std::time::Duration;

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};

#[test]
fn lock_is_exclusive_and_freed_by_unlock_or_lease_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let l1 = c.lease_grant(30, None).await.unwrap().id();
        let l2 = c.lease_grant(2, None).await.unwrap().id();
        let l3 = c.lease_grant(30, None).await.unwrap().id();
        let held = c.lock("res", Some(LockOptions::new().with_lease(l1))).await.unwrap();
        assert!(held.key().starts_with(b"res/"));

        // A second contender waits while the first holds the lock.
        let mut c2 = c.clone();
        let waiting = tokio::spawn(async move { c2.lock("res", Some(LockOptions::new().with_lease(l2))).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "second contender must wait");
        c.unlock(held.key()).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served after unlock").unwrap().unwrap();
        assert!(second.key().ends_with(format!("{l2:x}").as_bytes()));

        // The second holder never unlocks; its lease (TTL 2) ends and the third gets the lock.
        let third = tokio::time::timeout(Duration::from_secs(10), c.lock("res", Some(LockOptions::new().with_lease(l3))))
            .await
            .expect("served after the holder's lease ended")
            .unwrap();
        assert!(third.key().ends_with(format!("{l3:x}").as_bytes()));

        let e = c.lock("res", Some(LockOptions::new().with_lease(999_999))).await.unwrap_err();
        assert!(e.to_string().contains("etcdserver: requested lease not found"), "{e}");
    });
}

#[test]
fn election_campaign_proclaim_observe_resign() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let e = c.leader("jobs").await.unwrap_err();
        assert!(e.to_string().contains("election: no leader"), "{e}");

        let l1 = c.lease_grant(30, None).await.unwrap().id();
        let l2 = c.lease_grant(30, None).await.unwrap().id();
        let won = c.campaign("jobs", "node-1", l1).await.unwrap();
        let leader = won.leader().unwrap().clone();
        assert_eq!(c.leader("jobs").await.unwrap().kv().unwrap().value(), b"node-1");

        let mut observed = c.observe("jobs").await.unwrap();
        let first = observed.message().await.unwrap().unwrap();
        assert_eq!(first.kv().unwrap().value(), b"node-1");

        c.proclaim("node-1-v2", Some(ProclaimOptions::new().with_leader(leader.clone()))).await.unwrap();
        let next = observed.message().await.unwrap().unwrap();
        assert_eq!(next.kv().unwrap().value(), b"node-1-v2");

        let mut c2 = c.clone();
        let challenger = tokio::spawn(async move { c2.campaign("jobs", "node-2", l2).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!challenger.is_finished(), "the challenger waits while node-1 leads");
        c.resign(Some(ResignOptions::new().with_leader(leader.clone()))).await.unwrap();
        let won2 = tokio::time::timeout(Duration::from_secs(5), challenger).await.unwrap().unwrap().unwrap();
        assert_eq!(won2.leader().unwrap().lease(), l2);
        let next = observed.message().await.unwrap().unwrap();
        assert_eq!(next.kv().unwrap().value(), b"node-2");

        // The old leader key can no longer proclaim.
        let e = c.proclaim("stale", Some(ProclaimOptions::new().with_leader(leader))).await.unwrap_err();
        assert!(e.to_string().contains("election: not leader"), "{e}");
    });
}
