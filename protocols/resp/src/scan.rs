//! Keyspace walks: KEYS, SCAN and DBSIZE, as range reads over the whole v3 keyspace.
//!
//! A pattern's literal prefix narrows the range read. SCAN's cursor must be an integer to
//! Redis clients, while Cairn's position in the keyspace is a key, so cursors are numbers the
//! server hands out and maps to the next key in a bounded table shared by all connections
//! ([`Cursors`]); a cursor that fell out of the table (or was never handed out) ends the scan.
//! Like Redis's, a SCAN may return fewer keys than COUNT (MATCH filters after reading), and a
//! key present for the whole scan is returned exactly once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use cairn_api::{prefix_range_end, Kv, RangeRequest, ReadConsistency, StoreResult};

use crate::errors;
use crate::glob;
use crate::reply::Reply;
use crate::request::string2ll;

/// Most cursors remembered at once; the oldest is forgotten first.
const MAX_CURSORS: usize = 100_000;

/// SCAN cursors: number -> the key the next batch starts at.
#[derive(Default)]
pub struct Cursors {
    inner: Mutex<CursorTable>,
}

#[derive(Default)]
struct CursorTable {
    next_id: u64,
    map: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

impl Cursors {
    fn save(&self, key: Vec<u8>) -> u64 {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.next_id += 1;
        let id = t.next_id;
        t.map.insert(id, key);
        t.order.push_back(id);
        while t.order.len() > MAX_CURSORS {
            if let Some(old) = t.order.pop_front() {
                t.map.remove(&old);
            }
        }
        id
    }

    fn take(&self, id: u64) -> Option<Vec<u8>> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.map.get(&id).cloned()
    }
}

/// The range a pattern can match: `[start, end)`, end `[0]` meaning "to the end".
fn pattern_range(pattern: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let prefix = pattern.map(glob::literal_prefix).unwrap_or_default();
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        let end = prefix_range_end(&prefix);
        (prefix, end)
    }
}

pub async fn keys<S: Kv>(store: &S, consistency: ReadConsistency, pattern: &[u8]) -> StoreResult<Reply> {
    let (key, range_end) = pattern_range(Some(pattern));
    let resp = store.range(RangeRequest { key, range_end, keys_only: true, consistency, ..Default::default() }).await?;
    Ok(Reply::Array(
        resp.kvs.into_iter().filter(|kv| glob::matches(pattern, &kv.key)).map(|kv| Reply::Bulk(Bytes::from(kv.key))).collect(),
    ))
}

pub async fn dbsize<S: Kv>(store: &S, consistency: ReadConsistency) -> StoreResult<Reply> {
    let resp = store
        .range(RangeRequest { key: vec![0], range_end: vec![0], count_only: true, consistency, ..Default::default() })
        .await?;
    Ok(Reply::Int(resp.count))
}

pub async fn scan<S: Kv>(store: &S, consistency: ReadConsistency, cursors: &Cursors, args: &[Bytes]) -> StoreResult<Reply> {
    // Redis reads the cursor with strtoul: a negative number wraps around.
    let text = std::str::from_utf8(&args[1]).ok();
    let cursor = match text.and_then(|s| s.parse::<u64>().ok().or_else(|| s.parse::<i64>().ok().map(|n| n as u64))) {
        Some(c) => c,
        None => return Ok(Reply::err(errors::INVALID_CURSOR)),
    };
    let (mut pattern, mut count, mut i) = (None, 10i64, 2);
    while i < args.len() {
        let more = i + 1 < args.len();
        match args[i].to_ascii_uppercase().as_slice() {
            b"COUNT" if more => match string2ll(&args[i + 1]) {
                None => return Ok(Reply::err(errors::NOT_INTEGER)),
                Some(n) if n < 1 => return Ok(Reply::err(errors::SYNTAX)),
                Some(n) => count = n,
            },
            b"MATCH" if more => pattern = Some(args[i + 1].to_vec()),
            // Every key is a string: TYPE string keeps all, any other type none.
            b"TYPE" if more => {
                if !args[i + 1].eq_ignore_ascii_case(b"string") {
                    pattern = Some(Vec::new());
                }
            }
            _ => return Ok(Reply::err(errors::SYNTAX)),
        }
        i += 2;
    }
    let (lo, range_end) = pattern_range(pattern.as_deref().filter(|p| !p.is_empty()));
    let start = if cursor == 0 {
        lo
    } else {
        match cursors.take(cursor) {
            Some(k) => k.max(lo),
            None => return Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])])),
        }
    };
    let resp = store
        .range(RangeRequest { key: start, range_end, limit: count, keys_only: true, consistency, ..Default::default() })
        .await?;
    let next = match resp.kvs.last() {
        Some(last) if resp.more => {
            let mut k = last.key.clone();
            k.push(0);
            cursors.save(k)
        }
        _ => 0,
    };
    let keys = resp
        .kvs
        .into_iter()
        .filter(|kv| match &pattern {
            Some(p) if p.is_empty() => false,
            Some(p) => glob::matches(p, &kv.key),
            None => true,
        })
        .map(|kv| Reply::Bulk(Bytes::from(kv.key)))
        .collect();
    Ok(Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(keys)]))
}
