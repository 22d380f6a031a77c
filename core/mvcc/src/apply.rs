//! The write side: applies one committed command to a RocksDB write batch, deterministically.
//!
//! A command that changes anything gets the next main revision; each key it changes gets a
//! sub-revision in order. A command refused by etcd's rules (missing key for ignore_value, a
//! compacted revision, ...) leaves the batch untouched and answers the error, so every member
//! refuses it alike. Reads inside a txn see the txn's earlier writes through an overlay.
//!
//! Puts, and txns that compare single keys and only put, may share one write batch (one
//! RocksDB write) with such commands before them in the same log entry: they read only their
//! own keys' latest versions, which the applier then finds among the batch's unwritten writes
//! ([`Applier::shares_batch`]). Every other command is applied into a batch of its own, after
//! the shared one is written.

use cairn_api::{
    AlarmKind, AlarmMember, Event, EventKind,
    LeaseGrantResponse, LeaseKeepAliveResponse, LeaseRevokeResponse,
    Compare, CompareResult, CompareTarget, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, KeyValue, PutRequest, PutResponse, RangeResponse, RequestOp, ResponseHeader,
    ResponseOp, StoreError, TxnRequest, TxnResponse,
};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec::{encode, encode_i64, Change, LeaseRecord, Version};
use crate::auth::AuthCache;
use crate::error::{MvccError, Result};
use crate::layout::{self, CF_HISTORY, CF_KV, CF_LEASES, CF_LEASE_KEYS, CF_META, CF_REVISIONS};
use crate::read::{Overlay, Reader, StoreMeta};
use crate::Db;

/// A state change, as replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteCommand {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// Grants lease `id` (chosen by the proposer) for `ttl` seconds from `now_ms`.
    LeaseGrant { id: i64, ttl: i64, now_ms: i64 },
    /// Ends lease `id`, deleting its keys in one revision.
    LeaseRevoke { id: i64 },
    /// Moves lease `id`'s deadline to `now_ms` + its TTL.
    LeaseRenew { id: i64, now_ms: i64 },
    /// Ends those of `ids` whose deadline is at or before `now_ms` (proposed by the leader),
    /// deleting all their keys in one revision.
    LeaseExpire { ids: Vec<i64>, now_ms: i64 },
    /// Raises (`activate`) or clears an alarm. While any member has NOSPACE raised, writes
    /// that add data (puts, txns, lease grants) are refused; deletes and compaction still run.
    Alarm { activate: bool, alarm: AlarmMember },
    /// Changes users, roles or whether auth is enabled ([`crate::auth`]).
    Auth(crate::auth::AuthCommand),
    /// A client's command whose permissions were checked against auth revision
    /// `auth_revision`: refused with etcd's `AuthOldRevision` if auth changed since, so a
    /// write never commits on the strength of a permission revoked meanwhile.
    Checked { auth_revision: u64, command: Box<WriteCommand> },
}

impl WriteCommand {
    /// The command itself, whatever check wraps it.
    pub fn inner(&self) -> &WriteCommand {
        match self {
            WriteCommand::Checked { command, .. } => command.inner(),
            other => other,
        }
    }
}

/// The answer to a [`WriteCommand`], header revision and term filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseRenew(LeaseKeepAliveResponse),
    LeaseExpire { revoked: usize },
    /// The alarms raised after the change.
    Alarm(Vec<AlarmMember>),
    Auth(ResponseHeader),
}

/// Applies commands in log order. Holds the revision counters between commands, so it must be
/// the only writer of the MVCC column families.
pub struct Applier {
    meta: StoreMeta,
    /// The auth state as applied so far, shared with the member's request path.
    auth: std::sync::Arc<AuthCache>,
    /// The changes of the last applied command, for watchers.
    events: Vec<Event>,
    /// The alarms raised, as applied (read here on every write, so kept in memory).
    alarms: Vec<cairn_api::AlarmMember>,
    /// The latest versions the puts applied since the last [`Applier::batch_written`] wrote
    /// into the caller's batch, which the database does not show yet.
    unwritten: Overlay,
    /// A command that does not share batches was applied since the last
    /// [`Applier::batch_written`]: nothing may be applied until that batch is written.
    unwritten_alone: bool,
}

