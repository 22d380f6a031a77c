//! The capabilities the core offers adapters. One handle implements them all and is cheap to
//! clone; adapters are generic over these traits so they never name the Raft or storage types.

use std::future::Future;
use std::pin::Pin;

use crate::{
    ResponseHeader, WatchMessage, WatchRequest,
    LeaseGrantRequest, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseTimeToLiveResponse,
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    AlarmAction, AlarmResponse, HashKvResponse, MemberAddRequest, MemberAddResponse, MembersResponse,
    SnapshotChunk, MemberListResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, StatusResponse,
    StoreError, TxnRequest, TxnResponse,
    AuthChange, AuthStatusResponse, AuthenticateResponse, Credentials, NamesResponse, PermType,
    RoleGetResponse, UserGetResponse,
};

pub type StoreResult<T> = Result<T, StoreError>;

/// The multi-version key-value store.
pub trait Kv: Clone + Send + Sync + 'static {
    fn range(&self, req: RangeRequest) -> impl Future<Output = StoreResult<RangeResponse>> + Send;
    fn put(&self, req: PutRequest) -> impl Future<Output = StoreResult<PutResponse>> + Send;
    fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> impl Future<Output = StoreResult<DeleteRangeResponse>> + Send;
    fn txn(&self, req: TxnRequest) -> impl Future<Output = StoreResult<TxnResponse>> + Send;
    fn compact(
        &self,
        req: CompactionRequest,
    ) -> impl Future<Output = StoreResult<CompactionResponse>> + Send;
}

/// Membership as the cluster sees it.
pub trait Cluster: Clone + Send + Sync + 'static {
    fn member_list(&self) -> impl Future<Output = StoreResult<MemberListResponse>> + Send;
    fn member_add(&self, req: MemberAddRequest) -> impl Future<Output = StoreResult<MemberAddResponse>> + Send;
    fn member_remove(&self, id: u64) -> impl Future<Output = StoreResult<MembersResponse>> + Send;
    fn member_update(&self, id: u64, peer_urls: Vec<String>) -> impl Future<Output = StoreResult<MembersResponse>> + Send;
    fn member_promote(&self, id: u64) -> impl Future<Output = StoreResult<MembersResponse>> + Send;
}

/// Per-member status and upkeep.
pub trait Maintenance: Clone + Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = StoreResult<StatusResponse>> + Send;
    /// A hash of the history up to `revision` (0 = the current revision).
    fn hash_kv(&self, revision: i64) -> impl Future<Output = StoreResult<HashKvResponse>> + Send;
    /// Compacts the member's storage files; reads and writes go on meanwhile.
    fn defragment(&self) -> impl Future<Output = StoreResult<ResponseHeader>> + Send;
    fn alarm(&self, action: AlarmAction) -> impl Future<Output = StoreResult<AlarmResponse>> + Send;
    /// A consistent copy of the whole store, as a stream of chunks.
    fn snapshot(&self) -> impl Future<Output = StoreResult<SnapshotStream>> + Send;
    /// Hands leadership to `target` (only the leader can).
    fn move_leader(&self, target: u64) -> impl Future<Output = StoreResult<ResponseHeader>> + Send;
}

/// Leases: grant, keep alive, revoke, inspect.
pub trait Lease: Clone + Send + Sync + 'static {
    fn lease_grant(&self, req: LeaseGrantRequest) -> impl Future<Output = StoreResult<LeaseGrantResponse>> + Send;
    fn lease_revoke(&self, id: LeaseId) -> impl Future<Output = StoreResult<LeaseRevokeResponse>> + Send;
    /// Renews the lease to its full TTL; an unknown lease answers TTL 0.
    fn lease_keep_alive(&self, id: LeaseId) -> impl Future<Output = StoreResult<LeaseKeepAliveResponse>> + Send;
    /// An unknown lease answers TTL -1.
    fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> impl Future<Output = StoreResult<LeaseTimeToLiveResponse>> + Send;
    fn lease_leases(&self) -> impl Future<Output = StoreResult<LeaseLeasesResponse>> + Send;
}

/// The messages of one watch; dropping it ends the watch.
pub type WatchStream = Pin<Box<dyn futures_core::Stream<Item = WatchMessage> + Send>>;

/// Watches on keys and ranges.
pub trait Watch: Clone + Send + Sync + 'static {
    /// Starts a watch; answers the header of its creation (the current revision) and its
    /// messages. A start revision below the compaction point answers a stream whose only
    /// message is [`WatchMessage::Compacted`].
    fn watch(&self, req: WatchRequest) -> impl Future<Output = StoreResult<(ResponseHeader, WatchStream)>> + Send;

    /// The header a progress notification carries: every later event has a higher revision.
    fn progress(&self) -> impl Future<Output = StoreResult<ResponseHeader>> + Send;
}

/// The chunks of a snapshot; an error ends it.
pub type SnapshotStream = Pin<Box<dyn futures_core::Stream<Item = StoreResult<SnapshotChunk>> + Send>>;

/// Users, roles and who is calling (see [`crate::auth`]).
///
/// A handle either acts for the server itself (trusted: what the server binary hands to the
/// adapters) or for one client, whose every call on the other traits is checked against its
/// permissions while auth is enabled.
pub trait Auth: Clone + Send + Sync + 'static {
    /// A handle acting for the client that presented `credentials`: refused with
    /// `InvalidAuthToken` or `AuthFailed` when they are wrong (while auth is enabled).
    fn for_caller(&self, credentials: Credentials) -> impl Future<Output = StoreResult<Self>> + Send;
    /// The user this handle acts for, if any.
    fn caller_name(&self) -> Option<String>;
    /// Whether auth is enabled now.
    fn auth_enabled(&self) -> bool;
    /// Whether this handle may access `[key, range_end)` for `need` (Read or Write): `Ok` when
    /// auth is disabled or for the trusted handle. For adapters that run several clients'
    /// commands together (RESP's group commit) and must check each client first.
    fn check_access(&self, key: &[u8], range_end: &[u8], need: PermType) -> StoreResult<()>;

    fn auth_status(&self) -> impl Future<Output = StoreResult<AuthStatusResponse>> + Send;
    /// Exchanges a name and password for a token (etcd's simple token).
    fn authenticate(&self, name: String, password: String) -> impl Future<Output = StoreResult<AuthenticateResponse>> + Send;
    /// Enables or disables auth, or changes users and roles (root only once auth is enabled).
    fn auth_change(&self, change: AuthChange) -> impl Future<Output = StoreResult<ResponseHeader>> + Send;
    fn user_get(&self, name: String) -> impl Future<Output = StoreResult<UserGetResponse>> + Send;
    fn user_list(&self) -> impl Future<Output = StoreResult<NamesResponse>> + Send;
    fn role_get(&self, name: String) -> impl Future<Output = StoreResult<RoleGetResponse>> + Send;
    fn role_list(&self) -> impl Future<Output = StoreResult<NamesResponse>> + Send;
}
