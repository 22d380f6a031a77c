//! [`CairnNode`]: the running member, and the one handle adapters call (cheap to clone).
//!
//! Writes are proposed through Raft and answered with what the state machine applied.
//! Linearizable reads first obtain a read index from the leader and wait until it is applied;
//! serializable reads are served from the local store at once. Every answer carries the
//! cluster id, this member's id, the store revision and the Raft term.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_api::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, Member, MemberListResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseTimeToLiveResponse, WatchMessage, WatchRequest, WatchStream, EventKind, PutRequest, PutResponse, RangeRequest, RangeResponse, ReadConsistency, RequestOp, ResponseHeader,
    StatusResponse, StoreError, StoreResult, TxnRequest, TxnResponse,
};
use cairn_mvcc::layout::{self, CF_META};
use cairn_mvcc::{ApplyOutcome, Db, DbOptions, Limits, Reader, WriteCommand};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, RaftMetrics, SnapshotPolicy};
use tokio::sync::watch;

use crate::log_store::LogStore;
use crate::network::NoPeers;
use crate::state_machine::StateMachine;
use crate::types::{Batch, CommandResponse, MemberNode, TypeConfig};
use crate::watch_hub::WatchHub;

/// The version Cairn reports where etcd reports its own: the etcd API level it serves.
pub const ETCD_COMPAT_VERSION: &str = "3.5.0";

/// How a member is set up (etcd's flags of the same names).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub advertise_client_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    pub initial_cluster_token: String,
    /// Applied entries between two snapshots (after which the log is purged).
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// The largest write request accepted, in bytes (keys, values and per-op overhead).
    pub max_request_bytes: usize,
    /// How often an idle watcher that asked for progress notifications gets one.
    pub watch_progress_notify_interval: Duration,
    pub limits: Limits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "default".into(),
            data_dir: PathBuf::from("default.cairn"),
            advertise_client_urls: vec!["http://localhost:2379".into()],
            initial_advertise_peer_urls: vec!["http://localhost:2380".into()],
            initial_cluster_token: "etcd-cluster".into(),
            snapshot_count: 100_000,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            max_request_bytes: 1536 * 1024,
            watch_progress_notify_interval: Duration::from_secs(600),
            limits: Limits::default(),
        }
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data dir {0} is in use by another cairn process")]
    Locked(PathBuf),
    #[error("cannot open the store in {path}: {source}")]
    Storage { path: PathBuf, source: rocksdb::Error },
    #[error("raft: {0}")]
    Raft(String),
}

/// A command waiting to be proposed, and where its outcome goes.
type Proposal = (WriteCommand, tokio::sync::oneshot::Sender<StoreResult<ApplyOutcome>>);

/// Most commands in one log entry, and most bytes of them.
const MAX_BATCH_COMMANDS: usize = 1024;
const MAX_BATCH_BYTES: usize = 8 << 20;

struct Inner {
    raft: Raft<TypeConfig>,
    proposals: tokio::sync::mpsc::Sender<Proposal>,
    hub: Arc<WatchHub>,
    db: Arc<Db>,
    metrics: watch::Receiver<RaftMetrics<u64, MemberNode>>,
    member_id: u64,
    cluster_id: u64,
    config: NodeConfig,
}

/// A running member of a Cairn cluster.
#[derive(Clone)]
pub struct CairnNode {
    inner: Arc<Inner>,
}

fn read_or_init_id(db: &Db, key: &[u8], init: u64) -> Result<u64, rocksdb::Error> {
    let cf = db.cf_handle(CF_META).expect("meta column family is always opened");
    match db.get_cf(cf, key)? {
        Some(b) if b.len() == 8 => Ok(u64::from_be_bytes(b.as_slice().try_into().expect("8 bytes"))),
        _ => {
            db.put_cf(cf, key, init.to_be_bytes())?;
            Ok(init)
        }
    }
}

