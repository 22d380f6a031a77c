//! Leases: time-to-live grants that keys attach to; when a lease ends (revoked, or not kept
//! alive before its deadline) every key attached to it is deleted in one revision.

use serde::{Deserialize, Serialize};

use crate::{LeaseId, ResponseHeader};

/// The largest TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    /// Requested time to live in seconds (raised to the minimum TTL).
    pub ttl: i64,
    /// 0: the server chooses.
    pub id: LeaseId,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    pub header: ResponseHeader,
    pub id: LeaseId,
    /// The TTL granted, in seconds.
    pub ttl: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    pub header: ResponseHeader,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseKeepAliveResponse {
    pub header: ResponseHeader,
    pub id: LeaseId,
    /// The renewed TTL; 0 when the lease does not exist (any more).
    pub ttl: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLiveResponse {
    pub header: ResponseHeader,
    pub id: LeaseId,
    /// Seconds left; -1 when the lease does not exist.
    pub ttl: i64,
    pub granted_ttl: i64,
    /// Milliseconds left (-1 when the lease does not exist): `ttl` rounded down to seconds
    /// loses what RESP's PTTL shows.
    pub remaining_ms: i64,
    /// The attached keys, when asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseLeasesResponse {
    pub header: ResponseHeader,
    pub leases: Vec<LeaseId>,
}
