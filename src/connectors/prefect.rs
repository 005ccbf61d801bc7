//! Prefect flows, flow runs and deployments (Prefect 3.x and 2.x servers,
//! Cloud or self-hosted), per the real API (SOURCES.md §2).
//!
//! Every list endpoint is `POST {api_url}/<objects>/filter` with a JSON body
//! (`limit` ≤ 200, `offset`, `sort`); the answer is a bare JSON array and a
//! short page ends the list. Offset pages are independent, so up to
//! `concurrency` of them are in flight per endpoint while pages are decoded
//! and written strictly in order — a checkpoint never covers a page before the
//! pages ahead of it. The three endpoints run concurrently.
//!
//! Offset paging is not a snapshot: rows inserted or deleted during a scan
//! shift the pages after them, and with pages in flight at once a shifted row
//! can fall between two pages. So every scan counts the rows
//! (`POST …/count`) before and after; a scan during which the count changed
//! is *unstable* and moves no cursor forward (and deletes nothing), so the
//! next sync reads the same range again. Strategies per table:
//!
//! * `flows`: sorted `UPDATED_DESC`, read until the first row older than the
//!   cursor (the newest `updated` seen by the last stable scan); rows updated
//!   at the cursor's instant are read again (merging is idempotent).
//! * `deployments`: a full scan each sync (the seed's "full refresh"); after a
//!   stable complete scan, rows it did not see are soft-deleted.
//! * `flow_runs`: the server has no `updated` sort or filter for runs, so
//!   every sync scans all runs (sorted `ID_DESC`: ids never change, so updates
//!   do not move rows) but writes only runs whose `updated` is at or after the
//!   cursor: the server's time (its `Date` header) when the last stable scan
//!   began, minus a lookback of five minutes for transactions that committed
//!   late. The scan is resumable: each checkpoint records the next offset and
//!   the count at the start.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, BooleanArray, Int64Array};
use arrow::compute;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use url::Url;

use super::ordered::OrderedTasks;
use super::{Connector, ConnectorInfo, SyncContext};
use crate::batch::values::format_utc_micros;
use crate::batch::{spawn_decode, split_array, BatchDecoder, Decoded, PageContext};
use crate::config::ConfigReader;
use crate::error::{Error, Result};
use crate::http::{
    Auth, HttpClient, HttpError, HttpMetrics, Request, Response, RetryPolicy, Secret,
};
use crate::schema::{Column, ColumnType, PartitionTransform, Partitioning, TableSchema};

pub const NAME: &str = "prefect";

/// Runs updated this long before the last stable scan began are read again.
const LOOKBACK: Duration = Duration::from_secs(300);

pub const SAMPLE_CONFIG: &str = r#"{
  "api_url": "https://api.prefect.cloud/api/accounts/<ACCOUNT_ID>/workspaces/<WORKSPACE_ID>",
  "api_key": "<YOUR_PREFECT_API_KEY>"
}"#;

fn common(columns: &mut Vec<Column>) {
    columns.push(Column::new("updated", ColumnType::UtcDatetime));
    columns.push(Column::new("created", ColumnType::UtcDatetime));
    columns.push(Column::raw("raw"));
    columns.push(Column::synced_at("_synced_at"));
}

/// `flows`, as in the seed (plus `created`, `raw`).
pub fn flows_table() -> TableSchema {
    let mut c = vec![
        Column::new("id", ColumnType::String),
        Column::new("name", ColumnType::String),
        Column::new("tags", ColumnType::Json),
    ];
    common(&mut c);
    TableSchema::new("flows", &["id"], c)
}

/// `flow_runs`, as in the seed (plus state name, expected start, tags, times).
pub fn flow_runs_table() -> TableSchema {
    let mut c = vec![
        Column::new("id", ColumnType::String),
        Column::new("name", ColumnType::String),
        Column::new("state_type", ColumnType::String),
        Column::new("state_name", ColumnType::String),
        Column::new("flow_id", ColumnType::String),
        Column::new("deployment_id", ColumnType::String),
        Column::new("start_time", ColumnType::UtcDatetime),
        Column::new("end_time", ColumnType::UtcDatetime),
        Column::new("expected_start_time", ColumnType::UtcDatetime),
        Column::new("parameters", ColumnType::Json),
        Column::new("tags", ColumnType::Json),
    ];
    common(&mut c);
    // A run's creation time never changes, so rows never move between partitions.
    TableSchema::new("flow_runs", &["id"], c).partitioned_by(Partitioning {
        column: "created".into(),
        transform: PartitionTransform::Month,
    })
}