impl CairnNode {
    /// Opens (or creates) the member's data dir and starts Raft. A fresh data dir bootstraps
    /// a one-member cluster; an existing one recovers its state and log.
    pub async fn open(config: NodeConfig) -> Result<Self, OpenError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::DataDir { path: dir.clone(), source })?;
        let db_path = dir.join("member").join("db");
        std::fs::create_dir_all(&db_path).map_err(|source| OpenError::DataDir { path: db_path.clone(), source })?;
        let db = cairn_mvcc::open_db(&db_path, &DbOptions::default()).map_err(|source| {
            let text = source.to_string();
            if text.contains("lock") || text.contains("LOCK") {
                OpenError::Locked(dir.clone())
            } else {
                OpenError::Storage { path: db_path.clone(), source }
            }
        })?;
        let db = Arc::new(db);
        let storage_err = |source| OpenError::Storage { path: db_path.clone(), source };
        let member_id = read_or_init_id(
            &db,
            layout::META_MEMBER_ID,
            crate::member_id_for(&config.initial_advertise_peer_urls, &config.initial_cluster_token),
        )
        .map_err(storage_err)?;
        let cluster_id =
            read_or_init_id(&db, layout::META_CLUSTER_ID, crate::cluster_id_for(&[member_id])).map_err(storage_err)?;

        let raft_config = openraft::Config {
            cluster_name: format!("cairn-{cluster_id:x}"),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| OpenError::Raft(e.to_string()))?;

        let log_store = LogStore::new(db.clone());
        let state_machine = StateMachine::open(db.clone(), dir.join("member").join("snap"))
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let hub = state_machine.watch_hub();
        let raft = Raft::new(member_id, Arc::new(raft_config), NoPeers, log_store, state_machine)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;

        let me = MemberNode {
            name: config.name.clone(),
            peer_urls: config.initial_advertise_peer_urls.clone(),
            client_urls: config.advertise_client_urls.clone(),
        };
        if !raft.is_initialized().await.map_err(|e| OpenError::Raft(e.to_string()))? {
            raft.initialize(BTreeMap::from([(member_id, me)])).await.map_err(|e| OpenError::Raft(e.to_string()))?;
        } else {
            // A lone voter need not wait out an election timeout after a restart.
            let voters: Vec<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
            if voters == [member_id] {
                raft.trigger().elect().await.map_err(|e| OpenError::Raft(e.to_string()))?;
            }
        }
        let metrics = raft.metrics();
        let (proposals, queue) = tokio::sync::mpsc::channel(4 * MAX_BATCH_COMMANDS);
        tokio::spawn(propose_batches(raft.clone(), queue));
        let node = CairnNode { inner: Arc::new(Inner { raft, proposals, hub, db, metrics, member_id, cluster_id, config }) };
        tokio::spawn(expire_leases(Arc::downgrade(&node.inner)));
        Ok(node)
    }

    /// The shortest TTL a lease is granted: 1.5 election timeouts, in whole seconds (etcd's
    /// rule), so a lease outlives a leader election.
    fn min_lease_ttl(&self) -> i64 {
        ((self.inner.config.election_timeout_ms * 3 / 2).div_ceil(1000)).max(1) as i64
    }

    /// Waits until this member knows a leader (or `timeout` passes).
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        self.inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .is_ok()
    }

    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Stops Raft and flushes the memtables, so the next start replays no WAL; the store is
    /// closed when the last handle is dropped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        let db = &self.inner.db;
        let cfs: Vec<_> = layout::COLUMN_FAMILIES.iter().filter_map(|n| db.cf_handle(n)).collect();
        if let Err(e) = db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()) {
            tracing::warn!("flushing the store at shutdown: {e}");
        }
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member_id,
            revision,
            raft_term: self.inner.metrics.borrow().current_term,
        }
    }

    /// Fills in who answered (the state machine knows only revision and term).
    fn stamp(&self, mut h: ResponseHeader) -> ResponseHeader {
        h.cluster_id = self.inner.cluster_id;
        h.member_id = self.inner.member_id;
        h
    }

    async fn propose(&self, cmd: WriteCommand) -> StoreResult<ApplyOutcome> {
        if command_size(&cmd) > self.inner.config.max_request_bytes {
            return Err(StoreError::RequestTooLarge);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.proposals.send((cmd, tx)).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Returns once every write committed before the call is applied locally.
    async fn read_barrier(&self) -> StoreResult<()> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(_)) => Err(StoreError::NoLeader),
            Err(RaftError::Fatal(_)) => Err(StoreError::Stopped),
        }
    }

    /// Runs `f` on a consistent snapshot of the store, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, cairn_mvcc::MvccError> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&Reader::snapshot(&db)).map_err(StoreError::from))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    fn db_sizes(&self) -> (i64, i64) {
        let db = &self.inner.db;
        let (mut total, mut live) = (0u64, 0u64);
        for name in layout::COLUMN_FAMILIES {
            if let Some(cf) = db.cf_handle(name) {
                let prop = |p: &str| db.property_int_value_cf(cf, p).ok().flatten().unwrap_or(0);
                total += prop("rocksdb.total-sst-files-size") + prop("rocksdb.size-all-mem-tables");
                live += prop("rocksdb.estimate-live-data-size") + prop("rocksdb.size-all-mem-tables");
            }
        }
        (total as i64, live.min(total) as i64)
    }
}

