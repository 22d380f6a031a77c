//! The one error type the core returns to adapters. Each adapter maps every variant, once, to
//! its protocol's own codes and messages (etcd's gRPC codes and exact texts, v2 error codes,
//! Redis error replies). Variant docs say which etcd error they stand for.

use serde::{Deserialize, Serialize};

/// Errors a client request can meet in the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// etcd `ErrEmptyKey`.
    #[error("key is not provided")]
    EmptyKey,
    /// etcd `ErrKeyNotFound` (ignore_value/ignore_lease on a missing key).
    #[error("key not found")]
    KeyNotFound,
    /// etcd `ErrValueProvided` (ignore_value with a value).
    #[error("value is provided")]
    ValueProvided,
    /// etcd `ErrLeaseProvided` (ignore_lease with a lease).
    #[error("lease is provided")]
    LeaseProvided,
    /// etcd `ErrTooManyOps`: more operations in one txn than the configured maximum.
    #[error("too many operations in txn request")]
    TooManyOps,
    /// etcd `ErrDuplicateKey`: a txn modifies the same key twice.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// etcd `ErrInvalidSortOption`.
    #[error("invalid sort option")]
    InvalidSortOption,
    /// A compare or request op outside etcd's enums (etcd itself would fail the request).
    #[error("invalid compare or request op")]
    InvalidCompare,
    /// etcd `ErrCompacted`: the revision asked for was compacted away.
    #[error("required revision has been compacted")]
    Compacted,
    /// etcd `ErrFutureRev`: the revision asked for is above the current one.
    #[error("required revision is a future revision")]
    FutureRevision,
    /// etcd `ErrLeaseNotFound`.
    #[error("requested lease not found")]
    LeaseNotFound,
    /// etcd `ErrLeaseExist`.
    #[error("lease already exists")]
    LeaseExists,
    /// etcd `ErrLeaseTTLTooLarge`.
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// etcd `ErrRequestTooLarge`: the request is larger than --max-request-bytes.
    #[error("request is too large")]
    RequestTooLarge,
    /// etcd `ErrNoSpace`: the backend quota is exhausted.
    #[error("database space exceeded")]
    NoSpace,
    /// etcd `ErrNoLeader`: this member knows no leader (election in progress or quorum lost).
    #[error("no leader")]
    NoLeader,
    /// etcd `ErrTimeout`.
    #[error("request timed out")]
    Timeout,
    /// etcd `ErrStopped`: the server is shutting down.
    #[error("server stopped")]
    Stopped,
    /// etcd `ErrMemberNotFound`.
    #[error("member not found")]
    MemberNotFound,
    /// etcd `ErrIDExists`.
    #[error("member ID already exist")]
    MemberExists,
    /// etcd `ErrPeerURLexists`.
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    /// etcd `ErrNotEnoughStartedMembers`: the change would leave too few started voters.
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// etcd `ErrMemberBadURLs`.
    #[error("given member URLs are invalid")]
    MemberBadUrls,
    /// etcd `ErrMemberNotLearner`.
    #[error("can only promote a learner member")]
    MemberNotLearner,
    /// etcd `ErrLearnerNotReady`.
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// etcd `ErrTooManyLearners`.
    #[error("too many learner members in cluster")]
    TooManyLearners,
    /// etcd `ErrNotLeader`: only the leader can do this.
    #[error("not leader")]
    NotLeader,
    /// etcd `ErrBadLeaderTransferee`.
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    /// etcd `ErrNotSupportedForLearner`: a learner serves only serializable reads, status and
    /// membership calls.
    #[error("rpc not supported for learner")]
    NotSupportedForLearner,
    /// etcd `ErrUnhealthy`: the cluster is not healthy enough for the change.
    #[error("unhealthy cluster")]
    Unhealthy,
    /// etcd `ErrUserEmpty`: no user name given, or no credentials while auth is enabled.
    #[error("user name is empty")]
    UserEmpty,
    /// etcd `ErrUserAlreadyExist`.
    #[error("user name already exists")]
    UserAlreadyExists,
    /// etcd `ErrUserNotFound`.
    #[error("user name not found")]
    UserNotFound,
    /// etcd `ErrRoleEmpty`.
    #[error("role name is empty")]
    RoleEmpty,
    /// etcd `ErrRoleAlreadyExist`.
    #[error("role name already exists")]
    RoleAlreadyExists,
    /// etcd `ErrRoleNotFound`.
    #[error("role name not found")]
    RoleNotFound,
    /// etcd `ErrRoleNotGranted`.
    #[error("role is not granted to the user")]
    RoleNotGranted,
    /// etcd `ErrPermissionNotGranted`.
    #[error("permission is not granted to the role")]
    PermissionNotGranted,
    /// etcd `ErrPermissionNotGiven`: a grant without a permission.
    #[error("permission not given")]
    PermissionNotGiven,
    /// etcd `ErrAuthFailed`: unknown user or wrong password.
    #[error("authentication failed, invalid user ID or password")]
    AuthFailed,
    /// etcd `ErrPermissionDenied`.
    #[error("permission denied")]
    PermissionDenied,
    /// etcd `ErrAuthNotEnabled`.
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    /// etcd `ErrInvalidAuthToken`: unknown, expired or outdated token.
    #[error("invalid auth token")]
    InvalidAuthToken,
    /// etcd `ErrInvalidAuthMgmt`: e.g. deleting root, or taking its root role, while auth is on.
    #[error("invalid auth management")]
    InvalidAuthMgmt,
    /// etcd `ErrRootUserNotExist`: auth cannot be enabled without a root user.
    #[error("root user does not exist")]
    RootUserNotExist,
    /// etcd `ErrRootRoleNotExist`: the root user must hold the root role.
    #[error("root user does not have root role")]
    RootRoleNotExist,
    /// etcd `ErrAuthOldRevision`.
    #[error("revision of auth store is old")]
    AuthOldRevision,
    /// A storage or consensus failure that is not the client's doing. The text is for logs.
    #[error("internal error: {0}")]
    Internal(String),
}
