//! Every column family and metadata key Cairn writes, and the byte encodings of their keys.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `kv`        | user key, raw                               | latest live version ([`crate::codec`] `Latest`) |
//! | `history`   | escaped user key, `00 00`, `!revision` (u64 BE) | every version still readable (`Version`), newest first per key |
//! | `revisions` | main revision (u64 BE), sub revision (u64 BE)   | which key changed at that point (`Change`): the event log watches replay |
//! | `meta`      | names below                                 | store revision, compaction point, applied log id, membership, ids |
//! | `leases`    | lease id (u64 BE)                           | granted TTL and deadline (`Lease`) |
//! | `lease_keys`| lease id (u64 BE), user key                 | empty: which keys a lease holds |
//! | `raft_log`  | log index (u64 BE)                          | empty now: the Raft log is in its own files; older data dirs' entries are moved there |
//! | `raft_state`| names below                                 | vote, committed log id, last purged log id |
//!
//! The history key escapes each `00` byte of the user key as `00 ff` and ends the key with
//! `00 00`, so byte order of encoded keys is the order of (user key, newest revision first):
//! a read at revision R seeks to (key, R) and lands on the newest version at or below R.

pub const CF_KV: &str = "kv";
pub const CF_HISTORY: &str = "history";
pub const CF_REVISIONS: &str = "revisions";
pub const CF_META: &str = "meta";
pub const CF_LEASES: &str = "leases";
pub const CF_LEASE_KEYS: &str = "lease_keys";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";

/// Every column family, in the order they are opened.
pub const COLUMN_FAMILIES: [&str; 8] =
    [CF_KV, CF_HISTORY, CF_REVISIONS, CF_META, CF_LEASES, CF_LEASE_KEYS, CF_RAFT_LOG, CF_RAFT_STATE];

/// The column families holding the state machine (what a snapshot carries).
pub const STATE_COLUMN_FAMILIES: [&str; 6] = [CF_KV, CF_HISTORY, CF_REVISIONS, CF_META, CF_LEASES, CF_LEASE_KEYS];

/// `meta`: the store revision (i64 BE).
pub const META_REVISION: &[u8] = b"revision";
/// `meta`: the compacted revision (i64 BE); absent (read as -1) before the first compaction.
pub const META_COMPACT_REVISION: &[u8] = b"compact_revision";
/// `meta`: the last applied Raft log id (written by the state machine in each apply batch).
pub const META_APPLIED: &[u8] = b"applied";
/// `meta`: progress inside a log entry whose commands are being applied one by one: the
/// entry's log id and how many of its commands are applied.
pub const META_APPLYING: &[u8] = b"applying";
/// `meta`: the last applied membership config.
pub const META_MEMBERSHIP: &[u8] = b"membership";
/// `meta`: cluster id and this member's id, chosen when the data dir is created.
pub const META_CLUSTER_ID: &[u8] = b"cluster_id";
pub const META_MEMBER_ID: &[u8] = b"member_id";
/// `meta`: users, roles and the enabled flag (postcard [`crate::auth::AuthState`]).
pub const META_AUTH: &[u8] = b"auth";
/// The raised alarms (postcard `Vec<AlarmMember>`), replicated like any state.
pub const META_ALARMS: &[u8] = b"alarms";

/// `raft_state`: the vote, the committed log id, the last purged log id.
pub const RAFT_VOTE: &[u8] = b"vote";
pub const RAFT_COMMITTED: &[u8] = b"committed";
pub const RAFT_LAST_PURGED: &[u8] = b"last_purged";

/// Appends the order-preserving escape of `key` (without terminator).
fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
}

/// The prefix shared by every history entry of `key`.
pub fn history_key_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    escape_into(&mut out, key);
    out.extend_from_slice(&[0, 0]);
    out
}

/// The history key of `key` at `revision`.
pub fn history_key(key: &[u8], revision: i64) -> Vec<u8> {
    let mut out = history_key_prefix(key);
    out.extend_from_slice(&(!(revision as u64)).to_be_bytes());
    out
}

/// The first encoded key past every history entry of `key` and before the next user key.
pub fn history_key_after(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    escape_into(&mut out, key);
    out.extend_from_slice(&[0, 1]);
    out
}

/// Encoded lower bound of the history of every key `>= key`.
pub fn history_lower_bound(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    escape_into(&mut out, key);
    out
}

/// Splits a history key into (user key, revision).
pub fn decode_history_key(raw: &[u8]) -> Option<(Vec<u8>, i64)> {
    if raw.len() < 10 {
        return None;
    }
    let (body, rev) = raw.split_at(raw.len() - 8);
    let rev = !u64::from_be_bytes(rev.try_into().ok()?) as i64;
    let body = body.strip_suffix(&[0, 0])?;
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        key.push(body[i]);
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xff) {
                return None;
            }
            i += 1;
        }
        i += 1;
    }
    Some((key, rev))
}

/// The key of the `revisions` column family.
pub fn revision_key(main: i64, sub: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    out
}

pub fn decode_revision_key(raw: &[u8]) -> Option<(i64, i64)> {
    if raw.len() != 16 {
        return None;
    }
    let main = u64::from_be_bytes(raw[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(raw[8..].try_into().ok()?) as i64;
    Some((main, sub))
}

/// The key of a lease in `leases`, and the prefix of its keys in `lease_keys`.
pub fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

/// The `lease_keys` entry saying lease `id` holds `key`.
pub fn lease_key_entry(id: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&lease_key(id));
    out.extend_from_slice(key);
    out
}

/// The key of the Raft log column family.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn history_keys_order_newest_first_within_a_key() {
        assert!(history_key(b"a", 5) < history_key(b"a", 4));
        assert!(history_key(b"a", 1) < history_key_after(b"a"));
        assert!(history_key_after(b"a") < history_key(b"a\x00", 9));
        assert!(history_key_after(b"a") < history_key(b"b", 9));
    }

    #[test]
    fn history_key_roundtrips_with_zero_bytes() {
        let key = b"\x00a\x00\x00b\xff".to_vec();
        assert_eq!(decode_history_key(&history_key(&key, 42)), Some((key, 42)));
    }

    proptest! {
        #[test]
        fn history_key_order_follows_user_key_order(
            a in proptest::collection::vec(any::<u8>(), 0..8),
            b in proptest::collection::vec(any::<u8>(), 0..8),
            ra in 1i64..1000, rb in 1i64..1000,
        ) {
            let (ka, kb) = (history_key(&a, ra), history_key(&b, rb));
            if a < b {
                prop_assert!(ka < kb);
                prop_assert!(history_key_after(&a) <= history_lower_bound(&b) || b.starts_with(&a));
                prop_assert!(history_key_after(&a) < kb);
            } else if a == b {
                prop_assert_eq!(ka.cmp(&kb), rb.cmp(&ra));
            }
            prop_assert_eq!(decode_history_key(&ka), Some((a.clone(), ra)));
            prop_assert!(history_lower_bound(&a) <= ka);
        }
    }
}
