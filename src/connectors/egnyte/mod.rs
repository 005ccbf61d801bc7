//! Egnyte users, groups, notes and bookmarks, per the real Public API
//! (SOURCES.md §3): users and groups are SCIM-style `/pubapi/v2` lists
//! (`startIndex` from 1, `count` ≤ 100, `resources`, `totalResults`); notes and
//! bookmarks are `/pubapi/v1` lists with `offset`/`count`.
//!
//! Every request of a sync (all four streams, every page in flight, retries
//! and token refreshes) draws on one rate budget, by default Egnyte's
//! 2 calls/second per token. Egnyte signals throttling with 403 and an
//! `X-Mashery-Error-Code` header: `ERR_403_DEVELOPER_OVER_QPS` is retried
//! after `Retry-After` (and pauses the whole budget), while
//! `ERR_403_DEVELOPER_OVER_RATE` (the daily quota) stops the sync: what was
//! read is committed and the error says when the quota resets.
//!
//! Strategies:
//! * `users`, `groups`, `bookmarks`: a full scan each sync (no API filters
//!   by modification time), resumable page by page; after a complete scan
//!   during which the list's total did not change, rows it did not see are
//!   soft-deleted. Each group's member list (and count) comes from its detail
//!   call.
//! * `notes`: notes are immutable once written, and the API filters them by
//!   creation day (`start_time`, `end_time`), so each sync reads from one day
//!   before the last complete scan began (the first: `initial_sync_days` ago).
//!
//! OAuth2: the Bearer token is `api_token`. With `refresh_token` (and the
//! app's `client_id`/`client_secret`) a refused or expiring token is renewed
//! at `/puboauth/token`; a rotated refresh token is kept in the destination's
//! state, sealed (AES-256-GCM) with a key derived from the configured
//! credentials, in the same commit as the data, so the next run uses it.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::{Connector, ConnectorInfo, SyncContext};
use crate::config::ConfigReader;
use crate::decode::shape::expect_object;
use crate::decode::values::format_utc_micros;
use crate::decode::{range_in, spawn_decode, BatchDecoder, Decoded, PageContext};
use crate::error::{Error, Result};
use crate::http::oauth::OAuth;
use crate::http::rate::RateLimiter;
use crate::http::{
    retry_after, Auth, Classifier, HttpClient, HttpError, HttpMetrics, Request, Response,
    RetryPolicy, Secret, Verdict,
};
use crate::schema::{Column, ColumnType, TableSchema};
use crate::source::fetch::OffsetPages;
use crate::source::scan::{CursorEnd, CursorScan, Evidence, FullScan};

mod list;
mod token;

use self::list::*;
use self::token::*;

pub const NAME: &str = "egnyte";
/// Where a rotated refresh token is kept (kept across `--full-refresh`).
const AUTH_STREAM: &str = "_oauth";
/// SCIM lists (users, groups) return at most this many per page.
const SCIM_MAX: u32 = 100;

pub const SAMPLE_CONFIG: &str = r#"{
  "api_token": "<YOUR_EGNYTE_API_TOKEN>",
  "domain": "<YOUR_EGNYTE_DOMAIN>",
  "sync_frequency_hours": "4",
  "initial_sync_days": "90",
  "max_records_per_page": "100",
  "request_timeout_seconds": "30",
  "retry_attempts": "3",
  "enable_users": "true",
  "enable_groups": "true",
  "enable_notes": "true",
  "enable_bookmarks": "true",
  "enable_debug_logging": "false"
}"#;

fn common(c: &mut Vec<Column>) {
    c.push(Column::raw("raw"));
    c.push(Column::synced_at("_synced_at"));
}

