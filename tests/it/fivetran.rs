//! Against Fivetran's own mock API, `fivetran-api-playground` from PyPI
//! (SOURCES.md §4): installed into a cached virtualenv, started on a free
//! port of 127.0.0.1 (its PyPI version check pre-empted, proxies pointed at
//! a closed port so nothing leaves the machine), and synced from.
//!
//! Skipped, with the reason printed, only when Python or the package cannot
//! be installed.

use std::path::Path;
use std::process::Command;

use etl::config::ConfigReader;
use serde_json::{json, Value};

use crate::common::opts;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};
use crate::pyenv;

const PACKAGE: &str = "fivetran-api-playground==1.1.9";

/// A running `playground start --port P`, with the credentials it printed.
pub struct FivetranPlayground {
    /// Stopped (with its process group) when dropped.
    _server: pyenv::Server,
    pub url: String,
    pub basic: (String, String),
    pub bearer: String,
    pub api_key: String,
    pub session: (String, String),
}

/// The value after `label` on the last log line containing `row`.
fn printed(log: &str, row: &str, label: &str) -> String {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(row))
        .unwrap_or_else(|| panic!("the playground printed no {row:?} line:\n{log}"));
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
        + label.len()..];
    rest.split_whitespace().next().unwrap().to_string()
}

impl FivetranPlayground {
    /// Start one, or `None` (reason printed) when it cannot be installed.
    pub async fn start() -> Option<FivetranPlayground> {
        let venv = match tokio::task::spawn_blocking(|| {
            pyenv::venv("fivetran-api-playground-1.1.9", &[PACKAGE])
        })
        .await
        .unwrap()
        {
            Ok(v) => v,
            Err(why) => {
                eprintln!("SKIPPED: cannot install {PACKAGE}: {why}");
                return None;
            }
        };
        Some(
            tokio::task::spawn_blocking(move || Self::start_in(&venv))
                .await
                .unwrap(),
        )
    }

    fn start_in(venv: &Path) -> FivetranPlayground {
        let dir = tempfile::tempdir().unwrap();
        // The playground checks PyPI for a newer release at most once a day:
        // tell it it just did.
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ft_api_playground")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        std::fs::write(
            home.join(".ft_api_playground").join("_last_version_check"),
            now.to_string(),
        )
        .unwrap();
        let port = pyenv::free_port();
        let mut cmd = Command::new(pyenv::bin(venv, "playground"));
        cmd.args(["start", "--port", &port.to_string()])
            .env("HOME", &home)
            .env("PYTHONUNBUFFERED", "1")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost");
        let server = pyenv::Server::start(cmd, dir, port, "fivetran-api-playground", |port| {
            pyenv::http_get(port, "/pagination/offset?limit=1").is_some_and(|(s, _)| s == 200)
        });
        // Flask's reloader prints a second set of credentials: the serving one's are last.
        let log = server.log();
        FivetranPlayground {
            url: format!("http://127.0.0.1:{port}"),
            basic: (
                printed(&log, "Http Basic Auth", "Username:"),
                printed(&log, "Http Basic Auth", "Password:"),
            ),
            bearer: printed(&log, "HTTP Bearer", "Bearer Token:"),
            api_key: printed(&log, "Auth API Key", "API Key:"),
            session: (
                printed(&log, "Session Token Auth Login", "Username:"),
                printed(&log, "Session Token Auth Login", "Password:"),
            ),
            _server: server,
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        let r = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Every user, in the server's list order (offset pages of 50, by createdAt).
    pub async fn users(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let page = self
                .get(&format!(
                    "/pagination/offset?order_by=createdAt&limit=50&offset={}",
                    out.len()
                ))
                .await;
            let data = page["data"].as_array().unwrap().clone();
            let n = data.len();
            out.extend(data);
            if n == 0 || out.len() as u64 >= page["total"].as_u64().unwrap() {
                return out;
            }
        }
    }
}

