//! The spec file of the declarative REST connector (`etl sync rest --spec
//! my_api.toml`): base URL, auth, and per table the request, where the
//! records are, their key, declared columns, incremental cursor and
//! paginator. TOML or JSON.
//!
//! The whole spec is checked before any request: every error names the
//! file and the key path (`tables[1].paginator.limit: must be 1..=10000`),
//! unknown keys included. `${name}` in any string is replaced by the
//! configuration key `name` (`--config vars.json`), `${env:NAME}` by an
//! environment variable; what is substituted into `[auth]` is a secret,
//! redacted from every log and error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::decode::values::parse_utc_micros;
use crate::error::{Error, Result};
use crate::http::Secret;
use crate::schema::{Column, ColumnType, OnBadRow};

/// A parsed, checked spec.
#[derive(Debug, Clone)]
pub struct Spec {
    pub path: PathBuf,
    pub name: String,
    pub base_url: Url,
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    pub auth: AuthSpec,
    pub timeout: Duration,
    pub attempts: u32,
    /// `rate_limit`: one request budget for the whole sync.
    pub rate_limit: Option<RateLimit>,
    pub tables: Vec<TableSpec>,
    /// Every value substituted into `[auth]` (for redaction).
    pub secrets: Vec<Secret>,
}

/// `rate_limit = { requests_per_second = 10, remaining_header = "…", reset_header = "…" }`:
/// every request of a sync (pages in flight, retries and token requests
/// included) takes a slot; a `Retry-After`, or an answer whose
/// `remaining_header` says 0, pauses them all (until `reset_header`'s time).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub requests_per_second: Option<f64>,
    /// The headers announcing the requests left and when the count resets.
    pub headers: Option<(reqwest::header::HeaderName, reqwest::header::HeaderName)>,
}

