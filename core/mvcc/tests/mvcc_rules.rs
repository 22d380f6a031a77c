//! etcd's MVCC rules, checked on a real RocksDB store in a temp dir.

use std::collections::BTreeMap;

use cairn_api::*;
use cairn_mvcc::{open_db, Applier, DbOptions, Reader, WriteCommand};
use proptest::prelude::*;
use rocksdb::WriteBatch;

mod common;
use common::Store;

fn all() -> RangeRequest {
    RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest { key: k.into(), value: v.into(), ..Default::default() })
}

fn cmp(k: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { key: k.into(), range_end: vec![], result, target }
}

#[test]
fn empty_store_is_at_revision_one_and_puts_count_up() {
    let mut s = Store::new();
    assert_eq!(s.revision(), 1);
    let r = s.put("a", "1");
    assert_eq!(r.header.revision, 2);
    assert_eq!(r.prev_kv, None);
    let kv = s.get_at("a", 0).unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()), (2, 2, 1, &b"1"[..]));
    let r = s.put("a", "2");
    assert_eq!(r.header.revision, 3);
    assert_eq!(r.prev_kv.unwrap().value, b"1");
    let kv = s.get_at("a", 0).unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
}

#[test]
fn delete_resets_version_and_recreate_gets_new_create_revision() {
    let mut s = Store::new();
    s.put("a", "1");
    s.put("a", "2");
    let d = s.delete("a", "");
    assert_eq!((d.deleted, d.header.revision), (1, 4));
    assert_eq!(d.prev_kvs[0].value, b"2");
    assert_eq!(s.get_at("a", 0), None);
    s.put("a", "3");
    let kv = s.get_at("a", 0).unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn deleting_nothing_does_not_bump_the_revision() {
    let mut s = Store::new();
    s.put("a", "1");
    let d = s.delete("zzz", "");
    assert_eq!((d.deleted, d.header.revision), (0, 2));
    assert_eq!(s.revision(), 2);
}

#[test]
fn past_revisions_stay_readable() {
    let mut s = Store::new();
    s.put("a", "1"); // 2
    s.put("b", "1"); // 3
    s.put("a", "2"); // 4
    s.delete("b", ""); // 5
    assert_eq!(s.get_at("a", 2).unwrap().value, b"1");
    assert_eq!(s.get_at("a", 3).unwrap().value, b"1");
    assert_eq!(s.get_at("a", 4).unwrap().value, b"2");
    assert_eq!(s.get_at("b", 4).unwrap().value, b"1");
    assert_eq!(s.get_at("b", 5), None);
    assert_eq!(s.get_at("a", 1), None);
    let at3 = s.range(RangeRequest { revision: 3, ..all() }).unwrap();
    assert_eq!(at3.kvs.len(), 2);
    assert_eq!(at3.header.revision, 5, "the header shows the current revision");
    assert_eq!(
        s.range(RangeRequest { key: "a".into(), revision: 6, ..Default::default() }),
        Err(StoreError::FutureRevision)
    );
}

#[test]
fn compaction_drops_superseded_versions_only() {
    let mut s = Store::new();
    s.put("a", "1"); // 2
    s.put("a", "2"); // 3
    s.put("b", "1"); // 4
    s.delete("b", ""); // 5
    s.put("c", "1"); // 6
    assert!(matches!(s.apply(WriteCommand::Compact(CompactionRequest { revision: 5, physical: true })), Ok(_)));
    assert_eq!(s.range(RangeRequest { key: "a".into(), revision: 4, ..Default::default() }), Err(StoreError::Compacted));
    // At exactly the compaction revision every key reads as it was.
    assert_eq!(s.get_at("a", 5).unwrap().value, b"2");
    assert_eq!(s.get_at("b", 5), None);
    assert_eq!(s.get_at("c", 6).unwrap().value, b"1");
    assert_eq!(s.get_at("c", 5), None);
    assert_eq!(s.apply(WriteCommand::Compact(CompactionRequest { revision: 5, physical: false })), Err(StoreError::Compacted));
    assert_eq!(s.apply(WriteCommand::Compact(CompactionRequest { revision: 9, physical: false })), Err(StoreError::FutureRevision));
    // Compaction does not change the store revision.
    assert_eq!(s.revision(), 6);
}

#[test]
fn txn_writes_share_one_revision_and_see_their_own_writes() {
    let mut s = Store::new();
    s.put("x", "0"); // 2
    let t = s.txn(TxnRequest {
        compare: vec![cmp("x", CompareResult::Equal, CompareTarget::Value(b"0".to_vec()))],
        success: vec![
            put_op("a", "1"),
            put_op("b", "1"),
            RequestOp::Range(RangeRequest { key: "a".into(), range_end: "c".into(), ..Default::default() }),
        ],
        failure: vec![],
    });
    assert!(t.succeeded);
    assert_eq!(t.header.revision, 3);
    match &t.responses[2] {
        ResponseOp::Range(r) => assert_eq!(r.kvs.iter().map(|k| k.mod_revision).collect::<Vec<_>>(), vec![3, 3]),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.revision(), 3);
}

#[test]
fn txn_range_over_keys_it_overwrote_and_deleted_shows_each_key_once() {
    let mut s = Store::new();
    s.put("k1", "old");
    s.put("k2", "old");
    s.put("k3", "old");
    let t = s.txn(TxnRequest {
        compare: vec![],
        success: vec![
            put_op("k1", "new"),
            RequestOp::DeleteRange(DeleteRangeRequest { key: "k2".into(), ..Default::default() }),
            put_op("k0", "new"),
            RequestOp::Range(RangeRequest { key: "k".into(), range_end: "l".into(), ..Default::default() }),
        ],
        failure: vec![],
    });
    match &t.responses[3] {
        ResponseOp::Range(r) => {
            let got: Vec<(Vec<u8>, Vec<u8>)> = r.kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
            let want: Vec<(Vec<u8>, Vec<u8>)> =
                vec![("k0".into(), "new".into()), ("k1".into(), "new".into()), ("k3".into(), "old".into())];
            assert_eq!(got, want);
            assert_eq!(r.count, 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_only_still_sorts_by_value() {
    let mut s = Store::new();
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2")] {
        s.put(k, v);
    }
    let r = s.range(RangeRequest { keys_only: true, sort_target: SortTarget::Value, sort_order: SortOrder::Ascend, ..all() }).unwrap();
    assert_eq!(r.kvs.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), vec![b"b".to_vec(), b"c".to_vec(), b"a".to_vec()]);
    assert!(r.kvs.iter().all(|k| k.value.is_empty()));
}

#[test]
fn compares_on_missing_keys_use_zero_values_but_value_compares_fail() {
    let mut s = Store::new();
    let t = s.txn(TxnRequest {
        compare: vec![cmp("nope", CompareResult::Equal, CompareTarget::CreateRevision(0))],
        success: vec![put_op("created", "y")],
        failure: vec![],
    });
    assert!(t.succeeded);
    let t = s.txn(TxnRequest {
        compare: vec![cmp("nope", CompareResult::NotEqual, CompareTarget::Value(b"x".to_vec()))],
        success: vec![],
        failure: vec![put_op("f", "1")],
    });
    assert!(!t.succeeded);
    assert_eq!(t.header.revision, 3);
}

#[test]
fn compare_over_a_range_needs_every_key() {
    let mut s = Store::new();
    s.put("k1", "1");
    s.put("k2", "2");
    let over = |result, v: i64| Compare {
        key: "k".into(),
        range_end: "l".into(),
        result,
        target: CompareTarget::Version(v),
    };
    let ok = s.txn(TxnRequest { compare: vec![over(CompareResult::Equal, 1)], ..Default::default() });
    assert!(ok.succeeded);
    s.put("k2", "3");
    let no = s.txn(TxnRequest { compare: vec![over(CompareResult::Equal, 1)], ..Default::default() });
    assert!(!no.succeeded);
    let gt = s.txn(TxnRequest { compare: vec![over(CompareResult::Greater, 0)], ..Default::default() });
    assert!(gt.succeeded);
}

#[test]
fn nested_txn_branches_are_chosen_before_any_write() {
    let mut s = Store::new();
    let inner = TxnRequest {
        compare: vec![cmp("a", CompareResult::Equal, CompareTarget::Version(0))],
        success: vec![put_op("inner", "saw-no-a")],
        failure: vec![put_op("inner", "saw-a")],
    };
    let t = s.txn(TxnRequest { compare: vec![], success: vec![put_op("a", "1"), RequestOp::Txn(inner)], failure: vec![] });
    assert!(t.succeeded);
    assert_eq!(s.get_at("inner", 0).unwrap().value, b"saw-no-a");
}

#[test]
fn ignore_value_and_lease_need_an_existing_key() {
    let mut s = Store::new();
    let req = PutRequest { key: "a".into(), ignore_value: true, ..Default::default() };
    assert_eq!(s.apply(WriteCommand::Put(req.clone())), Err(StoreError::KeyNotFound));
    assert_eq!(s.revision(), 1, "a refused put changes nothing");
    s.put("a", "keep");
    assert!(s.apply(WriteCommand::Put(req)).is_ok());
    let kv = s.get_at("a", 0).unwrap();
    assert_eq!((kv.value.as_slice(), kv.version), (&b"keep"[..], 2));
}

#[test]
fn put_to_an_unknown_lease_is_refused() {
    let mut s = Store::new();
    let req = PutRequest { key: "a".into(), value: "v".into(), lease: 42, ..Default::default() };
    assert_eq!(s.apply(WriteCommand::Put(req)), Err(StoreError::LeaseNotFound));
}

#[test]
fn a_refused_txn_op_refuses_the_whole_txn() {
    let mut s = Store::new();
    let t = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "1"), RequestOp::Put(PutRequest { key: "b".into(), ignore_value: true, ..Default::default() })],
        failure: vec![],
    };
    assert_eq!(s.apply(WriteCommand::Txn(t)), Err(StoreError::KeyNotFound));
    assert_eq!(s.get_at("a", 0), None);
    assert_eq!(s.revision(), 1);
}

