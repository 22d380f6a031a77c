//! String commands: GET, SET and its variants, counters, APPEND, multi-key MGET/MSET.
//!
//! Each runs against a [`Tx`] (see [`crate::tx`]) and answers what Redis 7 answers for the
//! same input. A Redis key is the etcd v3 key of the same bytes and its value the v3 value;
//! a TTL is the key's lease (see docs/keyspace.md).

use bytes::Bytes;
use cairn_api::{Kv, Lease, StoreResult};

use crate::errors::{self, invalid_expire, wrong_arity};
use crate::expiry::{now_ms, Deadline};
use crate::reply::Reply;
use crate::request::string2ll;
use crate::tx::Tx;

fn value_of(e: &Option<crate::tx::Entry>) -> Reply {
    e.as_ref().map_or(Reply::Nil, |e| Reply::bulk(&e.value))
}

/// The options SET and GETEX share (Redis's `parseExtendedStringArgumentsOrReply`).
#[derive(Debug, Default)]
pub struct SetOptions {
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub keepttl: bool,
    pub persist: bool,
    /// The expiry option and its raw argument: `EX`, `PX`, `EXAT` or `PXAT`.
    pub expire: Option<(&'static str, Bytes)>,
}

/// Parses the options from `args` (after the key / value); `getex` allows only PERSIST and
/// the expiry options.
pub fn parse_set_options(args: &[Bytes], getex: bool) -> Result<SetOptions, Reply> {
    let mut o = SetOptions::default();
    let mut i = 0;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let next = args.get(i + 1);
        match opt.as_slice() {
            b"NX" if !getex && !o.xx => o.nx = true,
            b"XX" if !getex && !o.nx => o.xx = true,
            b"GET" if !getex => o.get = true,
            b"KEEPTTL" if !getex && !o.persist && o.expire.is_none() => o.keepttl = true,
            b"PERSIST" if getex && !o.keepttl && o.expire.is_none() => o.persist = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT"
                if !o.keepttl && !o.persist && next.is_some() && o.expire.as_ref().is_none_or(|(u, _)| u.as_bytes() == opt.as_slice()) =>
            {
                // Redis refuses two different expiry options but takes the same one twice.
                let name = match opt.as_slice() {
                    b"EX" => "EX",
                    b"PX" => "PX",
                    b"EXAT" => "EXAT",
                    _ => "PXAT",
                };
                o.expire = Some((name, next.cloned().unwrap_or_default()));
                i += 1;
            }
            _ => return Err(Reply::err(errors::SYNTAX)),
        }
        i += 1;
    }
    Ok(o)
}

/// The absolute deadline of an expiry option, checked as Redis checks it.
pub fn deadline(cmd: &str, unit: &str, raw: &[u8]) -> Result<Deadline, Reply> {
    let n = string2ll(raw).ok_or_else(|| Reply::err(errors::NOT_INTEGER))?;
    if n <= 0 {
        return Err(invalid_expire(cmd));
    }
    let now = now_ms();
    let at_ms = match unit {
        "EX" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        "PX" => n.checked_add(now),
        "EXAT" => n.checked_mul(1000),
        _ => Some(n),
    };
    at_ms.map(Deadline).ok_or_else(|| invalid_expire(cmd))
}

