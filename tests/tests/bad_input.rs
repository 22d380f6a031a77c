//! Bad requests get etcd's error (code and exact text) and the server keeps serving.

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use tonic::Code;

fn status_of(e: etcd_client::Error) -> (Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

async fn still_serving(c: &mut Client) {
    let p = c.put("alive", "yes", None).await.expect("server still takes writes");
    let g = c.get("alive", None).await.expect("server still serves reads");
    assert_eq!(g.kvs()[0].mod_revision(), p.header().unwrap().revision());
}

#[test]
fn bad_requests_get_etcds_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();

        let e = c.put("", "v", None).await.unwrap_err();
        assert_eq!(status_of(e), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
        still_serving(&mut c).await;

        let e = c.get("", None).await.unwrap_err();
        assert_eq!(status_of(e), (Code::InvalidArgument, "etcdserver: key is not provided".into()));

        // Just over --max-request-bytes (1.5 MiB): etcd's own error, not a transport failure.
        let big = vec![b'x'; 1536 * 1024 + 10];
        let e = c.put("big", big, None).await.unwrap_err();
        assert_eq!(status_of(e), (Code::InvalidArgument, "etcdserver: request is too large".into()));
        still_serving(&mut c).await;

        // Far over it (beyond the 512 KiB gRPC allowance): the gRPC layer refuses the message
        // before it is decoded, as etcd's does.
        let huge = vec![b'x'; 3 << 20];
        let e = c.put("huge", huge, None).await.unwrap_err();
        let (code, msg) = status_of(e);
        assert!(matches!(code, Code::ResourceExhausted | Code::OutOfRange), "{code:?}: {msg}");
        assert!(c.get("huge", None).await.unwrap().kvs().is_empty(), "nothing stored");
        still_serving(&mut c).await;

        let ops: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
        let e = c.txn(Txn::new().and_then(ops)).await.unwrap_err();
        assert_eq!(status_of(e), (Code::InvalidArgument, "etcdserver: too many operations in txn request".into()));
        let ops: Vec<TxnOp> = (0..128).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
        assert!(c.txn(Txn::new().and_then(ops)).await.is_ok(), "128 ops are allowed");

        let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
        let e = c.txn(dup).await.unwrap_err();
        assert_eq!(status_of(e), (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".into()));
        still_serving(&mut c).await;

        let rev = c.get("alive", None).await.unwrap().header().unwrap().revision();
        let e = c.get("alive", Some(GetOptions::new().with_revision(rev + 100))).await.unwrap_err();
        assert_eq!(status_of(e), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));
        c.compact(rev, None).await.unwrap();
        let e = c.get("alive", Some(GetOptions::new().with_revision(rev - 1))).await.unwrap_err();
        assert_eq!(status_of(e), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
        let e = c.compact(rev, None).await.unwrap_err();
        assert_eq!(status_of(e), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
        let e = c.compact(rev + 100, None).await.unwrap_err();
        assert_eq!(status_of(e), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));

        let e = c.put("leased", "v", Some(etcd_client::PutOptions::new().with_lease(12345))).await.unwrap_err();
        assert_eq!(status_of(e), (Code::NotFound, "etcdserver: requested lease not found".into()));
        still_serving(&mut c).await;
    });
}
