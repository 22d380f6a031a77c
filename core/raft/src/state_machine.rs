//! The Raft state machine: applies committed entries to the MVCC store.
//!
//! An entry holds a batch of commands. Consecutive puts are applied into one RocksDB write
//! batch, every other command into its own; each batch also records how far into the entry it
//! got, and the entry's last batch records the entry's log id (and, for membership entries,
//! the membership). So after a crash the store is exactly as of some point in the log and
//! applying resumes from there: never twice, never skipped. Watchers hear of a revision only
//! once its batch is written.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cairn_mvcc::layout::{self, CF_META};
use cairn_mvcc::{Applier, Db, MetaCache, MvccError, Reader};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use rocksdb::WriteBatch;

use crate::direct_answers::DirectAnswers;
use crate::snapshot::{load_snapshot, write_snapshot};
use crate::watch_hub::WatchHub;
use crate::types::{
    io_err, BatchResponse, CommandResponse, Entry, LogId, Snapshot, StorageError, StoredMembership, TypeConfig,
};

/// The snapshot most recently built or installed.
#[derive(Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta<u64, crate::MemberNode>,
    path: PathBuf,
}

pub struct StateMachine {
    db: Arc<Db>,
    applier: Applier,
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    receiving: Option<PathBuf>,
    hub: Arc<WatchHub>,
    /// An entry whose commands were partly applied when the member last stopped.
    applying: Option<(LogId, usize)>,
    answers: Arc<DirectAnswers>,
    /// The revision counters as of the last write, for readers ([`cairn_mvcc::MetaCache`]):
    /// marked stale before every write of the store and set after it.
    meta_cache: Arc<MetaCache>,
}

/// An entry whose apply takes longer than this counts as slow (etcd's threshold).
const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(100);

fn storage_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(io_err(e)).into()
}

