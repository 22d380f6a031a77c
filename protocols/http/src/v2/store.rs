//! The v2 keys operations, each expressed as v3 reads and one guarded v3 txn.
//!
//! Every write reads what it depends on (the key, its directory-ness, its parents) in one
//! read-only txn, decides as etcd v2 would, then writes in one txn whose compares assert that
//! what was read is unchanged (mod revisions, "no key under this prefix"); when a compare fails
//! the operation starts over. So each v2 operation is atomic, and a v2 error is never the
//! result of a race. The v2 index is the v3 revision.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_api::{
    prefix_range_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest,
    ReadConsistency, RequestOp, ResponseOp, StoreError, TxnRequest, TxnResponse,
};

use super::error::*;
use super::model::{ancestors, clean, dir_prefix, file_key, hidden, Event, Node};
use crate::Store;

/// How often a write starts over when what it read changed before it wrote.
const MAX_ATTEMPTS: usize = 64;

/// etcd's `/v2/stats/store` counters.
#[derive(Default)]
pub struct Stats {
    counters: [AtomicU64; 16],
}

#[derive(Clone, Copy)]
pub enum Stat {
    GetsSuccess,
    GetsFail,
    SetsSuccess,
    SetsFail,
    DeleteSuccess,
    DeleteFail,
    UpdateSuccess,
    UpdateFail,
    CreateSuccess,
    CreateFail,
    CasSuccess,
    CasFail,
    CadSuccess,
    CadFail,
    ExpireCount,
    Watchers,
}

const STAT_NAMES: [&str; 16] = [
    "getsSuccess", "getsFail", "setsSuccess", "setsFail", "deleteSuccess", "deleteFail", "updateSuccess",
    "updateFail", "createSuccess", "createFail", "compareAndSwapSuccess", "compareAndSwapFail",
    "compareAndDeleteSuccess", "compareAndDeleteFail", "expireCount", "watchers",
];

