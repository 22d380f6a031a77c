//! Protobuf messages <-> `cairn_api` types. Requests that use values outside etcd's enums are
//! refused here with etcd's error for them.

use cairn_api as api;
use cairn_api::StoreError;

use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::mvccpb;

pub fn header(h: api::ResponseHeader) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { cluster_id: h.cluster_id, member_id: h.member_id, revision: h.revision, raft_term: h.raft_term })
}

pub fn key_value(kv: api::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn range_request(r: pb::RangeRequest) -> Result<api::RangeRequest, StoreError> {
    let sort_order = match SortOrder::try_from(r.sort_order).map_err(|_| StoreError::InvalidSortOption)? {
        SortOrder::None => api::SortOrder::None,
        SortOrder::Ascend => api::SortOrder::Ascend,
        SortOrder::Descend => api::SortOrder::Descend,
    };
    let sort_target = match SortTarget::try_from(r.sort_target).map_err(|_| StoreError::InvalidSortOption)? {
        SortTarget::Key => api::SortTarget::Key,
        SortTarget::Version => api::SortTarget::Version,
        SortTarget::Create => api::SortTarget::Create,
        SortTarget::Mod => api::SortTarget::Mod,
        SortTarget::Value => api::SortTarget::Value,
    };
    Ok(api::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        consistency: if r.serializable { api::ReadConsistency::Serializable } else { api::ReadConsistency::Linearizable },
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn range_response(r: api::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header(r.header),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_request(r: pb::PutRequest) -> api::PutRequest {
    api::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_response(r: api::PutResponse) -> pb::PutResponse {
    pb::PutResponse { header: header(r.header), prev_kv: r.prev_kv.map(key_value) }
}

pub fn delete_request(r: pb::DeleteRangeRequest) -> api::DeleteRangeRequest {
    api::DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

pub fn delete_response(r: api::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header(r.header),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value).collect(),
    }
}

fn compare(c: pb::Compare) -> Result<api::Compare, StoreError> {
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => api::CompareResult::Equal,
        Ok(CompareResult::Greater) => api::CompareResult::Greater,
        Ok(CompareResult::Less) => api::CompareResult::Less,
        Ok(CompareResult::NotEqual) => api::CompareResult::NotEqual,
        Err(_) => return Err(StoreError::InvalidCompare),
    };
    // etcd reads the operand that matches the target; a missing operand compares as zero.
    let u = c.target_union;
    let target = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Version) => api::CompareTarget::Version(match u {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Create) => api::CompareTarget::CreateRevision(match u {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => api::CompareTarget::ModRevision(match u {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Value) => api::CompareTarget::Value(match u {
            Some(TargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        Ok(CompareTarget::Lease) => api::CompareTarget::Lease(match u {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => return Err(StoreError::InvalidCompare),
    };
    Ok(api::Compare { key: c.key, range_end: c.range_end, result, target })
}

fn request_op(op: pb::RequestOp) -> Result<api::RequestOp, StoreError> {
    use pb::request_op::Request;
    match op.request {
        Some(Request::RequestRange(r)) => Ok(api::RequestOp::Range(range_request(r)?)),
        Some(Request::RequestPut(r)) => Ok(api::RequestOp::Put(put_request(r))),
        Some(Request::RequestDeleteRange(r)) => Ok(api::RequestOp::DeleteRange(delete_request(r))),
        Some(Request::RequestTxn(r)) => Ok(api::RequestOp::Txn(txn_request(r)?)),
        None => Err(StoreError::InvalidCompare),
    }
}

pub fn txn_request(r: pb::TxnRequest) -> Result<api::TxnRequest, StoreError> {
    Ok(api::TxnRequest {
        compare: r.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: r.success.into_iter().map(request_op).collect::<Result<_, _>>()?,
        failure: r.failure.into_iter().map(request_op).collect::<Result<_, _>>()?,
    })
}

fn response_op(op: api::ResponseOp) -> pb::ResponseOp {
    use pb::response_op::Response;
    let response = match op {
        api::ResponseOp::Range(r) => Response::ResponseRange(range_response(r)),
        api::ResponseOp::Put(r) => Response::ResponsePut(put_response(r)),
        api::ResponseOp::DeleteRange(r) => Response::ResponseDeleteRange(delete_response(r)),
        api::ResponseOp::Txn(r) => Response::ResponseTxn(txn_response(r)),
    };
    pb::ResponseOp { response: Some(response) }
}

pub fn txn_response(r: api::TxnResponse) -> pb::TxnResponse {
    pb::TxnResponse {
        header: header(r.header),
        succeeded: r.succeeded,
        responses: r.responses.into_iter().map(response_op).collect(),
    }
}

pub fn member(m: api::Member) -> pb::Member {
    pb::Member { id: m.id, name: m.name, peer_ur_ls: m.peer_urls, client_ur_ls: m.client_urls, is_learner: m.is_learner }
}

// The other direction: core requests as etcd messages and etcd answers as core responses, for
// serving the core API over a member's gRPC (the proxy). A message converted one way and back
// is the message it was, for every field a Cairn member sets.

pub fn api_header(h: Option<pb::ResponseHeader>) -> api::ResponseHeader {
    let h = h.unwrap_or_default();
    api::ResponseHeader { cluster_id: h.cluster_id, member_id: h.member_id, revision: h.revision, raft_term: h.raft_term }
}

pub fn api_key_value(kv: mvccpb::KeyValue) -> api::KeyValue {
    api::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn pb_range_request(r: api::RangeRequest) -> pb::RangeRequest {
    pb::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: match r.sort_order {
            api::SortOrder::None => SortOrder::None,
            api::SortOrder::Ascend => SortOrder::Ascend,
            api::SortOrder::Descend => SortOrder::Descend,
        } as i32,
        sort_target: match r.sort_target {
            api::SortTarget::Key => SortTarget::Key,
            api::SortTarget::Version => SortTarget::Version,
            api::SortTarget::Create => SortTarget::Create,
            api::SortTarget::Mod => SortTarget::Mod,
            api::SortTarget::Value => SortTarget::Value,
        } as i32,
        serializable: r.consistency == api::ReadConsistency::Serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn api_range_response(r: pb::RangeResponse) -> api::RangeResponse {
    api::RangeResponse {
        header: api_header(r.header),
        kvs: r.kvs.into_iter().map(api_key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn pb_put_request(r: api::PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn api_put_response(r: pb::PutResponse) -> api::PutResponse {
    api::PutResponse { header: api_header(r.header), prev_kv: r.prev_kv.map(api_key_value) }
}

pub fn pb_delete_request(r: api::DeleteRangeRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

pub fn api_delete_response(r: pb::DeleteRangeResponse) -> api::DeleteRangeResponse {
    api::DeleteRangeResponse {
        header: api_header(r.header),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(api_key_value).collect(),
    }
}

fn pb_compare(c: api::Compare) -> pb::Compare {
    let result = match c.result {
        api::CompareResult::Equal => CompareResult::Equal,
        api::CompareResult::Greater => CompareResult::Greater,
        api::CompareResult::Less => CompareResult::Less,
        api::CompareResult::NotEqual => CompareResult::NotEqual,
    };
    let (target, operand) = match c.target {
        api::CompareTarget::Version(v) => (CompareTarget::Version, TargetUnion::Version(v)),
        api::CompareTarget::CreateRevision(v) => (CompareTarget::Create, TargetUnion::CreateRevision(v)),
        api::CompareTarget::ModRevision(v) => (CompareTarget::Mod, TargetUnion::ModRevision(v)),
        api::CompareTarget::Value(v) => (CompareTarget::Value, TargetUnion::Value(v)),
        api::CompareTarget::Lease(v) => (CompareTarget::Lease, TargetUnion::Lease(v)),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key,
        range_end: c.range_end,
        target_union: Some(operand),
    }
}

fn pb_request_op(op: api::RequestOp) -> pb::RequestOp {
    use pb::request_op::Request;
    let request = match op {
        api::RequestOp::Range(r) => Request::RequestRange(pb_range_request(r)),
        api::RequestOp::Put(r) => Request::RequestPut(pb_put_request(r)),
        api::RequestOp::DeleteRange(r) => Request::RequestDeleteRange(pb_delete_request(r)),
        api::RequestOp::Txn(r) => Request::RequestTxn(pb_txn_request(r)),
    };
    pb::RequestOp { request: Some(request) }
}

pub fn pb_txn_request(r: api::TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: r.compare.into_iter().map(pb_compare).collect(),
        success: r.success.into_iter().map(pb_request_op).collect(),
        failure: r.failure.into_iter().map(pb_request_op).collect(),
    }
}

/// A member answers every op of a txn; an op answer without a body (which no member sends)
/// would be dropped.
fn api_response_op(op: pb::ResponseOp) -> Option<api::ResponseOp> {
    use pb::response_op::Response;
    Some(match op.response? {
        Response::ResponseRange(r) => api::ResponseOp::Range(api_range_response(r)),
        Response::ResponsePut(r) => api::ResponseOp::Put(api_put_response(r)),
        Response::ResponseDeleteRange(r) => api::ResponseOp::DeleteRange(api_delete_response(r)),
        Response::ResponseTxn(r) => api::ResponseOp::Txn(api_txn_response(r)),
    })
}

pub fn api_txn_response(r: pb::TxnResponse) -> api::TxnResponse {
    api::TxnResponse {
        header: api_header(r.header),
        succeeded: r.succeeded,
        responses: r.responses.into_iter().filter_map(api_response_op).collect(),
    }
}

pub fn api_member(m: pb::Member) -> api::Member {
    api::Member { id: m.id, name: m.name, peer_urls: m.peer_ur_ls, client_urls: m.client_ur_ls, is_learner: m.is_learner }
}

pub fn api_event(e: mvccpb::Event) -> api::Event {
    api::Event {
        kind: if e.r#type == mvccpb::event::EventType::Delete as i32 { api::EventKind::Delete } else { api::EventKind::Put },
        kv: e.kv.map(api_key_value).unwrap_or_default(),
        prev_kv: e.prev_kv.map(api_key_value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Core -> etcd -> core is the identity for requests, and etcd -> core -> etcd for answers.
    #[test]
    fn conversions_round_trip() {
        let range = api::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 3,
            revision: 7,
            sort_order: api::SortOrder::Descend,
            sort_target: api::SortTarget::Mod,
            consistency: api::ReadConsistency::Serializable,
            keys_only: true,
            count_only: false,
            min_mod_revision: 1,
            max_mod_revision: 9,
            min_create_revision: 2,
            max_create_revision: 8,
        };
        let put = api::PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 5, prev_kv: true, ignore_value: false, ignore_lease: true };
        let del = api::DeleteRangeRequest { key: b"d".to_vec(), range_end: vec![0], prev_kv: true };
        let txn = api::TxnRequest {
            compare: vec![
                api::Compare { key: b"k".to_vec(), range_end: vec![], result: api::CompareResult::NotEqual, target: api::CompareTarget::Value(b"x".to_vec()) },
                api::Compare { key: b"k".to_vec(), range_end: b"l".to_vec(), result: api::CompareResult::Less, target: api::CompareTarget::ModRevision(4) },
                api::Compare { key: b"k".to_vec(), range_end: vec![], result: api::CompareResult::Greater, target: api::CompareTarget::Version(1) },
                api::Compare { key: b"k".to_vec(), range_end: vec![], result: api::CompareResult::Equal, target: api::CompareTarget::CreateRevision(2) },
                api::Compare { key: b"k".to_vec(), range_end: vec![], result: api::CompareResult::Equal, target: api::CompareTarget::Lease(0) },
            ],
            success: vec![api::RequestOp::Range(range.clone()), api::RequestOp::Put(put.clone())],
            failure: vec![
                api::RequestOp::DeleteRange(del.clone()),
                api::RequestOp::Txn(api::TxnRequest { compare: vec![], success: vec![api::RequestOp::Put(put.clone())], failure: vec![] }),
            ],
        };
        assert_eq!(range_request(pb_range_request(range.clone())).unwrap(), range);
        assert_eq!(put_request(pb_put_request(put.clone())), put);
        assert_eq!(delete_request(pb_delete_request(del.clone())), del);
        assert_eq!(txn_request(pb_txn_request(txn.clone())).unwrap(), txn);

        let h = api::ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 };
        let kv = api::KeyValue { key: b"k".to_vec(), create_revision: 2, mod_revision: 3, version: 2, value: b"v".to_vec(), lease: 9 };
        let rr = api::RangeResponse { header: h, kvs: vec![kv.clone()], more: true, count: 5 };
        let tr = api::TxnResponse {
            header: h,
            succeeded: true,
            responses: vec![
                api::ResponseOp::Range(rr.clone()),
                api::ResponseOp::Put(api::PutResponse { header: h, prev_kv: Some(kv.clone()) }),
                api::ResponseOp::DeleteRange(api::DeleteRangeResponse { header: h, deleted: 1, prev_kvs: vec![kv.clone()] }),
                api::ResponseOp::Txn(api::TxnResponse { header: h, succeeded: false, responses: vec![] }),
            ],
        };
        assert_eq!(api_range_response(range_response(rr.clone())), rr);
        assert_eq!(api_txn_response(txn_response(tr.clone())), tr);
        let m = api::Member { id: 7, name: "n".into(), peer_urls: vec!["p".into()], client_urls: vec!["c".into()], is_learner: true };
        assert_eq!(api_member(member(m.clone())), m);
    }
}
