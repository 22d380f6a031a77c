//! The store's revision counters as the last write left them, kept in memory so that a read
//! need not look them up in RocksDB.
//!
//! Every read answers with the store revision of its snapshot (and checks the compaction
//! point). Looking both up in the `meta` column family cost two of a single-key read's three
//! point lookups, about a third of its storage time (measured with `perf`, serializable range
//! at 100 clients).
//!
//! The counters may be used for a snapshot only if they describe it exactly. The one writer
//! (the state machine) calls [`MetaCache::writing`] before it writes a batch and
//! [`MetaCache::written`] after, with the database's sequence number at that moment. A reader
//! takes its snapshot first and asks the cache second. If the cache holds counters published
//! at sequence `p` and the snapshot's sequence `s` is at least `p`, the snapshot holds that
//! write and no later one: a later write would have marked the cache stale before it started,
//! and the reader, asking after its snapshot was taken, would have found the mark (or newer
//! counters with a larger `p`). In every other case the reader looks the counters up in its
//! snapshot as before. Writes of other column families (the Raft log's state) only raise the
//! sequence, which keeps `s >= p` true and the counters valid.

use std::sync::Mutex;

use crate::read::StoreMeta;

/// The counters of the last written batch, or none while a batch is being written.
#[derive(Default)]
pub struct MetaCache(Mutex<Option<(u64, StoreMeta)>>);

impl MetaCache {
    /// A batch that may change the counters is about to be written: forget them until
    /// [`MetaCache::written`].
    pub fn writing(&self) {
        *self.lock() = None;
    }

    /// The batch is written; `sequence` is the database's latest sequence number after it and
    /// `meta` the counters it left.
    pub fn written(&self, sequence: u64, meta: StoreMeta) {
        *self.lock() = Some((sequence, meta));
    }

    /// The counters of a snapshot whose sequence number is `sequence`, if known here.
    pub fn for_snapshot(&self, sequence: u64) -> Option<StoreMeta> {
        match *self.lock() {
            Some((published, meta)) if sequence >= published => Some(meta),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, StoreMeta)>> {
        // The value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: StoreMeta = StoreMeta { revision: 7, compact_revision: 3 };

    #[test]
    fn counters_serve_snapshots_at_or_after_their_write_only() {
        let cache = MetaCache::default();
        assert_eq!(cache.for_snapshot(100), None, "nothing published yet");
        cache.written(10, META);
        assert_eq!(cache.for_snapshot(9), None, "a snapshot before the write");
        assert_eq!(cache.for_snapshot(10), Some(META));
        assert_eq!(cache.for_snapshot(12), Some(META), "later writes of other column families");
        cache.writing();
        assert_eq!(cache.for_snapshot(12), None, "a write in progress");
        cache.written(15, StoreMeta { revision: 8, ..META });
        assert_eq!(cache.for_snapshot(12), None, "a snapshot from before the newer write");
        assert_eq!(cache.for_snapshot(15).map(|m| m.revision), Some(8));
    }
}
