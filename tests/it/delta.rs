//! `--format delta`: Delta tables on local disk and on a real
//! S3-compatible server (moto's server mode from PyPI, started on
//! 127.0.0.1), read back by the Python `deltalake` package and polars;
//! kill -9 at random instants; several writers at a time; vacuum.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use etl::playground::PlaygroundOptions;
use serde_json::{json, Value};

use crate::common::*;
use crate::dests::delta_live_files;
use crate::pyenv;

const READERS: &str = "deltalake-1.6.6-polars-2.1.0";
const READER_PACKAGES: &[&str] = &["deltalake==1.6.6", "polars==2.1.0", "pyarrow==22.0.0"];
const MOTO: &str = "moto-5.2.5";

fn etl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etl"));
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

/// moto's S3 in server mode, every request served under one lock so its
/// `If-None-Match: *` check and the write that follows are one step (moto
/// checks, then writes; served concurrently, two conditional puts of one
/// key could both pass), with the bucket `lake` created.
struct S3 {
    server: pyenv::Server,
    port: u16,
}

const MOTO_LAUNCHER: &str = r#"
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple("127.0.0.1", int(sys.argv[1]), serialized, threaded=True)
"#;

impl S3 {
    fn start() -> Option<S3> {
        let venv = match pyenv::venv(MOTO, &["moto[server]==5.2.5"]) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("skipping: no Python environment for moto ({e})");
                return None;
            }
        };
        let port = pyenv::free_port();
        let mut cmd = Command::new(pyenv::bin(&venv, "python"));
        cmd.arg("-c").arg(MOTO_LAUNCHER).arg(port.to_string());
        let server = pyenv::Server::start(
            cmd,
            tempfile::tempdir().unwrap(),
            port,
            "moto S3 server",
            |p| pyenv::http_get(p, "/").is_some(),
        );
        let s3 = S3 { server, port };
        let created = s3.request("PUT", "/lake");
        assert!(
            created.starts_with("HTTP/1.") && created.contains(" 200"),
            "creating the bucket: {created}"
        );
        Some(s3)
    }

    fn request(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-not-in-logs".into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    fn cmd(&self) -> Command {
        let mut c = etl();
        c.envs(self.env());
        c
    }

    /// Storage options for the Python readers.
    fn options(&self) -> Value {
        json!({
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t-not-in-logs",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": format!("http://127.0.0.1:{}", self.port),
            "AWS_ALLOW_HTTP": "true",
        })
    }
}

/// What the Python readers say about each table of `tables` under `base`
/// (a directory or an s3:// URL): rows, live rows, distinct keys, Arrow
/// types, and the row count of version 0 (time travel).
fn read_tables(base: &str, tables: &[(&str, &str)], options: &Value) -> Option<Value> {
    let venv = match pyenv::venv(READERS, READER_PACKAGES) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skipping the Delta readers: no Python environment ({e})");
            return None;
        }
    };
    let script = r#"
import json, sys
import polars as pl
from deltalake import DeltaTable
base, tables, opts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]) or None
out = {}
for name, key in tables:
    uri = f"{base}/{name}"
    dt = DeltaTable(uri, storage_options=opts)
    arrow = dt.to_pyarrow_dataset().to_table()
    df = pl.read_delta(uri, storage_options=opts)
    deleted = "_fivetran_deleted" if "_fivetran_deleted" in df.columns else "_etl_deleted"
    versions = [DeltaTable(uri, storage_options=opts, version=v).to_pyarrow_dataset().count_rows()
                for v in range(dt.version() + 1)]
    out[name] = {
        "rows": df.height,
        "live": df.filter(~pl.col(deleted)).height,
        "distinct_keys": df.select(pl.col(key)).n_unique(),
        "types": {f.name: str(f.type) for f in arrow.schema},
        "polars": {k: str(v) for k, v in df.schema.items()},
        "version": dt.version(),
        "rows_by_version": versions,
        "ids": sorted(map(str, df.get_column(key).to_list())) if df.height <= 5000 else [],
    }
