//! Destinations: where batches land. A destination knows nothing about HTTP.
//!
//! It creates and evolves tables from [`TableSchema`], applies operation
//! batches, and on [`Destination::commit`] makes the data *and* the state
//! durable together. Until then nothing it was given is visible to readers,
//! and [`Destination::rollback`] returns it to the last commit.

pub mod duckdb;
pub mod namespace;
pub mod parquet;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::decode::Reject;
use crate::error::Result;
use crate::schema::TableSchema;
use crate::state::State;

/// Rows changed in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Upserted rows equal to the version already there: not rewritten.
    pub unchanged: u64,
}

impl TableCounts {
    pub fn add(&mut self, o: TableCounts) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.unchanged += o.unchanged;
    }
}

/// What one commit (or a whole sync) wrote, per table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteSummary {
    pub tables: BTreeMap<String, TableCounts>,
    pub rejected: u64,
}

impl WriteSummary {
    pub fn table(&mut self, name: &str) -> &mut TableCounts {
        self.tables.entry(name.to_string()).or_default()
    }
    pub fn add(&mut self, o: &WriteSummary) {
        for (t, c) in &o.tables {
            self.table(t).add(*c);
        }
        self.rejected += o.rejected;
    }
}

/// A place synced data lands. Methods are called from one writer thread.
pub trait Destination: Send {
    /// Human name for logs and errors (the file or directory).
    fn describe(&self) -> String;

    /// Record `owner` (a connector) as the owner of `tables`, refusing any
    /// that exists and belongs to another connector, or that exists with no
    /// owner unless `connector` committed state here (a warehouse written
    /// before tables had owners). Committed with the next commit.
    fn claim(&mut self, owner: &str, connector: &str, tables: &[Arc<TableSchema>]) -> Result<()>;

    /// The naming this schema's tables were written with: the one recorded,
    /// [`Naming::Source`](crate::naming::Naming::Source) for a schema written
    /// before namings were recorded, `None` for a new one.
    fn recorded_naming(&mut self) -> Result<Option<crate::naming::Naming>>;

    /// Record `naming` as the schema's (with the next commit).
    fn record_naming(&mut self, naming: crate::naming::Naming) -> Result<()>;

    /// Create missing tables, add missing columns.
    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()>;

    /// The state committed by the last sync of `connector`, if any.
    fn load_state(&mut self, connector: &str) -> Result<Option<State>>;

    /// Insert or replace rows by primary key (the batch carries all declared columns).
    fn upsert(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()>;

    /// Change only the batch's columns of existing rows (the batch carries the key).
    fn update(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()>;

    /// Soft-delete rows by key (the batch carries only the key columns).
    fn delete(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()>;

    /// Soft-delete every row of the table.
    fn truncate(&mut self, table: &TableSchema) -> Result<()>;

    /// Soft-delete rows whose `column` (a UTC_DATETIME) is older than `before_micros`:
    /// after a complete scan, the rows the scan did not see.
    fn delete_older_than(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<()>;

    /// How many rows of `table` are live, and how many of those have
    /// `column` older than `before_micros` (what [`delete_older_than`]
    /// would soft-delete). Called right after a commit unless
    /// [`counts_uncommitted`](Destination::counts_uncommitted).
    ///
    /// [`delete_older_than`]: Destination::delete_older_than
    fn live_and_stale(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<(u64, u64)>;

    /// Whether [`live_and_stale`](Destination::live_and_stale) sees changes
    /// not committed yet (so no commit is needed before it).
    fn counts_uncommitted(&self) -> bool {
        false
    }

    /// Keep records that did not fit their schema, in the same commit as the data.
    fn reject(&mut self, rejects: &[Reject]) -> Result<()>;

    /// Drop `table` and its rows at the next commit; false if there is no such table.
    fn drop_table(&mut self, table: &str) -> Result<bool>;

    /// Make everything applied since the last commit durable, with `state`, atomically.
    fn commit(&mut self, connector: &str, state: &State) -> Result<WriteSummary> {
        self.commit_with(Some((connector, state)))
    }

    /// Make everything applied since the last commit durable, leaving every
    /// connector's state as it is (the run history's own commit).
    fn commit_data(&mut self) -> Result<WriteSummary> {
        self.commit_with(None)
    }

    /// [`commit`](Destination::commit), saving the state when one is given.
    fn commit_with(&mut self, state: Option<(&str, &State)>) -> Result<WriteSummary>;

    /// Forget everything applied since the last commit.
    fn rollback(&mut self) -> Result<()>;
}

/// What every destination checks before it applies an update or a delete
/// (`op`): the table has a primary key and the batch carries every key
/// column. The error is `(where, what)`, for the destination to name itself.
pub(crate) fn check_keyed(
    op: &str,
    table: &TableSchema,
    batch: &RecordBatch,
) -> std::result::Result<(), (String, String)> {
    if table.primary_key.is_empty() {
        return Err((
            format!("table {}", table.name),
            format!("{op} needs a primary key"),
        ));
    }
    let schema = batch.schema();
    match table
        .primary_key
        .iter()
        .find(|k| schema.field_with_name(k).is_err())
    {
        Some(k) => Err((
            format!("{op} of table {}", table.name),
            format!("batch lacks key column {k}"),
        )),
        None => Ok(()),
    }
}

/// An output path's directory must exist (a typo is not silently created).
pub(crate) fn check_parent_exists(path: &std::path::Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.exists() => Err(crate::error::Error::refused(
            path.display().to_string(),
            format!("output directory {} does not exist", parent.display()),
        )),
        _ => Ok(()),
    }
}