/// GET, SET, SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, INCR, DECR,
/// INCRBY, DECRBY, APPEND, STRLEN. `None` when `name` is none of them.
// `usize::is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
#[allow(unknown_lints, clippy::manual_is_multiple_of)]
pub async fn run<S: Kv + Lease>(tx: &mut Tx<'_, S>, name: &str, args: &[Bytes]) -> StoreResult<Option<Reply>> {
    let reply = match name {
        "get" => value_of(&tx.get(&args[1]).await?),
        "strlen" => Reply::Int(tx.get(&args[1]).await?.map_or(0, |e| e.value.len() as i64)),
        "set" => match parse_set_options(&args[3..], false) {
            Ok(o) => set(tx, "set", &args[1], args[2].to_vec(), o).await?,
            Err(r) => r,
        },
        "setnx" => {
            let o = SetOptions { nx: true, ..Default::default() };
            match set(tx, "setnx", &args[1], args[2].to_vec(), o).await? {
                Reply::Nil => Reply::Int(0),
                _ => Reply::Int(1),
            }
        }
        "setex" | "psetex" => {
            let unit = if name == "setex" { "EX" } else { "PX" };
            let o = SetOptions { expire: Some((unit, args[2].clone())), ..Default::default() };
            set(tx, name, &args[1], args[3].to_vec(), o).await?
        }
        "getset" => {
            let o = SetOptions { get: true, ..Default::default() };
            set(tx, name, &args[1], args[2].to_vec(), o).await?
        }
        "getdel" => {
            let old = tx.get(&args[1]).await?;
            if old.is_some() {
                tx.delete(&args[1]);
            }
            value_of(&old)
        }
        "getex" => match parse_set_options(&args[2..], true) {
            Ok(o) => getex(tx, &args[1], o).await?,
            Err(r) => r,
        },
        "mget" => {
            let keys: Vec<Vec<u8>> = args[1..].iter().map(|k| k.to_vec()).collect();
            tx.prefetch(&keys).await?;
            let mut out = Vec::with_capacity(keys.len());
            for k in &keys {
                out.push(value_of(&tx.get(k).await?));
            }
            Reply::Array(out)
        }
        "mset" | "msetnx" => {
            if args.len() % 2 == 0 {
                return Ok(Some(wrong_arity(name)));
            }
            if name == "msetnx" {
                let keys: Vec<Vec<u8>> = args[1..].chunks(2).map(|p| p[0].to_vec()).collect();
                tx.prefetch(&keys).await?;
                for k in &keys {
                    if tx.get(k).await?.is_some() {
                        return Ok(Some(Reply::Int(0)));
                    }
                }
            }
            for pair in args[1..].chunks(2) {
                tx.put(&pair[0], pair[1].to_vec(), 0);
            }
            if name == "mset" { Reply::ok() } else { Reply::Int(1) }
        }
        "incr" => incr_by(tx, &args[1], 1).await?,
        "decr" => incr_by(tx, &args[1], -1).await?,
        "incrby" | "decrby" => match string2ll(&args[2]) {
            None => Reply::err(errors::NOT_INTEGER),
            Some(i64::MIN) if name == "decrby" => Reply::err(errors::DECR_OVERFLOW),
            Some(n) => incr_by(tx, &args[1], if name == "decrby" { -n } else { n }).await?,
        },
        "append" => {
            let old = tx.get(&args[1]).await?;
            let lease = old.as_ref().map_or(0, |e| e.lease);
            let mut value = old.map(|e| e.value).unwrap_or_default();
            value.extend_from_slice(&args[2]);
            let len = value.len() as i64;
            tx.put(&args[1], value, lease);
            Reply::Int(len)
        }
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

/// SET with its options; answers `OK`, or the old value with GET, or nil when NX/XX refused.
async fn set<S: Kv + Lease>(tx: &mut Tx<'_, S>, cmd: &str, key: &[u8], value: Vec<u8>, o: SetOptions) -> StoreResult<Reply> {
    let deadline = match &o.expire {
        Some((unit, raw)) => match deadline(cmd, unit, raw) {
            Ok(d) => Some(d),
            Err(r) => return Ok(r),
        },
        None => None,
    };
    // Only what needs the current value reads it; a plain SET is a blind write.
    let old = if o.nx || o.xx || o.get || o.keepttl { tx.get(key).await? } else { None };
    let refused = (o.nx && old.is_some()) || (o.xx && old.is_none());
    let answer = if o.get { value_of(&old) } else if refused { Reply::Nil } else { Reply::ok() };
    if refused {
        return Ok(answer);
    }
    let lease = match deadline {
        Some(d) if d.expired() => {
            // An absolute time already past: Redis deletes the key instead of setting it.
            tx.delete(key);
            return Ok(answer);
        }
        Some(d) => tx.grant(d.remaining_ms()).await?,
        None if o.keepttl => old.as_ref().map_or(0, |e| e.lease),
        None => 0,
    };
    tx.put(key, value, lease);
    Ok(answer)
}

async fn getex<S: Kv + Lease>(tx: &mut Tx<'_, S>, key: &[u8], o: SetOptions) -> StoreResult<Reply> {
    // Redis looks the key up before it checks the expiry time.
    let Some(old) = tx.get(key).await? else { return Ok(Reply::Nil) };
    let deadline = match &o.expire {
        Some((unit, raw)) => match deadline("getex", unit, raw) {
            Ok(d) => Some(d),
            Err(r) => return Ok(r),
        },
        None => None,
    };
    match deadline {
        Some(d) if d.expired() => tx.delete(key),
        Some(d) => {
            let lease = tx.grant(d.remaining_ms()).await?;
            tx.put(key, old.value.clone(), lease);
        }
        None if o.persist && old.lease != 0 => tx.put(key, old.value.clone(), 0),
        None => {}
    }
    Ok(Reply::bulk(&old.value))
}

async fn incr_by<S: Kv + Lease>(tx: &mut Tx<'_, S>, key: &[u8], by: i64) -> StoreResult<Reply> {
    let old = tx.get(key).await?;
    let (cur, lease) = match &old {
        None => (0, 0),
        Some(e) => match string2ll(&e.value) {
            Some(v) => (v, e.lease),
            None => return Ok(Reply::err(errors::NOT_INTEGER)),
        },
    };
    let Some(new) = cur.checked_add(by) else { return Ok(Reply::err(errors::OVERFLOW)) };
    // INCR keeps the key's TTL, as in Redis: the same lease.
    tx.put(key, new.to_string().into_bytes(), lease);
    Ok(Reply::Int(new))
}