impl StateMachine {
    /// Opens the state machine on `db`, keeping snapshot files in `snapshot_dir`.
    pub fn open(db: Arc<Db>, snapshot_dir: PathBuf) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&snapshot_dir).map_err(storage_err)?;
        remove_snapshot_files(&snapshot_dir).map_err(storage_err)?;
        let reader = Reader::snapshot(&db);
        let applied = match reader.get_meta(layout::META_APPLIED).map_err(storage_err)? {
            Some(b) => postcard::from_bytes(&b).map_err(storage_err)?,
            None => None,
        };
        let membership = match reader.get_meta(layout::META_MEMBERSHIP).map_err(storage_err)? {
            Some(b) => postcard::from_bytes(&b).map_err(storage_err)?,
            None => StoredMembership::default(),
        };
        let applying = match reader.get_meta(layout::META_APPLYING).map_err(storage_err)? {
            Some(b) => Some(postcard::from_bytes(&b).map_err(storage_err)?),
            None => None,
        };
        drop(reader);
        let applier = Applier::open(&db).map_err(storage_err)?;
        let hub = Arc::new(WatchHub::new(applier.meta().revision));
        hub.set_compact_revision(applier.meta().compact_revision);
        let meta_cache = Arc::new(MetaCache::default());
        meta_cache.written(db.latest_sequence_number(), applier.meta());
        Ok(StateMachine {
            meta_cache,
            hub,
            applying,
            db,
            applier,
            applied,
            membership,
            snapshot_dir,
            current: Arc::new(Mutex::new(None)),
            receiving: None,
            answers: Arc::default(),
        })
    }

    /// Where proposers wait for their entry's answer straight from the apply.
    pub(crate) fn direct_answers(&self) -> Arc<DirectAnswers> {
        self.answers.clone()
    }

    /// The revision counters as of the last write, kept current here.
    pub(crate) fn meta_cache(&self) -> Arc<MetaCache> {
        self.meta_cache.clone()
    }

    /// The auth state as applied, kept current by the applier.
    pub(crate) fn auth_cache(&self) -> Arc<cairn_mvcc::auth::AuthCache> {
        self.applier.auth_cache()
    }

    /// Where applied changes are announced to watchers.
    pub(crate) fn watch_hub(&self) -> Arc<WatchHub> {
        self.hub.clone()
    }

    fn apply_one(&mut self, entry: Entry) -> Result<BatchResponse, StorageError> {
        let db = self.db.clone();
        let meta_cf = db.cf_handle(CF_META).ok_or_else(|| storage_err(std::io::Error::other("no meta cf")))?;
        let apply_err = |e: &dyn std::fmt::Display| -> StorageError {
            StorageIOError::apply(entry.log_id, io_err(std::io::Error::other(e.to_string()))).into()
        };
        let commands: &[cairn_mvcc::WriteCommand] = match &entry.payload {
            EntryPayload::Normal(batch) => batch.0.as_slice(),
            _ => &[],
        };
        // Commands of this entry already applied before a crash are not applied again.
        let done = match self.applying {
            Some((id, done)) if id == entry.log_id => done,
            _ => 0,
        };
        let started = std::time::Instant::now();
        let mut responses = Vec::with_capacity(commands.len());
        // Consecutive commands that share batches (puts, txns of single-key compares and puts:
        // `Applier::shares_batch`) share one write batch; every other command gets one of its own.
        let mut batch = WriteBatch::default();
        let mut unpublished: Vec<(i64, Vec<cairn_api::Event>)> = Vec::new();
        for (i, cmd) in commands.iter().enumerate() {
            match cmd.inner() {
                cairn_mvcc::WriteCommand::Put(_) => crate::metrics::count_op(crate::metrics::PUT_TOTAL),
                cairn_mvcc::WriteCommand::DeleteRange(_) => crate::metrics::count_op(crate::metrics::DELETE_TOTAL),
                _ => {}
            }
            if i < done {
                responses.push(CommandResponse::Internal);
                continue;
            }
            // The batch is empty here unless this command and the one before share it.
            let shares = Applier::shares_batch(cmd);
            responses.push(match self.applier.apply(&db, &mut batch, cmd, entry.log_id.leader_id.term) {
                Ok(outcome) => CommandResponse::Applied(outcome),
                Err(MvccError::Request(e)) => CommandResponse::Refused(e),
                Err(e) => return Err(apply_err(&e)),
            });
            let events = self.applier.take_events();
            if !events.is_empty() {
                unpublished.push((self.applier.meta().revision, events));
            }
            let next_shares = commands.get(i + 1).is_some_and(Applier::shares_batch);
            if i + 1 == commands.len() {
                self.finish_entry(entry.log_id, std::mem::take(&mut batch), meta_cf)?;
                self.publish(std::mem::take(&mut unpublished));
            } else if !(shares && next_shares) {
                // Each batch is written with how far into the entry it is: a crash between two
                // batches resumes after the last one written.
                self.write_progress(entry.log_id, i + 1, std::mem::take(&mut batch), meta_cf)?;
                self.publish(std::mem::take(&mut unpublished));
            }
        }
        match &entry.payload {
            EntryPayload::Normal(_) if !commands.is_empty() => {}
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                let mut batch = WriteBatch::default();
                batch.put_cf(meta_cf, layout::META_MEMBERSHIP, postcard::to_stdvec(&self.membership).map_err(storage_err)?);
                self.finish_entry(entry.log_id, batch, meta_cf)?;
            }
            _ => self.finish_entry(entry.log_id, WriteBatch::default(), meta_cf)?,
        }
        if started.elapsed() > SLOW_APPLY {
            metrics::counter!(crate::metrics::SLOW_APPLY).increment(1);
        }
        Ok(BatchResponse(responses))
    }

    /// Writes `batch` together with "entry `log_id` fully applied".
    fn finish_entry(&mut self, log_id: LogId, mut batch: WriteBatch, meta_cf: &rocksdb::ColumnFamily) -> Result<(), StorageError> {
        self.applied = Some(log_id);
        self.applying = None;
        batch.put_cf(meta_cf, layout::META_APPLIED, postcard::to_stdvec(&self.applied).map_err(storage_err)?);
        batch.delete_cf(meta_cf, layout::META_APPLYING);
        // Not synced: the log entry is already durable, and the applied id travels in the same
        // batch, so a lost batch is simply applied again after a crash.
        self.write(log_id, batch)
    }

    /// Writes `batch` together with "entry `log_id` applied up to command `done`".
    fn write_progress(&mut self, log_id: LogId, done: usize, mut batch: WriteBatch, meta_cf: &rocksdb::ColumnFamily) -> Result<(), StorageError> {
        let progress = postcard::to_stdvec(&(log_id, done)).map_err(storage_err)?;
        batch.put_cf(meta_cf, layout::META_APPLYING, progress);
        self.write(log_id, batch)?;
        self.applying = Some((log_id, done));
        Ok(())
    }

    /// Writes a batch of the entry `log_id`, timed as a backend commit, keeping the readers'
    /// counters right and telling the applier its writes are in.
    fn write(&mut self, log_id: LogId, batch: WriteBatch) -> Result<(), StorageError> {
        self.meta_cache.writing();
        let commit = std::time::Instant::now();
        self.db.write(batch).map_err(|e| StorageIOError::apply(log_id, io_err(e)))?;
        metrics::histogram!(crate::metrics::BACKEND_COMMIT).record(commit.elapsed().as_secs_f64());
        self.meta_cache.written(self.db.latest_sequence_number(), self.applier.meta());
        self.applier.batch_written();
        Ok(())
    }

    /// Announces written revisions to watchers, in order.
    fn publish(&mut self, revisions: Vec<(i64, Vec<cairn_api::Event>)>) {
        self.hub.set_compact_revision(self.applier.meta().compact_revision);
        for (revision, events) in revisions {
            self.hub.publish(revision, events);
        }
    }
}

