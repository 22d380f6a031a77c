//! v2 watches (`GET ?wait=true[&waitIndex=N][&recursive=true][&stream=true]`) over a v3 watch
//! from revision N: the first change of the key (or of anything under it) at or after N.

use std::collections::VecDeque;

use cairn_api::{prefix_range_end, Event as V3Event, EventKind, KeyValue, RangeRequest, ReadConsistency, StoreError, WatchMessage, WatchRequest};
use futures::{Stream, StreamExt};

use super::error::*;
use super::model::{clean, dir_prefix, file_key, Event, Node};
use super::store::{Stat, V2Store};
use crate::Store;

/// A v3 key as a v2 node path: `(path, is_dir)`; None for keys without a v2 path.
fn v2_path(key: &[u8]) -> Option<(String, bool)> {
    let s = std::str::from_utf8(key).ok()?;
    if !s.starts_with('/') || s == "/" {
        return None;
    }
    let (p, dir) = match s.strip_suffix('/') {
        Some(p) => (p, true),
        None => (s, false),
    };
    (clean(p) == p).then(|| (p.to_string(), dir))
}

fn watched(watch: &str, recursive: bool, path: &str) -> bool {
    path == watch || (recursive && (watch == "/" || path.strip_prefix(watch).is_some_and(|r| r.starts_with('/'))))
}

