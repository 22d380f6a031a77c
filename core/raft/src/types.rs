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
    /// A blank or membership entry: nothing for a client.
    Internal,
    /// The command was applied.
    Applied(ApplyOutcome),
    /// The command was refused by etcd's rules, identically on every member.
    Refused(StoreError),
}

openraft::declare_raft_types!(
    /// Cairn's Raft types.
    pub TypeConfig:
        D = cairn_mvcc::WriteCommand,
        R = CommandResponse,
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
