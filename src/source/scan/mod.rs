//! Scan strategies with typed, versioned state, one per file:
//!
//! * [`full`]: the whole stream on every sync; what it did not see is
//!   soft-deleted, only with evidence that it saw everything;
//! * [`cursor`]: what changed since the last sync's cursor (with a
//!   lookback), resumable mid-read;
//! * [`windows`]: priority-first time windows, newest first, then back
//!   into history one window at a time.
//!
//! Each writes its own state shape with `"v": 2`; shapes written before
//! versions existed are still read.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::emit::Emitter;
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::state::State;

pub mod cursor;
pub mod full;
pub mod windows;

pub use cursor::{CursorEnd, CursorScan};
pub use full::{FromStart, FullScan};
pub use windows::{HistoryLimit, Window, WindowPlan, WindowSpec, WindowState};

/// The state version these strategies write.
pub const STATE_VERSION: u32 = 2;

/// The column every scan stamps its rows with.
const SEEN_AT: &str = "_synced_at";

/// Whether a finished scan saw everything the source holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// It read to the end and nothing says the list moved meanwhile;
    /// `source_total` is the source's own count, when it gives one (the
    /// engine's mass-deletion guard trusts a deletion that agrees with it).
    Complete { source_total: Option<u64> },
    /// It read to the end, but the list changed under it (a row may have
    /// slipped between two pages): nothing is deleted this time.
    Moved { why: &'static str },
}

/// Soft-delete the rows of `table` a scan begun at `began_us` did not see,
/// when `evidence` says it saw everything; whether it did.
pub async fn soft_delete_unseen(
    emit: &Emitter,
    table: &Arc<TableSchema>,
    began_us: i64,
    evidence: &Evidence,
) -> Result<bool> {
    match evidence {
        Evidence::Complete { source_total } => {
            emit.delete_older_than(table, SEEN_AT, began_us, *source_total)
                .await?;
            Ok(true)
        }
        Evidence::Moved { why } => {
            tracing::warn!(stream = %table.name, "{why}; soft-deletes wait for the next sync");
            Ok(false)
        }
    }
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("state: {e}")))
}

pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A stream's saved state read as `T` (`T::default()` when there is none).
pub(crate) fn load<T: DeserializeOwned + Default>(
    state: &State,
    stream: &str,
    what: &str,
) -> Result<T> {
    match state.stream(stream) {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            Error::Internal(format!("the saved state of {stream} is not {what}'s: {e}"))
        }),
    }
}
