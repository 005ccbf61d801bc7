//! Reading connector configuration files (`configuration.json` in the Connector
//! SDK's format): a flat JSON object of keys.
//!
//! [`ConfigReader`] checks each key once, without I/O, and every error names
//! the file and the key, what was expected and what was found. Values are
//! accepted as native JSON or as strings (`"page_size": "50"`), because the
//! SDK's files keep everything as strings. Unknown keys are errors that list
//! the known ones, so a typo never silently falls back to a default.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::http::Secret;

/// A configuration object being validated.
#[derive(Debug)]
pub struct ConfigReader {
    path: Option<PathBuf>,
    map: Map<String, Value>,
    known: BTreeSet<&'static str>,
}

impl ConfigReader {
    /// Read and parse a configuration file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(Some(path), format!("cannot read the file: {e}")))?;
        Self::parse(&text, Some(path))
    }

    /// Parse configuration text (`path` only names it in errors).
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::config(path, format!("not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(ConfigReader {
                path: path.map(Path::to_path_buf),
                map,
                known: BTreeSet::new(),
            }),
            other => Err(Error::config(
                path,
                format!("expected a JSON object of keys, found {}", kind(&other)),
            )),
        }
    }

    /// Build from an in-memory object (playground, tests).
    pub fn from_map(map: Map<String, Value>) -> Self {
        ConfigReader {
            path: None,
            map,
            known: BTreeSet::new(),
        }
    }

    /// An error about `key` (a value the reader's checks cannot express).
    pub fn error(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        self.err(key, msg)
    }

    fn err(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::config(self.path.as_deref(), format!("key \"{key}\": {msg}"))
    }

    fn get(&mut self, key: &'static str) -> Option<&Value> {
        self.known.insert(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// A string, or `None` when absent, null or empty.
    pub fn opt_string(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key).cloned() {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(self.err(key, format!("expected a string, found {}", kind(&other)))),
        }
    }

    /// A required, non-empty string.
    pub fn string(&mut self, key: &'static str) -> Result<String> {
        self.opt_string(key)?
            .ok_or_else(|| self.err(key, "is required and must be a non-empty string"))
    }

    /// A required secret; never echoed in errors.
    pub fn secret(&mut self, key: &'static str) -> Result<Secret> {
        match self.get(key).cloned() {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let s = s.trim();
                if s.starts_with('<') && s.ends_with('>') {
                    return Err(self.err(
                        key,
                        "still holds the placeholder from the example; put your real key here",
                    ));
                }
                Ok(Secret::new(s))
            }
            Some(Value::String(_)) | None => {
                Err(self.err(key, "is required and must be a non-empty string"))
            }
            Some(other) => Err(self.err(key, format!("expected a string, found {}", kind(&other)))),
        }
    }

    /// An optional secret.
    pub fn opt_secret(&mut self, key: &'static str) -> Result<Option<Secret>> {
        let absent = match self.get(key) {
            None => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        };
        if absent {
            return Ok(None);
        }
        self.secret(key).map(Some)
    }

    /// An integer within `range`, `default` when absent.
    pub fn int_in(
        &mut self,
        key: &'static str,
        range: RangeInclusive<i64>,
        default: i64,
    ) -> Result<i64> {
        let v = match self.get(key).cloned() {
            None => return Ok(default),
            Some(v) => v,
        };
        let n = match &v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let expect = format!("an integer from {} to {}", range.start(), range.end());
        match n {
            Some(n) if range.contains(&n) => Ok(n),
            Some(n) => Err(self.err(key, format!("must be {expect}, got {n}"))),
            None => Err(self.err(key, format!("must be {expect}, got {}", show(&v)))),
        }
    }

    /// A boolean (`true`, `"true"`, `"false"`), `default` when absent.
    pub fn bool_or(&mut self, key: &'static str, default: bool) -> Result<bool> {
        let v = match self.get(key).cloned() {
            None => return Ok(default),
            Some(v) => v,
        };
        match &v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.err(key, format!("must be true or false, got {}", show(&v)))),
            },
            _ => Err(self.err(key, format!("must be true or false, got {}", show(&v)))),
        }
    }

    /// A required http(s) URL. Trailing slashes are removed.
    pub fn url(&mut self, key: &'static str) -> Result<url::Url> {
        let s = self.string(key)?;
        self.parse_url(key, &s)
    }

    /// An http(s) URL, `default` when absent. Trailing slashes are removed.
    pub fn url_or(&mut self, key: &'static str, default: &str) -> Result<url::Url> {
        let s = self.opt_string(key)?.unwrap_or_else(|| default.to_string());
        self.parse_url(key, &s)
    }

    fn parse_url(&self, key: &str, s: &str) -> Result<url::Url> {
        if s.contains('<') && s.contains('>') {
            return Err(self.err(
                key,
                format!(
                    "still holds a placeholder from the example ({s:?}); put your real URL here"
                ),
            ));
        }
        let u = url::Url::parse(s.trim_end_matches('/'))
            .map_err(|e| self.err(key, format!("is not a URL ({e}): {s:?}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(self.err(
                key,
                format!("must be an http:// or https:// URL, got {s:?}"),
            ));
        }
        Ok(u)
    }

    /// Every key not asked for yet (a declarative spec's variables), now counted as known.
    pub fn take_rest(&mut self) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in &self.map {
            if !self.known.contains(k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
        self.map.retain(|k, _| !out.contains_key(k));
        out
    }

    /// Set a key (command-line flags that stand for keys).
    pub fn insert(&mut self, key: &str, value: Value) {
        self.map.insert(key.to_string(), value);
    }

    /// The configuration file, if the configuration came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Fail on keys nobody asked for (typos).
    pub fn finish(self) -> Result<()> {
        let unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.known.contains(k.as_str()))
            .collect();
        if let Some(k) = unknown.first() {
            let known: Vec<&str> = self.known.iter().copied().collect();
            return Err(Error::config(
                self.path.as_deref(),
                format!("unknown key \"{k}\" (known keys: {})", known.join(", ")),
            ));
        }
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    crate::text::truncate_for_display(&v.to_string(), 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_and_the_range() {
        let mut c = ConfigReader::parse(
            r#"{"page_size": 500, "n": "abc", "b": "maybe"}"#,
            Some(Path::new("c.json")),
        )
        .unwrap();
        let e = c.int_in("page_size", 1..=100, 100).unwrap_err().to_string();
        assert_eq!(
            e,
            "configuration c.json: key \"page_size\": must be an integer from 1 to 100, got 500"
        );
        let e = c.int_in("n", 1..=100, 100).unwrap_err().to_string();
        assert!(e.contains("key \"n\"") && e.contains("\"abc\""), "{e}");
        assert!(c
            .bool_or("b", true)
            .unwrap_err()
            .to_string()
            .contains("key \"b\""));
    }

    #[test]
    fn strings_numbers_and_unknown_keys() {
        let mut c =
            ConfigReader::parse(r#"{"page_size": "50", "api_key": "k", "typo": 1}"#, None).unwrap();
        assert_eq!(c.int_in("page_size", 1..=100, 100).unwrap(), 50);
        assert_eq!(c.secret("api_key").unwrap().expose(), "k");
        let e = c.finish().unwrap_err().to_string();
        assert!(
            e.contains("unknown key \"typo\"") && e.contains("api_key, page_size"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_required_and_never_echoed() {
        let mut c = ConfigReader::parse(r#"{"k": 12345, "p": "<YOUR_KEY>"}"#, None).unwrap();
        let e = c.secret("k").unwrap_err().to_string();
        assert!(!e.contains("12345"), "{e}");
        assert!(c
            .secret("p")
            .unwrap_err()
            .to_string()
            .contains("placeholder"));
        assert!(c
            .secret("missing")
            .unwrap_err()
            .to_string()
            .contains("required"));
    }

    #[test]
    fn not_an_object_or_not_json() {
        assert!(ConfigReader::parse("[1]", None)
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
        assert!(ConfigReader::parse("{", None)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        let mut c = ConfigReader::parse(r#"{"u": "ftp://x"}"#, None).unwrap();
        assert!(c
            .url_or("u", "https://a")
            .unwrap_err()
            .to_string()
            .contains("http"));
    }
}
