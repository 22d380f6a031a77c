//! The read side: ranges at the current or a past revision, on one consistent RocksDB
//! snapshot so that the keys, the count and the header revision of an answer agree.

use std::collections::BTreeMap;

use cairn_api::{Event, EventKind, KeyValue, RangeRequest, RangeResponse, ResponseHeader, SortOrder, SortTarget, StoreError};
use rocksdb::{ReadOptions, Snapshot};

use crate::codec::{decode, decode_i64, Change, LeaseRecord, Version};
use crate::error::{MvccError, Result};
use crate::layout::{self, CF_HISTORY, CF_KV, CF_LEASES, CF_LEASE_KEYS, CF_META};
use crate::meta_cache::MetaCache;
use crate::Db;

/// Pending latest versions of keys changed earlier in the command being applied
/// (`None` = deleted), which reads inside a txn must see.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<KeyValue>>;

/// The store's revision counters as of one read view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMeta {
    /// The store revision: the revision of the last write (1 for an empty store).
    pub revision: i64,
    /// Revisions below this one are compacted; -1 before the first compaction (as in etcd,
    /// so that compacting at revision 0 succeeds once).
    pub compact_revision: i64,
}

/// What a range found, before the header is added.
#[derive(Debug, Default)]
pub(crate) struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

/// `[key, range_end)` as etcd reads it.
pub enum KeySpan<'a> {
    Single(&'a [u8]),
    /// `end == None`: every key `>= start`.
    Span { start: &'a [u8], end: Option<&'a [u8]> },
}

impl<'a> KeySpan<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::Span { start: key, end: None },
            end => KeySpan::Span { start: key, end: Some(end) },
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeySpan::Single(key) => k == *key,
            KeySpan::Span { start, end } => k >= *start && end.is_none_or(|e| k < e),
        }
    }
}

/// Reads the store, either on a snapshot (clients) or live (the applier, the only writer).
pub struct Reader<'a> {
    db: &'a Db,
    snapshot: Option<Snapshot<'a>>,
    /// Where the counters of a snapshot may be found without reading them
    /// ([`Reader::with_meta_cache`]).
    meta_cache: Option<&'a MetaCache>,
}

impl<'a> Reader<'a> {
    /// A consistent point-in-time view.
    pub fn snapshot(db: &'a Db) -> Self {
        Reader { db, snapshot: Some(db.snapshot()), meta_cache: None }
    }

    /// The live database; only consistent while nothing else writes (the applier's case).
    pub(crate) fn live(db: &'a Db) -> Self {
        Reader { db, snapshot: None, meta_cache: None }
    }