/// One pending write of a command, kept until the command is known to succeed.
enum Write {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
}

/// The state of the command being applied.
struct Pending<'r, 'db> {
    reader: &'r Reader<'db>,
    /// Latest versions written to the batch by earlier commands, not yet in the database.
    unwritten: &'r Overlay,
    meta: StoreMeta,
    overlay: Overlay,
    writes: Vec<Write>,
    /// Changes made so far: the next change's sub-revision.
    sub: i64,
    events: Vec<Event>,
}

impl Applier {
    /// Starts from the counters stored in `db`.
    pub fn open(db: &Db) -> Result<Self> {
        let reader = Reader::live(db);
        let auth = std::sync::Arc::new(AuthCache::new(reader.auth()?));
        Ok(Applier {
            meta: reader.meta()?,
            auth,
            events: Vec::new(),
            alarms: reader.alarms()?,
            unwritten: Overlay::new(),
            unwritten_alone: false,
        })
    }

    pub fn meta(&self) -> StoreMeta {
        self.meta
    }

    /// The auth state as applied, kept current by this applier.
    pub fn auth_cache(&self) -> std::sync::Arc<AuthCache> {
        self.auth.clone()
    }

    /// The events of the last command applied (empty if it changed no key), in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Whether `cmd` may be applied into a batch holding earlier commands' unwritten writes:
    /// a put reads nothing but its own key's latest version (and whether its lease exists,
    /// which only commands that do not share batches change), and neither does a txn whose
    /// compares are on single keys and whose ops, in both branches, are puts and such txns
    /// (a lock's or an election's create-if-absent, a compare-and-swap). Ranges and deletes
    /// read ranges of keys, which the unwritten writes are not indexed for.
    pub fn shares_batch(cmd: &WriteCommand) -> bool {
        fn single_key_puts(t: &TxnRequest) -> bool {
            t.compare.iter().all(|c| c.range_end.is_empty())
                && t.success.iter().chain(&t.failure).all(|op| match op {
                    RequestOp::Put(_) => true,
                    RequestOp::Txn(inner) => single_key_puts(inner),
                    RequestOp::Range(_) | RequestOp::DeleteRange(_) => false,
                })
        }
        match cmd.inner() {
            WriteCommand::Put(_) => true,
            WriteCommand::Txn(t) => single_key_puts(t),
            _ => false,
        }
    }

    /// The batch the commands since the last call were applied into is now in the database.
    pub fn batch_written(&mut self) {
        self.unwritten.clear();
        self.unwritten_alone = false;
    }

    /// Re-reads the counters (after a snapshot replaced the state).
    pub fn reload(&mut self, db: &Db) -> Result<()> {
        self.batch_written();
        let reader = Reader::live(db);
        self.meta = reader.meta()?;
        self.alarms = reader.alarms()?;
        self.auth.set(std::sync::Arc::new(reader.auth()?));
        Ok(())
    }

