//! Runs a connector into a destination.
//!
//! The connector's streams send [`Op`]s through a bounded channel to one
//! writer thread that owns the destination, so a slow writer slows the
//! fetchers and memory stays flat. Connectors emit a checkpoint marker after
//! every page; the writer commits (data + state, atomically) at a marker once
//! `checkpoint_rows` rows or `checkpoint_interval` have passed since the last
//! commit, and always at the end. Every marker is a safe point: the state it
//! carries covers everything sent before it on the channel.
//!
//! If the connector fails, or the future is dropped, the writer rolls back to
//! the last commit; a rerun resumes from there and, because merges are
//! idempotent by key, ends with exactly the source's rows.
//!
//! Soft-deleting what a complete scan did not see is guarded: when it would
//! remove more than `max_delete_fraction` of a table's live rows and the
//! source reported no total that agrees, the writer commits what was read,
//! skips the deletion and the sync ends with [`Error::DeletesRefused`]. A
//! source that suddenly answers with far fewer rows is more often broken
//! than emptied.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::connectors::{Connector, SyncContext};
use crate::dest::{Destination, TableCounts, WriteSummary};
use crate::error::{Error, Result};
use crate::http::HttpMetrics;
use crate::source::emit::WriterMsg;
pub use crate::source::emit::{Emitter, Extent, Op, StreamStats};
use crate::state::State;

mod writer;

/// Writer threads alive in this process (a destination is released when its writer ends).
static ACTIVE_WRITERS: AtomicU64 = AtomicU64::new(0);

/// How many destination writers are still running in this process. After a
/// sync future is dropped its writer rolls back and closes the destination in
/// the background; embedders (and tests) can wait for this to reach zero.
pub fn active_writers() -> u64 {
    ACTIVE_WRITERS.load(Ordering::SeqCst)
}

/// When to commit.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Commit at the next marker once this many rows were written since the last commit.
    pub checkpoint_rows: u64,
    /// Commit at the next marker once this much time passed since the last commit.
    pub checkpoint_interval: Duration,
    /// Ops in flight between fetchers and the writer (a page is an upsert
    /// and a checkpoint). Room for 64 pages lets fetching run on while the
    /// writer appends a large chunk, at a few MB of memory.
    pub channel_capacity: usize,
    /// Ignore saved state and sync everything again.
    pub full_refresh: bool,
    /// Memory the destination may use for caching and merging (DuckDB `memory_limit`).
    pub memory_limit: Option<String>,
    /// The storage format of a new DuckDB file (`v1.4.0`: readable by DuckDB
    /// 1.4 and later; an existing file keeps its own).
    pub duckdb_storage_version: String,
    /// DuckDB file or Parquet directory; `None`: from the output path.
    pub format: Option<OutputFormat>,
    /// File sizes, compression and partitioning of Parquet output.
    pub parquet: crate::dest::parquet::ParquetOptions,
    /// Pages one scan of one table may take (the last resort against a
    /// pagination that never ends).
    pub max_pages: u64,
    /// Sync only these tables (`--tables`, the connector's own table names,
    /// checked by [`crate::sync`]); `None`: every table.
    pub tables: Option<Vec<String>>,
    /// The largest share (0..=1) of a table's live rows one complete scan
    /// may soft-delete as unseen, unless the source's total agrees; 1 turns
    /// the guard off.
    pub max_delete_fraction: f64,
    /// The schema the connector's tables land in (`--schema`); `None`: the
    /// connector's own (its name, a REST spec's name).
    pub schema: Option<String>,
    /// Table and column naming (`--naming`); `None`: the one the schema was
    /// written with, else Fivetran's.
    pub naming: Option<crate::naming::Naming>,
}

