//! A log entry carries several client commands, applied one by one. A crash between two of
//! them must neither apply the first ones twice nor lose the rest when the entry is applied
//! again after the restart.

use std::sync::Arc;

use cairn_api::PutRequest;
use cairn_mvcc::layout::{self, CF_META};
use cairn_mvcc::{open_db, Applier, DbOptions, Reader, WriteCommand};
use cairn_raft::{Batch, StateMachine};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn put(k: &str) -> WriteCommand {
    WriteCommand::Put(PutRequest { key: k.into(), value: b"v".to_vec(), ..Default::default() })
}

fn entry(index: u64, commands: Vec<WriteCommand>) -> Entry<cairn_raft::TypeConfig> {
    Entry { log_id: LogId::new(CommittedLeaderId::new(1u64, 1u64), index), payload: EntryPayload::Normal(Batch(commands.into())) }
}

#[tokio::test]
async fn a_partly_applied_entry_resumes_after_its_last_applied_command() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open_db(&dir.path().join("db"), &DbOptions::default()).unwrap());
    {
        let mut sm = StateMachine::open(db.clone(), dir.path().join("snap")).unwrap();
        sm.apply([entry(1, vec![put("x")])]).await.unwrap();
    }
    // Simulate a crash inside entry 2 = [put y, put z]: y was applied and recorded, z was not.
    {
        let mut applier = Applier::open(&db).unwrap();
        let mut batch = rocksdb::WriteBatch::default();
        applier.apply(&db, &mut batch, &put("y"), 1).unwrap();
        let progress = postcard::to_stdvec(&(LogId::new(CommittedLeaderId::new(1u64, 1u64), 2), 1usize)).unwrap();
        batch.put_cf(db.cf_handle(CF_META).unwrap(), layout::META_APPLYING, progress);
        db.write(batch).unwrap();
    }
    let mut sm = StateMachine::open(db.clone(), dir.path().join("snap")).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(1), "entry 2 is not complete");
    sm.apply([entry(2, vec![put("y"), put("z")])]).await.unwrap();

    let reader = Reader::snapshot(&db);
    assert_eq!(reader.meta().unwrap().revision, 4, "x=2, y=3, z=4: y not applied twice");
    assert_eq!(reader.get_latest(b"y").unwrap().unwrap().version, 1);
    assert_eq!(reader.get_latest(b"z").unwrap().unwrap().mod_revision, 4);
    assert!(reader.get_meta(layout::META_APPLYING).unwrap().is_none());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
}

fn put_prev(k: &str, v: &str) -> WriteCommand {
    WriteCommand::Put(PutRequest { key: k.into(), value: v.into(), prev_kv: true, ..Default::default() })
}

/// Consecutive puts share one write batch; each must still see the ones before it, and the
/// commands that do not share (a delete, a txn that reads a range) must see everything before them.
#[tokio::test]
async fn puts_sharing_a_batch_see_each_other() {
    use cairn_api::{DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest};
    use cairn_mvcc::ApplyOutcome;
    use cairn_raft::CommandResponse;

    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open_db(&dir.path().join("db"), &DbOptions::default()).unwrap());
    let mut sm = StateMachine::open(db.clone(), dir.path().join("snap")).unwrap();
    let delete_a = WriteCommand::DeleteRange(DeleteRangeRequest { key: "a".into(), prev_kv: true, ..Default::default() });
    let txn_c = WriteCommand::Txn(TxnRequest {
        success: vec![RequestOp::Range(RangeRequest { key: "a".into(), ..Default::default() })],
        ..Default::default()
    });
    let commands = vec![
        put_prev("a", "1"),
        put_prev("a", "2"),
        put_prev("b", "1"),
        delete_a,
        put_prev("a", "3"),
        put_prev("a", "4"),
        txn_c,
        put_prev("c", "1"),
    ];
    let out = sm.apply([entry(1, commands)]).await.unwrap();
    let responses = &out[0].0;
    let prev = |i: usize| match &responses[i] {
        CommandResponse::Applied(ApplyOutcome::Put(p)) => p.prev_kv.as_ref().map(|kv| (kv.value.clone(), kv.version)),
        other => panic!("{other:?}"),
    };
    assert_eq!(prev(0), None);
    assert_eq!(prev(1), Some((b"1".to_vec(), 1)), "the second put sees the first, still unwritten");
    match &responses[3] {
        CommandResponse::Applied(ApplyOutcome::DeleteRange(d)) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"2", "the delete sees the puts before it");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(prev(4), None, "a was deleted");
    assert_eq!(prev(5), Some((b"3".to_vec(), 1)));
    match &responses[6] {
        CommandResponse::Applied(ApplyOutcome::Txn(t)) => match &t.responses[0] {
            cairn_api::ResponseOp::Range(r) => assert_eq!(r.kvs[0].value, b"4", "the txn sees the puts before it"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(prev(7), None);

    let reader = Reader::snapshot(&db);
    // Revisions 2..=8: five puts and the delete before the txn, then c (the read-only txn takes none).
    assert_eq!(reader.meta().unwrap().revision, 8);
    let a = reader.get_latest(b"a").unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.version, a.create_revision, a.mod_revision), (&b"4"[..], 2, 6, 7));
    let at = |rev: i64| {
        let req = RangeRequest { key: "a".into(), revision: rev, ..Default::default() };
        reader.range(&req).unwrap().kvs.first().map(|kv| kv.value.clone())
    };
    assert_eq!(at(2), Some(b"1".to_vec()));
    assert_eq!(at(3), Some(b"2".to_vec()));
    assert_eq!(at(5), None);
    assert!(reader.get_meta(layout::META_APPLYING).unwrap().is_none());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(1));
}

