//! The bodies carried in a peer envelope.

use cairn_raft::{MemberNode, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

/// One of openraft's messages.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftMessage {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The receiver's answer to a [`RaftMessage`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    postcard::to_stdvec(value).map_err(|e| tonic::Status::internal(format!("encoding a peer message: {e}")))
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, tonic::Status> {
    postcard::from_bytes(bytes).map_err(|e| tonic::Status::invalid_argument(format!("decoding a peer message: {e}")))
}

/// The first peer URL of a member, where messages to it go.
pub fn address_of(node: &MemberNode) -> Option<&str> {
    node.peer_urls.first().map(String::as_str)
}
