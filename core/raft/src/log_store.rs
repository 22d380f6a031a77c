//! The Raft log, vote and commit point in RocksDB.
//!
//! An append is written and fsynced right on the task that asks for it, and only then reported
//! durable to openraft. openraft 0.9 waits for each append to be durable before it does
//! anything else, so handing the fsync to another thread bought nothing but two thread wake-ups
//! per append (measured: about a tenth of a lone client's put latency). Concurrent writes still
//! share fsyncs: the proposer puts every write queued meanwhile into one entry (group commit,
//! `node.rs`), and RocksDB's own write groups let the state machine's unsynced writes ride along.
//! The vote is written synchronously too.
//!
//! The newest entries are also kept in memory ([`RecentEntries`]): openraft reads each entry
//! right after appending it, to apply it and to send it to followers, and serving those reads
//! from memory saves a RocksDB seek and decoding the whole batch of commands each time.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_mvcc::layout::{self, CF_RAFT_LOG, CF_RAFT_STATE};
use cairn_mvcc::Db;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use rocksdb::{WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{io_err, Entry, LogId, StorageError, TypeConfig, Vote};

/// The log store; cheap to clone (clones share the database and the recent entries).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    recent: Arc<Mutex<RecentEntries>>,
    /// The commit point openraft last reported, until the next append writes it. It is only a
    /// hint for a restart (which entries may be applied before a leader is known), so it need
    /// not cost a write of its own after every commit: one fewer RocksDB write per entry.
    committed: Arc<Mutex<Option<Option<LogId>>>>,
}

/// Most entries, and most encoded bytes of them, kept in memory: enough for the entries being
/// applied and replicated right after their append, small next to the rest of a member's memory
/// (64 MiB measured +100 MB of RSS after loading a million keys; a lagging follower is served
/// from RocksDB).
const RECENT_MAX_ENTRIES: usize = 256;
const RECENT_MAX_BYTES: usize = 4 << 20;

/// The newest entries of the log, contiguous and ending at its last entry (or none): appends
/// add to the back, truncation removes from the back, purging and the limits from the front.
/// Entries share their commands ([`crate::types::Batch`]), so a copy handed out is cheap.
#[derive(Default)]
struct RecentEntries {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    fn push(&mut self, entry: Entry, size: usize) {
        if self.entries.back().is_some_and(|(last, _)| last.log_id.index + 1 != entry.log_id.index) {
            self.entries.clear();
            self.bytes = 0;
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > RECENT_MAX_ENTRIES || (self.bytes > RECENT_MAX_BYTES && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    /// Forgets the entries at and after `index`.
    fn truncate(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(e, _)| e.log_id.index >= index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries up to and including `index`.
    fn purge(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.log_id.index <= index) {
            self.pop_front();
        }
    }

    /// The entries from `start` to `end` (inclusive), if every one of them that the log holds
    /// is here: `start` is not before the first entry kept.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        Some(self.entries.iter().skip(skip).take_while(|(e, _)| e.log_id.index <= end).map(|(e, _)| e.clone()).collect())
    }
}

/// Both guarded values are only ever replaced whole, so a panic elsewhere leaves them
/// consistent: a poisoned lock is used as is.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> Self {
        LogStore { db, recent: Arc::default(), committed: Arc::default() }
    }

    fn recent(&self) -> MutexGuard<'_, RecentEntries> {
        locked(&self.recent)
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
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i),
            Bound::Excluded(&i) => i.checked_sub(1),
            Bound::Unbounded => Some(u64::MAX),
        };
        let Some(end) = end else { return Ok(Vec::new()) };
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
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
        *locked(&self.committed) = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(pending) = *locked(&self.committed) {
            return Ok(pending);
        }
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
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            written += bytes.len();
            batch.put_cf(cf, layout::log_key(entry.log_id.index), &bytes);
            appended.push((entry, bytes.len()));
        }
        if let Some(committed) = locked(&self.committed).take() {
            let bytes = postcard::to_stdvec(&committed).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            batch.put_cf(self.cf(CF_RAFT_STATE)?, layout::RAFT_COMMITTED, bytes);
        }
        // etcd reports this counter as a gauge; the same type keeps its queries working.
        metrics::gauge!(crate::metrics::WAL_WRITE_BYTES).increment(written as f64);
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        // Blocks this runtime thread for one fsync (a fraction of a millisecond on an SSD);
        // the task that awaits it, openraft's core, could not go on before it anyway.
        let started = std::time::Instant::now();
        let synced = self.db.flush_wal(true);
        metrics::histogram!(crate::metrics::WAL_FSYNC).record(started.elapsed().as_secs_f64());
        synced.map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let mut recent = self.recent();
        for (entry, size) in appended {
            recent.push(entry, size);
        }
        drop(recent);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().truncate(log_id.index);
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, layout::log_key(log_id.index).to_vec(), vec![0xffu8; 9]);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().purge(log_id.index);
        self.put_state(layout::RAFT_LAST_PURGED, &log_id, false)?;
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, layout::log_key(0), layout::log_key(log_id.index + 1));
        self.db.write(batch).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn recent_entries_serve_only_ranges_they_hold() {
        let mut recent = RecentEntries::default();
        assert_eq!(indexes(recent.get(1, 5)), None, "nothing kept");
        for i in 3..=7 {
            recent.push(entry(i), 10);
        }
        assert_eq!(indexes(recent.get(3, 7)), Some(vec![3, 4, 5, 6, 7]));
        assert_eq!(indexes(recent.get(5, u64::MAX)), Some(vec![5, 6, 7]));
        assert_eq!(indexes(recent.get(8, u64::MAX)), Some(vec![]), "past the last entry: none, as in the store");
        assert_eq!(indexes(recent.get(2, 4)), None, "starts before the first kept entry");
        recent.truncate(6);
        assert_eq!(indexes(recent.get(3, u64::MAX)), Some(vec![3, 4, 5]));
        recent.push(entry(6), 10);
        recent.purge(4);
        assert_eq!(indexes(recent.get(5, u64::MAX)), Some(vec![5, 6]));
        assert_eq!(recent.bytes, 20);
        recent.push(entry(9), 10);
        assert_eq!(indexes(recent.get(9, 9)), Some(vec![9]), "a gap starts over");
        assert_eq!(indexes(recent.get(6, 9)), None);
    }

    #[test]
    fn recent_entries_keep_within_their_limits() {
        let mut recent = RecentEntries::default();
        for i in 1..=(RECENT_MAX_ENTRIES as u64 + 10) {
            recent.push(entry(i), 1);
        }
        assert_eq!(recent.entries.len(), RECENT_MAX_ENTRIES);
        assert_eq!(recent.entries.front().map(|(e, _)| e.log_id.index), Some(11));
        let big = RECENT_MAX_BYTES / 2 + 1;
        let last = RECENT_MAX_ENTRIES as u64 + 10;
        recent.push(entry(last + 1), big);
        recent.push(entry(last + 2), big);
        assert!(recent.bytes <= RECENT_MAX_BYTES || recent.entries.len() == 1);
        assert_eq!(recent.entries.back().map(|(e, _)| e.log_id.index), Some(last + 2));
    }
}
