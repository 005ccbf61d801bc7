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

mod obj;
mod tables;

use self::obj::*;
use self::tables::*;

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

/// A login session: `body` posted to `login_path`, the token read at
/// `token_field` (its lifetime at `expires_in_field`), sent in `header` as
/// `prefix` + token.
#[derive(Debug, Clone)]
pub struct Session {
    pub login_path: String,
    pub body: Value,
    pub token_field: Vec<String>,
    pub expires_in_field: Option<Vec<String>>,
    pub header: String,
    pub prefix: String,
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
    Session(Session),
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
        Some(h) => headers(&h)?,
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
        check_relations(file, i, &t, &tables)?;
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

/// `headers = { Name = "value" }`, each a valid header.
fn headers(h: &Obj) -> Result<Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>> {
    let mut out = Vec::new();
    for (k, v) in h.map {
        let v = match v {
            Value::String(s) => s,
            other => return Err(h.err(k, format!("expected a string, found {}", kind(other)))),
        };
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| h.err(k, "is not a valid header name"))?;
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            h.err(
                k,
                "holds characters a header value cannot (control characters, line breaks)",
            )
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// Table `i`'s name is new, and its parent and target are tables declared before it.
fn check_relations(file: &Path, i: usize, t: &TableSpec, before: &[TableSpec]) -> Result<()> {
    let declared = |name: &str| before.iter().find(|o| o.name == name);
    if declared(&t.name).is_some() {
        return Err(err(
            file,
            &format!("tables[{i}].name"),
            format!("table {:?} is declared twice", t.name),
        ));
    }
    match &t.parent {
        Some(p) => match declared(p) {
            None => {
                return Err(err(
                    file,
                    &format!("tables[{i}].parent"),
                    format!("{p:?} is not a table declared before this one"),
                ))
            }
            Some(o) if o.windows.is_some() => {
                return Err(err(
                    file,
                    &format!("tables[{i}].parent"),
                    format!("{p:?} is read by windows: it cannot have child tables"),
                ))
            }
            Some(_) => {}
        },
        None if t.path.contains("{parent.") => {
            return Err(err(
                file,
                &format!("tables[{i}].path"),
                "uses {parent.…} but the table has no parent",
            ))
        }
        None => {}
    }
    if let Some(target) = t.target.as_deref().filter(|t| declared(t).is_none()) {
        return Err(err(
            file,
            &format!("tables[{i}].target"),
            format!("{target:?} is not a table declared before this one"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests;
