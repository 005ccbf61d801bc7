//! Unchanged rows: an upsert whose row equals the live version (same
//! fingerprint in the key index) writes nothing and rewrites no file. Its
//! sync time is then not moved, so the key is recorded in `_etl_seen`
//! (table, key, seen at), where a later sweep of the rows a scan did not see
//! finds it and spares the row; the sweep then forgets the table's entries.

use super::*;

/// Keys a scan saw unchanged, per table (its partitions), until the table's
/// next sweep.
pub(super) const SEEN_TABLE: &str = "_etl_seen";

/// The declaration of `_etl_seen`: appended to (no primary key, so no key
/// index of its own), partitioned by table so a sweep drops its table's
/// files whole.
pub(super) fn seen_schema() -> TableSchema {
    let mut t = TableSchema::new(
        SEEN_TABLE,
        &[],
        vec![
            Column::new("table_name", ColumnType::String),
            Column::new("key", ColumnType::Binary),
            Column::new("seen_at", ColumnType::UtcDatetime),
        ],
    );
    t.partition_by = Some(Partitioning {
        column: "table_name".into(),
        transform: PartitionTransform::Identity,
    });
    t
}

/// The `_etl_seen` partition holding `table`'s entries.
pub(super) fn seen_partition(table: &str) -> String {
    format!("table_name_value={}", escape_partition(table))
}

