//! Cluster membership and member status, as etcd's Cluster and Maintenance services show them.

use serde::{Deserialize, Serialize};

use crate::ResponseHeader;

/// A member of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberListResponse {
    pub header: ResponseHeader,
    pub members: Vec<Member>,
}

/// What `etcdctl endpoint status` shows of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusResponse {
    pub header: ResponseHeader,
    /// The server version this member reports (etcd-compatible version string).
    pub version: String,
    /// Bytes the backend takes on disk.
    pub db_size: i64,
    /// Bytes of live data in the backend (an estimate).
    pub db_size_in_use: i64,
    /// Member id of the leader; 0 when there is none.
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    pub errors: Vec<String>,
}
