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
