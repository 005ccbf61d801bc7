//! What the decoder notices about records while it reads them, so a
//! connector never parses a page a second time to learn it: the types of
//! fields nobody declared, an incremental cursor's largest value, and
//! which fields the records carry.
//!
//! When the records need a column the table does not have yet (a new
//! field, or a value wider than an inferred column's type), the page is
//! *stale*: the decoder stops before converting any column, the connector
//! widens the table and decodes the page again. That happens on the pages
//! that bring something new (typically the first); every other page is
//! read once.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::infer::{text_type, widen};
use super::values::json_str;
use crate::schema::ColumnType;

/// How two values of a cursor field order.
pub type CursorOrder = fn(&str, &str) -> Ordering;

/// What to notice. Built by the connector from the table as it is now.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Infer the types of undeclared fields.
    pub infer: bool,
    /// The table's inferred columns and their types (checked for widening).
    pub inferred: Arc<HashMap<String, ColumnType>>,
    /// Every other field the table has a column for (not inferred).
    pub declared: Arc<HashSet<String>>,
    /// The incremental cursor field, and how its values order.
    pub cursor: Option<(String, CursorOrder)>,
    /// Collect the names of the fields the records carry.
    pub fields: bool,
}

/// What was noticed on a page (or part of one).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Observed {
    /// Fields that need a new or wider column, with the type their values
    /// suggest, in the order first seen. Not empty: the page is stale.
    pub widen: Vec<(String, ColumnType)>,
    /// Whether any record had the cursor field (even null).
    pub cursor_seen: bool,
    /// The largest cursor value, as text.
    pub cursor_max: Option<String>,
    /// The fields of the first record that is an object.
    pub first_fields: Option<Vec<String>>,
    /// Every field the records carry (when asked).
    pub fields: BTreeSet<String>,
}

impl Observed {
    /// Whether the table must change before the page can be decoded.
    pub fn stale(&self) -> bool {
        !self.widen.is_empty()
    }

    /// Add what a later part of the same page noticed.
    pub fn merge(&mut self, later: Observed, watch: &Watch) {
        for (k, ty) in later.widen {
            self.suggest(&k, ty, watch);
        }
        self.cursor_seen |= later.cursor_seen;
        if let Some(c) = later.cursor_max {
            self.offer_cursor(&c, watch);
        }
        if self.first_fields.is_none() {
            self.first_fields = later.first_fields;
        }
        self.fields.extend(later.fields);
    }

    fn suggest(&mut self, k: &str, ty: ColumnType, watch: &Watch) {
        if let Some((_, old)) = self.widen.iter_mut().find(|(n, _)| n == k) {
            *old = widen(*old, ty);
            return;
        }
        match watch.inferred.get(k) {
            Some(&old) if widen(old, ty) == old => {}
            Some(&old) => self.widen.push((k.to_string(), widen(old, ty))),
            None => self.widen.push((k.to_string(), ty)),
        }
    }

    fn offer_cursor(&mut self, v: &str, watch: &Watch) {
        let Some((_, cmp)) = &watch.cursor else {
            return;
        };
        if self
            .cursor_max
            .as_deref()
            .is_none_or(|m| cmp(v, m) == Ordering::Greater)
        {
            self.cursor_max = Some(v.to_string());
        }
    }

    /// Notice what a record's fields (each key with its value's text) say.
    pub(super) fn record(&mut self, fields: &[(Cow<'_, str>, &str)], watch: &Watch) {
        if self.first_fields.is_none() {
            self.first_fields = Some(fields.iter().map(|(k, _)| k.to_string()).collect());
        }
        for (k, raw) in fields {
            let raw = *raw;
            if watch.fields && !self.fields.contains(k.as_ref()) {
                self.fields.insert(k.to_string());
            }
            if let Some((field, _)) = &watch.cursor {
                if k == field {
                    self.cursor_seen = true;
                    if let Some(v) = raw_text(raw) {
                        self.offer_cursor(&v, watch);
                    }
                }
            }
            if !watch.infer
                || watch.declared.contains(k.as_ref())
                || k.starts_with("_etl")
                || k == "_synced_at"
            {
                continue;
            }
            if let Some(ty) = raw_type(raw) {
                self.suggest(k, ty, watch);
            }
        }
    }
}

/// The type a JSON value (its text) suggests, as
/// [`super::infer::value_type`] does for a parsed value.
pub fn raw_type(raw: &str) -> Option<ColumnType> {
    Some(match raw.as_bytes().first()? {
        b'n' => return None,
        b't' | b'f' => ColumnType::Boolean,
        b'"' => return text_type(&json_str(raw)?),
        b'{' | b'[' => ColumnType::Json,
        // Beyond a long an integer is a float, as the SDK sends it.
        _ if raw.parse::<i64>().is_ok() => ColumnType::Long,
        _ => ColumnType::Float,
    })
}

/// A scalar's text: a string's content, a number's digits; `None` for null.
pub fn raw_text(raw: &str) -> Option<String> {
    match raw.as_bytes().first()? {
        b'n' => None,
        b'"' => json_str(raw).map(|s| s.into_owned()),
        _ => Some(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::RawObject;
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_types_match_parsed_value_types() {
        for v in [
            json!(null),
            json!(true),
            json!(12),
            json!(-3),
            json!(1.5),
            json!(18446744073709551615u64),
            json!("2024-01-02"),
            json!("2024-01-02T03:04:05Z"),
            json!("x"),
            json!(""),
            json!("007"),
            json!({"a": 1}),
            json!([1]),
        ] {
            assert_eq!(
                raw_type(&v.to_string()),
                super::super::infer::value_type(&v),
                "{v}"
            );
        }
    }

    #[test]
    fn new_and_wider_fields_make_a_page_stale() {
        let watch = Watch {
            infer: true,
            inferred: Arc::new([("n".to_string(), ColumnType::Long)].into()),
            declared: Arc::new(["id".to_string(), "at".to_string()].into()),
            cursor: Some(("at".into(), |a: &str, b: &str| a.cmp(b))),
            fields: true,
        };
        let mut o = Observed::default();
        for rec in [
            r#"{"id": 1, "n": 2, "at": "b"}"#,
            r#"{"id": 2, "n": 3, "at": "c", "_etl_x": 1}"#,
        ] {
            o.record(&RawObject::parse(rec).unwrap().0, &watch);
        }
        assert!(!o.stale());
        assert_eq!(o.cursor_max.as_deref(), Some("c"));
        assert!(o.cursor_seen);
        assert_eq!(o.first_fields.as_deref().unwrap(), ["id", "n", "at"]);
        let mut later = Observed::default();
        later.record(
            &RawObject::parse(r#"{"id": 3, "n": 2.5, "s": "x", "at": "a"}"#)
                .unwrap()
                .0,
            &watch,
        );
        o.merge(later, &watch);
        assert_eq!(
            o.widen,
            [
                ("n".to_string(), ColumnType::Float),
                ("s".to_string(), ColumnType::String)
            ]
        );
        assert_eq!(o.cursor_max.as_deref(), Some("c"));
        assert_eq!(o.fields.len(), 5);
    }
}
