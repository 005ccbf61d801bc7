//! The `etl` binary: exit codes, kill -9 and resume, secrets never printed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use etl::playground::{Fault, PlaygroundOptions};
use serde_json::{json, Value};

use crate::common::*;
use crate::dests::{for_every_destination_async, Kind};

for_every_destination_async!(
    kill_9_midway_then_rerun_is_exact,
    the_api_key_never_reaches_logs_errors_state_or_the_file,
    state_shows_progress_and_reset_forgets_it,
);

fn etl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etl"));
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

fn write_config(dir: &Path, v: &Value) -> std::path::PathBuf {
    let p = dir.join("userflow.json");
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

/// Run the binary off the async runtime (the playground serves on it meanwhile).
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

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let cases = [
        (
            json!({"userflow_api_key": "ak_x", "page_size": 500}),
            "page_size",
        ),
        (
            json!({"userflow_api_key": "ak_x", "page_size": "many"}),
            "page_size",
        ),
        (json!({"userflow_api_key": 42}), "userflow_api_key"),
        (
            json!({"base_url": "https://api.userflow.com"}),
            "userflow_api_key",
        ),
        (
            json!({"userflow_api_key": "ak_x", "base_url": "ftp://x"}),
            "base_url",
        ),
        (
            json!({"userflow_api_key": "ak_x", "pagesize": 10}),
            "pagesize",
        ),
    ];
    for (cfg, key) in cases {
        let path = write_config(dir.path(), &cfg);
        let o = run({
            let mut c = etl();
            c.args(["sync", "userflow", "--config"])
                .arg(&path)
                .arg("--out")
                .arg(&db);
            c
        })
        .await;
        assert_eq!(o.status.code(), Some(2), "{cfg}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("\"{key}\"")) && err.contains("userflow.json"),
            "{cfg}: {err}"
        );
    }
    assert!(
        !db.exists(),
        "a bad configuration does not create the destination"
    );
}

