//! The same KV script over gRPC (Rust `etcd-client`) against real etcd 3.4 and against Cairn:
//! every answer (values, revisions, counts, flags, errors with code and text) must be equal.
//! Covers what etcdctl 3.4 cannot send: count-only, min/max revision filters, nested txns,
//! range compares, txn-internal reads at a revision.

use cairn_tests::{runtime, Cairn, RealEtcd};
use etcd_client::*;

fn kvs(kvs: &[KeyValue]) -> String {
    kvs.iter()
        .map(|kv| {
            format!(
                "{}={} c{} m{} v{} l{}",
                String::from_utf8_lossy(kv.key()),
                String::from_utf8_lossy(kv.value()),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rev(h: Option<&ResponseHeader>) -> i64 {
    h.map_or(-1, |h| h.revision())
}

fn err(e: Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("ERR {:?}: {}", s.code(), s.message()),
        other => format!("ERR {other}"),
    }
}

fn get(r: Result<GetResponse, Error>) -> String {
    match r {
        Ok(r) => format!("rev {} count {} more {} [{}]", rev(r.header()), r.count(), r.more(), kvs(r.kvs())),
        Err(e) => err(e),
    }
}

fn put(r: Result<PutResponse, Error>) -> String {
    match r {
        Ok(r) => format!("rev {} prev [{}]", rev(r.header()), r.prev_key().map(|kv| kvs(std::slice::from_ref(kv))).unwrap_or_default()),
        Err(e) => err(e),
    }
}

fn del(r: Result<DeleteResponse, Error>) -> String {
    match r {
        Ok(r) => format!("rev {} deleted {} prev [{}]", rev(r.header()), r.deleted(), kvs(r.prev_kvs())),
        Err(e) => err(e),
    }
}

fn txn_resp(r: &TxnResponse) -> String {
    let ops: Vec<String> = r
        .op_responses()
        .into_iter()
        .map(|op| match op {
            TxnOpResponse::Put(p) => format!("put({})", put(Ok(p))),
            TxnOpResponse::Get(g) => format!("get({})", get(Ok(g))),
            TxnOpResponse::Delete(d) => format!("del({})", del(Ok(d))),
            TxnOpResponse::Txn(t) => format!("txn({})", txn_resp(&t)),
        })
        .collect();
    format!("rev {} succeeded {} [{}]", rev(r.header()), r.succeeded(), ops.join("; "))
}

fn txn(r: Result<TxnResponse, Error>) -> String {
    match r {
        Ok(r) => txn_resp(&r),
        Err(e) => err(e),
    }
}

async fn script(url: String) -> Vec<(String, String)> {
    let mut c = Client::connect([url], None).await.expect("connect");
    let mut out: Vec<(String, String)> = Vec::new();
    macro_rules! step {
        ($label:expr, $e:expr) => {
            out.push(($label.to_string(), $e));
        };
    }
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4"), ("d", "5"), ("e/1", "x"), ("e/2", "y")] {
        step!(format!("put {k}"), put(c.put(k, v, None).await));
    }
    step!("del b", del(c.delete("b", Some(DeleteOptions::new().with_prev_key())).await));
    step!("del missing", del(c.delete("zz", None).await));
    step!("count only", get(c.get("a", Some(GetOptions::new().with_from_key().with_count_only())).await));
    step!(
        "min/max mod",
        get(c.get("a", Some(GetOptions::new().with_from_key().with_min_mod_revision(4).with_max_mod_revision(6))).await)
    );
    step!(
        "min/max create",
        get(c.get("a", Some(GetOptions::new().with_from_key().with_min_create_revision(3).with_max_create_revision(5))).await)
    );
    step!(
        "limit + sort mod desc",
        get(c.get("a", Some(GetOptions::new().with_from_key().with_limit(2).with_sort(SortTarget::Mod, SortOrder::Descend))).await)
    );
    step!("sort create, no order", get(c.get("a", Some(GetOptions::new().with_from_key().with_sort(SortTarget::Create, SortOrder::None))).await));
    step!("range [b, e)", get(c.get("b", Some(GetOptions::new().with_range("e"))).await));
    step!("prefix e/", get(c.get("e/", Some(GetOptions::new().with_prefix())).await));
    step!("all keys", get(c.get("", Some(GetOptions::new().with_all_keys())).await));
    step!("at rev 3 keys only", get(c.get("a", Some(GetOptions::new().with_from_key().with_revision(3).with_keys_only())).await));
    step!("serializable", get(c.get("a", Some(GetOptions::new().with_serializable())).await));
    step!("rev -1", get(c.get("a", Some(GetOptions::new().with_revision(-1))).await));
    step!("put prev", put(c.put("a", "5", Some(PutOptions::new().with_prev_key())).await));
    step!("ignore value", put(c.put("a", "", Some(PutOptions::new().with_ignore_value().with_prev_key())).await));
    step!("ignore value missing", put(c.put("nokey", "", Some(PutOptions::new().with_ignore_value())).await));
    step!("ignore value with value", put(c.put("a", "v", Some(PutOptions::new().with_ignore_value())).await));
    step!("ignore lease with lease", put(c.put("a", "v", Some(PutOptions::new().with_ignore_lease().with_lease(5))).await));
    step!("unknown lease", put(c.put("a", "v", Some(PutOptions::new().with_lease(77))).await));

    let range_cmp = Txn::new()
        .when([Compare::version("e/", CompareOp::Greater, 0).with_prefix()])
        .and_then([TxnOp::put("t1", "ok", None), TxnOp::get("e/", Some(GetOptions::new().with_prefix()))])
        .or_else([TxnOp::put("t1", "no", None)]);
    step!("txn range compare", txn(c.txn(range_cmp).await));
    let range_cmp_fail = Txn::new()
        .when([Compare::version("e/", CompareOp::Equal, 1).with_prefix(), Compare::value("a", CompareOp::Equal, "5")])
        .and_then([TxnOp::put("t2", "ok", None)])
        .or_else([TxnOp::delete("e/1", Some(DeleteOptions::new().with_prev_key())), TxnOp::get("e/", Some(GetOptions::new().with_prefix()))]);
    step!("txn all-of compare", txn(c.txn(range_cmp_fail).await));
    let create_if_absent = Txn::new()
        .when([Compare::create_revision("lock", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("lock", "me", None)])
        .or_else([TxnOp::get("lock", None)]);
    step!("create if absent 1", txn(c.txn(create_if_absent.clone()).await));
    step!("create if absent 2", txn(c.txn(create_if_absent).await));
    let missing_value = Txn::new()
        .when([Compare::value("missing", CompareOp::NotEqual, "x")])
        .and_then([TxnOp::put("mv", "then", None)])
        .or_else([TxnOp::put("mv", "else", None)]);
    step!("value compare on missing key", txn(c.txn(missing_value).await));
    let nested = Txn::new().and_then([
        TxnOp::put("n1", "1", None),
        TxnOp::txn(
            Txn::new()
                .when([Compare::version("n1", CompareOp::Equal, 0)])
                .and_then([TxnOp::put("n2", "saw-nothing", None)])
                .or_else([TxnOp::put("n2", "saw-n1", None)]),
        ),
        TxnOp::get("n", Some(GetOptions::new().with_prefix())),
    ]);
    step!("nested txn", txn(c.txn(nested).await));
    let read_only = Txn::new()
        .when([Compare::mod_revision("a", CompareOp::Greater, 1)])
        .and_then([TxnOp::get("a", Some(GetOptions::new().with_revision(2))), TxnOp::get("a", None)]);
    step!("read-only txn with revision", txn(c.txn(read_only).await));
    let future = Txn::new().and_then([TxnOp::get("a", Some(GetOptions::new().with_revision(1000)))]);
    step!("txn future revision", txn(c.txn(future).await));
    let empty_key = Txn::new().and_then([TxnOp::put("", "v", None)]);
    step!("txn empty key", txn(c.txn(empty_key).await));
    let dup = Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::delete("x", None)]);
    step!("txn put+delete same key", txn(c.txn(dup).await));
    let dup_prefix = Txn::new().and_then([TxnOp::delete("x", Some(DeleteOptions::new().with_prefix())), TxnOp::put("xy", "1", None)]);
    step!("txn put inside deleted prefix", txn(c.txn(dup_prefix).await));
    let two_deletes = Txn::new().and_then([TxnOp::delete("a", None), TxnOp::delete("a", None)]);
    step!("txn two deletes", txn(c.txn(two_deletes).await));
    let then_else_same = Txn::new()
        .when([Compare::value("nope", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("s", "1", None)])
        .or_else([TxnOp::put("s", "2", None)]);
    step!("same key in both branches", txn(c.txn(then_else_same).await));

    step!("compact 0", match c.compact(0, None).await { Ok(r) => format!("rev {}", rev(r.header())), Err(e) => err(e) });
    step!("compact 10", match c.compact(10, Some(CompactionOptions::new().with_physical())).await { Ok(r) => format!("rev {}", rev(r.header())), Err(e) => err(e) });
    step!("get at 9", get(c.get("a", Some(GetOptions::new().with_from_key().with_revision(9))).await));
    step!("get at 10", get(c.get("a", Some(GetOptions::new().with_from_key().with_revision(10))).await));
    step!("compact 10 again", match c.compact(10, None).await { Ok(r) => format!("rev {}", rev(r.header())), Err(e) => err(e) });
    step!("compact future", match c.compact(100000, None).await { Ok(r) => format!("rev {}", rev(r.header())), Err(e) => err(e) });
    step!("delete from key", del(c.delete("a", Some(DeleteOptions::new().with_from_key())).await));
    step!("get all after", get(c.get("", Some(GetOptions::new().with_all_keys())).await));
    out
}

#[test]
fn kv_answers_match_real_etcd() {
    let rt = runtime();
    let etcd = RealEtcd::start();
    let want = rt.block_on(script(etcd.url()));
    drop(etcd);
    let dir = tempfile::tempdir().unwrap();
    let cairn = Cairn::start(&dir.path().join("data"));
    let got = rt.block_on(script(cairn.url()));
    let mut diffs = Vec::new();
    for ((label, w), (_, g)) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!("{label}:\n  etcd:  {w}\n  cairn: {g}"));
        }
    }
    assert_eq!(want.len(), got.len());
    assert!(diffs.is_empty(), "{} of {} steps differ:\n{}", diffs.len(), want.len(), diffs.join("\n"));
}
