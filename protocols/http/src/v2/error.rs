//! etcd v2's errors: code, message, cause and index, with the HTTP status etcd gives each.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde::Serialize;

pub const KEY_NOT_FOUND: u32 = 100;
pub const TEST_FAILED: u32 = 101;
pub const NOT_FILE: u32 = 102;
pub const NOT_DIR: u32 = 104;
pub const NODE_EXIST: u32 = 105;
pub const ROOT_READ_ONLY: u32 = 107;
pub const DIR_NOT_EMPTY: u32 = 108;
pub const PREV_VALUE_REQUIRED: u32 = 201;
pub const TTL_NAN: u32 = 202;
pub const INDEX_NAN: u32 = 203;
pub const INVALID_FIELD: u32 = 209;
pub const INVALID_FORM: u32 = 210;
pub const REFRESH_VALUE: u32 = 211;
pub const REFRESH_TTL_REQUIRED: u32 = 212;
pub const RAFT_INTERNAL: u32 = 300;
pub const LEADER_ELECT: u32 = 301;
pub const EVENT_INDEX_CLEARED: u32 = 401;

/// etcd's message for each code (`v2error/error.go`).
pub fn message(code: u32) -> &'static str {
    match code {
        100 => "Key not found",
        101 => "Compare failed",
        102 => "Not a file",
        103 => "Reached the max number of peers",
        104 => "Not a directory",
        105 => "Key already exists",
        106 => "The prefix of given key is a keyword in etcd",
        107 => "Root is read only",
        108 => "Directory not empty",
        109 => "Peer address has existed",
        110 => "The request requires user authentication",
        200 => "Value is Required in POST form",
        201 => "PrevValue is Required in POST form",
        202 => "The given TTL in POST form is not a number",
        203 => "The given index in POST form is not a number",
        204 => "Value or TTL is required in POST form",
        205 => "The given timeout in POST form is not a number",
        206 => "Name is required in POST form",
        207 => "Index or value is required",
        208 => "Index and value cannot both be specified",
        209 => "Invalid field",
        210 => "Invalid POST form",
        211 => "Value provided on refresh",
        212 => "A TTL must be provided on refresh",
        300 => "Raft Internal Error",
        301 => "During Leader Election",
        400 => "watcher is cleared due to etcd recovery",
        401 => "The event in requested index is outdated and cleared",
        402 => "Standby Internal Error",
        403 => "Invalid active size",
        404 => "Standby remove delay",
        _ => "Client Internal Error",
    }
}

/// A v2 error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V2Error {
    #[serde(rename = "errorCode")]
    pub code: u32,
    pub message: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cause: String,
    pub index: i64,
    /// The HTTP status, when it is not the code's own (a body over the size limit: 413).
    #[serde(skip)]
    pub status_override: Option<StatusCode>,
}

impl V2Error {
    pub fn new(code: u32, cause: impl Into<String>, index: i64) -> Self {
        V2Error { code, message: message(code), cause: cause.into(), index, status_override: None }
    }

    /// A malformed request (etcd's index 0).
    pub fn request(code: u32, cause: impl Into<String>) -> Self {
        Self::new(code, cause, 0)
    }

    pub fn status(&self) -> StatusCode {
        if let Some(s) = self.status_override {
            return s;
        }
        match self.code {
            100 => StatusCode::NOT_FOUND,
            102 | 108 => StatusCode::FORBIDDEN,
            110 => StatusCode::UNAUTHORIZED,
            101 | 105 => StatusCode::PRECONDITION_FAILED,
            300 | 301 => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A refusal of who the client is or what it may do: etcd v2's code 110 (401), with the
    /// core's reason as the cause.
    pub fn unauthorized(e: cairn_api::StoreError) -> Self {
        tracing::warn!("v2 request refused: {e}");
        Self::request(110, format!("etcdserver: {e}"))
    }

    /// The core's errors as v2 errors (etcd answers 300 with the error text for those).
    pub fn from_store(e: cairn_api::StoreError, index: i64) -> Self {
        use cairn_api::StoreError::*;
        match e {
            NoLeader => Self::new(LEADER_ELECT, e.to_string(), index),
            RequestTooLarge => {
                let mut err = Self::new(INVALID_FORM, "etcdserver: request is too large", index);
                err.status_override = Some(StatusCode::PAYLOAD_TOO_LARGE);
                err
            }
            Compacted => Self::new(EVENT_INDEX_CLEARED, e.to_string(), index),
            PermissionDenied | UserEmpty | AuthFailed | InvalidAuthToken => Self::unauthorized(e),
            other => {
                if let Internal(detail) = &other {
                    tracing::error!("internal error answered to a v2 client: {detail}");
                }
                Self::new(RAFT_INTERNAL, format!("etcdserver: {other}"), index)
            }
        }
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_vec(&self).unwrap_or_default();
        body.push(b'\n');
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json".to_string()), (header::HeaderName::from_static("x-etcd-index"), self.index.to_string())],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_etcds_status_and_text() {
        assert_eq!(V2Error::new(100, "/a", 3).status(), StatusCode::NOT_FOUND);
        assert_eq!(V2Error::new(101, "", 3).status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(V2Error::new(105, "", 3).status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(V2Error::new(102, "", 3).status(), StatusCode::FORBIDDEN);
        assert_eq!(V2Error::new(108, "", 3).status(), StatusCode::FORBIDDEN);
        assert_eq!(V2Error::new(300, "", 3).status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(V2Error::new(401, "", 3).status(), StatusCode::BAD_REQUEST);
        let json = serde_json::to_string(&V2Error::new(100, "/nope", 6)).unwrap();
        assert_eq!(json, r#"{"errorCode":100,"message":"Key not found","cause":"/nope","index":6}"#);
        let json = serde_json::to_string(&V2Error::request(203, "")).unwrap();
        assert_eq!(json, r#"{"errorCode":203,"message":"The given index in POST form is not a number","index":0}"#);
    }

    #[test]
    fn every_store_error_maps_to_a_v2_error() {
        use cairn_api::StoreError::*;
        let all = [EmptyKey, KeyNotFound, ValueProvided, LeaseProvided, TooManyOps, DuplicateKey, InvalidSortOption,
            InvalidCompare, Compacted, FutureRevision, LeaseNotFound, LeaseExists, LeaseTtlTooLarge, RequestTooLarge,
            NoSpace, NoLeader, Timeout, Stopped, MemberNotFound, Internal("x".into())];
        for e in all {
            let v2 = V2Error::from_store(e.clone(), 1);
            assert!(!v2.cause.is_empty(), "{e:?}");
            assert!(v2.status().is_client_error() || v2.status().is_server_error(), "{e:?}");
        }
        assert_eq!(V2Error::from_store(RequestTooLarge, 1).status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
