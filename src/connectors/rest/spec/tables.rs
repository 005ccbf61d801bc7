//! The parts of a spec: `[auth]`, each `[[tables]]` entry, its
//! `windows` and its `paginator`.

use super::*;

pub(super) fn auth(mut a: Obj, base: &Url, secrets: &mut Vec<Secret>) -> Result<AuthSpec> {
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
            AuthSpec::Session(Session {
                login_path: a.str("login_path")?,
                body,
                token_field: split_path(&a.str_or("token_field", "token")?),
                expires_in_field: a.json_path("expires_in_field")?,
                header: a.str_or("header", "Authorization")?,
                prefix: a.str_or("prefix", "")?,
            })
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

pub(super) fn token_url(a: &mut Obj, base: &Url) -> Result<Url> {
    let t = a.str("token_url")?;
    base.join(&t)
        .map_err(|e| a.err("token_url", format!("{t:?} is not a URL: {e}")))
}

pub(super) fn table(mut t: Obj) -> Result<TableSpec> {
    let name = t.str("name")?;
    if name.starts_with('_') {
        return Err(t.err(
            "name",
            format!("{name:?}: names starting with _ are reserved"),
        ));
    }
    let path = t.str("path")?;
    let method = one_of(
        &mut t,
        "method",
        "GET",
        &[
            ("GET", reqwest::Method::GET),
            ("POST", reqwest::Method::POST),
        ],
    )?;
    let params = match t.obj("params")? {
        None => Vec::new(),
        Some(p) => params(&p)?,
    };
    let body = t.get("body").cloned();
    if body.is_some() && method != reqwest::Method::POST {
        return Err(t.err("body", "is only sent with method = \"POST\""));
    }
    let records = t.json_path("records")?.unwrap_or_default();
    let mut primary_key = t.strings("primary_key")?.unwrap_or_default();
    let mut columns = match t.obj("columns")? {
        None => Vec::new(),
        Some(c) => self::columns(&c)?,
    };
    key_columns(&mut t, &mut primary_key, &mut columns)?;
    let on_bad_row = one_of(
        &mut t,
        "on_bad_row",
        "fail",
        &[
            ("fail", OnBadRow::Fail),
            ("quarantine", OnBadRow::Quarantine),
        ],
    )?;
    let incremental = match t.obj("incremental")? {
        None => None,
        Some(i) => Some(incremental(i)?),
    };
    let windows = match t.obj("windows")? {
        None => None,
        Some(w) => Some(windows(w)?),
    };
    let paginator = match t.obj("paginator")? {
        None => Paginator::None,
        Some(p) => paginator(p, incremental.as_ref())?,
    };
    let operation = one_of(
        &mut t,
        "operation",
        "upsert",
        &[
            ("upsert", Operation::Upsert),
            ("update", Operation::Update),
            ("delete", Operation::Delete),
        ],
    )?;
    let spec = TableSpec {
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
        parent: t.opt_str("parent")?,
        operation,
        target: t.opt_str("target")?,
        truncate: t.bool_or("truncate", false)?,
        concurrency: t.opt_int("concurrency", 1..=64)?.unwrap_or(4) as usize,
    };
    check_combination(&t, &spec)?;
    t.finish()?;
    Ok(spec)
}

/// The value of `key`, one of `options` by name (case-insensitive), or `default`.
fn one_of<T: Clone>(
    t: &mut Obj,
    key: &'static str,
    default: &str,
    options: &[(&str, T)],
) -> Result<T> {
    let given = t.str_or(key, default)?;
    match options.iter().find(|(n, _)| n.eq_ignore_ascii_case(&given)) {
        Some((_, v)) => Ok(v.clone()),
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
            Err(t.err(
                key,
                format!("must be one of {}, got {given:?}", names.join(", ")),
            ))
        }
    }
}

/// `params = { k = "v", n = 1 }` as query pairs.
fn params(p: &Obj) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in p.map {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(p.err(
                    k,
                    format!("expected a string or number, found {}", kind(other)),
                ))
            }
        };
        out.push((k.clone(), v));
    }
    Ok(out)
}

