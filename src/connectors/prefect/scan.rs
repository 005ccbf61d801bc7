//! Reading one Prefect endpoint (`POST …/filter`, offset pages that
//! overlap by one row): pages fetched ahead below the row count, handed
//! over in order, and checked for rows that moved between two reads.

use serde::{Deserialize, Serialize};

use super::*;

/// Where a scan starts or resumes, and what it has proved so far (saved
/// in the state as the read's position).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ScanPoint {
    /// Offset of the next page.
    pub(super) offset: u64,
    /// Id of the row the next page must start with (the last row of the page
    /// before); `None` at the start of a scan.
    #[serde(default)]
    pub(super) boundary: Option<String>,
    /// A shift has been seen: some row may have fallen between two pages.
    /// A scan saved without this (by an older version) is not trusted.
    #[serde(default = "shifted_unless_said")]
    pub(super) shifted: bool,
    /// The earliest server time of any page read (microseconds).
    #[serde(default)]
    pub(super) began_us: Option<i64>,
}

fn shifted_unless_said() -> bool {
    true
}

/// How a scan launches pages.
pub(super) struct ScanPlan<'a> {
    pub(super) sort: &'a str,
    pub(super) from: ScanPoint,
    /// Rows the endpoint is expected to hold (the last scan's count): pages
    /// are launched up to it before this scan's own count arrives. Without
    /// it, the first page goes alone, alongside the count.
    pub(super) expected_rows: Option<u64>,
    /// The handler usually stops after a page or two (an incremental scan):
    /// launch one page, then twice as many after each page read.
    pub(super) stops_early: bool,
}

/// A page in scan order, as handed to a page handler.
pub(super) struct Page {
    /// The rows the page adds (the row it shares with the page before is dropped).
    pub(super) batch: RecordBatch,
    /// Where the scan continues after this page.
    pub(super) next: ScanPoint,
}

/// A finished scan.
pub(super) struct Scan {
    /// Every page began with the last row of the page before it: no row was
    /// inserted or deleted ahead of a page boundary while the scan ran, so
    /// none fell between two pages.
    pub(super) stable: bool,
    pub(super) pages: u64,
    /// The earliest server time of any page (microseconds).
    pub(super) began_us: i64,
    /// The endpoint's row count during the scan, if the server answered it.
    pub(super) count: Option<u64>,
}

/// A fetched and decoded page.
pub(super) struct Fetched {
    /// Records on the page (decoded or rejected).
    pub(super) records: u64,
    pub(super) first_id: Option<String>,
    pub(super) last_id: Option<String>,
    /// The server's time when it answered.
    pub(super) server_us: i64,
    pub(super) decoded: Decoded,
}

/// One scan of one endpoint ([`Prefect::scan`]).
pub(super) struct EndpointScan<'a> {
    pub(super) prefect: &'a Prefect,
    pub(super) ep: &'a Endpoint,
    pub(super) ctx: &'a SyncContext,
    pub(super) url: Url,
    pub(super) sort: &'a str,
    pub(super) limit: u64,
    pub(super) requests: Arc<Semaphore>,
    pub(super) pages: OffsetPages<std::result::Result<Fetched, PageError>>,
    pub(super) counting: Option<AbortOnDrop<std::result::Result<(u64, i64), HttpError>>>,
    pub(super) count: Option<u64>,
    pub(super) whole: bool,
    pub(super) point: ScanPoint,
    pub(super) read: u64,
    /// The endpoint answered 404 to its first page.
    pub(super) missing: bool,
}

