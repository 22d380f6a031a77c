//! Every Redis command as one optimistic etcd txn: read, decide, write if nothing changed.
//!
//! A command (or a whole MULTI/EXEC block) runs against a [`Tx`]: its reads go to the store
//! (linearizable by default) and are remembered with their `mod_revision`; its writes are kept
//! in memory, one final write per key, and later reads of the same key see them. [`Tx::commit`]
//! sends the writes as one `Txn` whose compares require every key read to still have the
//! `mod_revision` seen (0 for a missing key), so the command takes effect atomically at one
//! revision or not at all; on a conflict the caller runs the command again on a fresh `Tx`.
//! Blind writes (SET, DEL, MSET) read nothing and so compare nothing. A command that wrote
//! nothing commits nothing: its linearizable reads already made its answer linearizable.
//!
//! Expiry is a lease per key: a TTL write grants a lease before the commit (revoked again if
//! the commit does not happen), and after a commit a lease that a write took off a key is
//! revoked when no key is left on it, so leases do not leak (see docs/keyspace.md).

use std::collections::HashMap;

use cairn_api::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, Kv, Lease, LeaseGrantRequest, LeaseId, PutRequest,
    RangeRequest, ReadConsistency, RequestOp, ResponseOp, StoreError, StoreResult, TxnRequest,
};

/// A key as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub lease: LeaseId,
    pub mod_revision: i64,
}

/// The final write of a key.
#[derive(Debug, Clone)]
enum Write {
    Put { value: Vec<u8>, lease: LeaseId },
    Delete,
}

/// Outcome of [`Tx::commit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// A key read changed meanwhile: run the command again.
    Conflict,
}

/// One command's (or one EXEC's) reads and writes.
pub struct Tx<'a, S> {
    store: &'a S,
    consistency: ReadConsistency,
    max_txn_ops: usize,
    /// Keys read from the store: what was seen (`None`: missing).
    reads: HashMap<Vec<u8>, Option<Entry>>,
    /// The keys a command actually looked at: only these are compared at commit (a prefetched
    /// key that only gets a blind write must not make the write conflict).
    consulted: std::collections::HashSet<Vec<u8>>,
    /// Final writes, in first-write order.
    writes: Vec<(Vec<u8>, Write)>,
    /// Extra guards (WATCH): key and the mod_revision it must still have.
    guards: Vec<(Vec<u8>, i64)>,
    /// Leases this tx's writes will use, granted (all at once) only when the tx commits.
    to_grant: Vec<(LeaseId, i64)>,
    /// Leases granted for this tx's writes.
    granted: Vec<LeaseId>,
}

impl<'a, S: Kv + Lease> Tx<'a, S> {
    pub fn new(store: &'a S, consistency: ReadConsistency, max_txn_ops: usize) -> Self {
        Tx {
            store,
            consistency,
            max_txn_ops,
            reads: HashMap::new(),
            consulted: std::collections::HashSet::new(),
            writes: Vec::new(),
            guards: Vec::new(),
            to_grant: Vec::new(),
            granted: Vec::new(),
        }
    }

    fn written(&self, key: &[u8]) -> Option<&Write> {
        self.writes.iter().rev().find(|(k, _)| k == key).map(|(_, w)| w)
    }

    /// The key as this tx sees it: its own write, or the store's value.
    pub async fn get(&mut self, key: &[u8]) -> StoreResult<Option<Entry>> {
        if let Some(w) = self.written(key) {
            return Ok(match w {
                Write::Put { value, lease } => Some(Entry { value: value.clone(), lease: *lease, mod_revision: -1 }),
                Write::Delete => None,
            });
        }
        if !self.reads.contains_key(key) {
            self.prefetch(&[key.to_vec()]).await?;
        }
        self.consulted.insert(key.to_vec());
        Ok(self.reads.get(key).cloned().flatten())
    }

