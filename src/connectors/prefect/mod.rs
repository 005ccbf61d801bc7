//! Prefect flows, flow runs and deployments (Prefect 3.x and 2.x servers,
//! Cloud or self-hosted), per the real API (SOURCES.md §2).
//!
//! Every list endpoint is `POST {api_url}/<objects>/filter` with a JSON body
//! (`limit` ≤ 200, `offset`, `sort`); the answer is a bare JSON array and a
//! short page ends the list. Offset pages are independent, so up to
//! `concurrency` requests are in flight per endpoint while pages are decoded
//! and written strictly in order — a checkpoint never covers a page before
//! the pages ahead of it. The three endpoints run concurrently.
//!
//! Offset paging is not a snapshot: rows inserted or deleted during a scan
//! shift the pages after them, and with pages read out of order a shifted row
//! can fall between two pages. So consecutive pages overlap by one row, and
//! each must begin with the row that ended the page before: if one does not,
//! the scan is *unstable* and moves no cursor forward (and deletes nothing),
//! so the next sync reads the same range again. A `…/count` alongside the
//! first page only bounds how far ahead pages are launched. Per table:
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
//!   read its first page, minus a lookback of five minutes for transactions
//!   that committed late. The scan is resumable: each checkpoint records the next offset,
//!   the id the next page must begin with, and whether a shift was seen.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, BooleanArray, Int64Array, StringArray};
use arrow::compute;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde_json::json;
use tokio::sync::Semaphore;
use url::Url;

use super::{Connector, ConnectorInfo, SyncContext};
use crate::config::ConfigReader;
use crate::decode::{spawn_decode, split_array, BatchDecoder, Decoded, PageContext};
use crate::error::{Error, Result};
use crate::http::{
    Auth, HttpClient, HttpError, HttpMetrics, Request, Response, RetryPolicy, Secret,
};
use crate::schema::{Column, ColumnType, PartitionTransform, Partitioning, TableSchema};
use crate::source::fetch::{AbortOnDrop, OffsetPages};
use crate::source::scan::{CursorEnd, CursorScan, Evidence, FromStart, FullScan};

mod scan;