/// Txns whose compares are on single keys and whose ops are puts share the puts' batch too:
/// their compares must see the unwritten writes before them, or two lock holders (create if
/// absent) in one entry would both win.
#[tokio::test]
async fn single_key_txns_sharing_a_batch_see_the_writes_before_them() {
    use cairn_api::{Compare, CompareResult, CompareTarget, RequestOp, ResponseOp, TxnRequest};
    use cairn_mvcc::ApplyOutcome;
    use cairn_raft::CommandResponse;

    let cmp = |key: &str, range_end: &str, target: CompareTarget| Compare {
        key: key.into(),
        range_end: range_end.into(),
        result: CompareResult::Equal,
        target,
    };
    let put_op = |k: &str, v: &str| {
        RequestOp::Put(PutRequest { key: k.into(), value: v.into(), prev_kv: true, ..Default::default() })
    };
    let txn = |compare: Vec<Compare>, success: Vec<RequestOp>| {
        WriteCommand::Txn(TxnRequest { compare, success, failure: vec![] })
    };
    let lock = |owner: &str| txn(vec![cmp("lock", "", CompareTarget::CreateRevision(0))], vec![put_op("lock", owner)]);
    let mut a_to_c_changed_after_3 = cmp("a", "c", CompareTarget::ModRevision(3));
    a_to_c_changed_after_3.result = CompareResult::Greater;
    let commands = vec![
        put_prev("a", "1"),                                                                   // rev 2
        lock("owner-1"),                                                                       // rev 3
        lock("owner-2"),                                                                       // refused: lock exists
        txn(vec![cmp("a", "", CompareTarget::Value(b"1".to_vec()))], vec![put_op("a", "2")]), // rev 4
        txn(
            vec![cmp("a", "", CompareTarget::ModRevision(4))],
            vec![RequestOp::Txn(TxnRequest { success: vec![put_op("b", "1")], ..Default::default() })],
        ), // rev 5
        // A range compare does not share; it sees a (rev 4) and b (rev 5), both after 3.
        txn(vec![a_to_c_changed_after_3], vec![put_op("c", "1")]), // rev 6
    ];
    assert!(commands[1..5].iter().all(Applier::shares_batch));
    assert!(!Applier::shares_batch(&commands[5]));

    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open_db(&dir.path().join("db"), &DbOptions::default()).unwrap());
    let mut sm = StateMachine::open(db.clone(), dir.path().join("snap")).unwrap();
    let out = sm.apply([entry(1, commands)]).await.unwrap();
    let txn_out = |i: usize| match &out[0].0[i] {
        CommandResponse::Applied(ApplyOutcome::Txn(t)) => t.clone(),
        other => panic!("{other:?}"),
    };
    assert!(txn_out(1).succeeded, "the first lock holder wins");
    assert!(!txn_out(2).succeeded, "the second sees the first's unwritten put");
    let cas = txn_out(3);
    assert!(cas.succeeded, "the compare-and-swap sees a=1, still unwritten");
    match &cas.responses[0] {
        ResponseOp::Put(p) => assert_eq!(p.prev_kv.as_ref().map(|kv| kv.value.clone()), Some(b"1".to_vec())),
        other => panic!("{other:?}"),
    }
    assert!(txn_out(4).succeeded, "a's mod revision is the CAS's");
    assert!(txn_out(5).succeeded, "a range compare sees a and b");

    let reader = Reader::snapshot(&db);
    assert_eq!(reader.meta().unwrap().revision, 6);
    let latest = |k: &[u8]| reader.get_latest(k).unwrap().unwrap();
    let l = latest(b"lock");
    assert_eq!((l.value.as_slice(), l.version, l.mod_revision), (&b"owner-1"[..], 1, 3));
    let a = latest(b"a");
    assert_eq!((a.value.as_slice(), a.version, a.mod_revision), (&b"2"[..], 2, 4));
    assert_eq!(latest(b"b").mod_revision, 5);
    assert_eq!(latest(b"c").mod_revision, 6);
}