/// `users`: the SCIM user with snake_case names.
pub fn users_table() -> TableSchema {
    let mut c = vec![
        Column::new("id", ColumnType::Long),
        Column::at("user_name", ColumnType::String, "userName"),
        Column::at("external_id", ColumnType::String, "externalId"),
        Column::new("email", ColumnType::String),
        Column::at("given_name", ColumnType::String, "name.givenName"),
        Column::at("family_name", ColumnType::String, "name.familyName"),
        Column::at("formatted_name", ColumnType::String, "name.formatted"),
        Column::new("active", ColumnType::Boolean),
        Column::new("locked", ColumnType::Boolean),
        Column::at(
            "email_change_pending",
            ColumnType::Boolean,
            "emailChangePending",
        ),
        Column::at("auth_type", ColumnType::String, "authType"),
        Column::at("user_type", ColumnType::String, "userType"),
        Column::new("role", ColumnType::String),
        Column::at("idp_user_id", ColumnType::String, "idpUserId"),
        Column::at(
            "user_principal_name",
            ColumnType::String,
            "userPrincipalName",
        ),
        Column::at("expiry_date", ColumnType::String, "expiryDate"),
        Column::at("delete_on_expiry", ColumnType::Boolean, "deleteOnExpiry"),
    ];
    common(&mut c);
    TableSchema::new("users", &["id"], c)
}

/// `groups`: id and name from the list, members from the detail call.
/// Records are `{"group": <detail as sent>, "member_count": n}`.
pub fn groups_table() -> TableSchema {
    TableSchema::new(
        "groups",
        &["id"],
        vec![
            Column::at("id", ColumnType::String, "group.id"),
            Column::at("display_name", ColumnType::String, "group.displayName"),
            Column::new("member_count", ColumnType::Int),
            Column::at("members", ColumnType::Json, "group.members"),
            Column::at("raw", ColumnType::Json, "group"),
            Column::synced_at("_synced_at"),
        ],
    )
}

pub fn notes_table() -> TableSchema {
    let mut c = vec![
        Column::new("id", ColumnType::String),
        Column::new("message", ColumnType::String),
        Column::new("username", ColumnType::String),
        Column::new("formatted_name", ColumnType::String),
        Column::new("file_path", ColumnType::String),
        Column::new("file_id", ColumnType::String),
        Column::new("group_id", ColumnType::String),
        Column::new("can_delete", ColumnType::Boolean),
        Column::new("creation_time", ColumnType::UtcDatetime),
    ];
    common(&mut c);
    TableSchema::new("notes", &["id"], c)
}

pub fn bookmarks_table() -> TableSchema {
    let mut c = vec![
        Column::new("id", ColumnType::Long),
        Column::new("path", ColumnType::String),
        Column::new("folder_id", ColumnType::String),
        Column::new("creation_date", ColumnType::UtcDatetime),
    ];
    common(&mut c);
    TableSchema::new("bookmarks", &["id"], c)
}

fn tables() -> Vec<Arc<TableSchema>> {
    vec![
        Arc::new(users_table()),
        Arc::new(groups_table()),
        Arc::new(notes_table()),
        Arc::new(bookmarks_table()),
    ]
}

pub fn info() -> ConnectorInfo {
    ConnectorInfo {
        name: NAME,
        description: "Egnyte users, groups, notes, bookmarks (SCIM v2 and v1 lists, OAuth2, one shared rate budget)",
        sample_config: SAMPLE_CONFIG,
        tables,
        build: |c, m| {
            Ok(Arc::new(Egnyte::new(EgnyteConfig::validate(c)?, m)) as Arc<dyn Connector>)
        },
    }
}

/// Validated configuration (the seed's keys, plus OAuth refresh and budget).
#[derive(Debug, Clone)]
pub struct EgnyteConfig {
    pub api_token: Secret,
    /// `https://{domain}.egnyte.com`, or `base_url` when given (a proxy, the playground).
    pub base: Url,
    pub sync_frequency_hours: u32,
    pub initial_sync_days: u32,
    pub max_records_per_page: u32,
    pub timeout: Duration,
    pub attempts: u32,
    pub enable: [bool; 4],
    pub debug_logging: bool,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    /// `requests_per_second`: the shared budget (default 2, Egnyte's per-token limit).
    pub requests_per_second: u32,
    /// `concurrency`: pages in flight per stream (default 2).
    pub concurrency: usize,
}

