//! Parquet destination: a plain hive-partitioned dataset, merged by primary
//! key with copy-on-write files, published atomically.
//!
//! Layout: `DIR/<table>/<key>=<value>/part-<commit>-<n>.parquet` (or directly
//! under `DIR/<table>/` for tables without partitioning), rejects in
//! `DIR/_etl_rejects/`, and `DIR/_etl/state.json`: the format version, the
//! committed state of each connector, and the manifest (columns,
//! partitioning, live files) of each table.
//!
//! Operations are kept in memory until [`Destination::commit`]. A commit finds
//! the files holding old versions of the keys it changes (a key index kept
//! on disk, `runs.rs`, built on first use by reading the live files, with a
//! fingerprint of each row), leaves out upserts of rows as they are stored (`seen.rs`),
//! rewrites only the files holding old versions of the rest (plus the rows of
//! new keys, added as new files in their partitions), and leaves every other
//! file alone. Deletes are soft (`_fivetran_deleted`,
//! or `_etl_deleted` under source naming).
//!
//! Publishing, so that a crash at any instant ends in the old or the new
//! commit and never in between:
//! 1. new files are written and fsynced as hidden `.part-….parquet.tmp`;
//! 2. `_etl/commit.pending.json` records the new manifest, the renames and the
//!    files to remove (the commit point);
//! 3. the temporary files are renamed into place and replaced files removed;
//! 4. `_etl/state.json` is replaced (write, fsync, rename) and the pending
//!    record removed.
//!
//! Opening a dataset finishes a pending commit (roll forward: every file it
//! names was fsynced before it was written) and deletes leftovers of a commit
//! that never reached its commit point (temporary files, unlisted parts).
//! Between steps 3 and 4 a reader listing the directory may briefly see both
//! the old and the new copy of a rewritten file; after a crash there, the next
//! run finishes the commit before doing anything else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, Int64Array, StringArray};
use arrow::compute::{self, kernels::cmp};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};

pub mod delta;
mod files;
mod keyindex;
mod manifest;
mod merge;
mod options;
mod publish;
mod runs;
mod seen;
mod table;
mod writer;

pub use self::files::unescape_partition;
use self::files::{escape_partition, sync_dir, write_atomic};
use self::manifest::*;
use self::merge::*;
pub use self::options::{parse_compression, parse_partition_override, ParquetOptions};
pub use self::publish::CommitStep;
use self::publish::*;
use self::runs::*;
use self::seen::*;
use self::table::*;
use self::writer::*;
use super::namespace::Namespace;
use super::{Destination, TableCounts, WriteSummary};
use crate::decode::Reject;
use crate::error::{Error, Result};
use crate::schema::{
    Column, ColumnType, PartitionTransform, Partitioning, TableSchema, TypeChange, DELETED_COLUMN,
    UTC,
};
use crate::state::State;

/// Version of `_etl/state.json` this build writes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "etl-parquet";
/// Directory of the dataset's own files (state, pending commit, lock).
pub const META_DIR: &str = "_etl";
const STATE_FILE: &str = "state.json";
const PENDING_FILE: &str = "commit.pending.json";
const LOCK_FILE: &str = "lock";
const REJECTS_TABLE: &str = "_etl_rejects";
/// Directory value of a null partition value (Hive's convention, read as NULL).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
/// Rows per batch when reading files back.
const READ_BATCH_ROWS: usize = 8192;
/// A partition with this many small files gets them merged when it is written.
const COMPACT_FILES: usize = 16;

// ---------------------------------------------------------------------------
// The destination

pub struct ParquetDestination {
    root: PathBuf,
    /// The connector that claimed the tables; new tables are its.
    owner: Option<String>,
    /// The naming to record with the next commit.
    naming: Option<crate::naming::Naming>,
    opts: ParquetOptions,
    manifest: Manifest,
    tables: BTreeMap<String, Table>,
    pending: WriteSummary,
    /// Held for the destination's lifetime: one writer per dataset (none
    /// for a Delta lake, whose commits are safe among writers).
    _lock: Option<File>,
    /// A commit failed after its commit point; only reopening recovers.
    poisoned: bool,
    /// Tables to drop at the next commit.
    dropping: Vec<String>,
    fail_at: Option<CommitStep>,
    /// `--format delta`: tables are Delta tables, commits Delta commits.
    delta: Option<delta::Lake>,
    /// The last count of a table's stale rows (for the sweep that follows).
    counted: Option<Arc<Counted>>,
}