#[test]
fn range_limit_count_sort_and_filters() {
    let mut s = Store::new();
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "0")] {
        s.put(k, v);
    }
    s.put("b", "9"); // b: version 2, mod 6
    let r = s.range(RangeRequest { limit: 2, ..all() }).unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 4));
    let r = s.range(RangeRequest { limit: 4, ..all() }).unwrap();
    assert!(!r.more);
    let r = s
        .range(RangeRequest { sort_target: SortTarget::Value, sort_order: SortOrder::Descend, limit: 2, ..all() })
        .unwrap();
    assert_eq!(r.kvs.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), vec![b"b".to_vec(), b"a".to_vec()]);
    assert!(r.more);
    // A target other than the key with no order sorts ascending.
    let r = s.range(RangeRequest { sort_target: SortTarget::Mod, ..all() }).unwrap();
    assert_eq!(r.kvs.last().unwrap().key, b"b");
    let r = s.range(RangeRequest { min_mod_revision: 4, max_mod_revision: 5, ..all() }).unwrap();
    assert_eq!(r.kvs.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), vec![b"c".to_vec(), b"d".to_vec()]);
    assert_eq!(r.count, 4, "count ignores filters");
    let r = s.range(RangeRequest { keys_only: true, ..all() }).unwrap();
    assert!(r.kvs.iter().all(|k| k.value.is_empty()));
    let r = s.range(RangeRequest { count_only: true, ..all() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 4));
    let r = s.range(RangeRequest { key: "b".into(), range_end: prefix_range_end(b"b"), ..Default::default() }).unwrap();
    assert_eq!(r.count, 1);
    let r = s.range(RangeRequest { key: "c".into(), range_end: vec![0], ..Default::default() }).unwrap();
    assert_eq!(r.count, 2);
}

