//! The declarative REST connector: `etl sync rest --spec my_api.toml`.
//!
//! A spec ([`spec`]) declares the API; this module runs it. Tables are read
//! in the order declared (a parent before its children, an `update` or
//! `delete` table after the table it changes). Each page is decoded into
//! Arrow on the rayon pool with the table's declared columns plus the ones
//! inferred from the data so far (string → STRING, boolean → BOOLEAN,
//! integer → LONG, other numbers → DOUBLE, object/array → JSON; kept in the
//! state so later syncs type them the same), and committed with the table's
//! state at each page.
//!
//! Incremental tables send their saved cursor (minus the lookback) in their
//! cursor parameter. When the API returns records in ascending cursor order
//! (`ascending = true`) the cursor is saved with every page, so an
//! interrupted sync resumes where it stopped; otherwise it is saved when the
//! table is complete. Child tables keep one cursor per parent record.
//!
//! Pages are fetched one after another while each needs the previous one
//! (tokens, next URLs); when the first page gives the total (`offset` with
//! `total_field`, `page_number` with `total_pages_field`) the rest are
//! fetched `concurrency` at a time and handled in order.
//!
//! A table with `windows` is read priority-first ([`spec::Windows`]):
//! forward from the last sync's end to now, then back into history one
//! window per request scan, each window's cursors committed with it.

mod auth;
mod cursor;
mod run;
pub mod spec;
mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use url::Url;

use self::cursor::{cursor_minus, fill, join_url};
use self::spec::{Operation, Paginator, Spec, TableSpec};
use super::{Connector, ConnectorInfo, SyncContext};
use crate::config::ConfigReader;
use crate::decode::envelope;
use crate::error::{Error, Result};
use crate::http::rate::{HeaderBudget, RateLimiter};
use crate::http::{Auth, HttpClient, HttpMetrics, Request, RetryPolicy};
use crate::schema::{Column, ColumnType, TableSchema};
use crate::source::{fetch, paginate};

pub const NAME: &str = "rest";
/// The surrogate key of a table without a primary key (the SDK's `_fivetran_id`).
pub const ROW_HASH_COLUMN: &str = "_etl_id";

pub const SAMPLE_CONFIG: &str = r#"{
  "spec": "data/specs/fivetran_offset.toml"
}"#;

pub fn info() -> ConnectorInfo {
    ConnectorInfo {
        name: NAME,
        description: "Any REST API described by a spec file (--spec my_api.toml; see data/specs/)",
        sample_config: SAMPLE_CONFIG,
        tables: Vec::new,
        build: |c, m| Ok(Arc::new(Rest::from_config(c, m)?) as Arc<dyn Connector>),
    }
}

pub struct Rest {
    spec: Spec,
    http: HttpClient,
    tables: Vec<Arc<TableSchema>>,
}

/// Request rate of a budget that only follows the server's headers.
const UNMETERED: f64 = 1000.0;

/// The destination table of a spec table (declared columns, key, `_synced_at`).
pub(super) fn table_schema(t: &TableSpec) -> TableSchema {
    // In the tester's order: the declared columns as the spec lists them,
    // the row hash of a table without a key, the rest as they come, the
    // sync time last.
    let mut columns: Vec<Column> = t.columns.to_vec();
    if t.primary_key.is_empty() {
        columns.push(Column::row_hash(ROW_HASH_COLUMN));
    }
    for k in &t.primary_key {
        if !t.columns.iter().any(|c| &c.name == k) {
            // An undeclared key column is kept as text.
            columns.push(Column::new(k, ColumnType::String));
        }
    }
    columns.push(Column::synced_at("_synced_at"));
    let pk: Vec<&str> = if t.primary_key.is_empty() {
        vec![ROW_HASH_COLUMN]
    } else {
        t.primary_key.iter().map(String::as_str).collect()
    };
    let mut s = TableSchema::new(&t.name, &pk, columns);
    s.on_bad_row = t.on_bad_row;
    s
}

