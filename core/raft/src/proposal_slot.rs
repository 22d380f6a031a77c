//! The one proposal in flight: who may propose the next log entry.
//!
//! Writes are proposed one log entry at a time, and every write that arrives while an entry is
//! in flight waits for the next one (the group commit in `node.rs`). Under load a proposer task
//! gathers the waiting writes into each entry. A write that arrives when nothing is in flight
//! and nothing is queued takes the slot itself and proposes its own entry on its own task:
//! handing it to the proposer task and its outcome back costs two task wake-ups, a measurable
//! part of a lone client's latency. Whoever holds the slot, the next entry waits for it.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct ProposalSlot {
    taken: AtomicBool,
    freed: Notify,
}

/// Holds the slot; dropping it (also when the proposing future is cancelled) frees it.
pub(crate) struct SlotGuard<'a>(&'a ProposalSlot);

impl ProposalSlot {
    /// The slot, if nobody holds it.
    pub fn try_take(&self) -> Option<SlotGuard<'_>> {
        self.taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            // Lazily: a guard made for a failed attempt would free the holder's slot on drop.
            .then(|| SlotGuard(self))
    }

    /// Waits until the slot is free and takes it.
    pub async fn take(&self) -> SlotGuard<'_> {
        loop {
            if let Some(guard) = self.try_take() {
                return guard;
            }
            // A release between the failed try and this wait leaves a permit: no lost wake-up.
            self.freed.notified().await;
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.taken.store(false, Ordering::Release);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn one_holder_at_a_time() {
        let slot = ProposalSlot::default();
        let first = slot.try_take().expect("free at first");
        assert!(slot.try_take().is_none(), "held");
        assert!(slot.try_take().is_none(), "still held after a failed attempt");
        drop(first);
        assert!(slot.try_take().is_some(), "freed by the drop");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_when_it_is_freed() {
        let slot = Arc::new(ProposalSlot::default());
        let held = slot.try_take().expect("free");
        let waiter = {
            let slot = slot.clone();
            tokio::spawn(async move {
                let _g = slot.take().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while the slot is held");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("task");
        assert!(slot.try_take().is_some(), "the waiter released it");
    }

    #[tokio::test]
    async fn a_cancelled_holder_frees_the_slot() {
        let slot = Arc::new(ProposalSlot::default());
        let holder = {
            let slot = slot.clone();
            tokio::spawn(async move {
                let _g = slot.take().await;
                std::future::pending::<()>().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(slot.try_take().is_none(), "held by the task");
        holder.abort();
        let _ = holder.await;
        tokio::time::timeout(Duration::from_secs(5), slot.take()).await.expect("freed by the cancellation");
    }
}