impl EndpointScan<'_> {
    /// The next page in order; `None` at the end (or when the endpoint does not exist).
    pub(super) async fn next(&mut self) -> Result<Option<Page>> {
        self.take_count(false).await;
        let (prefect, ep, url, sort, limit) =
            (self.prefect, self.ep, &self.url, self.sort, self.limit);
        let requests = &self.requests;
        let launch = |offset: u64| -> BoxFuture<'static, std::result::Result<Fetched, PageError>> {
            let req = Request::post_json(
                url.clone(),
                &json!({"limit": limit, "offset": offset, "sort": sort}),
            );
            let (http, decoder) = (prefect.http.clone(), ep.decoder.clone());
            let (requests, location) = (requests.clone(), format!("{url} (offset {offset})"));
            Box::pin(fetch_page(http, requests, req, decoder, offset, location))
        };
        let Some(next) = self.pages.next(launch).await else {
            return Ok(None);
        };
        let (offset, page) = next.map_err(|m| Error::source(format!("Prefect {url}"), m))?;
        let page = match page {
            Ok(p) => p,
            Err(PageError::Http(e)) if e.status() == Some(404) && self.read == 0 => {
                tracing::warn!(stream = ep.objects, url = %e.url, "endpoint not found; skipping this table");
                self.missing = true;
                self.pages.stop();
                return Ok(None);
            }
            Err(PageError::Http(e)) => return Err(prefect.explain(e)),
            Err(PageError::Other(e)) => return Err(e),
        };
        self.ctx.emit.page_fetched();
        self.read += 1;
        let point = &mut self.point;
        let mut batch = page.decoded.batch;
        if let Some(expected) = &point.boundary {
            if page.first_id.as_deref() == Some(expected.as_str()) {
                batch = drop_first_if(batch, expected);
            } else {
                if !point.shifted {
                    tracing::info!(
                        stream = ep.objects,
                        offset,
                        "rows moved between two page reads (inserted or deleted meanwhile); \
                         the next sync reads this range again"
                    );
                }
                point.shifted = true;
            }
        }
        point.offset = offset + limit - 1;
        if let Some(n) = self.count.filter(|_| self.whole) {
            self.ctx
                .emit
                .stats
                .scanned(&ep.table.name, point.offset.min(n), n);
        }
        point.boundary = page.last_id;
        point.began_us = Some(
            point
                .began_us
                .map_or(page.server_us, |b| b.min(page.server_us)),
        );
        if page.records < limit {
            // Pages still in flight lie past the end.
            self.pages.stop();
        }
        self.ctx.emit.reject(page.decoded.rejects).await?;
        Ok(Some(Page {
            batch,
            next: point.clone(),
        }))
    }

    /// What is needed has been read: launch no more pages.
    pub(super) fn stop(&mut self) {
        self.pages.stop();
    }

    /// Take the count once it has arrived (or, with `wait`, when it does);
    /// it bounds how far pages are launched ahead.
    pub(super) async fn take_count(&mut self, wait: bool) {
        let due = |t: &AbortOnDrop<_>| wait || self.pages.needs_bound() || t.is_finished();
        if !self.counting.as_ref().is_some_and(due) {
            return;
        }
        let Some(task) = self.counting.take() else {
            return;
        };
        match task.await {
            Ok((n, _)) => {
                self.count = Some(n);
                self.pages.raise_bound(n);
            }
            Err(e) => {
                tracing::debug!(stream = self.ep.objects, error = %e, "no row count; pages are launched without a bound");
                self.pages.raise_bound(u64::MAX);
            }
        }
    }

    /// What the scan proved; `None` when the endpoint does not exist.
    pub(super) async fn finish(mut self) -> Option<Scan> {
        if self.missing {
            return None;
        }
        self.take_count(true).await;
        Some(Scan {
            stable: !self.point.shifted,
            pages: self.read,
            began_us: self.point.began_us.unwrap_or_else(now_micros),
            count: self.count,
        })
    }
}

/// Why a page could not be read.
pub(super) enum PageError {
    Http(HttpError),
    Other(Error),
}

