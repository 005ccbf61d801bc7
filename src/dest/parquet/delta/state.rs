//! The sync state in a Delta lake: the table `_etl_state`, an append-only
//! history of state rows, one per connector and stream and commit (the
//! stream's state as JSON, `NULL` once the stream is forgotten), each with
//! the stream's sequence number `seq`; the row with the highest `seq` of a
//! stream is its state. A row with the stream "" records that the connector
//! committed at all (its state may hold no stream, after `etl reset`). The
//! schema's naming is the table's `etl.naming` property.
//!
//! Why append-only: without a read predicate delta-rs treats any concurrent
//! commit that removed a file as a conflict, so a state table merged by key
//! (copy-on-write, one rewritten file holding every stream's row) made every
//! pair of writers of one connector conflict on every commit and, with
//! commits faster than a retry, lock each other out. Appends of different
//! streams never conflict; each state commit carries one Delta application
//! transaction (`txn`, app id `etl:<connector>/<stream>`, version `seq`) per
//! stream it writes, so two writers of the same stream do conflict and the
//! loser numbers its rows again on top. Small files are compacted as in any
//! table, with `dataChange: false` (the rows are copied as they are) and an
//! application transaction of their own, so two compactions conflict.

use arrow::array::{StringArray, TimestampMicrosecondArray};

use super::schema::NAMING;
use super::*;

pub(in crate::dest::parquet) const STATE_TABLE: &str = "_etl_state";

/// The application transaction id of compactions of the state table.
pub(super) const COMPACTION_TXN: &str = "etl:_etl_state/compaction";

/// The application transaction id of a connector's stream.
fn txn_id(connector: &str, stream: &str) -> String {
    format!("etl:{connector}/{stream}")
}

fn state_schema() -> TableSchema {
    TableSchema::new(
        STATE_TABLE,
        &[],
        vec![
            Column::new("connector", ColumnType::String),
            Column::new("stream", ColumnType::String),
            Column::new("version", ColumnType::Long),
            Column::new("state", ColumnType::String),
            Column::new("committed_at", ColumnType::UtcDatetime),
            Column::new("seq", ColumnType::Long),
        ],
    )
}

/// A state row read back: its stream's sequence number and state (`None`:
/// forgotten).
struct StateRow {
    seq: i64,
    state: Option<String>,
}

/// The latest row of each (connector, stream), and the recorded naming.
type StateTable = (
    BTreeMap<(String, String), StateRow>,
    Option<crate::naming::Naming>,
);

/// The state rows of one commit, staged: (stream, seq, state) of one
/// connector, applied to what is known as committed once the commit succeeds.
pub(super) struct StagedState {
    connector: String,
    rows: Vec<(String, i64, Option<String>)>,
}

impl StagedState {
    /// The Delta application transactions of the rows: (app id, version).
    pub(super) fn txns(&self) -> impl Iterator<Item = (String, i64)> + '_ {
        self.rows
            .iter()
            .map(|(s, q, _)| (txn_id(&self.connector, s), *q))
    }
}

impl ParquetDestination {
    /// The latest row of each (connector, stream) in the state table, and
    /// the naming it records.
    fn read_state_table(&self) -> Result<StateTable> {
        let mut latest: BTreeMap<(String, String), StateRow> = BTreeMap::new();
        let Some(t) = self.tables.get(STATE_TABLE) else {
            return Ok((latest, None));
        };
        let lake = self.lake();
        let mut naming = None;
        if let Some(table) = lake.logs.get(STATE_TABLE) {
            if let Ok(snap) = table.snapshot() {
                if let Some(n) = snap.metadata().configuration().get(NAMING) {
                    naming = Some(crate::naming::Naming::parse(n).map_err(|e| {
                        lake.err(format!("table {STATE_TABLE}, property {NAMING}"), e)
                    })?);
                }
            }
        }
        let ctx = Ctx {
            root: &self.root,
            origin: lake.shown.clone(),
            opts: &self.opts,
            commit: 0,
            io: Some(lake.io()),
        };
        let cols: Vec<String> = ["connector", "stream", "version", "state", "seq", t.deleted]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for f in t.files.values() {
            for b in ctx.read(t, f, Some(&cols))? {
                let b = b?;
                let col = |n: &str| -> Result<ArrayRef> {
                    b.column_by_name(n)
                        .cloned()
                        .ok_or_else(|| ctx.err(STATE_TABLE, format!("no column {n}")))
                };
                let (c, s, v, st) = (
                    col("connector")?,
                    col("stream")?,
                    col("version")?,
                    col("state")?,
                );
                let strs = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
                let (Some(c), Some(s), Some(st)) = (strs(&c), strs(&s), strs(&st)) else {
                    return Err(ctx.err(STATE_TABLE, "columns of unexpected types"));
                };
                let v = v.as_any().downcast_ref::<Int64Array>().cloned();
                // Rows of a state table from before `seq` have none: 0.
                let seq = b
                    .column_by_name("seq")
                    .and_then(|a| a.as_any().downcast_ref::<Int64Array>().cloned());
                // ... and were deleted by the soft-delete flag.
                let del = b
                    .column_by_name(t.deleted)
                    .and_then(|a| a.as_any().downcast_ref::<BooleanArray>().cloned());
                for i in 0..b.num_rows() {
                    let version = v.as_ref().map_or(1, |v| v.value(i)) as u32;
                    if version > crate::state::STATE_VERSION {
                        return Err(ctx.err(
                            STATE_TABLE,
                            format!(
                                "saved state has format version {version} but this etl understands up to {}; upgrade etl",
                                crate::state::STATE_VERSION
                            ),
                        ));
                    }
                    let forgotten =
                        st.is_null(i) || del.as_ref().is_some_and(|d| d.is_valid(i) && d.value(i));
                    let row = StateRow {
                        seq: seq
                            .as_ref()
                            .filter(|a| a.is_valid(i))
                            .map_or(0, |a| a.value(i)),
                        state: (!forgotten).then(|| st.value(i).to_string()),
                    };
                    let key = (c.value(i).to_string(), s.value(i).to_string());
                    match latest.get(&key) {
                        // Equal numbers only in a state table from before `seq`.
                        Some(old) if old.seq > row.seq => {}
                        _ => {
                            latest.insert(key, row);
                        }
                    }
                }
            }
        }
        Ok((latest, naming))
    }