impl Ctx<'_> {
    /// Take out of the upserts the rows whose key's live row has the same
    /// fingerprint, unless an earlier operation of this commit wrote the key
    /// or swept the table; count them as unchanged and keep their keys (and
    /// sync times) in `t.seen_out`. A sweep by time spares the keys seen so
    /// far in this commit, which it then uses up.
    pub(super) fn set_aside_unchanged(
        &self,
        t: &mut Table,
        schema: &SchemaRef,
        ops: &mut [PendingOp],
        op_keys: &mut [Option<Vec<Key>>],
        counts: &mut TableCounts,
    ) -> Result<()> {
        t.seen_out.clear();
        t.forget_seen = false;
        let Some(index) = t.index.take() else {
            return Ok(());
        };
        let r = self.set_aside(t, &index, schema, ops, op_keys, counts);
        t.index = Some(index);
        r
    }

    fn set_aside(
        &self,
        t: &mut Table,
        index: &KeyIndex,
        schema: &SchemaRef,
        ops: &mut [PendingOp],
        op_keys: &mut [Option<Vec<Key>>],
        counts: &mut TableCounts,
    ) -> Result<()> {
        let synced = t
            .synced
            .iter()
            .find(|c| schema.index_of(c).is_ok())
            .cloned();
        // Keys this commit writes (their stored row no longer decides).
        let mut written = KeySet::default();
        let mut swept = false;
        for (op, keys) in ops.iter_mut().zip(op_keys.iter_mut()) {
            match op {
                PendingOp::Sweep(Sweep::OlderThan { before, spare, .. }) => {
                    let mut set = spare.as_deref().cloned().unwrap_or_default();
                    set.extend(
                        t.seen_out
                            .iter()
                            .filter(|(_, at)| at >= before)
                            .map(|(k, _)| index_key(k)[0]),
                    );
                    *spare = Some(Arc::new(set));
                    t.seen_out.clear();
                    t.forget_seen = true;
                    swept = true;
                }
                PendingOp::Sweep(_) => {
                    t.seen_out.clear();
                    t.forget_seen = true;
                    swept = true;
                }
                PendingOp::Upsert(b) if !swept => {
                    let Some(ks) = keys else { continue };
                    let aligned = self.align(t, schema, b)?;
                    let fps = self.fingerprints(t, &aligned)?;
                    // A key's last row in the batch is the one that counts.
                    let iks: Vec<IndexKey> = ks.iter().map(|k| index_key(k)).collect();
                    let last: KeyMap<usize> =
                        iks.iter().enumerate().map(|(i, k)| (*k, i)).collect();
                    let keep: BooleanArray = iks
                        .iter()
                        .map(|ik| {
                            let same = !written.contains(&ik[0])
                                && index.get(ik).is_some_and(|e| e.fp == fps[last[ik]]);
                            Some(!same)
                        })
                        .collect();
                    let same = keep.false_count();
                    if same == 0 {
                        written.extend(iks.iter().map(|k| k[0]));
                    } else {
                        counts.unchanged += same as u64;
                        let at = match &synced {
                            Some(c) => Some(
                                compute::cast(
                                    aligned.column_by_name(c).expect("aligned"),
                                    &DataType::Int64,
                                )
                                .map_err(|e| {
                                    self.err(format!("table {}, column {c}", t.name), e)
                                })?,
                            ),
                            None => None,
                        };
                        let at = at
                            .as_ref()
                            .map(|a| a.as_any().downcast_ref::<Int64Array>().expect("int64"));
                        let mut kept = Vec::with_capacity(ks.len() - same);
                        for (i, k) in std::mem::take(ks).into_iter().enumerate() {
                            if keep.value(i) {
                                written.insert(iks[i][0]);
                                kept.push(k);
                            } else if let Some(at) = at.filter(|a| a.is_valid(i)) {
                                t.seen_out.push((k, at.value(i)));
                            }
                        }
                        *ks = kept;
                    }
                    // Aligned once: applying the batch finds it aligned.
                    *b = match same {
                        0 => aligned,
                        _ => compute::filter_record_batch(&aligned, &keep)
                            .map_err(|e| self.err(&t.name, e))?,
                    };
                }
                _ => {
                    if let Some(ks) = keys {
                        written.extend(ks.iter().map(|k| index_key(k)[0]));
                    }
                }
            }
        }
        Ok(())
    }

    /// The files holding stale rows, when the only sweep was counted just
    /// before on the files the table still has.
    pub(super) fn counted_stale<'s>(
        &self,
        t: &Table,
        sweeps: &'s [Sweep],
    ) -> Option<&'s HashSet<String>> {
        match sweeps {
            [Sweep::OlderThan {
                counted: Some(c), ..
            }] if c.live.len() == t.files.len()
                && t.files.values().all(|f| c.live.contains(&f.path)) =>
            {
                Some(&c.stale)
            }
            _ => None,
        }
    }

    /// Whether `sweeps` change a row of `f`, read where statistics cannot
    /// tell (a sweep sparing seen keys: their rows are old but not stale).
    pub(super) fn sweep_hits(&self, t: &Table, f: &LiveFile, sweeps: &[Sweep]) -> Result<bool> {
        let precise = sweeps
            .iter()
            .all(|s| matches!(s, Sweep::OlderThan { spare: Some(spare), .. } if !spare.is_empty()));
        if !precise || t.primary_key.is_empty() {
            return Ok(true);
        }
        let mut cols = t.primary_key.clone();
        cols.push(t.deleted.to_string());
        for s in sweeps {
            if let Sweep::OlderThan { column, .. } = s {
                if t.has_column(column) && !cols.contains(column) {
                    cols.push(column.clone());
                }
            }
        }
        for b in self.read(t, f, Some(&cols))? {
            let b = b?;
            let keys = self.keys(t, &b)?;
            for s in sweeps {
                if self.sweep(t, b.clone(), Some(&keys), s)?.1 > 0 {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Call `f` with every (key, seen at) entry `seen` holds for `table`.
    fn each_seen(&self, seen: &Table, table: &str, mut f: impl FnMut(&[u8], i64)) -> Result<()> {
        let part = seen_partition(table);
        let cols = ["key".to_string(), "seen_at".to_string()];
        for file in seen.files.values().filter(|f| f.partition() == part) {
            for b in self.read(seen, file, Some(&cols))? {
                let b = b?;
                let key = b.column_by_name("key").and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::BinaryArray>()
                        .cloned()
                });
                let at = b
                    .column_by_name("seen_at")
                    .map(|c| compute::cast(c, &DataType::Int64));
                let (Some(key), Some(Ok(at))) = (key, at) else {
                    return Err(self.err(
                        &file.path,
                        "an _etl_seen file lacks a binary key or a seen_at time",
                    ));
                };
                let at = at.as_any().downcast_ref::<Int64Array>().expect("int64");
                for i in 0..b.num_rows() {
                    f(key.value(i), at.value(i));
                }
            }
        }
        Ok(())
    }

    /// The entries `seen` holds for `table`: each key once, when last seen.
    fn seen_entries(&self, seen: &Table, table: &str) -> Result<HashMap<Key, i64>> {
        let mut last: HashMap<Key, i64> = HashMap::new();
        self.each_seen(seen, table, |k, at| {
            let e = last.entry(k.into()).or_insert(at);
            *e = (*e).max(at);
        })?;
        Ok(last)
    }

    /// The keys `seen` holds for `table` seen at or after `since`.
    pub(super) fn seen_keys(&self, seen: &Table, table: &str, since: i64) -> Result<KeySet> {
        let mut out = KeySet::default();
        self.each_seen(seen, table, |k, at| {
            if at >= since {
                out.insert(index_key(k)[0]);
            }
        })?;
        Ok(out)
    }
}

impl ParquetDestination {
    /// The committed `_etl_seen` keys of `table` seen at or after `since`.
    pub(super) fn seen_since(&self, table: &str, since: i64) -> Result<KeySet> {
        let Some(seen) = self.tables.get(SEEN_TABLE) else {
            return Ok(KeySet::default());
        };
        self.ctx(0).seen_keys(seen, table, since)
    }

    /// After the data tables are planned: their sweeps' forgetting and the
    /// keys they found unchanged become operations on `_etl_seen`. Whether
    /// there are any.
    pub(super) fn queue_seen(&mut self) -> Result<bool> {
        let mut forget = Vec::new();
        // Per table: its new entries, and (when they add to its old ones)
        // how many keys the table has.
        type Entries = (String, Vec<(Key, i64)>, Option<usize>);
        let mut entries: Vec<Entries> = Vec::new();
        for (name, t) in self.tables.iter_mut() {
            if name == SEEN_TABLE {
                continue;
            }
            let forgotten = std::mem::take(&mut t.forget_seen);
            if forgotten {
                forget.push(name.clone());
            }
            let new = std::mem::take(&mut t.seen_out);
            if !new.is_empty() {
                let keys = (!forgotten).then(|| t.index.as_ref().map_or(0, |i| i.len()));
                entries.push((name.clone(), new, keys));
            }
        }
        // A table that is never swept (a cursor stream re-reading its
        // lookback) has its entries merged, one per key, once they are twice
        // as many as its keys.
        if let Some(seen) = self.tables.get(SEEN_TABLE) {
            for (name, new, keys) in &mut entries {
                let Some(keys) = *keys else { continue };
                let part = seen_partition(name);
                let held: u64 = seen
                    .files
                    .values()
                    .filter(|f| f.partition() == part)
                    .map(|f| f.rows)
                    .sum();
                if held + new.len() as u64 > 2 * (keys as u64).max(1024) {
                    tracing::debug!(table = %name, entries = held, keys, "merging seen entries");
                    let mut last = self.ctx(0).seen_entries(seen, name)?;
                    for (k, at) in new.drain(..) {
                        let e = last.entry(k).or_insert(at);
                        *e = (*e).max(at);
                    }
                    *new = last.into_iter().collect();
                    forget.push(name.clone());
                }
            }
        }
        let had_table = self.tables.contains_key(SEEN_TABLE);
        if entries.is_empty() && (forget.is_empty() || !had_table) {
            return Ok(false);
        }
        let schema = seen_schema();
        let arrow_schema = schema.arrow_schema();
        let seen = self.ensure_table(&schema)?;
        for name in forget {
            seen.ops.push(PendingOp::Sweep(Sweep::Forget {
                partition: seen_partition(&name),
            }));
        }
        for (name, new, _) in &entries {
            for chunk in new.chunks(READ_BATCH_ROWS) {
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        name.as_str(),
                        chunk.len(),
                    ))),
                    Arc::new(arrow::array::BinaryArray::from_iter_values(
                        chunk.iter().map(|(k, _)| &**k),
                    )),
                    Arc::new(
                        arrow::array::TimestampMicrosecondArray::from_iter_values(
                            chunk.iter().map(|(_, at)| *at),
                        )
                        .with_timezone(UTC),
                    ),
                ];
                let batch = RecordBatch::try_new(arrow_schema.clone(), cols)
                    .map_err(|e| Error::Internal(format!("recording seen rows: {e}")))?;
                seen.ops.push(PendingOp::Upsert(batch));
            }
        }
        Ok(true)
    }
}