impl ParquetDestination {
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, ParquetOptions::default())
    }

    /// Open (or, with `create`, create) the dataset of the namespace `ns`
    /// in the lake `out`: `<out>/<schema>/`, or `<out>` itself when it is a
    /// dataset written before namespaces that holds the connector's state.
    pub fn open_in(out: &Path, opts: ParquetOptions, ns: &Namespace, create: bool) -> Result<Self> {
        let origin = out.display().to_string();
        if out.is_file() {
            return Err(Error::refused(
                &origin,
                format!("{origin} is a file; a Parquet dataset is a directory"),
            ));
        }
        if out.join(META_DIR).is_dir() {
            let connectors = Self::connectors_in(out)?;
            if ns.explicit.is_none() && connectors.contains(&ns.connector) {
                tracing::info!(
                    dataset = %origin,
                    connector = %ns.connector,
                    "this dataset was written before connectors had schemas of their own: \
                     {} stays at its top level",
                    ns.connector
                );
                return Self::open_with(out, opts);
            }
            return Err(Error::Usage(format!(
                "{origin} is an etl dataset written before connectors had schemas of their own \
                 (it holds {}); write {} to another --out, or move the dataset's contents into \
                 {origin}/<schema>/ to make {origin} a lake of several schemas",
                if connectors.is_empty() {
                    "no connector's state".to_string()
                } else {
                    connectors.join(", ")
                },
                ns.connector
            )));
        }
        let schema = ns.schema();
        let dir = out.join(schema);
        if !create && !dir.join(META_DIR).is_dir() {
            return Err(Error::refused(
                &origin,
                format!(
                    "connector {} has never committed to {origin} (it has no {schema}/ dataset)",
                    ns.connector
                ),
            ));
        }
        if out.exists() {
            let entries = fs::read_dir(out).map_err(|e| {
                Error::destination(origin.clone(), format!("listing the directory: {e}"))
            })?;
            let foreign = entries.flatten().find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !(name.starts_with('.') || e.path().join(META_DIR).is_dir() || e.path() == dir)
            });
            if let Some(e) = foreign {
                return Err(Error::refused(
                    &origin,
                    format!(
                        "{origin} is not empty and is not an etl lake ({} is not a schema's dataset); \
                         give a new or empty directory",
                        e.file_name().to_string_lossy()
                    ),
                ));
            }
        } else {
            super::check_parent_exists(out)?;
            fs::create_dir(out).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(Error::destination(
                    origin.clone(),
                    format!("creating the directory: {e}"),
                )),
            })?;
        }
        Self::open_with(&dir, opts)
    }

    /// The connectors whose state the dataset at `root` holds (without
    /// locking it: only to tell the user).
    fn connectors_in(root: &Path) -> Result<Vec<String>> {
        let path = root.join(META_DIR).join(STATE_FILE);
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(Vec::new());
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::destination(path.display().to_string(), format!("not valid: {e}"))
        })?;
        Ok(m.connectors.into_keys().collect())
    }

    /// Open (or create) the dataset at `root`, finishing or cleaning up after
    /// an interrupted commit.
    pub fn open_with(root: &Path, opts: ParquetOptions) -> Result<Self> {
        let origin = root.display().to_string();
        let derr = |what: &str, e: &dyn std::fmt::Display| {
            Error::destination(origin.clone(), format!("{what}: {e}"))
        };
        if root.is_file() {
            return Err(Error::refused(
                &origin,
                format!("{origin} is a file; a Parquet dataset is a directory"),
            ));
        }
        super::check_parent_exists(root)?;
        let meta = root.join(META_DIR);
        if root.join(delta::STATE_TABLE).join("_delta_log").is_dir() {
            return Err(Error::refused(
                &origin,
                format!("{origin} is a Delta lake's schema; sync it with --format delta (or without --format)"),
            ));
        }
        if root.exists() && !meta.is_dir() {
            let mut entries = fs::read_dir(root).map_err(|e| derr("listing the directory", &e))?;
            if entries.next().is_some() {
                return Err(Error::refused(
                    &origin,
                    format!(
                        "{origin} is not empty and is not an etl Parquet dataset (it has no {META_DIR}/ directory); \
                         give a new or empty directory"
                    ),
                ));
            }
        }
        fs::create_dir_all(&meta).map_err(|e| derr("creating the directory", &e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(meta.join(LOCK_FILE))
            .map_err(|e| derr("opening the lock file", &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy {
                    target: origin,
                    message: "another etl process is writing to this dataset".into(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(derr("locking the dataset", &e)),
        }
        let mut d = ParquetDestination {
            root: root.to_path_buf(),
            owner: None,
            naming: None,
            opts,
            manifest: Manifest::default(),
            tables: BTreeMap::new(),
            pending: WriteSummary::default(),
            _lock: Some(lock),
            poisoned: false,
            dropping: Vec::new(),
            fail_at: None,
            delta: None,
            counted: None,
        };
        d.recover()?;
        Ok(d)
    }

    /// Stop the next commit at `step`, as a crash there would (tests).
    #[doc(hidden)]
    pub fn fail_commit_at(&mut self, step: CommitStep) {
        self.fail_at = Some(step);
    }

    /// The dataset directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Live files of `table`, relative to the table directory (tests, benches).
    pub fn files(&self, table: &str) -> Vec<String> {
        self.tables
            .get(table)
            .map(|t| t.files.values().map(|f| f.path.clone()).collect())
            .unwrap_or_default()
    }

    fn origin(&self) -> String {
        self.root.display().to_string()
    }

    fn err(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::destination(self.origin(), format!("{what}: {e}"))
    }

    fn io<T>(&self, what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T> {
        r.map_err(|e| self.err(what(), e))
    }

    /// The table `t` declares, created or evolved (columns added, never changed).
    fn ensure_table(&mut self, t: &TableSchema) -> Result<&mut Table> {
        let partition = self.partition_for(t)?;
        let origin = self.origin();
        let owner = self.owner.clone().filter(|_| !t.name.starts_with("_etl"));
        let plain_json = self.delta.is_some();
        let table = self.tables.entry(t.name.clone()).or_insert_with(|| {
            let mut table = Table::new(&t.name);
            table.json_ext = !plain_json;
            table
        });
        // A table nothing was written to yet is laid out again from the
        // declaration (columns inferred from the first rows go before the
        // system columns, as in the tester).
        if table.files.is_empty() && table.ops.is_empty() {
            table.columns.clear();
        }
        if table.columns.is_empty() {
            table.owner = table.owner.clone().or(owner);
            table.deleted = t.deleted_column;
            table.primary_key = t.primary_key.clone();
            table.partition = partition;
        } else if table.partition != partition && !table.files.is_empty() {
            let show =
                |p: &Option<Partitioning>| p.as_ref().map_or("none".into(), |p| p.to_string());
            return Err(Error::refused(
                &origin,
                format!(
                    "table {} in {origin} is partitioned by {} but this sync asks for {}; \
                     pass --partition-by {}={} or sync into a new directory",
                    t.name,
                    show(&table.partition),
                    show(&partition),
                    t.name,
                    show(&table.partition)
                ),
            ));
        } else if table.primary_key != t.primary_key && !table.files.is_empty() {
            return Err(Error::destination(
                origin,
                format!(
                    "table {} has primary key ({}) here but is now declared with ({})",
                    t.name,
                    table.primary_key.join(", "),
                    t.primary_key.join(", ")
                ),
            ));
        }
        table.synced = t.synced_columns().map(String::from).collect();
        evolve_columns(table, t, &origin)?;
        Ok(table)
    }

    /// How `t` is partitioned: as `--partition-by` overrides, or as declared.
    fn partition_for(&self, t: &TableSchema) -> Result<Option<Partitioning>> {
        let overridden = self.opts.partition_overrides.get(&t.name);
        let partition = match overridden {
            Some(p) => p.clone(),
            None => t.partition_by.clone(),
        };
        if let Some(p) = &partition {
            p.check(t).map_err(|e| match overridden {
                // Checked against the connector's tables before opening; a
                // spec's table may only be known now.
                Some(_) => {
                    Error::refused(self.origin(), format!("partitioning {}={p}: {e}", t.name))
                }
                None => self.err(format!("table {}", t.name), e),
            })?;
        }
        Ok(partition)
    }

    /// Register the columns a batch carries that the table lacks (inferred).
    fn ensure_batch_columns(&mut self, t: &TableSchema, schema: &Schema) -> Result<&mut Table> {
        let origin = self.origin();
        let table = self.ensure_table(t)?;
        for f in schema.fields() {
            if !table.has_column(f.name()) {
                let declared =
                    crate::schema::declared_type_of(f).filter(|t| t.arrow_type() == *f.data_type());
                let ty = declared
                    .or_else(|| column_type_of(f.data_type()))
                    .ok_or_else(|| {
                        Error::destination(
                            origin.clone(),
                            format!(
                                "table {}, column {}: unsupported Arrow type {}",
                                t.name,
                                f.name(),
                                f.data_type()
                            ),
                        )
                    })?;
                tracing::info!(table = %t.name, column = %f.name(), r#type = %ty, "added column");
                table.columns.push((f.name().clone(), ty));
            }
        }
        Ok(table)
    }

    fn rejects_schema() -> TableSchema {
        TableSchema::new(
            REJECTS_TABLE,
            &[],
            vec![
                Column::new("table_name", ColumnType::String),
                Column::new("raw", ColumnType::String),
                Column::new("error", ColumnType::String),
                Column::new("rejected_at", ColumnType::UtcDatetime),
            ],
        )
    }

    /// What planning a commit numbered `commit` borrows from the destination.
    fn ctx(&self, commit: u64) -> Ctx<'_> {
        Ctx {
            root: &self.root,
            origin: self.origin(),
            opts: &self.opts,
            commit,
            io: self.delta.as_ref().map(|d| d.io()),
        }
    }

    /// Write one table's pending operations as new temporary files.
    fn commit_table(&self, t: &mut Table, plan: &mut Plan) -> Result<TableCounts> {
        self.ctx(plan.commit).commit_table(t, plan)
    }
}

impl Destination for ParquetDestination {
    fn describe(&self) -> String {
        if self.delta.is_some() {
            return format!("delta:{}", self.root.display());
        }
        format!("parquet:{}", self.root.display())
    }

    fn recorded_naming(&mut self) -> Result<Option<crate::naming::Naming>> {
        Ok(self.manifest.naming.or_else(|| {
            // Written before namings were recorded: etl's own names.
            (!self.manifest.connectors.is_empty()).then_some(crate::naming::Naming::Source)
        }))
    }

    fn record_naming(&mut self, naming: crate::naming::Naming) -> Result<()> {
        self.naming = Some(naming);
        Ok(())
    }

    fn claim(&mut self, owner: &str, connector: &str, tables: &[Arc<TableSchema>]) -> Result<()> {
        let holds_state = self.manifest.connectors.contains_key(connector);
        let schema = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for t in tables {
            let Some(existing) = self.tables.get_mut(&t.name) else {
                continue;
            };
            match existing.owner.as_deref() {
                Some(o) if o == owner => {}
                Some(o) => {
                    return Err(super::namespace::owned_by_other(&schema, &t.name, o, owner))
                }
                // A table made before tables had owners: the connector whose state is here made it.
                None if holds_state => existing.owner = Some(owner.to_string()),
                None => return Err(super::namespace::unowned(&schema, &t.name, owner)),
            }
        }
        // Tables created from here on are the owner's.
        self.owner = Some(owner.to_string());
        Ok(())
    }

    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()> {
        for t in tables {
            self.ensure_table(t)?.declared = true;
        }
        Ok(())
    }

    fn load_state(&mut self, connector: &str) -> Result<Option<State>> {
        self.manifest
            .connectors
            .get(connector)
            .map(|v| State::from_json(&v.to_string(), &self.describe()))
            .transpose()
    }

    fn upsert(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        self.ensure_batch_columns(table, &schema)?
            .ops
            .push(PendingOp::Upsert(batch));
        Ok(())
    }

    fn update(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        super::check_keyed("update", table, &batch).map_err(|(at, what)| self.err(at, what))?;
        let schema = batch.schema();
        self.ensure_batch_columns(table, &schema)?
            .ops
            .push(PendingOp::Update(batch));
        Ok(())
    }

    fn delete(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        super::check_keyed("delete", table, &batch).map_err(|(at, what)| self.err(at, what))?;
        self.ensure_table(table)?.ops.push(PendingOp::Delete(batch));
        Ok(())
    }

    fn truncate(&mut self, table: &TableSchema) -> Result<()> {
        self.ensure_table(table)?
            .ops
            .push(PendingOp::Sweep(Sweep::Truncate));
        Ok(())
    }

    fn delete_older_than(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<()> {
        // Rows seen unchanged by the scan (in earlier commits) are spared:
        // as they were just counted, or (when a commit came between) as
        // they are counted now.
        let counted = match self.counted.take().filter(|c| {
            (c.table.as_str(), c.column.as_str(), c.before) == (&table.name, column, before_micros)
                && self.tables.get(&table.name).is_none_or(|t| c.holds_for(t))
        }) {
            Some(c) => c,
            None => Arc::new(self.count_stale(&table.name, column, before_micros)?.2),
        };
        self.ensure_table(table)?
            .ops
            .push(PendingOp::Sweep(Sweep::OlderThan {
                column: column.into(),
                before: before_micros,
                spare: Some(counted.spare.clone()),
                counted: Some(counted),
            }));
        Ok(())
    }

    fn live_and_stale(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<(u64, u64)> {
        let Some(t) = self.tables.get(&table.name) else {
            return Ok((0, 0));
        };
        if !t.ops.is_empty() {
            return Err(Error::Internal(format!(
                "table {}: live rows counted with changes not committed",
                t.name
            )));
        }
        if !t.has_column(column) {
            return Ok((0, 0));
        }
        let (live, stale, counted) = self.count_stale(&table.name, column, before_micros)?;
        // The sweep that usually follows rewrites only the files found stale.
        self.counted = Some(Arc::new(counted));
        Ok((live, stale))
    }

    fn reject(&mut self, rejects: &[Reject]) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        let t = Self::rejects_schema();
        let now = chrono::Utc::now().timestamp_micros();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.table.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.raw.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.error.as_str()),
            )),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![now; rejects.len()])
                    .with_timezone(UTC),
            ),
        ];
        let batch = RecordBatch::try_new(t.arrow_schema(), cols)
            .map_err(|e| self.err("recording rejects", e))?;
        self.ensure_table(&t)?.ops.push(PendingOp::Upsert(batch));
        self.pending.rejected += rejects.len() as u64;
        Ok(())
    }

    fn commit_with(&mut self, state: Option<(&str, &State)>) -> Result<WriteSummary> {
        if self.delta.is_some() {
            return self.publish_delta(state);
        }
        self.publish(state)
    }

    fn drop_table(&mut self, table: &str) -> Result<bool> {
        let exists = self.tables.contains_key(table);
        if exists && !self.dropping.iter().any(|t| t == table) {
            self.dropping.push(table.to_string());
            if let Some(t) = self.tables.get_mut(table) {
                // Its `_etl_seen` entries go with it.
                t.forget_seen = true;
            }
        }
        Ok(exists)
    }

    fn rollback(&mut self) -> Result<()> {
        self.dropping.clear();
        self.pending = WriteSummary::default();
        for t in self.tables.values_mut() {
            t.ops.clear();
            t.seen_out.clear();
            t.forget_seen = false;
        }
        // Declared tables stay declared: the next commit writes them.
        Ok(())
    }
}

