//! Sources. A connector declares its tables and, given its validated
//! configuration and last state, emits operations through an [`Emitter`]. It
//! knows nothing about DuckDB or Parquet.
//!
//! Connectors are wired in [`registry`], one plain entry each.

pub mod csv_export;
pub mod egnyte;
pub mod prefect;
pub mod rest;
pub mod userflow;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::ConfigReader;
use crate::error::Result;
use crate::http::HttpMetrics;
use crate::schema::TableSchema;
use crate::source::emit::Emitter;
use crate::state::State;

/// What a running sync hands the connector.
pub struct SyncContext {
    /// The state of the last commit (empty on the first sync or `--full-refresh`).
    pub state: State,
    pub emit: Emitter,
    /// Shared by every HTTP client of this sync, for the summary.
    pub http_metrics: Arc<HttpMetrics>,
    /// Pages one scan of one table may take (`--max-pages`): the last
    /// resort that makes every pagination terminate.
    pub max_pages: u64,
    /// How the destination names tables and columns (the engine renames;
    /// a connector needs it only for values that depend on it, such as the
    /// surrogate key of a table without a primary key).
    pub naming: crate::naming::Naming,
    /// The tables to sync (`--tables`); `None`: all of them.
    pub selected: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl SyncContext {
    /// Whether this sync reads `table` (a connector's own table name).
    pub fn wants(&self, table: &str) -> bool {
        self.selected.as_ref().is_none_or(|s| s.contains(table))
    }
}

/// A source of tables.
pub trait Connector: Send + Sync {
    fn name(&self) -> &str;
    /// The schema its tables land in unless `--schema` says otherwise.
    fn default_schema(&self) -> String {
        self.name().to_string()
    }
    /// The owner recorded on the tables it creates: tables of another owner
    /// in the same schema are refused.
    fn owner(&self) -> String {
        self.name().to_string()
    }
    /// The tables this connector writes.
    fn tables(&self) -> Vec<Arc<TableSchema>>;
    /// The table whose records `table` is read for (a child table needs
    /// its parent read in the same sync); `None` for a table read alone.
    fn read_for_each_record_of(&self, _table: &str) -> Option<String> {
        None
    }
    /// Fetch everything new since `ctx.state`, emitting ops and checkpoints.
    fn sync(&self, ctx: SyncContext) -> BoxFuture<'_, Result<()>>;
    /// One authenticated request per table, read and checked like a first
    /// page, nothing written (`etl check`).
    fn check(&self) -> BoxFuture<'_, Vec<TableCheck>>;
}

/// What `etl check` found for one table.
#[derive(Debug)]
pub struct TableCheck {
    pub table: String,
    /// The request made (method and URL, credentials never in it).
    pub request: String,
    /// What its answer held, or why it failed.
    pub outcome: Result<String>,
}

impl TableCheck {
    pub fn new(table: &str, request: String, outcome: Result<String>) -> Self {
        TableCheck {
            table: table.to_string(),
            request,
            outcome,
        }
    }
}

/// "1 record" / "0 records" on a first page.
pub fn records(n: usize) -> String {
    format!(
        "{n} record{} on a first page",
        if n == 1 { "" } else { "s" }
    )
}

/// A registry entry: how to list, describe and build a connector.
pub struct ConnectorInfo {
    pub name: &'static str,
    pub description: &'static str,
    /// A sample configuration file.
    pub sample_config: &'static str,
    pub tables: fn() -> Vec<Arc<TableSchema>>,
    /// Validate a configuration and build the connector (no I/O).
    pub build: fn(ConfigReader, Arc<HttpMetrics>) -> Result<Arc<dyn Connector>>,
}

/// Every connector this build knows.
pub fn registry() -> Vec<ConnectorInfo> {
    vec![
        egnyte::info(),
        userflow::info(),
        prefect::info(),
        csv_export::info(),
        rest::info(),
    ]
}

/// Look a connector up by name.
pub fn find(name: &str) -> Option<ConnectorInfo> {
    registry().into_iter().find(|c| c.name == name)
}