/// The declared `columns`, dotted names read from nested objects.
fn columns(c: &Obj) -> Result<Vec<Column>> {
    let mut columns = Vec::new();
    for (k, v) in c.map {
        let ty = column_type(c, k, v)?;
        if k.starts_with("_etl") || k == "_synced_at" {
            return Err(c.err(k, "names starting with _etl and _synced_at are reserved"));
        }
        // `user.login`: the field `login` of the record's `user` object,
        // as the column `user_login` (as built-in connectors read nested fields).
        if k.contains('.') {
            if k.split('.').any(str::is_empty) {
                return Err(c.err(k, "a dotted name needs a field on each side of every dot"));
            }
            columns.push(Column::at(&k.replace('.', "_"), ty, k));
        } else {
            columns.push(Column::new(k, ty));
        }
    }
    Ok(columns)
}

/// A column's declared type: a name, or `{ type = "DECIMAL", precision, scale }`.
fn column_type(c: &Obj, k: &str, v: &Value) -> Result<ColumnType> {
    match v {
        Value::String(s) => ColumnType::parse(s).map_err(|e| c.err(k, e)),
        Value::Object(m) => {
            let tn = m.get("type").and_then(Value::as_str).unwrap_or_default();
            if !tn.eq_ignore_ascii_case("DECIMAL") {
                return Err(c.err(k, "only DECIMAL is declared as a table ({ type = \"DECIMAL\", precision = 15, scale = 2 })"));
            }
            let p = m.get("precision").and_then(Value::as_u64);
            let s = m.get("scale").and_then(Value::as_i64);
            match (p, s) {
                (Some(p), Some(s)) if p <= 38 && s >= 0 && s <= p as i64 => {
                    ColumnType::decimal(p as u8, s as i8).map_err(|e| c.err(k, e))
                }
                _ => Err(c.err(
                    k,
                    "DECIMAL needs precision (1..=38) and scale (0..=precision)",
                )),
            }
        }
        other => Err(c.err(k, format!("expected a type name, found {}", kind(other)))),
    }
}

/// A key may name a nested field by its path too (kept as text unless
/// declared): its column is added, and the key names the column.
fn key_columns(t: &mut Obj, primary_key: &mut [String], columns: &mut Vec<Column>) -> Result<()> {
    for k in primary_key.iter_mut() {
        if k.contains('.') {
            let name = k.replace('.', "_");
            if !columns.iter().any(|c| c.name == name) {
                columns.push(Column::at(&name, ColumnType::String, k));
            }
            *k = name;
        }
        if k.starts_with("_etl") {
            return Err(t.err(
                "primary_key",
                format!("{k:?} is reserved; leave primary_key out to get _etl_id"),
            ));
        }
    }
    Ok(())
}

fn incremental(mut i: Obj) -> Result<Incremental> {
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
    Ok(inc)
}

/// Settings that cannot go together.
fn check_combination(t: &Obj, s: &TableSpec) -> Result<()> {
    let refuse = |key: &str, why: &str| Err(t.err(key, why));
    if s.windows.is_some() && s.incremental.is_some() {
        return refuse(
            "windows",
            "a table reads either by incremental cursor or by windows, not both",
        );
    }
    if s.target.is_some() && s.operation == Operation::Upsert {
        return refuse("target", "only update and delete tables have a target");
    }
    if s.operation != Operation::Upsert && s.primary_key.is_empty() {
        return refuse(
            "primary_key",
            "update and delete records are matched by key: declare the target's primary key",
        );
    }
    if s.windows.is_some() && s.parent.is_some() {
        return refuse(
            "windows",
            "a child table (parent = …) cannot be read by windows",
        );
    }
    if s.truncate && (s.incremental.is_some() || s.windows.is_some()) {
        return refuse(
            "truncate",
            "a truncated table is read in full: it cannot also be incremental",
        );
    }
    Ok(())
}

pub(super) fn windows(mut w: Obj) -> Result<Windows> {
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

pub(super) fn paginator(mut p: Obj, inc: Option<&Incremental>) -> Result<Paginator> {
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