/// DuckDB's `memory_limit` unless `--memory-limit` says otherwise: its
/// buffer pool (cache, staging, merge joins) beyond which it spills to a
/// temporary directory beside the file. Chosen by measurement
/// (docs/benchmarks.md): at 128MB a sync of 1M to 5M users peaks near
/// 240 MB and runs as fast as with 1GB, which peaked at 390 MB (1M) to
/// 1 GB (5M).
pub const DEFAULT_MEMORY_LIMIT: &str = "128MB";

/// The kind of destination `--out` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    DuckDb,
    Parquet,
    /// Delta Lake tables (`--format delta`), local or on object storage.
    Delta,
}

impl OutputFormat {
    /// The format of `out` when none is given: a path ending in `.duckdb`
    /// (or `.db`) is a DuckDB file, an `s3://` URL or a directory holding a
    /// Delta lake is a Delta lake, anything else a Parquet directory.
    pub fn infer(out: &std::path::Path) -> OutputFormat {
        let s = out.to_string_lossy();
        if crate::dest::parquet::delta::store::is_remote(&s) {
            return OutputFormat::Delta;
        }
        // A directory that already holds a Delta lake stays one.
        let is_lake = std::fs::read_dir(out).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().join("_etl_state").join("_delta_log").is_dir())
        });
        if is_lake {
            return OutputFormat::Delta;
        }
        let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !s.ends_with('/')
            && (ext.eq_ignore_ascii_case("duckdb") || ext.eq_ignore_ascii_case("db"))
        {
            OutputFormat::DuckDb
        } else {
            OutputFormat::Parquet
        }
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            checkpoint_rows: 100_000,
            checkpoint_interval: Duration::from_secs(10),
            channel_capacity: 128,
            full_refresh: false,
            memory_limit: Some(DEFAULT_MEMORY_LIMIT.into()),
            duckdb_storage_version: crate::dest::duckdb::DEFAULT_STORAGE_VERSION.into(),
            format: None,
            parquet: Default::default(),
            max_pages: crate::source::paginate::DEFAULT_MAX_PAGES,
            tables: None,
            max_delete_fraction: 0.5,
            schema: None,
            naming: None,
        }
    }
}

/// What the destination has committed so far in this sync.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub commits: u64,
    pub tables: BTreeMap<String, TableCounts>,
    pub rejected: u64,
    /// When the last commit happened (UTC microseconds), and the state it saved.
    pub last_at_micros: Option<i64>,
    pub last_state: Option<State>,
}

/// Everything a running sync counts, shared with its caller, which can read
/// it at any time: after a failure or an interrupt (what was committed) or
/// while the sync runs (progress).
#[derive(Debug, Default)]
pub struct RunStats {
    pub stream: Arc<StreamStats>,
    pub http: Arc<HttpMetrics>,
    pub committed: std::sync::Mutex<Committed>,
}

impl RunStats {
    /// A copy of what has been committed so far.
    pub fn committed(&self) -> Committed {
        self.committed.lock().expect("not poisoned").clone()
    }

    fn record_commit(&self, w: &WriteSummary, state: &State) {
        let mut c = self.committed.lock().expect("not poisoned");
        c.commits += 1;
        for (t, n) in &w.tables {
            c.tables.entry(t.clone()).or_default().add(*n);
        }
        c.rejected += w.rejected;
        c.last_at_micros = Some(chrono::Utc::now().timestamp_micros());
        c.last_state = Some(state.clone());
    }
}

/// What a sync did, for the end-of-sync report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncSummary {
    pub connector: String,
    pub destination: String,
    pub tables: BTreeMap<String, TableCounts>,
    pub rejected: u64,
    pub rows: u64,
    pub pages: u64,
    pub requests: u64,
    pub retries: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Time spent waiting before retries (rate limits, server errors).
    pub waited_secs: f64,
    /// OAuth access tokens refreshed.
    pub token_refreshes: u64,
    pub commits: u64,
    /// The connector's time: from its first request until the source was
    /// read to the end and every row handed to the writer.
    pub read_secs: f64,
    /// Until the last commit (the whole sync).
    pub elapsed_secs: f64,
}