    /// Applies `cmd`, adding its writes to `batch`. A client error (`MvccError::Request`)
    /// leaves `batch` untouched; any other error means storage failed. Unless `cmd`
    /// [`Applier::shares_batch`], the writes of the commands applied before it must have been
    /// written (and [`Applier::batch_written`] called) first.
    pub fn apply(
        &mut self,
        db: &Db,
        batch: &mut WriteBatch,
        cmd: &WriteCommand,
        raft_term: u64,
    ) -> Result<ApplyOutcome> {
        if let WriteCommand::Checked { auth_revision, command } = cmd {
            if self.auth.get().revision != *auth_revision {
                return Err(StoreError::AuthOldRevision.into());
            }
            return self.apply(db, batch, command, raft_term);
        }
        let shares = Self::shares_batch(cmd);
        if self.unwritten_alone || (!shares && !self.unwritten.is_empty()) {
            return Err(MvccError::Corrupt("a command applied before the writes of earlier commands were written".into()));
        }
        let reader = Reader::live(db);
        let mut p = Pending {
            reader: &reader,
            unwritten: &self.unwritten,
            meta: self.meta,
            overlay: Overlay::new(),
            writes: Vec::new(),
            sub: 0,
            events: Vec::new(),
        };
        if matches!(cmd, WriteCommand::Put(_) | WriteCommand::Txn(_) | WriteCommand::LeaseGrant { .. })
            && self.alarms.iter().any(|a| a.alarm == AlarmKind::NoSpace)
        {
            return Err(StoreError::NoSpace.into());
        }
        let mut new_auth = None;
        let mut new_alarms = None;
        let outcome = match cmd {
            // Unwrapped above.
            WriteCommand::Checked { .. } => return Err(MvccError::Corrupt("a checked command inside a checked command".into())),
            WriteCommand::Auth(change) => {
                if let Some(next) = self.auth.get().apply(change)? {
                    p.writes.push(Write::Put(CF_META, layout::META_AUTH.to_vec(), encode(&next)));
                    new_auth = Some(std::sync::Arc::new(next));
                }
                ApplyOutcome::Auth(ResponseHeader::default())
            }
            WriteCommand::Alarm { activate, alarm } => {
                let mut alarms = self.alarms.clone();
                alarms.retain(|a| a != alarm);
                if *activate {
                    alarms.push(*alarm);
                    alarms.sort();
                }
                p.writes.push(Write::Put(CF_META, layout::META_ALARMS.to_vec(), encode(&alarms)));
                new_alarms = Some(alarms.clone());
                ApplyOutcome::Alarm(alarms)
            }
            WriteCommand::Put(req) => {
                p.check_put(req)?;
                ApplyOutcome::Put(p.put(req)?)
            }
            WriteCommand::DeleteRange(req) => ApplyOutcome::DeleteRange(p.delete_range(req)?),
            WriteCommand::Txn(req) => {
                let mut path = Vec::new();
                p.txn_path(req, &mut path)?;
                p.check_txn_ops(req, &mut path.iter().copied())?;
                ApplyOutcome::Txn(p.txn(req, &mut path.into_iter())?)
            }
            WriteCommand::LeaseGrant { id, ttl, now_ms } => {
                if reader.get_lease(*id)?.is_some() {
                    return Err(StoreError::LeaseExists.into());
                }
                let record = LeaseRecord { ttl: *ttl, deadline_ms: now_ms.saturating_add(ttl.saturating_mul(1000)), kept_alive: false };
                p.writes.push(Write::Put(CF_LEASES, layout::lease_key(*id).to_vec(), encode(&record)));
                ApplyOutcome::LeaseGrant(LeaseGrantResponse { id: *id, ttl: *ttl, ..Default::default() })
            }
            WriteCommand::LeaseRevoke { id } => {
                if reader.get_lease(*id)?.is_none() {
                    return Err(StoreError::LeaseNotFound.into());
                }
                p.end_lease(*id)?;
                ApplyOutcome::LeaseRevoke(LeaseRevokeResponse::default())
            }
            WriteCommand::LeaseRenew { id, now_ms } => {
                let lease = match reader.get_lease(*id)? {
                    // An expired lease is as good as gone, even before the leader revokes it.
                    Some(l) if l.deadline_ms > *now_ms => l,
                    _ => return Err(StoreError::LeaseNotFound.into()),
                };
                let record = LeaseRecord {
                    ttl: lease.ttl,
                    deadline_ms: now_ms.saturating_add(lease.ttl.saturating_mul(1000)),
                    kept_alive: true,
                };
                p.writes.push(Write::Put(CF_LEASES, layout::lease_key(*id).to_vec(), encode(&record)));
                ApplyOutcome::LeaseRenew(LeaseKeepAliveResponse { id: *id, ttl: lease.ttl, ..Default::default() })
            }
            WriteCommand::LeaseExpire { ids, now_ms } => {
                let mut revoked = 0;
                for id in ids {
                    // Renewed or revoked since the leader decided: leave it.
                    if reader.get_lease(*id)?.is_some_and(|l| l.deadline_ms <= *now_ms) {
                        p.end_lease(*id)?;
                        revoked += 1;
                    }
                }
                ApplyOutcome::LeaseExpire { revoked }
            }
            WriteCommand::Compact(req) => {
                crate::compact::compact(db, batch, self.meta, req.revision)?;
                self.meta.compact_revision = req.revision;
                ApplyOutcome::Compact(CompactionResponse::default())
            }
        };
        let cfs = |name| db.cf_handle(name).ok_or_else(|| MvccError::Corrupt(format!("missing column family {name}")));
        for w in p.writes.drain(..) {
            match w {
                Write::Put(cf, k, v) => batch.put_cf(cfs(cf)?, k, v),
                Write::Delete(cf, k) => batch.delete_cf(cfs(cf)?, k),
            }
        }
        self.events = std::mem::take(&mut p.events);
        let (overlay, changed) = (std::mem::take(&mut p.overlay), p.sub > 0);
        drop(p);
        if shares {
            self.unwritten.extend(overlay);
        } else {
            self.unwritten_alone = true;
        }
        if changed {
            self.meta.revision += 1;
            batch.put_cf(cfs(CF_META)?, layout::META_REVISION, encode_i64(self.meta.revision));
        }
        if let Some(next) = new_auth {
            self.auth.set(next);
        }
        if let Some(alarms) = new_alarms {
            self.alarms = alarms;
        }
        let header = ResponseHeader { revision: self.meta.revision, raft_term, ..Default::default() };
        Ok(set_header(outcome, header))
    }
}