/// Proposes queued commands, as many as are waiting (up to a limit) per log entry, one entry
/// at a time: while an entry is being made durable and applied, the next batch gathers. This
/// is the group commit: one append and one fsync for every write that arrived meanwhile.
async fn propose_batches(raft: Raft<TypeConfig>, mut queue: tokio::sync::mpsc::Receiver<Proposal>) {
    while let Some(first) = queue.recv().await {
        let mut bytes = command_size(&first.0);
        let mut waiting = vec![first];
        while waiting.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(p) => {
                    bytes += command_size(&p.0);
                    waiting.push(p);
                }
                Err(_) => break,
            }
        }
        tracing::trace!(commands = waiting.len(), bytes, "proposing a batch");
        let (commands, replies): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
        match raft.client_write(Batch(commands)).await {
            Ok(resp) => {
                let mut outcomes = resp.data.0.into_iter();
                for reply in replies {
                    let outcome = match outcomes.next() {
                        Some(CommandResponse::Applied(o)) => Ok(o),
                        Some(CommandResponse::Refused(e)) => Err(e),
                        Some(CommandResponse::Internal) | None => Err(StoreError::Internal("no outcome for a command".into())),
                    };
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                let err = match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => StoreError::NoLeader,
                    RaftError::APIError(e) => StoreError::Internal(e.to_string()),
                    RaftError::Fatal(_) => StoreError::Stopped,
                };
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch: lease deadlines are wall-clock.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How often the leader looks for leases past their deadline.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most leases ended by one log entry.
const LEASES_PER_EXPIRY: usize = 1000;

/// Runs on every member for as long as the member runs; only the leader proposes expiries.
/// Deadlines are replicated state, so a new leader ends exactly the leases whose deadline has
/// passed, wherever they were granted or renewed.
async fn expire_leases(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(LEASE_CHECK_INTERVAL).await;
        let Some(inner) = inner.upgrade() else { return };
        let node = CairnNode { inner };
        let is_leader = node.inner.metrics.borrow().current_leader == Some(node.inner.member_id);
        if !is_leader {
            continue;
        }
        loop {
            let now = now_ms();
            let expired = match node.read(move |r| r.expired_leases(now, LEASES_PER_EXPIRY)).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!("looking for expired leases: {e}");
                    break;
                }
            };
            if expired.is_empty() {
                break;
            }
            let full = expired.len() == LEASES_PER_EXPIRY;
            match node.propose(WriteCommand::LeaseExpire { ids: expired, now_ms: now }).await {
                Ok(ApplyOutcome::LeaseExpire { revoked }) => tracing::debug!(revoked, "leases expired"),
                Ok(_) => {}
                Err(StoreError::Stopped) => return,
                Err(e) => {
                    tracing::debug!("expiring leases: {e}");
                    break;
                }
            }
            if !full {
                break;
            }
        }
    }
}

