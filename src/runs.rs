//! Run history: one row per sync in the table `_etl_runs` of the
//! destination, so users query their sync history with SQL (when it ran,
//! how it ended, what it changed, how many requests it took).
//!
//! The row is written after the sync, in a commit of its own, through the
//! same [`Destination`] API as the data (so both destinations keep it the
//! same way), and carries the connector's last committed state unchanged. A
//! run that could not open its destination (busy, bad path) is not
//! recorded, and neither is one killed outright.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use crate::decode::values::format_utc_micros;
use crate::decode::{BatchDecoder, PageContext};
use crate::dest::Destination;
use crate::engine::RunStats;
use crate::error::{Error, Result};
use crate::schema::{Column, ColumnType, TableSchema};

/// The run history table.
pub const RUNS_TABLE: &str = "_etl_runs";

/// The `_etl_runs` table.
pub fn runs_table() -> TableSchema {
    TableSchema::new(
        RUNS_TABLE,
        &["run_id"],
        vec![
            Column::new("run_id", ColumnType::String),
            Column::new("connector", ColumnType::String),
            Column::new("started_at", ColumnType::UtcDatetime),
            Column::new("ended_at", ColumnType::UtcDatetime),
            Column::new("status", ColumnType::String),
            Column::new("error", ColumnType::String),
            Column::new("tables", ColumnType::Json),
            Column::new("rows_read", ColumnType::Long),
            Column::new("pages", ColumnType::Long),
            Column::new("requests", ColumnType::Long),
            Column::new("retries", ColumnType::Long),
            Column::new("bytes_received", ColumnType::Long),
            Column::new("http_statuses", ColumnType::Json),
            Column::new("commits", ColumnType::Long),
        ],
    )
}

/// How a run ended, as `_etl_runs.status` (and `--summary json`) says it.
pub fn status_of(outcome: &std::result::Result<(), &Error>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(Error::QuotaExhausted { .. }) => "quota_exhausted",
        Err(Error::Interrupted { .. }) => "interrupted",
        Err(Error::DeletesRefused { .. }) => "deletes_refused",
        Err(Error::Busy { .. }) => "destination_busy",
        Err(e) if e.is_user_error() => "usage_error",
        Err(_) => "failed",
    }
}

/// Append this run's row to `dest` in one commit that keeps every
/// connector's committed state as it is.
pub fn record(
    dest: &mut dyn Destination,
    naming: crate::naming::Naming,
    connector: &str,
    started_micros: i64,
    stats: &RunStats,
    status: &str,
    error: Option<String>,
) -> Result<()> {
    let table = Arc::new(TableSchema {
        deleted_column: naming.deleted(),
        ..runs_table()
    });
    dest.prepare(std::slice::from_ref(&table))?;
    let committed = stats.committed();
    let ended = chrono::Utc::now().timestamp_micros();
    let statuses: serde_json::Map<String, serde_json::Value> = stats
        .http
        .statuses
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let row = json!({
        "run_id": format!("{started_micros:x}-{:08x}", rand::random::<u32>()),
        "connector": connector,
        "started_at": format_utc_micros(started_micros),
        "ended_at": format_utc_micros(ended),
        "status": status,
        "error": error,
        "tables": committed.tables,
        "rows_read": stats.stream.rows.load(Ordering::Relaxed),
        "pages": stats.stream.pages.load(Ordering::Relaxed),
        "requests": stats.http.requests.load(Ordering::Relaxed),
        "retries": stats.http.retries.load(Ordering::Relaxed),
        "bytes_received": stats.http.bytes.load(Ordering::Relaxed),
        "http_statuses": statuses,
        "commits": committed.commits,
    });
    let page = row.to_string().into_bytes();
    let ctx = PageContext {
        first_row: 0,
        location: RUNS_TABLE.into(),
        synced_at_micros: ended,
    };
    let whole = std::iter::once(0..page.len()).collect::<Vec<_>>();
    let decoded = BatchDecoder::new(table.clone()).decode(&page, &whole, &ctx)?;
    dest.upsert(&table, decoded.batch)?;
    dest.commit_data()?;
    Ok(())
}
