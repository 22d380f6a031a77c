//! Lease rules of the MVCC store: grants, attached keys, revoke, renew and expiry by deadline.

use cairn_api::*;
use cairn_mvcc::{open_db, Applier, ApplyOutcome, DbOptions, MvccError, Reader, WriteCommand};
use rocksdb::WriteBatch;

mod common;
use common::Store;

const T0: i64 = 1_000_000;

#[test]
fn grant_attach_and_revoke_deletes_every_key_in_one_revision() {
    let mut s = Store::new();
    assert!(matches!(s.apply(WriteCommand::LeaseGrant { id: 7, ttl: 10, now_ms: T0 }), Ok(ApplyOutcome::LeaseGrant(r)) if r.id == 7 && r.ttl == 10));
    assert_eq!(s.apply(WriteCommand::LeaseGrant { id: 7, ttl: 10, now_ms: T0 }), Err(StoreError::LeaseExists));
    for k in ["a", "b", "c"] {
        s.put_on_lease(k, 7).unwrap();
    }
    s.put_on_lease("free", 0).unwrap();
    assert_eq!(s.reader().lease_keys(7).unwrap(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(s.reader().get_latest(b"a").unwrap().unwrap().lease, 7);
    let before = s.reader().meta().unwrap().revision;
    match s.apply(WriteCommand::LeaseRevoke { id: 7 }) {
        Ok(ApplyOutcome::LeaseRevoke(r)) => assert_eq!(r.header.revision, before + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.keys(), vec!["free"]);
    assert_eq!(s.reader().get_lease(7).unwrap(), None);
    assert!(s.reader().lease_keys(7).unwrap().is_empty());
    assert_eq!(s.apply(WriteCommand::LeaseRevoke { id: 7 }), Err(StoreError::LeaseNotFound));
}

#[test]
fn keys_moved_or_deleted_leave_the_lease() {
    let mut s = Store::new();
    s.apply(WriteCommand::LeaseGrant { id: 1, ttl: 10, now_ms: T0 }).unwrap();
    s.apply(WriteCommand::LeaseGrant { id: 2, ttl: 10, now_ms: T0 }).unwrap();
    s.put_on_lease("moved", 1).unwrap();
    s.put_on_lease("dropped", 1).unwrap();
    s.put_on_lease("deleted", 1).unwrap();
    s.put_on_lease("moved", 2).unwrap();
    s.put_on_lease("dropped", 0).unwrap();
    s.apply(WriteCommand::DeleteRange(DeleteRangeRequest { key: "deleted".into(), ..Default::default() })).unwrap();
    assert!(s.reader().lease_keys(1).unwrap().is_empty());
    assert_eq!(s.reader().lease_keys(2).unwrap(), vec![b"moved".to_vec()]);
    s.apply(WriteCommand::LeaseRevoke { id: 1 }).unwrap();
    assert_eq!(s.keys(), vec!["dropped", "moved"]);
}

#[test]
fn ignore_lease_keeps_the_attachment() {
    let mut s = Store::new();
    s.apply(WriteCommand::LeaseGrant { id: 3, ttl: 10, now_ms: T0 }).unwrap();
    s.put_on_lease("k", 3).unwrap();
    s.apply(WriteCommand::Put(PutRequest { key: "k".into(), value: b"w".to_vec(), ignore_lease: true, ..Default::default() }))
        .unwrap();
    assert_eq!(s.reader().get_latest(b"k").unwrap().unwrap().lease, 3);
    assert_eq!(s.reader().lease_keys(3).unwrap(), vec![b"k".to_vec()]);
}

#[test]
fn expiry_ends_only_leases_past_their_deadline() {
    let mut s = Store::new();
    s.apply(WriteCommand::LeaseGrant { id: 1, ttl: 5, now_ms: T0 }).unwrap();
    s.apply(WriteCommand::LeaseGrant { id: 2, ttl: 5, now_ms: T0 }).unwrap();
    s.put_on_lease("one", 1).unwrap();
    s.put_on_lease("two", 2).unwrap();
    // Lease 2 is renewed at T0+4s: its deadline moves to T0+9s.
    assert!(matches!(s.apply(WriteCommand::LeaseRenew { id: 2, now_ms: T0 + 4000 }), Ok(ApplyOutcome::LeaseRenew(r)) if r.ttl == 5));
    assert_eq!(s.reader().expired_leases(T0 + 5000, 10).unwrap(), vec![1]);
    // The leader decided both had expired (stale view): only the one really past its deadline goes.
    let out = s.apply(WriteCommand::LeaseExpire { ids: vec![1, 2], now_ms: T0 + 5000 }).unwrap();
    assert_eq!(out, ApplyOutcome::LeaseExpire { revoked: 1 });
    assert_eq!(s.keys(), vec!["two"]);
    // An expired lease cannot be renewed back to life.
    assert_eq!(s.apply(WriteCommand::LeaseRenew { id: 2, now_ms: T0 + 9000 }), Err(StoreError::LeaseNotFound));
}

#[test]
fn put_to_a_missing_lease_is_refused_and_lease_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_db(dir.path(), &DbOptions::default()).unwrap();
        let mut applier = Applier::open(&db).unwrap();
        let mut b = WriteBatch::default();
        let bad = WriteCommand::Put(PutRequest { key: "k".into(), lease: 9, ..Default::default() });
        assert!(matches!(applier.apply(&db, &mut b, &bad, 1), Err(MvccError::Request(StoreError::LeaseNotFound))));
        applier.apply(&db, &mut b, &WriteCommand::LeaseGrant { id: 9, ttl: 60, now_ms: T0 }, 1).unwrap();
        db.write(b).unwrap();
    }
    let db = open_db(dir.path(), &DbOptions::default()).unwrap();
    let lease = Reader::snapshot(&db).get_lease(9).unwrap().unwrap();
    assert_eq!((lease.ttl, lease.deadline_ms), (60, T0 + 60_000));
}