impl EgnyteConfig {
    pub fn validate(mut c: ConfigReader) -> Result<Self> {
        let api_token = c.secret("api_token")?;
        let domain = c.string("domain")?;
        let base_url = c.opt_string("base_url")?;
        let base = match base_url {
            Some(_) => c.url("base_url")?,
            None => {
                let d = domain.trim().to_ascii_lowercase();
                let d = d
                    .strip_prefix("https://")
                    .unwrap_or(&d)
                    .trim_end_matches('/')
                    .trim_end_matches(".egnyte.com")
                    .to_string();
                if d.starts_with('<') || d.ends_with('>') {
                    return Err(c.error(
                        "domain",
                        "still holds the placeholder from the example; put your Egnyte domain here (\"acme\" for acme.egnyte.com)",
                    ));
                }
                if d.is_empty() || !d.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
                    return Err(c.error(
                        "domain",
                        format!("must be the Egnyte domain name (\"acme\" for acme.egnyte.com), got {domain:?}"),
                    ));
                }
                Url::parse(&format!("https://{d}.egnyte.com")).expect("valid URL")
            }
        };
        let cfg = EgnyteConfig {
            api_token,
            base,
            sync_frequency_hours: c.int_in("sync_frequency_hours", 1..=168, 4)? as u32,
            initial_sync_days: c.int_in("initial_sync_days", 1..=365, 90)? as u32,
            max_records_per_page: c.int_in("max_records_per_page", 1..=1000, 100)? as u32,
            timeout: Duration::from_secs(c.int_in("request_timeout_seconds", 1..=600, 30)? as u64),
            attempts: c.int_in("retry_attempts", 1..=10, 3)? as u32,
            enable: [
                c.bool_or("enable_users", true)?,
                c.bool_or("enable_groups", true)?,
                c.bool_or("enable_notes", true)?,
                c.bool_or("enable_bookmarks", true)?,
            ],
            debug_logging: c.bool_or("enable_debug_logging", false)?,
            client_id: c.opt_string("client_id")?,
            client_secret: c.opt_secret("client_secret")?,
            refresh_token: c.opt_secret("refresh_token")?,
            requests_per_second: c.int_in("requests_per_second", 1..=100, 2)? as u32,
            concurrency: c.int_in("concurrency", 1..=16, 2)? as usize,
        };
        c.finish()?;
        Ok(cfg)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Paging {
    /// `startIndex` (1-based) / `count`, list `resources`, `totalResults`.
    Scim,
    /// `offset` / `count`, list under `key`.
    Offset { key: &'static str },
}

struct Stream {
    table: Arc<TableSchema>,
    decoder: Arc<BatchDecoder>,
    path: &'static str,
    paging: Paging,
    page_size: u32,
}

impl Stream {
    fn name(&self) -> &str {
        &self.table.name
    }
}

pub struct Egnyte {
    cfg: EgnyteConfig,
    http: HttpClient,
    oauth: Option<Arc<OAuth>>,
    streams: Vec<Stream>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Egnyte {
    pub fn new(cfg: EgnyteConfig, metrics: Arc<HttpMetrics>) -> Self {
        let policy = RetryPolicy {
            max_attempts: cfg.attempts,
            timeout: cfg.timeout,
            // Egnyte's QPS window is one second; waiting longer than a few
            // minutes on a per-second throttle means something else is wrong.
            ..RetryPolicy::default()
        };
        let limiter = Arc::new(RateLimiter::per_second(cfg.requests_per_second as f64));
        let plain = HttpClient::new(policy.clone(), Auth::None)
            .with_metrics(metrics.clone())
            .with_rate_limit(limiter.clone());
        let oauth = cfg.refresh_token.as_ref().map(|r| {
            OAuth::new(
                cfg.api_token.clone(),
                Some(r.clone()),
                cfg.base.join("/puboauth/token").expect("valid URL"),
                cfg.client_id.clone(),
                cfg.client_secret.clone(),
                plain.clone(),
            )
        });
        let auth = match &oauth {
            Some(o) => Auth::OAuth(o.clone()),
            None => Auth::Bearer(cfg.api_token.clone()),
        };
        let http = HttpClient::new(policy, auth)
            .with_header("accept", "application/json")
            .with_metrics(metrics)
            .with_rate_limit(limiter.clone())
            .with_classifier(mashery())
            .for_origins([&cfg.base]);
        let page = cfg.max_records_per_page;
        let stream = |t: TableSchema, path, paging, page_size| {
            let table = Arc::new(t);
            Stream {
                decoder: Arc::new(BatchDecoder::new(table.clone())),
                table,
                path,
                paging,
                page_size,
            }
        };
        let streams = vec![
            stream(
                users_table(),
                "/pubapi/v2/users",
                Paging::Scim,
                page.min(SCIM_MAX),
            ),
            stream(
                groups_table(),
                "/pubapi/v2/groups",
                Paging::Scim,
                page.min(SCIM_MAX),
            ),
            stream(
                notes_table(),
                "/pubapi/v1/notes",
                Paging::Offset { key: "notes" },
                page,
            ),
            stream(
                bookmarks_table(),
                "/pubapi/v1/bookmarks",
                Paging::Offset { key: "bookmarks" },
                page,
            ),
        ];
        Egnyte {
            cfg,
            http,
            oauth,
            streams,
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut u = self.cfg.base.join(path).expect("valid path");
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        u
    }

    async fn sync_full_scan(&self, ctx: &SyncContext, s: &Stream) -> Result<()> {
        let scan = FullScan::<Position>::begin(&ctx.state, s.table.clone())?;
        let start = scan.resume_at().map_or(0, |p| p.position);
        let mut pages = self.list(ctx, s, start, Vec::new());
        while let Some((batch, after)) = pages.next().await? {
            let rows = batch.num_rows() as u64;
            ctx.emit.upsert(&s.table, batch).await?;
            scan.page(&ctx.emit, rows, Position { position: after })
                .await?;
        }
        let outcome = pages.outcome();
        tracing::info!(stream = s.name(), pages = outcome.pages, "read");
        // Whatever a complete scan did not see was deleted in Egnyte.
        let evidence = match outcome.complete_and_stable {
            true => Evidence::Complete {
                source_total: outcome.total,
            },
            false => Evidence::Moved {
                why: "the list changed during the scan",
            },
        };
        scan.finish(&ctx.emit, evidence).await
    }

    /// Notes by creation date: from a day before the last complete read
    /// (or `initial_sync_days` back) to tomorrow.
    async fn sync_notes(&self, ctx: &SyncContext, s: &Stream) -> Result<()> {
        let read = CursorScan::<Position>::begin(&ctx.state, s.name())?;
        let day = Duration::from_secs(86_400);
        let began = read.began_us();
        let from = read
            .since(day)
            .unwrap_or(began - self.cfg.initial_sync_days as i64 * day.as_micros() as i64);
        let date = |us: i64| format_utc_micros(us)[..10].to_string();
        let query = vec![
            ("start_time", date(from)),
            // `end_time` is "created before": tomorrow includes all of today.
            ("end_time", date(began + day.as_micros() as i64)),
        ];
        let start = read.resume_at().map_or(0, |p| p.position);
        let mut pages = self.list(ctx, s, start, query);
        while let Some((batch, after)) = pages.next().await? {
            ctx.emit.upsert(&s.table, batch).await?;
            read.page(&ctx.emit, Some(Position { position: after }))
                .await?;
        }
        let scan = pages.outcome();
        let end = CursorEnd {
            advance_to: scan.complete_and_stable.then_some(began),
            stable: scan.complete_and_stable,
            count: None,
        };
        read.finish(&ctx.emit, end).await?;
        tracing::info!(stream = s.name(), pages = scan.pages, from = %date(from), "read");
        Ok(())
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        tracing::info!(
            requests_per_second = self.cfg.requests_per_second,
            sync_frequency_hours = self.cfg.sync_frequency_hours,
            "syncing Egnyte (scheduling belongs to cron or an orchestrator: sync_frequency_hours is not used)"
        );
        // A refresh token rotated by an earlier run.
        if let (Some(o), Some(key)) = (&self.oauth, sealing_key(&self.cfg)) {
            if let Some(t) = ctx
                .state
                .stream(AUTH_STREAM)
                .and_then(|v| v.get("refresh_token_sealed"))
                .and_then(Value::as_str)
                .and_then(|s| unseal(&key, s))
            {
                o.use_refresh_token(t);
            }
        }
        let mut runs: Vec<BoxFuture<'_, Result<()>>> = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            if !ctx.wants(s.name()) {
                continue;
            }
            if !self.cfg.enable[i] {
                tracing::info!(
                    stream = s.name(),
                    "disabled in the configuration; not requested"
                );
                continue;
            }
            let ctx = &ctx;
            runs.push(if s.name() == "notes" {
                Box::pin(self.sync_notes(ctx, s))
            } else {
                Box::pin(self.sync_full_scan(ctx, s))
            });
        }
        futures::future::try_join_all(runs).await?;
        let mut saved = None;
        self.save_rotated_token(&ctx, &mut saved).await
    }
}

impl Connector for Egnyte {
    fn name(&self) -> &str {
        NAME
    }

    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.streams.iter().map(|s| s.table.clone()).collect()
    }

    fn check(&self) -> BoxFuture<'_, Vec<super::TableCheck>> {
        Box::pin(async move {
            let explain = Explainer {
                oauth: self.oauth.is_some(),
            };
            let mut out = Vec::new();
            for s in &self.streams {
                let first = match s.paging {
                    Paging::Scim => ("startIndex", "1"),
                    Paging::Offset { .. } => ("offset", "0"),
                };
                let url = self.url(s.path, &[(first.0, first.1.into()), ("count", "1".into())]);
                let outcome = async {
                    let resp = self
                        .http
                        .send(Request::get(url.clone()))
                        .await
                        .map_err(|e| explain.explain(e))?;
                    let env = envelope(&resp.body, s.paging)
                        .map_err(|m| Error::source(format!("Egnyte {url}"), m))?;
                    Ok(super::records(env.ranges.len()))
                }
                .await;
                out.push(super::TableCheck::new(
                    s.name(),
                    format!("GET {url}"),
                    outcome,
                ));
            }
            out
        })
    }

