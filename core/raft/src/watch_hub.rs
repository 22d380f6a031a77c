//! Fan-out of applied changes to watchers, with bounded memory.
//!
//! The state machine publishes the events of each new revision here after writing them. The
//! hub keeps the most recent revisions' events in a ring bounded in bytes and announces the new
//! store revision. Each watcher reads what it has not delivered yet from the ring; a watcher
//! that fell behind the ring (or starts in the past) reads from storage instead. So a slow
//! watcher costs no memory beyond its small channel, and never holds up writes or other
//! watchers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_api::Event;
use tokio::sync::watch;

/// The most event bytes the ring keeps.
const RING_BYTES: usize = 16 << 20;

struct Ring {
    /// (revision, its events), contiguous revisions in order.
    entries: VecDeque<(i64, Arc<Vec<Event>>)>,
    bytes: usize,
}

pub(crate) struct WatchHub {
    ring: Mutex<Ring>,
    revision: watch::Sender<i64>,
    /// The store's compaction revision: events at or below it carry no previous version.
    compact_revision: AtomicI64,
}

impl WatchHub {
    pub fn new(revision: i64) -> Self {
        WatchHub {
            ring: Mutex::new(Ring { entries: VecDeque::new(), bytes: 0 }),
            revision: watch::Sender::new(revision),
            compact_revision: AtomicI64::new(-1),
        }
    }

    pub fn set_compact_revision(&self, revision: i64) {
        self.compact_revision.store(revision, Ordering::Release);
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision.load(Ordering::Acquire)
    }

    /// Records the events of `revision` (the revision right after the last one published).
    pub fn publish(&self, revision: i64, events: Vec<Event>) {
        {
            let mut ring = self.ring.lock().expect("watch ring lock");
            if ring.entries.back().is_some_and(|(last, _)| *last + 1 != revision) {
                // Not contiguous (e.g. after a snapshot was installed): start over.
                ring.entries.clear();
                ring.bytes = 0;
            }
            ring.bytes += events.iter().map(Event::size).sum::<usize>();
            ring.entries.push_back((revision, Arc::new(events)));
            while ring.bytes > RING_BYTES && ring.entries.len() > 1 {
                if let Some((_, old)) = ring.entries.pop_front() {
                    ring.bytes -= old.iter().map(Event::size).sum::<usize>();
                }
            }
        }
        self.revision.send_replace(revision);
    }

    /// The store revision moved without events to publish (a snapshot was installed).
    pub fn reset(&self, revision: i64) {
        let mut ring = self.ring.lock().expect("watch ring lock");
        ring.entries.clear();
        ring.bytes = 0;
        drop(ring);
        self.revision.send_replace(revision);
    }

    /// The store revision last published.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// The events of revisions `next..=upto` if the ring still holds them all.
    pub fn since(&self, next: i64, upto: i64) -> Option<Vec<Arc<Vec<Event>>>> {
        let ring = self.ring.lock().expect("watch ring lock");
        let first = ring.entries.front()?.0;
        if next < first {
            return None;
        }
        let skip = (next - first) as usize;
        let revs: Vec<_> =
            ring.entries.iter().skip(skip).take_while(|(rev, _)| *rev <= upto).map(|(_, e)| e.clone()).collect();
        // Nothing for a revision that was announced (the ring was reset after a snapshot):
        // the caller reads storage instead of waiting on events the ring will never hold.
        if revs.is_empty() && next <= upto {
            return None;
        }
        Some(revs)
    }
}
