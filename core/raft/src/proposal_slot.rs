//! The one proposal in flight: who may propose the next log entry.
//!
//! Writes are proposed one log entry at a time, and every write that arrives while an entry is
//! in flight waits for the next one (the group commit in `node.rs`). Under load a proposer task
//! gathers the waiting writes into each entry. A write that arrives when nothing is in flight
//! and nothing is queued takes the slot itself and proposes its own entry on its own task:
//! handing it to the proposer task and its outcome back costs two task wake-ups, a measurable
//! part of a lone client's latency. Whoever holds the slot, the next entry waits for it.

use tokio::sync::{Semaphore, SemaphorePermit};

/// A semaphore of one permit: tokio's, which already frees its permit on drop and wakes the
/// next waiter.
pub(crate) struct ProposalSlot(Semaphore);

/// Holds the slot; dropping it (also when the proposing future is cancelled) frees it.
pub(crate) type SlotGuard<'a> = SemaphorePermit<'a>;

impl Default for ProposalSlot {
    fn default() -> Self {
        ProposalSlot(Semaphore::new(1))
    }
}

impl ProposalSlot {
    /// The slot, if nobody holds it.
    pub fn try_take(&self) -> Option<SlotGuard<'_>> {
        self.0.try_acquire().ok()
    }

    /// Waits until the slot is free and takes it.
    pub async fn take(&self) -> SlotGuard<'_> {
        self.0.acquire().await.expect("the slot's semaphore is never closed")
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
        let _slot = tokio::time::timeout(Duration::from_secs(5), slot.take()).await.expect("freed by the cancellation");
    }
}