/// The size a write takes in the log, roughly: its keys and values plus a little per op.
fn command_size(cmd: &WriteCommand) -> usize {
    fn op_size(op: &RequestOp) -> usize {
        32 + match op {
            RequestOp::Range(r) => r.key.len() + r.range_end.len(),
            RequestOp::Put(p) => p.key.len() + p.value.len(),
            RequestOp::DeleteRange(d) => d.key.len() + d.range_end.len(),
            RequestOp::Txn(t) => txn_size(t),
        }
    }
    fn txn_size(t: &TxnRequest) -> usize {
        let compares: usize = t.compare.iter().map(|c| 32 + c.key.len() + c.range_end.len() + match &c.target {
            cairn_api::CompareTarget::Value(v) => v.len(),
            _ => 8,
        }).sum();
        compares + t.success.iter().chain(&t.failure).map(op_size).sum::<usize>()
    }
    match cmd {
        WriteCommand::Put(p) => 32 + p.key.len() + p.value.len(),
        WriteCommand::DeleteRange(d) => 32 + d.key.len() + d.range_end.len(),
        WriteCommand::Txn(t) => txn_size(t),
        WriteCommand::Compact(_)
        | WriteCommand::LeaseGrant { .. }
        | WriteCommand::LeaseRevoke { .. }
        | WriteCommand::LeaseRenew { .. } => 32,
        WriteCommand::LeaseExpire { ids, .. } => 32 + 8 * ids.len(),
    }
}

fn txn_writes(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        RequestOp::Range(_) => false,
        RequestOp::Txn(inner) => txn_writes(inner),
        _ => true,
    })
}

impl cairn_api::Kv for CairnNode {
    async fn range(&self, req: RangeRequest) -> StoreResult<RangeResponse> {
        cairn_mvcc::check_range(&req)?;
        if req.consistency == ReadConsistency::Linearizable {
            self.read_barrier().await?;
        }
        let mut resp = self.read(move |r| r.range(&req)).await?;
        resp.header = self.header(resp.header.revision);
        Ok(resp)
    }