impl SyncSummary {
    pub fn rows_per_sec(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.rows as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "synced {} → {}", self.connector, self.destination)?;
        for (t, c) in &self.tables {
            writeln!(
                f,
                "  {t:<24} inserted {:>9}  updated {:>9}  deleted {:>9}  unchanged {:>9}",
                c.inserted, c.updated, c.deleted, c.unchanged
            )?;
        }
        if self.rejected > 0 {
            writeln!(
                f,
                "  rejected rows: {} (see table _etl_rejects)",
                self.rejected
            )?;
        }
        write!(
            f,
            "  {} rows, {} pages, {} requests, {} retries, {} commits in {:.2}s ({:.0} rows/s; source read in {:.2}s)",
            self.rows,
            self.pages,
            self.requests,
            self.retries,
            self.commits,
            self.elapsed_secs,
            self.rows_per_sec(),
            self.read_secs
        )?;
        if self.waited_secs > 0.0 || self.token_refreshes > 0 {
            write!(
                f,
                "\n  waited {:.1}s before retries; {} access token refreshes",
                self.waited_secs, self.token_refreshes
            )?;
        }
        Ok(())
    }
}

/// What the writer reports when it stops.
struct WriterReport {
    summary: WriteSummary,
    commits: u64,
    /// False when the channel closed before `Finish` and the writer rolled back.
    finished: bool,
    /// Soft-deletions the guard refused.
    refused: Vec<RefusedDelete>,
}

pub use crate::error::RefusedDelete;

