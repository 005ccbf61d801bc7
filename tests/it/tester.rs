//! Conformance with the Connector SDK's own tester: small SDK connectors
//! (standard library only) run under `fivetran debug` (PyPI
//! `fivetran-connector-sdk` 3.0.0, in a cached virtualenv) and etl sync the
//! same data from the built-in playground; both warehouse files are then
//! compared table by table: column names, types and order, and every value
//! (timestamps as UTC microseconds), soft deletes included, after a first
//! and a second, incremental sync. `_fivetran_synced` (the time of the
//! write) is compared for presence and type only.
//!
//! Skipped, saying why, only when Python or the package is not available.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etl::config::ConfigReader;
use etl::playground::{Playground, PlaygroundOptions};
use serde_json::{json, Value};

use crate::fivetran::spec_path;
use crate::pyenv;

const SDK: &str = "fivetran-connector-sdk==3.0.0";

fn tester() -> Option<PathBuf> {
    match pyenv::venv("fivetran-connector-sdk-3.0.0", &[SDK]) {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("skipping the tester conformance suite: no {SDK} environment ({e})");
            None
        }
    }
}

/// Run `connector` (the text of a connector.py) under `fivetran debug` in
/// `project` with `config`; the warehouse it wrote.
fn fivetran_debug(venv: &Path, project: &Path, connector: &str, config: &Value) -> PathBuf {
    std::fs::create_dir_all(project.join("home")).unwrap();
    std::fs::write(project.join("connector.py"), sdk(connector)).unwrap();
    std::fs::write(project.join("configuration.json"), config.to_string()).unwrap();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = pyenv::run(
        Command::new(venv.join("bin").join("fivetran"))
            .arg("debug")
            .current_dir(project)
            .env("HOME", project.join("home"))
            .env("DO_NOT_TRACK", "1")
            .env("PATH", path),
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("fivetran debug failed: {e}"));
    assert!(out.contains("SYNC SUCCEEDED"), "{out}");
    project.join("files").join("warehouse.db")
}

