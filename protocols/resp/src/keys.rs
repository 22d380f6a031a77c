//! Generic key commands: DEL, UNLINK, EXISTS, TYPE. Every Cairn value is a Redis string, so TYPE
//! answers `string` or `none`.

use bytes::Bytes;
use cairn_api::{Kv, Lease, StoreResult};

use crate::reply::Reply;
use crate::tx::Tx;

/// `None` when `name` is none of these commands.
pub async fn run<S: Kv + Lease>(tx: &mut Tx<'_, S>, name: &str, args: &[Bytes]) -> StoreResult<Option<Reply>> {
    let reply = match name {
        "del" | "unlink" => {
            let keys: Vec<Vec<u8>> = args[1..].iter().map(|k| k.to_vec()).collect();
            tx.prefetch(&keys).await?;
            let mut deleted = 0;
            for k in &keys {
                // Read through the tx so `DEL a a` counts `a` once, as Redis does.
                if tx.get(k).await?.is_some() {
                    tx.delete(k);
                    deleted += 1;
                }
            }
            Reply::Int(deleted)
        }
        "exists" => {
            let keys: Vec<Vec<u8>> = args[1..].iter().map(|k| k.to_vec()).collect();
            tx.prefetch(&keys).await?;
            let mut n = 0;
            for k in &keys {
                n += i64::from(tx.get(k).await?.is_some());
            }
            Reply::Int(n)
        }
        "type" => Reply::Simple(if tx.get(&args[1]).await?.is_some() { "string" } else { "none" }.into()),
        _ => return Ok(None),
    };
    Ok(Some(reply))
}
