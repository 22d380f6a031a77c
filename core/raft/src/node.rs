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
    StatusResponse, StoreError, StoreResult, TxnRequest, TxnResponse, AlarmAction, AlarmResponse, HashKvResponse,
    MemberAddRequest, MemberAddResponse, MembersResponse, SnapshotStream, AlarmKind, AlarmMember,
};
use cairn_mvcc::layout::{self, CF_META};
use cairn_mvcc::{ApplyOutcome, Db, DbOptions, Limits, Reader, WriteCommand};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, RaftMetrics, SnapshotPolicy};
use tokio::sync::watch;

use crate::lease_renewals::{LeaseRenewals, Renewal};
use crate::log_store::LogStore;
use crate::proposal_slot::ProposalSlot;
use crate::read_rounds::ReadRounds;
use crate::metrics;
use crate::network::NoPeers;
use crate::peer::{MemberInfo, MembershipChange, NoLink, PeerLink, PeerRequest, PeerResponse};
use crate::state_machine::StateMachine;
use crate::types::{Batch, CommandResponse, MemberNode, TypeConfig};
use crate::watch_hub::WatchHub;

/// The version Cairn reports where etcd reports its own: the etcd API level it serves.
pub const ETCD_COMPAT_VERSION: &str = "3.5.0";

/// etcd's default backend quota: 2 GiB.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

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
    /// Every initial member as (name, peer URLs), this one included (etcd's --initial-cluster).
    /// Empty: this member alone.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// Join a cluster that already runs (etcd's --initial-cluster-state existing) instead of
    /// bootstrapping a new one; the member must have been added with MemberAdd first.
    pub join_existing: bool,
    /// Promote a learner to voter as soon as it has caught up with the leader.
    pub auto_promote_learners: bool,
    /// The backend size above which writes are refused with NOSPACE (0: no limit).
    pub quota_backend_bytes: u64,
    /// How long an auth token stays valid after its last use (etcd's --auth-token-ttl).
    pub auth_token_ttl: Duration,
    /// bcrypt cost of stored password hashes (etcd's --bcrypt-cost).
    pub bcrypt_cost: u32,
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
            initial_cluster: Vec::new(),
            join_existing: false,
            auto_promote_learners: false,
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            auth_token_ttl: Duration::from_secs(300),
            bcrypt_cost: 10,
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
    #[error("{0}")]
    Config(String),
}

/// A command waiting to be proposed, and where its outcome goes.
type Proposal = (WriteCommand, tokio::sync::oneshot::Sender<StoreResult<ApplyOutcome>>);

/// Most commands in one log entry, and most bytes of them.
const MAX_BATCH_COMMANDS: usize = 1024;
const MAX_BATCH_BYTES: usize = 8 << 20;

pub(crate) struct Inner {
    pub(crate) raft: Raft<TypeConfig>,
    proposals: tokio::sync::mpsc::Sender<Proposal>,
    /// Who proposes the next log entry ([`crate::proposal_slot`]).
    proposal_slot: ProposalSlot,
    /// Where a proposer gets its entry's answer straight from the apply.
    answers: Arc<crate::direct_answers::DirectAnswers>,
    pub(crate) hub: Arc<WatchHub>,
    pub(crate) db: Arc<Db>,
    /// The store's revision counters as of the last write, so a read need not look them up.
    meta_cache: Arc<cairn_mvcc::MetaCache>,
    metrics: watch::Receiver<RaftMetrics<u64, MemberNode>>,
    pub(crate) member_id: u64,
    cluster_id: u64,
    pub(crate) config: NodeConfig,
    link: Arc<dyn PeerLink>,
    /// The backend size as last measured, and when (ms): the quota check on the write path
    /// measures at most every [`DB_SIZE_REFRESH_MS`].
    db_size: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicI64),
    /// Users, roles and permissions as applied (see [`crate::auth`]).
    pub(crate) auth: Arc<cairn_mvcc::auth::AuthCache>,
    pub(crate) tokens: crate::auth::Tokens,
    /// Lease deadlines renewed while this member leads (see [`crate::lease_renewals`]).
    renewals: LeaseRenewals,
    /// Read-index rounds shared by concurrent reads ([`crate::read_rounds`]): confirming this
    /// member's leadership, and asking the leader when this member follows.
    leader_reads: ReadRounds,
    follower_reads: ReadRounds,
}

/// How stale the backend size the quota check uses may be.
const DB_SIZE_REFRESH_MS: i64 = 100;

/// A running member of a Cairn cluster.
#[derive(Clone)]
pub struct CairnNode {
    pub(crate) inner: Arc<Inner>,
    /// Who this handle acts for: the server itself, or one client whose calls are checked.
    pub(crate) access: crate::auth::Access,
}

fn read_or_init_id(db: &Db, key: &[u8], init: u64) -> Result<u64, rocksdb::Error> {
    let cf = db.cf_handle(CF_META).expect("meta column family is always opened");
    match db.get_cf(cf, key)? {
        Some(b) if b.len() == 8 => Ok(u64::from_be_bytes(b.as_slice().try_into().expect("8 bytes"))),
        _ => {
            // Synced: the Raft log that will name this member is in files of its own.
            let mut opts = rocksdb::WriteOptions::default();
            opts.set_sync(true);
            db.put_cf_opt(cf, key, init.to_be_bytes(), &opts)?;
            Ok(init)
        }
    }
}

impl CairnNode {
    /// Opens (or creates) the member's data dir and starts Raft, with no peers: a one-member
    /// cluster (tests of the core alone).
    pub async fn open(config: NodeConfig) -> Result<Self, OpenError> {
        Self::open_with(config, NoPeers, Arc::new(NoLink)).await
    }

    /// Opens (or creates) the member's data dir and starts Raft, talking to the other members
    /// through `network` (Raft's messages) and `link` (forwarded requests). A fresh data dir
    /// bootstraps the cluster of `config.initial_cluster` (or joins a running one when
    /// `config.join_existing`); an existing one recovers its state and log.
    pub async fn open_with<N>(config: NodeConfig, network: N, link: Arc<dyn PeerLink>) -> Result<Self, OpenError>
    where
        N: openraft::network::RaftNetworkFactory<TypeConfig>,
    {
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
        let meta_cf = db.cf_handle(CF_META).expect("meta column family is always opened");
        let known_ids = db.get_cf(meta_cf, layout::META_MEMBER_ID).map_err(storage_err)?.is_some();

        // Who the first members are: the initial cluster, or this member alone.
        let me = MemberNode {
            name: config.name.clone(),
            peer_urls: config.initial_advertise_peer_urls.clone(),
            client_urls: config.advertise_client_urls.clone(),
        };
        let mut initial: BTreeMap<u64, MemberNode> = BTreeMap::new();
        if config.initial_cluster.is_empty() {
            initial.insert(crate::member_id_for(&me.peer_urls, &config.initial_cluster_token), me.clone());
        } else {
            for (name, urls) in &config.initial_cluster {
                let id = crate::member_id_for(urls, &config.initial_cluster_token);
                // Every initial member must write the very same first entry, so it holds only
                // what all of them know; each publishes its client URLs once running.
                initial.insert(id, MemberNode { name: name.clone(), peer_urls: urls.clone(), client_urls: Vec::new() });
            }
        }
        let (init_member_id, init_cluster_id) = if known_ids {
            (0, 0)
        } else if config.join_existing {
            join_info(&config, &initial, link.as_ref()).await?
        } else {
            let Some((&id, _)) = initial.iter().find(|(_, n)| n.name == config.name) else {
                return Err(OpenError::Config(format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    config.name
                )));
            };
            let mut mine: Vec<String> = config.initial_advertise_peer_urls.clone();
            let mut listed = initial[&id].peer_urls.clone();
            mine.sort();
            listed.sort();
            if !config.initial_cluster.is_empty() && mine != listed {
                return Err(OpenError::Config(format!(
                    "--initial-cluster has {} for {:?} but --initial-advertise-peer-urls is {}",
                    listed.join(","),
                    config.name,
                    mine.join(",")
                )));
            }
            let ids: Vec<u64> = initial.keys().copied().collect();
            (id, crate::cluster_id_for(&ids))
        };
        let member_id = read_or_init_id(&db, layout::META_MEMBER_ID, init_member_id).map_err(storage_err)?;
        let cluster_id = read_or_init_id(&db, layout::META_CLUSTER_ID, init_cluster_id).map_err(storage_err)?;