impl Stats {
    pub fn add(&self, s: Stat) {
        self.counters[s as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn sub(&self, s: Stat) {
        self.counters[s as usize].fetch_sub(1, Ordering::Relaxed);
    }
    pub fn json(&self) -> String {
        let mut map = serde_json::Map::new();
        for (i, name) in STAT_NAMES.iter().enumerate() {
            map.insert((*name).into(), self.counters[i].load(Ordering::Relaxed).into());
        }
        serde_json::Value::Object(map).to_string()
    }
}

/// The answer to a keys request: the event, the index for X-Etcd-Index, whether it created.
pub struct Outcome {
    pub event: Event,
    pub index: i64,
}

impl Outcome {
    /// etcd answers 201 for a create, or a set that replaced nothing.
    pub fn created(&self) -> bool {
        self.event.action == "create" || (self.event.action == "set" && self.event.prev_node.is_none())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// PUT: create or replace.
    Set,
    /// PUT prevExist=false.
    Create,
    /// PUT prevExist=true.
    Update,
    /// PUT with prevValue and/or prevIndex.
    Cas { prev_value: String, prev_index: u64 },
    /// POST: a new key named after the index, inside the directory.
    Unique,
}

#[derive(Debug, Clone)]
pub struct PutArgs {
    pub path: String,
    pub value: String,
    pub dir: bool,
    pub ttl: Option<u64>,
    pub refresh: bool,
    pub mode: PutMode,
}

/// A parent directory as read.
struct Parent {
    path: String,
    file: Option<KeyValue>,
    marker: Option<KeyValue>,
    is_dir: bool,
}

/// What a write depends on, read at one revision.
struct View {
    rev: i64,
    file: Option<KeyValue>,
    marker: Option<KeyValue>,
    /// Keys under the path's directory prefix (including its marker).
    under: i64,
    /// The first key under the prefix (for an implied directory's indexes).
    first_under: Option<KeyValue>,
    parents: Vec<Parent>,
}

impl View {
    fn is_dir(&self) -> bool {
        self.file.is_none() && self.under > 0
    }
    fn exists(&self) -> bool {
        self.file.is_some() || self.under > 0
    }
    /// Walking to an existing node (etcd's internalGet): a parent that is a file, or missing.
    fn walk_existing(&self, path: &str) -> Result<(), V2Error> {
        for p in &self.parents {
            if p.file.is_some() {
                return Err(V2Error::new(NOT_DIR, &p.path, self.rev));
            }
            if !p.is_dir {
                return Err(V2Error::new(KEY_NOT_FOUND, &p.path, self.rev));
            }
        }
        if !self.exists() {
            return Err(V2Error::new(KEY_NOT_FOUND, path, self.rev));
        }
        Ok(())
    }
    /// Walking to create (etcd's checkDir): missing parents are made, files are in the way.
    fn walk_create(&self) -> Result<(), V2Error> {
        for p in &self.parents {
            if p.file.is_some() {
                return Err(V2Error::new(NOT_DIR, &p.path, self.rev));
            }
        }
        Ok(())
    }
    /// (modified, created) indexes of the directory at the path.
    fn dir_indexes(&self) -> (i64, i64) {
        match (&self.marker, &self.first_under) {
            (Some(m), _) => (m.mod_revision, m.create_revision),
            (None, Some(f)) => (f.create_revision, f.create_revision),
            _ => (0, 0),
        }
    }
}

fn cmp_mod(key: Vec<u8>, rev: i64) -> Compare {
    Compare { key, range_end: vec![], result: CompareResult::Equal, target: CompareTarget::ModRevision(rev) }
}

/// True only while no key lies in `[key, range_end)`.
fn cmp_empty(key: Vec<u8>, range_end: Vec<u8>) -> Compare {
    Compare { key, range_end, result: CompareResult::Equal, target: CompareTarget::Version(0) }
}

fn put_op(key: Vec<u8>, value: &str, lease: i64) -> RequestOp {
    RequestOp::Put(PutRequest { key, value: value.as_bytes().to_vec(), lease, ..Default::default() })
}

fn range_op(key: Vec<u8>, range_end: Vec<u8>, limit: i64, keys_only: bool) -> RequestOp {
    RequestOp::Range(RangeRequest { key, range_end, limit, keys_only, ..Default::default() })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn now_plus(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The v2 keys API over a v3 store.
pub struct V2Store<S> {
    pub store: S,
    pub stats: Stats,
}

type TtlMap = HashMap<i64, i64>;

impl<S: Store> V2Store<S> {
    pub fn new(store: S) -> Self {
        V2Store { store, stats: Stats::default() }
    }


    pub async fn current_revision(&self) -> i64 {
        self.store.progress().await.map(|h| h.revision).unwrap_or(0)
    }

    async fn err(&self, e: StoreError) -> V2Error {
        V2Error::from_store(e, self.current_revision().await)
    }

    /// Remaining seconds of each lease (leases gone are left out).
    async fn ttls(&self, leases: Vec<i64>) -> TtlMap {
        let mut out = TtlMap::new();
        for id in leases {
            if id == 0 || out.contains_key(&id) {
                continue;
            }
            if let Ok(r) = self.store.lease_time_to_live(id, false).await {
                if r.ttl >= 0 {
                    // etcd shows whole seconds left, rounded up.
                    out.insert(id, (r.ttl + 1).min(r.granted_ttl).max(1));
                }
            }
        }
        out
    }


    async fn read_view(&self, path: &str) -> Result<View, V2Error> {
        let parents = ancestors(path);
        let mut ops = vec![
            range_op(file_key(path), vec![], 0, false),
            range_op(dir_prefix(path), prefix_range_end(&dir_prefix(path)), 1, true),
        ];
        for p in &parents {
            ops.push(range_op(file_key(p), vec![], 0, true));
            ops.push(range_op(dir_prefix(p), prefix_range_end(&dir_prefix(p)), 1, true));
        }
        let resp = self.store.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }).await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Err(self.err(e).await),
        };
        let rev = resp.header.revision;
        let mut ranges = resp.responses.into_iter().map(|r| match r {
            ResponseOp::Range(r) => r,
            _ => cairn_api::RangeResponse::default(),
        });
        let mut next = || ranges.next().unwrap_or_default();
        let file = next().kvs.into_iter().next();
        let under = next();
        let marker_key = dir_prefix(path);
        let first_under = under.kvs.into_iter().next();
        let marker = first_under.clone().filter(|kv| kv.key == marker_key);
        let mut view = View { rev, file, marker, under: under.count, first_under, parents: Vec::new() };
        for p in parents {
            let file = next().kvs.into_iter().next();
            let under = next();
            let pk = dir_prefix(&p);
            let marker = under.kvs.first().filter(|kv| kv.key == pk).cloned();
            view.parents.push(Parent { path: p, file, marker, is_dir: under.count > 0 });
        }
        Ok(view)
    }

    /// Compares keeping the parents as read, and puts creating their missing markers.
    fn guard_parents(view: &View, compare: &mut Vec<Compare>, ops: &mut Vec<RequestOp>) {
        for p in &view.parents {
            compare.push(cmp_mod(file_key(&p.path), 0));
            compare.push(cmp_mod(dir_prefix(&p.path), p.marker.as_ref().map_or(0, |m| m.mod_revision)));
            if p.marker.is_none() {
                ops.push(put_op(dir_prefix(&p.path), "", 0));
            }
        }
    }

    /// Runs a guarded txn: Some(response) if the guards held.
    async fn write(&self, compare: Vec<Compare>, ops: Vec<RequestOp>) -> Result<Option<TxnResponse>, V2Error> {
        match self.store.txn(TxnRequest { compare, success: ops, failure: vec![] }).await {
            Ok(r) if r.succeeded => Ok(Some(r)),
            Ok(_) => Ok(None),
            Err(e) => Err(self.err(e).await),
        }
    }

    fn contention(rev: i64) -> V2Error {
        V2Error::new(RAFT_INTERNAL, "the keys changed too often during the request; try again", rev)
    }

    // ---------------------------------------------------------------- reads

    /// GET: a file, or a directory with its children (all levels with `recursive`).
    pub async fn get(&self, path: &str, recursive: bool, quorum: bool) -> Result<Outcome, V2Error> {
        let res = self.get_inner(path, recursive, quorum).await;
        self.stats.add(if res.is_ok() { Stat::GetsSuccess } else { Stat::GetsFail });
        res
    }

    async fn list_under(&self, dir: &str, quorum: bool) -> Result<(i64, Vec<KeyValue>), V2Error> {
        let prefix = dir_prefix(dir);
        let req = RangeRequest {
            range_end: prefix_range_end(&prefix),
            key: prefix,
            consistency: if quorum { ReadConsistency::Linearizable } else { ReadConsistency::Serializable },
            ..Default::default()
        };
        match self.store.range(req).await {
            Ok(r) => Ok((r.header.revision, r.kvs)),
            Err(e) => Err(self.err(e).await),
        }
    }

    async fn get_inner(&self, path: &str, recursive: bool, quorum: bool) -> Result<Outcome, V2Error> {
        if path == "/" {
            let (rev, kvs) = self.list_under("/", quorum).await?;
            let ttls = self.ttls(kvs.iter().map(|kv| kv.lease).collect()).await;
            let nodes = build_children("/", &kvs.iter().collect::<Vec<_>>(), recursive, &ttls);
            let node = Node { dir: true, nodes: (!nodes.is_empty()).then_some(nodes), ..Default::default() };
            return Ok(Outcome { event: Event { action: "get", node: Some(node), prev_node: None }, index: rev });
        }
        let view = self.read_view(path).await?;
        view.walk_existing(path)?;
        if let Some(kv) = &view.file {
            let ttls = self.ttls(vec![kv.lease]).await;
            let node = file_node(path, kv, &ttls);
            return Ok(Outcome { event: Event { action: "get", node: Some(node), prev_node: None }, index: view.rev });
        }
        let (rev, kvs) = self.list_under(path, quorum).await?;
        let ttls = self.ttls(kvs.iter().map(|kv| kv.lease).collect()).await;
        let refs: Vec<&KeyValue> = kvs.iter().collect();
        let node = dir_node(path, &refs, true, recursive, &ttls);
        Ok(Outcome { event: Event { action: "get", node: Some(node), prev_node: None }, index: rev.max(view.rev) })
    }

    // ---------------------------------------------------------------- writes

    pub async fn put(&self, args: PutArgs) -> Result<Outcome, V2Error> {
        let (ok, fail) = match args.mode {
            PutMode::Set => (Stat::SetsSuccess, Stat::SetsFail),
            PutMode::Create | PutMode::Unique => (Stat::CreateSuccess, Stat::CreateFail),
            PutMode::Update => (Stat::UpdateSuccess, Stat::UpdateFail),
            PutMode::Cas { .. } => (Stat::CasSuccess, Stat::CasFail),
        };
        let res = self.put_inner(args).await;
        self.stats.add(if res.is_ok() { ok } else { fail });
        res
    }

    async fn grant(&self, ttl: Option<u64>) -> Result<(i64, TtlMap), V2Error> {
        let Some(ttl) = ttl else { return Ok((0, TtlMap::new())) };
        let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
        match self.store.lease_grant(cairn_api::LeaseGrantRequest { ttl, id: 0 }).await {
            Ok(r) => Ok((r.id, TtlMap::from([(r.id, r.ttl)]))),
            Err(e) => Err(self.err(e).await),
        }
    }

    async fn put_inner(&self, args: PutArgs) -> Result<Outcome, V2Error> {
        if args.path == "/" && args.mode != PutMode::Unique {
            return Err(V2Error::new(ROOT_READ_ONLY, "/", self.current_revision().await));
        }
        if args.refresh {
            if let Some(outcome) = self.try_refresh(&args).await? {
                return Ok(outcome);
            }
        }
        let (lease, new_ttls) = self.grant(args.ttl).await?;
        for _ in 0..MAX_ATTEMPTS {
            if let Some(outcome) = self.try_put(&args, lease, &new_ttls).await? {
                return Ok(outcome);
            }
        }
        Err(Self::contention(self.current_revision().await))
    }

    /// A refresh to the TTL the key's lease was granted with renews the lease (a keep-alive):
    /// no new revision, so watchers are not told, as in etcd. None: take the general path.
    async fn try_refresh(&self, args: &PutArgs) -> Result<Option<Outcome>, V2Error> {
        let action = match args.mode {
            PutMode::Set => "set",
            PutMode::Update => "update",
            PutMode::Cas { .. } => "compareAndSwap",
            _ => return Ok(None),
        };
        let path = args.path.as_str();
        let view = self.read_view(path).await?;
        let Some(kv) = view.file.as_ref().filter(|kv| kv.lease != 0) else { return Ok(None) };
        if let PutMode::Cas { prev_value, prev_index } = &args.mode {
            if compare_file(kv, prev_value, *prev_index, view.rev).is_err() {
                return Ok(None);
            }
        }
        let wanted = args.ttl.and_then(|t| i64::try_from(t).ok());
        let granted = self.store.lease_time_to_live(kv.lease, false).await.ok().map(|t| t.granted_ttl);
        if wanted.is_none() || granted != wanted {
            return Ok(None);
        }
        let old_ttls = self.ttls(vec![kv.lease]).await;
        let renewed = match self.store.lease_keep_alive(kv.lease).await {
            Ok(r) if r.ttl > 0 => r.ttl,
            _ => return Ok(None),
        };
        let prev = file_node(path, kv, &old_ttls);
        let node = file_node(path, kv, &TtlMap::from([(kv.lease, renewed)]));
        Ok(Some(Outcome { event: Event { action, node: Some(node), prev_node: Some(prev) }, index: view.rev }))
    }

    /// One attempt: None when what was read changed before the write.
    async fn try_put(&self, args: &PutArgs, lease: i64, new_ttls: &TtlMap) -> Result<Option<Outcome>, V2Error> {
        if args.mode == PutMode::Unique {
            return self.try_unique(args, lease, new_ttls).await;
        }
        let path = args.path.as_str();
        let view = self.read_view(path).await?;
        let mut compare = Vec::new();
        let mut ops = Vec::new();
        let old_ttls = self.ttls(view.file.iter().chain(view.marker.iter()).map(|kv| kv.lease).collect()).await;
        let prev_file = view.file.as_ref().map(|kv| file_node(path, kv, &old_ttls));
        let prev_dir = || {
            let (m, c) = view.dir_indexes();
            let mut n = Node { key: Some(path.to_string()), dir: true, modified_index: m, created_index: c, ..Default::default() };
            if let Some(mk) = &view.marker {
                set_ttl(&mut n, mk.lease, &old_ttls);
            }
            n
        };
        let mut value = args.value.clone();
        let (action, prev_node, make_dir, created_index): (&'static str, Option<Node>, bool, Option<i64>);
        match &args.mode {
            PutMode::Set => {
                view.walk_create()?;
                if args.refresh {
                    if !view.exists() {
                        return Err(V2Error::new(KEY_NOT_FOUND, path, view.rev));
                    }
                    value = view.file.as_ref().map(|kv| lossy(&kv.value)).unwrap_or_default();
                }
                if view.is_dir() {
                    return Err(V2Error::new(NOT_FILE, path, view.rev));
                }
                Self::guard_parents(&view, &mut compare, &mut ops);
                compare.push(cmp_mod(file_key(path), view.file.as_ref().map_or(0, |kv| kv.mod_revision)));
                if view.under == 0 {
                    compare.push(cmp_empty(dir_prefix(path), prefix_range_end(&dir_prefix(path))));
                }
                if args.dir && view.file.is_some() {
                    ops.push(RequestOp::DeleteRange(DeleteRangeRequest { key: file_key(path), ..Default::default() }));
                }
                action = "set";
                prev_node = prev_file.clone();
                make_dir = args.dir;
                created_index = if args.dir { None } else { view.file.as_ref().map(|kv| kv.create_revision) };
            }
            PutMode::Create => {
                view.walk_create()?;
                if view.exists() {
                    return Err(V2Error::new(NODE_EXIST, path, view.rev));
                }
                Self::guard_parents(&view, &mut compare, &mut ops);
                compare.push(cmp_mod(file_key(path), 0));
                compare.push(cmp_empty(dir_prefix(path), prefix_range_end(&dir_prefix(path))));
                action = "create";
                prev_node = None;
                make_dir = args.dir;
                created_index = None;
            }
            PutMode::Update => {
                view.walk_existing(path)?;
                if view.is_dir() && !value.is_empty() {
                    return Err(V2Error::new(NOT_FILE, path, view.rev));
                }
                if args.refresh {
                    value = view.file.as_ref().map(|kv| lossy(&kv.value)).unwrap_or_default();
                }
                action = "update";
                if view.is_dir() {
                    compare.push(cmp_mod(dir_prefix(path), view.marker.as_ref().map_or(0, |m| m.mod_revision)));
                    compare.push(cmp_mod(file_key(path), 0));
                    prev_node = Some(prev_dir());
                    make_dir = true;
                    created_index = Some(view.dir_indexes().1);
                } else {
                    let kv = view.file.as_ref().expect("exists and is not a directory");
                    compare.push(cmp_mod(file_key(path), kv.mod_revision));
                    prev_node = prev_file.clone();
                    make_dir = false;
                    created_index = Some(kv.create_revision);
                }
            }
            PutMode::Cas { prev_value, prev_index } => {
                view.walk_existing(path)?;
                let Some(kv) = view.file.as_ref() else {
                    return Err(V2Error::new(NOT_FILE, path, view.rev));
                };
                compare_file(kv, prev_value, *prev_index, view.rev)?;
                if args.refresh {
                    value = lossy(&kv.value);
                }
                compare.push(cmp_mod(file_key(path), kv.mod_revision));
                action = "compareAndSwap";
                prev_node = prev_file.clone();
                make_dir = false;
                created_index = Some(kv.create_revision);
            }
            PutMode::Unique => unreachable!("handled above"),
        }
        if make_dir {
            ops.push(put_op(dir_prefix(path), "", lease));
        } else {
            ops.push(put_op(file_key(path), &value, lease));
        }
        let Some(resp) = self.write(compare, ops).await? else { return Ok(None) };
        let rev = resp.header.revision;
        let mut node = Node {
            key: Some(path.to_string()),
            modified_index: rev,
            created_index: created_index.unwrap_or(rev),
            ..Default::default()
        };
        if make_dir {
            node.dir = true;
        } else {
            node.value = Some(value);
        }
        set_ttl(&mut node, lease, new_ttls);
        Ok(Some(Outcome { event: Event { action, node: Some(node), prev_node }, index: rev }))
    }

    /// POST: `<dir>/<20-digit index>`. The write is guarded by "nothing in the directory changed
    /// since the read", so names in a directory increase in the order the keys are created.
    async fn try_unique(&self, args: &PutArgs, lease: i64, new_ttls: &TtlMap) -> Result<Option<Outcome>, V2Error> {
        let dir = args.path.as_str();
        let mut compare = Vec::new();
        let mut ops = Vec::new();
        let rev;
        if dir == "/" {
            rev = self.current_revision().await;
            compare.push(Compare {
                key: b"/".to_vec(),
                range_end: prefix_range_end(b"/"),
                result: CompareResult::Less,
                target: CompareTarget::ModRevision(rev + 1),
            });
        } else {
            let view = self.read_view(dir).await?;
            view.walk_create()?;
            if view.file.is_some() {
                return Err(V2Error::new(NOT_DIR, dir, view.rev));
            }
            rev = view.rev;
            Self::guard_parents(&view, &mut compare, &mut ops);
            compare.push(cmp_mod(file_key(dir), 0));
            compare.push(cmp_mod(dir_prefix(dir), view.marker.as_ref().map_or(0, |m| m.mod_revision)));
            if view.marker.is_none() {
                ops.push(put_op(dir_prefix(dir), "", 0));
            }
            compare.push(Compare {
                key: dir_prefix(dir),
                range_end: prefix_range_end(&dir_prefix(dir)),
                result: CompareResult::Less,
                target: CompareTarget::ModRevision(rev + 1),
            });
        }
        let path = clean(&format!("{dir}/{:020}", rev + 1));
        if args.dir {
            ops.push(put_op(dir_prefix(&path), "", lease));
        } else {
            ops.push(put_op(file_key(&path), &args.value, lease));
        }
        let Some(resp) = self.write(compare, ops).await? else { return Ok(None) };
        let rev = resp.header.revision;
        let mut node = Node { key: Some(path), modified_index: rev, created_index: rev, ..Default::default() };
        if args.dir {
            node.dir = true;
        } else {
            node.value = Some(args.value.clone());
        }
        set_ttl(&mut node, lease, new_ttls);
        Ok(Some(Outcome { event: Event { action: "create", node: Some(node), prev_node: None }, index: rev }))
    }

    /// DELETE; with prevValue/prevIndex a compare-and-delete.
    pub async fn delete(
        &self,
        path: &str,
        dir: bool,
        recursive: bool,
        cad: Option<(String, u64)>,
    ) -> Result<Outcome, V2Error> {
        let (ok, fail) = if cad.is_some() { (Stat::CadSuccess, Stat::CadFail) } else { (Stat::DeleteSuccess, Stat::DeleteFail) };
        let res = self.delete_inner(path, dir || recursive, recursive, cad).await;
        self.stats.add(if res.is_ok() { ok } else { fail });
        res
    }

    async fn delete_inner(&self, path: &str, dir: bool, recursive: bool, cad: Option<(String, u64)>) -> Result<Outcome, V2Error> {
        if path == "/" {
            return Err(V2Error::new(ROOT_READ_ONLY, "/", self.current_revision().await));
        }
        for _ in 0..MAX_ATTEMPTS {
            let view = self.read_view(path).await?;
            view.walk_existing(path)?;
            let old_ttls = self.ttls(view.file.iter().chain(view.marker.iter()).map(|kv| kv.lease).collect()).await;
            let mut compare = Vec::new();
            let (action, prev_node, created, is_dir, op);
            if let Some(kv) = &view.file {
                if let Some((prev_value, prev_index)) = &cad {
                    compare_file(kv, prev_value, *prev_index, view.rev)?;
                    action = "compareAndDelete";
                } else {
                    action = "delete";
                }
                compare.push(cmp_mod(file_key(path), kv.mod_revision));
                prev_node = file_node(path, kv, &old_ttls);
                created = kv.create_revision;
                is_dir = false;
                op = DeleteRangeRequest { key: file_key(path), ..Default::default() };
            } else {
                if cad.is_some() || !dir {
                    return Err(V2Error::new(NOT_FILE, path, view.rev));
                }
                let children = view.under - i64::from(view.marker.is_some());
                if children > 0 && !recursive {
                    return Err(V2Error::new(DIR_NOT_EMPTY, path, view.rev));
                }
                let prefix = dir_prefix(path);
                if !recursive {
                    compare.push(cmp_mod(prefix.clone(), view.marker.as_ref().map_or(0, |m| m.mod_revision)));
                    let mut after_marker = prefix.clone();
                    after_marker.push(0);
                    compare.push(cmp_empty(after_marker, prefix_range_end(&prefix)));
                }
                compare.push(cmp_mod(file_key(path), 0));
                let (m, c) = view.dir_indexes();
                let mut n = Node { key: Some(path.to_string()), dir: true, modified_index: m, created_index: c, ..Default::default() };
                if let Some(mk) = &view.marker {
                    set_ttl(&mut n, mk.lease, &old_ttls);
                }
                action = "delete";
                prev_node = n;
                created = c;
                is_dir = true;
                op = DeleteRangeRequest { range_end: prefix_range_end(&prefix), key: prefix, ..Default::default() };
            }
            let Some(resp) = self.write(compare, vec![RequestOp::DeleteRange(op)]).await? else { continue };
            let rev = resp.header.revision;
            let node = Node { key: Some(path.to_string()), dir: is_dir, modified_index: rev, created_index: created, ..Default::default() };
            return Ok(Outcome { event: Event { action, node: Some(node), prev_node: Some(prev_node) }, index: rev });
        }
        Err(Self::contention(self.current_revision().await))
    }
}

/// etcd's compare of a file with prevValue / prevIndex, and its failure cause.
fn compare_file(kv: &KeyValue, prev_value: &str, prev_index: u64, rev: i64) -> Result<(), V2Error> {
    let value = lossy(&kv.value);
    let index_ok = prev_index == 0 || kv.mod_revision == prev_index as i64;
    let value_ok = prev_value.is_empty() || value == prev_value;
    let cause = match (value_ok, index_ok) {
        (true, true) => return Ok(()),
        (true, false) => format!("[{prev_index} != {}]", kv.mod_revision),
        (false, true) => format!("[{prev_value} != {value}]"),
        (false, false) => format!("[{prev_value} != {value}] [{prev_index} != {}]", kv.mod_revision),
    };
    Err(V2Error::new(TEST_FAILED, cause, rev))
}

/// The children of a directory from the keys under it (all starting with `dir_prefix(dir)`).
#[derive(Default)]
struct Child<'a> {
    file: Option<&'a KeyValue>,
    marker: Option<&'a KeyValue>,
    inner: Vec<&'a KeyValue>,
}

pub fn build_children(dir: &str, kvs: &[&KeyValue], recursive: bool, ttls: &TtlMap) -> Vec<Node> {
    let prefix_len = dir_prefix(dir).len();
    let mut children: BTreeMap<&[u8], Child> = BTreeMap::new();
    for kv in kvs {
        let rest = &kv.key[prefix_len.min(kv.key.len())..];
        if rest.is_empty() {
            continue; // the directory's own marker
        }
        match rest.iter().position(|b| *b == b'/') {
            None => children.entry(rest).or_default().file = Some(kv),
            Some(0) => {} // `//` has no v2 path
            Some(i) => {
                let child = children.entry(&rest[..i]).or_default();
                if i == rest.len() - 1 {
                    child.marker = Some(kv);
                } else {
                    child.inner.push(kv);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (name, child) in children {
        let name = lossy(name);
        if hidden(&name) {
            continue;
        }
        let path = if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") };
        if let Some(kv) = child.file {
            out.push(file_node(&path, kv, ttls));
            continue;
        }
        let mut all = Vec::with_capacity(child.inner.len() + 1);
        all.extend(child.marker);
        all.extend(child.inner);
        out.push(dir_node(&path, &all, recursive, recursive, ttls));
    }
    out
}

/// A directory node; `kvs` are the keys under it (its marker first, if any).
pub fn dir_node(path: &str, kvs: &[&KeyValue], list: bool, recursive: bool, ttls: &TtlMap) -> Node {
    let marker_key = dir_prefix(path);
    let marker = kvs.iter().find(|kv| kv.key == marker_key);
    let (m, c) = match marker {
        Some(mk) => (mk.mod_revision, mk.create_revision),
        None => {
            let c = kvs.iter().map(|kv| kv.create_revision).min().unwrap_or(0);
            (c, c)
        }
    };
    let mut node = Node { key: Some(path.to_string()), dir: true, modified_index: m, created_index: c, ..Default::default() };
    if let Some(mk) = marker {
        if let Some(ttl) = ttls.get(&mk.lease) {
            node.ttl = *ttl;
            node.expiration = Some(now_plus(*ttl));
        }
    }
    if list {
        let nodes = build_children(path, kvs, recursive, ttls);
        node.nodes = (!nodes.is_empty()).then_some(nodes);
    }
    node
}

/// Sets a node's TTL and expiration when its lease is one of `ttls`.
fn set_ttl(node: &mut Node, lease: i64, ttls: &TtlMap) {
    if let Some(ttl) = ttls.get(&lease) {
        node.ttl = *ttl;
        node.expiration = Some(now_plus(*ttl));
    }
}

/// The v2 node of the file `path`, held in `kv`.
fn file_node(path: &str, kv: &KeyValue, ttls: &TtlMap) -> Node {
    let mut n = Node {
        key: Some(path.to_string()),
        value: Some(lossy(&kv.value)),
        modified_index: kv.mod_revision,
        created_index: kv.create_revision,
        ..Default::default()
    };
    set_ttl(&mut n, kv.lease, ttls);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), create_revision: rev, mod_revision: rev, version: 1, lease: 0 }
    }

    #[test]
    fn children_of_markers_files_and_implied_dirs() {
        let kvs = [kv("/a/", "", 2), kv("/a/b", "1", 3), kv("/a/c/", "", 4), kv("/a/d/e", "x", 5), kv("/a/_h", "h", 6), kv("/a//z", "z", 7)];
        let refs: Vec<&KeyValue> = kvs.iter().collect();
        let node = dir_node("/a", &refs, true, false, &TtlMap::new());
        assert_eq!((node.modified_index, node.created_index), (2, 2));
        let names: Vec<_> = node.nodes.as_ref().unwrap().iter().map(|n| (n.key.clone().unwrap(), n.dir)).collect();
        assert_eq!(names, vec![("/a/b".into(), false), ("/a/c".into(), true), ("/a/d".into(), true)]);
        let d = &node.nodes.as_ref().unwrap()[2];
        assert!(d.nodes.is_none(), "not recursive");
        assert_eq!(d.created_index, 5, "an implied directory takes its oldest key's index");
        let node = dir_node("/a", &refs, true, true, &TtlMap::new());
        let d = &node.nodes.as_ref().unwrap()[2];
        assert_eq!(d.nodes.as_ref().unwrap()[0].value.as_deref(), Some("x"));
    }

    #[test]
    fn compare_failure_causes_are_etcds() {
        let k = kv("/f", "one", 7);
        assert!(compare_file(&k, "one", 7, 7).is_ok());
        assert!(compare_file(&k, "", 0, 7).is_ok());
        assert_eq!(compare_file(&k, "two", 0, 7).unwrap_err().cause, "[two != one]");
        assert_eq!(compare_file(&k, "", 1, 7).unwrap_err().cause, "[1 != 7]");
        assert_eq!(compare_file(&k, "two", 1, 7).unwrap_err().cause, "[two != one] [1 != 7]");
    }
}