/// Runs a txn none of whose ops can write (only ranges, in both branches) on a read view,
/// without going through the log.
pub fn read_only_txn(reader: &Reader, req: &TxnRequest) -> Result<TxnResponse> {
    let meta = reader.meta()?;
    let none = Overlay::new();
    let mut p = Pending { reader, unwritten: &none, meta, overlay: Overlay::new(), writes: Vec::new(), sub: 0, events: Vec::new() };
    let mut path = Vec::new();
    p.txn_path(req, &mut path)?;
    p.check_txn_ops(req, &mut path.iter().copied())?;
    let mut resp = p.txn(req, &mut path.into_iter())?;
    resp.header.revision = meta.revision;
    Ok(resp)
}

fn set_header(outcome: ApplyOutcome, header: ResponseHeader) -> ApplyOutcome {
    match outcome {
        ApplyOutcome::Put(mut r) => {
            r.header = header;
            ApplyOutcome::Put(r)
        }
        ApplyOutcome::DeleteRange(mut r) => {
            r.header = header;
            ApplyOutcome::DeleteRange(r)
        }
        ApplyOutcome::Txn(mut r) => {
            r.header = header;
            ApplyOutcome::Txn(r)
        }
        ApplyOutcome::Compact(mut r) => {
            r.header = header;
            ApplyOutcome::Compact(r)
        }
        ApplyOutcome::LeaseGrant(mut r) => {
            r.header = header;
            ApplyOutcome::LeaseGrant(r)
        }
        ApplyOutcome::LeaseRevoke(mut r) => {
            r.header = header;
            ApplyOutcome::LeaseRevoke(r)
        }
        ApplyOutcome::LeaseRenew(mut r) => {
            r.header = header;
            ApplyOutcome::LeaseRenew(r)
        }
        expire @ ApplyOutcome::LeaseExpire { .. } => expire,
        alarm @ ApplyOutcome::Alarm(_) => alarm,
        ApplyOutcome::Auth(_) => ApplyOutcome::Auth(header),
    }
}

