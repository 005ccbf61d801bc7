//! Shared helpers: start a playground, build configurations, read a
//! destination (DuckDB file or Parquet dataset) back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etl::config::ConfigReader;
use etl::playground::{Playground, PlaygroundOptions};
use etl::{SyncOptions, SyncSummary};
use serde_json::{json, Value};

/// A key unlikely to appear anywhere by chance, to check it never leaks.
pub const SECRET_KEY: &str = "ak_zq9xsecretkey7w2m4n8p0r";

pub async fn playground(users: usize) -> Playground {
    playground_with(PlaygroundOptions {
        users,
        ..Default::default()
    })
    .await
}

pub async fn playground_with(mut opts: PlaygroundOptions) -> Playground {
    opts.api_key = SECRET_KEY.to_string();
    Playground::start(opts).await.expect("playground starts")
}

/// Userflow configuration for `pg`, with `extra` keys merged in.
pub fn config(pg: &Playground, extra: Value) -> ConfigReader {
    let mut c = pg.userflow_config();
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    ConfigReader::from_map(c.as_object().unwrap().clone())
}

/// Fast test options: commit every `rows` rows; etl's own names
/// (`--naming source`: `_etl_deleted`, `_synced_at`, `_etl_id`), which
/// most tests query. Fivetran naming has tests of its own.
pub fn opts(rows: u64) -> SyncOptions {
    SyncOptions {
        checkpoint_rows: rows,
        checkpoint_interval: Duration::from_secs(3600),
        naming: Some(etl::naming::Naming::Source),
        ..Default::default()
    }
}

pub async fn sync(pg: &Playground, db: &Path, extra: Value, rows: u64) -> etl::Result<SyncSummary> {
    etl::sync("userflow", config(pg, extra), db, opts(rows)).await
}

pub fn tmp() -> (tempfile::TempDir, PathBuf) {
    tmp_for(crate::dests::Kind::DuckDb)
}

/// A temporary directory and the destination path of `kind` inside it.
pub fn tmp_for(kind: crate::dests::Kind) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    (dir, out)
}

/// One row of the users table as text, for whole-table comparisons.
pub type Row = (
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    bool,
);

/// The users table's rows, whichever naming wrote it.
pub fn read_users(db: &Path) -> Vec<Row> {
    let conn = crate::dests::reader(db);
    let fivetran: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' \
             AND column_name = '_fivetran_deleted' AND table_schema = current_schema()",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let deleted = if fivetran > 0 {
        "_fivetran_deleted"
    } else {
        "_etl_deleted"
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT id, email, name, epoch_us(created_at), epoch_us(signed_up_at), {deleted} FROM users ORDER BY id",
        ))
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The playground's users in the same shape (none deleted).
pub fn expected_users(pg: &Playground) -> Vec<Row> {
    let ts = |s: &str| etl::decode::values::parse_utc_micros(s).unwrap();
    pg.userflow()
        .users()
        .into_iter()
        .map(|u| {
            let attr = |k: &str| {
                u.attributes
                    .get(k)
                    .and_then(Value::as_str)
                    .map(String::from)
            };
            (
                u.id.clone(),
                attr("email"),
                attr("name"),
                ts(&u.created_at),
                attr("signed_up_at").map(|s| ts(&s)),
                false,
            )
        })
        .collect()
}

/// Live (not soft-deleted) rows only.
pub fn live(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter().filter(|r| !r.5).collect()
}

pub fn query_i64(db: &Path, sql: &str) -> i64 {
    let conn = crate::dests::reader(db);
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

pub fn saved_state(db: &Path) -> Option<Value> {
    saved_state_of(db, "userflow")
}

/// The state `connector` committed to `db` (a DuckDB file or a lake), in
/// the schema named after it, or else the only schema there (a REST spec's).
pub fn saved_state_of(db: &Path, connector: &str) -> Option<Value> {
    let schemas = if db.is_dir() {
        std::fs::read_dir(db)
            .ok()?
            .flatten()
            .filter(|e| e.path().join("_etl").is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    } else {
        crate::dests::etl_schemas(&duckdb::Connection::open(db).unwrap())
    };
    let schema = match schemas.as_slice() {
        [only] if !schemas.iter().any(|s| s == connector) => only.clone(),
        _ => connector.to_string(),
    };
    saved_state_in(db, &schema, connector)
}

/// The state `connector` committed to schema `schema` of `db` (`main`: a
/// DuckDB file's main schema, or a dataset at `db` itself).
pub fn saved_state_in(db: &Path, schema: &str, connector: &str) -> Option<Value> {
    if db.is_dir() {
        let dir = if schema == "main" && db.join("_etl").is_dir() {
            db.to_path_buf()
        } else {
            db.join(schema)
        };
        let text = std::fs::read_to_string(dir.join("_etl/state.json")).ok()?;
        let v: Value = serde_json::from_str(&text).unwrap();
        return v["connectors"].get(connector).cloned();
    }
    let conn = duckdb::Connection::open(db).unwrap();
    conn.query_row(
        &format!("SELECT CAST(state AS VARCHAR) FROM \"{schema}\"._etl_state WHERE connector = ?"),
        [connector],
        |r| r.get::<_, String>(0),
    )
    .ok()
    .map(|s| serde_json::from_str(&s).unwrap())
}

pub fn fast_retries() -> Value {
    json!({"retry_attempts": 4, "request_timeout_seconds": 1})
}
