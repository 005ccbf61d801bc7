//! The crate's layers (docs/architecture.md), checked on the source: no
//! import cycle between top-level modules, and none of the cycles the
//! source framework removed comes back; no source file grows past 800
//! lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap();
    text.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module → the top-level modules its code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .replace(".rs", "");
        if top == "main" || top == "lib" || rel.ends_with("tests.rs") {
            continue;
        }
        let code = code(&f);
        let names = g.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let m = &rest[..end];
            if !m.is_empty() && m != top {
                names.insert(m.to_string());
            }
        }
    }
    g
}

#[test]
fn top_level_modules_form_no_import_cycle() {
    let g = graph();
    // Depth-first search for a path back to the start.
    fn path(
        g: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        for n in g.get(from).into_iter().flatten() {
            if n == to {
                return Some(vec![n.clone()]);
            }
            if seen.insert(n.clone()) {
                if let Some(mut p) = path(g, n, to, seen) {
                    p.insert(0, n.clone());
                    return Some(p);
                }
            }
        }
        None
    }
    for m in g.keys() {
        if let Some(p) = path(&g, m, m, &mut BTreeSet::new()) {
            panic!("import cycle: {m} -> {}\n{g:#?}", p.join(" -> "));
        }
    }
    // The framework sits below the connectors and the engine above both.
    for (lower, upper) in [
        ("source", "connectors"),
        ("source", "engine"),
        ("connectors", "engine"),
        ("decode", "error"),
        ("http", "error"),
    ] {
        assert!(
            !g[lower].contains(upper),
            "{lower} must not name {upper}: {:?}",
            g[lower]
        );
    }
}

#[test]
fn the_http_client_does_not_depend_on_its_token_sources() {
    let code = code(&src().join("http/mod.rs"));
    let named: Vec<&str> = code
        .lines()
        .filter(|l| l.contains("oauth::") || l.contains("OAuth::"))
        .collect();
    assert!(named.is_empty(), "http/mod.rs names oauth: {named:?}");
}

#[test]
fn the_mocks_share_only_the_wire_module() {
    for mock in ["userflow", "prefect", "egnyte", "fivetran", "csv_export"] {
        let code = code(&src().join(format!("playground/{mock}.rs")));
        for (i, _) in code.match_indices("super::") {
            // The CSV export reads the Fivetran mock's users.
            let allowed = ["super::wire", "super::fivetran"];
            assert!(
                allowed.iter().any(|a| code[i..].starts_with(a))
                    && !(mock == "fivetran" && code[i..].starts_with("super::fivetran")),
                "playground/{mock}.rs uses the playground server: {}",
                &code[i..(i + 40).min(code.len())]
            );
        }
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.strip_prefix(src()).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "split by role: {long:?}");
}
