//! The writer thread: applies a sync's operations to the destination in
//! order and commits data and state together, when a checkpoint is due and
//! at the end. Soft-deletions of unseen rows pass the mass-deletion guard
//! first (`--max-delete-fraction`).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{RefusedDelete, RunStats, SyncOptions, WriterMsg, WriterReport};
use crate::dest::{Destination, WriteSummary};
use crate::error::{Error, Result};
use crate::naming::Renamer;
use crate::schema::TableSchema;
use crate::source::emit::Op;
use crate::state::State;

/// Prepare `dest` for the connector (claim its tables, create its schema,
/// load its state), send the state to the sync, then apply what comes over
/// `rx` until `Finish` (or the channel closes: roll back).
pub(super) fn writer_loop(
    mut dest: Box<dyn Destination>,
    // The connector's name (its state's key) and the owner of its tables.
    (connector, owner): (&str, &str),
    tables: &[Arc<TableSchema>],
    opts: SyncOptions,
    stats: &RunStats,
    state_tx: oneshot::Sender<State>,
    mut rx: mpsc::Receiver<WriterMsg>,
) -> Result<WriterReport> {
    let mut renamer = Renamer::new(opts.naming.unwrap_or_default());
    let state = match setup(dest.as_mut(), &mut renamer, (connector, owner), tables) {
        // `--full-refresh` starts from empty state (keeping a connector's
        // private `_…` entries, such as a rotated OAuth refresh token); the
        // next commit replaces the old one.
        Ok(s) if opts.full_refresh => State {
            streams: s
                .streams
                .into_iter()
                .filter(|(k, _)| k.starts_with('_'))
                .collect(),
            ..State::default()
        },
        Ok(s) => s,
        Err(e) => {
            let _ = dest.rollback();
            return Err(e);
        }
    };
    let _ = state_tx.send(state.clone());
    let mut w = Writer {
        dest,
        connector,
        opts,
        stats,
        renamer,
        state,
        summary: WriteSummary::default(),
        commits: 0,
        rows_since: 0,
        last_commit: Instant::now(),
        dirty: false,
        refused: Vec::new(),
    };
    let result = w.run(&mut rx);
    w.end(result)
}

fn setup(
    dest: &mut dyn Destination,
    renamer: &mut Renamer,
    (connector, owner): (&str, &str),
    tables: &[Arc<TableSchema>],
) -> Result<State> {
    let tables: Vec<Arc<TableSchema>> = tables.iter().map(|t| renamer.table(t)).collect();
    dest.claim(owner, connector, &tables)?;
    dest.prepare(&tables)?;
    Ok(dest.load_state(connector)?.unwrap_or_default())
}

struct Writer<'a> {
    dest: Box<dyn Destination>,
    connector: &'a str,
    opts: SyncOptions,
    stats: &'a RunStats,
    renamer: Renamer,
    /// The state as of the last operation (committed with the data).
    state: State,
    summary: WriteSummary,
    commits: u64,
    rows_since: u64,
    last_commit: Instant,
    /// Operations applied since the last commit.
    dirty: bool,
    refused: Vec<RefusedDelete>,
}