/// Run `connector` into `dest` until the source is exhausted or an error
/// stops it. `stats` (whose `http` the connector's clients share) counts as
/// it goes.
pub async fn run_sync(
    connector: Arc<dyn Connector>,
    dest: Box<dyn Destination>,
    opts: SyncOptions,
    stats: Arc<RunStats>,
) -> Result<SyncSummary> {
    let http_metrics = stats.http.clone();
    let started = Instant::now();
    let name = connector.name().to_string();
    let destination = dest.describe();
    let selected: Option<Arc<std::collections::BTreeSet<String>>> = opts
        .tables
        .as_ref()
        .map(|t| Arc::new(t.iter().cloned().collect()));
    // Tables not selected are left alone: not declared, not claimed, not committed.
    let tables: Vec<_> = connector
        .tables()
        .into_iter()
        .filter(|t| selected.as_ref().is_none_or(|s| s.contains(&t.name)))
        .collect();
    let naming = opts.naming.unwrap_or_default();
    // Every table appears in the summary, unchanged ones with zero counts.
    let table_names: Vec<String> = tables.iter().map(|t| naming.table(&t.name)).collect();

    let (msg_tx, state_rx, done_rx) =
        spawn_writer(dest, (&name, connector.owner()), tables, &opts, &stats)?;

    // The writer drops `state_tx` unsent when preparing the destination fails.
    let Ok(state) = state_rx.await else {
        return Err(writer_failure(done_rx).await);
    };

    let emitter = Emitter::new(msg_tx.clone(), stats.stream.clone());
    let ctx = SyncContext {
        state,
        emit: emitter,
        http_metrics: http_metrics.clone(),
        max_pages: opts.max_pages,
        naming,
        selected,
    };
    let reading = Instant::now();
    let outcome = connector.sync(ctx).await;
    let read_secs = reading.elapsed().as_secs_f64();
    let report = match outcome {
        Ok(()) => finish(msg_tx, done_rx).await?,
        Err(e) if e.is_quota() => {
            // Out of requests for now: commit what was read (every op is an
            // idempotent merge and each stream's state is at or behind its
            // data), then report when the quota resets.
            tracing::warn!(error = %e, "the source's request quota is used up; committing what was read");
            finish(msg_tx, done_rx).await?;
            return Err(match e {
                Error::Http(source) => Error::QuotaExhausted { source },
                other => other,
            });
        }
        Err(e) => {
            drop(msg_tx);
            // The writer rolls back on a closed channel; report its own error if it had one first.
            return match done_rx.await {
                Ok(Err(we)) => Err(we),
                _ => Err(e),
            };
        }
    };
    if !report.finished {
        return Err(Error::Internal(
            "the destination writer stopped before the end of the sync".into(),
        ));
    }
    if !report.refused.is_empty() {
        return Err(Error::DeletesRefused {
            refused: report.refused,
            max_fraction: opts.max_delete_fraction,
        });
    }
    let mut summary = report.summary;
    for name in table_names {
        summary.tables.entry(name).or_default();
    }
    Ok(SyncSummary {
        connector: name,
        destination,
        tables: summary.tables,
        rejected: summary.rejected,
        rows: stats.stream.rows.load(Ordering::Relaxed),
        pages: stats.stream.pages.load(Ordering::Relaxed),
        requests: http_metrics.requests.load(Ordering::Relaxed),
        retries: http_metrics.retries.load(Ordering::Relaxed),
        bytes: http_metrics.bytes.load(Ordering::Relaxed),
        waited_secs: http_metrics.waited_ms.load(Ordering::Relaxed) as f64 / 1e3,
        token_refreshes: http_metrics.token_refreshes.load(Ordering::Relaxed),
        commits: report.commits,
        read_secs,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Channels to the writer thread: its messages, the saved state it sends
/// once the destination is ready, and its report when it ends.
type WriterChannels = (
    mpsc::Sender<WriterMsg>,
    oneshot::Receiver<State>,
    oneshot::Receiver<Result<WriterReport>>,
);

/// Start the destination's writer thread.
fn spawn_writer(
    dest: Box<dyn Destination>,
    (name, owner): (&str, String),
    tables: Vec<Arc<crate::schema::TableSchema>>,
    opts: &SyncOptions,
    stats: &Arc<RunStats>,
) -> Result<WriterChannels> {
    let (msg_tx, msg_rx) = mpsc::channel::<WriterMsg>(opts.channel_capacity);
    let (state_tx, state_rx) = oneshot::channel::<State>();
    let (done_tx, done_rx) = oneshot::channel::<Result<WriterReport>>();
    let writer_opts = opts.clone();
    let writer_name = name.to_string();
    let writer_stats = stats.clone();
    ACTIVE_WRITERS.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("etl-writer".into())
        .spawn(move || {
            let r = writer::writer_loop(
                dest,
                (&writer_name, &owner),
                &tables,
                writer_opts,
                &writer_stats,
                state_tx,
                msg_rx,
            );
            ACTIVE_WRITERS.fetch_sub(1, Ordering::SeqCst);
            let _ = done_tx.send(r);
        })
        .map_err(|e| {
            ACTIVE_WRITERS.fetch_sub(1, Ordering::SeqCst);
            Error::Internal(format!("cannot start writer thread: {e}"))
        })?;
    Ok((msg_tx, state_rx, done_rx))
}

/// Tell the writer the sync is complete and wait for its last commit.
async fn finish(
    msg_tx: mpsc::Sender<WriterMsg>,
    done_rx: oneshot::Receiver<Result<WriterReport>>,
) -> Result<WriterReport> {
    if msg_tx.send(WriterMsg::Finish).await.is_err() {
        return Err(writer_failure(done_rx).await);
    }
    drop(msg_tx);
    match done_rx.await {
        Ok(r) => r,
        Err(_) => Err(Error::Internal("the destination writer panicked".into())),
    }
}

async fn writer_failure(done_rx: oneshot::Receiver<Result<WriterReport>>) -> Error {
    match done_rx.await {
        Ok(Err(e)) => e,
        _ => Error::Internal("the destination writer stopped unexpectedly".into()),
    }
}
