//! The state machine's RocksDB writes are not fsynced; the Raft log, in files of its own, is.
//! After a machine crash the store can come back older than the log, and opening must apply
//! the missing entries again: every acknowledged write back, at the revision it was given.
//! The crash is played by putting back a copy of the store taken earlier, next to the newer
//! log.

use std::path::Path;

use cairn_api::{Kv, PutRequest, RangeRequest};
use cairn_raft::{CairnNode, NodeConfig};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for item in std::fs::read_dir(from).expect("read dir") {
        let item = item.expect("dir entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("file type").is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).expect("copy file");
        }
    }
}

async fn put(node: &CairnNode, key: &str, value: &str) -> i64 {
    let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    node.put(req).await.expect("put").header.revision
}

async fn all_keys(node: &CairnNode) -> Vec<(String, String, i64, i64)> {
    let req = RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    let resp = node.range(req).await.expect("range");
    resp.kvs
        .into_iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into(), String::from_utf8_lossy(&kv.value).into(), kv.mod_revision, kv.version))
        .collect()
}

#[tokio::test]
async fn a_store_older_than_the_log_catches_up_on_opening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = NodeConfig { data_dir: dir.path().join("data"), ..Default::default() };
    let db_dir = config.data_dir.join("member").join("db");
    let old_db = dir.path().join("old-db");

    let node = CairnNode::open(config.clone()).await.expect("open");
    for i in 0..10 {
        put(&node, &format!("k{i:02}"), "first").await;
    }
    node.shutdown().await;
    drop(node);
    copy_dir(&db_dir, &old_db);

    let node = CairnNode::open(config.clone()).await.expect("reopen");
    for i in 5..20 {
        put(&node, &format!("k{i:02}"), "second").await;
    }
    let last = put(&node, "k00", "third").await;
    let expected = all_keys(&node).await;
    node.shutdown().await;
    drop(node);
    assert_eq!(expected.len(), 20);

    // The store loses everything after the copy; the log keeps it.
    {
        let db = cairn_mvcc::open_db(&old_db, &cairn_mvcc::DbOptions::default()).expect("open the copy");
        let reader = cairn_mvcc::Reader::snapshot(&db);
        assert!(reader.get_latest(b"k19").expect("read").is_none(), "the copy is from before k19");
    }
    std::fs::remove_dir_all(&db_dir).expect("remove store");
    copy_dir(&old_db, &db_dir);

    let node = CairnNode::open(config).await.expect("open with the older store");
    let mut caught_up = all_keys(&node).await;
    for _ in 0..100 {
        if caught_up == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        caught_up = all_keys(&node).await;
    }
    assert_eq!(caught_up, expected, "every write is back, at its revision and version");
    assert_eq!(put(&node, "k99", "after").await, last + 1, "the next write continues the revisions");
    node.shutdown().await;
}

/// Snapshots every few entries purge the log behind them; a restart still finds every write
/// (in the store, and the log from the purge point on).
#[tokio::test]
async fn purged_logs_restart_with_every_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = NodeConfig { data_dir: dir.path().join("data"), snapshot_count: 10, ..Default::default() };
    let node = CairnNode::open(config.clone()).await.expect("open");
    let mut last = 0;
    for i in 0..120 {
        last = put(&node, &format!("k{:02}", i % 40), &format!("v{i}")).await;
    }
    let expected = all_keys(&node).await;
    node.shutdown().await;
    drop(node);
    assert_eq!(expected.len(), 40);
    assert!(expected.iter().all(|(_, _, _, version)| *version == 3));
    {
        let db = cairn_mvcc::open_db(&config.data_dir.join("member").join("db"), &cairn_mvcc::DbOptions::default()).expect("open store");
        let cf = db.cf_handle(cairn_mvcc::layout::CF_RAFT_STATE).expect("raft_state");
        let purged = db.get_cf(cf, cairn_mvcc::layout::RAFT_LAST_PURGED).expect("read");
        assert!(purged.is_some(), "the log was purged behind a snapshot");
    }

    let node = CairnNode::open(config).await.expect("reopen");
    assert_eq!(all_keys(&node).await, expected);
    assert_eq!(put(&node, "k99", "after").await, last + 1);
    node.shutdown().await;
}