        let raft_config = openraft::Config {
            cluster_name: format!("cairn-{cluster_id:x}"),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            // Entries kept behind a snapshot for slow followers (beyond them, a snapshot is sent).
            max_in_snapshot_log_to_keep: config.snapshot_count.min(1000),
            max_payload_entries: 64,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| OpenError::Raft(e.to_string()))?;

        let log_store = LogStore::open(db.clone(), &dir.join("member").join("wal")).map_err(|e| OpenError::Raft(e.to_string()))?;
        let state_machine = StateMachine::open(db.clone(), dir.join("member").join("snap"))
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let hub = state_machine.watch_hub();
        let auth = state_machine.auth_cache();
        let answers = state_machine.direct_answers();
        let meta_cache = state_machine.meta_cache();
        let raft = Raft::new(member_id, Arc::new(raft_config), network, log_store, state_machine)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;

        if !raft.is_initialized().await.map_err(|e| OpenError::Raft(e.to_string()))? {
            if !config.join_existing {
                // Every initial member initializes with the same membership: they all write the
                // same first log entry, so whichever is elected, the logs agree.
                raft.initialize(initial.clone()).await.map_err(|e| OpenError::Raft(e.to_string()))?;
            }
        } else {
            // A lone voter need not wait out an election timeout after a restart.
            let voters: Vec<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
            if voters == [member_id] {
                raft.trigger().elect().await.map_err(|e| OpenError::Raft(e.to_string()))?;
            }
        }
        let metrics = raft.metrics();
        let (proposals, queue) = tokio::sync::mpsc::channel(4 * MAX_BATCH_COMMANDS);
        let node = CairnNode {
            inner: Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
                raft,
                proposals,
                proposal_slot: ProposalSlot::default(),
                answers,
                hub,
                db,
                meta_cache,
                metrics,
                member_id,
                cluster_id,
                config,
                link,
                db_size: Default::default(),
                auth,
                tokens: Default::default(),
                renewals: LeaseRenewals::default(),
                leader_reads: ReadRounds::spawn(leader_read_round(weak.clone())),
                follower_reads: ReadRounds::spawn(follower_read_round(weak.clone())),
            }),
            access: crate::auth::Access::Server,
        };
        tokio::spawn(propose_batches(Arc::downgrade(&node.inner), queue));
        tokio::spawn(expire_leases(Arc::downgrade(&node.inner)));
        tokio::spawn(crate::metrics::observe(Arc::downgrade(&node.inner)));
        tokio::spawn(publish_self(Arc::downgrade(&node.inner)));
        if node.inner.config.auto_promote_learners {
            tokio::spawn(auto_promote(Arc::downgrade(&node.inner)));
        }
        Ok(node)
    }

    /// The Raft handle, for the peer transport to deliver Raft's messages.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// Answers a request another member sent (see [`crate::peer`]).
    pub async fn handle_peer(&self, req: PeerRequest) -> StoreResult<PeerResponse> {
        match req {
            PeerRequest::Propose(commands) => {
                if !self.is_leader() {
                    return Err(StoreError::NoLeader);
                }
                match self.inner.raft.client_write(Batch(Arc::new(commands))).await {
                    Ok(resp) => Ok(PeerResponse::Proposed(resp.data.0.into_iter().map(outcome_of).collect())),
                    Err(e) => Err(write_error(e)),
                }
            }
            PeerRequest::ReadIndex => {
                if !self.is_leader() {
                    return Err(StoreError::NoLeader);
                }
                Ok(PeerResponse::ReadIndex(self.inner.leader_reads.read_index().await?))
            }
            PeerRequest::ChangeMembers(change) => {
                let id = self.change_members_as_leader(change).await?;
                Ok(PeerResponse::MembershipChanged { id })
            }
            PeerRequest::ClusterInfo => {
                let m = self.inner.metrics.borrow().membership_config.clone();
                let voters: Vec<u64> = m.membership().voter_ids().collect();
                let members = m
                    .membership()
                    .nodes()
                    .map(|(id, node)| MemberInfo { id: *id, node: node.clone(), is_learner: !voters.contains(id) })
                    .collect();
                Ok(PeerResponse::ClusterInfo { cluster_id: self.inner.cluster_id, members })
            }
            PeerRequest::TimeoutNow => {
                self.inner.raft.trigger().elect().await.map_err(|_| StoreError::Stopped)?;
                Ok(PeerResponse::Done)
            }
            PeerRequest::LeaseKeepAlive(id) => {
                let term = self.leading_term().ok_or(StoreError::NoLeader)?;
                Ok(PeerResponse::LeaseKeptAlive(self.keep_alive_as_leader(term, id).await?))
            }
            PeerRequest::LeaseTimeToLive { id, keys } => {
                let term = self.leading_term().ok_or(StoreError::NoLeader)?;
                Ok(PeerResponse::LeaseTimeToLive(self.time_to_live_as_leader(term, id, keys).await?))
            }
            PeerRequest::LeaseLeases => {
                let term = self.leading_term().ok_or(StoreError::NoLeader)?;
                Ok(PeerResponse::LeaseLeases(self.leases_as_leader(term).await?))
            }
        }
    }

    /// Refuses what a learner must not serve (writes, linearizable reads, leases), as etcd.
    fn not_learner(&self) -> StoreResult<()> {
        let m = self.inner.metrics.borrow();
        let membership = m.membership_config.membership();
        if membership.get_node(&self.inner.member_id).is_some()
            && !membership.voter_ids().any(|v| v == self.inner.member_id)
        {
            return Err(StoreError::NotSupportedForLearner);
        }
        Ok(())
    }

    fn is_leader(&self) -> bool {
        self.inner.metrics.borrow().current_leader == Some(self.inner.member_id)
    }

    /// The term this member leads in, if it leads.
    fn leading_term(&self) -> Option<u64> {
        let m = self.inner.metrics.borrow();
        (m.current_leader == Some(self.inner.member_id)).then_some(m.current_term)
    }

    /// The leader's address, waiting up to two election timeouts for one to be known.
    async fn leader(&self) -> StoreResult<(u64, MemberNode)> {
        // Usually known: looking needs neither the copy of the metrics nor the timer of a wait.
        if let Some(known) = leader_of(&self.inner.metrics.borrow()) {
            return Ok(known);
        }
        let wait = Duration::from_millis(self.inner.config.election_timeout_ms * 2);
        let m = self
            .inner
            .raft
            .wait(Some(wait))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|_| StoreError::NoLeader)?;
        leader_of(&m).ok_or(StoreError::NoLeader)
    }

    /// Sends `req` to the leader (or answers it here when this member leads).
    async fn ask_leader(&self, req: PeerRequest) -> StoreResult<PeerResponse> {
        let (id, node) = self.leader().await?;
        if id == self.inner.member_id {
            return Box::pin(self.handle_peer(req)).await;
        }
        self.inner.link.call(&node, req).await
    }

    /// [`Self::ask_leader`] for a request that is safe to repeat: through an election it asks
    /// again for a few election timeouts, as a proposal would wait.
    async fn ask_leader_again(&self, req: PeerRequest) -> StoreResult<PeerResponse> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.inner.config.election_timeout_ms * 5);
        loop {
            match self.ask_leader(req.clone()).await {
                Err(StoreError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StoreError::NoLeader) => return Err(StoreError::Timeout),
                other => return other,
            }
        }
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

    /// Waits until the membership holds this member's name and client URLs (or `timeout`
    /// passes), so clients that list members find it as it is.
    pub async fn wait_published(&self, timeout: Duration) -> bool {
        let (me, name, urls) =
            (self.inner.member_id, self.inner.config.name.clone(), self.inner.config.advertise_client_urls.clone());
        self.inner
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .get_node(&me)
                        .is_some_and(|n| n.name == name && n.client_urls == urls)
                },
                "this member published",
            )
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

    /// Returns when Raft stops by itself: a storage error (a disk that fails a write or a read)
    /// or a panic in one of its tasks. The member then neither writes nor reads; etcd exits on
    /// such an error, so that its supervisor restarts it, and so does the server.
    ///
    /// It waits on openraft's server metrics, which change only with the role, the vote, the
    /// leader or the membership, and close when the core stops (after it has recorded why in
    /// `running_state`). The full metrics change with every entry: a waiter on those would be
    /// woken, on another thread, for every write.
    pub async fn failed(&self) -> String {
        let mut server = self.inner.raft.server_metrics();
        while server.changed().await.is_ok() {}
        let error = self.inner.metrics.borrow().running_state.as_ref().err().map(ToString::to_string);
        error.unwrap_or_else(|| "raft stopped".into())
    }

    /// Stops Raft and flushes the memtables, so the next start replays no WAL; the store is
    /// closed when the last handle is dropped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        let db = &self.inner.db;
        // openraft's apply task, its replication tasks and a snapshot being built may still
        // hold the store for a moment after its core stopped. Waiting for them means nothing
        // writes after the flush below, and the store closes as soon as this node is dropped,
        // so that it can be opened again at once (a restart in the same process).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cfs: Vec<_> = layout::COLUMN_FAMILIES.iter().filter_map(|n| db.cf_handle(n)).collect();
        if let Err(e) = db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()) {
            tracing::warn!("flushing the store at shutdown: {e}");
        }
    }

    pub(crate) fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member_id,
            revision,
            raft_term: self.inner.metrics.borrow().current_term,
        }
    }

    /// Fills in who answered (the state machine knows only revision and term).
    pub(crate) fn stamp(&self, mut h: ResponseHeader) -> ResponseHeader {
        h.cluster_id = self.inner.cluster_id;
        h.member_id = self.inner.member_id;
        h
    }

    pub(crate) async fn propose(&self, cmd: WriteCommand) -> StoreResult<ApplyOutcome> {
        self.not_learner()?;
        if command_size(&cmd) > self.inner.config.max_request_bytes {
            return Err(StoreError::RequestTooLarge);
        }
        let quota = self.inner.config.quota_backend_bytes;
        if quota > 0
            && matches!(cmd.inner(), WriteCommand::Put(_) | WriteCommand::Txn(_) | WriteCommand::LeaseGrant { .. })
            && self.backend_size() > quota
        {
            // As etcd: the write is refused and the NOSPACE alarm raised for this member, which
            // refuses such writes on every member until an operator disarms it.
            let node = self.clone();
            tokio::spawn(async move {
                let alarm = AlarmMember { member_id: node.inner.member_id, alarm: AlarmKind::NoSpace };
                if let Err(e) = Box::pin(node.propose_unchecked(WriteCommand::Alarm { activate: true, alarm })).await {
                    tracing::warn!("raising the NOSPACE alarm: {e}");
                }
            });
            return Err(StoreError::NoSpace);
        }
        self.propose_unchecked(cmd).await
    }

    async fn propose_unchecked(&self, cmd: WriteCommand) -> StoreResult<ApplyOutcome> {
        let _pending = metrics::InFlight::new(metrics::PROPOSALS_PENDING);
        let result = match self.propose_alone(cmd).await {
            Ok(result) => result,
            Err(cmd) => self.propose_queued(cmd).await,
        };
        // Failed to commit, as opposed to committed and refused by the store's rules.
        if let Err(StoreError::NoLeader | StoreError::Timeout | StoreError::Stopped | StoreError::Internal(_)) = &result {
            ::metrics::counter!(metrics::PROPOSALS_FAILED).increment(1);
        }
        result
    }

    /// Proposes `cmd` as an entry of its own, on this task, when no entry is in flight and no
    /// write is waiting for the next one; otherwise hands `cmd` back.
    async fn propose_alone(&self, cmd: WriteCommand) -> Result<StoreResult<ApplyOutcome>, WriteCommand> {
        let queue = &self.inner.proposals;
        if queue.capacity() < queue.max_capacity() {
            return Err(cmd);
        }
        let Some(_slot) = self.inner.proposal_slot.try_take() else { return Err(cmd) };
        Ok(match self.propose_batch(vec![cmd]).await {
            Ok(outcomes) => outcomes
                .into_iter()
                .next()
                .unwrap_or_else(|| Err(StoreError::Internal("no outcome for a command".into()))),
            Err(e) => Err(e),
        })
    }

    /// Queues `cmd` for the proposer task, which puts it into the next entry.
    async fn propose_queued(&self, cmd: WriteCommand) -> StoreResult<ApplyOutcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.inner.proposals.send((cmd, tx)).await {
            Ok(()) => rx.await.unwrap_or(Err(StoreError::Stopped)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Returns once every write committed before the call is applied locally. The leader
    /// confirms its leadership with a quorum; a follower asks the leader for that read index
    /// and waits until it has applied that far.
    pub(crate) async fn read_barrier(&self) -> StoreResult<()> {
        self.not_learner()?;
        let result = self.obtain_read_index().await;
        if result.is_err() {
            ::metrics::counter!(metrics::READ_INDEXES_FAILED).increment(1);
        }
        result
    }

    async fn obtain_read_index(&self) -> StoreResult<()> {
        let wait = Duration::from_millis(self.inner.config.election_timeout_ms * 5);
        let deadline = tokio::time::Instant::now() + wait;
        let index = loop {
            let round = if self.is_leader() { &self.inner.leader_reads } else { &self.inner.follower_reads };
            match round.read_index().await {
                Ok(index) => break index,
                // A read can always be asked again, once a leader is known.
                Err(StoreError::NoLeader | StoreError::Timeout) if tokio::time::Instant::now() < deadline => {
                    ::metrics::counter!(metrics::SLOW_READ_INDEXES).increment(1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        // Usually applied already: looking costs a read lock, while openraft's wait clones its
        // metrics and arms a timer on every call. Metrics trail the state machine, never lead it.
        if self.inner.metrics.borrow().last_applied.is_some_and(|l| l.index >= index) {
            return Ok(());
        }
        self.inner
            .raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Timeout)
    }

    /// Runs `f` on a consistent snapshot of the store, off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, cairn_mvcc::MvccError> + Send + 'static,
    ) -> StoreResult<T> {
        let (db, meta_cache) = (self.inner.db.clone(), self.inner.meta_cache.clone());
        tokio::task::spawn_blocking(move || f(&Reader::snapshot(&db).with_meta_cache(&meta_cache)).map_err(StoreError::from))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Runs `f` on a consistent snapshot of the store right here, for reads of one key: a
    /// point lookup costs less than handing it to the blocking pool and back.
    pub(crate) fn read_now<T>(&self, f: impl FnOnce(&Reader) -> Result<T, cairn_mvcc::MvccError>) -> StoreResult<T> {
        f(&Reader::snapshot(&self.inner.db).with_meta_cache(&self.inner.meta_cache)).map_err(StoreError::from)
    }

    /// The backend's size on disk, measured at most every [`DB_SIZE_REFRESH_MS`].
    fn backend_size(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let (bytes, at) = &self.inner.db_size;
        let now = now_ms();
        if now - at.load(Ordering::Relaxed) >= DB_SIZE_REFRESH_MS {
            bytes.store(db_sizes(&self.inner.db).0 as u64, Ordering::Relaxed);
            at.store(now, Ordering::Relaxed);
        }
        bytes.load(Ordering::Relaxed)
    }
}

/// The store's size on disk (SST files and memtables) and RocksDB's estimate of the live part.
pub(crate) fn db_sizes(db: &Db) -> (i64, i64) {
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

/// The leader `m` names, with its address.
fn leader_of(m: &RaftMetrics<u64, MemberNode>) -> Option<(u64, MemberNode)> {
    let id = m.current_leader?;
    Some((id, m.membership_config.membership().get_node(&id)?.clone()))
}

/// One read-index round as the leader: confirms with a quorum that this member still leads.
fn leader_read_round(inner: Weak<Inner>) -> impl Fn() -> futures::future::BoxFuture<'static, StoreResult<u64>> + Send + 'static {
    move || {
        let inner = inner.clone();
        Box::pin(async move {
            let inner = inner.upgrade().ok_or(StoreError::Stopped)?;
            match inner.raft.get_read_log_id().await {
                Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
                Err(RaftError::APIError(_)) => Err(StoreError::NoLeader),
                Err(RaftError::Fatal(_)) => Err(StoreError::Stopped),
            }
        })
    }
}

/// One read-index round as a follower: the leader's read index.
fn follower_read_round(inner: Weak<Inner>) -> impl Fn() -> futures::future::BoxFuture<'static, StoreResult<u64>> + Send + 'static {
    move || {
        let inner = inner.clone();
        Box::pin(async move {
            let inner = inner.upgrade().ok_or(StoreError::Stopped)?;
            let node = CairnNode { inner, access: crate::auth::Access::Server };
            match node.ask_leader(PeerRequest::ReadIndex).await? {
                PeerResponse::ReadIndex(index) => Ok(index),
                other => Err(StoreError::Internal(format!("unexpected peer answer {other:?}"))),
            }
        })
    }
}

/// Proposes queued commands, as many as are waiting (up to a limit) per log entry, one entry
/// at a time: while an entry is being made durable and applied, the next batch gathers. This
/// is the group commit: one append and one fsync for every write that arrived meanwhile. On a
/// follower the batch goes to the leader whole, so forwarded writes share entries too. A lone
/// write may have proposed its own entry ([`CairnNode::propose_alone`]); the next waits for it.
async fn propose_batches(inner: Weak<Inner>, mut queue: tokio::sync::mpsc::Receiver<Proposal>) {
    while let Some(first) = queue.recv().await {
        let Some(strong) = inner.upgrade() else { return };
        let slot = strong.proposal_slot.take().await;
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
        let node = CairnNode { inner: strong.clone(), access: crate::auth::Access::Server };
        tracing::trace!(commands = waiting.len(), bytes, "proposing a batch");
        let (commands, replies): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
        let outcomes = node.propose_batch(commands).await;
        drop(slot);
        match outcomes {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for reply in replies {
                    let outcome = outcomes
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Internal("no outcome for a command".into())));
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

fn outcome_of(r: CommandResponse) -> StoreResult<ApplyOutcome> {
    match r {
        CommandResponse::Applied(o) => Ok(o),
        CommandResponse::Refused(e) => Err(e),
        CommandResponse::Internal => Err(StoreError::Internal("no outcome for a command".into())),
    }
}

fn write_error(e: RaftError<u64, ClientWriteError<u64, MemberNode>>) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => StoreError::NoLeader,
        RaftError::APIError(e) => StoreError::Internal(e.to_string()),
        RaftError::Fatal(_) => StoreError::Stopped,
    }
}

impl CairnNode {
    /// Appends `commands` as one log entry, here when this member leads, else at the leader.
    /// While there is no leader, or the leader it knows cannot be reached (nothing was sent),
    /// it waits and tries again for a few election timeouts, as etcd holds proposals through an
    /// election.
    async fn propose_batch(&self, commands: Vec<WriteCommand>) -> StoreResult<Vec<StoreResult<ApplyOutcome>>> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.inner.config.election_timeout_ms * 5);
        let commands = Arc::new(commands);
        loop {
            let attempt = if self.is_leader() {
                let mut registration = self.inner.answers.register(&commands);
                let write = self.inner.raft.client_write(Batch(commands.clone()));
                tokio::pin!(write);
                let result = tokio::select! {
                    biased;
                    Ok(answer) = &mut registration.answer => Ok(answer),
                    // openraft's copy of an entry answered directly is empty. The direct answer
                    // was sent before it, but this task may have looked for the direct answer
                    // just before it came and at openraft's copy just after (the thread
                    // preempted in between): a direct answer waiting here is the one to take.
                    written = &mut write => written.map(|resp| registration.answer.try_recv().unwrap_or(resp.data)),
                };
                match result {
                    Ok(answer) => return Ok(answer.0.into_iter().map(outcome_of).collect()),
                    // Not appended: leadership moved first.
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(StoreError::NoLeader),
                    Err(e) => return Err(write_error(e)),
                }
            } else {
                match self.leader().await {
                    Ok((leader, _)) if leader == self.inner.member_id => continue,
                    Ok((_, node)) => match self.inner.link.call(&node, PeerRequest::Propose(commands.to_vec())).await {
                        Ok(PeerResponse::Proposed(outcomes)) => return Ok(outcomes),
                        Ok(other) => return Err(StoreError::Internal(format!("unexpected peer answer {other:?}"))),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            };
            match attempt {
                Err(StoreError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StoreError::NoLeader) => return Err(StoreError::Timeout),
                Err(e) => return Err(e),
                Ok(()) => unreachable!("answered above"),
            }
        }
    }
}

/// Asks the members listed in the initial cluster who the cluster is, and finds this member
/// in it by its peer URLs (it must have been added with MemberAdd first).
async fn join_info(
    config: &NodeConfig,
    initial: &BTreeMap<u64, MemberNode>,
    link: &dyn PeerLink,
) -> Result<(u64, u64), OpenError> {
    let mut mine = config.initial_advertise_peer_urls.clone();
    mine.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for node in initial.values().filter(|n| n.name != config.name) {
            match link.call(node, PeerRequest::ClusterInfo).await {
                Ok(PeerResponse::ClusterInfo { cluster_id, members }) => {
                    let found = members.iter().find(|m| {
                        let mut urls = m.node.peer_urls.clone();
                        urls.sort();
                        urls == mine
                    });
                    return match found {
                        Some(m) => Ok((m.id, cluster_id)),
                        None => Err(OpenError::Config(format!(
                            "this member's peer URLs ({}) are not in the cluster's membership; add it with \
                             `etcdctl member add {} --peer-urls={}` first",
                            mine.join(","),
                            config.name,
                            mine.join(",")
                        ))),
                    };
                }
                Ok(other) => tracing::warn!("unexpected answer to a cluster query: {other:?}"),
                Err(e) => tracing::debug!("asking {} for the cluster: {e}", node.name),
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(OpenError::Config(
                "--initial-cluster-state existing: no member of --initial-cluster answered".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Records this member's name and client URLs in the membership whenever the committed
/// membership holds other ones (the initial cluster names only peer URLs; a restart may
/// change the client URLs). Checks again every second: a change proposed under a leader that
/// then lost its term may be dropped, and is then simply made again.
async fn publish_self(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(inner) = inner.upgrade() else { return };
        let node = CairnNode { inner, access: crate::auth::Access::Server };
        let me = node.inner.member_id;
        let current = {
            let m = node.inner.metrics.borrow();
            let committed = m.membership_config.log_id().is_none_or(|l| Some(l.index) <= m.last_applied.map(|a| a.index));
            if m.current_leader.is_none() || !committed {
                continue;
            }
            m.membership_config.membership().get_node(&me).cloned()
        };
        let Some(current) = current else { continue };
        let (name, client_urls) = (node.inner.config.name.clone(), node.inner.config.advertise_client_urls.clone());
        tracing::trace!(?current, "membership entry of this member");
        if current.name != name || current.client_urls != client_urls {
            tracing::debug!("publishing this member's name and client URLs");
            match node.ask_leader(PeerRequest::ChangeMembers(MembershipChange::Publish { id: me, name, client_urls })).await {
                Ok(_) => tracing::info!("published this member's name and client URLs"),
                Err(e) => tracing::debug!("publishing this member's attributes: {e}"),
            }
        }
        drop(node);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// On the leader, promotes each learner once it has caught up.
async fn auto_promote(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(inner) = inner.upgrade() else { return };
        let node = CairnNode { inner, access: crate::auth::Access::Server };
        if !node.is_leader() {
            continue;
        }
        let learners: Vec<u64> = {
            let m = node.inner.metrics.borrow();
            let membership = m.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            membership.nodes().map(|(id, _)| *id).filter(|id| !voters.contains(id)).collect()
        };
        for id in learners {
            if node.learner_caught_up(id) {
                match node.change_members_as_leader(MembershipChange::Promote { id }).await {
                    Ok(_) => tracing::info!(member = format!("{id:x}"), "promoted a caught-up learner"),
                    Err(e) => tracing::debug!("promoting learner {id:x}: {e}"),
                }
            }
        }
    }
}

/// How many log entries a learner may trail the leader by and still count as in sync (etcd
/// requires 90% of the leader's progress).
fn in_sync(matched: u64, leader_last: u64) -> bool {
    matched as f64 >= leader_last as f64 * 0.9
}

/// Wall-clock milliseconds since the Unix epoch: lease deadlines are wall-clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How often the leader looks for leases past their deadline.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most leases ended by one log entry.
const LEASES_PER_EXPIRY: usize = 1000;

/// Runs on every member for as long as the member runs; only the leader proposes expiries, of
/// the leases whose deadline has passed as it knows them: the replicated deadline, or a later
/// one this leader renewed in memory, or for a lease that was kept alive, its full TTL from when
/// this member took over ([`crate::lease_renewals`]).
async fn expire_leases(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(LEASE_CHECK_INTERVAL).await;
        let Some(inner) = inner.upgrade() else { return };
        let node = CairnNode { inner, access: crate::auth::Access::Server };
        let Some(term) = node.leading_term() else { continue };
        loop {
            let leases = match node.read(|r| r.leases()).await {
                Ok(leases) => leases,
                Err(e) => {
                    tracing::warn!("looking for expired leases: {e}");
                    break;
                }
            };
            let now = now_ms();
            let expired = node.inner.renewals.expire(term, &leases, now, LEASES_PER_EXPIRY);
            if expired.is_empty() {
                break;
            }
            let full = expired.len() == LEASES_PER_EXPIRY;
            let outcome = node.propose(WriteCommand::LeaseExpire { ids: expired.clone(), now_ms: now }).await;
            node.inner.renewals.expiry_done(&expired);
            match outcome {
                Ok(ApplyOutcome::LeaseExpire { revoked }) => {
                    ::metrics::counter!(metrics::LEASE_EXPIRED).increment(revoked as u64);
                    tracing::debug!(revoked, "leases expired")
                }
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
        WriteCommand::Alarm { .. } => 32,
        WriteCommand::Auth(_) => 256,
        WriteCommand::Checked { command, .. } => 16 + command_size(command),
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
        // After the barrier, so a linearizable read is checked against every auth change
        // committed before it.
        self.allow(&req.key, &req.range_end, cairn_api::PermType::Read)?;
        metrics::count_op(metrics::RANGE_TOTAL);
        let mut resp = if req.range_end.is_empty() {
            self.read_now(|r| r.range(&req))?
        } else {
            self.read(move |r| r.range(&req)).await?
        };
        resp.header = self.header(resp.header.revision);
        Ok(resp)
    }

    async fn put(&self, req: PutRequest) -> StoreResult<PutResponse> {
        self.auth_barrier().await?;
        let at = self.auth_revision();
        self.allow_put(&req)?;
        self.allow_lease_keys(req.lease).await?;
        cairn_mvcc::check_put(&req)?;
        match self.propose(Self::checked(at, WriteCommand::Put(req))).await? {
            ApplyOutcome::Put(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn delete_range(&self, req: DeleteRangeRequest) -> StoreResult<DeleteRangeResponse> {
        self.auth_barrier().await?;
        let at = self.auth_revision();
        self.allow_delete(&req)?;
        cairn_mvcc::check_delete(&req)?;
        match self.propose(Self::checked(at, WriteCommand::DeleteRange(req))).await? {
            ApplyOutcome::DeleteRange(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn txn(&self, req: TxnRequest) -> StoreResult<TxnResponse> {
        self.auth_barrier().await?;
        let at = self.auth_revision();
        self.allow_txn(&req)?;
        cairn_mvcc::check_txn(&req, &self.inner.config.limits)?;
        metrics::count_op(metrics::TXN_TOTAL);
        // A txn that can write in either branch goes through the log; one that only reads is
        // served like a linearizable range, from the local store.
        if !txn_writes(&req) {
            self.read_barrier().await?;
            let mut r = self.read(move |reader| cairn_mvcc::read_only_txn(reader, &req)).await?;
            r.header = self.header(r.header.revision);
            return Ok(r);
        }
        match self.propose(Self::checked(at, WriteCommand::Txn(req))).await? {
            ApplyOutcome::Txn(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn compact(&self, req: CompactionRequest) -> StoreResult<CompactionResponse> {
        self.allow_authenticated()?;
        let meta = self.read(|r| r.meta()).await?;
        if req.revision <= meta.compact_revision {
            return Err(StoreError::Compacted);
        }
        if req.revision > meta.revision {
            return Err(StoreError::FutureRevision);
        }
        let started = std::time::Instant::now();
        let outcome = self.propose(WriteCommand::Compact(req)).await?;
        ::metrics::histogram!(metrics::COMPACTION_DURATION).record(started.elapsed().as_secs_f64() * 1000.0);
        match outcome {
            ApplyOutcome::Compact(mut r) => {
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

impl CairnNode {
    /// The members as etcd lists them.
    fn members(&self) -> Vec<Member> {
        let metrics = self.inner.metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_urls: node.peer_urls.clone(),
                client_urls: node.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }

    /// Whether the leader (this member) has heard from `id` and it holds nearly all the log.
    fn learner_caught_up(&self, id: u64) -> bool {
        let m = self.inner.metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index);
        matched > 0 && in_sync(matched, last)
    }

    /// Voters the leader has heard from (itself included): etcd's "started" members.
    fn started_voters(&self, voters: &[u64]) -> usize {
        let m = self.inner.metrics.borrow();
        voters
            .iter()
            .filter(|id| {
                **id == self.inner.member_id
                    || m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).is_some()
            })
            .count()
    }

    /// Applies a membership change; only the leader may (followers forward to it).
    async fn change_members_as_leader(&self, change: MembershipChange) -> StoreResult<u64> {
        use openraft::ChangeMembers;
        use std::collections::BTreeSet;
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        let (voters, nodes): (Vec<u64>, BTreeMap<u64, MemberNode>) = {
            let m = self.inner.metrics.borrow();
            let membership = m.membership_config.membership();
            (membership.voter_ids().collect(), membership.nodes().map(|(i, n)| (*i, n.clone())).collect())
        };
        let quorum = |n: usize| n / 2 + 1;
        let raft = &self.inner.raft;
        match change {
            MembershipChange::Add { peer_urls, learner } => {
                if peer_urls.is_empty() || !peer_urls.iter().all(|u| valid_peer_url(u)) {
                    return Err(StoreError::MemberBadUrls);
                }
                if nodes.values().any(|n| n.peer_urls.iter().any(|u| peer_urls.contains(u))) {
                    return Err(StoreError::PeerUrlExists);
                }
                let learners = nodes.len() - voters.len();
                if learner && learners >= MAX_LEARNERS {
                    return Err(StoreError::TooManyLearners);
                }
                let started = self.started_voters(&voters);
                // etcd's one exception: a lone member may take a second one.
                let growing_from_one = voters.len() == 1 && started == 1;
                if !learner && !growing_from_one && started < quorum(voters.len() + 1) {
                    return Err(StoreError::NotEnoughStartedMembers);
                }
                let salt = format!("{}{}", self.inner.config.initial_cluster_token, now_ms());
                let id = crate::member_id_for(&peer_urls, &salt);
                if nodes.contains_key(&id) {
                    return Err(StoreError::MemberExists);
                }
                let node = MemberNode { name: String::new(), peer_urls, client_urls: Vec::new() };
                self.retry_in_progress(|| raft.add_learner(id, node.clone(), false)).await?;
                if growing_from_one && !learner {
                    // Raft's joint consensus would need the new member's vote to commit its own
                    // addition, so a lone member's second member joins as a learner and is
                    // made a voter as soon as it has caught up.
                    self.promote_when_caught_up(id);
                } else if !learner {
                    self.retry_in_progress(|| raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)).await?;
                }
                Ok(id)
            }
            MembershipChange::Remove { id } => {
                if !nodes.contains_key(&id) {
                    return Err(StoreError::MemberNotFound);
                }
                if voters.contains(&id) {
                    let rest: Vec<u64> = voters.iter().copied().filter(|v| *v != id).collect();
                    if rest.is_empty() || self.started_voters(&rest) < quorum(rest.len()) {
                        return Err(StoreError::NotEnoughStartedMembers);
                    }
                    self.retry_in_progress(|| raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)).await?;
                } else {
                    self.retry_in_progress(|| raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)).await?;
                }
                Ok(id)
            }
            MembershipChange::Update { id, peer_urls } => {
                let Some(current) = nodes.get(&id) else { return Err(StoreError::MemberNotFound) };
                if peer_urls.is_empty() || !peer_urls.iter().all(|u| valid_peer_url(u)) {
                    return Err(StoreError::MemberBadUrls);
                }
                if nodes.iter().any(|(other, n)| *other != id && n.peer_urls.iter().any(|u| peer_urls.contains(u))) {
                    return Err(StoreError::PeerUrlExists);
                }
                let node = MemberNode { peer_urls, ..current.clone() };
                self.retry_in_progress(|| raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node.clone())])), false))
                    .await?;
                Ok(id)
            }
            MembershipChange::Promote { id } => {
                if !nodes.contains_key(&id) {
                    return Err(StoreError::MemberNotFound);
                }
                if voters.contains(&id) {
                    return Err(StoreError::MemberNotLearner);
                }
                if !self.learner_caught_up(id) {
                    return Err(StoreError::LearnerNotReady);
                }
                self.retry_in_progress(|| raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)).await?;
                ::metrics::counter!(metrics::LEARNER_PROMOTIONS).increment(1);
                Ok(id)
            }
            MembershipChange::Publish { id, name, client_urls } => {
                let Some(current) = nodes.get(&id) else { return Err(StoreError::MemberNotFound) };
                if current.name == name && current.client_urls == client_urls {
                    return Ok(id);
                }
                let node = MemberNode { name, client_urls, ..current.clone() };
                self.retry_in_progress(|| raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node.clone())])), false))
                    .await?;
                Ok(id)
            }
        }
    }

    /// Runs a membership change, waiting out (up to a few seconds) another change still in
    /// progress, e.g. a member publishing its client URLs: etcd queues such changes too.
    async fn retry_in_progress<F, Fut>(&self, mut change: F) -> StoreResult<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<
            Output = Result<openraft::raft::ClientWriteResponse<TypeConfig>, RaftError<u64, ClientWriteError<u64, MemberNode>>>,
        >,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match change().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    openraft::error::ChangeMembershipError::InProgress(_),
                ))) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(write_error(e)),
            }
        }
    }

    /// Promotes learner `id` once it has caught up (gives up after ten minutes).
    fn promote_when_caught_up(&self, id: u64) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(inner) = inner.upgrade() else { return };
                let node = CairnNode { inner, access: crate::auth::Access::Server };
                if !node.is_leader() || !node.members().iter().any(|m| m.id == id && m.is_learner) {
                    return;
                }
                if node.learner_caught_up(id) {
                    match node.change_members_as_leader(MembershipChange::Promote { id }).await {
                        Ok(_) => return tracing::info!(member = format!("{id:x}"), "second member promoted"),
                        Err(e) => tracing::debug!("promoting the second member: {e}"),
                    }
                }
            }
        });
    }

    /// Sends a membership change to the leader and waits until this member sees it applied.
    async fn change_members(&self, change: MembershipChange) -> StoreResult<u64> {
        if !matches!(change, MembershipChange::Promote { .. }) {
            self.not_learner()?;
        }
        let removal = matches!(change, MembershipChange::Remove { .. });
        let promotion = matches!(change, MembershipChange::Promote { .. });
        let id = match self.ask_leader(PeerRequest::ChangeMembers(change)).await? {
            PeerResponse::MembershipChanged { id } => id,
            other => return Err(StoreError::Internal(format!("unexpected peer answer {other:?}"))),
        };
        // Answer with the membership as changed: wait (briefly) until this member has it too.
        let _ = self
            .inner
            .raft
            .wait(Some(Duration::from_secs(3)))
            .metrics(
                |m| {
                    let membership = m.membership_config.membership();
                    let present = membership.get_node(&id).is_some();
                    if removal {
                        !present
                    } else if promotion {
                        membership.voter_ids().any(|v| v == id)
                    } else {
                        present
                    }
                },
                "membership change applied here",
            )
            .await;
        Ok(id)
    }
}

