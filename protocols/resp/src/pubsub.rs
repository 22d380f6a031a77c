//! SUBSCRIBE/PSUBSCRIBE to keyspace notifications, fed by Cairn's watch.
//!
//! Redis publishes `__keyspace@0__:<key>` (message: the event) and `__keyevent@0__:<event>`
//! (message: the key) when `notify-keyspace-events` asks for them; Cairn always does, and
//! derives them from v3 watch events: a put is `set`, a delete (DEL, or a lease that ended) is
//! `del`. Each subscription is one watch task that forwards matching messages to the
//! connection; unsubscribing aborts the task, which drops the watch. A channel that is not a
//! notification channel can be subscribed to but never carries a message (Cairn has no PUBLISH).

use bytes::Bytes;
use cairn_api::{EventKind, StoreResult, Watch, WatchMessage, WatchRequest};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::glob;
use crate::reply::Reply;

const KEYSPACE: &[u8] = b"__keyspace@0__:";
const KEYEVENT: &[u8] = b"__keyevent@0__:";

/// A message for the connection: `message` or `pmessage` frames, ready to encode.
pub type Outbox = mpsc::Sender<Reply>;

/// The subscriptions of one connection.
#[derive(Default)]
pub struct Subscriptions {
    channels: Vec<(Bytes, Option<JoinHandle<()>>)>,
    patterns: Vec<(Bytes, JoinHandle<()>)>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.clear();
    }
}

fn event_name(kind: EventKind) -> &'static [u8] {
    match kind {
        EventKind::Put => b"set",
        EventKind::Delete => b"del",
    }
}

fn cat(a: &[u8], b: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    Bytes::from(v)
}

impl Subscriptions {
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub fn channels(&self) -> Vec<Bytes> {
        self.channels.iter().map(|(c, _)| c.clone()).collect()
    }

    pub fn patterns(&self) -> Vec<Bytes> {
        self.patterns.iter().map(|(p, _)| p.clone()).collect()
    }

    pub fn clear(&mut self) {
        for (_, h) in self.channels.drain(..) {
            if let Some(h) = h {
                h.abort();
            }
        }
        for (_, h) in self.patterns.drain(..) {
            h.abort();
        }
    }

    /// Subscribes to `channel` (no-op when already subscribed); the watch is started before
    /// this returns, so a write after the acknowledgement is seen.
    pub async fn subscribe<S: Watch>(&mut self, store: &S, channel: Bytes, out: Outbox) -> StoreResult<()> {
        if self.channels.iter().any(|(c, _)| *c == channel) {
            return Ok(());
        }
        let name = channel.clone();
        let task = if let Some(key) = channel.strip_prefix(KEYSPACE).filter(|k| !k.is_empty()) {
            let req = WatchRequest { key: key.to_vec(), ..Default::default() };
            Some(spawn_watch(store, req, move |kind, _key| {
                vec![Reply::Array(vec![Reply::bulk("message"), Reply::Bulk(channel.clone()), Reply::bulk(event_name(kind))])]
            }, out).await?)
        } else if let Some(event) = channel.strip_prefix(KEYEVENT) {
            let (no_put, no_delete) = match event {
                b"set" => (false, true),
                b"del" => (true, false),
                _ => (true, true),
            };
            if no_put && no_delete {
                None
            } else {
                let req = WatchRequest { key: vec![0], range_end: vec![0], no_put, no_delete, ..Default::default() };
                Some(spawn_watch(store, req, move |_kind, key| {
                    vec![Reply::Array(vec![Reply::bulk("message"), Reply::Bulk(channel.clone()), Reply::bulk(key)])]
                }, out).await?)
            }
        } else {
            None
        };
        self.channels.push((name, task));
        Ok(())
    }

    pub async fn psubscribe<S: Watch>(&mut self, store: &S, pattern: Bytes, out: Outbox) -> StoreResult<()> {
        if self.patterns.iter().any(|(p, _)| *p == pattern) {
            return Ok(());
        }
        // Watch only the keys the pattern can name, when its literal part fixes a key prefix.
        let literal = glob::literal_prefix(&pattern);
        let req = match literal.strip_prefix(KEYSPACE) {
            Some(prefix) if !prefix.is_empty() => {
                WatchRequest { key: prefix.to_vec(), range_end: cairn_api::prefix_range_end(prefix), ..Default::default() }
            }
            _ => WatchRequest { key: vec![0], range_end: vec![0], ..Default::default() },
        };
        let p = pattern.clone();
        let task = spawn_watch(store, req, move |kind, key| {
            let mut msgs = Vec::new();
            let ev = event_name(kind);
            for (channel, payload) in [(cat(KEYSPACE, key), Bytes::copy_from_slice(ev)), (cat(KEYEVENT, ev), Bytes::copy_from_slice(key))] {
                if glob::matches(&p, &channel) {
                    msgs.push(Reply::Array(vec![Reply::bulk("pmessage"), Reply::Bulk(p.clone()), Reply::Bulk(channel), Reply::Bulk(payload)]));
                }
            }
            msgs
        }, out)
        .await?;
        self.patterns.push((pattern, task));
        Ok(())
    }

    /// Removes `channel`; false when it was not subscribed.
    pub fn unsubscribe(&mut self, channel: &[u8]) -> bool {
        match self.channels.iter().position(|(c, _)| c == channel) {
            Some(i) => {
                if let (_, Some(h)) = self.channels.remove(i) {
                    h.abort();
                }
                true
            }
            None => false,
        }
    }

    pub fn punsubscribe(&mut self, pattern: &[u8]) -> bool {
        match self.patterns.iter().position(|(p, _)| p == pattern) {
            Some(i) => {
                self.patterns.remove(i).1.abort();
                true
            }
            None => false,
        }
    }
}

async fn spawn_watch<S: Watch>(
    store: &S,
    req: WatchRequest,
    render: impl Fn(EventKind, &[u8]) -> Vec<Reply> + Send + 'static,
    out: Outbox,
) -> StoreResult<JoinHandle<()>> {
    let (_, mut stream) = store.watch(req).await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let WatchMessage::Events { events, .. } = msg else { continue };
            for ev in events {
                for m in render(ev.kind, &ev.kv.key) {
                    if out.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
    }))
}