    async fn put(&self, req: PutRequest) -> StoreResult<PutResponse> {
        cairn_mvcc::check_put(&req)?;
        match self.propose(WriteCommand::Put(req)).await? {
            ApplyOutcome::Put(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn delete_range(&self, req: DeleteRangeRequest) -> StoreResult<DeleteRangeResponse> {
        cairn_mvcc::check_delete(&req)?;
        match self.propose(WriteCommand::DeleteRange(req)).await? {
            ApplyOutcome::DeleteRange(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn txn(&self, req: TxnRequest) -> StoreResult<TxnResponse> {
        cairn_mvcc::check_txn(&req, &self.inner.config.limits)?;
        // A txn that can write in either branch goes through the log; one that only reads is
        // served like a linearizable range, from the local store.
        if !txn_writes(&req) {
            self.read_barrier().await?;
            let mut r = self.read(move |reader| cairn_mvcc::read_only_txn(reader, &req)).await?;
            r.header = self.header(r.header.revision);
            return Ok(r);
        }
        match self.propose(WriteCommand::Txn(req)).await? {
            ApplyOutcome::Txn(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn compact(&self, req: CompactionRequest) -> StoreResult<CompactionResponse> {
        let meta = self.read(|r| r.meta()).await?;
        if req.revision <= meta.compact_revision {
            return Err(StoreError::Compacted);
        }
        if req.revision > meta.revision {
            return Err(StoreError::FutureRevision);
        }
        match self.propose(WriteCommand::Compact(req)).await? {
            ApplyOutcome::Compact(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

impl cairn_api::Cluster for CairnNode {
    async fn member_list(&self) -> StoreResult<MemberListResponse> {
        let metrics = self.inner.metrics.borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_urls: node.peer_urls.clone(),
                client_urls: node.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect();
        Ok(MemberListResponse { header: self.header(0), members })
    }
}

impl cairn_api::Maintenance for CairnNode {
    async fn status(&self) -> StoreResult<StatusResponse> {
        let meta = self.read(|r| r.meta()).await?;
        let metrics = self.inner.metrics.borrow().clone();
        let (db_size, db_size_in_use) = self.db_sizes();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        Ok(StatusResponse {
            header: self.header(meta.revision),
            version: ETCD_COMPAT_VERSION.into(),
            db_size,
            db_size_in_use,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            is_learner: !voters.contains(&self.inner.member_id),
            errors: Vec::new(),
        })
    }
}

impl cairn_api::Lease for CairnNode {
    async fn lease_grant(&self, req: LeaseGrantRequest) -> StoreResult<LeaseGrantResponse> {
        if req.ttl > cairn_api::MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        let ttl = req.ttl.max(self.min_lease_ttl());
        // A server-chosen id is random and positive; on the rare collision, choose again.
        for _ in 0..8 {
            let id = if req.id != 0 { req.id } else { (rand::random::<u64>() >> 1).max(1) as i64 };
            match self.propose(WriteCommand::LeaseGrant { id, ttl, now_ms: now_ms() }).await {
                Ok(ApplyOutcome::LeaseGrant(mut r)) => {
                    r.header = self.stamp(r.header);
                    return Ok(r);
                }
                Ok(other) => return Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
                Err(StoreError::LeaseExists) if req.id == 0 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::LeaseExists)
    }

    async fn lease_revoke(&self, id: LeaseId) -> StoreResult<LeaseRevokeResponse> {
        match self.propose(WriteCommand::LeaseRevoke { id }).await? {
            ApplyOutcome::LeaseRevoke(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> StoreResult<LeaseKeepAliveResponse> {
        match self.propose(WriteCommand::LeaseRenew { id, now_ms: now_ms() }).await {
            Ok(ApplyOutcome::LeaseRenew(mut r)) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            Ok(other) => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
            Err(StoreError::LeaseNotFound) => {
                let revision = self.read(|r| r.meta()).await?.revision;
                Ok(LeaseKeepAliveResponse { header: self.header(revision), id, ttl: 0 })
            }
            Err(e) => Err(e),
        }
    }

    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> StoreResult<LeaseTimeToLiveResponse> {
        self.read_barrier().await?;
        let (meta, lease, attached) = self
            .read(move |r| {
                let lease = r.get_lease(id)?;
                let attached = if keys && lease.is_some() { r.lease_keys(id)? } else { Vec::new() };
                Ok((r.meta()?, lease, attached))
            })
            .await?;
        let header = self.header(meta.revision);
        Ok(match lease {
            Some(l) => LeaseTimeToLiveResponse {
                header,
                id,
                ttl: ((l.deadline_ms - now_ms()).max(0)) / 1000,
                granted_ttl: l.ttl,
                remaining_ms: (l.deadline_ms - now_ms()).max(0),
                keys: attached,
            },
            None => LeaseTimeToLiveResponse { header, id, ttl: -1, granted_ttl: 0, remaining_ms: -1, keys: Vec::new() },
        })
    }

    async fn lease_leases(&self) -> StoreResult<LeaseLeasesResponse> {
        self.read_barrier().await?;
        let (meta, mut leases) = self.read(|r| Ok((r.meta()?, r.leases()?))).await?;
        // etcd lists the lease that ends soonest first.
        leases.sort_by_key(|(id, l)| (l.deadline_ms, *id));
        Ok(LeaseLeasesResponse { header: self.header(meta.revision), leases: leases.into_iter().map(|(id, _)| id).collect() })
    }
}

/// Most event bytes (about) one watch message carries, beyond a single revision's.
const WATCH_CATCH_UP_BYTES: usize = 1 << 20;
/// Messages a watcher may have in flight before it waits (and falls back to storage).
const WATCH_CHANNEL: usize = 8;

impl cairn_api::Watch for CairnNode {
    async fn watch(&self, req: WatchRequest) -> StoreResult<(ResponseHeader, WatchStream)> {
        let mut revisions = self.inner.hub.subscribe();
        let meta = self.read(|r| r.meta()).await?;
        let header = self.header(meta.revision);
        let (tx, rx) = tokio::sync::mpsc::channel::<Box<WatchMessage>>(WATCH_CHANNEL);
        let next = if req.start_revision > 0 { req.start_revision } else { meta.revision + 1 };
        let node = self.clone();
        let compacted = req.start_revision > 0 && req.start_revision < meta.compact_revision;
        let compact_revision = meta.compact_revision;
        let progress_interval = self.inner.config.watch_progress_notify_interval;
        tokio::spawn(async move {
            if compacted {
                // etcd's compaction cancel carries no revision in its header.
                let header = ResponseHeader { revision: 0, ..header };
                let _ = tx.send(Box::new(WatchMessage::Compacted { header, compact_revision })).await;
                return;
            }
            let mut next = next;
            loop {
                let current = *revisions.borrow_and_update();
                while next <= current {
                    let batch = match node.inner.hub.since(next, current) {
                        Some(revs) => {
                            // Whole revisions, up to about the same size as a storage read.
                            let (mut events, mut bytes, mut taken) = (Vec::new(), 0, 0);
                            for rev in &revs {
                                if taken > 0 && bytes > WATCH_CATCH_UP_BYTES {
                                    break;
                                }
                                bytes += rev.iter().map(cairn_api::Event::size).sum::<usize>();
                                events.extend(rev.iter().cloned());
                                taken += 1;
                            }
                            (events, next + taken as i64)
                        }
                        None => {
                            let with_prev = req.prev_kv;
                            let from = next;
                            let read = node
                                .read(move |r| {
                                    let meta = r.meta()?;
                                    if from < meta.compact_revision {
                                        return Ok(Err(meta.compact_revision));
                                    }
                                    Ok(Ok(r.events(from, current, with_prev, WATCH_CATCH_UP_BYTES)?))
                                })
                                .await;
                            match read {
                                Ok(Ok(batch)) => batch,
                                Ok(Err(compact_revision)) => {
                                    let msg = WatchMessage::Compacted { header: node.header(0), compact_revision };
                                    let _ = tx.send(Box::new(msg)).await;
                                    return;
                                }
                                Err(e) => {
                                    tracing::warn!("watch catch-up read failed: {e}");
                                    return;
                                }
                            }
                        }
                    };
                    let (events, after) = batch;
                    let span = cairn_mvcc::KeySpan::new(&req.key, &req.range_end);
                    let events: Vec<cairn_api::Event> = events
                        .into_iter()
                        .filter(|e| span.contains(&e.kv.key))
                        .filter(|e| match e.kind {
                            EventKind::Put => !req.no_put,
                            EventKind::Delete => !req.no_delete,
                        })
                        .map(|mut e| {
                            // As etcd: the previous version is read at mod_revision - 1, so it
                            // is absent once that revision is compacted.
                            if !req.prev_kv || e.kv.mod_revision <= node.inner.hub.compact_revision() {
                                e.prev_kv = None;
                            }
                            e
                        })
                        .collect();
                    if !events.is_empty()
                        && tx.send(Box::new(WatchMessage::Events { header: node.header(after - 1), events })).await.is_err()
                    {
                        return;
                    }
                    next = after;
                }
                let progress_due = tokio::time::sleep(progress_interval);
                tokio::select! {
                    changed = revisions.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    // Everything up to `next - 1` is delivered (or did not match).
                    _ = progress_due, if req.progress_notify => {
                        if tx.send(Box::new(WatchMessage::Progress { header: node.header(next - 1) })).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        // Messages travel boxed: an idle watcher's channel then holds pointers, not messages.
        let stream: WatchStream = Box::pin(tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |m| *m));
        Ok((header, stream))
    }

    async fn progress(&self) -> StoreResult<ResponseHeader> {
        let revision = *self.inner.hub.subscribe().borrow();
        Ok(self.header(revision))
    }
}
