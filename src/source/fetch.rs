//! Fetching a scan's pages: in order, bounded, aborted when dropped.
//!
//! [`PageFetcher`] drives one scan with a [`Paginator`]: it makes the
//! paginator's requests one after another while each needs the previous
//! page, and, once the first page tells how many there are
//! ([`Paginator::remaining`]), fetches the rest `concurrency` at a time,
//! handing them over in order so checkpoints stay in order. Every request
//! passes the scan's [`ScanGuard`], so a scan always terminates. Tasks
//! not collected are aborted when the fetcher is dropped (a failed sync
//! stops fetching at once).
//!
//! [`OrderedTasks`] is the queue underneath: spawned tasks collected first
//! in, first out.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use url::Url;

use super::paginate::{empty_but_more, PageView, Paginator, ScanGuard};
use crate::http::{HttpError, Response};

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

/// Sends one page request (cloned into the tasks that fetch ahead).
pub type Sender =
    Arc<dyn Fn(Url) -> BoxFuture<'static, Result<Response, HttpError>> + std::marker::Send + Sync>;

/// Why a page could not be fetched: the request failed, or the scan must
/// stop (a loop, the page limit, a page contradicting the first one).
#[derive(Debug)]
pub enum FetchError {
    Http(HttpError),
    Pagination(String),
}

/// One scan's pages, in order. Call [`next`](Self::next) for a page, then
/// [`advance`](Self::advance) with what it said, until `next` gives `None`.
pub struct PageFetcher {
    paginator: Box<dyn Paginator>,
    send: Sender,
    guard: ScanGuard,
    /// The next sequential request.
    next: Option<Url>,
    /// Concurrent mode: the requests not started, and those in flight.
    queued: VecDeque<Url>,
    inflight: OrderedTasks<(Url, Result<Response, HttpError>)>,
    fanned_out: bool,
    concurrency: usize,
    pages: u64,
}

impl PageFetcher {
    /// A scan starting at `url` (the paginator adds its parameters),
    /// at most `max_pages` pages, `concurrency` in flight where pages are
    /// independent.
    pub fn new(
        mut paginator: Box<dyn Paginator>,
        url: Url,
        send: Sender,
        max_pages: u64,
        concurrency: usize,
    ) -> Self {
        let first = paginator.start(url);
        PageFetcher {
            paginator,
            send,
            guard: ScanGuard::new(max_pages),
            next: Some(first),
            queued: VecDeque::new(),
            inflight: OrderedTasks::new(),
            fanned_out: false,
            concurrency: concurrency.max(1),
            pages: 0,
        }
    }

    /// The next page and the URL it was asked for; `None` when the scan is complete.
    pub async fn next(&mut self) -> Option<Result<(Url, Response), FetchError>> {
        if self.fanned_out {
            while self.inflight.len() < self.concurrency {
                let Some(url) = self.queued.pop_front() else {
                    break;
                };
                let send = self.send.clone();
                self.inflight.push(async move {
                    let r = send(url.clone()).await;
                    (url, r)
                });
            }
            let (url, r) = self.inflight.next().await?;
            self.pages += 1;
            return Some(match self.guard.count() {
                Err(m) => Err(FetchError::Pagination(m)),
                Ok(()) => r.map(|resp| (url, resp)).map_err(FetchError::Http),
            });
        }
        let url = self.next.take()?;
        if let Err(m) = self.guard.visit(&url) {
            return Some(Err(FetchError::Pagination(m)));
        }
        self.pages += 1;
        Some(
            (self.send)(url.clone())
                .await
                .map(|r| (url, r))
                .map_err(FetchError::Http),
        )
    }

    /// Tell the paginator what the page just fetched said. Errors when the
    /// page contradicts the scan (empty while more are said to follow, a
    /// next page pointing back).
    pub fn advance(&mut self, page: &PageView) -> Result<(), String> {
        if self.fanned_out {
            if page.records == 0 {
                return Err(empty_but_more("the total the first page gave"));
            }
            return Ok(());
        }
        let next = self.paginator.next(page)?;
        if next.is_some() && self.pages == 1 && self.concurrency > 1 {
            if let Some(urls) = self.paginator.remaining(page) {
                tracing::debug!(
                    pages = urls.len(),
                    in_flight = self.concurrency,
                    "fetching the other pages concurrently"
                );
                self.queued = urls.into();
                self.fanned_out = true;
                return Ok(());
            }
        }
        if let Some(u) = &next {
            self.guard.check(u)?;
        }
        self.next = next;
        Ok(())
    }

    /// The records the whole scan holds, when the page says.
    pub fn total_records(&self, page: &PageView) -> Option<u64> {
        self.paginator.total_records(page)
    }

    /// Where a resumable scan stands (after `advance`).
    pub fn position(&self) -> Option<u64> {
        self.paginator.position()
    }

