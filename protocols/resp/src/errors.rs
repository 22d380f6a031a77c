//! Redis's error replies, and core errors as Redis error replies, in one place.
//!
//! Client libraries and scripts match Redis errors by their text, so each text here is what
//! redis-server 7.0 sends for the same input (checked against it by the differential tests).
//! Core errors have no Redis counterpart; they keep Redis's `ERR` prefix and etcd's wording.

use cairn_api::StoreError;

use crate::reply::Reply;

pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const DECR_OVERFLOW: &str = "ERR decrement would overflow";
pub const INVALID_CURSOR: &str = "ERR invalid cursor";
pub const DB_OUT_OF_RANGE: &str = "ERR DB index is out of range";
pub const TOO_LARGE: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

pub fn wrong_arity(cmd: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{}' command", cmd.to_ascii_lowercase()))
}

pub fn invalid_expire(cmd: &str) -> Reply {
    Reply::err(format!("ERR invalid expire time in '{}' command", cmd.to_ascii_lowercase()))
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' ` (Redis shows at most 128
/// bytes of the name and of each argument, and the arguments that fit in 128 bytes).
pub fn unknown_command(args: &[bytes::Bytes]) -> Reply {
    let name = shown(&args[0]);
    let mut text = format!("ERR unknown command '{name}', with args beginning with: ");
    let mut budget = 128usize;
    for a in &args[1..] {
        if budget == 0 {
            break;
        }
        let a = shown(a);
        let a: String = a.chars().take(budget).collect();
        budget = budget.saturating_sub(a.len());
        text.push_str(&format!("'{a}' "));
    }
    Reply::Error(text)
}

/// `ERR unknown subcommand 'x'. Try CLIENT HELP.`
pub fn unknown_subcommand(sub: &[u8], cmd: &str) -> Reply {
    Reply::err(format!("ERR unknown subcommand '{}'. Try {} HELP.", shown(sub), cmd.to_ascii_uppercase()))
}

/// Redis prints client-given names through a filter that turns line breaks into spaces, so an
/// error stays one line.
fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(128)]).replace(['\r', '\n'], " ")
}

/// A core error as Redis error reply.
pub fn store_error(e: &StoreError) -> Reply {
    use StoreError::*;
    let text = match e {
        RequestTooLarge => TOO_LARGE.to_string(),
        TooManyOps => "ERR too many keys in one command for Cairn (see --max-txn-ops)".to_string(),
        NoLeader => "CLUSTERDOWN no leader (Raft election in progress or quorum lost)".to_string(),
        Timeout => "ERR request timed out".to_string(),
        Stopped => "ERR server stopped".to_string(),
        NoSpace => "OOM database space exceeded".to_string(),
        // A learner is a replica that takes no writes: Redis's answer for a read-only replica.
        PermissionDenied => "NOPERM this user has no permissions to access one of the keys used as arguments".to_string(),
        UserEmpty => "NOAUTH Authentication required.".to_string(),
        AuthFailed | InvalidAuthToken => "WRONGPASS invalid username-password pair or user is disabled.".to_string(),
        NotSupportedForLearner => "READONLY You can't write against a read only replica.".to_string(),
        Internal(detail) => {
            tracing::error!("internal error answered to a Redis client: {detail}");
            format!("ERR internal error: {detail}")
        }
        other => format!("ERR {other}"),
    };
    Reply::Error(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn every_store_error_is_one_line_with_a_code() {
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
            StoreError::Internal("x\ny".replace('\n', " ")),
        ];
        for e in &all {
            let Reply::Error(text) = store_error(e) else { panic!("{e:?}") };
            let code = text.split(' ').next().unwrap();
            assert!(!code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase()), "{e:?}: {text}");
            assert!(!text.contains('\n') && !text.contains('\r'), "{e:?}");
        }
        assert_eq!(store_error(&StoreError::RequestTooLarge), Reply::err(TOO_LARGE));
    }

    #[test]
    fn unknown_command_lists_args_like_redis() {
        let args: Vec<Bytes> = ["foo", "bar", "baz"].iter().map(|s| Bytes::from_static(s.as_bytes())).collect();
        assert_eq!(
            unknown_command(&args),
            Reply::err("ERR unknown command 'foo', with args beginning with: 'bar' 'baz' ")
        );
        assert_eq!(unknown_command(&args[..1]), Reply::err("ERR unknown command 'foo', with args beginning with: "));
    }
}
