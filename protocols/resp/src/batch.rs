//! Group commit for data commands: one worker runs what every connection queued meanwhile as
//! one [`Tx`], so N concurrent commands cost one read barrier and one Raft entry, not N.
//!
//! Why: each core request pays a fixed price (proposal, apply, response) that dwarfs the price
//! of one more key in a txn, and many clients of one hot key (INCR on a counter) would
//! otherwise keep failing each other's optimistic compares. Run in queue order inside one tx,
//! they cannot conflict with each other; only writers outside this listener (etcd clients,
//! another member) can make a group retry. Each command still takes effect between its request
//! and its reply (the group's commit lies in between), so the group is as linearizable as the
//! commands run one by one. A connection's pipelined commands arrive as one job and stay
//! together, in order. When the store refuses a group as a whole (too many keys, too large),
//! its commands run one by one, so only the offending command gets the error.

use std::collections::VecDeque;

use bytes::Bytes;
use cairn_api::{Kv, Lease, ReadConsistency, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

use crate::errors::{store_error, unknown_command};
use crate::reply::Reply;
use crate::tx::{Commit, Tx};
use crate::{expiry, keys, strings, table};

/// Attempts of a command whose reads keep changing under it before giving up.
const MAX_ATTEMPTS: usize = 64;

/// Data commands of one connection, answered together.
pub struct Job {
    pub cmds: Vec<Vec<Bytes>>,
    pub consistency: ReadConsistency,
    pub done: oneshot::Sender<Vec<Reply>>,
}

impl Job {
    fn keys(&self) -> usize {
        self.cmds.iter().map(|c| key_list(c).len().max(1)).sum()
    }
}

fn name_of(args: &[Bytes]) -> String {
    String::from_utf8_lossy(&args[0]).to_ascii_lowercase()
}

fn key_list(args: &[Bytes]) -> Vec<Vec<u8>> {
    table::lookup(&name_of(args)).map(|s| s.keys(args).into_iter().map(<[u8]>::to_vec).collect()).unwrap_or_default()
}

/// Data commands: they run in a [`Tx`].
pub fn is_data(name: &str) -> bool {
    matches!(
        name,
        "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "mget" | "mset" | "msetnx"
            | "incr" | "decr" | "incrby" | "decrby" | "append" | "strlen" | "del" | "unlink" | "exists" | "type"
            | "expire" | "pexpire" | "expireat" | "pexpireat" | "ttl" | "pttl" | "persist"
    )
}

/// One data command against `tx`.
pub async fn run_data<S: Kv + Lease>(tx: &mut Tx<'_, S>, name: &str, args: &[Bytes]) -> StoreResult<Reply> {
    if let Some(r) = strings::run(tx, name, args).await? {
        return Ok(r);
    }
    if let Some(r) = expiry::run(tx, name, args).await? {
        return Ok(r);
    }
    if let Some(r) = keys::run(tx, name, args).await? {
        return Ok(r);
    }
    Ok(unknown_command(args))
}

/// Starts the worker; jobs sent to the answer are run until every sender is dropped.
pub fn spawn<S: Kv + Lease>(store: S, max_txn_ops: usize) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(worker(store, max_txn_ops.max(1), rx));
    tx
}

async fn worker<S: Kv + Lease>(store: S, max_keys: usize, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match pending.pop_front() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let consistency = first.consistency;
        let mut keys = first.keys();
        let mut jobs = vec![first];
        loop {
            let next = match pending.pop_front() {
                Some(j) => j,
                None => match rx.try_recv() {
                    Ok(j) => j,
                    Err(_) => break,
                },
            };
            let k = next.keys();
            if next.consistency != consistency || keys + k > max_keys {
                pending.push_front(next);
                break;
            }
            keys += k;
            jobs.push(next);
        }
        let cmds: Vec<Vec<Bytes>> = jobs.iter().flat_map(|j| j.cmds.iter().cloned()).collect();
        let n = cmds.len();
        // In a task of its own: a bug that panics fails this group's commands, not the worker.
        let group = tokio::spawn({
            let store = store.clone();
            async move {
                let refs: Vec<&[Bytes]> = cmds.iter().map(Vec::as_slice).collect();
                run_group(&store, consistency, max_keys, &refs).await
            }
        });
        let replies = match group.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("a RESP command group failed: {e}");
                vec![Reply::err("ERR internal error"); n]
            }
        };
        let mut replies = replies.into_iter();
        for job in jobs {
            let mine: Vec<Reply> = replies.by_ref().take(job.cmds.len()).collect();
            let _ = job.done.send(mine);
        }
    }
}

/// Runs `cmds` in order as one tx (see the module doc); one reply per command.
pub async fn run_group<S: Kv + Lease>(store: &S, consistency: ReadConsistency, max_ops: usize, cmds: &[&[Bytes]]) -> Vec<Reply> {
    if cmds.len() == 1 {
        return vec![run_one(store, consistency, max_ops, cmds[0]).await];
    }
    let keys: Vec<Vec<u8>> = cmds.iter().flat_map(|c| key_list(c)).collect();
    'attempt: for _ in 0..MAX_ATTEMPTS {
        let mut tx = Tx::new(store, consistency, max_ops);
        if tx.prefetch(&keys).await.is_err() {
            tx.abort().await;
            break;
        }
        let mut replies = Vec::with_capacity(cmds.len());
        for args in cmds {
            match run_data(&mut tx, &name_of(args), args).await {
                Ok(r) => replies.push(r),
                Err(_) => {
                    tx.abort().await;
                    break 'attempt;
                }
            }
        }
        match tx.commit().await {
            Ok(Commit::Done) => return replies,
            Ok(Commit::Conflict) => continue,
            Err(_) => break,
        }
    }
    let mut replies = Vec::with_capacity(cmds.len());
    for args in cmds {
        replies.push(run_one(store, consistency, max_ops, args).await);
    }
    replies
}

/// One data command in its own tx, retried while a key it read changes under it.
pub async fn run_one<S: Kv + Lease>(store: &S, consistency: ReadConsistency, max_ops: usize, args: &[Bytes]) -> Reply {
    let name = name_of(args);
    for _ in 0..MAX_ATTEMPTS {
        let mut tx = Tx::new(store, consistency, max_ops);
        let reply = match run_data(&mut tx, &name, args).await {
            Ok(r) => r,
            Err(e) => {
                tx.abort().await;
                return store_error(&e);
            }
        };
        if reply.is_error() {
            tx.abort().await;
            return reply;
        }
        match tx.commit().await {
            Ok(Commit::Done) => return reply,
            Ok(Commit::Conflict) => continue,
            Err(e) => return store_error(&e),
        }
    }
    store_error(&StoreError::Timeout)
}