use self::scan::*;

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
            .with_metrics(metrics)
            .for_origins([&cfg.api_url]);
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

    fn count_request(&self, objects: &str) -> Request {
        Request::post_json(self.url(objects, "count"), &json!({}))
    }

    /// Save a stream's final state after its read: the new cursor, whether
    /// the scan was stable (for the curious: `SELECT state FROM _etl_state`)
    /// and the row count, which bounds how many pages the next scan
    /// launches at once.
    async fn finish(
        &self,
        ctx: &SyncContext,
        ep: &Endpoint,
        scan: &Scan,
        read: CursorScan<ScanPoint>,
        advance_to: Option<i64>,
    ) -> Result<()> {
        let end = CursorEnd {
            advance_to,
            stable: scan.stable,
            count: scan.count,
        };
        read.finish(&ctx.emit, end).await?;
        tracing::info!(
            stream = ep.objects,
            pages = scan.pages,
            stable = scan.stable,
            "{} read",
            ep.objects
        );
        Ok(())
    }

    /// False when the endpoint does not exist (404 on its first page).
    async fn sync_flows(&self, ctx: &SyncContext) -> Result<bool> {
        let ep = &self.flows;
        let read = CursorScan::<ScanPoint>::begin(&ctx.state, ep.objects)?;
        let cursor = read.cursor_us();
        let mut newest = cursor;
        let plan = ScanPlan {
            sort: "UPDATED_DESC",
            from: ScanPoint::default(),
            expected_rows: read.previous_count(),
            stops_early: cursor.is_some(),
        };
        let mut pages = self.scan(ep, plan, ctx);
        while let Some(page) = pages.next().await? {
            let total = page.batch.num_rows();
            let (fresh, max) = updated_since(&page.batch, cursor)?;
            newest = newest.max(max);
            ctx.emit.upsert(&ep.table, fresh.clone()).await?;
            // The cursor moves only at the end; this lets the writer commit the rows.
            read.page(&ctx.emit, None).await?;
            if fresh.num_rows() < total {
                // Older than the cursor: the rest was read before.
                pages.stop();
            }
        }
        let Some(scan) = pages.finish().await else {
            return Ok(false);
        };
        let advance_to = if scan.stable { newest } else { None };
        self.finish(ctx, ep, &scan, read, advance_to).await?;
        Ok(true)
    }

    /// False when the endpoint does not exist (404 on its first page).
    async fn sync_deployments(&self, ctx: &SyncContext) -> Result<bool> {
        let ep = &self.deployments;
        // Each scan starts over from the first page (deployments are few).
        let full = FullScan::<FromStart>::begin_fresh(&ctx.state, ep.table.clone())?;
        let plan = ScanPlan {
            sort: "NAME_ASC",
            from: ScanPoint::default(),
            expected_rows: full.previous_total(),
            stops_early: false,
        };
        let mut pages = self.scan(ep, plan, ctx);
        while let Some(page) = pages.next().await? {
            let rows = page.batch.num_rows() as u64;
            ctx.emit.upsert(&ep.table, page.batch).await?;
            full.page(&ctx.emit, rows, FromStart {}).await?;
        }
        let Some(scan) = pages.finish().await else {
            return Ok(false);
        };
        tracing::info!(
            stream = ep.objects,
            pages = scan.pages,
            stable = scan.stable,
            "deployments read"
        );
        // A complete, stable scan: whatever it did not see was deleted.
        let evidence = match scan.stable {
            true => Evidence::Complete {
                source_total: scan.count,
            },
            false => Evidence::Moved {
                why: "deployments changed during the scan",
            },
        };
        full.finish(&ctx.emit, evidence).await?;
        Ok(true)
    }

    /// False when the endpoint does not exist (404 on its first page).
    async fn sync_flow_runs(&self, ctx: &SyncContext) -> Result<bool> {
        let ep = &self.flow_runs;
        let read = CursorScan::<ScanPoint>::begin(&ctx.state, ep.objects)?;
        let cursor = read.cursor_us();
        // A scan stopped midway continues where its last checkpoint left it.
        let from = read.resume_at().cloned().unwrap_or_default();
        if from.offset > 0 {
            tracing::info!(stream = ep.objects, offset = from.offset, "resuming scan");
        }
        let plan = ScanPlan {
            sort: "ID_DESC",
            from,
            expected_rows: read.previous_count(),
            stops_early: false,
        };
        let mut pages = self.scan(ep, plan, ctx);
        while let Some(page) = pages.next().await? {
            let (changed, _) = updated_since(&page.batch, cursor)?;
            ctx.emit.upsert(&ep.table, changed).await?;
            read.page(&ctx.emit, Some(page.next)).await?;
        }
        let Some(scan) = pages.finish().await else {
            return Ok(false);
        };
        // Stable over the whole (possibly resumed) scan: every page boundary held.
        let advance_to = scan
            .stable
            .then(|| scan.began_us - LOOKBACK.as_micros() as i64);
        self.finish(ctx, ep, &scan, read, advance_to).await?;
        Ok(true)
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        // The first failure stops the other streams; what they wrote is
        // committed only up to their last checkpoint.
        let skip = || async { Ok(false) };
        let (flows, runs, deployments) = (
            ctx.wants(&self.flows.table.name),
            ctx.wants(&self.flow_runs.table.name),
            ctx.wants(&self.deployments.table.name),
        );
        let read = tokio::try_join!(
            async {
                match flows {
                    true => self.sync_flows(&ctx).await,
                    false => skip().await,
                }
            },
            async {
                match runs {
                    true => self.sync_flow_runs(&ctx).await,
                    false => skip().await,
                }
            },
            async {
                match deployments {
                    true => self.sync_deployments(&ctx).await,
                    false => skip().await,
                }
            },
        )?;
        // A sync that found none of the tables it asked for did nothing.
        if read == (false, false, false) {
            return Err(Error::source(
                format!("Prefect {}", self.cfg.api_url),
                "every endpoint (flows, flow_runs, deployments) answered 404 Not Found: \
                 check api_url (a self-hosted server's API is http://HOST:4200/api; \
                 Prefect Cloud's is https://api.prefect.cloud/api/accounts/ID/workspaces/ID)",
            ));
        }
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

    fn check(&self) -> BoxFuture<'_, Vec<super::TableCheck>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for ep in [&self.flows, &self.flow_runs, &self.deployments] {
                let url = self.url(ep.objects, "filter");
                let outcome = async {
                    let req = Request::post_json(url.clone(), &json!({"limit": 1, "offset": 0}));
                    let resp = self.http.send(req).await.map_err(|e| self.explain(e))?;
                    let n = split_array(&resp.body, None)
                        .map_err(|m| Error::source(format!("Prefect {url}"), m))?
                        .len();
                    Ok(super::records(n))
                }
                .await;
                out.push(super::TableCheck::new(
                    &ep.table.name,
                    format!("POST {url}"),
                    outcome,
                ));
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> RecordBatch {
        let table = Arc::new(flows_table());
        let page = format!(
            "[{}]",
            ids.iter()
                .map(|id| format!(r#"{{"id": "{id}", "name": "f", "tags": []}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let ranges = split_array(page.as_bytes(), None).unwrap();
        let ctx = PageContext {
            first_row: 0,
            location: "test".into(),
            synced_at_micros: 0,
        };
        BatchDecoder::new(table)
            .decode(page.as_bytes(), &ranges, &ctx)
            .unwrap()
            .batch
    }

    fn ids(b: &RecordBatch) -> Vec<String> {
        let c = b.column_by_name("id").unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        c.iter().map(|v| v.unwrap().to_string()).collect()
    }

    #[test]
    fn the_overlapping_row_is_dropped_only_when_it_is_the_expected_one() {
        assert_eq!(
            ids(&drop_first_if(batch(&["a", "b", "c"]), "a")),
            ["b", "c"]
        );
        assert_eq!(ids(&drop_first_if(batch(&["x", "b"]), "a")), ["x", "b"]);
        assert_eq!(
            ids(&drop_first_if(batch(&["a"]), "a")),
            Vec::<String>::new()
        );
        assert_eq!(ids(&drop_first_if(batch(&[]), "a")), Vec::<String>::new());
    }

    #[test]
    fn scan_points_survive_the_state_and_old_states_count_as_shifted() {
        let p = ScanPoint {
            offset: 398,
            boundary: Some("run-1".into()),
            shifted: false,
            began_us: Some(1_700_000_000_000_000),
        };
        let saved = serde_json::to_value(&p).unwrap();
        assert_eq!(serde_json::from_value::<ScanPoint>(saved).ok(), Some(p));
        // A scan saved by the count-checked version: resumed, but not trusted.
        let old = json!({"offset": 400, "count": 2000, "began_us": 5});
        let p: ScanPoint = serde_json::from_value(old).unwrap();
        assert_eq!((p.offset, p.boundary, p.shifted), (400, None, true));
        assert!(serde_json::from_value::<ScanPoint>(json!({})).is_err());
    }
}