#[derive(Debug, Clone)]
pub enum AuthSpec {
    None,
    Bearer {
        token: Secret,
    },
    Basic {
        username: String,
        password: Secret,
    },
    /// `header: prefix + key`, or `?param=key`.
    ApiKey {
        key: Secret,
        place: KeyPlace,
        prefix: String,
    },
    /// POST credentials to a login path, send the returned token.
    Session {
        login_path: String,
        body: Value,
        token_field: Vec<String>,
        expires_in_field: Option<Vec<String>>,
        header: String,
        prefix: String,
    },
    OAuthRefresh {
        token_url: Url,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        refresh_token: Secret,
        in_query: bool,
    },
    OAuthClientCredentials {
        token_url: Url,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum KeyPlace {
    Header(String),
    Query(String),
}

/// What a table's records do to the destination (the SDK operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Upsert,
    /// Partial update of existing rows (`op.update`).
    Update,
    /// Soft delete by key (`op.delete`).
    Delete,
}

#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub path: String,
    pub method: reqwest::Method,
    pub params: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Path to the list of records in the body; empty: the body is the list.
    pub records: Vec<String>,
    /// Empty: `_etl_id`, the SDK's row hash.
    pub primary_key: Vec<String>,
    pub columns: Vec<Column>,
    pub on_bad_row: OnBadRow,
    pub incremental: Option<Incremental>,
    /// Priority-first time windows (instead of `incremental`).
    pub windows: Option<Windows>,
    pub paginator: Paginator,
    /// `{parent.field}` placeholders in `path` are filled from each record of this table.
    pub parent: Option<String>,
    pub operation: Operation,
    /// The table `update`/`delete` records apply to (default: this one).
    pub target: Option<String>,
    /// After a full read, soft-delete the rows it did not return (`op.truncate`).
    pub truncate: bool,
    /// Pages in flight once the first page tells how many there are
    /// (`offset` with `total_field`, `page_number` with `total_pages_field`).
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct Incremental {
    /// Field of each record holding its cursor value (`updatedAt`).
    pub cursor_field: String,
    /// Query parameter the saved cursor is sent in (`updated_since`).
    pub param: String,
    /// Value sent on a first sync (`0001-01-01T00:00:00Z`); none: parameter left out.
    pub initial: Option<String>,
    /// Sent this much before the saved cursor (records changed meanwhile).
    pub lookback: Duration,
    /// Records arrive in ascending cursor order: the cursor is saved page by page.
    pub ascending: bool,
}

/// Priority-first sync (the SDK's priority_first_sync_for_high_volume_initial_syncs):
/// each sync first reads forward from the last sync's end to now, newest data
/// first on a first sync, then walks back into history one window at a time
/// until `backfill_from` is reached. Every window is committed with the
/// table's state, so a stopped sync resumes at the window it was reading.
#[derive(Debug, Clone)]
pub struct Windows {
    /// Parameter of a window's start, inclusive (`updated_since`).
    pub start_param: String,
    /// Parameter of its end, exclusive (`updated_until`).
    pub end_param: String,
    /// Width of a window.
    pub size: Duration,
    /// How far history reaches.
    pub backfill: Backfill,
    /// Forward windows start this much before the last sync's end (late writes).
    pub lookback: Duration,
    /// At most this many history windows per sync (none: until done).
    pub backfill_windows_per_sync: Option<u64>,
    /// How window bounds are written in the parameters.
    pub format: TimeFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backfill {
    /// This long before the first sync (fixed then, kept in the state).
    Days(u64),
    /// From this instant (microseconds since the epoch).
    From(i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeFormat {
    /// `2024-09-22T12:15:50Z`
    Rfc3339,
    /// Seconds since the epoch.
    Unix,
    /// Milliseconds since the epoch.
    UnixMillis,
}

impl TimeFormat {
    /// `micros` (since the epoch, UTC) as sent in a parameter.
    pub fn write(self, micros: i64) -> String {
        match self {
            TimeFormat::Rfc3339 => chrono::DateTime::from_timestamp_micros(micros)
                .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            TimeFormat::Unix => micros.div_euclid(1_000_000).to_string(),
            TimeFormat::UnixMillis => micros.div_euclid(1_000).to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Paginator {
    None,
    /// `offset`/`limit` parameters; stops at `total_field` or a short page.
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
        total_field: Option<Vec<String>>,
    },
    PageNumber {
        page_param: String,
        size_param: Option<String>,
        size: Option<u64>,
        start: u64,
        total_pages_field: Option<Vec<String>>,
    },
    /// The next page's URL in a body field, or in the `Link: <…>; rel="next"` header.
    NextPageUrl {
        field: Option<Vec<String>>,
    },
    /// An opaque token from the body sent back as a parameter.
    Cursor {
        token_field: Vec<String>,
        param: String,
        has_more_field: Option<Vec<String>>,
    },
    /// A scroll token: like `cursor`, but the first request's parameters
    /// (incremental included) are sent only once. `resume_from_cursor`
    /// requests the next page by the last record's cursor value instead
    /// (inclusive), for servers whose token skips records sharing the
    /// boundary value.
    Keyset {
        token_field: Vec<String>,
        param: String,
        resume_from_cursor: bool,
    },
    /// SCIM `startIndex` (from 1) and `count`, total in `totalResults`.
    Scim {
        start_param: String,
        count_param: String,
        count: u64,
        total_field: Vec<String>,
    },
    /// Windows of ids: `start_param`..`end_param`, `step` wide, until an empty page.
    Step {
        start_param: String,
        end_param: String,
        step: u64,
        start: u64,
    },
}

/// A spec object being read: each key checked once, unknown keys refused.
struct Obj<'a> {
    file: &'a Path,
    path: String,
    map: &'a Map<String, Value>,
    used: BTreeSet<&'static str>,
}

fn err(file: &Path, path: &str, msg: impl std::fmt::Display) -> Error {
    Error::config(Some(file), format!("{path}: {msg}"))
}

impl<'a> Obj<'a> {
    fn new(file: &'a Path, path: String, v: &'a Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Obj {
                file,
                path,
                map,
                used: BTreeSet::new(),
            }),
            other => Err(err(
                file,
                &path,
                format!("expected a table of keys, found {}", kind(other)),
            )),
        }
    }

    fn at(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn err(&self, k: &str, msg: impl std::fmt::Display) -> Error {
        err(self.file, &self.at(k), msg)
    }

    fn get(&mut self, k: &'static str) -> Option<&'a Value> {
        self.used.insert(k);
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn opt_str(&mut self, k: &'static str) -> Result<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(k, format!("expected a string, found {}", kind(other)))),
        }
    }

    fn str(&mut self, k: &'static str) -> Result<String> {
        match self.opt_str(k)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.err(k, "must not be empty")),
            None => Err(self.err(k, "is required")),
        }
    }

    fn str_or(&mut self, k: &'static str, default: &str) -> Result<String> {
        Ok(self.opt_str(k)?.unwrap_or_else(|| default.to_string()))
    }

    fn opt_int(
        &mut self,
        k: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>> {
        let v = match self.get(k) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        match v {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(self.err(
                k,
                format!(
                    "must be a whole number in {}..={}, found {}",
                    range.start(),
                    range.end(),
                    self.map[k]
                ),
            )),
        }
    }

    fn bool_or(&mut self, k: &'static str, default: bool) -> Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => {
                Err(self.err(k, format!("expected true or false, found {}", kind(other))))
            }
        }
    }

    /// A string or a list of strings.
    fn strings(&mut self, k: &'static str) -> Result<Option<Vec<String>>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    other => Err(err(
                        self.file,
                        &format!("{}[{i}]", self.at(k)),
                        format!("expected a column name, found {other}"),
                    )),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(self.err(
                k,
                format!(
                    "expected a string or a list of strings, found {}",
                    kind(other)
                ),
            )),
        }
    }

    /// A dotted JSON path (`data.items`); `""` or `"$"`: the value itself.
    fn json_path(&mut self, k: &'static str) -> Result<Option<Vec<String>>> {
        Ok(self.opt_str(k)?.map(|s| split_path(&s)))
    }

    fn obj(&mut self, k: &'static str) -> Result<Option<Obj<'a>>> {
        let path = self.at(k);
        match self.get(k) {
            None => Ok(None),
            Some(v) => Obj::new(self.file, path, v).map(Some),
        }
    }

    fn secret(&mut self, k: &'static str, secrets: &mut Vec<Secret>) -> Result<Secret> {
        let s = Secret::new(self.str(k)?);
        secrets.push(s.clone());
        Ok(s)
    }

    fn finish(self) -> Result<()> {
        if let Some(k) = self.map.keys().find(|k| !self.used.contains(k.as_str())) {
            let known: Vec<&str> = self.used.iter().copied().collect();
            return Err(self.err(k, format!("unknown key (known here: {})", known.join(", "))));
        }
        Ok(())
    }
}

