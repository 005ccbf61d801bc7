//! Userflow users (`GET /users`), per the real API (SOURCES.md §1).
//!
//! Pagination is `limit` + `starting_after=<last id>` until `has_more` is
//! false; `next_page_url` is followed when present, relative or absolute.
//!
//! **Incremental strategy.** Userflow has no `updated_at` and no "changed
//! since" filter, so a cursor on ids would never see changes to old users
//! (the bug in the SDK example). Every sync therefore scans all users, and
//! the merge by primary key updates what changed. The scan is resumable: after
//! each page the state records the scan's start time and the last id, so a
//! crashed sync continues from the page where it stopped rather than from the
//! beginning. When a scan completes, users it did not see (their `_synced_at`
//! is older than the scan's start) were deleted in Userflow and are
//! soft-deleted (`_etl_deleted = true`). If the saved id itself was deleted in
//! the meantime (Userflow answers 400 `invalid_params`), the scan restarts
//! from the beginning, keeping its start time, which is still correct.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use url::Url;

use super::{Connector, ConnectorInfo, SyncContext};
use crate::config::ConfigReader;
use crate::decode::envelope::{self, Envelope};
use crate::decode::scan::Check;
use crate::decode::{spawn_decode, BatchDecoder, DecodeError, Decoded, PageContext};
use crate::error::{Error, Result};
use crate::http::{Auth, HttpClient, HttpMetrics, RetryPolicy, Secret};
use crate::schema::{Column, ColumnType, PartitionTransform, Partitioning, TableSchema};
use crate::source::fetch::{FetchError, PageFetcher, Sender};
use crate::source::paginate::{PageView, Paginator, StartingAfter};
use crate::source::scan::{Evidence, FullScan};

pub const NAME: &str = "userflow";
const STREAM: &str = "users";
/// Pages decoded ahead of the writer while the next page is fetched.
const DECODE_AHEAD: usize = 4;

pub const SAMPLE_CONFIG: &str = r#"{
  "userflow_api_key": "<YOUR_USERFLOW_API_KEY>",
  "base_url": "https://api.userflow.com"
}"#;

/// The `users` table, as in the Connector SDK example.
pub fn users_table() -> TableSchema {
    TableSchema::new(
        "users",
        &["id"],
        vec![
            Column::new("id", ColumnType::String),
            Column::at("email", ColumnType::String, "attributes.email"),
            Column::at("name", ColumnType::String, "attributes.name"),
            Column::new("created_at", ColumnType::UtcDatetime),
            Column::at(
                "signed_up_at",
                ColumnType::UtcDatetime,
                "attributes.signed_up_at",
            ),
            Column::raw("raw"),
            Column::synced_at("_synced_at"),
        ],
    )
    // Users arrive in id order, unrelated to sign-up time; monthly partitions
    // keep files large while still pruning reads by creation date.
    .partitioned_by(Partitioning {
        column: "created_at".into(),
        transform: PartitionTransform::Month,
    })
}

fn tables() -> Vec<Arc<TableSchema>> {
    vec![Arc::new(users_table())]
}

