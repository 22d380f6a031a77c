//! The Raft log store: entries in the log's own files ([`crate::log_files`]), the vote, the
//! purge point and the commit hint in RocksDB.
//!
//! An append is written and fsynced right on the task that asks for it, and only then reported
//! durable to openraft. openraft 0.9 waits for each append to be durable before it does
//! anything else, so handing the fsync to another thread bought nothing but two thread wake-ups
//! per append (measured: about a tenth of a lone client's put latency). Concurrent writes still
//! share fsyncs: the proposer puts every write queued meanwhile into one entry (group commit,
//! `node.rs`). The vote is written synchronously too.
//!
//! The state machine's RocksDB writes are not fsynced: after a machine crash it may come back
//! behind the log, and openraft applies the missing entries again (each apply batch records
//! its applied log id atomically). So entries are only deleted (purged) after RocksDB's WAL
//! has been synced, which makes every applied entry durable in the state machine first.
//!
//! The newest entries are also kept in memory ([`RecentEntries`]): openraft reads each entry
//! right after appending it, to apply it and to send it to followers, and serving those reads
//! from memory saves reading the file and decoding the whole batch of commands each time.
//!
//! Data dirs from before the log had its own files kept entries in RocksDB's `raft_log`
//! column family; opening moves them over once.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_mvcc::layout::{self, CF_RAFT_LOG, CF_RAFT_STATE};
use cairn_mvcc::Db;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use rocksdb::{WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::log_files::{LogFiles, Record};
use crate::types::{io_err, Entry, LogId, StorageError, TypeConfig, Vote};

/// The log store; cheap to clone (clones share the files, the database and the recent entries).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    files: Arc<Mutex<LogFiles>>,
    recent: Arc<Mutex<RecentEntries>>,
    /// The commit point openraft last reported. It is only a hint for a restart (entries it
    /// covers may be applied before a leader is known), so it is written with the purge point
    /// rather than after every commit.
    committed: Arc<Mutex<Option<Option<LogId>>>>,
}

/// Most entries, and most encoded bytes of them, kept in memory: enough for the entries being
/// applied and replicated right after their append, small next to the rest of a member's memory
/// (64 MiB measured +100 MB of RSS after loading a million keys; a lagging follower is served
/// from the log files).
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
/// consistent: a poisoned lock is used as is. (The files are changed by the one task that
/// appends, truncates and purges, and a failed change fails the node's storage anyway.)
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn decode(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageIOError::read_log_at_index(index, io_err(e)).into())
}

impl LogStore {
    /// Opens the log in `dir` (the member's `wal` directory), moving over entries an older
    /// version kept in RocksDB.
    pub fn open(db: Arc<Db>, dir: &Path) -> Result<Self, StorageError> {
        let files = LogFiles::open(dir).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let store = LogStore { db, files: Arc::new(Mutex::new(files)), recent: Arc::default(), committed: Arc::default() };
        store.move_entries_from_rocksdb()?;
        // Also finishes a purge a crash interrupted.
        if let Some(purged) = store.get_state::<LogId>(layout::RAFT_LAST_PURGED)? {
            store.files().purge(purged.index).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        }
        Ok(store)
    }

