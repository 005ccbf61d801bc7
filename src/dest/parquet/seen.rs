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
        // The index entries of the upserts' keys before the first sweep, at once.
        let first_sweep = ops
            .iter()
            .position(|o| matches!(o, PendingOp::Sweep(_)))
            .unwrap_or(ops.len());
        let mut iks: Vec<Vec<IndexKey>> = ops[..first_sweep]
            .iter()
            .zip(op_keys.iter())
            .map(|(op, keys)| match (op, keys) {
                (PendingOp::Upsert(_), Some(ks)) => ks.iter().map(|k| index_key(k)).collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut found = index
            .get_many(&iks.concat())
            .map_err(|e| self.index_err(&t.name, e))?
            .into_iter();
        // Keys this commit writes (their stored row no longer decides).
        let mut written = KeySet::default();
        let mut swept = false;
        for (o, (op, keys)) in ops.iter_mut().zip(op_keys.iter_mut()).enumerate() {
            match op {
                PendingOp::Sweep(Sweep::OlderThan { before, spare, .. }) => {
                    let set = spare.as_deref().map_or_else(Spare::default, |s| {
                        s.with(
                            t.seen_out
                                .iter()
                                .filter(|(_, at)| at >= before)
                                .map(|(k, _)| index_key(k)),
                        )
                    });
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
                    let iks = std::mem::take(&mut iks[o]);
                    let entries: Vec<Option<IndexEntry>> = found.by_ref().take(iks.len()).collect();
                    // A key's last row in the batch is the one that counts.
                    let last: KeyMap<usize> =
                        iks.iter().enumerate().map(|(i, k)| (*k, i)).collect();
                    let keep: BooleanArray = iks
                        .iter()
                        .zip(&entries)
                        .map(|(ik, e)| {
                            let same = !written.contains(&ik[0])
                                && e.is_some_and(|e| e.fp == fps[last[ik]]);
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
            }] if c.holds_for(t) => Some(&c.stale),
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
    pub(super) fn seen_keys(&self, seen: &Table, table: &str, since: i64) -> Result<Spare> {
        let mut keys = KeyIndex::default();
        let mut failed = None;
        self.each_seen(seen, table, |k, at| {
            if at >= since && failed.is_none() {
                failed = keys
                    .push(&index_key(k), IndexEntry { file: 0, fp: 0 })
                    .err();
            }
        })?;
        if let Some(e) = failed {
            return Err(self.index_err(table, e));
        }
        keys.seal().map_err(|e| self.index_err(table, e))?;
        Ok(Spare::new(keys))
    }
}

impl ParquetDestination {
    /// The committed `_etl_seen` keys of `table` seen at or after `since`.
    pub(super) fn seen_since(&self, table: &str, since: i64) -> Result<Spare> {
        let Some(seen) = self.tables.get(SEEN_TABLE) else {
            return Ok(Spare::default());
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

/// Rows whose keys a count looks up at once (about 90 bytes each while
/// they are looked up).
const COUNT_BATCH: usize = 1 << 18;

impl ParquetDestination {
    /// Count the live rows of `table`, and those a sweep of the rows with
    /// `column` older than `before` soft-deletes: not seen unchanged since
    /// `before` (`_etl_seen`). The candidates' keys are looked up in
    /// batches, so the seen keys (on disk) are read a few times, not once
    /// per file.
    pub(super) fn count_stale(
        &self,
        table: &str,
        column: &str,
        before: i64,
    ) -> Result<(u64, u64, Counted)> {
        let spare = Arc::new(self.seen_since(table, before)?);
        let t = self.tables.get(table);
        let mut counted = Counted {
            table: table.to_string(),
            column: column.to_string(),
            before,
            live: t.map_or_else(BTreeSet::new, |t| {
                t.files.values().map(|f| f.path.clone()).collect()
            }),
            stale: HashSet::new(),
            stale_keys: None,
            spare: spare.clone(),
        };
        let Some(t) = t.filter(|t| t.has_column(column)) else {
            return Ok((0, 0, counted));
        };
        let ctx = self.ctx(0);
        let keyed = !t.primary_key.is_empty() && !spare.is_empty();
        let mut cols = vec![column.to_string(), t.deleted.to_string()];
        if keyed {
            cols.extend(t.primary_key.iter().cloned());
        }
        let files: Vec<&LiveFile> = t.files.values().collect();
        let (mut live, mut stale) = (0u64, 0u64);
        let mut stale_keys: Vec<(u64, u32)> = Vec::new();
        // Older rows waiting for their keys' lookup: (file, key).
        let mut waiting: Vec<(u32, IndexKey)> = Vec::new();
        let mut resolve = |waiting: &mut Vec<(u32, IndexKey)>,
                           stale: &mut u64,
                           stale_files: &mut HashSet<String>|
         -> Result<()> {
            let keys: Vec<IndexKey> = waiting.iter().map(|w| w.1).collect();
            let seen = spare
                .contains_many(&keys)
                .map_err(|e| ctx.index_err(&t.name, e))?;
            for ((fi, k), seen) in waiting.drain(..).zip(seen) {
                if !seen {
                    *stale += 1;
                    stale_keys.push((k[0], k[1] as u32));
                    stale_files.insert(files[fi as usize].path.clone());
                }
            }
            Ok(())
        };
        for (fi, f) in files.iter().enumerate() {
            for b in ctx.read(t, f, Some(&cols))? {
                let b = b?;
                let deleted = b
                    .column_by_name(t.deleted)
                    .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
                    .ok_or_else(|| ctx.err(&t.name, "no soft-delete column"))?;
                live += deleted.false_count() as u64;
                let Some(older) = ctx.older_live(t, &b, column, before)? else {
                    continue;
                };
                if !keyed {
                    let n = older.true_count() as u64;
                    if n > 0 {
                        stale += n;
                        counted.stale.insert(f.path.clone());
                    }
                    continue;
                }
                let keys = ctx.keys(t, &b)?;
                for (i, k) in keys.iter().enumerate() {
                    if older.value(i) {
                        waiting.push((fi as u32, index_key(k)));
                    }
                }
                if waiting.len() >= COUNT_BATCH {
                    resolve(&mut waiting, &mut stale, &mut counted.stale)?;
                }
            }
        }
        if keyed {
            resolve(&mut waiting, &mut stale, &mut counted.stale)?;
            stale_keys.sort_unstable();
            stale_keys.dedup();
            counted.stale_keys = Some(stale_keys);
        }
        Ok((live, stale, counted))
    }
}
