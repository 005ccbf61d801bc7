//! DuckDB destination: tables and `_etl_state` in one database file, data and
//! state committed in the same transaction.
//!
//! Upserts are appended (Arrow appender) to a temporary staging table per
//! table and merged into the target at commit time (delete the staged keys,
//! insert the staged rows, one statement each per table), not page by page: staging and merging every small batch is several
//! times slower (see DESIGN.md). Target tables carry no PRIMARY KEY
//! constraint (its ART index must fit in memory and makes conflicts
//! expensive); the merge keeps keys unique instead, deduplicating staged rows
//! so the last version of a key wins. Partial updates, soft deletes and
//! truncates first merge what is staged, so operations apply in order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use duckdb::Connection;

use super::namespace::Namespace;
use super::{Destination, WriteSummary};
use crate::decode::Reject;
use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableSchema, TypeChange};
use crate::state::State;

mod ddl;
mod stage;

use self::stage::Staged;

const STATE_TABLE: &str = "_etl_state";
const REJECTS_TABLE: &str = "_etl_rejects";
/// Which connector created each table of the schema.
const OWNERS_TABLE: &str = "_etl_tables";
/// Settings of the schema (`naming`).
const SETTINGS_TABLE: &str = "_etl_settings";
/// Keys of rows a scan saw unchanged (so not rewritten, their sync time
/// kept): a sweep of the rows the scan did not see spares them.
const SEEN_TABLE: &str = "_etl_seen";

/// Quote an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// DuckDB column type for an Arrow type (staging tables, inferred columns).
pub fn duckdb_type_of(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Binary => "BLOB".into(),
        DataType::Utf8 => "VARCHAR".into(),
        _ => return None,
    })
}

/// Rows buffered in memory before one appender call: appending many small
/// batches one by one costs ~8× more per row than appending large ones.
const APPEND_CHUNK_ROWS: usize = 16_384;

pub struct DuckDbDestination {
    path: PathBuf,
    conn: Connection,
    /// The schema every table, the state and the `_etl_*` tables live in.
    schema: String,
    in_tx: bool,
    /// Columns known to exist per table (valid within the current transaction).
    columns: HashMap<String, HashSet<String>>,
    staged: HashMap<String, Staged>,
    /// Declarations seen, so staged upserts can be merged at commit.
    schemas: HashMap<String, TableSchema>,
    pending: WriteSummary,
    rejects_ready: bool,
}

/// The storage format new DuckDB files are written in by default: the one
/// DuckDB 1.4 and every later client reads. (The bundled DuckDB's own
/// format, `v2.0.0`, opens only in DuckDB 2.0 and later.)
pub const DEFAULT_STORAGE_VERSION: &str = "v1.4.0";

/// The storage formats `--duckdb-storage-version` accepts.
pub const STORAGE_VERSIONS: &[&str] = &[
    "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0", "v2.0.0",
];

