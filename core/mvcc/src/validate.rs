//! Checks on a request's shape, made before it is proposed: they need no state, so a bad
//! request never reaches the Raft log. The checks that need state run at apply time.

use std::collections::BTreeSet;

use cairn_api::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, StoreError, TxnRequest};

use crate::read::KeySpan;

/// Request limits (etcd's flags of the same meaning).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-txn-ops`: most compares, success ops or failure ops in one txn.
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_txn_ops: 128 }
    }
}

pub fn check_range(req: &RangeRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(req: &PutRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(req: &DeleteRangeRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

/// Op counts, every op's own checks, and etcd's rule that one branch may not change a key
/// twice (two puts, or a put inside a deleted range; a nested txn's two branches may overlap).
pub fn check_txn(req: &TxnRequest, limits: &Limits) -> Result<(), StoreError> {
    check_txn_shape(req, limits)?;
    changed_keys(&req.success)?;
    changed_keys(&req.failure)?;
    Ok(())
}

fn check_txn_shape(req: &TxnRequest, limits: &Limits) -> Result<(), StoreError> {
    let max = limits.max_txn_ops;
    if req.compare.len() > max || req.success.len() > max || req.failure.len() > max {
        return Err(StoreError::TooManyOps);
    }
    for op in req.success.iter().chain(&req.failure) {
        match op {
            RequestOp::Range(r) => check_range(r)?,
            RequestOp::Put(r) => check_put(r)?,
            RequestOp::DeleteRange(r) => check_delete(r)?,
            RequestOp::Txn(r) => check_txn_shape(r, limits)?,
        }
    }
    Ok(())
}

/// The keys put and the ranges deleted by one branch; an error if they collide.
fn changed_keys(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>), StoreError> {
    let mut puts = BTreeSet::new();
    let mut dels = Vec::new();
    for op in ops {
        match op {
            RequestOp::Put(p) => {
                if !puts.insert(p.key.clone()) {
                    return Err(StoreError::DuplicateKey);
                }
            }
            RequestOp::DeleteRange(d) => dels.push((d.key.clone(), d.range_end.clone())),
            RequestOp::Txn(t) => {
                let (sp, sd) = changed_keys(&t.success)?;
                let (fp, fd) = changed_keys(&t.failure)?;
                for k in sp.union(&fp) {
                    if puts.contains(k) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
                puts.extend(sp.into_iter().chain(fp));
                dels.extend(sd.into_iter().chain(fd));
            }
            RequestOp::Range(_) => {}
        }
    }
    for (key, end) in &dels {
        let span = KeySpan::new(key, end);
        if puts.iter().any(|p| span.contains(p)) {
            return Err(StoreError::DuplicateKey);
        }
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutRequest { key: k.into(), ..Default::default() })
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest { key: k.into(), range_end: end.into(), ..Default::default() })
    }

    #[test]
    fn duplicate_put_in_one_branch_is_refused() {
        let t = TxnRequest { success: vec![put("a"), put("a")], ..Default::default() };
        assert_eq!(check_txn(&t, &Limits::default()), Err(StoreError::DuplicateKey));
    }

    #[test]
    fn same_key_in_success_and_failure_is_allowed() {
        let t = TxnRequest { success: vec![put("a")], failure: vec![put("a")], ..Default::default() };
        assert_eq!(check_txn(&t, &Limits::default()), Ok(()));
    }

    #[test]
    fn put_inside_deleted_range_is_refused() {
        let t = TxnRequest { success: vec![del("a", "c"), put("b")], ..Default::default() };
        assert_eq!(check_txn(&t, &Limits::default()), Err(StoreError::DuplicateKey));
        let ok = TxnRequest { success: vec![del("a", "c"), put("c")], ..Default::default() };
        assert_eq!(check_txn(&ok, &Limits::default()), Ok(()));
    }

    #[test]
    fn nested_branches_may_overlap_but_not_the_outer_put() {
        let inner = TxnRequest { success: vec![put("x")], failure: vec![put("x")], ..Default::default() };
        let ok = TxnRequest { success: vec![RequestOp::Txn(inner.clone())], ..Default::default() };
        assert_eq!(check_txn(&ok, &Limits::default()), Ok(()));
        let bad = TxnRequest { success: vec![put("x"), RequestOp::Txn(inner)], ..Default::default() };
        assert_eq!(check_txn(&bad, &Limits::default()), Err(StoreError::DuplicateKey));
    }

    #[test]
    fn too_many_ops_per_list() {
        let t = TxnRequest { success: (0..129).map(|i| put(&format!("k{i}"))).collect(), ..Default::default() };
        assert_eq!(check_txn(&t, &Limits::default()), Err(StoreError::TooManyOps));
        let t = TxnRequest { success: (0..128).map(|i| put(&format!("k{i}"))).collect(), ..Default::default() };
        assert_eq!(check_txn(&t, &Limits::default()), Ok(()));
    }

    #[test]
    fn empty_keys_and_ignore_flags() {
        assert_eq!(check_put(&PutRequest::default()), Err(StoreError::EmptyKey));
        let p = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(StoreError::ValueProvided));
        let p = PutRequest { key: b"k".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(StoreError::LeaseProvided));
        assert_eq!(check_range(&RangeRequest::default()), Err(StoreError::EmptyKey));
    }
}