/// `etl sync rest`: the spec flag's mistakes exit 2 and say what to pass;
/// a spec and its --config variables sync from the playground.
#[tokio::test(flavor = "multi_thread")]
async fn rest_specs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{}/data/specs/fivetran_auth_bearer.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = dir.path().join("w.duckdb");
    let cases: [(&[&str], &str); 4] = [
        (
            &["rest", "--playground"],
            "`etl sync rest` needs --spec FILE",
        ),
        (
            &["userflow", "--playground", "--spec", &spec],
            "--spec is for `etl sync rest`",
        ),
        (
            &["rest", "--playground", "--spec", "/nonexistent/api.toml"],
            "/nonexistent/api.toml",
        ),
        (&["rest", "--spec", &spec], "${token} is not set"),
    ];
    for (args, says) in cases {
        let mut c = etl();
        c.arg("sync").args(args).arg("--out").arg(&out);
        let o = run(c).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
        assert!(!out.exists(), "{args:?}");
    }
    // The spec's ${token} from --config; the token never printed.
    let pg = etl::playground::Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let vars = dir.path().join("vars.json");
    std::fs::write(
        &vars,
        json!({"base_url": pg.url(), "token": etl::playground::fivetran::BEARER_TOKEN}).to_string(),
    )
    .unwrap();
    let mut c = etl();
    c.args(["sync", "rest", "-vv", "--spec", &spec, "--config"])
        .arg(&vars)
        .arg("--out")
        .arg(&out);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("user                     inserted        20"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains(etl::playground::fivetran::BEARER_TOKEN),
        "the token was printed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_and_say_what_to_pass() {
    let o = run({
        let mut c = etl();
        c.args(["sync", "userflow", "--out", "x.duckdb"]);
        c
    })
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--config")
            && err.contains("--playground")
            && err.contains("userflow_api_key"),
        "{err}"
    );

    let o = run({
        let mut c = etl();
        c.args(["sync", "nosuch", "--playground", "--out", "x.duckdb"]);
        c
    })
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("available: egnyte, userflow, prefect"),
        "{}",
        text(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = etl();
        c.args([
            "sync",
            "userflow",
            "--config",
            "/nonexistent/cfg.json",
            "--out",
        ])
        .arg(dir.path().join("w.duckdb"));
        c
    })
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/cfg.json"));

    // Destination choices: each mistake exits 2 naming the flag or the path.
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--format", "duckdb"], "is a directory"),
        (&[], "is not empty and is not an etl lake"),
        (
            &["--partition-by", "nosuch=created_at:day"],
            "which connector userflow does not have",
        ),
        (
            &["--partition-by", "users=email:day"],
            "--partition-by users=email:day",
        ),
        (&["--compression", "lzma"], "not one of zstd"),
    ];
    for (flags, says) in cases {
        let mut c = etl();
        c.args([
            "sync",
            "userflow",
            "--playground",
            "--playground-users",
            "10",
        ])
        .args(flags)
        .arg("--out")
        .arg(dir.path());
        let o = run(c).await;
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{flags:?}: {}", text(&o));
    }
    let lake = dir.path().join("lake");
    let sync_lake = |flags: &'static [&'static str]| {
        let mut c = etl();
        c.args([
            "sync",
            "userflow",
            "--playground",
            "--playground-users",
            "10",
        ])
        .args(flags)
        .arg("--out")
        .arg(&lake);
        run(c)
    };
    assert!(sync_lake(&[]).await.status.success());
    let o = sync_lake(&["--partition-by", "users=created_at:day"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("partitioned by created_at:month"),
        "{}",
        text(&o)
    );

    // Flags that would do nothing here are refused, naming the flag.
    let db = dir.path().join("w.duckdb");
    let cases: [(&[&str], &std::path::Path, &str); 5] = [
        (
            &["userflow", "--partition-by", "users=created_at:day"],
            &db,
            "--partition-by applies to Parquet output",
        ),
        (
            &["userflow", "--max-file-mib", "64"],
            &db,
            "--max-file-mib applies",
        ),
        (
            &["userflow", "--memory-limit", "2GB"],
            &lake,
            "--memory-limit applies to DuckDB output",
        ),
        (
            &["userflow", "--duckdb-storage-version", "v2.0.0"],
            &lake,
            "--duckdb-storage-version applies to DuckDB output",
        ),
        (
            &["prefect", "--playground-users", "10"],
            &db,
            "--playground-users applies to the userflow and egnyte playgrounds, not prefect",
        ),
    ];
    for (args, out, says) in cases {
        let mut c = etl();
        c.arg("sync")
            .args(&args[..1])
            .arg("--playground")
            .args(&args[1..])
            .arg("--out")
            .arg(out);
        let o = run(c).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    assert!(!db.exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn connectors_and_schema_commands() {
    let o = run({
        let mut c = etl();
        c.arg("connectors");
        c
    })
    .await;
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("userflow"));
    let o = run({
        let mut c = etl();
        c.args(["schema", "userflow"]);
        c
    })
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "table users (primary key: id; Parquet partitions: created_at:month → created_at_month=…)"
        ) && out.contains("UTC_DATETIME")
            && out.contains("TIMESTAMPTZ"),
        "{out}"
    );
    // JSON: the same type names, and the column every destination adds.
    let o = run({
        let mut c = etl();
        c.args(["schema", "userflow", "--json"]);
        c
    })
    .await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let cols = v[0]["columns"].as_array().unwrap();
    let col = |n: &str| cols.iter().find(|c| c["name"] == n).cloned().unwrap();
    assert_eq!(col("created_at")["type"], "UTC_DATETIME");
    assert_eq!(col("created_at")["duckdb_type"], "TIMESTAMPTZ");
    assert_eq!(col("email")["source"], "attributes.email");
    // Fivetran naming by default: its system columns.
    assert_eq!(col("_fivetran_deleted")["type"], "BOOLEAN");
    assert_eq!(col("_fivetran_synced")["source"], "(sync time)");
    // A REST spec's tables, without its credentials, and the variables it takes.
    let spec = format!(
        "{}/data/specs/fivetran_auth_basic.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let o = run({
        let mut c = etl();
        c.args(["schema", "rest", "--spec", &spec]);
        c
    })
    .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("table user (primary key: id)")
            && out.contains("updated_at        UTC_DATETIME   duckdb TIMESTAMPTZ  from updatedAt")
            && out.contains("\"username\": \"<USERNAME>\""),
        "{out}"
    );
    let o = run({
        let mut c = etl();
        c.args(["schema", "rest"]);
        c
    })
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("needs --spec FILE"), "{}", text(&o));
}

