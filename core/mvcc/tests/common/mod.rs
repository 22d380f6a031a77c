//! A real RocksDB MVCC store in a temp dir, shared by the MVCC test files.
#![allow(dead_code)]

use cairn_api::*;
use cairn_mvcc::{open_db, Applier, ApplyOutcome, Db, DbOptions, MvccError, Reader, WriteCommand};
use rocksdb::WriteBatch;

pub struct Store {
    pub db: Db,
    pub applier: Applier,
    _dir: tempfile::TempDir,
}

impl Store {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path(), &DbOptions::default()).unwrap();
        let applier = Applier::open(&db).unwrap();
        Store { db, applier, _dir: dir }
    }

    pub fn apply(&mut self, cmd: WriteCommand) -> Result<ApplyOutcome, StoreError> {
        let mut batch = WriteBatch::default();
        let out = self.applier.apply(&self.db, &mut batch, &cmd, 1);
        self.db.write(batch).unwrap();
        self.applier.batch_written();
        out.map_err(|e| match e {
            MvccError::Request(e) => e,
            other => panic!("storage error {other}"),
        })
    }

    pub fn put(&mut self, k: &str, v: &str) -> PutResponse {
        match self.apply(WriteCommand::Put(PutRequest { key: k.into(), value: v.into(), prev_kv: true, ..Default::default() })) {
            Ok(ApplyOutcome::Put(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn delete(&mut self, k: &str, end: &str) -> DeleteRangeResponse {
        match self.apply(WriteCommand::DeleteRange(DeleteRangeRequest { key: k.into(), range_end: end.into(), prev_kv: true })) {
            Ok(ApplyOutcome::DeleteRange(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn txn(&mut self, t: TxnRequest) -> TxnResponse {
        match self.apply(WriteCommand::Txn(t)) {
            Ok(ApplyOutcome::Txn(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        Reader::snapshot(&self.db).range(&req).map_err(StoreError::from)
    }

    pub fn get_at(&self, k: &str, rev: i64) -> Option<KeyValue> {
        self.range(RangeRequest { key: k.into(), revision: rev, ..Default::default() }).unwrap().kvs.pop()
    }

    pub fn revision(&self) -> i64 {
        Reader::snapshot(&self.db).meta().unwrap().revision
    }

    pub fn put_on_lease(&mut self, k: &str, lease: i64) -> Result<ApplyOutcome, StoreError> {
        self.apply(WriteCommand::Put(PutRequest { key: k.into(), value: b"v".to_vec(), lease, ..Default::default() }))
    }

    pub fn reader(&self) -> Reader<'_> {
        Reader::snapshot(&self.db)
    }

    pub fn keys(&self) -> Vec<String> {
        let r = self.reader().range(&RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }).unwrap();
        r.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
    }
}
