//! Tasks that run concurrently and are collected in the order they were
//! started: pages fetched (and decoded) ahead of the writer, handed over one
//! by one so checkpoints stay in order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

/// A spawned task that is aborted when its handle is dropped (a detached
/// tokio task would go on fetching pages nobody reads). Awaiting it yields
/// the task's output; a panic in the task resumes in the awaiting one.
pub struct AbortOnDrop<T>(JoinHandle<T>);

impl<T: Send + 'static> AbortOnDrop<T> {
    /// Start `task` on the runtime now.
    pub fn spawn(task: impl Future<Output = T> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(task))
    }

    /// Whether the task has finished (awaiting it will not wait).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(v) => v,
            // A panicking task panics its collector; the handle is never
            // aborted while it is being awaited, so that is the only failure.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        })
    }
}

/// Spawned tasks, collected first in, first out. Each runs on the runtime
/// from the moment it is pushed, whether or not the collector is waiting;
/// dropping the queue (or [`clear`](Self::clear)) aborts those not collected.
pub struct OrderedTasks<T> {
    queue: VecDeque<AbortOnDrop<T>>,
}

impl<T: Send + 'static> Default for OrderedTasks<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> OrderedTasks<T> {
    pub fn new() -> Self {
        OrderedTasks {
            queue: VecDeque::new(),
        }
    }

    /// Tasks started and not yet collected.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Start `task` now, behind those already queued.
    pub fn push(&mut self, task: impl Future<Output = T> + Send + 'static) {
        self.queue.push_back(AbortOnDrop::spawn(task));
    }

    /// The output of the oldest task, once it has finished; `None` when empty.
    pub async fn next(&mut self) -> Option<T> {
        let front = self.queue.pop_front()?;
        Some(front.await)
    }

    /// Abort every task not collected yet.
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn collected_in_start_order_while_running_concurrently() {
        let mut q = OrderedTasks::new();
        // Every task waits for all eight to have started (run one at a time
        // they would never get past the barrier), then later ones finish first.
        let all = Arc::new(tokio::sync::Barrier::new(8));
        for i in 0..8u64 {
            let all = all.clone();
            q.push(async move {
                all.wait().await;
                tokio::time::sleep(Duration::from_millis(40 - i * 5)).await;
                i
            });
        }
        let mut got = Vec::new();
        let collect = async {
            while let Some(i) = q.next().await {
                got.push(i);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), collect)
            .await
            .expect("the tasks did not all run at once");
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn clear_aborts_tasks_not_collected() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut q = OrderedTasks::new();
        for _ in 0..4 {
            let finished = finished.clone();
            q.push(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        q.clear();
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 0);
    }
}
