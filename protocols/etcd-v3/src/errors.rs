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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant maps to an etcd-prefixed message; spot-check the ones clients match on.
    #[test]
    fn every_error_has_etcds_code_and_text() {
        let all = [
            StoreError::EmptyKey,
            StoreError::KeyNotFound,
            StoreError::ValueProvided,
            StoreError::LeaseProvided,
            StoreError::TooManyOps,
            StoreError::DuplicateKey,
            StoreError::InvalidSortOption,
            StoreError::InvalidCompare,
            StoreError::Compacted,
            StoreError::FutureRevision,
            StoreError::LeaseNotFound,
            StoreError::LeaseExists,
            StoreError::LeaseTtlTooLarge,
            StoreError::RequestTooLarge,
            StoreError::NoSpace,
            StoreError::NoLeader,
            StoreError::Timeout,
            StoreError::Stopped,
            StoreError::MemberNotFound,
            StoreError::MemberExists,
            StoreError::PeerUrlExists,
            StoreError::NotEnoughStartedMembers,
            StoreError::MemberBadUrls,
            StoreError::MemberNotLearner,
            StoreError::LearnerNotReady,
            StoreError::TooManyLearners,
            StoreError::NotLeader,
            StoreError::BadLeaderTransferee,
            StoreError::Unhealthy,
            StoreError::NotSupportedForLearner,
            StoreError::UserEmpty,
            StoreError::UserAlreadyExists,
            StoreError::UserNotFound,
            StoreError::RoleEmpty,
            StoreError::RoleAlreadyExists,
            StoreError::RoleNotFound,
            StoreError::RoleNotGranted,
            StoreError::PermissionNotGranted,
            StoreError::PermissionNotGiven,
            StoreError::AuthFailed,
            StoreError::PermissionDenied,
            StoreError::AuthNotEnabled,
            StoreError::InvalidAuthToken,
            StoreError::InvalidAuthMgmt,
            StoreError::RootUserNotExist,
            StoreError::RootRoleNotExist,
            StoreError::AuthOldRevision,
            StoreError::Internal("x".into()),
        ];
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
}