pub fn split_path(s: &str) -> Vec<String> {
    let s = s.trim().trim_start_matches('$').trim_start_matches('.');
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').map(String::from).collect()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// Replace `${name}` / `${env:NAME}` in every string of `v`.
fn substitute(
    file: &Path,
    path: &str,
    v: &mut Value,
    vars: &Map<String, Value>,
    used: &mut Vec<String>,
) -> Result<()> {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                out.push_str(&rest[..i]);
                let end = rest[i..]
                    .find('}')
                    .ok_or_else(|| err(file, path, format!("unclosed ${{ in {s:?}")))?;
                let name = &rest[i + 2..i + end];
                let value = if let Some(env) = name.strip_prefix("env:") {
                    std::env::var(env).map_err(|_| {
                        err(
                            file,
                            path,
                            format!("environment variable {env} (from ${{{name}}}) is not set"),
                        )
                    })?
                } else {
                    match vars.get(name) {
                        Some(Value::String(x)) => x.clone(),
                        Some(Value::Null) | None => {
                            return Err(err(
                                file,
                                path,
                                format!(
                                    "${{{name}}} is not set: give \"{name}\" in the --config file"
                                ),
                            ))
                        }
                        Some(other) => other.to_string(),
                    }
                };
                used.push(value.clone());
                out.push_str(&value);
                rest = &rest[i + end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                substitute(file, &format!("{path}[{i}]"), x, vars, used)?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                substitute(file, &p, x, vars, used)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Read the spec at `file`, with `vars` for `${name}`, `base_url` overriding its own.
pub fn load(file: &Path, vars: &Map<String, Value>, base_url: Option<&Url>) -> Result<Spec> {
    let mut value = read(file)?;
    parse(file, &mut value, vars, base_url)
}

/// The spec at `file` for describing its tables (`etl schema rest --spec`):
/// checked like any spec but without its `[auth]`, its `${name}` variables
/// need not be set. Also returns the names of those variables.
pub fn load_for_schema(file: &Path) -> Result<(Spec, Vec<String>)> {
    let mut value = read(file)?;
    let mut names = Vec::new();
    blank_vars(&mut value, &mut names);
    if let Some(o) = value.as_object_mut() {
        o.remove("auth");
    }
    let base = Url::parse("http://spec.invalid/").expect("valid URL");
    let spec = parse(file, &mut value, &Map::new(), Some(&base))?;
    Ok((spec, names))
}

/// Replace every `${name}` in `v`'s strings with a placeholder, collecting the names.
fn blank_vars(v: &mut Value, names: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            while let Some(i) = s.find("${") {
                let Some(end) = s[i..].find('}') else { break };
                let name = s[i + 2..i + end].to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
                s.replace_range(i..i + end + 1, "x");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| blank_vars(x, names)),
        Value::Object(o) => o.values_mut().for_each(|x| blank_vars(x, names)),
        _ => {}
    }
}

/// The spec file as a JSON value (TOML converted).
fn read(file: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::config(Some(file), format!("cannot read the spec: {e}")))?;
    let is_json = file.extension().is_some_and(|e| e == "json");
    let value: Value = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| Error::config(Some(file), format!("not valid JSON: {e}")))?
    } else {
        let t: toml::Value = toml::from_str(&text)
            .map_err(|e| Error::config(Some(file), format!("not valid TOML: {e}")))?;
        serde_json::to_value(t)
            .map_err(|e| Error::config(Some(file), format!("cannot read the TOML: {e}")))?
    };
    Ok(value)
}