    /// Read the committed state (and the naming) of the schema.
    pub(super) fn load_state_rows(&mut self) -> Result<()> {
        let (latest, naming) = self.read_state_table()?;
        let origin = self.lake().shown.clone();
        let mut committed = BTreeMap::new();
        let mut seqs = BTreeMap::new();
        let mut connectors: BTreeMap<String, State> = BTreeMap::new();
        for ((c, s), row) in latest {
            seqs.insert((c.clone(), s.clone()), row.seq);
            let Some(text) = row.state else { continue };
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::destination(
                    &origin,
                    format!("{STATE_TABLE}, stream {s} of {c}: saved state is not valid JSON: {e}"),
                )
            })?;
            let state = connectors.entry(c.clone()).or_default();
            // The connector's own row (stream ""): it committed, maybe no stream yet.
            if !s.is_empty() {
                state.streams.insert(s.clone(), value);
            }
            committed.insert((c, s), text);
        }
        self.manifest.naming = naming;
        for (c, s) in connectors {
            let v = serde_json::from_str(&s.to_json()).expect("state is JSON");
            self.manifest.connectors.insert(c, v);
        }
        let lake = self.lake_mut();
        lake.committed = committed;
        lake.seqs = seqs;
        Ok(())
    }

    /// After a conflict: the state table (which exists) read again, and the streams'
    /// sequence numbers as other writers left them (what this writer
    /// changes is still judged against the state it started from).
    pub(super) fn refresh_state_seqs(&mut self) -> Result<()> {
        self.reload(STATE_TABLE)?;
        let (latest, _) = self.read_state_table()?;
        self.lake_mut().seqs = latest.into_iter().map(|(k, r)| (k, r.seq)).collect();
        Ok(())
    }

    /// Queue the state rows of the streams whose state changed (and of the
    /// streams forgotten), numbered after the last committed ones (kept as
    /// the lake's `staged`); and a naming not recorded yet.
    pub(super) fn stage_state(&mut self, state: Option<(&str, &State)>) -> Result<()> {
        let schema = state_schema();
        let naming_changed = self.naming.is_some() && self.naming != self.manifest.naming;
        self.lake_mut().staged = None;
        let Some((connector, state)) = state else {
            if naming_changed || !self.tables.contains_key(STATE_TABLE) {
                self.prepare(&[Arc::new(schema)])?;
            }
            return Ok(());
        };
        let lake = self.lake();
        let key = |s: &str| (connector.to_string(), s.to_string());
        let next = |s: &str| lake.seqs.get(&key(s)).copied().unwrap_or(0) + 1;
        let mut staged = StagedState {
            connector: connector.to_string(),
            rows: Vec::new(),
        };
        for (stream, v) in &state.streams {
            let text = serde_json::to_string(v).expect("state serialises");
            if lake.committed.get(&key(stream)) != Some(&text) {
                staged.rows.push((stream.clone(), next(stream), Some(text)));
            }
        }
        if !lake.committed.contains_key(&key("")) {
            staged
                .rows
                .push((String::new(), next(""), Some("{}".to_string())));
        }
        for (c, s) in lake.committed.keys() {
            if c == connector && !s.is_empty() && !state.streams.contains_key(s) {
                staged.rows.push((s.clone(), next(s), None));
            }
        }
        if staged.rows.is_empty() && !naming_changed && self.tables.contains_key(STATE_TABLE) {
            return Ok(());
        }
        self.prepare(&[Arc::new(schema.clone())])?;
        if staged.rows.is_empty() {
            return Ok(());
        }
        let n = staged.rows.len();
        let now = chrono::Utc::now().timestamp_micros();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![connector; n])),
            Arc::new(StringArray::from_iter_values(
                staged.rows.iter().map(|(s, _, _)| s.as_str()),
            )),
            Arc::new(Int64Array::from(vec![
                crate::state::STATE_VERSION as i64;
                n
            ])),
            Arc::new(StringArray::from_iter(
                staged.rows.iter().map(|(_, _, v)| v.as_deref()),
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone(UTC)),
            Arc::new(Int64Array::from_iter_values(
                staged.rows.iter().map(|(_, q, _)| *q),
            )),
        ];
        let batch = RecordBatch::try_new(schema.arrow_schema(), cols)
            .map_err(|e| self.err("saving state", e))?;
        self.upsert(&schema, batch)?;
        self.lake_mut().staged = Some(staged);
        Ok(())
    }

    /// What the state table now holds, once the staged rows committed.
    pub(super) fn state_committed(&mut self) {
        let lake = self.lake_mut();
        let Some(staged) = lake.staged.take() else {
            return;
        };
        for (s, q, v) in staged.rows {
            let key = (staged.connector.clone(), s);
            lake.seqs.insert(key.clone(), q);
            match v {
                Some(v) => lake.committed.insert(key, v),
                None => lake.committed.remove(&key),
            };
        }
    }
}