/// The DuckDB library this build bundles (`v2.0.0`, say).
pub fn bundled_version() -> String {
    duckdb::Connection::open_in_memory()
        .and_then(|c| c.query_row("SELECT version()", [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|_| "unknown".into())
}

impl DuckDbDestination {
    /// Open (or create) the database file with DuckDB's default memory
    /// limit, writing into its `main` schema.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, None, DEFAULT_STORAGE_VERSION)
    }

    /// [`open_with`](Self::open_with) writing into the schema `ns` resolves
    /// to: `--schema`, else `main` when the file predates namespaces and holds
    /// the connector's state there, else the connector's own. With `create`
    /// false, a schema that does not exist yet is an error.
    pub fn open_in(
        path: &Path,
        memory_limit: Option<&str>,
        storage_version: &str,
        ns: &Namespace,
        create: bool,
    ) -> Result<Self> {
        let mut d = Self::connect(path, memory_limit, storage_version)?;
        let schema = match &ns.explicit {
            Some(s) => s.clone(),
            None if d.holds_state("main", &ns.connector)? => {
                tracing::info!(
                    file = %path.display(),
                    connector = %ns.connector,
                    "this file was written before connectors had schemas of their own: \
                     {} stays in the main schema (--schema NAME moves its next syncs elsewhere)",
                    ns.connector
                );
                "main".into()
            }
            None => ns.default.clone(),
        };
        if !create && !d.schema_exists(&schema)? {
            return Err(Error::refused(
                path.display().to_string(),
                format!(
                    "connector {} has never committed to {} (it has no schema {schema})",
                    ns.connector,
                    path.display()
                ),
            ));
        }
        d.use_schema(&schema)?;
        Ok(d)
    }

    /// Open (or create) the database file; `memory_limit` (e.g. `"1GB"`) caps
    /// DuckDB's buffer pool, which otherwise caches up to 80% of RAM as the
    /// tables grow. Past it DuckDB spills to a temporary directory. A new
    /// file is written in `storage_version`'s format (see
    /// [`DEFAULT_STORAGE_VERSION`]); an existing file keeps its own.
    pub fn open_with(
        path: &Path,
        memory_limit: Option<&str>,
        storage_version: &str,
    ) -> Result<Self> {
        let mut d = Self::connect(path, memory_limit, storage_version)?;
        d.use_schema("main")?;
        Ok(d)
    }

    fn connect(path: &Path, memory_limit: Option<&str>, storage_version: &str) -> Result<Self> {
        if !STORAGE_VERSIONS.contains(&storage_version) {
            return Err(Error::Usage(format!(
                "DuckDB storage version {storage_version:?} is not one of {}",
                STORAGE_VERSIONS.join(", ")
            )));
        }
        if let Some(limit) = memory_limit.filter(|l| !is_memory_size(l)) {
            return Err(Error::Usage(format!(
                "memory limit {limit:?} is not a size such as 512MB or 2GB"
            )));
        }
        super::check_parent_exists(path)?;
        let config = duckdb::Config::default()
            .with("storage_compatibility_version", storage_version)
            .map_err(|e| {
                Error::Usage(format!("DuckDB storage version {storage_version:?}: {e}"))
            })?;
        let conn = Connection::open_with_flags(path, config).map_err(|e| {
            let target = path.display().to_string();
            let message = e.to_string();
            // DuckDB allows one process at a time to open a file for writing.
            if message.contains("Could not set lock") {
                Error::Busy {
                    target,
                    message: format!(
                        "another process has the file open (an etl sync, or a DuckDB client: \
                         close it and run again): {message}"
                    ),
                }
            } else {
                Error::destination(target, message)
            }
        })?;
        let d = DuckDbDestination {
            path: path.to_path_buf(),
            conn,
            schema: "main".into(),
            in_tx: false,
            columns: HashMap::new(),
            staged: HashMap::new(),
            schemas: HashMap::new(),
            pending: WriteSummary::default(),
            rejects_ready: false,
        };
        if let Some(limit) = memory_limit {
            d.exec(&format!("SET memory_limit = '{limit}'"))?;
        }
        Ok(d)
    }

    /// Create `schema` and its state table if missing, and write there from now on.
    fn use_schema(&mut self, schema: &str) -> Result<()> {
        self.schema = schema.to_string();
        self.exec(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)))?;
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {} (connector VARCHAR PRIMARY KEY, state JSON NOT NULL, \
             updated_at TIMESTAMPTZ NOT NULL)",
            self.qualified(STATE_TABLE)
        ))?;
        Ok(())
    }

    fn schema_exists(&self, schema: &str) -> Result<bool> {
        self.timed("schema exists", |c| {
            c.query_row(
                "SELECT count(*) FROM information_schema.schemata WHERE catalog_name = current_database() AND schema_name = ?",
                [schema],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n > 0)
    }

    /// Whether `schema` has a state table with a row for `connector`.
    fn holds_state(&self, schema: &str, connector: &str) -> Result<bool> {
        let has_table = self.timed("state table exists", |c| {
            c.query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() \
                 AND table_schema = ? AND table_name = ?",
                [schema, STATE_TABLE],
                |r| r.get::<_, i64>(0),
            )
        })? > 0;
        if !has_table {
            return Ok(false);
        }
        let sql = format!(
            "SELECT count(*) FROM {}.{} WHERE connector = ?",
            ident(schema),
            ident(STATE_TABLE)
        );
        self.timed(&sql, |c| {
            c.query_row(&sql, [connector], |r| r.get::<_, i64>(0))
        })
        .map(|n| n > 0)
    }

    /// The schema this destination writes into.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `"schema"."name"`.
    fn qualified(&self, name: &str) -> String {
        format!("{}.{}", ident(&self.schema), ident(name))
    }

    /// The underlying connection (tests and benches read through it).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn err(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::destination(self.path.display().to_string(), format!("{what}: {e}"))
    }

    /// Run `f` on `sql`, naming the statement in errors and its time in trace logs.
    fn timed<T>(&self, sql: &str, f: impl FnOnce(&Connection) -> duckdb::Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let r = f(&self.conn).map_err(|e| self.err(first_line(sql), e));
        tracing::trace!(sql = %first_line(sql), ms = started.elapsed().as_secs_f64() * 1e3, "sql");
        r
    }

    fn exec(&self, sql: &str) -> Result<usize> {
        self.timed(sql, |c| c.execute(sql, []))
    }

    fn count(&self, sql: &str) -> Result<u64> {
        self.timed(sql, |c| c.query_row(sql, [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
    }

    fn begin(&mut self) -> Result<()> {
        if !self.in_tx {
            self.exec("BEGIN TRANSACTION")?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn ensure_rejects_table(&mut self) -> Result<()> {
        if !self.rejects_ready {
            self.exec(&format!(
                "CREATE TABLE IF NOT EXISTS {} (table_name VARCHAR NOT NULL, raw VARCHAR, \
                 error VARCHAR NOT NULL, rejected_at TIMESTAMPTZ NOT NULL)",
                self.qualified(REJECTS_TABLE)
            ))?;
            self.rejects_ready = true;
        }
        Ok(())
    }

    fn table_exists(&self, table: &str) -> Result<bool> {
        self.timed("table exists", |c| {
            c.query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() \
                 AND table_schema = ? AND table_name = ?",
                [&self.schema, table],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n > 0)
    }

    /// ` AND <key> NOT IN (keys seen unchanged since $1)` for a sweep of
    /// rows older than `$1`; empty when no row was ever set aside as
    /// unchanged.
    fn unseen_condition(&self, t: &TableSchema) -> Result<String> {
        if t.primary_key.is_empty() || !self.table_exists(SEEN_TABLE)? {
            return Ok(String::new());
        }
        Ok(format!(
            " AND {} NOT IN (SELECT key FROM {} WHERE table_name = '{}' AND epoch_us(seen_at) >= $1)",
            Self::key_text(t, ""),
            self.qualified(SEEN_TABLE),
            t.name.replace('\'', "''")
        ))
    }

    /// Delete `table`'s entries from `_etl_seen` (which exists).
    fn forget_seen(&self, table: &str) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE table_name = ?",
            self.qualified(SEEN_TABLE)
        );
        self.timed(&sql, |c| c.execute(&sql, [table])).map(|_| ())
    }

    fn key_condition(t: &TableSchema) -> String {
        t.primary_key
            .iter()
            .map(|k| format!("t.{0} = s.{0}", ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// `512MB`, `1.5GB`, `2 GiB`: what DuckDB's `memory_limit` accepts.
pub fn is_memory_size(s: &str) -> bool {
    let s = s.trim();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    num.parse::<f64>().is_ok_and(|n| n > 0.0)
        && matches!(
            unit.trim().to_ascii_uppercase().as_str(),
            "KB" | "MB" | "GB" | "TB" | "KIB" | "MIB" | "GIB" | "TIB"
        )
}

fn first_line(sql: &str) -> String {
    let s: String = sql.chars().take(80).collect();
    if sql.len() > 80 {
        format!("{s}…")
    } else {
        s
    }
}

impl Destination for DuckDbDestination {
    fn describe(&self) -> String {
        if self.schema == "main" {
            format!("duckdb:{}", self.path.display())
        } else {
            format!("duckdb:{} schema {}", self.path.display(), self.schema)
        }
    }

    fn recorded_naming(&mut self) -> Result<Option<crate::naming::Naming>> {
        if self.table_exists(SETTINGS_TABLE)? {
            let sql = format!(
                "SELECT value FROM {} WHERE key = 'naming'",
                self.qualified(SETTINGS_TABLE)
            );
            let found: Option<String> = match self.conn.query_row(&sql, [], |r| r.get(0)) {
                Ok(v) => Some(v),
                Err(duckdb::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(self.err("reading the schema's naming", e)),
            };
            if let Some(v) = found {
                return crate::naming::Naming::parse(&v)
                    .map(Some)
                    .map_err(|e| self.err(SETTINGS_TABLE, e));
            }
        }
        // Written before namings were recorded: etl's own names.
        let sql = format!("SELECT count(*) FROM {}", self.qualified(STATE_TABLE));
        Ok((self.count(&sql)? > 0).then_some(crate::naming::Naming::Source))
    }

    fn record_naming(&mut self, naming: crate::naming::Naming) -> Result<()> {
        self.begin()?;
        let settings = self.qualified(SETTINGS_TABLE);
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {settings} (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
        ))?;
        self.timed("recording the naming", |c| {
            c.execute(
                &format!("INSERT OR REPLACE INTO {settings} VALUES ('naming', ?)"),
                [naming.as_str()],
            )
        })?;
        Ok(())
    }

    fn claim(&mut self, owner: &str, connector: &str, tables: &[Arc<TableSchema>]) -> Result<()> {
        self.begin()?;
        let owners_table = self.qualified(OWNERS_TABLE);
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {owners_table} (table_name VARCHAR PRIMARY KEY, connector VARCHAR NOT NULL)"
        ))?;
        let sql = format!("SELECT table_name, connector FROM {owners_table}");
        let owners: HashMap<String, String> = self.timed(&sql, |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut adopt = None;
        for t in tables {
            match owners.get(&t.name) {
                Some(o) if o == owner => continue,
                Some(o) => {
                    return Err(super::namespace::owned_by_other(
                        &self.schema,
                        &t.name,
                        o,
                        owner,
                    ))
                }
                None if self.table_exists(&t.name)? => {
                    // A table made before tables had owners: the connector
                    // whose state is here made it.
                    let ours = *adopt.get_or_insert(self.holds_state(&self.schema, connector)?);
                    if !ours {
                        return Err(super::namespace::unowned(&self.schema, &t.name, owner));
                    }
                }
                None => {}
            }
            self.timed("recording the table's owner", |c| {
                c.execute(
                    &format!("INSERT INTO {owners_table} VALUES (?, ?)"),
                    [&t.name, owner],
                )
            })?;
        }
        Ok(())
    }

    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()> {
        // Tables are created by their first rows, or at the first commit
        // (so columns inferred from the first rows come before the system
        // columns, as in the tester).
        for t in tables {
            self.schemas.insert(t.name.clone(), (**t).clone());
        }
        Ok(())
    }

    fn load_state(&mut self, connector: &str) -> Result<Option<State>> {
        let text: Option<String> = match self.conn.query_row(
            &format!(
                "SELECT CAST(state AS VARCHAR) FROM {} WHERE connector = ?",
                self.qualified(STATE_TABLE)
            ),
            [connector],
            |r| r.get(0),
        ) {
            Ok(s) => Some(s),
            Err(duckdb::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(self.err("reading state", e)),
        };
        text.map(|t| State::from_json(&t, &self.describe()))
            .transpose()
    }

    fn upsert(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Everything between commits happens in one transaction.
        self.begin()?;
        let schema = batch.schema();
        self.ensure_batch_columns(table, &schema)?;
        // A batch with a different shape (evolved schema) merges what is staged first.
        if self
            .staged
            .get(&table.name)
            .is_some_and(|s| s.schema.fields() != schema.fields())
        {
            self.flush_upserts(&table.name)?;
        }
        let st = self
            .staged
            .entry(table.name.clone())
            .or_insert_with(|| Staged {
                stage: format!("_etl_stage_{}", table.name),
                schema,
                rows: 0,
                buffer: Vec::new(),
            });
        st.buffer.push(batch);
        if st.buffered() >= APPEND_CHUNK_ROWS {
            self.append_buffered(&table.name)?;
        }
        Ok(())
    }

    fn update(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Everything between commits happens in one transaction.
        self.begin()?;
        super::check_keyed("update", table, &batch).map_err(|(at, what)| self.err(at, what))?;
        let schema = batch.schema();
        self.ensure_batch_columns(table, &schema)?;
        self.flush_upserts(&table.name)?;
        let stage = format!("_etl_update_{}", table.name);
        self.stage(&stage, &schema, batch, true)?;
        let pk: Vec<String> = table.primary_key.iter().map(|k| ident(k)).collect();
        let set: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| ident(f.name()))
            .filter(|c| !pk.contains(c))
            .map(|c| format!("{c} = s.{c}"))
            .collect();
        if !set.is_empty() {
            let n = self.exec(&format!(
                "MERGE INTO {} t USING (SELECT * FROM {} QUALIFY row_number() OVER (PARTITION BY {} ORDER BY rowid DESC) = 1) s \
                 ON ({}) WHEN MATCHED THEN UPDATE SET {}",
                self.qualified(&table.name),
                ident(&stage),
                pk.join(", "),
                Self::key_condition(table),
                set.join(", ")
            ))?;
            self.pending.table(&table.name).updated += n as u64;
        }
        self.exec(&format!("DROP TABLE {}", ident(&stage)))?;
        Ok(())
    }

    fn delete(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Everything between commits happens in one transaction.
        self.begin()?;
        super::check_keyed("delete", table, &batch).map_err(|(at, what)| self.err(at, what))?;
        self.ensure_table(table)?;
        self.flush_upserts(&table.name)?;
        let stage = format!("_etl_delete_{}", table.name);
        let schema = batch.schema();
        self.stage(&stage, &schema, batch, true)?;
        let pk: Vec<String> = table.primary_key.iter().map(|k| ident(k)).collect();
        let n = self.exec(&format!(
            "MERGE INTO {} t USING (SELECT DISTINCT {} FROM {}) s ON ({}) \
             WHEN MATCHED AND NOT t.{del} THEN UPDATE SET {del} = true",
            self.qualified(&table.name),
            pk.join(", "),
            ident(&stage),
            Self::key_condition(table),
            del = ident(table.deleted_column)
        ))?;
        self.pending.table(&table.name).deleted += n as u64;
        self.exec(&format!("DROP TABLE {}", ident(&stage)))?;
        Ok(())
    }

    fn truncate(&mut self, table: &TableSchema) -> Result<()> {
        // Everything between commits happens in one transaction.
        self.begin()?;
        self.ensure_table(table)?;
        self.flush_upserts(&table.name)?;
        let n = self.exec(&format!(
            "UPDATE {} SET {del} = true WHERE NOT {del}",
            self.qualified(&table.name),
            del = ident(table.deleted_column)
        ))?;
        self.pending.table(&table.name).deleted += n as u64;
        Ok(())
    }

    fn delete_older_than(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<()> {
        // Everything between commits happens in one transaction.
        self.begin()?;
        self.ensure_table(table)?;
        self.flush_upserts(&table.name)?;
        let seen = self.unseen_condition(table)?;
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE {} SET {del} = true WHERE NOT {del} AND epoch_us({}) < $1{seen}",
                    self.qualified(&table.name),
                    ident(column),
                    del = ident(table.deleted_column)
                ),
                [before_micros],
            )
            .map_err(|e| self.err(format!("soft-deleting stale rows of {}", table.name), e))?;
        self.pending.table(&table.name).deleted += n as u64;
        if !seen.is_empty() {
            // Every entry is used up: the next scan begins later.
            self.forget_seen(&table.name)?;
        }
        Ok(())
    }

    fn drop_table(&mut self, table: &str) -> Result<bool> {
        self.begin()?;
        let exists = self.table_exists(table)?;
        if exists {
            self.exec(&format!("DROP TABLE {}", self.qualified(table)))?;
        }
        if self.table_exists(OWNERS_TABLE)? {
            self.timed("forgetting the table's owner", |c| {
                c.execute(
                    &format!(
                        "DELETE FROM {} WHERE table_name = ?",
                        self.qualified(OWNERS_TABLE)
                    ),
                    [table],
                )
            })?;
        }
        if self.table_exists(SEEN_TABLE)? {
            self.forget_seen(table)?;
        }
        self.schemas.remove(table);
        self.columns.remove(table);
        self.staged.remove(table);
        Ok(exists)
    }

    fn counts_uncommitted(&self) -> bool {
        // The count runs inside the open transaction.
        true
    }

    fn live_and_stale(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<(u64, u64)> {
        self.begin()?;
        self.ensure_table(table)?;
        self.flush_upserts(&table.name)?;
        let seen = self.unseen_condition(table)?;
        let (live, stale): (i64, i64) = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*) FILTER (WHERE NOT {del}), \
                     count(*) FILTER (WHERE NOT {del} AND epoch_us({}) < $1{seen}) FROM {}",
                    ident(column),
                    self.qualified(&table.name),
                    del = ident(table.deleted_column)
                ),
                [before_micros],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(format!("counting the live rows of {}", table.name), e))?;
        Ok((live as u64, stale as u64))
    }

    fn reject(&mut self, rejects: &[Reject]) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        self.begin()?;
        self.ensure_rejects_table()?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "INSERT INTO {} VALUES (?, ?, ?, now())",
                self.qualified(REJECTS_TABLE)
            ))
            .map_err(|e| self.err("recording rejects", e))?;
        for r in rejects {
            stmt.execute([&r.table, &r.raw, &r.error])
                .map_err(|e| self.err("recording rejects", e))?;
        }
        self.pending.rejected += rejects.len() as u64;
        Ok(())
    }

    fn commit_with(&mut self, state: Option<(&str, &State)>) -> Result<WriteSummary> {
        self.begin()?;
        // A rollback also undid table creation; every declared table exists after a commit.
        let declared: Vec<TableSchema> = self.schemas.values().cloned().collect();
        for t in &declared {
            self.ensure_table(t)?;
        }
        self.flush_all()?;
        if let Some((connector, state)) = state {
            self.conn
                .execute(
                    &format!(
                        "INSERT OR REPLACE INTO {} VALUES (?, ?, now())",
                        self.qualified(STATE_TABLE)
                    ),
                    duckdb::params![connector, state.to_json()],
                )
                .map_err(|e| self.err("saving state", e))?;
        }
        self.exec("COMMIT")?;
        self.in_tx = false;
        let written = std::mem::take(&mut self.pending);
        // Deleted row versions keep their space (and slow scans) until a
        // checkpoint rewrites their row groups; fold them in after each commit
        // that replaced rows, so a long-lived file does not grow.
        if written.tables.values().any(|c| c.updated + c.deleted > 0) {
            self.exec("CHECKPOINT")?;
        }
        // Column knowledge stays valid after a commit; staging tables were dropped.
        Ok(written)
    }

    fn rollback(&mut self) -> Result<()> {
        self.staged.clear();
        self.columns.clear();
        self.rejects_ready = false;
        self.pending = WriteSummary::default();
        if self.in_tx {
            self.in_tx = false;
            self.exec("ROLLBACK")?;
        }
        Ok(())
    }
}

impl Drop for DuckDbDestination {
    fn drop(&mut self) {
        if self.in_tx {
            let _ = self.exec("ROLLBACK");
        } else {
            // Fold the WAL into the file so a finished sync leaves one file behind.
            let _ = self.exec("CHECKPOINT");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_sizes() {
        for ok in ["512MB", "1GB", "1.5 GiB", "64kb"] {
            assert!(super::is_memory_size(ok), "{ok}");
        }
        for bad in ["", "GB", "1", "-1GB", "1GB'; DROP TABLE x; --", "0MB"] {
            assert!(!super::is_memory_size(bad), "{bad}");
        }
    }
}