/// `deployments`, as in the seed: `schedule` (2.x) and `schedules` (3.x).
pub fn deployments_table() -> TableSchema {
    let mut c = vec![
        Column::new("id", ColumnType::String),
        Column::new("name", ColumnType::String),
        Column::new("flow_id", ColumnType::String),
        Column::new("schedule", ColumnType::Json),
        Column::new("schedules", ColumnType::Json),
        Column::new("paused", ColumnType::Boolean),
    ];
    common(&mut c);
    TableSchema::new("deployments", &["id"], c)
}

fn tables() -> Vec<Arc<TableSchema>> {
    vec![
        Arc::new(flows_table()),
        Arc::new(flow_runs_table()),
        Arc::new(deployments_table()),
    ]
}

pub fn info() -> ConnectorInfo {
    ConnectorInfo {
        name: NAME,
        description: "Prefect flows, flow runs, deployments (POST …/filter, offset pages fetched concurrently)",
        sample_config: SAMPLE_CONFIG,
        tables,
        build: |c, m| Ok(Arc::new(Prefect::new(PrefectConfig::validate(c)?, m)) as Arc<dyn Connector>),
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct PrefectConfig {
    /// `api_url`: a Cloud workspace URL or a self-hosted `http://host:4200/api`.
    pub api_url: Url,
    /// `api_key`: Bearer key (Cloud); optional for self-hosted servers.
    pub api_key: Option<Secret>,
    /// `batch_size`: rows per request, 1..200 (default 200, the server's maximum).
    pub batch_size: u32,
    /// `concurrency`: pages in flight per endpoint, 1..64 (default 8).
    pub concurrency: usize,
    /// `request_timeout_seconds`: per request, 1..600 (default 30).
    pub timeout: Duration,
    /// `retry_attempts`: attempts per request, 1..10 (default 5).
    pub attempts: u32,
}

impl PrefectConfig {
    pub fn validate(mut c: ConfigReader) -> Result<Self> {
        let cfg = PrefectConfig {
            api_url: c.url("api_url")?,
            api_key: c.opt_secret("api_key")?,
            batch_size: c.int_in("batch_size", 1..=200, 200)? as u32,
            concurrency: c.int_in("concurrency", 1..=64, 8)? as usize,
            timeout: Duration::from_secs(c.int_in("request_timeout_seconds", 1..=600, 30)? as u64),
            attempts: c.int_in("retry_attempts", 1..=10, 5)? as u32,
        };
        c.finish()?;
        Ok(cfg)
    }
}

/// One endpoint and how to read it.
struct Endpoint {
    /// `flows`, `flow_runs`, `deployments`: path segment and table name.
    objects: &'static str,
    table: Arc<TableSchema>,
    decoder: Arc<BatchDecoder>,
}

pub struct Prefect {
    cfg: PrefectConfig,
    http: HttpClient,
    flows: Endpoint,
    flow_runs: Endpoint,
    deployments: Endpoint,
}

/// What a page handler tells the scan.
enum Next {
    Continue,
    /// The rows needed have been seen; stop fetching.
    Stop,
}

/// A finished scan.
struct Scan {
    /// Rows were neither inserted nor deleted while it ran.
    stable: bool,
    pages: u64,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The server's clock from a response's `Date` header, else ours.
fn server_micros(resp: &Response) -> i64 {
    resp.headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(now_micros, |d| d.as_micros() as i64)
}

/// Rows of `batch` whose `updated` is at or after `cursor` (or null).
fn updated_since(batch: &RecordBatch, cursor: Option<i64>) -> Result<(RecordBatch, Option<i64>)> {
    let col = batch.column_by_name("updated").expect("declared column");
    let micros = compute::cast(col, &arrow::datatypes::DataType::Int64)
        .map_err(|e| Error::Internal(format!("updated column: {e}")))?;
    let micros = micros.as_any().downcast_ref::<Int64Array>().expect("int64");
    let newest = compute::max(micros);
    let Some(cursor) = cursor else {
        return Ok((batch.clone(), newest));
    };
    let keep: BooleanArray = micros
        .iter()
        .map(|v| Some(v.is_none_or(|v| v >= cursor)))
        .collect();
    let kept = compute::filter_record_batch(batch, &keep)
        .map_err(|e| Error::Internal(format!("filtering by updated: {e}")))?;
    Ok((kept, newest))
}

/// Why a page could not be read.
enum PageError {
    Http(HttpError),
    Other(Error),
}

/// Fetch one page of a filter endpoint, holding one of the `requests`
/// permits while the request is in flight, and decode it (on the decoding
/// pool): the number of records on the page, and what they decoded to.
async fn fetch_page(
    http: HttpClient,
    requests: Arc<Semaphore>,
    req: Request,
    decoder: Arc<BatchDecoder>,
    first_row: u64,
    location: String,
) -> std::result::Result<(u64, Decoded), PageError> {
    let permit = requests
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let resp = http.send(req).await.map_err(PageError::Http)?;
    drop(permit);
    let ranges = split_array(&resp.body, None)
        .map_err(|m| PageError::Other(Error::source(format!("Prefect {location}"), m)))?;
    let pctx = PageContext {
        first_row,
        location,
        synced_at_micros: now_micros(),
    };
    let records = ranges.len() as u64;
    let decoded = spawn_decode(decoder, resp.body, ranges, pctx)
        .await
        .map_err(|e| PageError::Other(e.into()))?;
    Ok((records, decoded))
}

/// The body of a `…/count` answer and the server's time.
fn count_response(
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
    pub fn new(cfg: PrefectConfig, metrics: Arc<HttpMetrics>) -> Self {
        let policy = RetryPolicy {
            max_attempts: cfg.attempts,
            timeout: cfg.timeout,
            ..RetryPolicy::default()
        };
        let auth = match &cfg.api_key {
            Some(k) => Auth::Bearer(k.clone()),
            None => Auth::None,
        };
        let http = HttpClient::new(policy, auth)
            .with_header("accept", "application/json")
            .with_header("x-prefect-api-version", "0.8.4")
            .with_metrics(metrics);
        let endpoint = |objects: &'static str, t: TableSchema| {
            let table = Arc::new(t);
            Endpoint {
                objects,
                decoder: Arc::new(BatchDecoder::new(table.clone())),
                table,
            }
        };
        Prefect {
            cfg,
            http,
            flows: endpoint("flows", flows_table()),
            flow_runs: endpoint("flow_runs", flow_runs_table()),
            deployments: endpoint("deployments", deployments_table()),
        }
    }

    fn url(&self, objects: &str, action: &str) -> Url {
        let mut u = self.cfg.api_url.clone();
        let path = format!("{}/{objects}/{action}", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }

    /// Turn an HTTP failure into the error a user can act on.
    fn explain(&self, e: HttpError) -> Error {
        match e.status() {
            Some(401) => Error::source(
                format!("Prefect {}", e.url),
                format!(
                    "the server rejected the credentials ({}); check api_key (a Cloud key starts with pnu_ or pnb_; \
                     self-hosted servers without auth need none)",
                    e.kind_text()
                ),
            ),
            Some(422) => Error::source(
                format!("Prefect {}", e.url),
                format!("the server refused the request: {}", e.kind_text()),
            ),
            _ => e.into(),
        }
    }

    /// `POST …/count`: the number of rows and the server's time.
    async fn count(&self, objects: &str) -> std::result::Result<(u64, i64), HttpError> {
        let req = Request::post_json(self.url(objects, "count"), &json!({}));
        count_response(self.http.send(req).await)
    }

    /// Read `objects` in `sort` order from `start` on, with up to
    /// `concurrency` pages in flight (each fetched and decoded in its own
    /// task), handing each decoded page to `on_page` in order. `counted` is
    /// the number of rows when the scan began, if already known. Returns
    /// `None` when the endpoint does not exist (404).
    async fn scan<F>(
        &self,
        ep: &Endpoint,
        sort: &str,
        start: u64,
        counted: Option<u64>,
        ctx: &SyncContext,
        mut on_page: F,
    ) -> Result<Option<Scan>>
    where
        F: FnMut(RecordBatch, u64, bool) -> BoxFuture<'static, Result<Next>>,
    {
        let before = match counted {
            Some(n) => n,
            None => match self.count(ep.objects).await {
                Ok((n, _)) => n,
                Err(e) if e.status() == Some(404) => {
                    tracing::warn!(stream = ep.objects, url = %e.url, "endpoint not found; skipping this table");
                    return Ok(None);
                }
                Err(e) => return Err(self.explain(e)),
            },
        };
        let limit = self.cfg.batch_size as u64;
        let url = self.url(ep.objects, "filter");
        // `concurrency` requests in flight; pages decoded but not yet written
        // do not hold a request back, and at most as many again wait.
        let requests = Arc::new(Semaphore::new(self.cfg.concurrency));
        let ahead = 2 * self.cfg.concurrency;
        let mut inflight =
            OrderedTasks::<(u64, std::result::Result<(u64, Decoded), PageError>)>::new();
        let mut next_offset = start;
        let mut launching = true;
        let mut pages = 0u64;
        // The closing count, started as soon as the last page has been read.
        let mut closing: Option<
            tokio::task::JoinHandle<std::result::Result<(u64, i64), HttpError>>,
        > = None;
        loop {
            // Past the rows counted at the start, pages are fetched one at a
            // time: the end is near, and speculative requests would be wasted.
            while launching
                && inflight.len() < ahead
                && (next_offset <= before || inflight.is_empty())
            {
                let offset = next_offset;
                next_offset += limit;
                let req = Request::post_json(
                    url.clone(),
                    &json!({"limit": limit, "offset": offset, "sort": sort}),
                );
                let (http, decoder) = (self.http.clone(), ep.decoder.clone());
                let (requests, location) = (requests.clone(), format!("{url} (offset {offset})"));
                inflight.push(async move {
                    let page = fetch_page(http, requests, req, decoder, offset, location).await;
                    (offset, page)
                });
            }
            let Some((offset, page)) = inflight.next().await else {
                break;
            };
            let (n, decoded) = match page {
                Ok(d) => d,
                Err(PageError::Http(e)) if e.status() == Some(404) && pages == 0 => {
                    tracing::warn!(stream = ep.objects, url = %e.url, "endpoint not found; skipping this table");
                    return Ok(None);
                }
                Err(PageError::Http(e)) => return Err(self.explain(e)),
                Err(PageError::Other(e)) => return Err(e),
            };
            ctx.emit.page_fetched();
            pages += 1;
            let last = n < limit;
            if last {
                // Pages still in flight lie past the end. Every page before
                // this one has been read, so the closing count can start now,
                // while the pages are written.
                launching = false;
                inflight.clear();
                let this = self.http.clone();
                let req = Request::post_json(self.url(ep.objects, "count"), &json!({}));
                closing = Some(tokio::spawn(
                    async move { count_response(this.send(req).await) },
                ));
            }
            ctx.emit.reject(decoded.rejects).await?;
            if let Next::Stop = on_page(decoded.batch, offset + n, last).await? {
                // What is needed has been read.
                launching = false;
                inflight.clear();
            }
        }
        let after = match closing {
            Some(task) => task
                .await
                .map_err(|e| Error::Internal(format!("count task failed: {e}")))?,
            None => self.count(ep.objects).await,
        }
        .map_err(|e| self.explain(e))?
        .0;
        let stable = before == after;
        if !stable {
            tracing::info!(
                stream = ep.objects,
                before,
                after,
                "rows were added or removed during the scan; the next sync reads this range again"
            );
        }
        Ok(Some(Scan { stable, pages }))
    }

    async fn sync_flows(&self, ctx: &SyncContext) -> Result<()> {
        let ep = &self.flows;
        let prev = ctx.state.stream(ep.objects);
        let cursor = prev
            .and_then(|s| s.get("cursor_us"))
            .and_then(Value::as_i64);
        let newest = Arc::new(std::sync::Mutex::new(cursor));
        let emit = ctx.emit.clone();
        let table = ep.table.clone();
        let state = prev.cloned().unwrap_or_else(|| json!({}));
        let seen = newest.clone();
        let scan = self
            .scan(
                ep,
                "UPDATED_DESC",
                0,
                None,
                ctx,
                move |batch, _next, _last| {
                    let (emit, table, state, seen) =
                        (emit.clone(), table.clone(), state.clone(), seen.clone());
                    Box::pin(async move {
                        let total = batch.num_rows();
                        let (fresh, max) = updated_since(&batch, cursor)?;
                        let older_seen = fresh.num_rows() < total;
                        {
                            let mut s = seen.lock().unwrap();
                            *s = (*s).max(max);
                        }
                        emit.upsert(&table, fresh).await?;
                        // The cursor moves only at the end; this lets the writer commit the rows.
                        emit.checkpoint(table.name.as_str(), state).await?;
                        Ok(if older_seen {
                            Next::Stop
                        } else {
                            Next::Continue
                        })
                    })
                },
            )
            .await?;
        let Some(scan) = scan else { return Ok(()) };
        let new_cursor = if scan.stable {
            *newest.lock().unwrap()
        } else {
            cursor
        };
        let mut state = json!({});
        if let Some(c) = new_cursor {
            state = json!({"cursor": format_utc_micros(c), "cursor_us": c});
        }
        ctx.emit.checkpoint(ep.objects, state).await?;
        tracing::info!(
            stream = ep.objects,
            pages = scan.pages,
            stable = scan.stable,
            "flows read"
        );
        Ok(())
    }

    async fn sync_deployments(&self, ctx: &SyncContext) -> Result<()> {
        let ep = &self.deployments;
        let started = now_micros();
        let emit = ctx.emit.clone();
        let table = ep.table.clone();
        let state = ctx
            .state
            .stream(ep.objects)
            .cloned()
            .unwrap_or_else(|| json!({}));
        let scan = self
            .scan(ep, "NAME_ASC", 0, None, ctx, move |batch, _next, _last| {
                let (emit, table, state) = (emit.clone(), table.clone(), state.clone());
                Box::pin(async move {
                    emit.upsert(&table, batch).await?;
                    emit.checkpoint(table.name.as_str(), state).await?;
                    Ok(Next::Continue)
                })
            })
            .await?;
        let Some(scan) = scan else { return Ok(()) };
        if scan.stable {
            // A complete, stable scan: whatever it did not see was deleted.
            ctx.emit
                .delete_older_than(&ep.table, "_synced_at", started)
                .await?;
        } else {
            tracing::warn!(
                stream = ep.objects,
                "deployments changed during the scan; soft-deletes wait for the next sync"
            );
        }
        ctx.emit
            .checkpoint(
                ep.objects,
                json!({"last_complete_scan_at": format_utc_micros(started)}),
            )
            .await?;
        tracing::info!(
            stream = ep.objects,
            pages = scan.pages,
            stable = scan.stable,
            "deployments read"
        );
        Ok(())
    }

    async fn sync_flow_runs(&self, ctx: &SyncContext) -> Result<()> {
        let ep = &self.flow_runs;
        let prev = ctx
            .state
            .stream(ep.objects)
            .cloned()
            .unwrap_or_else(|| json!({}));
        let cursor = prev.get("cursor_us").and_then(Value::as_i64);
        let resume = prev.get("scan").filter(|s| !s.is_null()).cloned();
        // Where the scan starts, the count then, and the server time then.
        let (start, count0, began) = match &resume {
            Some(s) => (
                s.get("offset").and_then(Value::as_u64).unwrap_or(0),
                s.get("count").and_then(Value::as_u64),
                s.get("began_us").and_then(Value::as_i64),
            ),
            None => (0, None, None),
        };
        let (count0, began) = match (count0, began) {
            (Some(c), Some(b)) => (c, b),
            _ => match self.count(ep.objects).await {
                Ok(x) => x,
                Err(e) if e.status() == Some(404) => {
                    tracing::warn!(stream = ep.objects, url = %e.url, "endpoint not found; skipping this table");
                    return Ok(());
                }
                Err(e) => return Err(self.explain(e)),
            },
        };
        if start > 0 {
            tracing::info!(stream = ep.objects, offset = start, "resuming scan");
        }
        let emit = ctx.emit.clone();
        let table = ep.table.clone();
        let scan = self
            .scan(
                ep,
                "ID_DESC",
                start,
                Some(count0),
                ctx,
                move |batch, next, _last| {
                    let (emit, table) = (emit.clone(), table.clone());
                    Box::pin(async move {
                        let (changed, _) = updated_since(&batch, cursor)?;
                        emit.upsert(&table, changed).await?;
                        let mut state =
                            json!({"scan": {"offset": next, "count": count0, "began_us": began}});
                        if let Some(c) = cursor {
                            state["cursor_us"] = json!(c);
                        }
                        emit.checkpoint(table.name.as_str(), state).await?;
                        Ok(Next::Continue)
                    })
                },
            )
            .await?;
        let Some(scan) = scan else { return Ok(()) };
        // Stable over the whole (possibly resumed) scan: the count at its start still holds.
        let stable = scan.stable;
        let new_cursor = if stable {
            Some(began - LOOKBACK.as_micros() as i64)
        } else {
            cursor
        };
        let state = match new_cursor {
            Some(c) => json!({"cursor": format_utc_micros(c), "cursor_us": c}),
            None => json!({}),
        };
        ctx.emit.checkpoint(ep.objects, state).await?;
        tracing::info!(
            stream = ep.objects,
            pages = scan.pages,
            stable,
            "flow runs read"
        );
        Ok(())
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        // The first failure stops the other streams; what they wrote is
        // committed only up to their last checkpoint.
        tokio::try_join!(
            self.sync_flows(&ctx),
            self.sync_flow_runs(&ctx),
            self.sync_deployments(&ctx)
        )?;
        Ok(())
    }
}

impl Connector for Prefect {
    fn name(&self) -> &str {
        NAME
    }

    fn tables(&self) -> Vec<Arc<TableSchema>> {
        vec![
            self.flows.table.clone(),
            self.flow_runs.table.clone(),
            self.deployments.table.clone(),
        ]
    }

    fn sync(&self, ctx: SyncContext) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(ctx))
    }
}