    /// Where a scan that resumes after an id stands (after `advance`).
    pub fn cursor(&self) -> Option<&str> {
        self.paginator.cursor()
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether every page has been handed over (the last `advance` was the last page's).
    pub fn complete(&self) -> bool {
        match self.fanned_out {
            true => self.queued.is_empty() && self.inflight.is_empty(),
            false => self.next.is_none(),
        }
    }
}

/// Pages of an offset list fetched ahead, for sources whose page requests
/// are computed from an offset (a POST body, `startIndex`): each task
/// (the request and whatever the connector does with the answer, decoding
/// included) is launched by the connector's closure and handed back in
/// offset order.
///
/// Pages are launched ahead only below a bound (the list's size, once
/// known: a count request, a total on a page, the last scan's size);
/// without one, one page at a time. The connector reads each page, says
/// whether it was the last ([`stop`](Self::stop) aborts those in flight
/// past it) and raises the bound as it learns more.
pub struct OffsetPages<T> {
    first: u64,
    next: u64,
    step: u64,
    bound: Option<u64>,
    window: usize,
    max_in_flight: usize,
    grow: bool,
    inflight: OrderedTasks<(u64, T)>,
    launching: bool,
    guard: ScanGuard,
}

impl<T: std::marker::Send + 'static> OffsetPages<T> {
    /// From offset `start`, `step` apart, at most `max_in_flight` pages
    /// ahead and `max_pages` pages in all.
    pub fn new(start: u64, step: u64, max_in_flight: usize, max_pages: u64) -> Self {
        OffsetPages {
            first: start,
            next: start,
            step: step.max(1),
            bound: None,
            window: max_in_flight.max(1),
            max_in_flight: max_in_flight.max(1),
            grow: false,
            inflight: OrderedTasks::new(),
            launching: true,
            guard: ScanGuard::new(max_pages),
        }
    }

    /// Launch one page first, then twice as many after each page read (for
    /// a scan that usually stops after a page or two).
    pub fn growing(mut self) -> Self {
        self.window = 1;
        self.grow = true;
        self
    }

    /// Launch ahead up to offset `bound` (raised, never lowered).
    pub fn raise_bound(&mut self, bound: u64) {
        self.bound = Some(self.bound.map_or(bound, |b| b.max(bound)));
    }

    /// Whether nothing can be launched until a bound is known (the first
    /// page is read and nothing else is in flight).
    pub fn needs_bound(&self) -> bool {
        self.bound.is_none() && self.inflight.is_empty() && self.next > self.first
    }

    /// Launch what the bound allows with `launch(offset)`, then the next page
    /// in offset order; `None` when every page launched has been handed over
    /// and no more may be. Errors past the scan's page limit.
    pub async fn next<F>(&mut self, mut launch: F) -> Option<Result<(u64, T), String>>
    where
        F: FnMut(u64) -> BoxFuture<'static, T>,
    {
        let below = self.bound.unwrap_or(self.first + 1);
        while self.launching
            && self.inflight.len() < self.window.min(self.max_in_flight)
            && (self.next < below || self.inflight.is_empty())
        {
            let offset = self.next;
            self.next += self.step;
            let task = launch(offset);
            self.inflight.push(async move { (offset, task.await) });
        }
        let page = self.inflight.next().await?;
        if self.grow {
            self.window = self.window.saturating_mul(2);
        }
        Some(self.guard.count().map(|()| page))
    }

    /// The page just handed over was the last: abort the ones past it.
    pub fn stop(&mut self) {
        self.launching = false;
        self.inflight.clear();
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

    #[tokio::test]
    async fn offset_pages_launch_ahead_only_below_the_bound_and_stop_aborts() {
        let launched = Arc::new(std::sync::Mutex::new(Vec::new()));
        let launch = |log: Arc<std::sync::Mutex<Vec<u64>>>| {
            move |offset: u64| -> BoxFuture<'static, u64> {
                log.lock().unwrap().push(offset);
                Box::pin(async move { offset * 10 })
            }
        };
        let mut p = OffsetPages::new(0, 100, 4, 1_000);
        // Without a bound: one page at a time.
        assert_eq!(p.next(launch(launched.clone())).await, Some(Ok((0, 0))));
        assert!(p.needs_bound());
        p.raise_bound(350);
        assert_eq!(
            p.next(launch(launched.clone())).await,
            Some(Ok((100, 1000)))
        );
        assert_eq!(*launched.lock().unwrap(), [0, 100, 200, 300]);
        assert_eq!(
            p.next(launch(launched.clone())).await,
            Some(Ok((200, 2000)))
        );
        p.stop();
        assert_eq!(p.next(launch(launched.clone())).await, None);
        // The page limit ends a scan that never stops.
        let mut p = OffsetPages::new(0, 1, 2, 3);
        p.raise_bound(u64::MAX);
        let mut got = 0;
        let err = loop {
            match p.next(launch(launched.clone())).await.unwrap() {
                Ok(_) => got += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(got, 3);
        assert!(err.contains("more than 3 pages"), "{err}");
    }
}