async fn kill_9_midway_then_rerun_is_exact(kind: Kind) {
    let pg = playground_with(PlaygroundOptions {
        users: 4_000,
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = kind.path(dir.path());
    let cfg = write_config(dir.path(), &pg.userflow_config());
    let mut cmd = etl();
    cmd.args(["sync", "userflow", "-q", "--checkpoint-rows", "1"])
        .args(kind.format_args())
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&db);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 40 pages at ≥ 20 ms each, a commit after every page: kill after a dozen.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pg.requests() < 12 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A Delta commit takes longer (two log entries): kill after the first.
    let first = db.join("userflow").join("_etl_state").join("_delta_log");
    while kind == Kind::Delta && !first.is_dir() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success());
    let committed = query_i64(&db, "SELECT count(*) FROM users");
    assert!(committed < 4_000, "killed midway ({committed} rows)");

    let mut cmd = etl();
    cmd.args(["sync", "userflow", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&db);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read_users(&db), expected_users(&pg));
    assert_eq!(
        query_i64(&db, "SELECT count(*) - count(DISTINCT id) FROM users"),
        0
    );
}

async fn the_api_key_never_reaches_logs_errors_state_or_the_file(kind: Kind) {
    let pg = playground(300).await;
    let dir = tempfile::tempdir().unwrap();
    let db = kind.path(dir.path());
    let mut cfg = pg.userflow_config();
    cfg["retry_attempts"] = json!(3);
    let cfg_path = write_config(dir.path(), &cfg);
    // Retries are logged; the most verbose level everywhere.
    pg.fault_at(
        1,
        Fault::Status {
            status: 503,
            retry_after: Some("0".into()),
            body: format!("echo {SECRET_KEY}"),
        },
    );
    let mut cmd = etl();
    cmd.env("RUST_LOG", "trace")
        .args(["sync", "userflow", "-vv"])
        .args(kind.format_args())
        .arg("--config")
        .arg(&cfg_path)
        .arg("--out")
        .arg(&db);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains("retrying"), "the retry was logged: {all}");
    assert!(!all.contains(SECRET_KEY), "key leaked into the output");

    // A failing run: the server echoes the key in its error body.
    for n in 0..3 {
        pg.fault_at(
            pg.requests() + 1 + n,
            Fault::Status {
                status: 500,
                retry_after: Some("0".into()),
                body: format!(r#"{{"error":{{"code":"x","message":"bad key {SECRET_KEY}"}}}}"#),
            },
        );
    }
    let mut cmd = etl();
    cmd.env("RUST_LOG", "trace")
        .args(["sync", "userflow", "--config"])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&db);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(1));
    let all = text(&o);
    assert!(
        all.contains("failed after 3 attempts") && all.contains("bad key ***"),
        "{all}"
    );
    assert!(!all.contains(SECRET_KEY));

    // Every byte written: the DuckDB file, or each file of the dataset.
    let mut files = vec![db.clone()];
    while let Some(f) = files.pop() {
        if f.is_dir() {
            files.extend(std::fs::read_dir(&f).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        let needle = SECRET_KEY.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "key stored in {}",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn playground_flag_runs_the_main_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let sync_playground = || {
        let mut cmd = etl();
        cmd.args([
            "sync",
            "userflow",
            "--playground",
            "--playground-users",
            "2500",
            "--out",
        ])
        .arg(&db);
        run(cmd)
    };
    let o = sync_playground().await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("inserted      2500"), "{out}");
    assert!(out.contains("rows/s"), "{out}");
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM users"),
        2_500
    );
    // Rerun: nothing new, same rows.
    let o = sync_playground().await;
    assert!(o.status.success());
    assert_eq!(query_i64(&db, "SELECT count(*) FROM users"), 2_500);

    // The Parquet form of the main job: a dataset DuckDB reads with the declared types.
    let lake = dir.path().join("lake");
    let mut cmd = etl();
    cmd.args([
        "sync",
        "userflow",
        "--playground",
        "--playground-users",
        "2500",
        "--format",
        "parquet",
        "--out",
    ])
    .arg(&lake);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("parquet:"),
        "{}",
        text(&o)
    );
    assert_eq!(
        query_i64(&lake, "SELECT count(DISTINCT id) FROM users"),
        2_500
    );
    let conn = crate::dests::reader(&lake);
    let types = crate::dests::grid(
        &conn,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'users'",
    );
    for want in [
        "Text(\"created_at\")|Text(\"TIMESTAMP WITH TIME ZONE\")",
        "Text(\"raw\")|Text(\"JSON\")",
        "Text(\"_fivetran_deleted\")|Text(\"BOOLEAN\")",
        "Text(\"_fivetran_synced\")|Text(\"TIMESTAMP WITH TIME ZONE\")",
        "Text(\"created_at_month\")|Text(\"VARCHAR\")",
    ] {
        assert!(types.iter().any(|t| t == want), "{want} in {types:?}");
    }
    assert_eq!(
        read_users(&lake),
        read_users(&db),
        "same rows in both destinations"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn egnyte_playground_sync_refreshes_quietly_and_a_spent_quota_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    // The headline command against the built-in playground (2 calls/s).
    let db = dir.path().join("w.duckdb");
    let mut cmd = etl();
    cmd.args([
        "sync",
        "egnyte",
        "--playground",
        "--playground-users",
        "150",
        "--out",
    ])
    .arg(&db);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("inserted       150"),
        "{}",
        text(&o)
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM users"), 150);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM groups WHERE member_count IS NOT NULL"
        ),
        25
    );

    // Tokens that expire every second, trace logging: refreshed, never printed.
    let pg = playground_with(PlaygroundOptions {
        users: 0,
        flow_runs: 0,
        egnyte: etl::playground::egnyte::EgnyteOptions {
            users: 120,
            groups: 3,
            notes: 20,
            bookmarks: 5,
            qps: None,
            token_ttl: Some(Duration::from_secs(1)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut cfg = pg.egnyte_config();
    cfg["requests_per_second"] = json!(6);
    cfg["max_records_per_page"] = json!(10);
    let file = write_config(dir.path(), &cfg);
    let mut cmd = etl();
    cmd.args(["sync", "egnyte", "-vv", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("t.duckdb"));
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        pg.egnyte().refreshes() >= 2,
        "{} refreshes",
        pg.egnyte().refreshes()
    );
    let all = text(&o);
    for secret in [
        pg.api_key().to_string(),
        etl::playground::egnyte::INITIAL_REFRESH_TOKEN.to_string(),
        etl::playground::egnyte::CLIENT_SECRET.to_string(),
        pg.egnyte().refresh_token(),
        "at_playground_".to_string(),
    ] {
        assert!(!all.contains(&secret), "{secret} printed:\n{all}");
    }

    // The daily quota runs out: what was read is committed, exit code 3.
    pg.egnyte().reset_quota();
    let quota = playground_with(PlaygroundOptions {
        users: 0,
        flow_runs: 0,
        egnyte: etl::playground::egnyte::EgnyteOptions {
            users: 120,
            qps: None,
            daily_quota: Some(6),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut cfg = quota.egnyte_config();
    cfg["requests_per_second"] = json!(50);
    cfg["max_records_per_page"] = json!(10);
    cfg["concurrency"] = json!(1);
    let file = write_config(dir.path(), &cfg);
    let q = dir.path().join("q.duckdb");
    let mut cmd = etl();
    cmd.args(["sync", "egnyte", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(&q);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("quota") && err.contains("resets in"), "{err}");
    assert!(query_i64(&q, "SELECT count(*) FROM users") > 0);
}

/// `etl schema prefect | head -1` and a sync whose reader went away: a
/// closed stdout ends the output quietly, with the command's own exit code.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_is_not_a_crash() {
    use std::io::Read as _;
    let pg = playground(50).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &pg.userflow_config());
    let db = dir.path().join("w.duckdb");
    let runs: [Vec<String>; 3] = [
        vec!["schema".into(), "prefect".into()],
        vec!["schema".into(), "userflow".into(), "--json".into()],
        vec![
            "sync".into(),
            "userflow".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--out".into(),
            db.display().to_string(),
        ],
    ];
    for args in runs {
        let mut cmd = etl();
        cmd.args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().unwrap();
            // Close the read end before the child writes: like `| head -0`.
            drop(child.stdout.take());
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            (child.wait().unwrap(), err)
        })
        .await
        .unwrap();
        let (status, err) = out;
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(query_i64(&db, "SELECT count(*) FROM users"), 50);
}

/// SIGINT and SIGTERM roll back to the last commit, say so in one line and
/// exit 130 and 143; a rerun ends exact. A destination another process
/// holds exits 4 before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn signals_roll_back_and_exit_130_or_143_and_a_busy_destination_exits_4() {
    let pg = playground_with(PlaygroundOptions {
        users: 3_000,
        latency: Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &pg.userflow_config());
    let db = dir.path().join("w.duckdb");
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let mut cmd = etl();
        cmd.args(["sync", "userflow", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&db)
            .args(["--checkpoint-rows", "500"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = tokio::task::spawn_blocking(move || {
            let child = cmd.spawn().unwrap();
            // Long enough to commit a few checkpoints, far from the end (30 pages at 40 ms).
            std::thread::sleep(Duration::from_millis(700));
            let killed = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.contains("rolled back to the last commit; run the same command to resume"),
            "{err}"
        );
        assert!(!err.contains("internal error"), "{err}");
    }
    let ok = run({
        let mut c = etl();
        c.args(["sync", "userflow", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&db);
        c
    })
    .await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert_eq!(read_users(&db), expected_users(&pg));

    // A DuckDB client holding the file: exit 4, the message says what to do.
    let holder = ::duckdb::Connection::open(&db).unwrap();
    let busy = run({
        let mut c = etl();
        c.args(["sync", "userflow", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&db);
        c
    })
    .await;
    drop(holder);
    assert_eq!(busy.status.code(), Some(4), "{}", text(&busy));
    assert!(text(&busy).contains("is busy"), "{}", text(&busy));
}

/// `--log-format json`: every log line is one JSON object with a level and a message.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = run({
        let mut c = etl();
        c.args([
            "--log-format",
            "json",
            "sync",
            "userflow",
            "--playground",
            "--playground-users",
            "50",
            "-v",
            "--out",
        ])
        .arg(dir.path().join("w.duckdb"));
        c
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "{err}");
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{l}"
        );
    }
}

/// `--summary json`: one JSON object on stdout for every outcome, saying
/// what was committed even when the sync failed.
#[tokio::test(flavor = "multi_thread")]
async fn the_json_summary_reports_every_outcome() {
    let pg = playground(500).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &pg.userflow_config());
    let db = dir.path().join("w.duckdb");
    let sync = |extra: &[&str]| {
        let mut c = etl();
        c.args(["sync", "userflow", "--summary", "json", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&db)
            .args(extra);
        run(c)
    };
    let parse = |o: &Output| -> Value {
        let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
        assert_eq!(lines.len(), 1, "{}", text(o));
        serde_json::from_str(lines[0]).unwrap()
    };
    let o = sync(&[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = parse(&o);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["exit_code"], 0);
    assert!(
        v["error_domain"].is_null() && v["retryable"].is_null(),
        "{v}"
    );
    assert_eq!(v["tables"]["users"]["inserted"], 500);
    assert_eq!(v["rows_read"], 500);
    assert_eq!(v["pages"], 5);
    assert!(v["bytes_received"].as_u64().unwrap() > 100_000, "{v}");
    assert!(
        v["last_commit"]["state"]["streams"]["users"]["last_complete_scan_at"].is_string(),
        "{v}"
    );
    assert!(v["elapsed_secs"].as_f64().unwrap() >= v["read_secs"].as_f64().unwrap());

    // The fourth page fails for good after two commits: what they hold is reported.
    pg.fault_at(
        pg.requests() + 4,
        Fault::Status {
            status: 400,
            retry_after: None,
            body: r#"{"error":{"code":"invalid_params","message":"nope"}}"#.into(),
        },
    );
    let o = sync(&["--checkpoint-rows", "100"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = parse(&o);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["exit_code"], 1);
    assert!(v["error"].as_str().unwrap().contains("HTTP 400"), "{v}");
    // The source refused the request: running it again unchanged fails again.
    assert_eq!(
        (v["error_domain"].as_str(), v["retryable"].as_bool()),
        (Some("source"), Some(false)),
        "{v}"
    );
    assert_eq!(v["commits"], 3, "{v}");
    // The rows were as the first sync left them: none rewritten.
    assert_eq!(v["tables"]["users"]["unchanged"], 300, "{v}");
    assert_eq!(v["tables"]["users"]["updated"], 0, "{v}");
    assert!(
        v["last_commit"]["state"]["streams"]["users"]["scan"]["after"].is_string(),
        "{v}"
    );

    // A usage error: still one object, exit 2.
    let o = sync(&[
        "--max-delete-fraction",
        "0.5",
        "--partition-by",
        "users=created_at:day",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v = parse(&o);
    assert_eq!(
        (v["status"].as_str(), v["commits"].as_u64()),
        (Some("usage_error"), Some(0))
    );
    assert_eq!(
        (v["error_domain"].as_str(), v["retryable"].as_bool()),
        (Some("user"), Some(false)),
        "{v}"
    );
}

/// `etl state` shows what a connector committed; `etl reset --table T`
/// forgets T's progress in one commit (rows kept), `--drop` drops it too,
/// and the next sync reads it from the start.
async fn state_shows_progress_and_reset_forgets_it(kind: Kind) {
    let pg = playground(120).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &pg.userflow_config());
    let out = kind.path(dir.path());
    let cmd = |args: &[&str]| {
        let mut c = etl();
        c.args(args).arg("--out").arg(&out);
        run(c)
    };
    let sync = || {
        let mut c = etl();
        c.args(["sync", "userflow", "--summary", "json"])
            .args(kind.format_args())
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(&out);
        run(c)
    };
    assert!(sync().await.status.success());
    let o = cmd(&["state", "userflow", "--json"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["streams"]["users"]["last_complete_scan_at"].is_string(),
        "{v}"
    );
    let o = cmd(&["state", "userflow"]).await;
    assert!(text(&o).contains("users") && text(&o).contains("last_complete_scan_at"));

    let o = cmd(&["reset", "userflow", "--table", "nosuch"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("tables with saved progress: users"),
        "{}",
        text(&o)
    );
    let o = cmd(&["reset", "userflow", "--table", "users"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the next sync reads it from the start"));
    let v: Value =
        serde_json::from_slice(&cmd(&["state", "userflow", "--json"]).await.stdout).unwrap();
    assert!(v["streams"].get("users").is_none(), "{v}");
    assert_eq!(
        query_i64(&out, "SELECT count(*) FROM users"),
        120,
        "rows are kept"
    );

    assert!(sync().await.status.success());
    let o = cmd(&["reset", "userflow", "--drop"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let o = sync().await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tables"]["users"]["inserted"], 120, "{v}");
    assert_eq!(query_i64(&out, "SELECT count(*) FROM users"), 120);

    let o = cmd(&["state", "prefect"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("has never committed"), "{}", text(&o));

    // Another schema: state and reset take --schema; asking created nothing.
    let mut c = etl();
    c.args(["sync", "userflow", "-q", "--schema", "crm", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out);
    assert!(run(c).await.status.success());
    let o = cmd(&["state", "userflow", "--schema", "crm"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("crm"), "{}", text(&o));
    let o = cmd(&["reset", "userflow", "--schema", "crm", "--table", "users"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let o = cmd(&["state", "rest"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--schema NAME"), "{}", text(&o));
    let mut schemas = crate::dests::etl_schemas(&crate::dests::reader(&out));
    if kind == Kind::Parquet {
        schemas = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        schemas.sort();
    }
    assert_eq!(schemas, ["crm", "userflow"]);
}

/// Off a terminal a long sync is never silent: a progress line at the
/// chosen interval, with rows per table; per-page lines only at trace level.
#[tokio::test(flavor = "multi_thread")]
async fn progress_lines_off_a_terminal() {
    let pg = playground_with(PlaygroundOptions {
        users: 1_000,
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &pg.userflow_config());
    let o = run({
        let mut c = etl();
        c.args([
            "sync",
            "userflow",
            "-v",
            "--progress-seconds",
            "0.3",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("w.duckdb"));
        c
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let progress: Vec<&str> = err.lines().filter(|l| l.contains("progress: ")).collect();
    assert!(progress.len() >= 2, "{err}");
    assert!(
        progress
            .iter()
            .any(|l| l.contains("rows (users ") && l.contains("requests")),
        "{err}"
    );
    assert!(
        !err.contains("page fetched"),
        "per-page lines are trace: {err}"
    );
}

/// `etl check`: the configuration is validated (exit 2), then one request per
/// table is made and read like a first page (exit 0, or 1 naming the table);
/// nothing is written, no credential printed.
#[tokio::test(flavor = "multi_thread")]
async fn check_makes_one_request_per_table_and_writes_nothing() {
    let pg = playground(30).await;
    let dir = tempfile::tempdir().unwrap();
    let check = |cfg: &Value| {
        let path = write_config(dir.path(), cfg);
        let mut c = etl();
        c.current_dir(dir.path())
            .args(["check", "userflow", "--config"])
            .arg(path);
        run(c)
    };
    let before = pg.requests();
    let o = check(&pg.userflow_config()).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("ok      users"), "{}", text(&o));
    assert_eq!(pg.requests() - before, 1);

    let mut wrong = pg.userflow_config();
    wrong["userflow_api_key"] = json!("ak_wrong_but_long_enough_0000");
    let o = check(&wrong).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("FAILED  users") && text(&o).contains("HTTP 401"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("ak_wrong_but_long_enough_0000"),
        "{}",
        text(&o)
    );

    let o = check(&json!({"userflow_api_key": SECRET_KEY, "page_size": 0})).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("page_size"), "{}", text(&o));

    // A REST spec: one request per top-level table.
    let spec = format!(
        "{}/data/specs/fivetran_auth_basic.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let fp = etl::playground::Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let cfg = write_config(dir.path(), &fp.rest_config());
    let o = run({
        let mut c = etl();
        c.args(["check", "rest", "--spec", &spec, "--config"])
            .arg(cfg);
        c
    })
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("ok      user "), "{}", text(&o));
    assert!(!text(&o).contains(fp.rest_config()["password"].as_str().unwrap()));
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        vec!["userflow.json"],
        "nothing but the config was written"
    );
}
