//! The sync state in a Delta lake: the table `_etl_state`, one row per
//! connector and stream (the stream's state as JSON), so writers syncing
//! different streams of one connector never overwrite each other's; only
//! the streams whose state changed are written by a commit. A row with
//! the stream "" records that the connector committed at all (its state
//! may hold no stream, after `etl reset`). The schema's naming is the
//! table's `etl.naming` property.

use arrow::array::{StringArray, TimestampMicrosecondArray};

use super::schema::NAMING;
use super::*;

pub(in crate::dest::parquet) const STATE_TABLE: &str = "_etl_state";

fn state_schema() -> TableSchema {
    TableSchema::new(
        STATE_TABLE,
        &["connector", "stream"],
        vec![
            Column::new("connector", ColumnType::String),
            Column::new("stream", ColumnType::String),
            Column::new("version", ColumnType::Long),
            Column::new("state", ColumnType::String),
            Column::new("committed_at", ColumnType::UtcDatetime),
        ],
    )
}

impl ParquetDestination {
    /// Read the committed state rows (and the naming) of the schema.
    pub(super) fn load_state_rows(&mut self) -> Result<()> {
        let Some(t) = self.tables.get(STATE_TABLE) else {
            return Ok(());
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
        let cols: Vec<String> = ["connector", "stream", "version", "state", t.deleted]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut committed = BTreeMap::new();
        let mut connectors: BTreeMap<String, State> = BTreeMap::new();
        for f in t.files.values() {
            for b in ctx.read(t, f, Some(&cols))? {
                let b = b?;
                let col = |n: &str| -> Result<ArrayRef> {
                    b.column_by_name(n)
                        .cloned()
                        .ok_or_else(|| ctx.err(STATE_TABLE, format!("no column {n}")))
                };
                let (c, s, v, st, del) = (
                    col("connector")?,
                    col("stream")?,
                    col("version")?,
                    col("state")?,
                    col(t.deleted)?,
                );
                let strs = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
                let (Some(c), Some(s), Some(st)) = (strs(&c), strs(&s), strs(&st)) else {
                    return Err(ctx.err(STATE_TABLE, "columns of unexpected types"));
                };
                let v = v.as_any().downcast_ref::<Int64Array>().cloned();
                let del = del.as_any().downcast_ref::<BooleanArray>().cloned();
                for i in 0..b.num_rows() {
                    if del.as_ref().is_some_and(|d| d.value(i)) {
                        continue;
                    }
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
                    let value: serde_json::Value =
                        serde_json::from_str(st.value(i)).map_err(|e| {
                            ctx.err(
                                format!("{STATE_TABLE}, stream {} of {}", s.value(i), c.value(i)),
                                format!("saved state is not valid JSON: {e}"),
                            )
                        })?;
                    committed.insert(
                        (c.value(i).to_string(), s.value(i).to_string()),
                        st.value(i).to_string(),
                    );
                    let state = connectors.entry(c.value(i).to_string()).or_default();
                    // The connector's own row (stream ""): it committed, maybe no stream yet.
                    if !s.value(i).is_empty() {
                        state.streams.insert(s.value(i).to_string(), value);
                    }
                }
            }
        }
        self.manifest.naming = naming;
        for (c, s) in connectors {
            let v = serde_json::from_str(&s.to_json()).expect("state is JSON");
            self.manifest.connectors.insert(c, v);
        }
        self.lake_mut().committed = committed;
        Ok(())
    }

    /// Queue the state rows of the streams whose state changed (and the
    /// deletes of streams forgotten), and a naming not recorded yet.
    pub(super) fn stage_state(&mut self, state: Option<(&str, &State)>) -> Result<()> {
        let schema = state_schema();
        let naming_changed = self.naming.is_some() && self.naming != self.manifest.naming;
        let Some((connector, state)) = state else {
            if naming_changed || !self.tables.contains_key(STATE_TABLE) {
                self.prepare(&[Arc::new(schema)])?;
            }
            return Ok(());
        };
        let committed = &self.lake().committed;
        let mut upserts: Vec<(String, String)> = Vec::new();
        for (stream, v) in &state.streams {
            let text = serde_json::to_string(v).expect("state serialises");
            if committed.get(&(connector.to_string(), stream.clone())) != Some(&text) {
                upserts.push((stream.clone(), text));
            }
        }
        if !committed.contains_key(&(connector.to_string(), String::new())) {
            upserts.push((String::new(), "{}".to_string()));
        }
        let gone: Vec<String> = committed
            .keys()
            .filter(|(c, s)| c == connector && !s.is_empty() && !state.streams.contains_key(s))
            .map(|(_, s)| s.clone())
            .collect();
        if upserts.is_empty()
            && gone.is_empty()
            && !naming_changed
            && self.tables.contains_key(STATE_TABLE)
        {
            return Ok(());
        }
        self.prepare(&[Arc::new(schema.clone())])?;
        let now = chrono::Utc::now().timestamp_micros();
        if !upserts.is_empty() {
            let n = upserts.len();
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![connector; n])),
                Arc::new(StringArray::from_iter_values(
                    upserts.iter().map(|(s, _)| s.as_str()),
                )),
                Arc::new(Int64Array::from(vec![
                    crate::state::STATE_VERSION as i64;
                    n
                ])),
                Arc::new(StringArray::from_iter_values(
                    upserts.iter().map(|(_, v)| v.as_str()),
                )),
                Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone(UTC)),
            ];
            let batch = RecordBatch::try_new(schema.arrow_schema(), cols)
                .map_err(|e| self.err("saving state", e))?;
            self.upsert(&schema, batch)?;
        }
        if !gone.is_empty() {
            let n = gone.len();
            let key = Arc::new(Schema::new(vec![
                Field::new("connector", DataType::Utf8, false),
                Field::new("stream", DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                key,
                vec![
                    Arc::new(StringArray::from(vec![connector; n])),
                    Arc::new(StringArray::from_iter_values(
                        gone.iter().map(String::as_str),
                    )),
                ],
            )
            .map_err(|e| self.err("saving state", e))?;
            self.delete(&schema, batch)?;
        }
        let lake = self.lake_mut();
        for (s, v) in upserts {
            lake.committed.insert((connector.to_string(), s), v);
        }
        for s in gone {
            lake.committed.remove(&(connector.to_string(), s));
        }
        Ok(())
    }
}