/// Table `schema.table` of `db`: its columns (`name TYPE`, in order) and
/// its rows as text, sorted; timestamps as UTC microseconds;
/// `_fivetran_synced` only as its column.
fn dump(db: &Path, schema: &str, table: &str) -> (Vec<String>, Vec<String>) {
    let conn = ::duckdb::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )
        .unwrap();
    let cols: Vec<(String, String)> = stmt
        .query_map([schema, table], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !cols.is_empty(),
        "no table {schema}.{table} in {}",
        db.display()
    );
    let exprs: Vec<String> = cols
        .iter()
        .filter(|(n, _)| n != "_fivetran_synced")
        .map(|(n, t)| {
            let c = format!("\"{n}\"");
            if t.starts_with("TIMESTAMP") {
                format!("CAST(epoch_us({c}) AS VARCHAR)")
            } else if t == "JSON" {
                // The same JSON, whatever its spacing.
                format!("CAST(json({c}) AS VARCHAR)")
            } else {
                format!("CAST({c} AS VARCHAR)")
            }
        })
        .collect();
    let sql = format!(
        "SELECT concat_ws('|', {}) FROM \"{schema}\".\"{table}\"",
        exprs
            .iter()
            .map(|e| format!("coalesce({e}, '∅')"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows: Vec<String> = conn
        .prepare(&sql)
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    (
        cols.into_iter().map(|(n, t)| format!("{n} {t}")).collect(),
        rows,
    )
}

/// The declared `user` table of the api playground's examples (the SDK
/// connectors' `schema()`, put where `USER_SCHEMA` stands).
const USER_SCHEMA: &str = r#"def schema(configuration):
    return [{"table": "user", "primary_key": ["id"], "columns": {
        "id": "STRING", "name": "STRING", "email": "STRING", "address": "STRING",
        "company": "STRING", "job": "STRING", "createdAt": "UTC_DATETIME", "updatedAt": "UTC_DATETIME"}}]
"#;

/// A connector's text with its `USER_SCHEMA` filled in.
fn sdk(connector: &str) -> String {
    connector.replace("USER_SCHEMA\n", USER_SCHEMA)
}

/// etl's sync of `connector` with `config` and default (Fivetran) naming.
async fn etl_sync_config(connector: &str, config: &Value, out: &Path) {
    let o = etl::SyncOptions {
        checkpoint_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let c = ConfigReader::from_map(config.as_object().unwrap().clone());
    etl::sync(connector, c, out, o)
        .await
        .unwrap_or_else(|e| panic!("etl sync {connector} {config}: {e}"));
}

async fn etl_sync(pg: &Playground, spec: &str, out: &Path) {
    let mut c = pg.rest_config();
    c["spec"] = json!(spec_path(spec));
    etl_sync_config("rest", &c, out).await;
}

fn assert_same(tester: &Path, etl: &Path, schema: &str, table: &str, pattern: &str) {
    let (tcols, trows) = dump(tester, "tester", table);
    let (ecols, erows) = dump(etl, schema, table);
    assert_eq!(
        ecols, tcols,
        "{pattern}: columns of {table} (etl, then the tester)"
    );
    assert_eq!(erows.len(), trows.len(), "{pattern}: rows of {table}");
    for (e, t) in erows.iter().zip(&trows) {
        assert_eq!(e, t, "{pattern}: a row of {table} (etl, then the tester)");
    }
}

/// The SDK's offset pagination example with its incremental cursor, read
/// with the standard library.
const OFFSET: &str = r#"
import json, urllib.parse, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

USER_SCHEMA

def update(configuration, state):
    cursor = state.get("last_updated_at", "0001-01-01T00:00:00Z")
    offset = 0
    while True:
        q = urllib.parse.urlencode({"order_by": "updatedAt", "order_type": "asc",
                                    "updated_since": cursor, "limit": 50, "offset": offset})
        with urllib.request.urlopen(configuration["base_url"] + "/pagination/offset?" + q) as r:
            page = json.load(r)
        for user in page["data"]:
            op.upsert("user", user)
            state["last_updated_at"] = user["updatedAt"]
        op.checkpoint(state)
        offset += len(page["data"])
        if not page["data"] or offset >= page["total"]:
            break

connector = Connector(update=update, schema=schema)
"#;

/// A table without a key (the SDK's hashes example) and one with only its
/// key declared (unspecified_types).
const SDK_ROUTES: &str = r#"
import json, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

def schema(configuration):
    return [{"table": "user", "columns": {"email": "STRING", "first_name": "STRING",
             "last_name": "STRING", "updated_at": "UTC_DATETIME"}},
            {"table": "unspecified", "primary_key": ["id"], "columns": {"id": "LONG"}}]

def get(configuration, path):
    with urllib.request.urlopen(configuration["base_url"] + path) as r:
        return json.load(r)["data"]

def update(configuration, state):
    for row in get(configuration, "/sdk/hashes"):
        op.upsert("user", row)
    for row in get(configuration, "/sdk/unspecified"):
        op.upsert("unspecified", row)
    op.checkpoint(state)

connector = Connector(update=update, schema=schema)
"#;

/// The declared `user` table of the pagination examples, and a loop over
/// pages: `first(configuration, cursor)` gives the first URL, `next(page,
/// url)` the next one or None (PAGER below fills them in).
const PAGINATED: &str = r#"
import base64, json, urllib.parse, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

USER_SCHEMA

PAGER

def update(configuration, state):
    cursor = state.get("last_updated_at", "0001-01-01T00:00:00Z")
    url = first(configuration, cursor)
    while url:
        with urllib.request.urlopen(url) as r:
            page = json.load(r)
        for user in page["data"]:
            op.upsert("user", user)
            state["last_updated_at"] = user["updatedAt"]
        op.checkpoint(state)
        url = next_url(configuration, page, url) if page["data"] else None

connector = Connector(update=update, schema=schema)
"#;

const PAGE_NUMBER: &str = r#"
def first(configuration, cursor):
    return configuration["base_url"] + "/pagination/page_number?" + urllib.parse.urlencode(
        {"order_by": "updatedAt", "order_type": "asc", "updated_since": cursor, "per_page": 50, "page": 1})

def next_url(configuration, page, url):
    if page["page"] >= page["total_pages"]:
        return None
    return url.replace("page=%d" % page["page"], "page=%d" % (page["page"] + 1))
"#;

const NEXT_PAGE_URL: &str = r#"
def first(configuration, cursor):
    return configuration["base_url"] + "/pagination/next_page_url?" + urllib.parse.urlencode(
        {"order_by": "updatedAt", "order_type": "asc", "updated_since": cursor, "per_page": 50})

def next_url(configuration, page, url):
    return page.get("next_page_url")
"#;

const KEYSET: &str = r#"
def first(configuration, cursor):
    return configuration["base_url"] + "/pagination/keyset?" + urllib.parse.urlencode({"updated_since": cursor})

def next_url(configuration, page, url):
    token = page.get("scroll_param")
    if not token:
        return None
    return configuration["base_url"] + "/pagination/keyset?" + urllib.parse.urlencode({"scroll_param": token})
"#;

/// The SDK's three_operations example (upsert, then update, then delete).
const THREE_OPERATIONS: &str = r#"
import json, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

def schema(configuration):
    return [{"table": "three", "primary_key": ["id"],
             "columns": {"id": "STRING", "val1": "STRING", "val2": "LONG"}}]

def get(configuration, path):
    with urllib.request.urlopen(configuration["base_url"] + path) as r:
        return json.load(r)["data"]

def update(configuration, state):
    for row in get(configuration, "/sdk/three"):
        op.upsert("three", row)
    for row in get(configuration, "/sdk/three/updates"):
        op.update("three", row)
    for row in get(configuration, "/sdk/three/deletes"):
        op.delete("three", row)
    op.checkpoint(state)

connector = Connector(update=update, schema=schema)
"#;

/// The SDK's specified_types example: every declared type (BINARY arrives
/// as base64 text and is decoded, as a connector would).
const SPECIFIED_TYPES: &str = r#"
import base64, json, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

def schema(configuration):
    return [{"table": "specified", "primary_key": ["_bool"], "columns": {
        "_bool": "BOOLEAN", "_short": "SHORT", "_long": "LONG",
        "_dec": {"type": "DECIMAL", "precision": 15, "scale": 2},
        "_float": "FLOAT", "_double": "DOUBLE", "_ndate": "NAIVE_DATE",
        "_ndatetime": "NAIVE_DATETIME", "_utc": "UTC_DATETIME", "_binary": "BINARY",
        "_xml": "XML", "_str": "STRING", "_json": "JSON", "_null": "STRING"}}]

def update(configuration, state):
    with urllib.request.urlopen(configuration["base_url"] + "/sdk/specified") as r:
        rows = json.load(r)["data"]
    for row in rows:
        row["_binary"] = base64.b64decode(row["_binary"])
        op.upsert("specified", row)
    op.checkpoint(state)

connector = Connector(update=update, schema=schema)
"#;

/// Run a paginated pattern twice (ten users changed in between) under the
/// tester and etl, comparing after each sync.
async fn paginated(pattern: &str, pager: &str, spec: &str) {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let out = dir.path().join("etl.duckdb");
    let config = json!({"base_url": pg.url()});
    let connector = PAGINATED.replace("PAGER", pager);
    let wh = fivetran_debug(&venv, &project, &connector, &config);
    etl_sync(&pg, spec, &out).await;
    assert_same(&wh, &out, spec, "user", &format!("{pattern}, first sync"));
    {
        let now = chrono::Utc::now().timestamp();
        let mut users = pg.fivetran().users.lock().unwrap();
        for u in users.iter_mut().take(10) {
            u["job"] = json!("Changed");
            u["updatedAt"] = json!(etl::playground::fivetran::ts(now));
        }
    }
    let wh = fivetran_debug(&venv, &project, &connector, &config);
    etl_sync(&pg, spec, &out).await;
    assert_same(&wh, &out, spec, "user", &format!("{pattern}, second sync"));
}

#[tokio::test(flavor = "multi_thread")]
async fn page_number_pagination_lands_as_the_tester_lands_it() {
    paginated("page_number", PAGE_NUMBER, "fivetran_page_number").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn next_page_url_pagination_lands_as_the_tester_lands_it() {
    paginated("next_page_url", NEXT_PAGE_URL, "fivetran_next_page_url").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyset_pagination_lands_as_the_tester_lands_it() {
    paginated("keyset", KEYSET, "fivetran_keyset").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_deletes_and_specified_types_land_as_the_tester_lands_them() {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"base_url": pg.url()});
    let out = dir.path().join("etl.duckdb");
    let wh = fivetran_debug(&venv, &dir.path().join("three"), THREE_OPERATIONS, &config);
    etl_sync(&pg, "sdk_three_operations", &out).await;
    assert_same(
        &wh,
        &out,
        "sdk_three_operations",
        "three",
        "upsert, update, delete",
    );
    let wh = fivetran_debug(
        &venv,
        &dir.path().join("specified"),
        SPECIFIED_TYPES,
        &config,
    );
    etl_sync(&pg, "sdk_specified_types", &out).await;
    assert_same(
        &wh,
        &out,
        "sdk_specified_types",
        "specified",
        "specified types",
    );
}

/// The SDK's CSV export example: the export read with the csv module, each
/// row upserted into the declared `user` table.
const CSV_EXPORT: &str = r#"
import csv, io, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

def schema(configuration):
    return [{"table": "user", "primary_key": ["id"], "columns": {
        "id": "STRING", "name": "STRING", "email": "STRING", "address": "STRING",
        "company": "STRING", "job": "STRING", "updatedAt": "UTC_DATETIME", "createdAt": "UTC_DATETIME"}}]

def update(configuration, state):
    with urllib.request.urlopen(configuration["url"]) as r:
        text = r.read().decode("utf-8-sig")
    for row in csv.DictReader(io.StringIO(text)):
        op.upsert("user", row)
    op.checkpoint(state)

connector = Connector(update=update, schema=schema)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_export_lands_as_the_tester_lands_it() {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"url": format!("{}/export/csv", pg.url())});
    let wh = fivetran_debug(&venv, &dir.path().join("project"), CSV_EXPORT, &config);
    let out = dir.path().join("etl.duckdb");
    etl_sync_config("csv_export", &config, &out).await;
    assert_same(&wh, &out, "csv_export", "user", "CSV export");
}

/// A full read that truncates first (`op.truncate`): rows the source no
/// longer has stay, flagged `_fivetran_deleted`.
const TRUNCATE: &str = r#"
import json, urllib.parse, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

USER_SCHEMA

def update(configuration, state):
    op.truncate("user")
    offset = 0
    while True:
        q = urllib.parse.urlencode({"order_by": "updatedAt", "order_type": "asc", "limit": 50, "offset": offset})
        with urllib.request.urlopen(configuration["base_url"] + "/pagination/offset?" + q) as r:
            page = json.load(r)
        for user in page["data"]:
            op.upsert("user", user)
        offset += len(page["data"])
        if not page["data"] or offset >= page["total"]:
            break
    op.checkpoint(state)

connector = Connector(update=update, schema=schema)
"#;

const TRUNCATE_SPEC: &str = r#"
name = "fivetran_truncate"
base_url = "http://127.0.0.1:5001"

[[tables]]
name = "user"
path = "/pagination/offset"
params = { order_by = "updatedAt", order_type = "asc" }
records = "data"
primary_key = "id"
columns = { id = "STRING", name = "STRING", email = "STRING", address = "STRING", company = "STRING", job = "STRING", createdAt = "UTC_DATETIME", updatedAt = "UTC_DATETIME" }
paginator = { type = "offset", offset_param = "offset", limit_param = "limit", limit = 50, total_field = "total" }
truncate = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_truncating_full_read_lands_as_the_tester_lands_it() {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let config = json!({"base_url": pg.url()});
    let spec = dir.path().join("fivetran_truncate.toml");
    std::fs::write(&spec, TRUNCATE_SPEC).unwrap();
    let out = dir.path().join("etl.duckdb");
    let mut c = pg.rest_config();
    c["spec"] = json!(spec.display().to_string());
    fivetran_debug(&venv, &project, TRUNCATE, &config);
    etl_sync_config("rest", &c, &out).await;
    // Three users leave the source.
    pg.fivetran().users.lock().unwrap().drain(0..3);
    let wh = fivetran_debug(&venv, &project, TRUNCATE, &config);
    etl_sync_config("rest", &c, &out).await;
    assert_same(
        &wh,
        &out,
        "fivetran_truncate",
        "user",
        "truncate, second sync",
    );
    let conn = ::duckdb::Connection::open(&out).unwrap();
    let deleted: i64 = conn
        .query_row(
            "SELECT count(*) FROM fivetran_truncate.\"user\" WHERE _fivetran_deleted",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(deleted, 3);
}

/// The SDK's step_size_sync example: windows of 1,000 ids from the saved
/// `current_id` until an empty one.
const STEP: &str = r#"
import json, urllib.parse, urllib.request
from fivetran_connector_sdk import Connector, Operations as op

USER_SCHEMA

def update(configuration, state):
    current_id = state.get("current_id", 1)
    while current_id <= 100000:
        q = urllib.parse.urlencode({"start_id": current_id, "end_id": current_id + 999})
        with urllib.request.urlopen(configuration["base_url"] + "/incremental/step?" + q) as r:
            data = json.load(r).get("data", [])
        if not data:
            break
        for user in data:
            op.upsert("user", user)
        current_id += 1000
        state["current_id"] = current_id
        op.checkpoint(state)

connector = Connector(update=update, schema=schema)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn step_size_windows_land_as_the_tester_lands_them() {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let out = dir.path().join("etl.duckdb");
    let config = json!({"base_url": pg.url()});
    for sync in [
        "first sync",
        "second sync (goes on from the saved position)",
    ] {
        let wh = fivetran_debug(&venv, &project, STEP, &config);
        etl_sync(&pg, "fivetran_step", &out).await;
        assert_same(&wh, &out, "fivetran_step", "user", &format!("step, {sync}"));
    }
}

/// Every paginator against the real fivetran-api-playground (PyPI), twice
/// each: the second sync reads from the saved cursor or position.
#[tokio::test(flavor = "multi_thread")]
async fn every_paginator_against_the_real_api_playground_lands_as_the_tester_lands_it() {
    let Some(venv) = tester() else { return };
    let Some(fp) = crate::fivetran::FivetranPlayground::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"base_url": fp.url});
    let patterns = [
        ("offset", OFFSET.to_string(), "fivetran_offset"),
        (
            "page_number",
            PAGINATED.replace("PAGER", PAGE_NUMBER),
            "fivetran_page_number",
        ),
        (
            "next_page_url",
            PAGINATED.replace("PAGER", NEXT_PAGE_URL),
            "fivetran_next_page_url",
        ),
        (
            "keyset",
            PAGINATED.replace("PAGER", KEYSET),
            "fivetran_keyset",
        ),
        ("step", STEP.to_string(), "fivetran_step"),
    ];
    for (pattern, connector, spec) in patterns {
        let project = dir.path().join(pattern);
        let out = dir.path().join(format!("{pattern}.duckdb"));
        for sync in ["first sync", "second sync"] {
            let wh = fivetran_debug(&venv, &project, &connector, &config);
            let c = json!({"base_url": fp.url, "spec": spec_path(spec)});
            etl_sync_config("rest", &c, &out).await;
            assert_same(
                &wh,
                &out,
                spec,
                "user",
                &format!("{pattern} (real playground), {sync}"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_pagination_lands_as_the_tester_lands_it() {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let out = dir.path().join("etl.duckdb");
    let config = json!({"base_url": pg.url()});
    let wh = fivetran_debug(&venv, &project, OFFSET, &config);
    etl_sync(&pg, "fivetran_offset", &out).await;
    assert_same(&wh, &out, "fivetran_offset", "user", "offset, first sync");
    // Ten users change; the second sync of each reads from its cursor.
    {
        let now = chrono::Utc::now().timestamp();
        let mut users = pg.fivetran().users.lock().unwrap();
        for u in users.iter_mut().take(10) {
            u["job"] = json!("Changed");
            u["updatedAt"] = json!(etl::playground::fivetran::ts(now));
        }
    }
    let wh = fivetran_debug(&venv, &project, OFFSET, &config);
    etl_sync(&pg, "fivetran_offset", &out).await;
    assert_same(&wh, &out, "fivetran_offset", "user", "offset, second sync");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_key_and_inferred_types_land_as_the_tester_lands_them() {
    let Some(venv) = tester() else { return };
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"base_url": pg.url()});
    let wh = fivetran_debug(&venv, &dir.path().join("project"), SDK_ROUTES, &config);
    let out = dir.path().join("etl.duckdb");
    etl_sync(&pg, "sdk_hashes", &out).await;
    etl_sync(&pg, "sdk_unspecified_types", &out).await;
    assert_same(&wh, &out, "sdk_hashes", "user", "hashes (no key)");
    assert_same(
        &wh,
        &out,
        "sdk_unspecified_types",
        "unspecified",
        "unspecified types",
    );
}
