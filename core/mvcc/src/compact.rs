//! Compaction: drops the versions no read at or above the compaction revision can see.
//!
//! Only keys changed since the previous compaction can have newly superseded versions, and the
//! `revisions` column family lists exactly those, so a compaction costs what changed since the
//! last one, not the size of the store. For each such key, the newest version at or below the
//! compaction revision stays (unless it is a delete) and every older one goes.

use std::collections::BTreeSet;

use cairn_api::StoreError;
use rocksdb::{ReadOptions, WriteBatch};

use crate::codec::{decode, encode_i64, Change, Version};
use crate::error::{MvccError, Result};
use crate::layout::{self, CF_HISTORY, CF_META, CF_REVISIONS};
use crate::read::StoreMeta;
use crate::Db;

pub(crate) fn compact(db: &Db, batch: &mut WriteBatch, meta: StoreMeta, revision: i64) -> Result<()> {
    if revision <= meta.compact_revision {
        return Err(StoreError::Compacted.into());
    }
    if revision > meta.revision {
        return Err(StoreError::FutureRevision.into());
    }
    let cf = |name| db.cf_handle(name).ok_or_else(|| MvccError::Corrupt(format!("missing column family {name}")));
    let (revs_cf, hist_cf) = (cf(CF_REVISIONS)?, cf(CF_HISTORY)?);

    let mut touched = BTreeSet::new();
    let start = layout::revision_key(meta.compact_revision + 1, 0);
    let end = layout::revision_key(revision + 1, 0);
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(end.to_vec());
    let mut it = db.raw_iterator_cf_opt(revs_cf, opts);
    it.seek(start);
    while let Some(v) = it.value() {
        touched.insert(decode::<Change>(v, "revision change")?.key);
        it.next();
    }
    it.status()?;

    for key in touched {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(layout::history_key_after(&key));
        let mut it = db.raw_iterator_cf_opt(hist_cf, opts);
        // Lands on the newest version at or below `revision`.
        it.seek(layout::history_key(&key, revision));
        let mut newest = true;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let drop = !newest || decode::<Version>(v, "history version")?.tombstone;
            if drop {
                batch.delete_cf(hist_cf, k);
            }
            newest = false;
            it.next();
        }
        it.status()?;
    }
    // The changes at the compaction revision itself stay, so a watch started there still sees
    // them (etcd allows watching from the compaction revision).
    batch.delete_range_cf(revs_cf, layout::revision_key(0, 0), layout::revision_key(revision, 0));
    batch.put_cf(cf(CF_META)?, layout::META_COMPACT_REVISION, encode_i64(revision));
    Ok(())
}
