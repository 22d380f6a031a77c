//! Read-index rounds shared by concurrent linearizable reads.
//!
//! A linearizable read needs a read index obtained after the read arrived: on the leader, a
//! heartbeat round that confirms it still leads (openraft sends one to every voter per call);
//! on a follower, a request to the leader. Done per read, 100 concurrent reads cost 100 such
//! rounds. As in etcd, reads that arrive while a round is under way wait for the next one, and
//! one round answers all of them: the index it returns was obtained after each of them
//! arrived, so it serves them all.

use std::future::Future;

use cairn_api::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<StoreResult<u64>>;

/// One task running rounds one after another, each for every read queued before it started.
pub(crate) struct ReadRounds {
    queue: mpsc::UnboundedSender<Waiter>,
}

impl ReadRounds {
    /// Starts the task; `round` obtains one read index. The task ends with the last handle.
    pub fn spawn<F, Fut>(round: F) -> ReadRounds
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<u64>> + Send,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut readers = vec![first];
                while let Ok(w) = waiting.try_recv() {
                    readers.push(w);
                }
                let result = round().await;
                for r in readers {
                    let _ = r.send(result.clone());
                }
            }
        });
        ReadRounds { queue }
    }

    /// A read index obtained after this call began.
    pub async fn read_index(&self) -> StoreResult<u64> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| StoreError::Stopped)?;
        rx.await.unwrap_or(Err(StoreError::Stopped))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reads_waiting_together_share_one_round_and_later_reads_get_a_later_one() {
        let rounds_run = Arc::new(AtomicU64::new(0));
        let counter = rounds_run.clone();
        let rounds = Arc::new(ReadRounds::spawn(move || {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                // The index a round returns is the number of rounds started so far.
                Ok(counter.fetch_add(1, Ordering::SeqCst) + 1)
            }
        }));
        let first = tokio::spawn({
            let rounds = rounds.clone();
            async move { rounds.read_index().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // These arrive while round 1 runs: they must not get its answer.
        let later: Vec<_> = (0..20)
            .map(|_| {
                let rounds = rounds.clone();
                tokio::spawn(async move { rounds.read_index().await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Ok(1));
        for r in later {
            assert_eq!(r.await.unwrap(), Ok(2), "one round for all reads that waited together");
        }
        assert_eq!(rounds_run.load(Ordering::SeqCst), 2);
    }
}