/// Fetch one page of a filter endpoint, holding one of the `requests`
/// permits while the request is in flight, and decode it (on the decoding
/// pool).
pub(super) async fn fetch_page(
    http: HttpClient,
    requests: Arc<Semaphore>,
    req: Request,
    decoder: Arc<BatchDecoder>,
    first_row: u64,
    location: String,
) -> std::result::Result<Fetched, PageError> {
    let permit = requests
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let resp = http.send(req).await.map_err(PageError::Http)?;
    drop(permit);
    let server_us = server_micros(&resp);
    let ranges = split_array(&resp.body, None)
        .map_err(|m| PageError::Other(Error::source(format!("Prefect {location}"), m)))?;
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<String>,
    }
    let id_at = |r: Option<&Range<usize>>| {
        r.and_then(|r| serde_json::from_slice::<Id>(&resp.body[r.clone()]).ok())
            .and_then(|i| i.id)
    };
    let (first_id, last_id) = (id_at(ranges.first()), id_at(ranges.last()));
    let records = ranges.len() as u64;
    let pctx = PageContext {
        first_row,
        location,
        synced_at_micros: now_micros(),
    };
    let decoded = spawn_decode(decoder, resp.body, ranges, pctx)
        .await
        .map_err(|e| PageError::Other(e.into()))?;
    Ok(Fetched {
        records,
        first_id,
        last_id,
        server_us,
        decoded,
    })
}

/// `batch` without its first row when that row has id `id`.
pub(super) fn drop_first_if(batch: RecordBatch, id: &str) -> RecordBatch {
    let first = batch
        .column_by_name("id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .filter(|c| !c.is_empty() && c.is_valid(0))
        .map(|c| c.value(0) == id);
    if first == Some(true) {
        batch.slice(1, batch.num_rows() - 1)
    } else {
        batch
    }
}

/// The body of a `…/count` answer and the server's time.
pub(super) fn count_response(
    resp: std::result::Result<Response, HttpError>,
) -> std::result::Result<(u64, i64), HttpError> {
    let resp = resp?;
    let n = std::str::from_utf8(&resp.body)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Ok((n, server_micros(&resp)))
}

impl Prefect {
    /// Read `ep` in `plan.sort` order from `plan.from` on, page by page
    /// ([`EndpointScan::next`]).
    ///
    /// Up to `concurrency` requests are in flight (each page fetched and
    /// decoded in its own task; at most as many decoded pages again wait to
    /// be written). Consecutive pages overlap by one row: a page must begin
    /// with the row that ended the page before it. If it does not, a row was
    /// inserted or deleted ahead of that boundary between the two reads, and
    /// a row may have fallen between the pages; the scan is then *unstable*
    /// (the rows read are still written). A count request runs alongside the
    /// first pages and bounds how far pages are launched ahead; past it,
    /// pages are fetched one at a time until the short page that ends the
    /// endpoint.
    pub(super) fn scan<'a>(
        &'a self,
        ep: &'a Endpoint,
        plan: ScanPlan<'a>,
        ctx: &'a SyncContext,
    ) -> EndpointScan<'a> {
        // Each request re-reads the last row of the page before it.
        let limit = (self.cfg.batch_size as u64).max(2);
        let http = self.http.clone();
        let count_req = self.count_request(ep.objects);
        let counting = Some(AbortOnDrop::spawn(async move {
            count_response(http.send(count_req).await)
        }));
        let concurrency = self.cfg.concurrency;
        // Pages decoded ahead of the one being read: twice the requests in flight.
        let mut pages =
            OffsetPages::new(plan.from.offset, limit - 1, 2 * concurrency, ctx.max_pages);
        if plan.stops_early {
            pages = pages.growing();
        }
        // How far pages are launched ahead: the last scan's count until this
        // scan's own arrives. With neither, the first page goes alone with
        // the count (a first sync of a small table wastes no requests).
        if let Some(n) = plan.expected_rows {
            pages.raise_bound(n);
        }
        EndpointScan {
            prefect: self,
            ep,
            ctx,
            url: self.url(ep.objects, "filter"),
            sort: plan.sort,
            limit,
            requests: Arc::new(Semaphore::new(concurrency)),
            pages,
            counting,
            count: None,
            // A scan that reads the whole endpoint shows how far it is against the count.
            whole: !plan.stops_early,
            point: plan.from,
            read: 0,
            missing: false,
        }
    }
}
