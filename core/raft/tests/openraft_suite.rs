//! openraft's own storage conformance suite, run against Cairn's RocksDB log store and state
//! machine (each case on a fresh temp dir).

use std::sync::Arc;

use cairn_mvcc::{open_db, DbOptions};
use cairn_raft::{LogStore, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for TempStores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(open_db(&dir.path().join("db"), &DbOptions::default()).expect("open db"));
        let sm = StateMachine::open(db.clone(), dir.path().join("snap"))?;
        let log = LogStore::open(db, &dir.path().join("wal"))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(TempStores).expect("openraft storage suite");
}
