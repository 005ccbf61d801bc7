//! Reading a spec's values: each key of an object checked once, unknown
//! keys refused, `${var}` substituted; every error names the file and
//! the key.

use super::*;

/// A spec object being read: each key checked once, unknown keys refused.
pub(super) struct Obj<'a> {
    pub(super) file: &'a Path,
    pub(super) path: String,
    pub(super) map: &'a Map<String, Value>,
    pub(super) used: BTreeSet<&'static str>,
}

pub(super) fn err(file: &Path, path: &str, msg: impl std::fmt::Display) -> Error {
    Error::config(Some(file), format!("{path}: {msg}"))
}

impl<'a> Obj<'a> {
    pub(super) fn new(file: &'a Path, path: String, v: &'a Value) -> Result<Self> {
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

    pub(super) fn at(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub(super) fn err(&self, k: &str, msg: impl std::fmt::Display) -> Error {
        err(self.file, &self.at(k), msg)
    }

    pub(super) fn get(&mut self, k: &'static str) -> Option<&'a Value> {
        self.used.insert(k);
        self.map.get(k).filter(|v| !v.is_null())
    }

    pub(super) fn opt_str(&mut self, k: &'static str) -> Result<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(k, format!("expected a string, found {}", kind(other)))),
        }
    }

    pub(super) fn str(&mut self, k: &'static str) -> Result<String> {
        match self.opt_str(k)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.err(k, "must not be empty")),
            None => Err(self.err(k, "is required")),
        }
    }

    pub(super) fn str_or(&mut self, k: &'static str, default: &str) -> Result<String> {
        Ok(self.opt_str(k)?.unwrap_or_else(|| default.to_string()))
    }

    pub(super) fn opt_int(
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

    pub(super) fn bool_or(&mut self, k: &'static str, default: bool) -> Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => {
                Err(self.err(k, format!("expected true or false, found {}", kind(other))))
            }
        }
    }

    /// A string or a list of strings.
    pub(super) fn strings(&mut self, k: &'static str) -> Result<Option<Vec<String>>> {
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
    pub(super) fn json_path(&mut self, k: &'static str) -> Result<Option<Vec<String>>> {
        Ok(self.opt_str(k)?.map(|s| split_path(&s)))
    }

    pub(super) fn obj(&mut self, k: &'static str) -> Result<Option<Obj<'a>>> {
        let path = self.at(k);
        match self.get(k) {
            None => Ok(None),
            Some(v) => Obj::new(self.file, path, v).map(Some),
        }
    }

    pub(super) fn secret(&mut self, k: &'static str, secrets: &mut Vec<Secret>) -> Result<Secret> {
        let s = Secret::new(self.str(k)?);
        secrets.push(s.clone());
        Ok(s)
    }

    pub(super) fn finish(self) -> Result<()> {
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

pub(super) fn kind(v: &Value) -> &'static str {
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
pub(super) fn substitute(
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
