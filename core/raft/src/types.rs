//! The Raft type configuration: what a log entry carries and what applying it answers.

use cairn_api::StoreError;
use cairn_mvcc::ApplyOutcome;
use serde::{Deserialize, Serialize};

/// What the cluster knows of a member besides its id (etcd's Member fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// The answer of the state machine to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Nothing for a client: a command applied before a crash, whose caller is gone.
    Internal,
    /// The command was applied.
    Applied(ApplyOutcome),
    /// The command was refused by etcd's rules, identically on every member.
    Refused(StoreError),
}

/// One Raft log entry's worth of client commands: concurrent writes are proposed together, so
/// they share one log append and one fsync (openraft 0.9 waits for each append's fsync before
/// taking the next). Each command is still applied on its own, with its own revision. Shared,
/// so the copies openraft and the log store keep of an entry cost no copy of its commands
/// (serialized as the plain list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch(pub std::sync::Arc<Vec<cairn_mvcc::WriteCommand>>);

/// The answers to a [`Batch`], in order (empty for blank and membership entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse(pub Vec<CommandResponse>);

openraft::declare_raft_types!(
    /// Cairn's Raft types.
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = u64,
        Node = MemberNode,
        SnapshotData = tokio::fs::File,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, MemberNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;

pub(crate) fn io_err(e: impl std::error::Error + 'static) -> openraft::AnyError {
    openraft::AnyError::new(&e)
}
