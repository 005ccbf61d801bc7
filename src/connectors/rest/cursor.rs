//! Cursor values, parent placeholders and URLs: the small pieces a spec's
//! tables are read with.

use std::cmp::Ordering;

use serde_json::Value;
use url::Url;

use super::spec::{TableSpec, TimeFormat};
use crate::decode::values::{format_utc_micros, parse_utc_micros};
use crate::error::{Error, Result};

/// `base` + `path` (a path relative to the base's own path, or a whole URL).
pub(super) fn join_url(base: &Url, path: &str) -> Result<Url> {
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
pub(super) enum CursorKey {
    Time(i64),
    Number(f64),
    Text(String),
}

pub(super) fn cursor_key(v: &str) -> CursorKey {
    if let Some(t) = parse_utc_micros(v) {
        CursorKey::Time(t)
    } else if let Ok(n) = v.trim().parse::<f64>() {
        CursorKey::Number(n)
    } else {
        CursorKey::Text(v.to_string())
    }
}

/// The cursor as sent: `lookback` earlier, in the format it came in.
pub(super) fn cursor_minus(v: &str, lookback: std::time::Duration) -> String {
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

pub(super) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// How two cursor values order (see [`CursorKey`]).
pub(super) fn cursor_cmp(a: &str, b: &str) -> Ordering {
    cursor_key(a)
        .partial_cmp(&cursor_key(b))
        .unwrap_or(Ordering::Equal)
}

/// A parent record's identity for its children's cursors: the values its
/// placeholders use, joined.
pub(super) fn parent_key(t: &TableSpec, parent: &Value) -> String {
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
pub(super) fn fill(text: &str, parent: Option<&Value>, table: &str) -> Result<String> {
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
                    crate::text::truncate_for_display(&p.to_string(), 200)
                ),
            )
        })?;
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
