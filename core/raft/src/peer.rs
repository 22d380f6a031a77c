//! What members ask of each other besides Raft's own messages, and the seam a peer transport
//! fills.
//!
//! Raft only lets the leader append to the log, learn a read index or change the membership,
//! yet a client may call any member. A follower therefore forwards: a batch of writes to the
//! leader ([`PeerRequest::Propose`]), a request for the leader's read index
//! ([`PeerRequest::ReadIndex`]), membership changes ([`PeerRequest::ChangeMembers`]), and
//! lease renewals and lease queries, since only the leader knows renewed deadlines. A member
//! joining an existing cluster asks any member who the cluster is ([`PeerRequest::ClusterInfo`]).
//! The transport itself (wire format, connections) lives outside the core; this module only
//! names the messages and the [`PeerLink`] trait that carries them.

use cairn_api::{StoreError, StoreResult};
use cairn_mvcc::{ApplyOutcome, WriteCommand};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::types::MemberNode;

/// A request from one member to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Propose these writes as one log entry (sent to the leader).
    Propose(Vec<WriteCommand>),
    /// The log index a linearizable read must wait for (sent to the leader).
    ReadIndex,
    /// A membership change (sent to the leader).
    ChangeMembers(MembershipChange),
    /// The cluster's id and members (sent by a member joining an existing cluster).
    ClusterInfo,
    /// Start an election now (sent by the leader to the member it hands leadership to).
    TimeoutNow,
    /// Renew a lease (sent to the leader, which keeps renewed deadlines in memory).
    LeaseKeepAlive(i64),
    /// A lease's remaining time as the leader knows it, with its keys if asked.
    LeaseTimeToLive { id: i64, keys: bool },
    /// Every lease, soonest deadline first, as the leader knows them.
    LeaseLeases,
}

/// A membership change, applied by the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipChange {
    /// A new member (or learner) with these peer URLs; the leader picks its id.
    Add { peer_urls: Vec<String>, learner: bool },
    Remove { id: u64 },
    Update { id: u64, peer_urls: Vec<String> },
    Promote { id: u64 },
    /// A started member announces its name and client URLs (etcd publishes these the same way).
    Publish { id: u64, name: String, client_urls: Vec<String> },
}

/// One member as [`PeerRequest::ClusterInfo`] reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: u64,
    pub node: MemberNode,
    pub is_learner: bool,
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerResponse {
    Proposed(Vec<Result<ApplyOutcome, StoreError>>),
    ReadIndex(u64),
    /// The membership change is committed; `id` is the member it concerned (new for an add).
    MembershipChanged { id: u64 },
    ClusterInfo { cluster_id: u64, members: Vec<MemberInfo> },
    Done,
    /// The renewed lease's TTL; 0 when the lease is gone.
    LeaseKeptAlive(i64),
    LeaseTimeToLive(cairn_api::LeaseTimeToLiveResponse),
    LeaseLeases(cairn_api::LeaseLeasesResponse),
}

/// Carries [`PeerRequest`]s to another member. Transport failures come back as
/// [`StoreError::NoLeader`] when nothing was sent and [`StoreError::Timeout`] when the request
/// may have arrived.
pub trait PeerLink: Send + Sync + 'static {
    fn call(&self, target: &MemberNode, req: PeerRequest) -> BoxFuture<'static, StoreResult<PeerResponse>>;
}

/// A member with no peers to talk to (tests of the core alone).
pub struct NoLink;

impl PeerLink for NoLink {
    fn call(&self, _target: &MemberNode, _req: PeerRequest) -> BoxFuture<'static, StoreResult<PeerResponse>> {
        Box::pin(async { Err(StoreError::NoLeader) })
    }
}
