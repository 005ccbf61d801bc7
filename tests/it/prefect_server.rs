//! Prefect against a real Prefect server: `prefect==3.8.8` installed from
//! PyPI into a virtualenv (kept under `~/.cache/etl-test/`, rebuilt when
//! missing or incomplete), started on 127.0.0.1 with its own PREFECT_HOME.
//! Flows, deployments and flow runs are created through its REST API, synced
//! into DuckDB and Parquet, compared with what the server's filter endpoints
//! return, changed, and synced again.
//!
//! The test is skipped, with the reason printed, only when Python or the
//! package cannot be installed here; a server that installs but fails to
//! start, or any difference in the data, fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use etl::config::ConfigReader;
use etl::decode::values::parse_utc_micros;
use serde_json::{json, Value};

use crate::common::*;
use crate::dests::{grid, reader, Kind};
use crate::pyenv;

const PREFECT: &str = "prefect==3.8.8";
/// The FastAPI releases Prefect 3.8.8 starts cleanly with.
const FASTAPI: &str = "fastapi>=0.139,<0.151";

/// A virtualenv with Prefect installed: its directory, or why there is none.
fn prefect_venv() -> Result<PathBuf, String> {
    pyenv::venv("prefect-3.8.8", &[PREFECT, FASTAPI])
}

/// A Prefect server on 127.0.0.1, stopped (with its process group) on drop.
struct PrefectServer {
    _server: pyenv::Server,
    api_url: String,
}