const CLIENT_COPY_PREFIX: &str = "client-";

/// Where a copy of the store for a client (`etcdctl snapshot save`) is written in `dir`, the
/// snapshot directory, before it is streamed and deleted.
pub(crate) fn client_copy_path(dir: &std::path::Path) -> PathBuf {
    dir.join(format!("{CLIENT_COPY_PREFIX}{:x}.tmp", rand::random::<u64>()))
}

/// Deletes the snapshot files a previous run left: the store is what holds the state, a
/// snapshot file is only its copy for sending to a follower (`.snap`) or to a client
/// (`client-*.tmp`, deleted once sent), and after a restart none is current (the first one
/// needed is built anew). Without this every restart would leave one full copy of the store
/// behind, and a crash a half-built, half-received or half-sent one.
fn remove_snapshot_files(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".snap") || (name.starts_with(CLIENT_COPY_PREFIX) && name.ends_with(".tmp")) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Builds a snapshot on a consistent view, off the apply path.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let tmp = self.snapshot_dir.join(format!("building-{}.snap", rand::random::<u64>()));
        let tmp2 = tmp.clone();
        let (applied, membership) = tokio::task::spawn_blocking(move || write_snapshot(&db, &tmp2))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, io_err(e)))?
            .map_err(|e| StorageIOError::write_snapshot(None, io_err(e)))?;
        let snapshot_id = match applied {
            Some(id) => format!("{:020}-{}-{}", id.index, id.leader_id.term, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let path = self.snapshot_dir.join(format!("{snapshot_id}.snap"));
        std::fs::rename(&tmp, &path).map_err(|e| StorageIOError::write_snapshot(None, io_err(e)))?;
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        // Opened before it is published: once published, a newer snapshot may replace it and
        // delete its file at any time.
        let file = std::fs::File::open(&path).map_err(|e| StorageIOError::read_snapshot(None, io_err(e)))?;
        let superseded = {
            let mut current = self.current.lock().expect("snapshot lock");
            // A snapshot installed from the leader while this one was built may be newer.
            if current.as_ref().is_some_and(|c| c.meta.last_log_id > meta.last_log_id) {
                Some(path)
            } else {
                current.replace(CurrentSnapshot { meta: meta.clone(), path }).map(|prev| prev.path)
            }
        };
        if let Some(old) = superseded {
            let _ = std::fs::remove_file(old);
        }
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let commands = match &entry.payload {
                EntryPayload::Normal(batch) => Some(batch.0.clone()),
                _ => None,
            };
            let response = self.apply_one(entry)?;
            responses.push(match commands {
                // Answered directly: openraft's copy goes to nobody.
                Some(commands) => self.answers.answer(&commands, response).unwrap_or(BatchResponse(Vec::new())),
                None => response,
            });
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), snapshot_dir: self.snapshot_dir.clone(), current: self.current.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snapshot_dir.join(format!("receiving-{}.snap", rand::random::<u64>()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, io_err(e)))?;
        // A transfer the leader gave up on (and started over) leaves its file: delete it.
        if let Some(abandoned) = self.receiving.replace(path) {
            let _ = std::fs::remove_file(abandoned);
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, crate::MemberNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let werr = |e: std::io::Error| -> StorageError { StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)).into() };
        let _applying = crate::metrics::InFlight::new(crate::metrics::SNAPSHOT_APPLYING);
        let mut file = snapshot.into_std().await;
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(0)).map_err(werr)?;
        let db = self.db.clone();
        // Stale until the counters are read back from the installed state below.
        self.meta_cache.writing();
        tokio::task::spawn_blocking(move || load_snapshot(&db, file))
            .await
            .map_err(|e| werr(std::io::Error::other(e)))?
            .map_err(werr)?;
        // The snapshot's meta is authoritative for what it contains.
        let meta_cf = self.db.cf_handle(CF_META).ok_or_else(|| storage_err(std::io::Error::other("no meta cf")))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta_cf, layout::META_APPLIED, postcard::to_stdvec(&meta.last_log_id).map_err(storage_err)?);
        batch.put_cf(meta_cf, layout::META_MEMBERSHIP, postcard::to_stdvec(&meta.last_membership).map_err(storage_err)?);
        batch.delete_cf(meta_cf, layout::META_APPLYING);
        self.db.write(batch).map_err(storage_err)?;
        self.applied = meta.last_log_id;
        self.applying = None;
        self.membership = meta.last_membership.clone();
        self.applier.reload(&self.db).map_err(storage_err)?;
        self.meta_cache.written(self.db.latest_sequence_number(), self.applier.meta());
        self.hub.reset(self.applier.meta().revision);
        self.hub.set_compact_revision(self.applier.meta().compact_revision);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            revision = self.applier.meta().revision,
            "installed a snapshot from the leader"
        );

        let path = self.snapshot_dir.join(format!("{}.snap", meta.snapshot_id));
        if let Some(received) = self.receiving.take() {
            std::fs::rename(&received, &path).map_err(werr)?;
        }
        let previous = self.current.lock().expect("snapshot lock").replace(CurrentSnapshot { meta: meta.clone(), path: path.clone() });
        if let Some(prev) = previous.filter(|p| p.path != path) {
            let _ = std::fs::remove_file(prev.path);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // Opened under the lock: a newer snapshot replaces this one and deletes its file, and
        // a file already open stays readable (replication may be sending it to a follower).
        let current = self.current.lock().expect("snapshot lock");
        match current.as_ref() {
            Some(c) => {
                let file = std::fs::File::open(&c.path)
                    .map_err(|e| StorageIOError::read_snapshot(Some(c.meta.signature()), io_err(e)))?;
                Ok(Some(Snapshot { meta: c.meta.clone(), snapshot: Box::new(tokio::fs::File::from_std(file)) }))
            }
            None => Ok(None),
        }
    }
}
