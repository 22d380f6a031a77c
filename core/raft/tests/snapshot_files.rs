//! A snapshot handed out for sending to a follower stays readable while newer snapshots are
//! built and the older files deleted: replication reads the current snapshot while the leader
//! keeps snapshotting, and a failed read there stops the whole node.

use std::sync::Arc;

use cairn_api::PutRequest;
use cairn_mvcc::{open_db, DbOptions, WriteCommand};
use cairn_raft::{Batch, StateMachine};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use tokio::io::AsyncReadExt;

fn entry(index: u64) -> Entry<cairn_raft::TypeConfig> {
    let put = WriteCommand::Put(PutRequest { key: format!("k{index}").into(), value: b"v".to_vec(), ..Default::default() });
    Entry { log_id: LogId::new(CommittedLeaderId::new(1u64, 1u64), index), payload: EntryPayload::Normal(Batch(vec![put].into())) }
}

/// A temporary directory with a store (`db`) and a snapshot directory (`snap`).
struct Dirs {
    _tmp: tempfile::TempDir,
    db: Arc<rocksdb::DB>,
    snap: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(open_db(&tmp.path().join("db"), &DbOptions::default()).unwrap());
    Dirs { snap: tmp.path().join("snap"), db, _tmp: tmp }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_snapshot_stays_readable_while_newer_ones_replace_it() {
    let d = dirs();
    let mut sm = StateMachine::open(d.db.clone(), d.snap.clone()).unwrap();
    sm.apply((1..=50).map(entry)).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let mut builder = sm.get_snapshot_builder().await;
    let builds = tokio::spawn(async move {
        for _ in 0..100 {
            builder.build_snapshot().await.expect("build a snapshot");
        }
    });
    let mut reads = 0;
    while !builds.is_finished() {
        let mut snapshot = sm.get_current_snapshot().await.expect("open the current snapshot").expect("a snapshot");
        let mut bytes = Vec::new();
        snapshot.snapshot.read_to_end(&mut bytes).await.expect("read the snapshot");
        assert!(!bytes.is_empty(), "snapshot {} is empty", snapshot.meta.snapshot_id);
        reads += 1;
    }
    builds.await.unwrap();
    assert!(reads > 0);
    let files = std::fs::read_dir(&d.snap).unwrap().count();
    assert_eq!(files, 1, "replaced snapshots are deleted");
}

#[tokio::test]
async fn snapshot_files_of_an_earlier_run_are_deleted_on_opening() {
    let d = dirs();
    let (db, snap) = (&d.db, &d.snap);
    {
        let mut sm = StateMachine::open(db.clone(), snap.clone()).unwrap();
        sm.apply((1..=10).map(entry)).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    // A crash while building one and while receiving one.
    std::fs::write(snap.join("building-1.snap"), b"half").unwrap();
    std::fs::write(snap.join("receiving-2.snap"), b"half").unwrap();
    // And while streaming one to a client (`etcdctl snapshot save`).
    std::fs::write(snap.join("client-3.tmp"), b"half").unwrap();
    std::fs::write(snap.join("notes.txt"), b"not ours").unwrap();
    assert_eq!(std::fs::read_dir(snap).unwrap().count(), 5);

    let mut sm = StateMachine::open(db.clone(), snap.clone()).unwrap();
    assert!(sm.get_current_snapshot().await.unwrap().is_none(), "no snapshot is current after a restart");
    let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&snap).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec![format!("{}.snap", built.meta.snapshot_id), "notes.txt".to_string()]);
}

#[tokio::test]
async fn a_snapshot_transfer_started_over_leaves_one_file() {
    let d = dirs();
    let mut sm = StateMachine::open(d.db.clone(), d.snap.clone()).unwrap();
    drop(sm.begin_receiving_snapshot().await.unwrap());
    drop(sm.begin_receiving_snapshot().await.unwrap());
    assert_eq!(std::fs::read_dir(&d.snap).unwrap().count(), 1, "the abandoned transfer's file is deleted");
}
