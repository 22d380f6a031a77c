//! The waiting queue under etcd's server-side lock and election: contenders create
//! `<name>/<lease id in hex>` on their lease and are served in create-revision order. Built on
//! the core's KV and Watch only.

use cairn_api::{
    prefix_range_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest,
    RequestOp, ResponseHeader, ResponseOp, SortOrder, SortTarget, StoreError, TxnRequest,
    WatchRequest,
};
use futures::StreamExt;

/// The queue prefix of lock or election `name`.
pub fn queue_prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// Joins the queue of `prefix` with `lease`: creates the contender key unless this lease
/// already has one (etcd's rule: locking twice with one lease is the same contender). Returns
/// the key as it now stands.
pub async fn join<S: cairn_api::Kv>(store: &S, prefix: &[u8], lease: i64, value: &[u8]) -> Result<(KeyValue, ResponseHeader), StoreError> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    let get = RequestOp::Range(RangeRequest { key: key.clone(), ..Default::default() });
    let txn = TxnRequest {
        compare: vec![Compare { key: key.clone(), range_end: vec![], result: CompareResult::Equal, target: CompareTarget::CreateRevision(0) }],
        success: vec![RequestOp::Put(PutRequest { key: key.clone(), value: value.to_vec(), lease, ..Default::default() }), get.clone()],
        failure: vec![get],
    };
    let resp = store.txn(txn).await?;
    let kv = match resp.responses.last() {
        Some(ResponseOp::Range(r)) => r.kvs.first().cloned(),
        _ => None,
    };
    let kv = kv.ok_or_else(|| StoreError::Internal("contender key vanished".into()))?;
    Ok((kv, resp.header))
}

/// Waits until no key of the queue was created before `my_revision`.
pub async fn wait_for_turn<S: cairn_api::Kv + cairn_api::Watch>(store: &S, prefix: &[u8], my_revision: i64) -> Result<ResponseHeader, StoreError> {
    loop {
        let ahead = store
            .range(RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_range_end(prefix),
                max_create_revision: my_revision - 1,
                sort_order: SortOrder::Descend,
                sort_target: SortTarget::Create,
                limit: 1,
                ..Default::default()
            })
            .await?;
        let Some(last) = ahead.kvs.first() else { return Ok(ahead.header) };
        // Wait for the nearest contender ahead to go; then look again.
        let (_, mut events) = store
            .watch(WatchRequest {
                key: last.key.clone(),
                start_revision: ahead.header.revision + 1,
                no_put: true,
                ..Default::default()
            })
            .await?;
        match events.next().await {
            Some(_) => continue,
            None => return Err(StoreError::Stopped),
        }
    }
}

/// Deletes `key` (leaving the queue); `Ok` whether or not it still existed.
pub async fn leave<S: cairn_api::Kv>(store: &S, key: &[u8]) -> Result<ResponseHeader, StoreError> {
    Ok(store.delete_range(DeleteRangeRequest { key: key.to_vec(), ..Default::default() }).await?.header)
}

/// Removes a contender whose waiting was abandoned (the client went away), in the background.
pub struct LeaveOnDrop<S: cairn_api::Kv> {
    pub store: S,
    pub key: Option<Vec<u8>>,
}

impl<S: cairn_api::Kv> Drop for LeaveOnDrop<S> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = leave(&store, &key).await;
            });
        }
    }
}