    /// Reads every key not read yet, in read-only txns (one snapshot per `--max-txn-ops` keys).
    pub async fn prefetch(&mut self, keys: &[Vec<u8>]) -> StoreResult<()> {
        let mut todo: Vec<Vec<u8>> = Vec::new();
        for k in keys {
            if !self.reads.contains_key(k) && self.written(k).is_none() && !todo.contains(k) {
                todo.push(k.clone());
            }
        }
        for chunk in todo.chunks(self.max_txn_ops.max(1)) {
            let found = if chunk.len() == 1 {
                let resp = self
                    .store
                    .range(RangeRequest { key: chunk[0].clone(), consistency: self.consistency, ..Default::default() })
                    .await?;
                vec![resp.kvs.into_iter().next()]
            } else {
                let ops = chunk
                    .iter()
                    .map(|k| RequestOp::Range(RangeRequest { key: k.clone(), consistency: self.consistency, ..Default::default() }))
                    .collect();
                let resp = self.store.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }).await?;
                resp.responses
                    .into_iter()
                    .map(|r| match r {
                        ResponseOp::Range(r) => r.kvs.into_iter().next(),
                        _ => None,
                    })
                    .collect()
            };
            for (k, kv) in chunk.iter().zip(found) {
                let entry = kv.map(|kv| Entry { value: kv.value, lease: kv.lease, mod_revision: kv.mod_revision });
                self.reads.insert(k.clone(), entry);
            }
        }
        Ok(())
    }

    fn push_write(&mut self, key: &[u8], w: Write) {
        self.writes.retain(|(k, _)| k != key);
        self.writes.push((key.to_vec(), w));
    }

    /// Sets `key` to `value` on `lease` (0: no expiry).
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: LeaseId) {
        self.push_write(key, Write::Put { value, lease });
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.push_write(key, Write::Delete);
    }

    /// Requires `key` to still be at `mod_revision` when the tx commits (WATCH).
    pub fn guard(&mut self, key: Vec<u8>, mod_revision: i64) {
        self.guards.push((key, mod_revision));
    }

    /// A new lease that ends in `ms` milliseconds, rounded up to whole seconds (leases count in
    /// seconds; the core raises a TTL below its minimum to that minimum). Its id is chosen here
    /// and it is granted when the tx commits, together with the tx's other new leases, so a
    /// group of SET ... EX costs one round of grants and none when nothing is written.
    pub async fn grant(&mut self, ms: i64) -> StoreResult<LeaseId> {
        // Beyond the largest lease TTL (about 285 years) the key gets the largest lease.
        let ttl = (ms.saturating_add(999) / 1000).clamp(1, cairn_api::MAX_LEASE_TTL);
        let id = loop {
            // A random positive id: a clash with an existing lease fails the grant, and the
            // command is run again with another id.
            let id = (rand::random::<u64>() >> 1) as i64;
            if id != 0 {
                break id;
            }
        };
        self.to_grant.push((id, ttl));
        Ok(id)
    }

    /// Grants the leases the writes use.
    async fn grant_pending(&mut self) -> StoreResult<()> {
        let used: Vec<LeaseId> = self
            .writes
            .iter()
            .filter_map(|(_, w)| match w {
                Write::Put { lease, .. } => Some(*lease),
                Write::Delete => None,
            })
            .collect();
        let wanted: Vec<(LeaseId, i64)> = std::mem::take(&mut self.to_grant).into_iter().filter(|(id, _)| used.contains(id)).collect();
        let store = self.store;
        let results = futures::future::join_all(
            wanted.iter().map(|(id, ttl)| store.lease_grant(LeaseGrantRequest { ttl: *ttl, id: *id })),
        )
        .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(g) => self.granted.push(g.id),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => {
                self.release_granted(&[]).await;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Milliseconds left on `lease` (-1: the lease is gone).
    pub async fn lease_ms(&self, lease: LeaseId) -> StoreResult<i64> {
        let r = self.store.lease_time_to_live(lease, false).await?;
        Ok(if r.ttl < 0 { -1 } else { r.remaining_ms })
    }

    /// Sends the writes; see the module doc.
    pub async fn commit(mut self) -> StoreResult<Commit> {
        if self.writes.is_empty() && self.guards.is_empty() {
            return Ok(Commit::Done);
        }
        match self.grant_pending().await {
            Ok(()) => {}
            // An id clash: run the command again (with new ids).
            Err(StoreError::LeaseExists) => return Ok(Commit::Conflict),
            Err(e) => return Err(e),
        }
        let mut compare: Vec<Compare> = self
            .reads
            .iter()
            .filter(|(k, _)| self.consulted.contains(*k))
            .map(|(k, e)| cmp_mod(k.clone(), e.as_ref().map_or(0, |e| e.mod_revision)))
            .collect();
        compare.extend(self.guards.iter().map(|(k, rev)| cmp_mod(k.clone(), *rev)));
        let ops: Vec<RequestOp> = self
            .writes
            .iter()
            .map(|(k, w)| match w {
                Write::Put { value, lease } => {
                    RequestOp::Put(PutRequest { key: k.clone(), value: value.clone(), lease: *lease, prev_kv: true, ..Default::default() })
                }
                Write::Delete => RequestOp::DeleteRange(DeleteRangeRequest { key: k.clone(), range_end: vec![], prev_kv: true }),
            })
            .collect();
        // Blind writes over the txn limit go in several txns (not atomic together; documented).
        let chunks: Vec<Vec<RequestOp>> = if compare.is_empty() && ops.len() > self.max_txn_ops {
            ops.chunks(self.max_txn_ops.max(1)).map(<[RequestOp]>::to_vec).collect()
        } else {
            vec![ops]
        };
        let mut old_leases: Vec<LeaseId> = Vec::new();
        let mut compare = Some(compare);
        for ops in chunks {
            let req = TxnRequest { compare: compare.take().unwrap_or_default(), success: ops, failure: vec![] };
            let resp = match self.store.txn(req).await {
                Ok(r) => r,
                Err(e) => {
                    self.release_granted(&[]).await;
                    return Err(e);
                }
            };
            if !resp.succeeded {
                self.release_granted(&[]).await;
                return Ok(Commit::Conflict);
            }
            for r in resp.responses {
                match r {
                    ResponseOp::Put(p) => old_leases.extend(p.prev_kv.map(|kv| kv.lease)),
                    ResponseOp::DeleteRange(d) => old_leases.extend(d.prev_kvs.into_iter().map(|kv| kv.lease)),
                    _ => {}
                }
            }
        }
        let used: Vec<LeaseId> = self
            .writes
            .iter()
            .filter_map(|(_, w)| match w {
                Write::Put { lease, .. } if *lease != 0 => Some(*lease),
                _ => None,
            })
            .collect();
        self.release_granted(&used).await;
        old_leases.retain(|l| *l != 0 && !used.contains(l));
        old_leases.sort_unstable();
        old_leases.dedup();
        let store = self.store;
        futures::future::join_all(old_leases.into_iter().map(|lease| revoke_if_unused(store, lease))).await;
        Ok(Commit::Done)
    }

    /// Gives up the tx: nothing is written, leases granted for it are revoked.
    pub async fn abort(mut self) {
        self.release_granted(&[]).await;
    }

    /// Revokes the leases this tx granted that `used` does not name.
    async fn release_granted(&mut self, used: &[LeaseId]) {
        let store = self.store;
        let unused: Vec<LeaseId> = std::mem::take(&mut self.granted).into_iter().filter(|l| !used.contains(l)).collect();
        futures::future::join_all(unused.into_iter().map(|l| store.lease_revoke(l))).await;
    }
}

fn cmp_mod(key: Vec<u8>, rev: i64) -> Compare {
    Compare { key, range_end: vec![], result: CompareResult::Equal, target: CompareTarget::ModRevision(rev) }
}

/// Revokes `lease` when no key is attached to it any more (a lease a Redis write took off its
/// key). Best effort: a failure leaves the lease to expire on its own.
pub async fn revoke_if_unused<S: Lease>(store: &S, lease: LeaseId) {
    match store.lease_time_to_live(lease, true).await {
        Ok(r) if r.ttl >= 0 && r.keys.is_empty() => {
            if let Err(e) = store.lease_revoke(lease).await {
                if e != StoreError::LeaseNotFound {
                    tracing::debug!("revoking unused lease {lease:x}: {e}");
                }
            }
        }
        _ => {}
    }
}