    fn opts(&self) -> ReadOptions {
        let mut o = ReadOptions::default();
        if let Some(s) = &self.snapshot {
            o.set_snapshot(s);
        }
        o
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| MvccError::Corrupt(format!("missing column family {name}")))
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf_opt(self.cf(cf)?, key, &self.opts())?)
    }

    /// Reads a raw value of the `meta` column family.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(CF_META, key)
    }

    /// Users, roles and whether auth is enabled.
    pub fn auth(&self) -> Result<crate::auth::AuthState> {
        match self.get(CF_META, layout::META_AUTH)? {
            Some(raw) => decode(&raw, "auth state"),
            None => Ok(Default::default()),
        }
    }

    /// The raised alarms.
    pub fn alarms(&self) -> Result<Vec<cairn_api::AlarmMember>> {
        match self.get(CF_META, layout::META_ALARMS)? {
            Some(raw) => decode(&raw, "alarms"),
            None => Ok(Vec::new()),
        }
    }

    /// Takes this snapshot's counters from `cache` when it has them ([`crate::meta_cache`]).
    pub fn with_meta_cache(mut self, cache: &'a MetaCache) -> Self {
        self.meta_cache = Some(cache);
        self
    }

    /// The revision counters of this view.
    pub fn meta(&self) -> Result<StoreMeta> {
        if let (Some(cache), Some(snapshot)) = (self.meta_cache, &self.snapshot) {
            if let Some(meta) = cache.for_snapshot(snapshot.sequence_number()) {
                return Ok(meta);
            }
        }
        let revision = match self.get(CF_META, layout::META_REVISION)? {
            Some(b) => decode_i64(&b, "store revision")?,
            None => 1,
        };
        let compact_revision = match self.get(CF_META, layout::META_COMPACT_REVISION)? {
            Some(b) => decode_i64(&b, "compact revision")?,
            None => -1,
        };
        Ok(StoreMeta { revision, compact_revision })
    }

    /// The lease `id`, if granted and not yet revoked.
    pub fn get_lease(&self, id: i64) -> Result<Option<LeaseRecord>> {
        match self.get(CF_LEASES, &layout::lease_key(id))? {
            Some(b) => Ok(Some(LeaseRecord::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Every lease, in id order.
    pub fn leases(&self) -> Result<Vec<(i64, LeaseRecord)>> {
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_LEASES)?, self.opts());
        it.seek_to_first();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let id = u64::from_be_bytes(k.try_into().map_err(|_| MvccError::Corrupt("lease key".into()))?) as i64;
            out.push((id, LeaseRecord::decode(v)?));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The leases whose deadline is at or before `now_ms`, at most `max` of them.
    pub fn expired_leases(&self, now_ms: i64, max: usize) -> Result<Vec<i64>> {
        Ok(self.leases()?.into_iter().filter(|(_, l)| l.deadline_ms <= now_ms).map(|(id, _)| id).take(max).collect())
    }

    /// The keys attached to lease `id`, in key order.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        let prefix = layout::lease_key(id);
        let mut opts = self.opts();
        if id != -1 {
            opts.set_iterate_upper_bound(layout::lease_key(id.wrapping_add(1)).to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_LEASE_KEYS)?, opts);
        it.seek(prefix);
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            match k.strip_prefix(&prefix[..]) {
                Some(key) => out.push(key.to_vec()),
                None => break,
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The version of `key` live just before `revision`, from history.
    fn version_before(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>> {
        let mut opts = self.opts();
        opts.set_iterate_upper_bound(layout::history_key_after(key));
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_HISTORY)?, opts);
        it.seek(layout::history_key(key, revision - 1));
        match it.value() {
            Some(v) => {
                let version: Version = decode(v, "history version")?;
                Ok((!version.tombstone).then(|| version.into_kv(key.to_vec())))
            }
            None => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// The events of revisions `from..=to`, read from storage, stopping after the revision
    /// at which their size passes `max_bytes` (whole revisions only). Returns the events and
    /// the revision to continue from.
    pub fn events(&self, from: i64, to: i64, with_prev: bool, max_bytes: usize) -> Result<(Vec<Event>, i64)> {
        let mut opts = self.opts();
        opts.set_iterate_upper_bound(layout::revision_key(to + 1, 0).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(layout::CF_REVISIONS)?, opts);
        it.seek(layout::revision_key(from, 0));
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut last_main = from - 1;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (main, _) = layout::decode_revision_key(k).ok_or_else(|| MvccError::Corrupt("revision key".into()))?;
            if main != last_main && bytes > max_bytes {
                return Ok((out, main));
            }
            last_main = main;
            let change: Change = decode(v, "revision change")?;
            let kv = if change.tombstone {
                KeyValue { key: change.key.clone(), mod_revision: main, ..Default::default() }
            } else {
                let raw = self
                    .get(CF_HISTORY, &layout::history_key(&change.key, main))?
                    .ok_or_else(|| MvccError::Corrupt(format!("no history for revision {main}")))?;
                decode::<Version>(&raw, "history version")?.into_kv(change.key.clone())
            };
            let prev_kv = if with_prev { self.version_before(&change.key, main)? } else { None };
            let event = Event { kind: if change.tombstone { EventKind::Delete } else { EventKind::Put }, kv, prev_kv };
            bytes += event.size();
            out.push(event);
            it.next();
        }
        it.status()?;
        Ok((out, to + 1))
    }

    /// A CRC-32 of the history at and below revision `rev`: every change in the change log
    /// and every version it refers to. Members that applied the same log agree on it
    /// (compaction is itself a logged command), so it detects a member whose store diverged.
    pub fn hash_kv(&self, rev: i64) -> Result<u32> {
        let mut hasher = crc32fast::Hasher::new();
        let mut opts = self.opts();
        opts.set_iterate_upper_bound(layout::revision_key(rev + 1, 0).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(layout::CF_REVISIONS)?, opts);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            hasher.update(k);
            hasher.update(v);
            let (main, _) = layout::decode_revision_key(k).ok_or_else(|| MvccError::Corrupt("revision key".into()))?;
            let change: Change = decode(v, "revision change")?;
            if !change.tombstone {
                if let Some(raw) = self.get(CF_HISTORY, &layout::history_key(&change.key, main))? {
                    hasher.update(&raw);
                }
            }
            it.next();
        }
        it.status()?;
        Ok(hasher.finalize())
    }

    /// The live version of `key`, if any.
    pub fn get_latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.get(CF_KV, key)? {
            Some(b) => Ok(Some(decode::<Version>(&b, "latest version")?.into_kv(key.to_vec()))),
            None => Ok(None),
        }
    }

    /// Calls `f` with every live key in `span`, in key order.
    pub(crate) fn scan_latest(&self, span: &KeySpan, f: &mut dyn FnMut(KeyValue)) -> Result<()> {
        let (start, end) = match span {
            KeySpan::Single(key) => {
                if let Some(kv) = self.get_latest(key)? {
                    f(kv);
                }
                return Ok(());
            }
            KeySpan::Span { start, end } => (*start, *end),
        };
        if end.is_some_and(|e| e <= start) {
            return Ok(());
        }
        let mut opts = self.opts();
        if let Some(end) = end {
            opts.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_KV)?, opts);
        it.seek(start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(decode::<Version>(v, "latest version")?.into_kv(k.to_vec()));
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Calls `f` with every key live at `revision` in `span`, in key order.
    pub(crate) fn scan_at(&self, span: &KeySpan, revision: i64, f: &mut dyn FnMut(KeyValue)) -> Result<()> {
        let (lower, upper) = match span {
            KeySpan::Single(key) => (layout::history_key_prefix(key), Some(layout::history_key_after(key))),
            KeySpan::Span { start, end } => {
                if end.is_some_and(|e| e <= *start) {
                    return Ok(());
                }
                (layout::history_lower_bound(start), end.map(layout::history_lower_bound))
            }
        };
        let mut opts = self.opts();
        if let Some(upper) = upper {
            opts.set_iterate_upper_bound(upper);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_HISTORY)?, opts);
        it.seek(&lower);
        while let Some(raw) = it.key() {
            let (key, rev) = layout::decode_history_key(raw)
                .ok_or_else(|| MvccError::Corrupt("undecodable history key".into()))?;
            if rev > revision {
                // Newer than asked: jump to this key's newest version at or below `revision`
                // (or, when it has none, to the next key).
                it.seek(layout::history_key(&key, revision));
                continue;
            }
            let version: Version = decode(it.value().unwrap_or_default(), "history version")?;
            if !version.tombstone {
                f(version.into_kv(key.clone()));
            }
            it.seek(layout::history_key_after(&key));
        }
        it.status()?;
        Ok(())
    }

    /// The latest versions in `span`, with `overlay` (pending changes) laid over the stored ones.
    fn scan_latest_with(&self, span: &KeySpan, overlay: &Overlay, f: &mut dyn FnMut(KeyValue)) -> Result<()> {
        let mut pending = overlay.iter().filter(|(k, _)| span.contains(k)).peekable();
        self.scan_latest(span, &mut |kv| {
            // Pending keys up to this stored one, in order; a pending version of this very key
            // (or its pending delete) replaces the stored one.
            let mut replaced = false;
            while let Some((k, v)) = pending.next_if(|(k, _)| k.as_slice() <= kv.key.as_slice()) {
                replaced |= k.as_slice() == kv.key.as_slice();
                if let Some(pending_kv) = v {
                    f(pending_kv.clone());
                }
            }
            if !replaced {
                f(kv);
            }
        })?;
        for (_, v) in pending {
            if let Some(kv) = v {
                f(kv.clone());
            }
        }
        Ok(())
    }

    /// Serves a range request on this view; the header revision is the view's store revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let meta = self.meta()?;
        let out = self.range_with(req, meta, &Overlay::new())?;
        Ok(RangeResponse {
            header: ResponseHeader { revision: meta.revision, ..Default::default() },
            kvs: out.kvs,
            more: out.more,
            count: out.count,
        })
    }

    /// Serves a range request as of `meta`, seeing `overlay` for reads at the pending revision.
    pub(crate) fn range_with(&self, req: &RangeRequest, meta: StoreMeta, overlay: &Overlay) -> Result<RangeResult> {
        // With pending changes, the command being applied is at meta.revision + 1.
        let current = meta.revision + i64::from(!overlay.is_empty());
        let revision = if req.revision <= 0 { current } else { req.revision };
        if revision > current {
            return Err(StoreError::FutureRevision.into());
        }
        if revision < meta.compact_revision {
            return Err(StoreError::Compacted.into());
        }

        let filtered = req.min_mod_revision > 0
            || req.max_mod_revision > 0
            || req.min_create_revision > 0
            || req.max_create_revision > 0;
        let sorted = !matches!(
            (req.sort_order, req.sort_target),
            (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key)
        );
        // Without sorting or filters, only limit+1 rows are kept (to know `more`); the count is
        // of every key in the span either way.
        let keep = match (req.limit > 0 && !sorted && !filtered, req.count_only) {
            (_, true) => 0,
            (true, false) => (req.limit as usize).saturating_add(1),
            (false, false) => usize::MAX,
        };
        let mut out = RangeResult::default();
        let span = KeySpan::new(&req.key, &req.range_end);
        // Values sorted on must be kept until sorted.
        let strip_early = req.keys_only && !(sorted && req.sort_target == SortTarget::Value);
        let mut collect = |mut kv: KeyValue| {
            out.count += 1;
            if out.kvs.len() < keep {
                if strip_early {
                    kv.value = Vec::new();
                }
                out.kvs.push(kv);
            }
        };
        if revision == current {
            self.scan_latest_with(&span, overlay, &mut collect)?;
        } else {
            self.scan_at(&span, revision, &mut collect)?;
        }

        if filtered {
            out.kvs.retain(|kv| {
                (req.min_mod_revision <= 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision <= 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision <= 0 || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision <= 0 || kv.create_revision <= req.max_create_revision)
            });
        }
        if sorted {
            sort_kvs(&mut out.kvs, req.sort_order, req.sort_target);
        }
        if req.limit > 0 && out.kvs.len() > req.limit as usize {
            out.kvs.truncate(req.limit as usize);
            out.more = true;
        }
        if req.keys_only && !strip_early {
            out.kvs.iter_mut().for_each(|kv| kv.value = Vec::new());
        }
        Ok(out)
    }
}

/// etcd's sort: a target other than the key with no order sorts ascending.
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let key = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| key(b, a)),
        SortOrder::None | SortOrder::Ascend => kvs.sort_by(key),
    }
}
