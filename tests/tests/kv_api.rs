//! The etcd v3 KV API of a real cairn process, through the third-party Rust `etcd-client`.

use cairn_tests::{runtime, Cairn};
use etcd_client::{Compare, CompareOp, CompactionOptions, GetOptions, PutOptions, Txn, TxnOp};

#[test]
fn put_get_txn_compact_with_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None).await.unwrap();
        let put = c.put("k", "v1", None).await.unwrap();
        let h = put.header().unwrap();
        assert_eq!(h.revision(), 2);
        assert_ne!(h.cluster_id(), 0);
        assert_ne!(h.member_id(), 0);
        assert!(h.raft_term() >= 1);

        let put = c.put("k", "v2", Some(PutOptions::new().with_prev_key())).await.unwrap();
        assert_eq!(put.prev_key().unwrap().value(), b"v1");

        let get = c.get("k", None).await.unwrap();
        let kv = &get.kvs()[0];
        assert_eq!((kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()), (&b"v2"[..], 2, 3, 2));

        let old = c.get("k", Some(GetOptions::new().with_revision(2))).await.unwrap();
        assert_eq!(old.kvs()[0].value(), b"v1");

        let txn = Txn::new()
            .when([Compare::value("k", CompareOp::Equal, "v2")])
            .and_then([TxnOp::put("a", "1", None), TxnOp::put("b", "2", None)])
            .or_else([TxnOp::get("k", None)]);
        let t = c.txn(txn).await.unwrap();
        assert!(t.succeeded());
        assert_eq!(t.header().unwrap().revision(), 4);

        let serial = c.get("a", Some(GetOptions::new().with_serializable())).await.unwrap();
        assert_eq!(serial.kvs()[0].mod_revision(), 4);

        c.compact(3, Some(CompactionOptions::new().with_physical())).await.unwrap();
        let err = c.get("k", Some(GetOptions::new().with_revision(2))).await.unwrap_err();
        assert!(err.to_string().contains("etcdserver: mvcc: required revision has been compacted"), "{err}");

        let status = c.status().await.unwrap();
        assert_eq!(status.leader(), h.member_id());
        assert!(status.raft_index() >= 5);
        let members = c.member_list().await.unwrap();
        assert_eq!(members.members().len(), 1);
        assert_eq!(members.members()[0].id(), h.member_id());
        assert_eq!(members.members()[0].client_urls(), [server.url()]);
    });
}

#[test]
fn data_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Cairn::start(&data);
    let rt = runtime();
    let (member, cluster) = rt.block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None).await.unwrap();
        for i in 0..50 {
            c.put(format!("key{i:02}"), format!("value{i}"), None).await.unwrap();
        }
        let h = c.status().await.unwrap();
        let h = h.header().unwrap();
        (h.member_id(), h.cluster_id())
    });
    assert_eq!(server.stop(), Some(0), "clean exit on SIGTERM:\n{}", server.log());
    let server = Cairn::start(&data);
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None).await.unwrap();
        let all = c.get("key", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(all.count(), 50);
        assert_eq!(all.kvs()[49].value(), b"value49");
        let h = all.header().unwrap();
        assert_eq!((h.revision(), h.member_id(), h.cluster_id()), (51, member, cluster));
        let p = c.put("after", "restart", None).await.unwrap();
        assert_eq!(p.header().unwrap().revision(), 52);
    });
}

/// Reads taken while puts are applied answer with their own snapshot's revision: the header
/// is neither behind the data nor ahead of it. Only one key is ever written after the first
/// revision, so at revision R that key's mod_revision is R, and any read of it must say so.
/// (Reads take the revision from an in-memory copy kept by the applier, `cairn_mvcc::MetaCache`;
/// a copy published at the wrong moment would show here as a mismatch.)
#[test]
fn reads_during_writes_carry_their_snapshots_revision() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut writer = etcd_client::Client::connect([server.url()], None).await.unwrap();
        writer.put("k", "0", None).await.unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for serializable in [true, true, false] {
            let (url, done) = (server.url(), done.clone());
            readers.push(tokio::spawn(async move {
                let mut c = etcd_client::Client::connect([url], None).await.unwrap();
                let (mut reads, mut last) = (0, 0);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let opts = if serializable { GetOptions::new().with_serializable() } else { GetOptions::new() };
                    let got = c.get("k", Some(opts)).await.unwrap();
                    let revision = got.header().unwrap().revision();
                    let kv = &got.kvs()[0];
                    assert_eq!(kv.mod_revision(), revision, "header and data of one read disagree");
                    assert_eq!(kv.value(), (revision - 2).to_string().as_bytes());
                    assert!(revision >= last, "a later read saw an older revision: {revision} after {last}");
                    (reads, last) = (reads + 1, revision);
                }
                reads
            }));
        }
        for i in 1..=300 {
            let put = writer.put("k", i.to_string(), None).await.unwrap();
            assert_eq!(put.header().unwrap().revision(), i + 2);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() > 0, "every reader read while the puts went on");
        }
        let last = writer.get("k", Some(GetOptions::new().with_serializable())).await.unwrap();
        assert_eq!((last.header().unwrap().revision(), last.kvs()[0].value()), (302, &b"300"[..]));
    });
}

/// A lone member that starts, takes writes of every kind and stops has nothing to warn about:
/// its log at the default level holds no warning or error (a warning per write would bury the
/// ones that matter, and cost a formatted line and a write to stderr each).
#[test]
fn writes_leave_the_log_free_of_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None).await.unwrap();
        for i in 0..20 {
            c.put(format!("k{i}"), "v", None).await.unwrap();
        }
        let txn = Txn::new().when([Compare::version("k0", CompareOp::Greater, 0)]).and_then([TxnOp::delete("k1", None)]);
        assert!(c.txn(txn).await.unwrap().succeeded());
        c.delete("k2", None).await.unwrap();
        let lease = c.lease_grant(60, None).await.unwrap().id();
        c.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        c.lease_revoke(lease).await.unwrap();
        assert_eq!(c.get("k3", None).await.unwrap().kvs()[0].value(), b"v");
    });
    server.stop();
    let log = server.log();
    let noisy: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert!(noisy.is_empty(), "{} warnings or errors:\n{}", noisy.len(), noisy.join("\n"));
}