/// Check a spec already parsed into `value`.
pub fn parse(
    file: &Path,
    value: &mut Value,
    vars: &Map<String, Value>,
    base_url: Option<&Url>,
) -> Result<Spec> {
    let mut secrets = Vec::new();
    if let Some(auth) = value.get_mut("auth") {
        let mut used = Vec::new();
        substitute(file, "auth", auth, vars, &mut used)?;
        secrets.extend(used.into_iter().filter(|s| s.len() >= 4).map(Secret::new));
    }
    let mut ignored = Vec::new();
    substitute(file, "", value, vars, &mut ignored)?;
    let mut top = Obj::new(file, String::new(), value)?;
    let name = top.opt_str("name")?.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rest".into())
    });
    let base_text = top.str("base_url")?;
    let base_url = match base_url {
        Some(u) => u.clone(),
        None => Url::parse(&base_text)
            .map_err(|e| top.err("base_url", format!("{base_text:?} is not a URL: {e}")))?,
    };
    if !matches!(base_url.scheme(), "http" | "https") {
        return Err(top.err("base_url", format!("{base_url} is not an http(s) URL")));
    }
    let headers = match top.obj("headers")? {
        None => Vec::new(),
        Some(h) => {
            let keys: Vec<String> = h.map.keys().cloned().collect();
            let mut out = Vec::new();
            for k in keys {
                let v = match &h.map[&k] {
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(h.err(&k, format!("expected a string, found {}", kind(other))))
                    }
                };
                let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| h.err(&k, "is not a valid header name"))?;
                let value = reqwest::header::HeaderValue::from_str(&v).map_err(|_| {
                    h.err(
                        &k,
                        "holds characters a header value cannot (control characters, line breaks)",
                    )
                })?;
                out.push((name, value));
            }
            out
        }
    };
    let timeout = Duration::from_secs(
        top.opt_int("request_timeout_seconds", 1..=3600)?
            .unwrap_or(60),
    );
    let attempts = top.opt_int("retry_attempts", 1..=10)?.unwrap_or(3) as u32;
    let rate_limit = match top.obj("rate_limit")? {
        None => None,
        Some(r) => Some(rate_limit(r)?),
    };
    let auth = match top.obj("auth")? {
        None => AuthSpec::None,
        Some(a) => auth(a, &base_url, &mut secrets)?,
    };
    let tables_value = top
        .get("tables")
        .ok_or_else(|| top.err("tables", "is required: declare at least one [[tables]]"))?;
    let list = match tables_value {
        Value::Array(a) if !a.is_empty() => a,
        _ => return Err(top.err("tables", "expected a list of tables ([[tables]])")),
    };
    let mut tables: Vec<TableSpec> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let t = table(Obj::new(file, format!("tables[{i}]"), t)?)?;
        if tables.iter().any(|o| o.name == t.name) {
            return Err(err(
                file,
                &format!("tables[{i}].name"),
                format!("table {:?} is declared twice", t.name),
            ));
        }
        if let Some(p) = &t.parent {
            if !tables.iter().any(|o| &o.name == p) {
                return Err(err(
                    file,
                    &format!("tables[{i}].parent"),
                    format!("{p:?} is not a table declared before this one"),
                ));
            }
            if tables.iter().any(|o| &o.name == p && o.windows.is_some()) {
                return Err(err(
                    file,
                    &format!("tables[{i}].parent"),
                    format!("{p:?} is read by windows: it cannot have child tables"),
                ));
            }
        } else if t.path.contains("{parent.") {
            return Err(err(
                file,
                &format!("tables[{i}].path"),
                "uses {parent.…} but the table has no parent",
            ));
        }
        if let Some(target) = &t.target {
            if !tables.iter().any(|o| &o.name == target) {
                return Err(err(
                    file,
                    &format!("tables[{i}].target"),
                    format!("{target:?} is not a table declared before this one"),
                ));
            }
        }
        tables.push(t);
    }
    top.finish()?;
    Ok(Spec {
        path: file.to_path_buf(),
        name,
        base_url,
        headers,
        auth,
        timeout,
        attempts,
        rate_limit,
        tables,
        secrets,
    })
}

fn rate_limit(mut r: Obj) -> Result<RateLimit> {
    let rps = match r.get("requests_per_second") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(n) if n > 0.0 && n <= 10_000.0 => Some(n),
            _ => {
                return Err(r.err(
                    "requests_per_second",
                    format!(
                    "must be a number of requests per second above 0 (at most 10000), found {v}"
                ),
                ))
            }
        },
    };
    let header = |r: &mut Obj, k: &'static str| -> Result<Option<reqwest::header::HeaderName>> {
        match r.opt_str(k)? {
            None => Ok(None),
            Some(h) => reqwest::header::HeaderName::from_bytes(h.as_bytes())
                .map(Some)
                .map_err(|_| r.err(k, format!("{h:?} is not a header name"))),
        }
    };
    let remaining = header(&mut r, "remaining_header")?;
    let reset = header(&mut r, "reset_header")?;
    let headers = match (remaining, reset) {
        (Some(a), Some(b)) => Some((a, b)),
        (None, None) => None,
        _ => {
            return Err(r.err(
                "remaining_header",
                "set both remaining_header and reset_header, or neither",
            ))
        }
    };
    if rps.is_none() && headers.is_none() {
        return Err(r.err(
            "requests_per_second",
            "is required unless remaining_header and reset_header are set",
        ));
    }
    r.finish()?;
    Ok(RateLimit {
        requests_per_second: rps,
        headers,
    })
}