impl Rest {
    pub fn from_config(mut c: ConfigReader, metrics: Arc<HttpMetrics>) -> Result<Self> {
        let spec_path = PathBuf::from(c.string("spec")?);
        // A relative spec path in a configuration file is relative to that file.
        let spec_path = match c.path().and_then(|p| p.parent()) {
            Some(dir) if spec_path.is_relative() && !spec_path.exists() => dir.join(&spec_path),
            _ => spec_path,
        };
        let base_url = match c.opt_string("base_url")? {
            Some(_) => Some(c.url("base_url")?),
            None => None,
        };
        let vars = c.take_rest();
        c.finish()?;
        let spec = spec::load(&spec_path, &vars, base_url.as_ref())?;
        Self::new(spec, metrics)
    }

    pub fn new(spec: Spec, metrics: Arc<HttpMetrics>) -> Result<Self> {
        let policy = RetryPolicy {
            max_attempts: spec.attempts,
            timeout: spec.timeout,
            ..RetryPolicy::default()
        };
        // One budget for every request of the sync, token requests included.
        let budget = spec.rate_limit.as_ref().map(|r| {
            let rate = r.requests_per_second.unwrap_or(UNMETERED);
            (Arc::new(RateLimiter::per_second(rate)), r.headers.clone())
        });
        let metered = |c: HttpClient| match &budget {
            None => c,
            Some((limiter, headers)) => {
                let c = c.with_rate_limit(limiter.clone());
                match headers {
                    Some((remaining, reset)) => c.with_header_budget(HeaderBudget {
                        remaining: remaining.clone(),
                        reset: reset.clone(),
                    }),
                    None => c,
                }
            }
        };
        let plain =
            metered(HttpClient::new(policy.clone(), Auth::None).with_metrics(metrics.clone()));
        let auth = auth::client_auth(&spec, plain)?;
        // Credentials go to the base URL's origin, and to a table path that
        // names a whole URL of its own; never to an origin a response names.
        let absolute: Vec<Url> = spec
            .tables
            .iter()
            .filter_map(|t| Url::parse(&t.path).ok())
            .collect();
        let mut http = HttpClient::new(policy, auth)
            .with_metrics(metrics)
            .with_secrets(&spec.secrets.iter().collect::<Vec<_>>())
            .for_origins(std::iter::once(&spec.base_url).chain(absolute.iter()));
        http = metered(http).with_header("accept", "application/json");
        for (k, v) in &spec.headers {
            http = http.with_header_value(k.clone(), v.clone());
        }
        let tables = spec
            .tables
            .iter()
            .filter(|t| t.operation == Operation::Upsert)
            .map(|t| {
                let s = table_schema(t);
                s.validate()
                    .map_err(|e| Error::config(Some(&spec.path), e))?;
                Ok(Arc::new(s))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Rest { spec, http, tables })
    }

    /// The first request of a scan, before its paginator's parameters.
    fn first_url(
        &self,
        t: &TableSpec,
        parent: Option<&Value>,
        cursor: Option<&str>,
        extra: &[(String, String)],
    ) -> Result<Url> {
        let path = fill(&t.path, parent, &t.name)?;
        let mut url = join_url(&self.spec.base_url, &path).map_err(|e| {
            Error::config(
                Some(&self.spec.path),
                format!("table {}: path: {e}", t.name),
            )
        })?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &t.params {
                q.append_pair(k, &fill(v, parent, &t.name)?);
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
            if let Some(inc) = &t.incremental {
                let sent = cursor
                    .map(|c| cursor_minus(c, inc.lookback))
                    .or_else(|| inc.initial.clone());
                if let Some(v) = sent {
                    q.append_pair(&inc.param, &v);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// The paginator of a scan of `t`; a step-size scan starts at `resume` when given.
    fn paginator(&self, t: &TableSpec, resume: Option<u64>) -> Box<dyn paginate::Paginator> {
        match t.paginator.clone() {
            Paginator::None => Box::new(paginate::Single),
            Paginator::Offset {
                offset_param,
                limit_param,
                limit,
                total_field,
            } => Box::new(paginate::Offset {
                offset_param,
                limit_param,
                limit,
                total_field,
                position: 0,
            }),
            Paginator::PageNumber {
                page_param,
                size_param,
                size,
                start,
                total_pages_field,
            } => Box::new(paginate::PageNumber {
                page_param,
                size_param,
                size,
                start,
                total_pages_field,
                position: start,
            }),
            Paginator::NextPageUrl { field } => Box::new(paginate::NextUrl { field }),
            Paginator::Cursor {
                token_field,
                param,
                has_more_field,
            } => Box::new(paginate::Token {
                token_field,
                param,
                has_more_field,
            }),
            Paginator::Keyset {
                token_field,
                param,
                resume_from_cursor,
            } => {
                let by_cursor = t.incremental.as_ref().filter(|_| resume_from_cursor);
                let resume_param = by_cursor.map(|i| i.param.clone());
                Box::new(paginate::Keyset::new(token_field, param, resume_param))
            }
            Paginator::Scim {
                start_param,
                count_param,
                count,
                total_field,
            } => Box::new(paginate::Scim {
                start_param,
                count_param,
                count,
                total_field,
                position: 1,
            }),
            Paginator::Step {
                start_param,
                end_param,
                step,
                start,
            } => Box::new(paginate::Step {
                start_param,
                end_param,
                step,
                position: resume.unwrap_or(start),
            }),
        }
    }

    /// How the fetcher sends a request of `t` (a POST carries the body).
    fn sender(&self, t: &TableSpec) -> fetch::Sender {
        let http = self.http.clone();
        let (post, body) = (t.method == reqwest::Method::POST, t.body.clone());
        Arc::new(move |url: Url| {
            let http = http.clone();
            let req = match post {
                true => Request::post_json(url, &body.clone().unwrap_or(json!({}))),
                false => Request::get(url),
            };
            Box::pin(async move { http.send(req).await })
        })
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        let mut run = run::Run {
            rest: self,
            ctx: &ctx,
            schemas: self
                .tables
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            inferred: HashMap::new(),
            parent_rows: HashMap::new(),
            decoders: HashMap::new(),
        };
        for t in &self.spec.tables {
            if ctx.wants(&t.name) {
                run.table(t).await?;
            }
        }
        Ok(())
    }
}

impl Connector for Rest {
    fn name(&self) -> &str {
        NAME
    }

    /// Each API gets its own schema: the spec's `name`, or its file name.
    fn default_schema(&self) -> String {
        crate::dest::namespace::schema_name_of(&self.spec.name)
    }

    fn owner(&self) -> String {
        format!("{NAME}:{}", self.spec.name)
    }

    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.clone()
    }

    fn read_for_each_record_of(&self, table: &str) -> Option<String> {
        self.spec
            .tables
            .iter()
            .find(|t| t.name == table)
            .and_then(|t| t.parent.clone())
    }

    fn sync(&self, ctx: SyncContext) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(ctx))
    }

    fn check(&self) -> BoxFuture<'_, Vec<super::TableCheck>> {
        Box::pin(async move {
            let mut out = Vec::new();
            // Children need their parents' records: checking the parents covers their API.
            for t in self.spec.tables.iter().filter(|t| t.parent.is_none()) {
                let now = chrono::Utc::now().timestamp_micros();
                let window: Vec<(String, String)> = match &t.windows {
                    Some(w) => vec![
                        (
                            w.start_param.clone(),
                            w.format.write(now - w.size.as_micros() as i64),
                        ),
                        (w.end_param.clone(), w.format.write(now)),
                    ],
                    None => Vec::new(),
                };
                let url = match self.first_url(t, None, None, &window) {
                    Ok(u) => self.paginator(t, None).start(u),
                    Err(e) => {
                        out.push(super::TableCheck::new(&t.name, t.path.clone(), Err(e)));
                        continue;
                    }
                };
                let shown = format!("{} {}", t.method, self.http.redact(url.as_str()));
                let outcome = async {
                    let resp = (self.sender(t))(url.clone()).await?;
                    let page = envelope::split(&resp.body, &t.records).map_err(|m| {
                        Error::source(
                            format!("table {}: {}", t.name, self.http.redact(url.as_str())),
                            m,
                        )
                    })?;
                    Ok(super::records(page.ranges.len()))
                }
                .await;
                out.push(super::TableCheck::new(&t.name, shown, outcome));
            }
            out
        })
    }
}