    fn recent(&self) -> MutexGuard<'_, RecentEntries> {
        locked(&self.recent)
    }

    fn files(&self) -> MutexGuard<'_, LogFiles> {
        locked(&self.files)
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

    /// Writes `entries` to the files and fsyncs; returns the bytes written.
    fn write_entries(&self, entries: &[Entry]) -> Result<Vec<usize>, StorageError> {
        let encoded = entries
            .iter()
            .map(|e| postcard::to_stdvec(e).map_err(|err| StorageIOError::write_logs(io_err(err)).into()))
            .collect::<Result<Vec<_>, StorageError>>()?;
        let records: Vec<Record<'_>> = entries
            .iter()
            .zip(&encoded)
            .map(|(e, bytes)| Record { index: e.log_id.index, term: e.log_id.leader_id.term, payload: bytes })
            .collect();
        self.files().append(&records).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(encoded.iter().map(Vec::len).collect())
    }

    /// Moves the entries of RocksDB's `raft_log` column family (where versions before the log
    /// files kept them) into the files, then deletes them there. A crash in between leaves
    /// them in both; the next opening sees the files hold them and only deletes.
    fn move_entries_from_rocksdb(&self) -> Result<(), StorageError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek_to_first();
        if !it.valid() {
            return it.status().map_err(|e| StorageIOError::read_logs(io_err(e)).into());
        }
        if self.files().last_index().is_none() {
            let mut chunk = Vec::new();
            while let Some(v) = it.value() {
                let entry: Entry = postcard::from_bytes(v).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                chunk.push(entry);
                if chunk.len() == 1024 {
                    self.write_entries(&chunk)?;
                    chunk.clear();
                }
                it.next();
            }
            it.status().map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            self.write_entries(&chunk)?;
        }
        drop(it);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, layout::log_key(0), layout::log_key(u64::MAX));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
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
        if start > end {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
        let read = self.files().read(start, end).map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        read.iter().map(|(index, bytes)| decode(*index, bytes)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_state(layout::RAFT_LAST_PURGED)?;
        let last_entry = {
            let mut files = self.files();
            match files.last_index() {
                Some(i) => files.read(i, i).map_err(|e| StorageIOError::read_logs(io_err(e)))?.pop(),
                None => None,
            }
        };
        let last_entry_id = last_entry.map(|(i, bytes)| decode(i, &bytes).map(|e| e.log_id)).transpose()?;
        // Entries at or before the purge point may outlive a crash during the purge; they
        // are not the log's end.
        let last_log_id = match (last_entry_id, last_purged_log_id) {
            (Some(entry), Some(purged)) if entry.index <= purged.index => Some(purged),
            (entry, purged) => entry.or(purged),
        };
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Blocks this runtime thread for one fsync (a fraction of a millisecond on an SSD);
        // the task that awaits it, openraft's core, could not go on before it anyway. The
        // server runs at least two workers, so the others serve connections meanwhile.
        let started = std::time::Instant::now();
        let sizes = self.write_entries(&entries)?;
        metrics::histogram!(crate::metrics::WAL_FSYNC).record(started.elapsed().as_secs_f64());
        // etcd reports this counter as a gauge; the same type keeps its queries working.
        metrics::gauge!(crate::metrics::WAL_WRITE_BYTES).increment(sizes.iter().sum::<usize>() as f64);
        let mut recent = self.recent();
        for (entry, size) in entries.into_iter().zip(sizes) {
            recent.push(entry, size);
        }
        drop(recent);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().truncate(log_id.index);
        self.files().truncate(log_id.index).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().purge(log_id.index);
        // Everything purged is applied; sync RocksDB's WAL so that the state machine keeps
        // it after a machine crash, now that the log no longer will.
        self.db.flush_wal(true).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let mut batch = WriteBatch::default();
        let state = self.cf(CF_RAFT_STATE)?;
        let werr = |e: postcard::Error| StorageError::from(StorageIOError::write_logs(io_err(e)));
        batch.put_cf(state, layout::RAFT_LAST_PURGED, postcard::to_stdvec(&log_id).map_err(werr)?);
        let committed = *locked(&self.committed);
        if let Some(committed) = committed {
            batch.put_cf(state, layout::RAFT_COMMITTED, postcard::to_stdvec(&committed).map_err(werr)?);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        self.files().purge(log_id.index).map_err(|e| StorageIOError::write_logs(io_err(e)).into())
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
    fn entries_an_older_version_kept_in_rocksdb_move_to_the_log_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(cairn_mvcc::open_db(&dir.path().join("db"), &cairn_mvcc::DbOptions::default()).expect("open db"));
        let cf = db.cf_handle(CF_RAFT_LOG).expect("raft_log cf");
        for i in 1..=5 {
            db.put_cf(cf, layout::log_key(i), postcard::to_stdvec(&entry(i)).expect("encode")).expect("put");
        }
        let mut store = LogStore::open(db.clone(), &dir.path().join("wal")).expect("open log");
        let read = futures::executor::block_on(store.try_get_log_entries(1..=5)).expect("read");
        assert_eq!(read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        let state = futures::executor::block_on(store.get_log_state()).expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
        let mut it = db.raw_iterator_cf(cf);
        it.seek_to_first();
        assert!(!it.valid(), "the column family is emptied");
        drop((it, store));
        // Opened again: nothing to move, the entries are still there.
        let mut store = LogStore::open(db, &dir.path().join("wal")).expect("reopen log");
        let read = futures::executor::block_on(store.try_get_log_entries(3..)).expect("read");
        assert_eq!(read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![3, 4, 5]);
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