impl PrefectServer {
    fn start(venv: &Path) -> PrefectServer {
        let home = tempfile::tempdir().unwrap();
        let port = pyenv::free_port();
        let mut cmd = Command::new(pyenv::bin(venv, "prefect"));
        cmd.args(["server", "start", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            // The API only: no scheduler adding runs while the test counts them.
            .args(["--no-services", "--no-ui", "--analytics-off"])
            .env("PREFECT_HOME", home.path())
            .env("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
            .env_remove("PREFECT_API_URL")
            .env_remove("PREFECT_API_KEY");
        let server = pyenv::Server::start(cmd, home, port, "prefect server", |port| {
            pyenv::http_get(port, "/api/health")
                .is_some_and(|(s, b)| s == 200 && b.trim_end().ends_with("true"))
        });
        PrefectServer {
            _server: server,
            api_url: format!("http://127.0.0.1:{port}/api"),
        }
    }
}

/// The REST API of the server under test.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .request(method.clone(), &url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(
            status.is_success(),
            "{method} {url} {body}: {status} {text}"
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn patch(&self, path: &str, body: Value) {
        self.call(reqwest::Method::PATCH, path, body).await;
    }

    async fn delete(&self, path: &str) {
        self.call(reqwest::Method::DELETE, path, Value::Null).await;
    }

    /// Every object of `objects`, as the filter endpoint returns them.
    async fn all(&self, objects: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let page = self
                .post(
                    &format!("/{objects}/filter"),
                    json!({"limit": 200, "offset": out.len()}),
                )
                .await;
            let page = page.as_array().unwrap().clone();
            let n = page.len();
            out.extend(page);
            if n < 200 {
                return out;
            }
        }
    }

    /// Move a run to `state` (forced, as an orchestrator would).
    async fn set_state(&self, run: &str, state: &str) {
        let r = self
            .post(
                &format!("/flow_runs/{run}/set_state"),
                json!({"state": {"type": state}, "force": true}),
            )
            .await;
        assert_eq!(r["status"], "ACCEPT", "set_state {run} {state}: {r}");
    }
}

#[derive(Clone, Copy)]
enum Cell {
    Text,
    Time,
    Json,
    Bool,
}

/// Columns compared per table, and how.
fn columns(table: &str) -> Vec<(&'static str, Cell)> {
    use Cell::*;
    let mut c = match table {
        "flows" => vec![("id", Text), ("name", Text), ("tags", Json)],
        "flow_runs" => vec![
            ("id", Text),
            ("name", Text),
            ("state_type", Text),
            ("state_name", Text),
            ("flow_id", Text),
            ("deployment_id", Text),
            ("start_time", Time),
            ("end_time", Time),
            ("expected_start_time", Time),
            ("parameters", Json),
            ("tags", Json),
        ],
        "deployments" => vec![
            ("id", Text),
            ("name", Text),
            ("flow_id", Text),
            ("schedule", Json),
            ("schedules", Json),
            ("paused", Bool),
        ],
        _ => unreachable!(),
    };
    c.extend([("updated", Time), ("created", Time), ("raw", Json)]);
    c
}

/// Fields of a run the server computes from the clock on every read: they
/// change without `updated` changing, so the stored copy is as of its sync.
const VOLATILE: [&str; 2] = ["estimated_start_time_delta", "estimated_run_time"];

fn without_volatile(mut raw: Value) -> Value {
    if let Some(o) = raw.as_object_mut() {
        for k in VOLATILE {
            o.remove(k);
        }
    }
    raw
}

/// A server object as the row it should be (keys sorted by serde_json).
fn expected_row(table: &str, o: &Value) -> Value {
    let mut row = serde_json::Map::new();
    for (col, cell) in columns(table) {
        let v = if col == "raw" {
            without_volatile(o.clone())
        } else {
            o.get(col).cloned().unwrap_or(Value::Null)
        };
        let v = match (cell, v) {
            (Cell::Time, Value::String(s)) => json!(parse_utc_micros(&s).expect("server time")),
            (_, v) => v,
        };
        row.insert(col.to_string(), v);
    }
    row.insert("_etl_deleted".into(), json!(false));
    Value::Object(row)
}

/// Every row of `table` in the destination, as JSON objects sorted by id.
fn destination_rows(out: &Path, table: &str) -> Vec<Value> {
    let cols = columns(table);
    let select: Vec<String> = cols
        .iter()
        .map(|(c, cell)| match cell {
            Cell::Time => format!("epoch_us({c})::VARCHAR"),
            _ => format!("{c}::VARCHAR"),
        })
        .collect();
    let sql = format!(
        "SELECT {}, _etl_deleted::VARCHAR FROM {table} ORDER BY id",
        select.join(", ")
    );
    let conn = reader(out);
    let mut stmt = conn.prepare(&sql).unwrap();
    let n = cols.len();
    stmt.query_map([], |r| {
        let mut row = serde_json::Map::new();
        for (i, (c, cell)) in cols.iter().enumerate() {
            let v: Option<String> = r.get(i)?;
            let v = match (cell, v) {
                (_, None) => Value::Null,
                (Cell::Text, Some(s)) => json!(s),
                (Cell::Time, Some(s)) => json!(s.parse::<i64>().unwrap()),
                (Cell::Json, Some(s)) if *c == "raw" => {
                    without_volatile(serde_json::from_str(&s).unwrap())
                }
                (Cell::Json, Some(s)) => serde_json::from_str(&s).unwrap(),
                (Cell::Bool, Some(s)) => json!(s == "true"),
            };
            row.insert(c.to_string(), v);
        }
        let deleted: String = r.get(n)?;
        row.insert("_etl_deleted".into(), json!(deleted == "true"));
        Ok(Value::Object(row))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Each table of `out` holds exactly what the server returns, plus the
/// soft-deleted `gone` rows (table, id).
async fn assert_matches_server(api: &Api, out: &Path, gone: &[(&str, &Value)]) {
    for table in ["flows", "flow_runs", "deployments"] {
        let mut want: Vec<Value> = api
            .all(table)
            .await
            .iter()
            .map(|o| expected_row(table, o))
            .collect();
        for (t, row) in gone {
            if *t == table {
                let mut row = expected_row(table, row);
                row["_etl_deleted"] = json!(true);
                want.push(row);
            }
        }
        want.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let got = destination_rows(out, table);
        assert_eq!(got.len(), want.len(), "{table} in {}", out.display());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{table} in {}", out.display());
        }
    }
}

/// The declared types, as DuckDB reports them.
fn assert_duckdb_types(out: &Path) {
    let tz = "TIMESTAMP WITH TIME ZONE";
    let conn = reader(out);
    for table in ["flows", "flow_runs", "deployments"] {
        let mut want: Vec<(String, String)> = columns(table)
            .into_iter()
            .map(|(c, cell)| {
                let ty = match cell {
                    Cell::Text => "VARCHAR",
                    Cell::Time => tz,
                    Cell::Json => "JSON",
                    Cell::Bool => "BOOLEAN",
                };
                (c.to_string(), ty.to_string())
            })
            .collect();
        want.push(("_synced_at".into(), tz.into()));
        want.push(("_etl_deleted".into(), "BOOLEAN".into()));
        want.sort();
        let mut stmt = conn
            .prepare("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?")
            .unwrap();
        let mut got: Vec<(String, String)> = stmt
            .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        got.sort();
        assert_eq!(got, want, "column types of {table}");
    }
}

async fn sync_server(server: &PrefectServer, out: &Path) -> etl::SyncSummary {
    // Small pages, several in flight: the real server's paging is exercised.
    let cfg = json!({"api_url": server.api_url, "batch_size": 7, "concurrency": 4});
    etl::sync(
        "prefect",
        ConfigReader::from_map(cfg.as_object().unwrap().clone()),
        out,
        opts(1_000),
    )
    .await
    .unwrap_or_else(|e| panic!("sync into {}: {e}", out.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_a_real_prefect_server_then_its_changes() {
    let venv = match tokio::task::spawn_blocking(prefect_venv).await.unwrap() {
        Ok(v) => v,
        Err(why) => {
            eprintln!("SKIPPED: cannot install {PREFECT} here: {why}");
            return;
        }
    };
    let server = tokio::task::spawn_blocking(move || PrefectServer::start(&venv))
        .await
        .unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: server.api_url.clone(),
    };

    // Three flows, two scheduled deployments, 40 runs (some by deployment,
    // some finished, with parameters and tags).
    let mut flows = Vec::new();
    for (i, tags) in [json!(["etl", "daily"]), json!([]), json!(["ü"])]
        .iter()
        .enumerate()
    {
        let f = api
            .post(
                "/flows/",
                json!({"name": format!("etl-flow-{i}"), "tags": tags}),
            )
            .await;
        flows.push(f["id"].as_str().unwrap().to_string());
    }
    let mut deployments = Vec::new();
    for (i, interval) in [3600, 86400].iter().enumerate() {
        let d = api
            .post(
                "/deployments/",
                json!({
                    "name": format!("etl-deployment-{i}"),
                    "flow_id": flows[i],
                    "schedules": [{"schedule": {"interval": interval}}],
                }),
            )
            .await;
        deployments.push(d["id"].as_str().unwrap().to_string());
    }
    let mut runs = Vec::new();
    for i in 0..40 {
        let r = if i % 8 == 0 {
            api.post(
                &format!("/deployments/{}/create_flow_run", deployments[i % 2]),
                json!({"name": format!("deployed-run-{i}"), "parameters": {}}),
            )
            .await
        } else {
            api.post(
                "/flow_runs/",
                json!({
                    "flow_id": flows[i % 3],
                    "name": format!("run-{i}"),
                    "parameters": {"n": i, "label": format!("é-{i}"), "nested": {"ok": i % 2 == 0}},
                    "tags": if i % 2 == 0 { json!(["even"]) } else { json!([]) },
                }),
            )
            .await
        };
        runs.push(r["id"].as_str().unwrap().to_string());
    }
    for run in &runs[1..6] {
        api.set_state(run, "RUNNING").await;
        api.set_state(run, "COMPLETED").await;
    }
    api.set_state(&runs[6], "FAILED").await;

    let dirs: Vec<_> = [Kind::DuckDb, Kind::Parquet]
        .into_iter()
        .map(tmp_for)
        .collect();
    for (_dir, out) in &dirs {
        let s = sync_server(&server, out).await;
        assert_eq!(s.tables["flows"].inserted, 3);
        assert_eq!(s.tables["deployments"].inserted, 2);
        assert_eq!(s.tables["flow_runs"].inserted, 40);
        assert_matches_server(&api, out, &[]).await;
    }
    assert_duckdb_types(&dirs[0].1);
    let finished = grid(
        &reader(&dirs[0].1),
        "SELECT count(*) FROM flow_runs WHERE state_type = 'COMPLETED' AND end_time >= start_time",
    );
    assert_eq!(finished, ["BigInt(5)"]);

    // Changes: runs move on, a flow and a deployment are edited, a
    // deployment is deleted, new runs arrive.
    for run in &runs[7..12] {
        api.set_state(run, "RUNNING").await;
    }
    api.patch(
        &format!("/flow_runs/{}", runs[12]),
        json!({"name": "renamed-run", "tags": ["x"]}),
    )
    .await;
    api.patch(
        &format!("/flows/{}", flows[1]),
        json!({"tags": ["retagged"]}),
    )
    .await;
    api.patch(
        &format!("/deployments/{}", deployments[0]),
        json!({"paused": true}),
    )
    .await;
    let doomed = api
        .all("deployments")
        .await
        .into_iter()
        .find(|d| d["id"] == deployments[1].as_str())
        .unwrap();
    api.delete(&format!("/deployments/{}", deployments[1]))
        .await;
    for i in 0..9 {
        api.post(
            "/flow_runs/",
            json!({"flow_id": flows[2], "name": format!("late-run-{i}"), "parameters": {"i": i}}),
        )
        .await;
    }

    for (_dir, out) in &dirs {
        let s = sync_server(&server, out).await;
        assert_eq!(s.tables["flow_runs"].inserted, 9, "{}", out.display());
        assert!(s.tables["flow_runs"].updated >= 6, "{}", out.display());
        assert_eq!(s.tables["deployments"].deleted, 1, "{}", out.display());
        assert_matches_server(&api, out, &[("deployments", &doomed)]).await;
    }
    let paused = grid(
        &reader(&dirs[0].1),
        &format!(
            "SELECT paused FROM deployments WHERE id = '{}'",
            deployments[0]
        ),
    );
    assert_eq!(paused, ["Boolean(true)"]);
}