/// etcd allows one learner at a time by default.
const MAX_LEARNERS: usize = 1;

/// A peer URL etcd would accept: http(s)://host:port.
fn valid_peer_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else { return false };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok(),
        None => false,
    }
}

impl cairn_api::Cluster for CairnNode {
    async fn member_list(&self) -> StoreResult<MemberListResponse> {
        Ok(MemberListResponse { header: self.header(0), members: self.members() })
    }

    async fn member_add(&self, req: MemberAddRequest) -> StoreResult<MemberAddResponse> {
        self.allow_admin()?;
        let id = self.change_members(MembershipChange::Add { peer_urls: req.peer_urls, learner: req.is_learner }).await?;
        let members = self.members();
        let member = members.iter().find(|m| m.id == id).cloned().ok_or(StoreError::MemberNotFound)?;
        Ok(MemberAddResponse { header: self.header(0), member, members })
    }

    async fn member_remove(&self, id: u64) -> StoreResult<MembersResponse> {
        self.allow_admin()?;
        self.change_members(MembershipChange::Remove { id }).await?;
        Ok(MembersResponse { header: self.header(0), members: self.members() })
    }

    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> StoreResult<MembersResponse> {
        self.allow_admin()?;
        self.change_members(MembershipChange::Update { id, peer_urls }).await?;
        Ok(MembersResponse { header: self.header(0), members: self.members() })
    }

