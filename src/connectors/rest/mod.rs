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

mod page;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use serde_json::{json, Map, Value};
use url::Url;

use self::page::{link_next, split_page, token_only, with_param};
use self::spec::{
    AuthSpec, Backfill, KeyPlace, Operation, Paginator, Spec, TableSpec, TimeFormat, Windows,
};
use super::{Connector, ConnectorInfo, SyncContext};
use crate::batch::values::{format_utc_micros, parse_utc_micros};
use crate::batch::{spawn_decode, BatchDecoder, PageContext};
use crate::config::ConfigReader;
use crate::error::{Error, Result};
use crate::http::oauth::{Grant, OAuth};
use crate::http::paginate::ScanGuard;
use crate::http::{Auth, HttpClient, HttpMetrics, Request, RetryPolicy, Secret};
use crate::schema::{Column, ColumnSource, ColumnType, TableSchema};

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

/// State key of a step-size table: where its next scan starts.
const STEP_POSITION: &str = "step_position";

/// The destination table of a spec table (declared columns, key, `_synced_at`).
fn table_schema(t: &TableSpec) -> TableSchema {
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
        let plain = HttpClient::new(policy.clone(), Auth::None).with_metrics(metrics.clone());
        let auth = match &spec.auth {
            AuthSpec::None => Auth::None,
            AuthSpec::Bearer { token } => Auth::Bearer(token.clone()),
            AuthSpec::Basic { username, password } => {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                Auth::Header(
                    reqwest::header::AUTHORIZATION,
                    Secret::new(format!("Basic {b}")),
                )
            }
            AuthSpec::ApiKey {
                key,
                place: KeyPlace::Header(h),
                prefix,
            } => Auth::Header(
                reqwest::header::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    Error::config(
                        Some(&spec.path),
                        format!("auth.header: {h:?} is not a header name"),
                    )
                })?,
                Secret::new(format!("{prefix}{}", key.expose())),
            ),
            AuthSpec::ApiKey {
                key,
                place: KeyPlace::Query(p),
                prefix,
            } => Auth::Query(p.clone(), Secret::new(format!("{prefix}{}", key.expose()))),
            AuthSpec::Session {
                login_path,
                body,
                token_field,
                expires_in_field,
                header,
                prefix,
            } => {
                if !header.eq_ignore_ascii_case("authorization") {
                    return Err(Error::config(
                        Some(&spec.path),
                        "auth.header: a session token is sent in Authorization",
                    ));
                }
                let plain = plain
                    .clone()
                    .with_secrets(&spec.secrets.iter().collect::<Vec<_>>());
                Auth::OAuth(OAuth::with_grant(
                    Grant::Login {
                        body: body.clone(),
                        token_field: token_field.clone(),
                        expires_in_field: expires_in_field.clone(),
                    },
                    prefix,
                    None,
                    join_url(&spec.base_url, login_path)?,
                    None,
                    None,
                    plain,
                ))
            }
            AuthSpec::OAuthRefresh {
                token_url,
                client_id,
                client_secret,
                refresh_token,
                in_query,
            } => Auth::OAuth(OAuth::with_grant(
                Grant::RefreshToken {
                    in_query: *in_query,
                },
                "Bearer",
                Some(refresh_token.clone()),
                token_url.clone(),
                client_id.clone(),
                client_secret.clone(),
                plain.clone(),
            )),
            AuthSpec::OAuthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Auth::OAuth(OAuth::with_grant(
                Grant::ClientCredentials {
                    scope: scope.clone(),
                },
                "Bearer",
                None,
                token_url.clone(),
                Some(client_id.clone()),
                Some(client_secret.clone()),
                plain.clone(),
            )),
        };
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
        http = http.with_header("accept", "application/json");
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

    /// The first request of a scan.
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
            match &t.paginator {
                Paginator::Offset {
                    offset_param,
                    limit_param,
                    limit,
                    ..
                } => {
                    q.append_pair(limit_param, &limit.to_string());
                    q.append_pair(offset_param, "0");
                }
                Paginator::PageNumber {
                    page_param,
                    size_param,
                    size,
                    start,
                    ..
                } => {
                    if let (Some(p), Some(s)) = (size_param, size) {
                        q.append_pair(p, &s.to_string());
                    }
                    q.append_pair(page_param, &start.to_string());
                }
                Paginator::Scim {
                    start_param,
                    count_param,
                    count,
                    ..
                } => {
                    q.append_pair(start_param, "1");
                    q.append_pair(count_param, &count.to_string());
                }
                Paginator::Step {
                    start_param,
                    end_param,
                    step,
                    start,
                } => {
                    q.append_pair(start_param, &start.to_string());
                    q.append_pair(end_param, &(start + step - 1).to_string());
                }
                _ => {}
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// The request for `url` (a POST carries the body).
    fn request(t: &TableSpec, url: &Url) -> Request {
        let url = url.clone();
        if t.method == reqwest::Method::POST {
            Request::post_json(url, &t.body.clone().unwrap_or(json!({})))
        } else {
            Request::get(url)
        }
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        let mut run = Run {
            rest: self,
            ctx: &ctx,
            schemas: self
                .tables
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            inferred: HashMap::new(),
            parent_rows: HashMap::new(),
        };
        for t in &self.spec.tables {
            run.table(t).await?;
        }
        Ok(())
    }
}