#[test]
fn keys_with_zero_and_ff_bytes_keep_their_order() {
    let mut s = Store::new();
    let keys: Vec<Vec<u8>> = vec![b"a".to_vec(), b"a\x00".to_vec(), b"a\x00\x00".to_vec(), b"a\x01".to_vec(), b"a\xff".to_vec(), b"b".to_vec()];
    for k in keys.iter().rev() {
        s.apply(WriteCommand::Put(PutRequest { key: k.clone(), value: b"v".to_vec(), ..Default::default() })).unwrap();
    }
    let now = s.range(all()).unwrap();
    assert_eq!(now.kvs.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), keys);
    s.put("zz", "later");
    let past = s.range(RangeRequest { revision: 7, ..all() }).unwrap();
    assert_eq!(past.kvs.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), keys);
}

#[test]
fn state_survives_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_db(dir.path(), &DbOptions::default()).unwrap();
        let mut applier = Applier::open(&db).unwrap();
        let mut b = WriteBatch::default();
        applier.apply(&db, &mut b, &WriteCommand::Put(PutRequest { key: "k".into(), value: "v".into(), ..Default::default() }), 1).unwrap();
        db.write(b).unwrap();
    }
    let db = open_db(dir.path(), &DbOptions::default()).unwrap();
    assert_eq!(Applier::open(&db).unwrap().meta().revision, 2);
    assert_eq!(Reader::snapshot(&db).get_latest(b"k").unwrap().unwrap().value, b"v");
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    Compact(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..6, 0u8..3).prop_map(|(k, w)| Op::Delete(k, w)),
        1 => (0u8..100).prop_map(Op::Compact),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random puts, deletes and compactions against a plain model of every revision's state.
    #[test]
    fn reads_at_every_revision_match_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut s = Store::new();
        // states[rev] = the key -> (value, create, mod, version) map at that revision.
        let mut states: Vec<BTreeMap<u8, (u8, i64, i64, i64)>> = vec![BTreeMap::new(), BTreeMap::new()];
        let mut compacted = 0i64;
        for op in ops {
            let rev = (states.len() - 1) as i64;
            let mut next = states[rev as usize].clone();
            match op {
                Op::Put(k, v) => {
                    s.apply(WriteCommand::Put(PutRequest { key: vec![b'k', k], value: vec![v], ..Default::default() })).unwrap();
                    let (create, version) = next.get(&k).map_or((rev + 1, 1), |e| (e.1, e.3 + 1));
                    next.insert(k, (v, create, rev + 1, version));
                    states.push(next);
                }
                Op::Delete(k, width) => {
                    let end = vec![b'k', k + width + 1];
                    s.apply(WriteCommand::DeleteRange(DeleteRangeRequest { key: vec![b'k', k], range_end: end, prev_kv: false })).unwrap();
                    let before = next.len();
                    next.retain(|key, _| *key < k || *key > k + width);
                    if next.len() != before {
                        states.push(next);
                    }
                }
                Op::Compact(at) => {
                    let target = (at as i64 % (rev + 1)).max(1);
                    let res = s.apply(WriteCommand::Compact(CompactionRequest { revision: target, physical: true }));
                    if target <= compacted {
                        prop_assert_eq!(res, Err(StoreError::Compacted));
                    } else {
                        prop_assert!(res.is_ok());
                        compacted = target;
                    }
                }
            }
        }
        let current = (states.len() - 1) as i64;
        prop_assert_eq!(s.revision(), current);
        for rev in 1..=current {
            let got = s.range(RangeRequest { key: vec![b'k'], range_end: vec![b'l'], revision: rev, ..Default::default() });
            if rev < compacted {
                prop_assert_eq!(got, Err(StoreError::Compacted));
                continue;
            }
            let got: Vec<(u8, u8, i64, i64, i64)> = got.unwrap().kvs.iter()
                .map(|kv| (kv.key[1], kv.value[0], kv.create_revision, kv.mod_revision, kv.version)).collect();
            let want: Vec<(u8, u8, i64, i64, i64)> = states[rev as usize].iter()
                .map(|(k, (v, c, m, ver))| (*k, *v, *c, *m, *ver)).collect();
            prop_assert_eq!(got, want, "at revision {}", rev);
        }
    }
}