fn under(dir: &str, path: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn prev_node(path: &str, dir: bool, kv: &KeyValue) -> Node {
    Node {
        key: Some(path.to_string()),
        value: (!dir).then(|| String::from_utf8_lossy(&kv.value).into_owned()),
        dir,
        modified_index: kv.mod_revision,
        created_index: kv.create_revision,
        ..Default::default()
    }
}

/// The v2 events of the v3 events of one or more revisions, for a watcher of `watch`.
/// A directory marker made as the parent of a key written in the same revision is not an event
/// of its own (etcd makes parents silently); a directory deleted with its contents is one event.
async fn convert<S: Store>(v2: &V2Store<S>, watch: &str, recursive: bool, events: Vec<V3Event>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let rev = events[i].kv.mod_revision;
        let mut j = i;
        while j < events.len() && events[j].kv.mod_revision == rev {
            j += 1;
        }
        let group: Vec<(Option<(String, bool)>, &V3Event)> = events[i..j].iter().map(|e| (v2_path(&e.kv.key), e)).collect();
        let deleted_dirs: Vec<String> = group
            .iter()
            .filter(|(p, e)| e.kind == EventKind::Delete && p.as_ref().is_some_and(|(_, d)| *d))
            .filter_map(|(p, _)| p.as_ref().map(|(p, _)| p.clone()))
            .collect();
        for (target, e) in &group {
            let Some((path, dir)) = target else { continue };
            if !watched(watch, recursive, path) {
                continue;
            }
            let inside_other = |p: &str| group.iter().any(|(o, _)| o.as_ref().is_some_and(|(op, _)| under(p, op)));
            match e.kind {
                EventKind::Put => {
                    if *dir && inside_other(path) {
                        continue;
                    }
                    let mut node = prev_node(path, *dir, &e.kv);
                    if e.kv.lease != 0 {
                        if let Ok(t) = v2.store.lease_time_to_live(e.kv.lease, false).await {
                            if t.ttl >= 0 {
                                node.ttl = t.ttl.max(1);
                                node.expiration = Some((chrono::Utc::now() + chrono::Duration::seconds(node.ttl)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
                            }
                        }
                    }
                    let prev = e.prev_kv.as_ref().map(|p| prev_node(path, *dir, p));
                    out.push(Event { action: "set", node: Some(node), prev_node: prev });
                }
                EventKind::Delete => {
                    if deleted_dirs.iter().any(|d| under(d, path) && watched(watch, recursive, d)) {
                        continue;
                    }
                    let mut action = "delete";
                    if let Some(prev) = &e.prev_kv {
                        if prev.lease != 0 && v2.store.lease_time_to_live(prev.lease, false).await.map(|t| t.ttl < 0).unwrap_or(false) {
                            action = "expire";
                            v2.stats.add(Stat::ExpireCount);
                        }
                    }
                    let node = Node {
                        key: Some(path.clone()),
                        dir: *dir,
                        modified_index: e.kv.mod_revision,
                        created_index: e.prev_kv.as_ref().map_or(0, |p| p.create_revision),
                        ..Default::default()
                    };
                    let prev = e.prev_kv.as_ref().map(|p| prev_node(path, *dir, p));
                    out.push(Event { action, node: Some(node), prev_node: prev });
                }
            }
        }
        i = j;
    }
    out
}

/// The store, counting a watcher while it lives.
struct WatcherGauge<S: Store>(std::sync::Arc<V2Store<S>>);

impl<S: Store> Drop for WatcherGauge<S> {
    fn drop(&mut self) {
        self.0.stats.sub(Stat::Watchers);
    }
}

impl<S: Store> V2Store<S> {
    /// Starts a watch: the index it starts at (X-Etcd-Index) and its events. `since` 0 means
    /// "from the next change".
    pub async fn watch(
        self: std::sync::Arc<Self>,
        path: String,
        recursive: bool,
        since: u64,
    ) -> Result<(i64, impl Stream<Item = Event> + Send + 'static), V2Error> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let current = self.current_revision().await;
        if since > 0 {
            let probe = RangeRequest { key: b"/".to_vec(), revision: since, count_only: true, consistency: ReadConsistency::Serializable, ..Default::default() };
            if let Err(StoreError::Compacted) = self.store.range(probe).await {
                let compacted = self.compact_revision(since).await;
                return Err(V2Error::new(
                    EVENT_INDEX_CLEARED,
                    format!("the requested history has been cleared [{compacted}/{since}]"),
                    current,
                ));
            }
        }
        let (key, range_end) = if path == "/" {
            (b"/".to_vec(), prefix_range_end(b"/"))
        } else {
            (file_key(&path), prefix_range_end(&dir_prefix(&path)))
        };
        let req = WatchRequest { key, range_end, start_revision: since, prev_kv: true, ..Default::default() };
        let (header, messages) = match self.store.watch(req).await {
            Ok(w) => w,
            Err(e) => return Err(V2Error::from_store(e, current)),
        };
        self.stats.add(Stat::Watchers);
        let state = (WatcherGauge(self), messages, VecDeque::<Event>::new(), path);
        let events = futures::stream::unfold(state, move |(v2, mut messages, mut pending, path)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((e, (v2, messages, pending, path)));
                }
                match messages.next().await? {
                    WatchMessage::Events { events, .. } => {
                        let converted = convert(&v2.0, &path, recursive, events).await;
                        pending.extend(converted);
                    }
                    WatchMessage::Progress { .. } => {}
                    WatchMessage::Compacted { .. } => return None,
                }
            }
        });
        Ok((header.revision, events))
    }

    /// The compaction revision (what a watch from `since` is told).
    async fn compact_revision(&self, since: i64) -> i64 {
        let req = WatchRequest { key: b"/".to_vec(), start_revision: since, ..Default::default() };
        if let Ok((_, mut messages)) = self.store.watch(req).await {
            let first = tokio::time::timeout(std::time::Duration::from_secs(1), messages.next()).await;
            if let Ok(Some(WatchMessage::Compacted { compact_revision, .. })) = first {
                return compact_revision;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_keys_as_v2_paths() {
        assert_eq!(v2_path(b"/a/b"), Some(("/a/b".into(), false)));
        assert_eq!(v2_path(b"/a/b/"), Some(("/a/b".into(), true)));
        assert_eq!(v2_path(b"a"), None);
        assert_eq!(v2_path(b"/a//b"), None);
        assert!(watched("/a", true, "/a/b/c"));
        assert!(!watched("/a", false, "/a/b"));
        assert!(!watched("/a", true, "/ab"));
        assert!(watched("/", true, "/x"));
    }
}