impl Writer<'_> {
    /// Apply operations until `Finish` (true) or a closed channel (false:
    /// the sync failed or was dropped).
    fn run(&mut self, rx: &mut mpsc::Receiver<WriterMsg>) -> Result<bool> {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                WriterMsg::Finish => {
                    if self.dirty || self.commits == 0 {
                        self.commit()?;
                    }
                    return Ok(true);
                }
                WriterMsg::Op(op) => self.apply(op)?,
            }
        }
        Ok(false)
    }

    fn commit(&mut self) -> Result<()> {
        let w = self.dest.commit(self.connector, &self.state)?;
        self.stats.record_commit(&w, &self.state);
        self.summary.add(&w);
        self.commits += 1;
        self.rows_since = 0;
        self.last_commit = Instant::now();
        self.dirty = false;
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<()> {
        let had_changes = self.dirty;
        self.dirty = true;
        match op {
            Op::Upsert { table, batch } => {
                self.rows_since += batch.num_rows() as u64;
                let batch = self.renamer.batch(&table, batch).map_err(Error::Internal)?;
                self.dest.upsert(&self.renamer.table(&table), batch)
            }
            Op::Update { table, batch } => {
                self.rows_since += batch.num_rows() as u64;
                let batch = self.renamer.batch(&table, batch).map_err(Error::Internal)?;
                self.dest.update(&self.renamer.table(&table), batch)
            }
            Op::Delete { table, batch } => {
                self.rows_since += batch.num_rows() as u64;
                let batch = self.renamer.batch(&table, batch).map_err(Error::Internal)?;
                self.dest.delete(&self.renamer.table(&table), batch)
            }
            Op::Truncate { table } => self.dest.truncate(&self.renamer.table(&table)),
            Op::DeleteOlderThan {
                table,
                column,
                before_micros,
                source_total,
            } => {
                self.dirty = had_changes;
                self.delete_unseen(&table, column, before_micros, source_total)
            }
            Op::Reject(mut r) => {
                for r in &mut r {
                    r.table = self.renamer.naming().table(&r.table);
                }
                self.dest.reject(&r)
            }
            Op::Checkpoint {
                stream,
                state,
                force,
            } => {
                self.state.streams.insert(stream, state);
                let due = force
                    || self.rows_since >= self.opts.checkpoint_rows
                    || self.last_commit.elapsed() >= self.opts.checkpoint_interval;
                if !due {
                    return Ok(());
                }
                tracing::info!(rows = self.rows_since, "committed checkpoint");
                self.commit()
            }
        }
    }

    /// Soft-delete the rows of `table` not seen since `before_micros`,
    /// unless the guard refuses (too large a share, and no source total
    /// that agrees).
    fn delete_unseen(
        &mut self,
        table: &Arc<TableSchema>,
        column: String,
        before_micros: i64,
        source_total: Option<u64>,
    ) -> Result<()> {
        let column = self.renamer.column(table, &column).unwrap_or(column);
        let table = self.renamer.table(table);
        if self.opts.max_delete_fraction < 1.0 {
            // A destination that counts only committed rows gets what was
            // read committed first (it is kept whatever the guard decides).
            if self.dirty && !self.dest.counts_uncommitted() {
                self.commit()?;
            }
            let counting = Instant::now();
            let (live, unseen) = self.dest.live_and_stale(&table, &column, before_micros)?;
            tracing::debug!(table = %table.name, live, unseen,
                ms = counting.elapsed().as_millis() as u64,
                "counted the rows the scan did not see");
            let r = RefusedDelete {
                table: table.name.clone(),
                live,
                unseen,
                source_total,
            };
            let share = unseen as f64 / live.max(1) as f64;
            if share > self.opts.max_delete_fraction {
                if source_total != Some(live - unseen) {
                    tracing::warn!(table = %table.name, unseen, live, source_total, "refusing to soft-delete: {r}");
                    self.refused.push(r);
                    return Ok(());
                }
                tracing::info!(table = %table.name, unseen, live, "soft-deleting most rows: the source's total agrees");
            }
        }
        self.dirty = true;
        self.dest.delete_older_than(&table, &column, before_micros)
    }

    /// Report what was committed; roll back what was not.
    fn end(mut self, result: Result<bool>) -> Result<WriterReport> {
        match result {
            Ok(finished) => {
                if !finished {
                    self.dest.rollback()?;
                    tracing::debug!(
                        commits = self.commits,
                        "sync stopped early; rolled back to the last commit"
                    );
                }
                Ok(WriterReport {
                    summary: self.summary,
                    commits: self.commits,
                    finished,
                    refused: self.refused,
                })
            }
            Err(e) => {
                if let Err(re) = self.dest.rollback() {
                    tracing::error!(error = %re, "rollback failed");
                }
                tracing::debug!(
                    commits = self.commits,
                    "writer rolled back to the last commit"
                );
                Err(e)
            }
        }
    }
}
