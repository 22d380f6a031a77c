//! The Raft log, vote and commit point in RocksDB.
//!
//! Appends are written without waiting for the disk and handed to one flusher thread, which
//! fsyncs the WAL once for every append that queued up meanwhile and only then reports them
//! durable to openraft. Concurrent writes thus share fsyncs (group commit) while no entry is
//! acknowledged before it is on disk. The vote is written synchronously.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;

use cairn_mvcc::layout::{self, CF_RAFT_LOG, CF_RAFT_STATE};
use cairn_mvcc::Db;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use rocksdb::{WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{io_err, Entry, LogId, StorageError, TypeConfig, Vote};

/// The log store; cheap to clone (clones share the database and the flusher).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    flusher: Arc<Flusher>,
}

/// The fsync thread's queue. Dropping the last clone closes the queue and waits for the thread
/// to end, so the thread's database handle is released before the store's owner goes on: a
/// process that exits right after dropping its stores never has RocksDB closing in a detached
/// thread while the C++ runtime tears down (which aborts with "pthread lock: Invalid argument").
struct Flusher {
    queue: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn send(&self, cb: LogFlushed<TypeConfig>) -> Result<(), ()> {
        self.queue.as_ref().ok_or(())?.send(cb).map_err(|_| ())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> Self {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let flush_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-log-fsync".into())
            .spawn(move || {
                // Ends when every LogStore clone is dropped.
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let started = std::time::Instant::now();
                    let result = flush_db.flush_wal(true).map_err(std::io::Error::other);
                    metrics::histogram!(crate::metrics::WAL_FSYNC).record(started.elapsed().as_secs_f64());
                    tracing::trace!(appends = waiting.len(), "log fsync");
                    for cb in waiting {
                        cb.log_io_completed(match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(std::io::Error::other(e.to_string())),
                        });
                    }
                }
            })
            .expect("spawning the log fsync thread");
        LogStore { db, flusher: Arc::new(Flusher { queue: Some(tx), thread: Some(thread) }) }
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageIOError::read(io_err(std::io::Error::other(format!("missing column family {name}")))).into())
    }

    fn get_state<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let raw = self.db.get_cf(self.cf(CF_RAFT_STATE)?, key).map_err(|e| StorageIOError::read(io_err(e)))?;
        raw.map(|b| postcard::from_bytes(&b).map_err(|e| StorageIOError::read(io_err(e)).into())).transpose()
    }

    fn put_state<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), StorageError> {
        let bytes = postcard::to_stdvec(value).map_err(|e| StorageIOError::write(io_err(e)))?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .put_cf_opt(self.cf(CF_RAFT_STATE)?, key, bytes, &opts)
            .map_err(|e| StorageIOError::write(io_err(e)).into())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_RAFT_LOG)?);
        it.seek_to_last();
        match it.value() {
            Some(v) => {
                let entry: Entry = postcard::from_bytes(v).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                Ok(Some(entry.log_id))
            }
            None => {
                it.status().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                Ok(None)
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut it = self.db.raw_iterator_cf(self.cf(CF_RAFT_LOG)?);
        it.seek(layout::log_key(start));
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let index = u64::from_be_bytes(k.try_into().map_err(|_| StorageIOError::read_logs(io_err(std::io::Error::other("bad log key"))))?);
            if !range.contains(&index) {
                break;
            }
            out.push(postcard::from_bytes(v).map_err(|e| StorageIOError::read_log_at_index(index, io_err(e)))?);
            it.next();
        }
        it.status().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_state(layout::RAFT_LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_state(layout::RAFT_VOTE, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_state(layout::RAFT_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_state(layout::RAFT_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_state::<Option<LogId>>(layout::RAFT_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        let mut written = 0;
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            written += bytes.len();
            batch.put_cf(cf, layout::log_key(entry.log_id.index), bytes);
        }
        // etcd reports this counter as a gauge; the same type keeps its queries working.
        metrics::gauge!(crate::metrics::WAL_WRITE_BYTES).increment(written as f64);
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        self.flusher
            .send(callback)
            .map_err(|_| StorageIOError::write_logs(io_err(std::io::Error::other("log fsync thread stopped"))))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, layout::log_key(log_id.index).to_vec(), vec![0xffu8; 9]);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_state(layout::RAFT_LAST_PURGED, &log_id, false)?;
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, layout::log_key(0), layout::log_key(log_id.index + 1));
        self.db.write(batch).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}