/// `base` + `path` (a path relative to the base's own path, or a whole URL).
fn join_url(base: &Url, path: &str) -> Result<Url> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return Url::parse(path).map_err(|e| Error::Usage(format!("{path:?} is not a URL: {e}")));
    }
    let joined = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    Url::parse(&joined).map_err(|e| Error::Usage(format!("{joined:?} is not a URL: {e}")))
}

/// A sortable form of a cursor value: timestamps by instant, numbers by value, else text.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum CursorKey {
    Time(i64),
    Number(f64),
    Text(String),
}

fn cursor_key(v: &str) -> CursorKey {
    if let Some(t) = parse_utc_micros(v) {
        CursorKey::Time(t)
    } else if let Ok(n) = v.trim().parse::<f64>() {
        CursorKey::Number(n)
    } else {
        CursorKey::Text(v.to_string())
    }
}

/// The cursor as sent: `lookback` earlier, in the format it came in.
fn cursor_minus(v: &str, lookback: std::time::Duration) -> String {
    if lookback.is_zero() {
        return v.to_string();
    }
    match cursor_key(v) {
        CursorKey::Time(t) => {
            let t = t - lookback.as_micros() as i64;
            if !v.contains('.') && v.ends_with('Z') {
                TimeFormat::Rfc3339.write(t)
            } else {
                format_utc_micros(t)
            }
        }
        CursorKey::Number(n) if !v.contains('.') => {
            ((n as i64) - lookback.as_secs() as i64).to_string()
        }
        _ => v.to_string(),
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// One sync of a spec.
struct Run<'a> {
    rest: &'a Rest,
    ctx: &'a SyncContext,
    /// Each destination table as it is now (declared + inferred columns).
    schemas: HashMap<String, Arc<TableSchema>>,
    /// Inferred columns per table, in the order first seen.
    inferred: HashMap<String, Vec<(String, ColumnType)>>,
    /// Records of each parent table read this sync (its children are read for each).
    parent_rows: HashMap<String, Vec<Value>>,
}

/// Where a table's pages are in one scan.
struct Scan {
    /// The next request's URL (parameters included).
    url: Url,
    /// For `offset`, `page_number`, `scim`, `step`.
    position: u64,
}

impl<'a> Run<'a> {
    async fn table(&mut self, t: &TableSpec) -> Result<()> {
        let stream = t.name.clone();
        let saved = self
            .ctx
            .state
            .stream(&stream)
            .cloned()
            .unwrap_or(Value::Null);
        // The table written to: this one, or an update/delete's target.
        let target = t.target.clone().unwrap_or_else(|| t.name.clone());
        if let Some(Value::Object(cols)) = saved.get("inferred") {
            let list = self.inferred.entry(target.clone()).or_default();
            for (k, v) in cols {
                if let Some(ty) = v.as_str().and_then(|s| ColumnType::parse(s).ok()) {
                    if !list.iter().any(|(n, _)| n == k) {
                        list.push((k.clone(), ty));
                    }
                }
            }
        }
        let parents: Vec<Option<Value>> = match &t.parent {
            None => vec![None],
            Some(p) => self
                .parent_rows
                .get(p)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(Some)
                .collect(),
        };
        let keeps_rows = self
            .rest
            .spec
            .tables
            .iter()
            .any(|c| c.parent.as_deref() == Some(&t.name));
        let mut state = saved.as_object().cloned().unwrap_or_default();
        let mut rows_for_children = Vec::new();
        // `truncate`: rows a full read no longer returns are soft-deleted
        // once it is complete (through the engine's deletion guard).
        let read_began = chrono::Utc::now().timestamp_micros();
        if let Some(w) = &t.windows {
            return self.windowed(t, w, &target, state).await;
        }
        tracing::info!(table = %t.name, parents = t.parent.as_ref().map(|_| parents.len()), "reading");
        for parent in parents {
            let parent_key = parent.as_ref().map(|p| parent_key(t, p));
            let cursor = match &parent_key {
                None => state
                    .get("cursor")
                    .and_then(Value::as_str)
                    .map(String::from),
                Some(k) => state
                    .get("parents")
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .map(String::from),
            };
            let new_cursor = self
                .scan(
                    t,
                    &target,
                    parent.as_ref(),
                    cursor.clone(),
                    &[],
                    &mut state,
                    parent_key.as_deref(),
                    keeps_rows.then_some(&mut rows_for_children),
                )
                .await?;
            if let Some(c) = new_cursor {
                set_cursor(&mut state, parent_key.as_deref(), c);
            }
            self.save(t, &target, &mut state, true).await?;
        }
        if keeps_rows {
            self.parent_rows.insert(t.name.clone(), rows_for_children);
        }
        if t.truncate {
            let schema = self.schema(&target)?;
            self.ctx
                .emit
                .delete_older_than(&schema, "_synced_at", read_began, None)
                .await?;
            self.save(t, &target, &mut state, true).await?;
        }
        Ok(())
    }

    /// A priority-first table: forward from the last sync's end to now, then
    /// back into history window by window (see [`spec::Windows`]). State:
    /// `incremental_cursor` (where the forward read ends), `historical_cursor`
    /// (history is read from here on) and `historical_limit` (where history
    /// ends), each committed with the window it closes.
    async fn windowed(
        &mut self,
        t: &TableSpec,
        w: &Windows,
        target: &str,
        mut state: Map<String, Value>,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_micros();
        let now = now - now.rem_euclid(1_000_000);
        let size = w.size.as_micros() as i64;
        let saved = |k: &str| {
            state
                .get(k)
                .and_then(Value::as_str)
                .and_then(parse_utc_micros)
        };
        let mut forward = saved("incremental_cursor").unwrap_or(now - size);
        let mut history = saved("historical_cursor").unwrap_or(now - size);
        let limit = match w.backfill {
            Backfill::Days(d) => {
                saved("historical_limit").unwrap_or(now - d as i64 * 86_400_000_000)
            }
            Backfill::From(f) => f,
        };
        let put = |state: &mut Map<String, Value>, k: &str, v: i64| {
            state.insert(k.into(), Value::String(format_utc_micros(v)));
        };
        put(&mut state, "incremental_cursor", forward);
        put(&mut state, "historical_cursor", history);
        put(&mut state, "historical_limit", limit);
        tracing::info!(
            table = %t.name,
            from = %format_utc_micros(forward),
            history_left_hours = (history - limit).max(0) / 3_600_000_000,
            "reading by windows, newest first"
        );
        let lookback = w.lookback.as_micros() as i64;
        while forward < now {
            let end = (forward + size).min(now);
            self.window(t, w, target, forward - lookback, end, &mut state)
                .await?;
            forward = end;
            put(&mut state, "incremental_cursor", forward);
            self.save(t, target, &mut state, false).await?;
        }
        let mut read = 0u64;
        while history > limit && w.backfill_windows_per_sync.is_none_or(|m| read < m) {
            let start = (history - size).max(limit);
            self.window(t, w, target, start, history, &mut state)
                .await?;
            history = start;
            put(&mut state, "historical_cursor", history);
            self.save(t, target, &mut state, false).await?;
            read += 1;
        }
        if history > limit {
            tracing::info!(
                table = %t.name,
                windows = read,
                history_left_hours = (history - limit) / 3_600_000_000,
                "history windows read this sync; the next sync goes on from here"
            );
        } else {
            tracing::info!(table = %t.name, windows = read, "history complete");
        }
        self.save(t, target, &mut state, true).await
    }

    /// Read one window `[start, end)`.
    async fn window(
        &mut self,
        t: &TableSpec,
        w: &Windows,
        target: &str,
        start: i64,
        end: i64,
        state: &mut Map<String, Value>,
    ) -> Result<()> {
        let params = [
            (w.start_param.clone(), w.format.write(start)),
            (w.end_param.clone(), w.format.write(end)),
        ];
        tracing::debug!(table = %t.name, start = %params[0].1, end = %params[1].1, "window");
        self.scan(t, target, None, None, &params, state, None, None)
            .await?;
        Ok(())
    }

    fn schema(&self, name: &str) -> Result<Arc<TableSchema>> {
        self.schemas
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no table {name}")))
    }

    /// Checkpoint the table's state (its inferred columns with it).
    async fn save(
        &self,
        t: &TableSpec,
        target: &str,
        state: &mut Map<String, Value>,
        done: bool,
    ) -> Result<()> {
        if let Some(list) = self.inferred.get(target) {
            let m: Map<String, Value> = list
                .iter()
                .map(|(k, ty)| (k.clone(), Value::String(ty.fivetran_name())))
                .collect();
            state.insert("inferred".into(), Value::Object(m));
        }
        if done {
            state.insert(
                "last_complete".into(),
                Value::String(format_utc_micros(chrono::Utc::now().timestamp_micros())),
            );
        }
        self.ctx
            .emit
            .checkpoint(&t.name, Value::Object(state.clone()))
            .await
    }

    /// Read every page of one scan; the table's new cursor if it advanced.
    #[allow(clippy::too_many_arguments)]
    async fn scan(
        &mut self,
        t: &TableSpec,
        target: &str,
        parent: Option<&Value>,
        cursor: Option<String>,
        extra: &[(String, String)],
        state: &mut Map<String, Value>,
        parent_key: Option<&str>,
        mut keep: Option<&mut Vec<Value>>,
    ) -> Result<Option<String>> {
        let first = self.rest.first_url(t, parent, cursor.as_deref(), extra)?;
        let mut scan = Scan {
            url: first.clone(),
            position: match &t.paginator {
                Paginator::PageNumber { start, .. } => *start,
                Paginator::Scim { .. } => 1,
                Paginator::Step { start, .. } => *start,
                _ => 0,
            },
        };
        // A step-size scan goes on from the window after the last one that
        // had rows (the SDK pattern's saved `current_id`).
        if let Paginator::Step {
            start_param,
            end_param,
            step,
            ..
        } = &t.paginator
        {
            let saved = state.get(STEP_POSITION).and_then(Value::as_u64);
            if let Some(pos) = saved.filter(|_| parent.is_none()) {
                tracing::info!(table = %t.name, from = pos, "resuming the step-size scan");
                scan.position = pos;
                let u = with_param(&scan.url, start_param, &pos.to_string());
                scan.url = with_param(&u, end_param, &(pos + step - 1).to_string());
            }
        }
        let mut best: Option<(CursorKey, String)> =
            cursor.as_ref().map(|c| (cursor_key(c), c.clone()));
        let mut rows: u64 = 0;
        let mut pages = 0u64;
        // Records read, against the total the first page gave (progress).
        let (mut read, mut total) = (0u64, None);
        let mut guard = ScanGuard::new(self.ctx.max_pages);
        // Whether any record had the cursor field, and the fields one had.
        let mut cursor_seen = false;
        let mut some_fields: Option<Vec<String>> = None;
        // The pages after the first, fetched `t.concurrency` at a time and
        // handled in order, once the first page says how many there are.
        let mut fanout: Option<
            BoxStream<
                'a,
                (
                    Url,
                    std::result::Result<crate::http::Response, crate::http::HttpError>,
                ),
            >,
        > = None;
        loop {
            let (url, resp) = match fanout.as_mut() {
                Some(s) => match s.next().await {
                    Some((u, r)) => (u, r?),
                    None => break,
                },
                None => {
                    guard.visit(&scan.url).map_err(|m| {
                        Error::source(format!("table {}", t.name), self.rest.http.redact(&m))
                    })?;
                    let resp = self.rest.http.send(Rest::request(t, &scan.url)).await?;
                    (scan.url.clone(), resp)
                }
            };
            let location = self.rest.http.redact(url.as_str());
            let page_error = |m: String| Error::source(format!("table {}: {location}", t.name), m);
            if fanout.is_some() {
                guard.count().map_err(page_error)?;
            }
            pages += 1;
            let page = split_page(&resp.body, &t.records).map_err(page_error)?;
            let (body, list) = (&page.envelope, &page.records);
            let n = list.len() as u64;
            // A top-level table whose pages say how many records there are shows how far it is.
            if parent.is_none() {
                read += n;
                total = total.or_else(|| total_records(t, body));
                if let Some(total) = total {
                    self.ctx.emit.stats.scanned(target, read, total);
                }
            }
            // Newly seen fields: infer their types.
            self.learn(t, target, list);
            let mut page_best: Option<(CursorKey, String)> = None;
            if let Some(inc) = &t.incremental {
                if some_fields.is_none() {
                    some_fields = list
                        .iter()
                        .find_map(Value::as_object)
                        .map(|o| o.keys().cloned().collect());
                }
                for r in list {
                    cursor_seen |= r.get(&inc.cursor_field).is_some();
                    if let Some(v) = r.get(&inc.cursor_field).and_then(value_text) {
                        let k = cursor_key(&v);
                        if page_best.as_ref().is_none_or(|(b, _)| k > *b) {
                            page_best = Some((k, v));
                        }
                    }
                }
            }
            if let Some(keep) = keep.as_deref_mut() {
                // A record that is not an object was rejected: no children.
                keep.extend(list.iter().filter(|r| r.is_object()).cloned());
            }
            if n > 0 {
                self.emit(t, target, &resp.body, page.ranges, list, &location, rows)
                    .await?;
            }
            rows += n;
            self.ctx.emit.page_fetched();
            if let Some(pb) = &page_best {
                if best.as_ref().is_none_or(|(b, _)| pb.0 > *b) {
                    best = Some(pb.clone());
                }
            }
            // Ascending: the cursor is safe to keep with this page.
            if t.incremental.as_ref().is_some_and(|i| i.ascending) {
                if let Some((_, c)) = &best {
                    set_cursor(state, parent_key, c.clone());
                }
            }
            if fanout.is_some() {
                if n == 0 {
                    return Err(page_error(crate::http::paginate::empty_but_more(
                        "the total the first page gave",
                    )));
                }
                self.save(t, target, state, false).await?;
                continue;
            }
            let next = self
                .next_page(
                    t,
                    &first,
                    &mut scan,
                    body,
                    &resp,
                    n,
                    page_best.as_ref().map(|b| b.1.as_str()),
                )
                .map_err(|e| match e {
                    Error::Source { message, .. } => page_error(message),
                    other => other,
                })?;
            if matches!(t.paginator, Paginator::Step { .. }) && parent.is_none() {
                state.insert(STEP_POSITION.into(), json!(scan.position));
            }
            self.save(t, target, state, false).await?;
            if next.is_some() && pages == 1 && t.concurrency > 1 {
                if let Some(urls) = remaining_pages(t, &scan, body, n) {
                    tracing::debug!(table = %t.name, pages = urls.len(), in_flight = t.concurrency, "fetching the other pages concurrently");
                    let rest = self.rest;
                    let requests: Vec<(Url, Request)> = urls
                        .into_iter()
                        .map(|u| (u.clone(), Rest::request(t, &u)))
                        .collect();
                    fanout = Some(
                        futures::stream::iter(requests)
                            .map(move |(u, req)| async move { (u, rest.http.send(req).await) })
                            .buffered(t.concurrency)
                            .boxed(),
                    );
                    continue;
                }
            }
            match next {
                Some(u) => scan.url = u,
                None => break,
            }
        }
        if let (Some(inc), Some(fields), false) = (&t.incremental, &some_fields, cursor_seen) {
            // Never incremental, silently: the spec names a field the API does not send.
            return Err(Error::config(
                Some(&self.rest.spec.path),
                format!(
                    "table {}: incremental.cursor_field {:?} is in none of the {rows} records read \
                     (they have: {})",
                    t.name,
                    inc.cursor_field,
                    crate::error::truncate_for_display(&fields.join(", "), 300)
                ),
            ));
        }
        tracing::info!(table = %t.name, rows, pages, "table read");
        Ok(best.map(|b| b.1))
    }

    /// The next page's URL, or `None` at the end.
    #[allow(clippy::too_many_arguments)]
    fn next_page(
        &self,
        t: &TableSpec,
        first: &Url,
        scan: &mut Scan,
        body: &Value,
        resp: &crate::http::Response,
        n: u64,
        page_max_cursor: Option<&str>,
    ) -> Result<Option<Url>> {
        let set = with_param;
        let empty = |signal: &str| {
            Error::source(
                format!("table {}", t.name),
                crate::http::paginate::empty_but_more(signal),
            )
        };
        let number = |path: &Option<Vec<String>>| {
            path.as_ref()
                .and_then(|p| at(body, p))
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        };
        let token = |path: &[String]| {
            at(body, path)
                .and_then(value_text)
                .filter(|s| !s.is_empty())
        };
        Ok(match &t.paginator {
            Paginator::None => None,
            Paginator::Offset {
                offset_param,
                limit,
                total_field,
                ..
            } => {
                let more = match number(total_field) {
                    Some(total) if n == 0 && scan.position < total => {
                        return Err(empty(&format!(
                            "a total of {total} at offset {}",
                            scan.position
                        )))
                    }
                    Some(total) => scan.position + n < total,
                    None => n >= *limit,
                };
                scan.position += n;
                more.then(|| set(&scan.url, offset_param, &scan.position.to_string()))
            }
            Paginator::PageNumber {
                page_param,
                size,
                total_pages_field,
                ..
            } => {
                let more = match number(total_pages_field) {
                    Some(total) if n == 0 && scan.position < total => {
                        return Err(empty(&format!(
                            "{total} pages in all at page {}",
                            scan.position
                        )))
                    }
                    Some(total) => scan.position < total,
                    None => n > 0 && size.is_none_or(|s| n >= s),
                };
                scan.position += 1;
                more.then(|| set(&scan.url, page_param, &scan.position.to_string()))
            }
            Paginator::NextPageUrl { field } => {
                let next = match field {
                    Some(f) => token(f),
                    None => link_next(&resp.headers),
                };
                match next {
                    None => None,
                    Some(u) => Some(resp.url.join(&u).map_err(|e| {
                        Error::source(
                            format!("table {}", t.name),
                            format!("next page URL {u:?} is not a URL: {e}"),
                        )
                    })?),
                }
            }
            Paginator::Cursor {
                token_field,
                param,
                has_more_field,
            } => {
                let said = has_more_field
                    .as_ref()
                    .and_then(|p| at(body, p))
                    .and_then(Value::as_bool);
                if said == Some(true) && n == 0 {
                    return Err(empty("has_more: true"));
                }
                let more = said.unwrap_or(true);
                match token(token_field) {
                    Some(tok) if more && n > 0 => Some(set(&scan.url, param, &tok)),
                    _ => None,
                }
            }
            Paginator::Keyset {
                token_field,
                param,
                resume_from_cursor,
            } => match token(token_field) {
                Some(tok) if n > 0 => {
                    let inc = t.incremental.as_ref();
                    let sent = inc.and_then(|i| {
                        scan.url
                            .query_pairs()
                            .find(|(k, _)| k == &i.param)
                            .map(|(_, v)| v.into_owned())
                    });
                    match (resume_from_cursor, inc, page_max_cursor) {
                        // Ask again from the page's last cursor value, inclusively: records
                        // sharing it are read again rather than skipped.
                        (true, Some(i), Some(c)) if sent.as_deref() != Some(c) => {
                            Some(set(first, &i.param, c))
                        }
                        (true, _, _) => {
                            tracing::warn!(table = %t.name, "a whole page shares one cursor value: following the scroll token");
                            Some(token_only(first, param, &tok))
                        }
                        _ => Some(token_only(first, param, &tok)),
                    }
                }
                _ => None,
            },
            Paginator::Scim {
                start_param,
                count,
                total_field,
                ..
            } => {
                let total = at(body, total_field).and_then(Value::as_u64);
                if let Some(tot) = total.filter(|&tot| n == 0 && scan.position <= tot) {
                    return Err(empty(&format!(
                        "totalResults {tot} at startIndex {}",
                        scan.position
                    )));
                }
                scan.position += n;
                let more = n > 0 && total.map_or(n >= *count, |tot| scan.position <= tot);
                more.then(|| set(&scan.url, start_param, &scan.position.to_string()))
            }
            Paginator::Step {
                start_param,
                end_param,
                step,
                ..
            } => {
                if n == 0 {
                    None
                } else {
                    scan.position += step;
                    let u = set(&scan.url, start_param, &scan.position.to_string());
                    Some(set(&u, end_param, &(scan.position + step - 1).to_string()))
                }
            }
        })
    }

    /// Record the types of fields not declared and not seen before.
    fn learn(&mut self, t: &TableSpec, target: &str, records: &[Value]) {
        let Ok(schema) = self.schema(target) else {
            return;
        };
        let list = self.inferred.entry(target.to_string()).or_default();
        let before = list.len();
        let mut widened = false;
        for r in records {
            let Some(obj) = r.as_object() else { continue };
            for (k, v) in obj {
                let Some(ty) = crate::batch::infer::value_type(v) else {
                    continue;
                };
                if let Some((_, old)) = list.iter_mut().find(|(n, _)| n == k) {
                    // Values of another type widen the column, as in the SDK's tester.
                    let mut wider = crate::batch::infer::merge(*old, ty);
                    if wider == ColumnType::Json && *old != ColumnType::Json {
                        // Text cannot be re-read as JSON: objects join the text instead.
                        wider = ColumnType::String;
                    }
                    if wider != *old {
                        tracing::info!(table = %t.name, column = %k, from = %old, to = %wider, "inferred column widened");
                        *old = wider;
                        widened = true;
                    }
                    continue;
                }
                if schema.column(k).is_some() || k.starts_with("_etl") || k == "_synced_at" {
                    continue;
                }
                tracing::debug!(table = %t.name, column = %k, r#type = %ty.fivetran_name(), "column inferred");
                list.push((k.clone(), ty));
            }
        }
        if widened || list.len() != before || list.iter().any(|(k, _)| schema.column(k).is_none()) {
            // Rebuild the table with the inferred columns added after the declared ones.
            let spec_table = self
                .rest
                .spec
                .tables
                .iter()
                .find(|x| x.name == target)
                .unwrap_or(t);
            let mut s = table_schema(spec_table);
            let synced = s.columns.pop().expect("_synced_at");
            for (k, ty) in list.iter() {
                s.columns.push(Column::new(k, *ty));
            }
            s.columns.push(synced);
            self.schemas.insert(target.to_string(), Arc::new(s));
        }
    }

    /// Decode the page's records and hand them to the destination.
    #[allow(clippy::too_many_arguments)]
    async fn emit(
        &self,
        t: &TableSpec,
        target: &str,
        page: &bytes::Bytes,
        ranges: Vec<Range<usize>>,
        records: &[Value],
        location: &str,
        first_row: u64,
    ) -> Result<()> {
        let schema = self.schema(target)?;
        let mut decode_schema = (*schema).clone();
        decode_schema.on_bad_row = t.on_bad_row;
        if self.ctx.naming == crate::naming::Naming::Fivetran {
            // A table without a key is keyed by the tester's own hash.
            for c in &mut decode_schema.columns {
                if c.source == ColumnSource::RowHash {
                    c.source = ColumnSource::FivetranId;
                }
            }
        }
        let decoder = Arc::new(BatchDecoder::new(Arc::new(decode_schema)));
        let ctx = PageContext {
            first_row,
            location: location.to_string(),
            synced_at_micros: chrono::Utc::now().timestamp_micros(),
        };
        let decoded = spawn_decode(decoder, page.clone(), ranges, ctx).await?;
        if !decoded.rejects.is_empty() {
            tracing::warn!(table = %t.name, rejected = decoded.rejects.len(), "rows quarantined in _etl_rejects");
            self.ctx.emit.reject(decoded.rejects).await?;
        }
        let batch = decoded.batch;
        match t.operation {
            Operation::Upsert => self.ctx.emit.upsert(&schema, batch).await,
            Operation::Delete => {
                let keep: Vec<usize> = schema
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| schema.is_primary_key(&c.name))
                    .map(|(i, _)| i)
                    .collect();
                let b = batch
                    .project(&keep)
                    .map_err(|e| Error::Internal(format!("delete batch: {e}")))?;
                self.ctx.emit.delete(&schema, b).await
            }
            Operation::Update => {
                // Only the fields the records carry (and the key, and the sync time).
                let fields = present_fields(records);
                let keep: Vec<usize> = schema
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        schema.is_primary_key(&c.name)
                            || c.source == ColumnSource::SyncedAt
                            || matches!(&c.source, ColumnSource::Path(p) if p.len() == 1 && fields.contains(p[0].as_str()))
                    })
                    .map(|(i, _)| i)
                    .collect();
                let b = batch
                    .project(&keep)
                    .map_err(|e| Error::Internal(format!("update batch: {e}")))?;
                self.ctx.emit.update(&schema, b).await
            }
        }
    }
}