fn auth(mut a: Obj, base: &Url, secrets: &mut Vec<Secret>) -> Result<AuthSpec> {
    let ty = a.str("type")?;
    let out = match ty.as_str() {
        "none" => AuthSpec::None,
        "bearer" => AuthSpec::Bearer { token: a.secret("token", secrets)? },
        "basic" => AuthSpec::Basic { username: a.str("username")?, password: a.secret("password", secrets)? },
        "api_key" => {
            let key = a.secret("key", secrets)?;
            let place = match a.opt_str("query_param")? {
                Some(p) => KeyPlace::Query(p),
                None => KeyPlace::Header(a.str_or("header", "Authorization")?),
            };
            AuthSpec::ApiKey { key, place, prefix: a.str_or("prefix", "")? }
        }
        "session_token" => {
            let body = a.get("login_body").cloned().ok_or_else(|| a.err("login_body", "is required (the JSON posted to log in)"))?;
            AuthSpec::Session {
                login_path: a.str("login_path")?,
                body,
                token_field: split_path(&a.str_or("token_field", "token")?),
                expires_in_field: a.json_path("expires_in_field")?,
                header: a.str_or("header", "Authorization")?,
                prefix: a.str_or("prefix", "")?,
            }
        }
        "oauth2_refresh_token" => {
            let token_url = token_url(&mut a, base)?;
            AuthSpec::OAuthRefresh {
                token_url,
                client_id: a.opt_str("client_id")?,
                client_secret: a.opt_str("client_secret")?.map(Secret::new),
                refresh_token: a.secret("refresh_token", secrets)?,
                in_query: match a.str_or("params_in", "form")?.as_str() {
                    "form" => false,
                    "query" => true,
                    other => return Err(a.err("params_in", format!("must be \"form\" or \"query\", got {other:?}"))),
                },
            }
        }
        "oauth2_client_credentials" => AuthSpec::OAuthClientCredentials {
            token_url: token_url(&mut a, base)?,
            client_id: a.str("client_id")?,
            client_secret: a.secret("client_secret", secrets)?,
            scope: a.opt_str("scope")?,
        },
        other => {
            return Err(a.err(
                "type",
                format!("unknown auth {other:?} (one of: none, bearer, basic, api_key, session_token, oauth2_refresh_token, oauth2_client_credentials)"),
            ))
        }
    };
    if let AuthSpec::OAuthRefresh {
        client_secret: Some(s),
        ..
    } = &out
    {
        secrets.push(s.clone());
    }
    a.finish()?;
    Ok(out)
}

fn token_url(a: &mut Obj, base: &Url) -> Result<Url> {
    let t = a.str("token_url")?;
    base.join(&t)
        .map_err(|e| a.err("token_url", format!("{t:?} is not a URL: {e}")))
}