print(json.dumps(out))
"#;
    let tables: Vec<Value> = tables.iter().map(|(t, k)| json!([t, k])).collect();
    let r = pyenv::run(
        Command::new(pyenv::bin(&venv, "python"))
            .arg("-c")
            .arg(script)
            .arg(base)
            .arg(Value::Array(tables).to_string())
            .arg(options.to_string()),
        Duration::from_secs(300),
    );
    let out = r.unwrap_or_else(|e| panic!("the Delta readers failed: {e}"));
    let line = out.lines().last().unwrap_or_default();
    Some(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}")))
}

const PREFECT_TABLES: &[(&str, &str)] =
    &[("flows", "id"), ("flow_runs", "id"), ("deployments", "id")];

/// The checks every Prefect read must pass: no duplicate keys, the types
/// etl writes (UTC timestamps, strings, longs).
fn check_prefect(seen: &Value, flows: u64, runs: u64, deployments: u64) {
    for (t, n) in [
        ("flows", flows),
        ("flow_runs", runs),
        ("deployments", deployments),
    ] {
        let v = &seen[t];
        assert_eq!(v["rows"], n, "{t}: {v}");
        assert_eq!(v["distinct_keys"], n, "{t} has duplicate keys: {v}");
        assert_eq!(v["types"]["id"], "string", "{t}: {v}");
        assert_eq!(v["types"]["_fivetran_deleted"], "bool", "{t}: {v}");
        assert!(
            v["types"]["_fivetran_synced"]
                .as_str()
                .unwrap()
                .starts_with("timestamp[us, tz=UTC]"),
            "{t}: {v}"
        );
        assert!(
            v["polars"]["created"]
                .as_str()
                .unwrap()
                .contains("Datetime(time_unit='us', time_zone='UTC')"),
            "{t}: {v}"
        );
    }
    // JSON as text; the month of `created` is the partition column.
    assert_eq!(
        seen["flow_runs"]["types"]["parameters"], "string",
        "{}",
        seen["flow_runs"]
    );
    assert_eq!(
        seen["flow_runs"]["types"]["created_month"], "string",
        "{}",
        seen["flow_runs"]
    );
    assert_eq!(
        seen["deployments"]["types"]["paused"], "bool",
        "{}",
        seen["deployments"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefect_playground_into_a_local_lake_reads_back_in_deltalake_and_polars() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let mut c = etl();
    c.args([
        "sync",
        "prefect",
        "--playground",
        "--playground-flow-runs",
        "700",
        "--format",
        "delta",
        "--out",
    ])
    .arg(&out);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    // The next sync finds the lake itself (no --format) and changes nothing.
    let mut c = etl();
    c.args([
        "sync",
        "prefect",
        "--playground",
        "--playground-flow-runs",
        "700",
        "--summary",
        "json",
        "--out",
    ])
    .arg(&out);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["status"], "ok", "{summary}");
    let base = out.join("prefect");
    for t in ["flows", "flow_runs", "deployments", "_etl_state"] {
        assert!(
            base.join(t).join("_delta_log").is_dir(),
            "{t} is a Delta table"
        );
    }
    let Some(seen) = read_tables(&base.to_string_lossy(), PREFECT_TABLES, &Value::Null) else {
        return;
    };
    check_prefect(&seen, 40, 700, 25);
    // Time travel: every version reads (the table as first declared, empty,
    // or with all its rows: the flows' one page commits at once), and no
    // version ever shows a row twice.
    let versions: Vec<u64> =
        serde_json::from_value(seen["flows"]["rows_by_version"].clone()).unwrap();
    assert_eq!(versions.last(), Some(&40), "{versions:?}");
    assert!(versions.iter().all(|&n| n == 0 || n == 40), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prefect_playground_into_s3_reads_back_and_the_secret_stays_out() {
    let Some(s3) = S3::start() else { return };
    let mut c = s3.cmd();
    c.args([
        "sync",
        "prefect",
        "--playground",
        "-v",
        "--format",
        "delta",
        "--out",
        "s3://lake/demo",
    ]);
    let o = run(c).await;
    assert!(o.status.success(), "{}\n{}", text(&o), s3.server.log());
    assert!(!text(&o).contains("s3cr3t-not-in-logs"));
    // Again: an s3:// URL is a Delta lake without --format.
    let mut c = s3.cmd();
    c.args(["sync", "prefect", "--playground", "--out", "s3://lake/demo"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let Some(seen) = read_tables("s3://lake/demo/prefect", PREFECT_TABLES, &s3.options()) else {
        return;
    };
    check_prefect(&seen, 40, 2000, 25);
    // A bucket that is not there is named.
    let mut c = s3.cmd();
    c.args([
        "sync",
        "prefect",
        "--playground",
        "--out",
        "s3://nosuch/demo",
    ]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("bucket nosuch does not exist"),
        "{}",
        text(&o)
    );
    // `etl state` reads the state table on S3.
    let mut c = s3.cmd();
    c.args(["state", "prefect", "--json", "--out", "s3://lake/demo"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let state: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(state.to_string().contains("flow_runs"), "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_with_delta_outputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = etl();
    c.args([
        "sync",
        "userflow",
        "--playground",
        "--format",
        "parquet",
        "--out",
        "s3://lake/x",
    ]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pass --format delta"), "{}", text(&o));
    // A plain Parquet dataset is not written as Delta (nor the other way round).
    let lake = dir.path().join("lake");
    let mut c = etl();
    c.args([
        "sync",
        "userflow",
        "--playground",
        "--playground-users",
        "50",
        "--format",
        "parquet",
        "--out",
    ])
    .arg(&lake);
    assert!(run(c).await.status.success());
    let mut c = etl();
    c.args([
        "sync",
        "userflow",
        "--playground",
        "--playground-users",
        "50",
        "--format",
        "delta",
        "--out",
    ])
    .arg(&lake);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("plain Parquet dataset"), "{}", text(&o));
    let delta = dir.path().join("delta");
    let mut c = etl();
    c.args([
        "sync",
        "userflow",
        "--playground",
        "--playground-users",
        "50",
        "--format",
        "delta",
        "--out",
    ])
    .arg(&delta);
    assert!(run(c).await.status.success());
    let mut c = etl();
    c.args([
        "sync",
        "userflow",
        "--playground",
        "--playground-users",
        "50",
        "--format",
        "parquet",
        "--out",
    ])
    .arg(&delta);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is a Delta lake's schema"),
        "{}",
        text(&o)
    );
    // --tables with a table the connector lacks.
    let mut c = etl();
    c.args([
        "sync",
        "prefect",
        "--playground",
        "--tables",
        "flows,runs",
        "--format",
        "delta",
        "--out",
    ])
    .arg(dir.path().join("d"));
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("\"runs\"") && text(&o).contains("flow_runs"),
        "{}",
        text(&o)
    );
}

/// A sync of `users` killed with SIGKILL at random instants (a commit
/// after every page), then run to the end: exactly the source's rows.
async fn kill_trials(out: &str, s3: Option<&S3>, trials: usize) -> etl::playground::Playground {
    let pg = playground_with(PlaygroundOptions {
        users: 3_000,
        latency: Duration::from_millis(15),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "userflow.json", &pg.userflow_config());
    let cmd = || {
        let mut c = match s3 {
            Some(s) => s.cmd(),
            None => etl(),
        };
        c.args([
            "sync",
            "userflow",
            "-q",
            "--checkpoint-rows",
            "1",
            "--format",
            "delta",
            "--config",
        ])
        .arg(&cfg)
        .args(["--out", out]);
        c
    };
    let mut rng = rand::rng();
    for trial in 0..trials {
        let mut child = cmd()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = rand::Rng::random_range(&mut rng, 50..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let _ = child.kill();
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        eprintln!("trial {trial}: killed after {wait} ms ({status})");
    }
    let o = run(cmd()).await;
    assert!(o.status.success(), "{}", text(&o));
    pg
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_instants_then_rerun_is_exact_locally() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let pg = kill_trials(&out.to_string_lossy(), None, 8).await;
    assert_eq!(read_users(&out), expected_users(&pg));
    assert_eq!(
        query_i64(&out, "SELECT count(*) - count(DISTINCT id) FROM users"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_instants_then_rerun_is_exact_on_s3() {
    let Some(s3) = S3::start() else { return };
    let pg = kill_trials("s3://lake/killed", Some(&s3), 4).await;
    let Some(seen) = read_tables(
        "s3://lake/killed/userflow",
        &[("users", "id")],
        &s3.options(),
    ) else {
        return;
    };
    let want: Vec<String> = {
        let mut ids: Vec<String> = expected_users(&pg).into_iter().map(|r| r.0).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        seen["users"]["rows"],
        want.len() as u64,
        "{}",
        seen["users"]
    );
    assert_eq!(seen["users"]["distinct_keys"], want.len() as u64);
    assert_eq!(seen["users"]["live"], want.len() as u64);
    let ids: Vec<String> = serde_json::from_value(seen["users"]["ids"].clone()).unwrap();
    assert_eq!(ids, want);
}

/// Two processes sync different tables of one connector into one lake at
/// the same time (`--tables`): both succeed, each table is whole, and each
/// stream's state is its writer's.
async fn writers_of_different_tables(out: &str, s3: Option<&S3>) {
    let pg = playground_with(PlaygroundOptions {
        flow_runs: 3_000,
        latency: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "prefect.json", &pg.prefect_config());
    let spawn = |tables: &str| {
        let mut c = match s3 {
            Some(s) => s.cmd(),
            None => etl(),
        };
        c.args([
            "sync",
            "prefect",
            "--checkpoint-rows",
            "200",
            "--format",
            "delta",
            "--tables",
            tables,
            "--config",
        ])
        .arg(&cfg)
        .args(["--out", out]);
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("flow_runs");
    let b = spawn("flows,deployments");
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    assert!(a.status.success(), "flow_runs writer: {}", text(&a));
    assert!(b.status.success(), "flows,deployments writer: {}", text(&b));
    // Both streams' progress is saved: a third sync of everything reads only what is new.
    let mut c = match s3 {
        Some(s) => s.cmd(),
        None => etl(),
    };
    c.args(["state", "prefect", "--json", "--out", out]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let state = String::from_utf8_lossy(&o.stdout).into_owned();
    for s in ["flows", "flow_runs", "deployments"] {
        assert!(
            state.contains(&format!("\"{s}\"")),
            "{s} missing from {state}"
        );
    }
    let base = format!("{}/prefect", out.trim_end_matches('/'));
    let opts = s3.map_or(Value::Null, S3::options);
    let Some(seen) = read_tables(&base, PREFECT_TABLES, &opts) else {
        return;
    };
    check_prefect(&seen, 40, 3000, 25);
}

/// Two processes sync the same table at the same time, committing often:
/// each either succeeds or stops busy (exit 4) — a commit planned on a
/// stale snapshot is planned again, never lost or doubled — and the next
/// sync ends with exactly the source's rows.
async fn writers_of_one_table(out: &str, s3: Option<&S3>) -> etl::playground::Playground {
    let pg = playground_with(PlaygroundOptions {
        users: 2_000,
        latency: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "userflow.json", &pg.userflow_config());
    let cmd = || {
        let mut c = match s3 {
            Some(s) => s.cmd(),
            None => etl(),
        };
        c.args([
            "sync",
            "userflow",
            "--checkpoint-rows",
            "100",
            "--format",
            "delta",
            "--config",
        ])
        .arg(&cfg)
        .args(["--out", out]);
        c
    };
    let spawn = || {
        cmd()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    for o in [&a, &b] {
        assert!(
            o.status.success() || o.status.code() == Some(4),
            "a writer failed otherwise: {}",
            text(o)
        );
        if o.status.code() == Some(4) {
            assert!(
                text(o).contains("other writers kept committing"),
                "{}",
                text(o)
            );
        }
    }
    let retried = text(&a).contains("planning the commit again")
        || text(&b).contains("planning the commit again");
    eprintln!(
        "writers: {:?} {:?}; a commit was planned again: {retried}",
        a.status, b.status
    );
    let o = run(cmd()).await;
    assert!(o.status.success(), "{}", text(&o));
    pg
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_a_local_lake() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let out = out.to_string_lossy().into_owned();
    writers_of_different_tables(&out, None).await;
    let dir2 = tempfile::tempdir().unwrap();
    let out2 = dir2.path().join("lake");
    let pg = writers_of_one_table(&out2.to_string_lossy(), None).await;
    assert_eq!(read_users(&out2), expected_users(&pg));
    assert_eq!(
        query_i64(&out2, "SELECT count(*) - count(DISTINCT id) FROM users"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_s3() {
    let Some(s3) = S3::start() else { return };
    writers_of_different_tables("s3://lake/two", Some(&s3)).await;
    let pg = writers_of_one_table("s3://lake/one", Some(&s3)).await;
    let Some(seen) = read_tables("s3://lake/one/userflow", &[("users", "id")], &s3.options())
    else {
        return;
    };
    let n = pg.userflow().users().len() as u64;
    assert_eq!(seen["users"]["rows"], n, "{}", seen["users"]);
    assert_eq!(seen["users"]["distinct_keys"], n);
}

/// Replaced files stay until `etl vacuum` deletes them past the retention
/// period; live files are never touched, and the table reads the same.
#[tokio::test(flavor = "multi_thread")]
async fn vacuum_deletes_only_files_no_snapshot_needs() {
    let pg = playground(400).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let cfg = write_json(dir.path(), "userflow.json", &pg.userflow_config());
    for i in 0..3 {
        if i > 0 {
            // A rescan rewrites only the files of rows that changed.
            let id = pg.userflow().users()[i * 150].id.clone();
            let mut attrs = serde_json::Map::new();
            attrs.insert(
                "email".into(),
                serde_json::json!(format!("v{i}@example.com")),
            );
            pg.userflow().upsert(&id, attrs);
        }
        let mut c = etl();
        c.args([
            "sync",
            "userflow",
            "--checkpoint-rows",
            "50",
            "--format",
            "delta",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&out);
        let o = run(c).await;
        assert!(o.status.success(), "{}", text(&o));
    }
    let table = out.join("userflow").join("users");
    let live = delta_live_files(&table);
    // Data files, in the table's partition directories too.
    fn on_disk(t: &Path) -> usize {
        std::fs::read_dir(t)
            .unwrap()
            .flatten()
            .map(|e| match e.path().is_dir() {
                true if e.file_name() != "_delta_log" => on_disk(&e.path()),
                true => 0,
                false => e.file_name().to_string_lossy().ends_with(".parquet") as usize,
            })
            .sum()
    }
    let before = on_disk(&table);
    assert!(
        before > live.len(),
        "rescans replaced files ({before} on disk, {} live)",
        live.len()
    );
    let rows = read_users(&out);
    // The default retention (7 days) keeps them all.
    let mut c = etl();
    c.args(["vacuum", "--out"]).arg(&out);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(on_disk(&table), before, "{}", text(&o));
    let mut c = etl();
    c.args(["vacuum", "--retention-hours", "0", "--out"])
        .arg(&out);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("userflow.users: deleted"), "{}", text(&o));
    assert_eq!(on_disk(&table), live.len(), "{}", text(&o));
    assert_eq!(delta_live_files(&table), live);
    assert_eq!(read_users(&out), rows);
    // Not a lake: nothing to vacuum is an error.
    let mut c = etl();
    c.args(["vacuum", "--out"]).arg(dir.path());
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Frequent small commits do not pile up files: once a partition holds 16
/// small files, the next commit that writes it merges them (plain Parquet
/// and Delta alike), and the rows stay exactly the ones written.
#[test]
fn small_files_of_frequent_commits_are_compacted() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use etl::schema::{Column, ColumnType, TableSchema};

    use crate::dests::Kind;

    for kind in [Kind::Parquet, Kind::Delta] {
        let dir = tempfile::tempdir().unwrap();
        let path = kind.path(dir.path());
        let t = Arc::new(TableSchema::new(
            "events",
            &["id"],
            vec![
                Column::new("id", ColumnType::String),
                Column::new("n", ColumnType::Long),
            ],
        ));
        let mut d = kind.open(&path);
        d.prepare(std::slice::from_ref(&t)).unwrap();
        let mut most = 0;
        for i in 0..60i64 {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![format!("e{i}")])),
                Arc::new(Int64Array::from(vec![i])),
            ];
            d.upsert(&t, RecordBatch::try_new(t.arrow_schema(), cols).unwrap())
                .unwrap();
            d.commit("c", &etl::state::State::default()).unwrap();
            most = most.max(d.parquet().files("events").len());
        }
        assert!(
            most <= 17,
            "{kind:?}: up to {most} live files after 60 one-row commits"
        );
        assert_eq!(
            d.grid("SELECT count(*), count(DISTINCT id), sum(n) FROM events"),
            vec!["BigInt(60)|BigInt(60)|HugeInt(1770)"],
            "{kind:?}"
        );
        if kind == Kind::Delta {
            let live = delta_live_files(&path.join("main").join("events"));
            assert_eq!(live.len(), d.parquet().files("events").len());
        }
    }
}

/// The state of writers of different streams of one connector: each
/// commits only its own streams' rows and none undoes the other's, even
/// committing from a view of the lake older than the other's commits; of
/// two writers of one stream the later commit wins; and the state table's
/// history stays a bounded number of files.
#[test]
fn writers_of_different_streams_keep_each_others_state() {
    use etl::state::State;

    use crate::dests::Kind;

    let dir = tempfile::tempdir().unwrap();
    let path = Kind::Delta.path(dir.path());
    let state = |pairs: &[(&str, i64)]| {
        let mut s = State::default();
        for (k, v) in pairs {
            s.streams.insert(k.to_string(), json!({ "cursor": v }));
        }
        s
    };
    let fresh = || {
        let mut d = Kind::Delta.open(&path);
        d.load_state("c").unwrap().unwrap_or_default().streams
    };
    // Both open the lake before either commits.
    let mut a = Kind::Delta.open(&path);
    let mut b = Kind::Delta.open(&path);
    for i in 1..=20 {
        a.commit("c", &state(&[("a", i)])).unwrap();
        b.commit("c", &state(&[("b", 100 + i)])).unwrap();
    }
    let seen = fresh();
    assert_eq!(seen.get("a"), Some(&json!({ "cursor": 20 })), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&json!({ "cursor": 120 })), "{seen:?}");
    let files = delta_live_files(&path.join("main").join("_etl_state"));
    assert!(
        files.len() <= 17,
        "{} live state files after 40 commits",
        files.len()
    );

    // One stream, two writers: the later commit is the state.
    a.commit("c", &state(&[("a", 21), ("shared", 1)])).unwrap();
    b.commit("c", &state(&[("b", 120), ("shared", 2)])).unwrap();
    let seen = fresh();
    assert_eq!(
        seen.get("shared"),
        Some(&json!({ "cursor": 2 })),
        "{seen:?}"
    );
    assert_eq!(seen.get("a"), Some(&json!({ "cursor": 21 })), "{seen:?}");

    // A stream a writer forgets is forgotten; the other's stay.
    a.commit("c", &state(&[("shared", 1)])).unwrap();
    let seen = fresh();
    assert!(!seen.contains_key("a"), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&json!({ "cursor": 120 })), "{seen:?}");
}