fn set_cursor(state: &mut Map<String, Value>, parent_key: Option<&str>, c: String) {
    match parent_key {
        None => {
            state.insert("cursor".into(), Value::String(c));
        }
        Some(k) => {
            let parents = state.entry("parents").or_insert_with(|| json!({}));
            if let Some(m) = parents.as_object_mut() {
                m.insert(k.to_string(), Value::String(c));
            }
        }
    }
}

/// A parent record's identity for its children's cursors: the values its
/// placeholders use, joined.
fn parent_key(t: &TableSpec, parent: &Value) -> String {
    let mut parts = Vec::new();
    let mut rest = t.path.as_str();
    while let Some(i) = rest.find("{parent.") {
        let end = rest[i..].find('}').map_or(rest.len(), |e| i + e);
        let field = &rest[i + 8..end];
        parts.push(parent.get(field).and_then(value_text).unwrap_or_default());
        rest = &rest[(end + 1).min(rest.len())..];
    }
    parts.join("/")
}

/// `text` with `{parent.field}` replaced by the parent record's values (URL-encoded).
fn fill(text: &str, parent: Option<&Value>, table: &str) -> Result<String> {
    let Some(p) = parent else {
        return Ok(text.to_string());
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("{parent.") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').map(|e| i + e).ok_or_else(|| {
            Error::Usage(format!("table {table}: unclosed {{parent.… in {text:?}"))
        })?;
        let field = &rest[i + 8..end];
        let v = p.get(field).and_then(value_text).ok_or_else(|| {
            Error::source(
                format!("table {table}"),
                format!(
                    "a parent record has no {field:?} for {text:?}: {}",
                    crate::error::truncate_for_display(&p.to_string(), 200)
                ),
            )
        })?;
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The records the whole scan holds, when a page says (`offset` with
/// `total_field`, `scim`'s `totalResults`).
fn total_records(t: &TableSpec, body: &Value) -> Option<u64> {
    let path = match &t.paginator {
        Paginator::Offset {
            total_field: Some(p),
            ..
        } => p,
        Paginator::Scim { total_field, .. } => total_field,
        _ => return None,
    };
    at(body, path).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
}

/// Every page after the first (`first_n` records), when the first page
/// tells how many there are: `offset` with `total_field`, `page_number`
/// with `total_pages_field`. `scan` is as `next_page` left it.
fn remaining_pages(t: &TableSpec, scan: &Scan, body: &Value, first_n: u64) -> Option<Vec<Url>> {
    let number = |path: &Option<Vec<String>>| {
        path.as_ref()
            .and_then(|p| at(body, p))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    };
    match &t.paginator {
        Paginator::Offset {
            offset_param,
            total_field,
            ..
        } if first_n > 0 => {
            let total = number(total_field)?;
            // Steps of what the server sent (it may cap the limit asked for).
            let offsets = (scan.position..total).step_by(first_n as usize);
            Some(
                offsets
                    .map(|o| with_param(&scan.url, offset_param, &o.to_string()))
                    .collect(),
            )
        }
        Paginator::PageNumber {
            page_param,
            start,
            total_pages_field,
            ..
        } if first_n > 0 => {
            let total = number(total_pages_field)?;
            Some(
                (scan.position..start + total)
                    .map(|p| with_param(&scan.url, page_param, &p.to_string()))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The top-level fields the records carry.
fn present_fields(records: &[Value]) -> HashSet<&str> {
    records
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| o.keys().map(String::as_str))
        .collect()
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
                    Ok(u) => u,
                    Err(e) => {
                        out.push(super::TableCheck::new(&t.name, t.path.clone(), Err(e)));
                        continue;
                    }
                };
                let shown = format!("{} {}", t.method, self.http.redact(url.as_str()));
                let outcome = async {
                    let resp = self.http.send(Rest::request(t, &url)).await?;
                    let page = split_page(&resp.body, &t.records).map_err(|m| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_lookback_keeps_the_format() {
        let d = std::time::Duration::from_secs(3600);
        assert_eq!(
            cursor_minus("2024-09-22T12:15:50Z", d),
            "2024-09-22T11:15:50Z"
        );
        assert_eq!(cursor_minus("1700000000", d), "1699996400");
        assert_eq!(cursor_minus("abc", d), "abc");
        assert!(cursor_key("2024-09-22T12:15:50Z") > cursor_key("2024-09-22T12:15:49Z"));
    }
}