    async fn member_promote(&self, id: u64) -> StoreResult<MembersResponse> {
        self.allow_admin()?;
        self.change_members(MembershipChange::Promote { id }).await?;
        Ok(MembersResponse { header: self.header(0), members: self.members() })
    }
}

impl cairn_api::Maintenance for CairnNode {
    async fn status(&self) -> StoreResult<StatusResponse> {
        let meta = self.read(|r| r.meta()).await?;
        let metrics = self.inner.metrics.borrow().clone();
        let (db_size, db_size_in_use) = db_sizes(&self.inner.db);
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

    async fn hash_kv(&self, revision: i64) -> StoreResult<HashKvResponse> {
        self.allow_admin()?;
        let (meta, hash, hash_revision) = self
            .read(move |r| {
                let meta = r.meta()?;
                if revision > meta.revision {
                    return Err(StoreError::FutureRevision.into());
                }
                if revision > 0 && revision < meta.compact_revision {
                    return Err(StoreError::Compacted.into());
                }
                let at = if revision > 0 { revision } else { meta.revision };
                Ok((meta, r.hash_kv(at)?, at))
            })
            .await?;
        Ok(HashKvResponse {
            header: self.header(meta.revision),
            hash,
            compact_revision: meta.compact_revision,
            hash_revision,
        })
    }

    async fn defragment(&self) -> StoreResult<ResponseHeader> {
        self.allow_admin()?;
        let db = self.inner.db.clone();
        let _inflight = metrics::InFlight::new(metrics::DEFRAG_INFLIGHT);
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            // A full compaction rewrites every file without the dead versions; RocksDB keeps
            // serving reads and writes meanwhile.
            for name in layout::COLUMN_FAMILIES {
                if let Some(cf) = db.cf_handle(name) {
                    db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
                }
            }
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        ::metrics::histogram!(metrics::DEFRAG_DURATION).record(started.elapsed().as_secs_f64());
        let revision = self.read(|r| r.meta()).await?.revision;
        Ok(self.header(revision))
    }

    async fn alarm(&self, action: AlarmAction) -> StoreResult<AlarmResponse> {
        if !matches!(action, AlarmAction::Get { .. }) {
            self.allow_admin()?;
        }
        let (activate, alarm) = match action {
            AlarmAction::Get { member_id, alarm } => {
                self.read_barrier().await?;
                let (meta, mut alarms) = self.read(|r| Ok((r.meta()?, r.alarms()?))).await?;
                alarms.retain(|a| (member_id == 0 || a.member_id == member_id) && alarm.is_none_or(|k| a.alarm == k));
                return Ok(AlarmResponse { header: self.header(meta.revision), alarms });
            }
            AlarmAction::Activate(a) => (true, a),
            AlarmAction::Deactivate(a) => (false, a),
        };
        match self.propose(WriteCommand::Alarm { activate, alarm }).await? {
            ApplyOutcome::Alarm(alarms) => {
                let revision = self.read(|r| r.meta()).await?.revision;
                // etcd answers an activation or deactivation with the alarm it changed.
                let changed = alarms.iter().copied().filter(|a| *a == alarm).collect::<Vec<_>>();
                Ok(AlarmResponse { header: self.header(revision), alarms: if activate { changed } else { vec![alarm] } })
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn snapshot(&self) -> StoreResult<SnapshotStream> {
        self.allow_admin()?;
        let dir = self.inner.config.data_dir.join("member").join("snap");
        let db = self.inner.db.clone();
        let path = crate::state_machine::client_copy_path(&dir);
        let dump_path = path.clone();
        tokio::task::spawn_blocking(move || crate::snapshot::write_snapshot(&db, &dump_path))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(|e| StoreError::Internal(format!("writing a snapshot: {e}")))?;
        let revision = self.read(|r| r.meta()).await?.revision;
        let header = self.header(revision);
        Ok(crate::snapshot::stream_file(path, header))
    }

    async fn move_leader(&self, target: u64) -> StoreResult<ResponseHeader> {
        self.allow_admin()?;
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        let (voters, node) = {
            let m = self.inner.metrics.borrow();
            let membership = m.membership_config.membership();
            (membership.voter_ids().collect::<Vec<_>>(), membership.get_node(&target).cloned())
        };
        let Some(node) = node.filter(|_| voters.contains(&target) && target != self.inner.member_id) else {
            return Err(StoreError::BadLeaderTransferee);
        };
        let raft = &self.inner.raft;
        let timeout = Duration::from_millis(self.inner.config.election_timeout_ms * 5);
        // The target must hold the whole log, or it cannot win the election.
        let last = self.inner.metrics.borrow().last_log_index;
        raft.wait(Some(timeout))
            .metrics(
                |m| m.replication.as_ref().and_then(|r| r.get(&target).cloned().flatten()).map(|l| l.index) >= last,
                "transferee caught up",
            )
            .await
            .map_err(|_| StoreError::Timeout)?;
        // Stop asserting leadership, let the followers' leader lease lapse, then tell the
        // target to stand: it wins before any other follower's election timer runs out.
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        tokio::time::sleep(Duration::from_millis(self.inner.config.election_timeout_ms * 2 + 50)).await;
        let asked = self.inner.link.call(&node, PeerRequest::TimeoutNow).await;
        let moved = match asked {
            Ok(_) => raft
                .wait(Some(timeout))
                .metrics(|m| m.current_leader == Some(target), "leadership moved")
                .await
                .is_ok(),
            Err(_) => false,
        };
        raft.runtime_config().heartbeat(true);
        raft.runtime_config().elect(true);
        if !moved {
            return Err(StoreError::Timeout);
        }
        let revision = self.read(|r| r.meta()).await?.revision;
        Ok(self.header(revision))
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
                    ::metrics::counter!(metrics::LEASE_GRANTED).increment(1);
                    ::metrics::histogram!(metrics::LEASE_TTL).record(r.ttl as f64);
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
        let at = self.auth_revision();
        self.allow_lease_keys(id).await?;
        match self.propose(Self::checked(at, WriteCommand::LeaseRevoke { id })).await? {
            ApplyOutcome::LeaseRevoke(mut r) => {
                ::metrics::counter!(metrics::LEASE_REVOKED).increment(1);
                r.header = self.stamp(r.header);
                Ok(r)
            }
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> StoreResult<LeaseKeepAliveResponse> {
        self.not_learner()?;
        let ttl = match self.leading_term() {
            Some(term) => self.keep_alive_as_leader(term, id).await?,
            None => match self.ask_leader_again(PeerRequest::LeaseKeepAlive(id)).await? {
                PeerResponse::LeaseKeptAlive(ttl) => ttl,
                other => return Err(StoreError::Internal(format!("unexpected peer answer {other:?}"))),
            },
        };
        Ok(LeaseKeepAliveResponse { header: self.header(self.inner.hub.revision()), id, ttl })
    }

    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> StoreResult<LeaseTimeToLiveResponse> {
        self.not_learner()?;
        match self.leading_term() {
            Some(term) => self.time_to_live_as_leader(term, id, keys).await,
            None => match self.ask_leader_again(PeerRequest::LeaseTimeToLive { id, keys }).await? {
                PeerResponse::LeaseTimeToLive(r) => Ok(LeaseTimeToLiveResponse { header: self.stamp(r.header), ..r }),
                other => Err(StoreError::Internal(format!("unexpected peer answer {other:?}"))),
            },
        }
    }

    async fn lease_leases(&self) -> StoreResult<LeaseLeasesResponse> {
        self.not_learner()?;
        match self.leading_term() {
            Some(term) => self.leases_as_leader(term).await,
            None => match self.ask_leader_again(PeerRequest::LeaseLeases).await? {
                PeerResponse::LeaseLeases(r) => Ok(LeaseLeasesResponse { header: self.stamp(r.header), ..r }),
                other => Err(StoreError::Internal(format!("unexpected peer answer {other:?}"))),
            },
        }
    }
}

/// Lease calls as the leader answers them: only the leader knows the deadlines it renewed in
/// memory ([`crate::lease_renewals`]), so followers forward these.
impl CairnNode {
    fn stored_lease(&self, id: LeaseId) -> StoreResult<Option<cairn_mvcc::LeaseRecord>> {
        Ok(Reader::snapshot(&self.inner.db).get_lease(id)?)
    }

    /// Renews lease `id`; its TTL, or 0 when the lease is gone.
    async fn keep_alive_as_leader(&self, term: u64, id: LeaseId) -> StoreResult<i64> {
        let now = now_ms();
        if let Some(record) = self.stored_lease(id)? {
            match self.inner.renewals.renew(term, id, &record, now) {
                Renewal::Renewed => {
                    ::metrics::counter!(metrics::LEASE_RENEWED).increment(1);
                    return Ok(record.ttl);
                }
                Renewal::Expired => return Ok(0),
                Renewal::ThroughLog => {}
            }
        }
        // The lease's first renewal (or one this member does not know yet) goes through the log.
        match self.propose(WriteCommand::LeaseRenew { id, now_ms: now }).await {
            Ok(ApplyOutcome::LeaseRenew(r)) => {
                ::metrics::counter!(metrics::LEASE_RENEWED).increment(1);
                Ok(r.ttl)
            }
            Ok(other) => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
            Err(StoreError::LeaseNotFound) => Ok(0),
            Err(e) => Err(e),
        }
    }

    async fn time_to_live_as_leader(&self, term: u64, id: LeaseId, keys: bool) -> StoreResult<LeaseTimeToLiveResponse> {
        self.read_barrier().await?;
        let (meta, lease, attached) = self
            .read(move |r| {
                let lease = r.get_lease(id)?;
                let attached = if keys && lease.is_some() { r.lease_keys(id)? } else { Vec::new() };
                Ok((r.meta()?, lease, attached))
            })
            .await?;
        let header = self.header(meta.revision);
        let now = now_ms();
        let deadline = lease.and_then(|l| Some((l, self.inner.renewals.deadline(term, id, &l, now)?)));
        Ok(match deadline {
            Some((l, deadline)) => LeaseTimeToLiveResponse {
                header,
                id,
                ttl: (deadline - now).max(0) / 1000,
                granted_ttl: l.ttl,
                remaining_ms: (deadline - now).max(0),
                keys: attached,
            },
            None => LeaseTimeToLiveResponse { header, id, ttl: -1, granted_ttl: 0, remaining_ms: -1, keys: Vec::new() },
        })
    }

    async fn leases_as_leader(&self, term: u64) -> StoreResult<LeaseLeasesResponse> {
        self.read_barrier().await?;
        let (meta, leases) = self.read(|r| Ok((r.meta()?, r.leases()?))).await?;
        let now = now_ms();
        let mut leases: Vec<(i64, LeaseId)> = leases
            .into_iter()
            .filter_map(|(id, l)| Some((self.inner.renewals.deadline(term, id, &l, now)?, id)))
            .collect();
        // etcd lists the lease that ends soonest first.
        leases.sort();
        Ok(LeaseLeasesResponse { header: self.header(meta.revision), leases: leases.into_iter().map(|(_, id)| id).collect() })
    }
}

/// Most event bytes (about) one watch message carries, beyond a single revision's.
const WATCH_CATCH_UP_BYTES: usize = 1 << 20;
/// Messages a watcher may have in flight before it waits (and falls back to storage).
const WATCH_CHANNEL: usize = 8;

impl cairn_api::Watch for CairnNode {
    async fn watch(&self, req: WatchRequest) -> StoreResult<(ResponseHeader, WatchStream)> {
        self.allow(&req.key, &req.range_end, cairn_api::PermType::Read)?;
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
            let _watcher = metrics::InFlight::new(metrics::WATCHERS);
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
                            let _slow = metrics::InFlight::new(metrics::SLOW_WATCHERS);
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
                    ::metrics::counter!(metrics::EVENTS_TOTAL).increment(events.len() as u64);
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