pub fn info() -> ConnectorInfo {
    ConnectorInfo {
        name: NAME,
        description:
            "Userflow users (GET /users, cursor pagination; full resumable scan each sync)",
        sample_config: SAMPLE_CONFIG,
        tables,
        build: |c, m| {
            Ok(Arc::new(Userflow::new(UserflowConfig::validate(c)?, m)) as Arc<dyn Connector>)
        },
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct UserflowConfig {
    /// `userflow_api_key`: the environment's API key (Bearer).
    pub api_key: Secret,
    /// `base_url`: `https://api.userflow.com` (default) or `https://api.eu.userflow.com`.
    pub base_url: Url,
    /// `page_size`: users per request, 1..100 (default 100).
    pub page_size: u32,
    /// `request_timeout_seconds`: per request, 1..600 (default 30).
    pub timeout: Duration,
    /// `retry_attempts`: attempts per request, 1..10 (default 5).
    pub attempts: u32,
}

impl UserflowConfig {
    pub fn validate(mut c: ConfigReader) -> Result<Self> {
        let cfg = UserflowConfig {
            api_key: c.secret("userflow_api_key")?,
            base_url: c.url_or("base_url", "https://api.userflow.com")?,
            page_size: c.int_in("page_size", 1..=100, 100)? as u32,
            timeout: Duration::from_secs(c.int_in("request_timeout_seconds", 1..=600, 30)? as u64),
            attempts: c.int_in("retry_attempts", 1..=10, 5)? as u32,
        };
        c.finish()?;
        Ok(cfg)
    }
}

pub struct Userflow {
    cfg: UserflowConfig,
    http: HttpClient,
    table: Arc<TableSchema>,
    decoder: Arc<BatchDecoder>,
}

/// Where a users scan stands: after this user's id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct After {
    after: Option<String>,
}

type DecodeFuture = Pin<Box<dyn std::future::Future<Output = Result<Decoded, DecodeError>> + Send>>;

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Userflow {
    pub fn new(cfg: UserflowConfig, metrics: Arc<HttpMetrics>) -> Self {
        let policy = RetryPolicy {
            max_attempts: cfg.attempts,
            timeout: cfg.timeout,
            ..RetryPolicy::default()
        };
        let http = HttpClient::new(policy, Auth::Bearer(cfg.api_key.clone()))
            .with_header("userflow-version", "2020-01-03")
            .with_header("accept", "application/json")
            .with_metrics(metrics)
            .for_origins([&cfg.base_url]);
        let table = Arc::new(users_table());
        let decoder = Arc::new(BatchDecoder::new(table.clone()));
        Userflow {
            cfg,
            http,
            table,
            decoder,
        }
    }

    fn endpoint(&self) -> Url {
        let mut u = self.cfg.base_url.clone();
        let path = format!("{}/users", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }

    /// Split a list page into its envelope and its records' byte ranges;
    /// `check` says how much of the records to check here (records only
    /// located are checked by the decoder).
    fn parse_page(page: &[u8], url: &Url, check: Check) -> Result<Envelope> {
        let ctx = || format!("Userflow users page {url}");
        let text = std::str::from_utf8(page)
            .map_err(|e| Error::source(ctx(), format!("body is not UTF-8: {e}")))?;
        // Userflow documents a list object; anything else is not an empty page.
        crate::decode::shape::expect_object(text, "\"data\" and \"has_more\"")
            .map_err(|m| Error::source(ctx(), m))?;
        let data = ["data".to_string()];
        let split = match check {
            Check::Full => envelope::split(page, &data),
            Check::Bounds => envelope::locate(page, &data),
        };
        split.map_err(|m| {
            let m = m.replace("the answer is not valid JSON", "malformed list object");
            Error::source(ctx(), m)
        })
    }

    /// A scan of the users list from the start, or after `resume_after`.
    fn pages(&self, resume_after: Option<String>, max_pages: u64) -> PageFetcher {
        let http = self.http.clone();
        let send: Sender = Arc::new(move |url: Url| {
            let http = http.clone();
            Box::pin(async move { http.get(url).await })
        });
        let paginator = StartingAfter::new(self.cfg.page_size, resume_after);
        // Each request needs the previous page's last id: one at a time.
        PageFetcher::new(Box::new(paginator), self.endpoint(), send, max_pages, 1)
    }

    /// Check a fetched page, tell the paginator, and start decoding it
    /// (rows from `row` on): the decode, its rows, and the cursor after it.
    fn launch(
        &self,
        url: &Url,
        resp: crate::http::Response,
        pages: &mut PageFetcher,
        row: &mut u64,
    ) -> Result<(DecodeFuture, u64, Option<String>)> {
        // Every record goes to the decoder, which checks it.
        let page = Self::parse_page(&resp.body, url, Check::Bounds)?;
        let n = page.ranges.len() as u64;
        let view = PageView::of(url, &resp, &page);
        pages
            .advance(&view)
            .map_err(|m| Error::source(format!("Userflow users page {url}"), m))?;
        tracing::trace!(stream = STREAM, url = %url, rows = n, "page fetched");
        let pctx = PageContext {
            first_row: *row,
            location: url.to_string(),
            synced_at_micros: now_micros(),
        };
        *row += n;
        let fut = spawn_decode(self.decoder.clone(), resp.body, page.ranges, pctx);
        Ok((Box::pin(fut), n, pages.cursor().map(String::from)))
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        let mut scan = FullScan::<After>::begin(&ctx.state, self.table.clone())?;
        let resume_after = scan.resume_at().and_then(|a| a.after.clone());
        if let Some(id) = &resume_after {
            tracing::info!(stream = STREAM, after = %id, "resuming after this user");
        }
        let max_pages = ctx.max_pages;
        let mut pages = self.pages(resume_after.clone(), max_pages);
        let mut pending: VecDeque<(DecodeFuture, u64, Option<String>)> = VecDeque::new();
        let mut row: u64 = 0;
        let mut restarted = false;
        // A fetch error stops fetching, but pages already fetched are still
        // written (and may be committed) before the error is returned.
        let mut failure: Option<Error> = None;
        loop {
            while failure.is_none() && pending.len() < DECODE_AHEAD {
                let Some(fetched) = pages.next().await else {
                    break;
                };
                let (url, resp) = match fetched {
                    Ok(f) => f,
                    Err(FetchError::Http(e))
                        if e.status() == Some(400)
                            && pages.pages() == 1
                            && resume_after.is_some()
                            && !restarted =>
                    {
                        tracing::warn!(stream = STREAM, error = %e, "saved cursor is no longer valid; restarting the scan");
                        restarted = true;
                        // A new start time, so users deleted since the first attempt are soft-deleted.
                        scan.restart();
                        pages = self.pages(None, max_pages);
                        continue;
                    }
                    Err(FetchError::Http(e)) => {
                        failure = Some(e.into());
                        break;
                    }
                    Err(FetchError::Pagination(m)) => {
                        failure = Some(Error::source(
                            format!("Userflow users {}", self.endpoint()),
                            m,
                        ));
                        break;
                    }
                };
                ctx.emit.page_fetched();
                match self.launch(&url, resp, &mut pages, &mut row) {
                    Ok(decoding) => pending.push_back(decoding),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let Some((fut, n, after)) = pending.pop_front() else {
                break;
            };
            let decoded = fut.await?;
            ctx.emit.reject(decoded.rejects).await?;
            ctx.emit.upsert(&self.table, decoded.batch).await?;
            scan.page(&ctx.emit, n, After { after }).await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        tracing::info!(
            stream = STREAM,
            pages = pages.pages(),
            rows = row,
            "users read"
        );
        // The list ended with has_more: false: whoever the scan did not see
        // is gone from Userflow.
        let evidence = Evidence::Complete { source_total: None };
        scan.finish(&ctx.emit, evidence).await
    }
}

impl Connector for Userflow {
    fn name(&self) -> &str {
        NAME
    }

    fn tables(&self) -> Vec<Arc<TableSchema>> {
        vec![self.table.clone()]
    }

    fn sync(&self, ctx: SyncContext) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(ctx))
    }

    fn check(&self) -> BoxFuture<'_, Vec<super::TableCheck>> {
        Box::pin(async move {
            let url = StartingAfter::new(1, None).start(self.endpoint());
            let outcome = async {
                let resp = self.http.get(url.clone()).await?;
                let page = Self::parse_page(&resp.body, &url, Check::Full)?;
                Ok(super::records(page.ranges.len()))
            }
            .await;
            vec![super::TableCheck::new(
                STREAM,
                format!("GET {url}"),
                outcome,
            )]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(cfg: serde_json::Value) -> Result<Userflow> {
        let c = ConfigReader::from_map(cfg.as_object().unwrap().clone());
        Ok(Userflow::new(
            UserflowConfig::validate(c)?,
            Arc::new(HttpMetrics::default()),
        ))
    }

    #[test]
    fn eu_and_default_base_urls() {
        let u =
            build(json!({"userflow_api_key": "ak_x", "base_url": "https://api.eu.userflow.com/"}))
                .unwrap();
        assert_eq!(u.endpoint().as_str(), "https://api.eu.userflow.com/users");
        let u = build(json!({"userflow_api_key": "ak_x"})).unwrap();
        assert_eq!(u.endpoint().as_str(), "https://api.userflow.com/users");
        assert_eq!(u.cfg.page_size, 100);
        let u = build(json!({"userflow_api_key": "ak_x", "base_url": "http://127.0.0.1:9/prefix", "page_size": "7"})).unwrap();
        assert_eq!(u.endpoint().as_str(), "http://127.0.0.1:9/prefix/users");
        assert_eq!(u.cfg.page_size, 7);
    }

    #[test]
    fn page_parsing_reports_what_is_missing() {
        let url = Url::parse("http://h/users?limit=2").unwrap();
        let p = Userflow::parse_page(
            br#"{"data": [{"id": "a"}, {"id": 7}], "has_more": true}"#,
            &url,
            Check::Bounds,
        )
        .unwrap();
        assert_eq!(p.ranges.len(), 2);
        assert_eq!(p.fields["has_more"], json!(true));
        let e = Userflow::parse_page(br#"{"object": "list"}"#, &url, Check::Full)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("no \"data\" list") && e.contains("http://h/users?limit=2"),
            "{e}"
        );
        let e = Userflow::parse_page(br#"[[]]"#, &url, Check::Bounds)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("expected an object with \"data\" and \"has_more\", got an array"),
            "{e}"
        );
    }
}
