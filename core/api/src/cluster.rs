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

/// MemberAdd: a new member (or learner) by its peer URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAddRequest {
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAddResponse {
    pub header: ResponseHeader,
    /// The member just added.
    pub member: Member,
    /// Every member after the change.
    pub members: Vec<Member>,
}

/// The membership after a MemberRemove, MemberUpdate or MemberPromote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersResponse {
    pub header: ResponseHeader,
    pub members: Vec<Member>,
}

/// HashKV: a hash of the key-value history up to a revision, equal on every member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashKvResponse {
    pub header: ResponseHeader,
    pub hash: u32,
    pub compact_revision: i64,
    pub hash_revision: i64,
}

/// An alarm a member raised (etcd's AlarmType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The backend reached --quota-backend-bytes: writes are refused until disarmed.
    NoSpace,
    /// The store failed a consistency check.
    Corrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlarmMember {
    pub member_id: u64,
    pub alarm: AlarmKind,
}

/// What an Alarm call does (etcd's AlarmRequest.AlarmAction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmAction {
    /// List the raised alarms (filtered by member and kind when given).
    Get { member_id: u64, alarm: Option<AlarmKind> },
    Activate(AlarmMember),
    Deactivate(AlarmMember),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmResponse {
    pub header: ResponseHeader,
    pub alarms: Vec<AlarmMember>,
}

/// One piece of a snapshot stream: `remaining_bytes` counts what follows this piece. The last
/// piece carries the SHA-256 of everything before it, as etcd's does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub header: ResponseHeader,
    pub remaining_bytes: u64,
    pub blob: Vec<u8>,
}
