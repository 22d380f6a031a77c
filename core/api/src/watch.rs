//! Watches: a stream of the changes to a key or range, in revision order, from a start
//! revision (replaying history) or from now.

use serde::{Deserialize, Serialize};

use crate::{KeyValue, ResponseHeader, Revision};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key. For a delete, `kv` holds the key and the deleting revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The version before the change, when it is still in history.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// Rough memory/wire size, for bounding buffers and fragmenting answers.
    pub fn size(&self) -> usize {
        64 + self.kv.key.len() + self.kv.value.len() + self.prev_kv.as_ref().map_or(0, |p| p.key.len() + p.value.len())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0 or less: changes after the current revision.
    pub start_revision: Revision,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    /// Send a [`WatchMessage::Progress`] when an interval passes with nothing to deliver.
    pub progress_notify: bool,
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The changes of one or more whole revisions, in order; the header revision is the
    /// store revision when they were read.
    Events { header: ResponseHeader, events: Vec<Event> },
    /// Nothing to deliver for a while: every change up to the header revision was delivered.
    Progress { header: ResponseHeader },
    /// The start revision (or the watcher's position) was compacted away: the watch ends.
    Compacted { header: ResponseHeader, compact_revision: Revision },
}