    fn sync(&self, ctx: SyncContext) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: Value) -> Result<EgnyteConfig> {
        let mut c =
            json!({"api_token": "tok_123456", "domain": "acme", "refresh_token": "r_abcdef"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        EgnyteConfig::validate(ConfigReader::from_map(c.as_object().unwrap().clone()))
    }

    #[test]
    fn domain_becomes_the_base_url() {
        assert_eq!(
            cfg(json!({})).unwrap().base.as_str(),
            "https://acme.egnyte.com/"
        );
        assert_eq!(
            cfg(json!({"domain": "acme.egnyte.com"}))
                .unwrap()
                .base
                .as_str(),
            "https://acme.egnyte.com/"
        );
        let e = cfg(json!({"domain": "acme corp"})).unwrap_err().to_string();
        assert!(e.contains("\"domain\""), "{e}");
    }

    #[test]
    fn a_sealed_token_opens_only_with_the_same_credentials() {
        let c = cfg(json!({"client_secret": "s3cret"})).unwrap();
        let key = sealing_key(&c).unwrap();
        let sealed = seal(&key, &Secret::new("rotated-token-1"));
        assert!(!sealed.contains("rotated-token-1"));
        assert_eq!(unseal(&key, &sealed).unwrap().expose(), "rotated-token-1");
        let other = sealing_key(&cfg(json!({"client_secret": "other"})).unwrap()).unwrap();
        assert!(unseal(&other, &sealed).is_none());
        assert!(unseal(&key, "not base64!").is_none());
    }

    #[test]
    fn envelopes_of_both_list_styles() {
        let scim = br#"{"startIndex": 1, "totalResults": 3, "itemsPerPage": 2, "Resources": [{"id": 1}, {"id": 2}]}"#;
        let e = envelope(scim, Paging::Scim).unwrap();
        assert_eq!((e.ranges.len(), e.total), (2, Some(3)));
        let v1 = br#"{"notes": [{"id": "a"}], "total_results": 7, "offset": 0}"#;
        let e = envelope(v1, Paging::Offset { key: "notes" }).unwrap();
        assert_eq!((e.ranges.len(), e.total), (1, Some(7)));
        assert!(envelope(v1, Paging::Offset { key: "bookmarks" }).is_err());
    }
}