fn table(mut t: Obj) -> Result<TableSpec> {
    let name = t.str("name")?;
    if name.starts_with('_') {
        return Err(t.err(
            "name",
            format!("{name:?}: names starting with _ are reserved"),
        ));
    }
    let path = t.str("path")?;
    let method = match t.str_or("method", "GET")?.to_ascii_uppercase().as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        other => return Err(t.err("method", format!("must be GET or POST, got {other:?}"))),
    };
    let params = match t.obj("params")? {
        None => Vec::new(),
        Some(p) => {
            let keys: Vec<String> = p.map.keys().cloned().collect();
            let mut out = Vec::new();
            for k in keys {
                let v = match &p.map[&k] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(p.err(
                            &k,
                            format!("expected a string or number, found {}", kind(other)),
                        ))
                    }
                };
                out.push((k, v));
            }
            out
        }
    };
    let body = t.get("body").cloned();
    if body.is_some() && method != reqwest::Method::POST {
        return Err(t.err("body", "is only sent with method = \"POST\""));
    }
    let records = t.json_path("records")?.unwrap_or_default();
    let primary_key = t.strings("primary_key")?.unwrap_or_default();
    let mut columns = Vec::new();
    if let Some(c) = t.obj("columns")? {
        let keys: Vec<String> = c.map.keys().cloned().collect();
        for k in keys {
            let ty = match &c.map[&k] {
                Value::String(s) => ColumnType::parse(s).map_err(|e| c.err(&k, e))?,
                Value::Object(m) => {
                    let tn = m.get("type").and_then(Value::as_str).unwrap_or_default();
                    if !tn.eq_ignore_ascii_case("DECIMAL") {
                        return Err(c.err(&k, "only DECIMAL is declared as a table ({ type = \"DECIMAL\", precision = 15, scale = 2 })"));
                    }
                    let p = m.get("precision").and_then(Value::as_u64);
                    let s = m.get("scale").and_then(Value::as_i64);
                    match (p, s) {
                        (Some(p), Some(s)) if p <= 38 && s >= 0 && s <= p as i64 => {
                            ColumnType::decimal(p as u8, s as i8).map_err(|e| c.err(&k, e))?
                        }
                        _ => {
                            return Err(c.err(
                                &k,
                                "DECIMAL needs precision (1..=38) and scale (0..=precision)",
                            ))
                        }
                    }
                }
                other => {
                    return Err(c.err(&k, format!("expected a type name, found {}", kind(other))))
                }
            };
            if k.starts_with("_etl") || k == "_synced_at" {
                return Err(c.err(&k, "names starting with _etl and _synced_at are reserved"));
            }
            // `user.login`: the field `login` of the record's `user` object,
            // as the column `user_login` (as built-in connectors read nested fields).
            if k.contains('.') {
                if k.split('.').any(str::is_empty) {
                    return Err(c.err(&k, "a dotted name needs a field on each side of every dot"));
                }
                columns.push(Column::at(&k.replace('.', "_"), ty, &k));
            } else {
                columns.push(Column::new(&k, ty));
            }
        }
    }
    // A key may name a nested field by its path too (kept as text unless declared).
    for k in primary_key.iter().filter(|k| k.contains('.')) {
        let name = k.replace('.', "_");
        if !columns.iter().any(|c| c.name == name) {
            columns.push(Column::at(&name, ColumnType::String, k));
        }
    }
    let primary_key: Vec<String> = primary_key
        .into_iter()
        .map(|k| k.replace('.', "_"))
        .collect();
    for k in &primary_key {
        if k.starts_with("_etl") {
            return Err(t.err(
                "primary_key",
                format!("{k:?} is reserved; leave primary_key out to get _etl_id"),
            ));
        }
    }
    let on_bad_row = match t.str_or("on_bad_row", "fail")?.as_str() {
        "fail" => OnBadRow::Fail,
        "quarantine" => OnBadRow::Quarantine,
        other => {
            return Err(t.err(
                "on_bad_row",
                format!("must be \"fail\" or \"quarantine\", got {other:?}"),
            ))
        }
    };
    let incremental = match t.obj("incremental")? {
        None => None,
        Some(mut i) => {
            let inc = Incremental {
                cursor_field: i.str("cursor_field")?,
                param: i.str("param")?,
                initial: i.opt_str("initial")?,
                lookback: Duration::from_secs(
                    i.opt_int("lookback_seconds", 0..=366 * 86_400)?
                        .unwrap_or(0),
                ),
                ascending: i.bool_or("ascending", false)?,
            };
            i.finish()?;
            Some(inc)
        }
    };
    let windows = match t.obj("windows")? {
        None => None,
        Some(w) => Some(windows(w)?),
    };
    if windows.is_some() && incremental.is_some() {
        return Err(t.err(
            "windows",
            "a table reads either by incremental cursor or by windows, not both",
        ));
    }
    let paginator = match t.obj("paginator")? {
        None => Paginator::None,
        Some(p) => paginator(p, incremental.as_ref())?,
    };
    let operation = match t.str_or("operation", "upsert")?.as_str() {
        "upsert" => Operation::Upsert,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        other => {
            return Err(t.err(
                "operation",
                format!("must be upsert, update or delete, got {other:?}"),
            ))
        }
    };
    let target = t.opt_str("target")?;
    if target.is_some() && operation == Operation::Upsert {
        return Err(t.err("target", "only update and delete tables have a target"));
    }
    if operation != Operation::Upsert && primary_key.is_empty() {
        return Err(t.err(
            "primary_key",
            "update and delete records are matched by key: declare the target's primary key",
        ));
    }
    let parent = t.opt_str("parent")?;
    let truncate = t.bool_or("truncate", false)?;
    let concurrency = t.opt_int("concurrency", 1..=64)?.unwrap_or(4) as usize;
    if windows.is_some() && parent.is_some() {
        return Err(t.err(
            "windows",
            "a child table (parent = …) cannot be read by windows",
        ));
    }
    if truncate && (incremental.is_some() || windows.is_some()) {
        return Err(t.err(
            "truncate",
            "a truncated table is read in full: it cannot also be incremental",
        ));
    }
    t.finish()?;
    Ok(TableSpec {
        name,
        path,
        method,
        params,
        body,
        records,
        primary_key,
        columns,
        on_bad_row,
        incremental,
        windows,
        paginator,
        parent,
        operation,
        target,
        truncate,
        concurrency,
    })
}

fn windows(mut w: Obj) -> Result<Windows> {
    let start_param = w.str("start_param")?;
    let end_param = w.str("end_param")?;
    if start_param == end_param {
        return Err(w.err("end_param", "must differ from start_param"));
    }
    let size = Duration::from_secs(3600 * w.opt_int("window_hours", 1..=24 * 366)?.unwrap_or(24));
    let days = w.opt_int("backfill_days", 0..=365 * 100)?;
    let from = match w.opt_str("backfill_from")? {
        None => None,
        Some(s) => Some(parse_utc_micros(&s).ok_or_else(|| {
            w.err(
                "backfill_from",
                format!("{s:?} is not a UTC time (2024-01-31T00:00:00Z)"),
            )
        })?),
    };
    let backfill = match (days, from) {
        (Some(d), None) => Backfill::Days(d),
        (None, Some(f)) => Backfill::From(f),
        (Some(_), Some(_)) => {
            return Err(w.err(
                "backfill_from",
                "give backfill_days or backfill_from, not both",
            ))
        }
        (None, None) => {
            return Err(w.err(
                "backfill_days",
                "is required (or backfill_from): how far history reaches",
            ))
        }
    };
    let lookback = Duration::from_secs(
        w.opt_int("lookback_seconds", 0..=366 * 86_400)?
            .unwrap_or(0),
    );
    let backfill_windows_per_sync = w.opt_int("backfill_windows_per_sync", 1..=u32::MAX as u64)?;
    let format = match w.str_or("format", "rfc3339")?.as_str() {
        "rfc3339" => TimeFormat::Rfc3339,
        "unix" => TimeFormat::Unix,
        "unix_ms" => TimeFormat::UnixMillis,
        other => {
            return Err(w.err(
                "format",
                format!("must be rfc3339, unix or unix_ms, got {other:?}"),
            ))
        }
    };
    w.finish()?;
    Ok(Windows {
        start_param,
        end_param,
        size,
        backfill,
        lookback,
        backfill_windows_per_sync,
        format,
    })
}

