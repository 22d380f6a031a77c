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
    Entry { log_id: LogId::new(CommittedLeaderId::new(1u64, 1u64), index), payload: EntryPayload::Normal(Batch(commands)) }
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
