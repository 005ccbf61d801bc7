//! What connectors send: [`Op`]s in stream order through an [`Emitter`]
//! (the connector's handle to the destination writer), and the counters
//! ([`StreamStats`]) progress displays read while a sync runs.
//!
//! This module knows nothing of the engine that consumes the ops, so
//! connectors depend on it and not on the engine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use crate::decode::Reject;
use crate::error::{Error, Result};
use crate::schema::TableSchema;

/// One operation on the destination, in stream order.
#[derive(Debug)]
pub enum Op {
    Upsert {
        table: Arc<TableSchema>,
        batch: RecordBatch,
    },
    Update {
        table: Arc<TableSchema>,
        batch: RecordBatch,
    },
    Delete {
        table: Arc<TableSchema>,
        batch: RecordBatch,
    },
    Truncate {
        table: Arc<TableSchema>,
    },
    DeleteOlderThan {
        table: Arc<TableSchema>,
        column: String,
        before_micros: i64,
        /// The number of rows the source said the list holds, if it did.
        source_total: Option<u64>,
    },
    Reject(Vec<Reject>),
    /// A safe point: `state` is the stream's progress covering all ops sent before it.
    Checkpoint {
        stream: String,
        state: serde_json::Value,
        force: bool,
    },
}

/// Counters a connector bumps while it runs.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub pages: AtomicU64,
    pub rows: AtomicU64,
    /// Rows handed to the writer, per table.
    pub tables: std::sync::Mutex<BTreeMap<String, u64>>,
    /// What the source said a table's scan holds, where it did.
    pub extents: std::sync::Mutex<BTreeMap<String, Extent>>,
}

/// How much of a table's scan is done, against the total the source gave
/// (Prefect's count, SCIM `totalResults`, an offset `total`: rows; a
/// download's `Content-Length`: bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    /// Rows (or bytes) read so far of `total`.
    pub done: u64,
    pub total: u64,
    /// Counts bytes, not rows.
    pub bytes: bool,
}

impl StreamStats {
    pub(crate) fn add_rows(&self, table: &str, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
        let mut t = self.tables.lock().expect("not poisoned");
        match t.get_mut(table) {
            Some(c) => *c += n,
            None => {
                t.insert(table.to_string(), n);
            }
        }
    }

    /// Rows per table so far.
    pub fn table_rows(&self) -> BTreeMap<String, u64> {
        self.tables.lock().expect("not poisoned").clone()
    }

    /// The scan of `table` has read `done` of the `total` rows the source
    /// says it holds (Prefect's count, SCIM `totalResults`, an offset `total`).
    pub fn scanned(&self, table: &str, done: u64, total: u64) {
        self.extents.lock().expect("not poisoned").insert(
            table.to_string(),
            Extent {
                done: done.min(total),
                total,
                bytes: false,
            },
        );
    }

    /// The download feeding `table` is `total` bytes long (`Content-Length`).
    pub fn expect_bytes(&self, table: &str, total: u64) {
        self.extents.lock().expect("not poisoned").insert(
            table.to_string(),
            Extent {
                done: 0,
                total,
                bytes: true,
            },
        );
    }

    /// `n` more bytes of `table`'s download were read.
    pub fn add_bytes(&self, table: &str, n: u64) {
        if let Some(x) = self.extents.lock().expect("not poisoned").get_mut(table) {
            x.done = (x.done + n).min(x.total);
        }
    }

    /// How far each table with a known total is.
    pub fn extents(&self) -> BTreeMap<String, Extent> {
        self.extents.lock().expect("not poisoned").clone()
    }
}

/// The connector's handle to the writer.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<WriterMsg>,
    pub stats: Arc<StreamStats>,
}

impl Emitter {
    /// The handle of a writer fed through `tx`, counting into `stats`.
    pub(crate) fn new(tx: mpsc::Sender<WriterMsg>, stats: Arc<StreamStats>) -> Self {
        Emitter { tx, stats }
    }

    async fn send(&self, op: Op) -> Result<()> {
        self.tx
            .send(WriterMsg::Op(op))
            .await
            .map_err(|_| Error::Internal("the destination writer stopped".into()))
    }

    pub async fn upsert(&self, table: &Arc<TableSchema>, batch: RecordBatch) -> Result<()> {
        self.stats.add_rows(&table.name, batch.num_rows() as u64);
        self.send(Op::Upsert {
            table: table.clone(),
            batch,
        })
        .await
    }

    pub async fn update(&self, table: &Arc<TableSchema>, batch: RecordBatch) -> Result<()> {
        self.stats.add_rows(&table.name, batch.num_rows() as u64);
        self.send(Op::Update {
            table: table.clone(),
            batch,
        })
        .await
    }

    pub async fn delete(&self, table: &Arc<TableSchema>, batch: RecordBatch) -> Result<()> {
        self.send(Op::Delete {
            table: table.clone(),
            batch,
        })
        .await
    }

    pub async fn truncate(&self, table: &Arc<TableSchema>) -> Result<()> {
        self.send(Op::Truncate {
            table: table.clone(),
        })
        .await
    }

    /// After a complete scan: soft-delete the rows it did not see (their
    /// `column` is older than `before_micros`). `source_total` is how many
    /// rows the source said the list holds, when it says.
    pub async fn delete_older_than(
        &self,
        table: &Arc<TableSchema>,
        column: &str,
        before_micros: i64,
        source_total: Option<u64>,
    ) -> Result<()> {
        self.send(Op::DeleteOlderThan {
            table: table.clone(),
            column: column.into(),
            before_micros,
            source_total,
        })
        .await
    }

    pub async fn reject(&self, rejects: Vec<Reject>) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        self.send(Op::Reject(rejects)).await
    }

    /// Record progress; the writer commits here when its thresholds are met.
    pub async fn checkpoint(&self, stream: &str, state: serde_json::Value) -> Result<()> {
        self.send(Op::Checkpoint {
            stream: stream.into(),
            state,
            force: false,
        })
        .await
    }

    /// Record progress and commit now (before stopping on a quota, say).
    pub async fn commit_now(&self, stream: &str, state: serde_json::Value) -> Result<()> {
        self.send(Op::Checkpoint {
            stream: stream.into(),
            state,
            force: true,
        })
        .await
    }

    pub fn page_fetched(&self) {
        self.stats.pages.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the writer thread receives: ops in stream order, then `Finish` once
/// the connector returned successfully. A channel closed without `Finish`
/// (the sync failed or its future was dropped) makes the writer roll back.
pub(crate) enum WriterMsg {
    Op(Op),
    Finish,
}