/// Add the columns `t` declares that `table` lacks (and its soft-delete
/// flag); a declared type its files cannot hold is refused.
fn evolve_columns(table: &mut Table, t: &TableSchema, origin: &str) -> Result<()> {
    let existed = !table.columns.is_empty();
    for c in &t.columns {
        // A column declared with another type than its files have: its
        // files are not rewritten, so only a type that holds the new
        // values is kept; anything else is refused, never ignored.
        if let Some((_, old)) = table.columns.iter().find(|(n, _)| n == &c.name) {
            let why = match TypeChange::of(*old, c.ty) {
                TypeChange::Keep => None,
                TypeChange::Widen => {
                    Some("and a Parquet dataset's files are not rewritten to widen a column")
                }
                TypeChange::Refuse => Some("which cannot hold them all"),
            };
            if let (Some(why), false) = (why, table.files.is_empty()) {
                return Err(Error::refused(
                    origin,
                    TypeChange::refused(&t.name, &c.name, *old, c.ty, why),
                ));
            }
            continue;
        }
        if !table.has_column(&c.name) {
            if existed {
                tracing::info!(table = %t.name, column = %c.name, r#type = %c.ty, "added column");
            }
            table.columns.push((c.name.clone(), c.ty));
        }
    }
    if !table.has_column(table.deleted) {
        // A new table: before its sync-time column, as the tester orders them.
        let at = if existed {
            table.columns.len()
        } else {
            t.deleted_position()
        };
        table
            .columns
            .insert(at, (table.deleted.into(), ColumnType::Boolean));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_map_back_to_fivetran_types() {
        for ty in [
            "BOOLEAN",
            "SHORT",
            "INT",
            "LONG",
            "DECIMAL(10,2)",
            "FLOAT",
            "DOUBLE",
            "NAIVE_DATE",
            "NAIVE_DATETIME",
            "UTC_DATETIME",
            "BINARY",
            "STRING",
        ] {
            let t = ColumnType::parse(ty).unwrap();
            assert_eq!(column_type_of(&t.arrow_type()), Some(t), "{ty}");
        }
    }
}