/// The `user` table as text rows (id, name, email, address, company, job, createdAt, updatedAt).
pub fn stored_users(out: &Path, extra_where: &str) -> Vec<String> {
    grid(
        &reader(out),
        &format!(
            "SELECT id, name, email, address, company, job, strftime(make_timestamp(epoch_us(createdAt)), '%Y-%m-%dT%H:%M:%SZ'), \
             strftime(make_timestamp(epoch_us(updatedAt)), '%Y-%m-%dT%H:%M:%SZ') FROM \"user\" {extra_where}"
        ),
    )
}

/// `users` as [`stored_users`] shows them, string fields passed through `clean`.
pub fn expected_users(users: &[Value], clean: impl Fn(&str) -> String) -> Vec<String> {
    let mut rows: Vec<String> = users
        .iter()
        .map(|u| {
            let s = |k: &str| {
                format!(
                    "{:?}",
                    ::duckdb::types::Value::Text(clean(u[k].as_str().unwrap()))
                )
            };
            let t = |k: &str| {
                format!(
                    "{:?}",
                    ::duckdb::types::Value::Text(u[k].as_str().unwrap().to_string())
                )
            };
            [
                s("id"),
                s("name"),
                s("email"),
                s("address"),
                s("company"),
                s("job"),
                t("createdAt"),
                t("updatedAt"),
            ]
            .join("|")
        })
        .collect();
    rows.sort();
    rows
}

fn csv_config(fp: &FivetranPlayground) -> ConfigReader {
    ConfigReader::from_map(
        json!({"url": format!("{}/export/csv", fp.url)})
            .as_object()
            .unwrap()
            .clone(),
    )
}

/// The playground's `/export/csv`: 200 rows, unquoted, with `\n`, `\r` and
/// `,` deleted from the string fields. Every row lands once, exactly as the
/// JSON endpoints show it (minus those characters); a second sync changes nothing.
async fn csv_export_lands_all_200_users_once(kind: Kind) {
    let Some(fp) = FivetranPlayground::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let s = etl::sync("csv_export", csv_config(&fp), &out, opts(64))
        .await
        .unwrap();
    assert_eq!(s.rows, 200, "{s:?}");
    let users = fp.users().await;
    assert_eq!(users.len(), 200);
    let expected = expected_users(&users, |v| v.replace(['\n', '\r', ','], ""));
    assert_eq!(stored_users(&out, ""), expected);
    // Again: the same rows, none soft-deleted, none added.
    etl::sync("csv_export", csv_config(&fp), &out, opts(64))
        .await
        .unwrap();
    assert_eq!(stored_users(&out, "WHERE NOT _etl_deleted"), expected);
    assert_eq!(
        grid(&reader(&out), "SELECT count(*) FROM \"user\""),
        vec!["BigInt(200)".to_string()]
    );
}

