//! The Lease service of a real cairn process through the Rust `etcd-client`: grant, attach,
//! keep-alive stream, time-to-live, revoke, expiry by the leader, and deadlines kept across a
//! restart.

use std::time::{Duration, Instant};

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};

#[test]
fn grant_keepalive_revoke_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();

        // TTLs below the minimum (2 s with the default election timeout) are raised to it.
        let short = c.lease_grant(1, None).await.unwrap();
        assert_eq!(short.ttl(), 2);
        assert!(short.id() > 0);

        let chosen = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(4242))).await.unwrap();
        assert_eq!((chosen.id(), chosen.ttl()), (4242, 30));
        let again = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(4242))).await.unwrap_err();
        assert!(again.to_string().contains("etcdserver: lease already exists"), "{again}");

        for k in ["svc/a", "svc/b", "svc/c"] {
            c.put(k, "up", Some(PutOptions::new().with_lease(4242))).await.unwrap();
        }
        let ttl = c.lease_time_to_live(4242, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!(ttl.granted_ttl(), 30);
        assert!((28..=30).contains(&ttl.ttl()), "remaining {}", ttl.ttl());
        assert_eq!(ttl.keys(), [b"svc/a".to_vec(), b"svc/b".to_vec(), b"svc/c".to_vec()]);

        let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        assert!(listed.contains(&4242) && listed.contains(&short.id()));

        let (mut keeper, mut replies) = c.lease_keep_alive(4242).await.unwrap();
        keeper.keep_alive().await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!((reply.id(), reply.ttl()), (4242, 30));

        let before = c.get("svc/", Some(GetOptions::new().with_prefix())).await.unwrap().header().unwrap().revision();
        let revoked = c.lease_revoke(4242).await.unwrap();
        assert_eq!(revoked.header().unwrap().revision(), before + 1, "one revision for all attached keys");
        assert_eq!(c.get("svc/", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 0);
        assert_eq!(c.lease_time_to_live(4242, None).await.unwrap().ttl(), -1);
        let e = c.lease_revoke(4242).await.unwrap_err();
        assert!(e.to_string().contains("etcdserver: requested lease not found"), "{e}");

        // A lease nobody keeps alive ends within its TTL, with its keys.
        let dying = c.lease_grant(2, None).await.unwrap().id();
        c.put("ephemeral", "x", Some(PutOptions::new().with_lease(dying))).await.unwrap();
        let started = Instant::now();
        while !c.get("ephemeral", None).await.unwrap().kvs().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "lease never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Keep-alive on an expired lease answers TTL 0.
        keeper.keep_alive().await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.ttl(), 0);
    });
}

#[test]
fn a_lease_keeps_its_deadline_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Cairn::start(&data);
    let rt = runtime();
    let id = rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let id = c.lease_grant(8, None).await.unwrap().id();
        c.put("k", "v", Some(PutOptions::new().with_lease(id))).await.unwrap();
        id
    });
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    let server = Cairn::start(&data);
    rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let ttl = c.lease_time_to_live(id, None).await.unwrap();
        assert_eq!(ttl.granted_ttl(), 8);
        assert!(ttl.ttl() <= 5, "the deadline was kept, not reset to the full TTL: {} s left", ttl.ttl());
        let started = Instant::now();
        while !c.get("k", None).await.unwrap().kvs().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "lease never expired after restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
