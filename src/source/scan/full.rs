//! [`FullScan`]: a stream read whole on every sync (the source has no
//! "changed since" filter). Each page is checkpointed with where the scan
//! stands, so an interrupted scan resumes there; the scan's start time is
//! kept across the interruption, so whatever either run saw stays. Rows
//! the scan did not see are soft-deleted only at its end and only with
//! positive evidence that it saw everything ([`Evidence::Complete`]): a
//! failed, partial or unstable scan deletes nothing.
//!
//! State (version 2):
//!
//! ```json
//! {"v": 2, "scan": {"began_us": 1733011200000000, "started_at": "2024-…Z", …where the scan stands}}
//! {"v": 2, "last_complete_scan_at": "2024-…Z", "last_complete_scan_at_us": …, "complete": true, "rows": 250, "total": 250}
//! ```
//!
//! Version 1 (no `v`) spelled the start `started_at_us` (Userflow) and is
//! read the same.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{load, now_micros, soft_delete_unseen, to_value, Evidence, STATE_VERSION};
use crate::decode::values::format_utc_micros;
use crate::error::Result;
use crate::schema::TableSchema;
use crate::source::emit::Emitter;
use crate::state::State;

/// A full scan in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InProgress<P> {
    #[serde(alias = "started_at_us")]
    began_us: i64,
    #[serde(default)]
    started_at: String,
    #[serde(flatten)]
    at: P,
}

/// Where a scan that cannot resume stands: nowhere (it starts over, keeping
/// its start time).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FromStart {}

/// What a full-scan stream's state holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved<P> {
    #[serde(default)]
    v: u32,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    scan: Option<InProgress<P>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_complete_scan_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_complete_scan_at_us: Option<i64>,
    /// The last scan proved complete (its unseen rows were soft-deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    /// The source's count during the last scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

impl<P> Default for Saved<P> {
    fn default() -> Self {
        Saved {
            v: STATE_VERSION,
            scan: None,
            last_complete_scan_at: None,
            last_complete_scan_at_us: None,
            complete: None,
            rows: None,
            total: None,
        }
    }
}

/// One full scan of one table; `P` is where the scan stands after a page
/// (an offset, the last id, nothing for a scan that cannot resume).
pub struct FullScan<P> {
    table: Arc<TableSchema>,
    began_us: i64,
    resume: Option<P>,
    /// The last complete scan's source total (bounds how far to fetch ahead).
    previous_total: Option<u64>,
    rows: std::sync::atomic::AtomicU64,
}

impl<P: Serialize + DeserializeOwned + Clone> FullScan<P> {
    /// Begin a scan of `table`, or resume the one its saved state left unfinished.
    pub fn begin(state: &State, table: Arc<TableSchema>) -> Result<Self> {
        let saved: Saved<P> = load(state, &table.name, "a full scan")?;
        let (began_us, resume) = match saved.scan {
            Some(s) => (s.began_us, Some(s.at)),
            None => (now_micros(), None),
        };
        if resume.is_some() {
            tracing::info!(stream = %table.name, scan_started = %format_utc_micros(began_us), "resuming scan");
        } else {
            tracing::info!(stream = %table.name, "starting full scan");
        }
        Ok(FullScan {
            table,
            began_us,
            resume,
            previous_total: saved.total,
            rows: Default::default(),
        })
    }

    /// Begin a scan that cannot resume: from the start, at the current
    /// time, whatever an interrupted one left.
    pub fn begin_fresh(state: &State, table: Arc<TableSchema>) -> Result<Self> {
        let mut scan = Self::begin(state, table)?;
        scan.restart();
        Ok(scan)
    }

    /// Where an interrupted scan stopped (`None`: from the start).
    pub fn resume_at(&self) -> Option<&P> {
        self.resume.as_ref()
    }

    /// The source total the last complete scan saw.
    pub fn previous_total(&self) -> Option<u64> {
        self.previous_total
    }

    /// Start over from the beginning with a new start time (the resume
    /// point is no longer valid; rows deleted since are then soft-deleted).
    pub fn restart(&mut self) {
        self.began_us = now_micros();
        self.resume = None;
    }

    /// Rows checkpointed so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When the scan began (rows it stamps later are newer).
    pub fn began_us(&self) -> i64 {
        self.began_us
    }

    /// Checkpoint a page of `rows` rows: the scan now stands at `at`.
    pub async fn page(&self, emit: &Emitter, rows: u64, at: P) -> Result<()> {
        self.rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        let saved = Saved {
            scan: Some(InProgress {
                began_us: self.began_us,
                started_at: format_utc_micros(self.began_us),
                at,
            }),
            ..Default::default()
        };
        emit.checkpoint(&self.table.name, to_value(&saved)?).await
    }

    /// The scan read to the end: soft-delete what it did not see when the
    /// evidence says it saw everything, and record the scan as finished.
    pub async fn finish(self, emit: &Emitter, evidence: Evidence) -> Result<()> {
        let complete = soft_delete_unseen(emit, &self.table, self.began_us, &evidence).await?;
        let total = match evidence {
            Evidence::Complete { source_total } => source_total,
            Evidence::Moved { .. } => None,
        };
        let saved: Saved<P> = Saved {
            v: STATE_VERSION,
            scan: None,
            last_complete_scan_at: Some(format_utc_micros(self.began_us)),
            last_complete_scan_at_us: Some(self.began_us),
            complete: Some(complete),
            rows: Some(self.rows()),
            total: total.or(self.previous_total),
        };
        emit.checkpoint(&self.table.name, to_value(&saved)?).await?;
        tracing::info!(stream = %self.table.name, rows = self.rows(), complete, "scan complete");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct After {
        after: Option<String>,
    }

    #[test]
    fn version_one_states_are_read() {
        // Userflow before version 2.
        let v1 = json!({"scan": {"started_at": "x", "started_at_us": 5, "after": "u_9"}});
        let s: Saved<After> = serde_json::from_value(v1).unwrap();
        let scan = s.scan.unwrap();
        assert_eq!((scan.began_us, scan.at.after.as_deref()), (5, Some("u_9")));
        let done = json!({"last_complete_scan_at": "x", "last_complete_scan_at_us": 5});
        let s: Saved<After> = serde_json::from_value(done).unwrap();
        assert!(s.scan.is_none() && s.v == 0);
        let written = to_value(&Saved {
            scan: Some(InProgress {
                began_us: 7,
                started_at: "t".into(),
                at: After { after: None },
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            written,
            json!({"v": 2, "scan": {"began_us": 7, "started_at": "t", "after": null}})
        );
    }
}
