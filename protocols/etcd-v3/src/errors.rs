//! Core errors as etcd's gRPC errors: etcd's status codes and exact messages, since etcd's
//! clients recognise errors by their text.

use cairn_api::StoreError;
use tonic::{Code, Status};

/// The gRPC code and message etcd sends for `e`.
pub fn code_and_message(e: &StoreError) -> (Code, String) {
    use StoreError::*;
    let (code, msg) = match e {
        EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
        KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
        InvalidCompare => (Code::InvalidArgument, "etcdserver: invalid compare or request op"),
        Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
        FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
        LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
        LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
        NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        NoLeader => (Code::Unavailable, "etcdserver: no leader"),
        Timeout => (Code::Unavailable, "etcdserver: request timed out"),
        Stopped => (Code::Unavailable, "etcdserver: server stopped"),
        MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
        MemberExists => (Code::FailedPrecondition, "etcdserver: member ID already exist"),
        PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        NotEnoughStartedMembers => {
            (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
        }
        MemberBadUrls => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
        MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
        LearnerNotReady => {
            (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        TooManyLearners => (Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
        NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
        BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
        Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
        NotSupportedForLearner => (Code::Unavailable, "etcdserver: rpc not supported for learner"),
        UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
        UserAlreadyExists => (Code::FailedPrecondition, "etcdserver: user name already exists"),
        UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
        RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
        RoleAlreadyExists => (Code::FailedPrecondition, "etcdserver: role name already exists"),
        RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
        RoleNotGranted => (Code::FailedPrecondition, "etcdserver: role is not granted to the user"),
        PermissionNotGranted => (Code::FailedPrecondition, "etcdserver: permission is not granted to the role"),
        PermissionNotGiven => (Code::InvalidArgument, "etcdserver: permission not given"),
        AuthFailed => (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
        PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
        AuthNotEnabled => (Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
        InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
        InvalidAuthMgmt => (Code::InvalidArgument, "etcdserver: invalid auth management"),
        RootUserNotExist => (Code::FailedPrecondition, "etcdserver: root user does not exist"),
        RootRoleNotExist => (Code::FailedPrecondition, "etcdserver: root user does not have root role"),
        AuthOldRevision => (Code::InvalidArgument, "etcdserver: revision of auth store is old"),
        Internal(detail) => return (Code::Unknown, format!("etcdserver: {detail}")),
    };
    (code, msg.to_string())
}

pub fn to_status(e: StoreError) -> Status {
    if let StoreError::Internal(detail) = &e {
        tracing::error!("internal error answered to a client: {detail}");
    }
    let (code, msg) = code_and_message(&e);
    Status::new(code, msg)
}

/// Every error with a fixed code and text: all but [`StoreError::Internal`].
pub const FIXED_ERRORS: [StoreError; 47] = {
    use StoreError::*;
    [
        EmptyKey, KeyNotFound, ValueProvided, LeaseProvided, TooManyOps, DuplicateKey, InvalidSortOption,
        InvalidCompare, Compacted, FutureRevision, LeaseNotFound, LeaseExists, LeaseTtlTooLarge, RequestTooLarge,
        NoSpace, NoLeader, Timeout, Stopped, MemberNotFound, MemberExists, PeerUrlExists, NotEnoughStartedMembers,
        MemberBadUrls, MemberNotLearner, LearnerNotReady, TooManyLearners, NotLeader, BadLeaderTransferee, Unhealthy,
        NotSupportedForLearner, UserEmpty, UserAlreadyExists, UserNotFound, RoleEmpty, RoleAlreadyExists,
        RoleNotFound, RoleNotGranted, PermissionNotGranted, PermissionNotGiven, AuthFailed, PermissionDenied,
        AuthNotEnabled, InvalidAuthToken, InvalidAuthMgmt, RootUserNotExist, RootRoleNotExist, AuthOldRevision,
    ]
};

/// Fails to compile when a variant is added without a place in [`FIXED_ERRORS`] (add it there,
/// then here).
#[allow(dead_code)]
fn fixed_errors_are_complete(e: &StoreError) {
    use StoreError::*;
    match e {
        EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | InvalidSortOption
        | InvalidCompare | Compacted | FutureRevision | LeaseNotFound | LeaseExists | LeaseTtlTooLarge
        | RequestTooLarge | NoSpace | NoLeader | Timeout | Stopped | MemberNotFound | MemberExists | PeerUrlExists
        | NotEnoughStartedMembers | MemberBadUrls | MemberNotLearner | LearnerNotReady | TooManyLearners | NotLeader
        | BadLeaderTransferee | Unhealthy | NotSupportedForLearner | UserEmpty | UserAlreadyExists | UserNotFound
        | RoleEmpty | RoleAlreadyExists | RoleNotFound | RoleNotGranted | PermissionNotGranted | PermissionNotGiven
        | AuthFailed | PermissionDenied | AuthNotEnabled | InvalidAuthToken | InvalidAuthMgmt | RootUserNotExist
        | RootRoleNotExist | AuthOldRevision | Internal(_) => {}
    }
}

/// The inverse of [`code_and_message`], for serving the core API over a member's gRPC (the
/// proxy): a member's error with etcd's code and exact text is the variant it came from, so an
/// adapter re-encodes the very error the member gave. Any other error (a transport failure, a
/// text no variant has) is [`StoreError::Internal`] keeping the text; `etcdserver: ` is taken
/// off since `Internal` puts it back. `code` None matches by text alone (a watch's
/// `cancel_reason` has no code).
pub fn from_code_and_message(code: Option<Code>, message: &str) -> StoreError {
    for e in FIXED_ERRORS {
        let (c, m) = code_and_message(&e);
        if m == message && code.is_none_or(|code| code == c) {
            return e;
        }
    }
    StoreError::Internal(message.strip_prefix("etcdserver: ").unwrap_or(message).to_string())
}

/// [`from_code_and_message`] of a gRPC status.
pub fn from_status(s: &Status) -> StoreError {
    from_code_and_message(Some(s.code()), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant maps to an etcd-prefixed message; spot-check the ones clients match on.
    #[test]
    fn every_error_has_etcds_code_and_text() {
        let mut all = FIXED_ERRORS.to_vec();
        all.push(StoreError::Internal("x".into()));
        for e in &all {
            assert!(code_and_message(e).1.starts_with("etcdserver: "), "{e:?}");
        }
        assert_eq!(
            code_and_message(&StoreError::Compacted),
            (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".to_string())
        );
        assert_eq!(
            code_and_message(&StoreError::DuplicateKey),
            (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".to_string())
        );
    }

    /// Status -> error -> status is the identity for every variant (the proxy's adapters
    /// re-encode a member's error unchanged).
    #[test]
    fn every_status_maps_back_to_its_error() {
        let mut all = FIXED_ERRORS.to_vec();
        all.push(StoreError::Internal("disk on fire".into()));
        for e in all {
            let status = to_status(e.clone());
            assert_eq!(from_status(&status), e);
            let (code, message) = code_and_message(&from_status(&status));
            assert_eq!((code, message.as_str()), (status.code(), status.message()));
            assert_eq!(from_code_and_message(None, status.message()), e, "by text alone");
        }
        // Errors no member sends keep their text.
        assert_eq!(
            from_status(&Status::unavailable("tcp connect error: Connection refused")),
            StoreError::Internal("tcp connect error: Connection refused".into())
        );
    }
}
