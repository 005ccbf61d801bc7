//! Namespaces: each connector's tables, state and `_etl_*` tables live in a
//! schema of their own (a DuckDB schema, a `<out>/<schema>/` directory of a
//! Parquet lake), so two connectors with a `users` table never meet.
//!
//! The schema defaults to the connector's name (a REST spec's `name`), and
//! `--schema` picks another; several connectors may share one schema as long
//! as their tables differ: every table records the connector that created it,
//! and a table of another connector is refused. Warehouses written before
//! namespaces existed (everything in DuckDB's `main` schema, or a Parquet
//! dataset at `<out>` itself) keep working for the connector they hold.

use crate::error::{Error, Result};

/// Where a connector's tables go, as asked for: resolved by the destination,
/// which knows whether the warehouse predates namespaces.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// `--schema`, when given.
    pub explicit: Option<String>,
    /// The schema when none is given: the connector's name.
    pub default: String,
    /// The connector's name: the key its state is saved under, which a
    /// pre-namespace warehouse must hold to be adopted.
    pub connector: String,
}

impl Namespace {
    /// `explicit` checked, or the default.
    pub fn new(explicit: Option<&str>, default: &str, connector: &str) -> Result<Self> {
        if let Some(s) = explicit {
            check_name(s).map_err(|e| Error::Usage(format!("--schema {s:?}: {e}")))?;
        }
        Ok(Namespace {
            explicit: explicit.map(String::from),
            default: default.to_string(),
            connector: connector.to_string(),
        })
    }

    /// The schema to use in a warehouse that is not a pre-namespace one.
    pub fn schema(&self) -> &str {
        self.explicit.as_deref().unwrap_or(&self.default)
    }
}

/// A schema name that is the same identifier in DuckDB, a directory name on
/// every file system and object store, and unambiguous in both: lower-case
/// ASCII letters, digits and `_`, starting with a letter or `_`, at most 63
/// characters, and not `_etl…` (etl's own).
pub fn check_name(s: &str) -> std::result::Result<(), String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if s.is_empty() || s.len() > 63 || !ok_chars || !first_ok {
        return Err(
            "a schema name is 1 to 63 lower-case letters, digits and _, starting with a letter or _"
                .into(),
        );
    }
    if s.starts_with("_etl") {
        return Err("names starting with _etl are etl's own".into());
    }
    if matches!(s, "temp" | "system" | "information_schema" | "pg_catalog") {
        return Err(format!("{s} is one of DuckDB's built-in schemas"));
    }
    Ok(())
}

/// A schema name made from free text (a REST spec's `name`): lower-cased,
/// anything else than letters and digits turned into `_`.
pub fn schema_name_of(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s.truncate(63);
    if check_name(&s).is_err() {
        s = format!("rest_{}", s.trim_start_matches('_'));
        s.truncate(63);
    }
    s
}

/// The refusal for a table another connector created.
pub fn owned_by_other(schema: &str, table: &str, owner: &str, asking: &str) -> Error {
    Error::Usage(format!(
        "table {schema}.{table} belongs to connector {owner}, not {asking}; \
         sync {asking} into a schema of its own (the default, or --schema NAME)"
    ))
}

/// The refusal for a table that exists but that no connector claimed.
pub fn unowned(schema: &str, table: &str, asking: &str) -> Error {
    Error::Usage(format!(
        "table {schema}.{table} exists but was not created by etl's {asking} connector; \
         sync {asking} into another schema (--schema NAME) or drop the table"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["userflow", "egnyte", "raw_2024", "_private", "main"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "Users", "9lives", "a-b", "a.b", "a/b", "_etl", "_etl_x", "temp", "ä",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn names_from_text() {
        assert_eq!(schema_name_of("GitHub"), "github");
        assert_eq!(schema_name_of("my api v2"), "my_api_v2");
        assert_eq!(schema_name_of("2fa"), "_2fa");
        assert_eq!(schema_name_of("_etl"), "rest_etl");
        assert_eq!(schema_name_of("temp"), "rest_temp");
        for t in ["GitHub", "a b", "Ünïcode", "", "_etl_state"] {
            assert!(check_name(&schema_name_of(t)).is_ok(), "{t}");
        }
    }
}