fn paginator(mut p: Obj, inc: Option<&Incremental>) -> Result<Paginator> {
    let ty = p.str("type")?;
    let out = match ty.as_str() {
        "none" => Paginator::None,
        "offset" => Paginator::Offset {
            offset_param: p.str_or("offset_param", "offset")?,
            limit_param: p.str_or("limit_param", "limit")?,
            limit: p.opt_int("limit", 1..=100_000)?.unwrap_or(100),
            total_field: p.json_path("total_field")?,
        },
        "page_number" => Paginator::PageNumber {
            page_param: p.str_or("page_param", "page")?,
            size_param: p.opt_str("size_param")?,
            size: p.opt_int("size", 1..=100_000)?,
            start: p.opt_int("start", 0..=1)?.unwrap_or(1),
            total_pages_field: p.json_path("total_pages_field")?,
        },
        "next_page_url" => Paginator::NextPageUrl { field: p.json_path("field")? },
        "cursor" => Paginator::Cursor {
            token_field: p.json_path("token_field")?.ok_or_else(|| p.err("token_field", "is required"))?,
            param: p.str("param")?,
            has_more_field: p.json_path("has_more_field")?,
        },
        "keyset" => {
            let resume_from_cursor = p.bool_or("resume_from_cursor", false)?;
            if resume_from_cursor && inc.is_none() {
                return Err(p.err("resume_from_cursor", "needs [tables.incremental] (its cursor field and parameter)"));
            }
            Paginator::Keyset {
                token_field: p.json_path("token_field")?.ok_or_else(|| p.err("token_field", "is required"))?,
                param: p.str("param")?,
                resume_from_cursor,
            }
        }
        "scim" => Paginator::Scim {
            start_param: p.str_or("start_param", "startIndex")?,
            count_param: p.str_or("count_param", "count")?,
            count: p.opt_int("count", 1..=10_000)?.unwrap_or(100),
            total_field: split_path(&p.str_or("total_field", "totalResults")?),
        },
        "step" => Paginator::Step {
            start_param: p.str_or("start_param", "start_id")?,
            end_param: p.str_or("end_param", "end_id")?,
            step: p.opt_int("step", 1..=1_000_000)?.unwrap_or(1000),
            start: p.opt_int("start", 0..=u64::MAX / 2)?.unwrap_or(1),
        },
        other => {
            return Err(p.err(
                "type",
                format!("unknown paginator {other:?} (one of: none, offset, page_number, next_page_url, cursor, keyset, scim, step)"),
            ))
        }
    };
    p.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<Spec> {
        let t: toml::Value = toml::from_str(toml_text).unwrap();
        let mut v = serde_json::to_value(t).unwrap();
        let mut vars = Map::new();
        vars.insert("token".into(), Value::String("s3cr3t-token".into()));
        parse(Path::new("api.toml"), &mut v, &vars, None)
    }

    const GOOD: &str = r#"
base_url = "http://127.0.0.1:5001"
[auth]
type = "bearer"
token = "${token}"
[[tables]]
name = "user"
path = "/pagination/offset"
records = "data"
primary_key = "id"
columns = { id = "STRING", updatedAt = "UTC_DATETIME", amount = { type = "DECIMAL", precision = 15, scale = 2 } }
incremental = { cursor_field = "updatedAt", param = "updated_since", ascending = true }
paginator = { type = "offset", limit = 50, total_field = "total" }
"#;

    const WINDOWS: &str = r#"
base_url = "http://127.0.0.1:5001"
[[tables]]
name = "event"
path = "/events"
windows = { start_param = "from", end_param = "to", window_hours = 24, backfill_days = 5 }
"#;

    #[test]
    fn dotted_column_names_are_paths_into_nested_objects() {
        let s = check(&WINDOWS.replace(
            "windows = {",
            "primary_key = \"user.id\"\ncolumns = { \"user.login\" = \"STRING\", \"a.b.c\" = \"LONG\" }\nwindows = {",
        ))
        .unwrap();
        let t = &s.tables[0];
        assert_eq!(t.primary_key, vec!["user_id".to_string()]);
        let col = |n: &str| t.columns.iter().find(|c| c.name == n).cloned().unwrap();
        let path = |n: &str| match col(n).source {
            crate::schema::ColumnSource::Path(p) => p.join("/"),
            other => panic!("{other:?}"),
        };
        assert_eq!(path("user_login"), "user/login");
        assert_eq!(path("a_b_c"), "a/b/c");
        assert_eq!(path("user_id"), "user/id");
        assert_eq!(col("a_b_c").ty, ColumnType::Long);
        let e = check(&WINDOWS.replace(
            "windows = {",
            "columns = { \"user.\" = \"STRING\" }\nwindows = {",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a dotted name needs a field on each side"),
            "{e}"
        );
    }

    #[test]
    fn windows_read_with_their_defaults() {
        let s = check(WINDOWS).unwrap();
        let w = s.tables[0].windows.as_ref().unwrap();
        assert_eq!(
            (w.size, &w.backfill, w.backfill_windows_per_sync),
            (Duration::from_secs(86_400), &Backfill::Days(5), None)
        );
        assert_eq!(
            w.format.write(1_700_000_000_123_456),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(TimeFormat::Unix.write(1_700_000_000_123_456), "1700000000");
        assert_eq!(
            TimeFormat::UnixMillis.write(1_700_000_000_123_456),
            "1700000000123"
        );
        let s = check(&WINDOWS.replace(
            "backfill_days = 5",
            "backfill_from = \"2024-01-31T00:00:00Z\"",
        ))
        .unwrap();
        assert_eq!(
            s.tables[0].windows.as_ref().unwrap().backfill,
            Backfill::From(1_706_659_200_000_000)
        );
    }

    #[test]
    fn a_good_spec_reads_with_its_secret_substituted() {
        let s = check(GOOD).unwrap();
        assert!(matches!(&s.auth, AuthSpec::Bearer { token } if token.expose() == "s3cr3t-token"));
        assert!(s.secrets.iter().all(|x| x.expose() == "s3cr3t-token"));
        assert_eq!(s.tables[0].columns.len(), 3);
        assert!(matches!(
            s.tables[0].paginator,
            Paginator::Offset { limit: 50, .. }
        ));
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases = [
            (
                GOOD.replace("limit = 50", "limit = 0"),
                "tables[0].paginator.limit: must be a whole number in 1..=100000",
            ),
            (
                GOOD.replace("type = \"offset\"", "type = \"ofset\""),
                "tables[0].paginator.type: unknown paginator \"ofset\"",
            ),
            (
                GOOD.replace("records = \"data\"", "record = \"data\""),
                "tables[0].record: unknown key",
            ),
            (
                GOOD.replace("\"UTC_DATETIME\"", "\"DATETIME\""),
                "tables[0].columns.updatedAt:",
            ),
            (
                GOOD.replace("${token}", "${tokn}"),
                "auth.token: ${tokn} is not set",
            ),
            (
                GOOD.replace(
                    "base_url = \"http://127.0.0.1:5001\"",
                    "base_url = \"ftp://x\"",
                ),
                "base_url: ftp://x",
            ),
            (
                GOOD.replace("precision = 15", "precision = 50"),
                "tables[0].columns.amount: DECIMAL needs precision",
            ),
            (
                GOOD.replace("name = \"user\"", "name = \"user\"\nparent = \"nope\""),
                "tables[0].parent: \"nope\" is not a table",
            ),
            (
                GOOD.replace("type = \"bearer\"", "type = \"digest\""),
                "auth.type: unknown auth \"digest\"",
            ),
            (
                format!("{GOOD}windows = {{ start_param = \"from\", end_param = \"to\", backfill_days = 5 }}\n"),
                "tables[0].windows: a table reads either by incremental cursor or by windows",
            ),
            (
                WINDOWS.replace("backfill_days = 5", ""),
                "tables[0].windows.backfill_days: is required (or backfill_from)",
            ),
            (
                WINDOWS.replace("backfill_days = 5", "backfill_from = \"last year\""),
                "tables[0].windows.backfill_from: \"last year\" is not a UTC time",
            ),
            (
                WINDOWS.replace("window_hours = 24", "window_hours = 0"),
                "tables[0].windows.window_hours: must be a whole number in 1..=",
            ),
            (
                GOOD.replace(
                    "base_url = \"http://127.0.0.1:5001\"",
                    "base_url = \"http://127.0.0.1:5001\"\nheaders = { X-Client = \"a\\nb\" }",
                ),
                "headers.X-Client: holds characters a header value cannot",
            ),
            (
                format!("{WINDOWS}[[tables]]\nname = \"detail\"\nparent = \"event\"\npath = \"/events/{{parent.id}}\"\n"),
                "tables[1].parent: \"event\" is read by windows",
            ),
            (
                GOOD.replace("records = \"data\"", "records = \"data\"\nconcurrency = 0"),
                "tables[0].concurrency: must be a whole number in 1..=64",
            ),
            (
                WINDOWS.replace("end_param = \"to\"", "end_param = \"from\""),
                "tables[0].windows.end_param: must differ from start_param",
            ),
            (
                WINDOWS.replace("window_hours = 24", "window_hours = 24, format = \"iso\""),
                "tables[0].windows.format: must be rfc3339, unix or unix_ms",
            ),
        ];
        for (text, want) in cases {
            let e = check(&text).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("api.toml"),
                "want {want:?} in {e}"
            );
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }
}