impl Pending<'_, '_> {
    fn revision(&self) -> i64 {
        self.meta.revision + 1
    }

    fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.overlay.get(key).or_else(|| self.unwritten.get(key)) {
            Some(v) => Ok(v.clone()),
            None => self.reader.get_latest(key),
        }
    }

    /// Refusals etcd makes before a put changes anything.
    fn check_put(&self, req: &PutRequest) -> Result<()> {
        if (req.ignore_value || req.ignore_lease) && self.latest(&req.key)?.is_none() {
            return Err(StoreError::KeyNotFound.into());
        }
        if req.lease != 0 && !self.lease_exists(req.lease)? {
            return Err(StoreError::LeaseNotFound.into());
        }
        Ok(())
    }

    fn lease_exists(&self, id: i64) -> Result<bool> {
        Ok(self.reader.get_lease(id)?.is_some())
    }

    /// Deletes every key lease `id` holds (at the pending revision) and the lease itself.
    fn end_lease(&mut self, id: i64) -> Result<()> {
        let rev = self.revision();
        for key in self.reader.lease_keys(id)? {
            // A key re-attached elsewhere earlier in this command is no longer this lease's.
            if let Some(kv) = self.latest(&key)?.filter(|kv| kv.lease == id) {
                self.writes.push(Write::Delete(CF_KV, kv.key.clone()));
                self.record_change(&kv.key, &Version::tombstone(rev));
                self.overlay.insert(kv.key.clone(), None);
                self.events.push(delete_event(kv, rev));
            }
            self.writes.push(Write::Delete(CF_LEASE_KEYS, layout::lease_key_entry(id, &key)));
        }
        self.writes.push(Write::Delete(CF_LEASES, layout::lease_key(id).to_vec()));
        Ok(())
    }

    /// Keeps `lease_keys` in step when `key` moves from lease `old` to lease `new` (0: none).
    fn move_lease(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0 {
            self.writes.push(Write::Delete(CF_LEASE_KEYS, layout::lease_key_entry(old, key)));
        }
        if new != 0 {
            self.writes.push(Write::Put(CF_LEASE_KEYS, layout::lease_key_entry(new, key), Vec::new()));
        }
    }

    fn record_change(&mut self, key: &[u8], version: &Version) {
        let rev = self.revision();
        self.writes.push(Write::Put(CF_HISTORY, layout::history_key(key, rev), encode(version)));
        let change = Change { key: key.to_vec(), tombstone: version.tombstone };
        self.writes.push(Write::Put(CF_REVISIONS, layout::revision_key(rev, self.sub).to_vec(), encode(&change)));
        self.sub += 1;
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = self.latest(&req.key)?;
        let rev = self.revision();
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: match (&prev, req.ignore_value) {
                (Some(p), true) => p.value.clone(),
                _ => req.value.clone(),
            },
            lease: match (&prev, req.ignore_lease) {
                (Some(p), true) => p.lease,
                _ => req.lease,
            },
        };
        let version = Version::from_kv(&kv);
        self.move_lease(&req.key, prev.as_ref().map_or(0, |p| p.lease), kv.lease);
        self.writes.push(Write::Put(CF_KV, req.key.clone(), encode(&version)));
        self.record_change(&req.key, &version);
        self.events.push(Event { kind: EventKind::Put, kv: kv.clone(), prev_kv: prev.clone() });
        self.overlay.insert(req.key.clone(), Some(kv));
        Ok(PutResponse { header: ResponseHeader::default(), prev_kv: if req.prev_kv { prev } else { None } })
    }

    /// The live keys in `[key, range_end)`; one key (no `range_end`) is looked up as its
    /// latest version, which also finds the batch's unwritten writes (txns that compare only
    /// single keys share batches, see `Applier::shares_batch`).
    fn live_in(&self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        if range_end.is_empty() {
            return Ok(self.latest(key)?.into_iter().collect());
        }
        let req = cairn_api::RangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), ..Default::default() };
        // Counters as they are before this command: ranges see the overlay at the pending revision.
        Ok(self.reader.range_with(&req, self.meta, &self.overlay)?.kvs)
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let doomed = self.live_in(&req.key, &req.range_end)?;
        let rev = self.revision();
        for kv in &doomed {
            self.move_lease(&kv.key, kv.lease, 0);
            self.writes.push(Write::Delete(CF_KV, kv.key.clone()));
            self.record_change(&kv.key, &Version::tombstone(rev));
            self.events.push(delete_event(kv.clone(), rev));
            self.overlay.insert(kv.key.clone(), None);
        }
        Ok(DeleteRangeResponse {
            header: ResponseHeader::default(),
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        })
    }

    fn compare(&self, c: &Compare) -> Result<bool> {
        let kvs = self.live_in(&c.key, &c.range_end)?;
        if kvs.is_empty() {
            if matches!(c.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// Decides every txn's branch, nested ones included, on the state before the txn runs
    /// (as etcd does), in pre-order.
    fn txn_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let RequestOp::Txn(inner) = op {
                self.txn_path(inner, path)?;
            }
        }
        Ok(())
    }

    /// Refusals on the chosen ops, before any of them runs (the txn is all or nothing).
    fn check_txn_ops(&self, req: &TxnRequest, path: &mut dyn Iterator<Item = bool>) -> Result<()> {
        let ok = path.next().unwrap_or(false);
        for op in if ok { &req.success } else { &req.failure } {
            match op {
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::Range(range) => {
                    if range.revision > self.meta.revision {
                        return Err(StoreError::FutureRevision.into());
                    }
                    if range.revision > 0 && range.revision < self.meta.compact_revision {
                        return Err(StoreError::Compacted.into());
                    }
                }
                RequestOp::Txn(inner) => self.check_txn_ops(inner, path)?,
                RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    fn txn(&mut self, req: &TxnRequest, path: &mut dyn Iterator<Item = bool>) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let mut responses = Vec::new();
        for op in if succeeded { &req.success } else { &req.failure } {
            let mut response = match op {
                RequestOp::Range(r) => {
                    let out = self.reader.range_with(r, self.meta, &self.overlay)?;
                    ResponseOp::Range(RangeResponse {
                        header: ResponseHeader::default(),
                        kvs: out.kvs,
                        more: out.more,
                        count: out.count,
                    })
                }
                RequestOp::Put(r) => ResponseOp::Put(self.put(r)?),
                RequestOp::DeleteRange(r) => ResponseOp::DeleteRange(self.delete_range(r)?),
                RequestOp::Txn(r) => ResponseOp::Txn(self.txn(r, path)?),
            };
            // As etcd: an inner response's header carries only the revision as of that op
            // (the pending revision once the txn has changed anything).
            let revision = self.meta.revision + i64::from(self.sub > 0);
            // A nested txn's own header stays empty, as etcd leaves it.
            let header = ResponseHeader { revision, ..Default::default() };
            match &mut response {
                ResponseOp::Range(r) => r.header = header,
                ResponseOp::Put(r) => r.header = header,
                ResponseOp::DeleteRange(r) => r.header = header,
                ResponseOp::Txn(_) => {}
            }
            responses.push(response);
        }
        Ok(TxnResponse { header: ResponseHeader::default(), succeeded, responses })
    }
}

/// The event of deleting `prev` at `revision`: the key with the deleting revision.
fn delete_event(prev: KeyValue, revision: i64) -> Event {
    let kv = KeyValue { key: prev.key.clone(), mod_revision: revision, ..Default::default() };
    Event { kind: EventKind::Delete, kv, prev_kv: Some(prev) }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::CreateRevision(v) => kv.create_revision.cmp(v),
        CompareTarget::ModRevision(v) => kv.mod_revision.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}
