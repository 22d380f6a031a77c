//! Expiry commands (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, PERSIST) over leases.
//!
//! A Redis TTL is the key's lease: setting one grants a new lease (TTL rounded up to whole
//! seconds, at least the core's minimum TTL) and puts the key on it; the lease the key had is
//! revoked after the commit when no key is left on it. TTL and PTTL read the lease's remaining
//! time. Since the lease's deadline is replicated state, expiry survives restarts and failover.

use bytes::Bytes;
use cairn_api::{Kv, Lease, StoreResult};

use crate::errors::{self, invalid_expire};
use crate::reply::Reply;
use crate::request::string2ll;
use crate::tx::Tx;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An absolute expiry time in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub i64);

impl Deadline {
    pub fn remaining_ms(self) -> i64 {
        self.0.saturating_sub(now_ms())
    }

    /// Already past: the key is deleted rather than given a lease.
    pub fn expired(self) -> bool {
        self.remaining_ms() <= 0
    }
}

/// The key's remaining time in ms: `None` for a missing key, `Some(-1)` for no expiry.
async fn remaining<S: Kv + Lease>(tx: &mut Tx<'_, S>, key: &[u8]) -> StoreResult<Option<i64>> {
    let Some(e) = tx.get(key).await? else { return Ok(None) };
    if e.lease == 0 {
        return Ok(Some(-1));
    }
    let ms = tx.lease_ms(e.lease).await?;
    // A lease gone but its deletion not yet applied: the key is as good as expired.
    Ok(if ms < 0 { None } else { Some(ms) })
}

#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_flags(args: &[Bytes]) -> Result<ExpireFlags, Reply> {
    let mut f = ExpireFlags::default();
    for a in args {
        match a.to_ascii_uppercase().as_slice() {
            b"NX" => f.nx = true,
            b"XX" => f.xx = true,
            b"GT" => f.gt = true,
            b"LT" => f.lt = true,
            _ => return Err(Reply::err(format!("ERR Unsupported option {}", String::from_utf8_lossy(a)))),
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(Reply::err("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if f.gt && f.lt {
        return Err(Reply::err("ERR GT and LT options at the same time are not compatible"));
    }
    Ok(f)
}

/// EXPIRE and friends, TTL, PTTL, PERSIST. `None` when `name` is none of them.
pub async fn run<S: Kv + Lease>(tx: &mut Tx<'_, S>, name: &str, args: &[Bytes]) -> StoreResult<Option<Reply>> {
    let reply = match name {
        "expire" | "pexpire" | "expireat" | "pexpireat" => expire(tx, name, args).await?,
        "ttl" | "pttl" => match remaining(tx, &args[1]).await? {
            None => Reply::Int(-2),
            Some(-1) => Reply::Int(-1),
            Some(ms) if name == "pttl" => Reply::Int(ms),
            Some(ms) => Reply::Int((ms + 500) / 1000),
        },
        "persist" => match tx.get(&args[1]).await? {
            Some(e) if e.lease != 0 => {
                tx.put(&args[1], e.value, 0);
                Reply::Int(1)
            }
            _ => Reply::Int(0),
        },
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

async fn expire<S: Kv + Lease>(tx: &mut Tx<'_, S>, name: &str, args: &[Bytes]) -> StoreResult<Reply> {
    let flags = match parse_flags(&args[3..]) {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let Some(n) = string2ll(&args[2]) else { return Ok(Reply::err(errors::NOT_INTEGER)) };
    let seconds = name == "expire" || name == "expireat";
    let base = if name.ends_with("at") { 0 } else { now_ms() };
    let when = if seconds { n.checked_mul(1000) } else { Some(n) }.and_then(|ms| ms.checked_add(base));
    let Some(when) = when else { return Ok(invalid_expire(name)) };
    let key = &args[1];
    let Some(cur) = remaining(tx, key).await? else { return Ok(Reply::Int(0)) };
    let new_ms = when.saturating_sub(now_ms());
    // A key without TTL counts as an infinite TTL for GT and LT.
    let allowed = if flags.nx {
        cur == -1
    } else {
        (!flags.xx || cur != -1)
            && (!flags.gt || (cur != -1 && new_ms > cur))
            && (!flags.lt || cur == -1 || new_ms < cur)
    };
    if !allowed {
        return Ok(Reply::Int(0));
    }
    let Some(entry) = tx.get(key).await? else { return Ok(Reply::Int(0)) };
    if new_ms <= 0 {
        tx.delete(key);
    } else {
        let lease = tx.grant(new_ms).await?;
        tx.put(key, entry.value, lease);
    }
    Ok(Reply::Int(1))
}