/// The shipped spec `data/specs/<name>.toml`.
pub fn spec_path(name: &str) -> String {
    format!("{}/data/specs/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

/// Sync the shipped spec `name` against `fp` (`vars` fill its `${…}`).
async fn rest_sync(
    fp: &FivetranPlayground,
    name: &str,
    vars: Value,
    out: &Path,
) -> etl::Result<etl::SyncSummary> {
    let mut c = json!({"base_url": fp.url});
    for (k, v) in vars.as_object().unwrap() {
        c[k] = v.clone();
    }
    sync_rest(&spec_path(name), c, out).await
}

/// Sync the spec file `spec` with the configuration `config` (its variables).
pub async fn sync_rest(spec: &str, mut config: Value, out: &Path) -> etl::Result<etl::SyncSummary> {
    config["spec"] = json!(spec);
    let c = ConfigReader::from_map(config.as_object().unwrap().clone());
    etl::sync("rest", c, out, opts(1_000_000)).await
}

/// The saved cursor of `table` in the rest connector's state.
fn cursor(out: &Path, table: &str) -> Option<String> {
    let s = crate::common::saved_state_of(out, "rest")?;
    s["streams"][table]["cursor"].as_str().map(String::from)
}

/// A paginated spec: every one of the 200 users lands once, with every
/// field as the API sends it; the saved cursor is the highest updatedAt; a
/// second sync asks from that cursor and reads only the rows sharing it.
async fn pagination_spec(name: &str, kind: Kind) {
    let Some(fp) = FivetranPlayground::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let s = rest_sync(&fp, name, json!({}), &out).await.unwrap();
    let users = fp.users().await;
    assert_eq!(users.len(), 200);
    let expected = expected_users(&users, |v| v.to_string());
    assert_eq!(stored_users(&out, ""), expected, "{name}");
    assert!(s.rows >= 200, "{s:?}");
    let max = users
        .iter()
        .map(|u| u["updatedAt"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    assert_eq!(
        cursor(&out, "user").as_deref(),
        Some(max.as_str()),
        "{name}"
    );
    let sharing = users
        .iter()
        .filter(|u| u["updatedAt"] == max.as_str())
        .count() as u64;
    let again = rest_sync(&fp, name, json!({}), &out).await.unwrap();
    assert_eq!(
        again.rows, sharing,
        "{name}: an incremental sync reads only rows updated since the cursor"
    );
    assert_eq!(
        stored_users(&out, "WHERE NOT _etl_deleted"),
        expected,
        "{name}"
    );
}

for_both_destinations_async!(
    csv_export_lands_all_200_users_once,
    offset_spec,
    page_number_spec,
    next_page_url_spec,
    keyset_spec,
    timestamp_spec,
    replay_spec,
    auth_specs,
    parent_and_child_tables_keep_a_cursor_per_parent,
    step_windows_read_every_position,
);

async fn offset_spec(kind: Kind) {
    pagination_spec("fivetran_offset", kind).await
}
async fn page_number_spec(kind: Kind) {
    pagination_spec("fivetran_page_number", kind).await
}
async fn next_page_url_spec(kind: Kind) {
    pagination_spec("fivetran_next_page_url", kind).await
}
async fn keyset_spec(kind: Kind) {
    pagination_spec("fivetran_keyset", kind).await
}
async fn timestamp_spec(kind: Kind) {
    pagination_spec("fivetran_timestamp", kind).await
}

/// replay_sync: the next sync asks from two hours before the highest
/// updatedAt (the example's buffer_hours) and reads exactly the rows
/// updated in those two hours, merged by id.
async fn replay_spec(kind: Kind) {
    let Some(fp) = FivetranPlayground::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    rest_sync(&fp, "fivetran_replay", json!({}), &out)
        .await
        .unwrap();
    let users = fp.users().await;
    let expected = expected_users(&users, |v| v.to_string());
    assert_eq!(stored_users(&out, ""), expected);
    let max = users
        .iter()
        .map(|u| u["updatedAt"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    assert_eq!(cursor(&out, "user").as_deref(), Some(max.as_str()));
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    let in_last_hour = users
        .iter()
        .filter(|u| t(u["updatedAt"].as_str().unwrap()) >= t(&max) - 7200)
        .count() as u64;
    let again = rest_sync(&fp, "fivetran_replay", json!({}), &out)
        .await
        .unwrap();
    assert_eq!(again.rows, in_last_hour);
    assert_eq!(
        stored_users(&out, ""),
        expected,
        "rows read again are merged, not duplicated"
    );
}

/// Each auth style of the playground: the first 20 users land with the
/// credentials it printed; a wrong credential fails naming the URL and
/// status, and no credential reaches the error, the state or the destination.
async fn auth_specs(kind: Kind) {
    let Some(fp) = FivetranPlayground::start().await else {
        return;
    };
    let users = fp.users().await;
    let first20 = expected_users(&users[..20], |v| v.to_string());
    let cases = [
        (
            "fivetran_auth_basic",
            json!({"username": fp.basic.0, "password": fp.basic.1}),
            "password",
        ),
        ("fivetran_auth_bearer", json!({"token": fp.bearer}), "token"),
        (
            "fivetran_auth_api_key",
            json!({"api_key": fp.api_key}),
            "api_key",
        ),
        (
            "fivetran_auth_session_token",
            json!({"username": fp.session.0, "password": fp.session.1}),
            "password",
        ),
    ];
    for (spec, vars, secret_key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = kind.path(dir.path());
        let s = rest_sync(&fp, spec, vars.clone(), &out)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(s.rows, 20, "{spec}");
        assert_eq!(stored_users(&out, ""), first20, "{spec}");
        let secret = vars[secret_key].as_str().unwrap().to_string();
        let state = crate::common::saved_state_of(&out, "rest")
            .unwrap()
            .to_string();
        assert!(!state.contains(&secret), "{spec}: {state}");
        // A wrong secret: refused, named, never printed.
        let mut bad = vars.clone();
        let wrong = format!("{secret}x");
        bad[secret_key] = Value::String(wrong.clone());
        let dir = tempfile::tempdir().unwrap();
        let e = rest_sync(&fp, spec, bad, &kind.path(dir.path()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("401"), "{spec}: {e}");
        assert!(!e.contains(&wrong) && !e.contains(&secret), "{spec}: {e}");
    }
}

/// multiple_tables_with_cursors: 2 companies, 4 departments each, read per
/// company with the company's own cursor in the state.
async fn parent_and_child_tables_keep_a_cursor_per_parent(kind: Kind) {
    let Some(fp) = FivetranPlayground::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    rest_sync(&fp, "fivetran_cursors", json!({}), &out)
        .await
        .unwrap();
    let r = reader(&out);
    assert_eq!(grid(&r, "SELECT count(*) FROM company"), vec!["BigInt(2)"]);
    assert_eq!(
        grid(&r, "SELECT company_id, count(*), count(DISTINCT department_name) FROM department GROUP BY 1"),
        vec!["Text(\"1\")|BigInt(4)|BigInt(4)", "Text(\"2\")|BigInt(4)|BigInt(4)"]
    );
    let state = crate::common::saved_state_of(&out, "rest").unwrap();
    let per_parent = &state["streams"]["department"]["parents"];
    assert!(
        per_parent["1"].is_string() && per_parent["2"].is_string(),
        "{state}"
    );
    // The playground bumps random rows' updatedAt on every call: the next sync
    // reads from each saved cursor and keeps every row once.
    rest_sync(&fp, "fivetran_cursors", json!({}), &out)
        .await
        .unwrap();
    let r = reader(&out);
    assert_eq!(
        grid(
            &r,
            "SELECT count(*), count(DISTINCT department_id || '/' || company_id) FROM department"
        ),
        vec!["BigInt(8)|BigInt(8)"]
    );
    assert_eq!(grid(&r, "SELECT count(*) FROM company"), vec!["BigInt(2)"]);
}

/// step_size_sync: windows of 50 positions until an empty answer; ids are positions.
async fn step_windows_read_every_position(kind: Kind) {
    let Some(fp) = FivetranPlayground::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let s = rest_sync(&fp, "fivetran_step", json!({}), &out)
        .await
        .unwrap();
    assert_eq!(s.rows, 200);
    let users = fp.users().await;
    let r = reader(&out);
    assert_eq!(
        grid(
            &r,
            "SELECT count(*), min(CAST(id AS INT)), max(CAST(id AS INT)) FROM \"user\""
        ),
        vec!["BigInt(200)|Int(1)|Int(200)"]
    );
    let mut names: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "{:?}",
                ::duckdb::types::Value::Text(u["email"].as_str().unwrap().into())
            )
        })
        .collect();
    names.sort();
    assert_eq!(grid(&r, "SELECT email FROM \"user\""), names);
    // The next sync goes on from the first empty window, as the SDK
    // pattern's saved current_id does: nothing is read again.
    let state = crate::common::saved_state_of(&out, "rest").unwrap();
    assert_eq!(state["streams"]["user"]["step_position"], 1001, "{state}");
    let again = rest_sync(&fp, "fivetran_step", json!({}), &out)
        .await
        .unwrap();
    assert_eq!((again.rows, again.requests), (0, 1), "{again:?}");
    assert_eq!(again.tables["user"].updated, 0);
}
