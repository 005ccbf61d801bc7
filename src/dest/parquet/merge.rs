//! Merge planning: one table's pending operations turned into the files
//! to write and the files they replace, partition by partition.

use super::*;

/// Everything `commit_table` needs from the destination, borrowed apart from
/// the table it mutates.
pub(super) struct Ctx<'a> {
    pub(super) root: &'a Path,
    pub(super) origin: String,
    pub(super) opts: &'a ParquetOptions,
    pub(super) commit: u64,
    /// Files live in an object store (a Delta lake) instead of under `root`.
    pub(super) io: Option<&'a delta::store::ObjectIo>,
}

/// The index entries of each operation's keys ([`Ctx::lookup`]).
type Found = Vec<Option<Vec<Option<IndexEntry>>>>;

/// What every partition's rewrite shares.
struct Rewrite<'a> {
    schema: SchemaRef,
    /// The changed rows and their keys.
    changed: Option<&'a (RecordBatch, Option<Vec<Key>>)>,
    /// The changed keys: their old versions are dropped from rewritten files.
    changed_set: Option<HashSet<&'a [u8]>>,
    sweeps: &'a [Sweep],
    /// Whether the table's key index is kept up to date.
    keep_index: bool,
}

/// The changed rows of one commit: the latest version of each key touched by
/// an upsert, update or delete, in batches of the table's current schema.
pub(super) struct Work {
    pub(super) segs: Vec<RecordBatch>,
    /// Current version of each row: (segment, row).
    pub(super) cur: Vec<(usize, usize)>,
    /// Key → index in `cur` (tables with a primary key).
    pub(super) map: HashMap<Key, usize>,
    /// Rows of `cur` an upsert has written this commit (counted once).
    pub(super) upserted: Vec<bool>,
}

impl Ctx<'_> {
    /// An error of a key index's temporary files (under `$TMPDIR`).
    pub(super) fn index_err(&self, table: &str, e: std::io::Error) -> Error {
        self.err(
            format!(
                "table {table}: the key index's temporary files in {}",
                std::env::temp_dir().display()
            ),
            e,
        )
    }

    pub(super) fn err(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::destination(self.origin.clone(), format!("{what}: {e}"))
    }

    pub(super) fn table_dir(&self, t: &Table) -> PathBuf {
        self.root.join(&t.name)
    }

    /// Cast `batch` to `schema`: columns by name, missing ones null
    /// (`_etl_deleted` false), types cast to the table's.
    pub(super) fn align(
        &self,
        t: &Table,
        schema: &SchemaRef,
        batch: &RecordBatch,
    ) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let mut cols = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let col = match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => c.clone(),
                Some(c) => compute::cast(c, f.data_type()).map_err(|e| {
                    self.err(
                        format!("table {}, column {}", t.name, f.name()),
                        format!("cannot store {} as {}: {e}", c.data_type(), f.data_type()),
                    )
                })?,
                None if f.name() == t.deleted => {
                    Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef
                }
                None => new_null_array(f.data_type(), n),
            };
            if !f.is_nullable() && col.null_count() > 0 {
                return Err(self.err(
                    format!("table {}, column {}", t.name, f.name()),
                    "a primary key value is null",
                ));
            }
            cols.push(col);
        }
        RecordBatch::try_new_with_options(
            schema.clone(),
            cols,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| self.err(format!("table {}", t.name), e))
    }

    /// The partition directory of each row ("" without partitioning).
    pub(super) fn partitions(&self, t: &Table, batch: &RecordBatch) -> Result<Vec<String>> {
        let Some(p) = &t.partition else {
            return Ok(vec![String::new(); batch.num_rows()]);
        };
        let key = p.key();
        let col = batch
            .column_by_name(&p.column)
            .expect("aligned batches carry every column");
        let value = |v: String| format!("{key}={}", escape_partition(&v));
        let null = || format!("{key}={NULL_PARTITION}");
        let n = batch.num_rows();
        if p.transform == PartitionTransform::Identity {
            let s = compute::cast(col, &DataType::Utf8)
                .map_err(|e| self.err(format!("table {}, column {}", t.name, p.column), e))?;
            let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
            return Ok((0..n)
                .map(|i| {
                    if s.is_null(i) {
                        null()
                    } else {
                        value(s.value(i).to_string())
                    }
                })
                .collect());
        }
        // Dates and timestamps as microseconds since the epoch (UTC).
        let micros: ArrayRef = match col.data_type() {
            DataType::Date32 => {
                let days =
                    compute::cast(col, &DataType::Int32).map_err(|e| self.err(&t.name, e))?;
                let days =
                    compute::cast(&days, &DataType::Int64).map_err(|e| self.err(&t.name, e))?;
                compute::kernels::numeric::mul(&days, &Int64Array::new_scalar(86_400_000_000))
                    .map_err(|e| self.err(&t.name, e))?
            }
            _ => compute::cast(col, &DataType::Int64).map_err(|e| self.err(&t.name, e))?,
        };
        let micros = micros.as_any().downcast_ref::<Int64Array>().expect("int64");
        Ok((0..n)
            .map(|i| {
                if micros.is_null(i) {
                    return null();
                }
                match DateTime::from_timestamp_micros(micros.value(i)) {
                    None => null(),
                    Some(d) => value(match p.transform {
                        PartitionTransform::Year => format!("{:04}", d.year()),
                        PartitionTransform::Month => format!("{:04}-{:02}", d.year(), d.month()),
                        _ => d.format("%Y-%m-%d").to_string(),
                    }),
                }
            })
            .collect())
    }

    /// Plan one table's commit: apply its pending operations to the rows
    /// they change, rewrite the files holding old versions of those rows
    /// (and small files of the partitions written anyway), and record in
    /// `plan` the files added and replaced.
    pub(super) fn commit_table(&self, t: &mut Table, plan: &mut Plan) -> Result<TableCounts> {
        let schema = t.schema();
        let mut counts = TableCounts::default();
        let mut ops = std::mem::take(&mut t.ops);
        // A count made on other files than the table's now no longer says
        // which rows are stale: the sweep looks up every row's key.
        for op in &mut ops {
            if let PendingOp::Sweep(Sweep::OlderThan { counted, .. }) = op {
                if counted.as_ref().is_some_and(|c| !c.holds_for(t)) {
                    *counted = None;
                }
            }
        }

        // 1. Keys of the keyed operations, and the files holding their old versions.
        let mut op_keys = self.op_keys(t, &ops)?;
        if op_keys.iter().any(Option::is_some) && t.index.is_none() {
            t.index = Some(self.load_index(t)?);
        }
        // Upserted rows equal to what is there are left out (and recorded as seen).
        self.set_aside_unchanged(t, &schema, &mut ops, &mut op_keys, &mut counts)?;
        let found = self.lookup(t, &op_keys)?;
        let (mut touched, seed_keys) = self.touched(&ops, &op_keys, &found);
        let sweeps: Vec<Sweep> = ops
            .iter()
            .filter_map(|o| match o {
                PendingOp::Sweep(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if !sweeps.is_empty() {
            let counted = self.counted_stale(t, &sweeps);
            for (&id, f) in &t.files {
                if touched.contains(&id) {
                    continue;
                }
                let hit = match &counted {
                    Some(stale) => stale.contains(&f.path),
                    None => self.may_match(t, f, &sweeps) && self.sweep_hits(t, f, &sweeps)?,
                };
                if hit {
                    touched.insert(id);
                }
            }
        }

        // 2. The old versions that updates and deletes patch.
        let mut work = self.old_versions(t, &schema, &touched, &seed_keys)?;
        drop(seed_keys);

        // 3. Apply the operations in order to the changed rows.
        self.apply(t, &schema, ops, op_keys, &found, &mut work, &mut counts)?;

        // 4. Write: every touched file is rewritten without the changed keys'
        //    old versions; the changed rows go to their partitions.
        let changed = self.changed_rows(t, &work)?;
        let by_partition = match &changed {
            Some((b, _)) => self.rows_by_partition(t, b)?,
            None => BTreeMap::new(),
        };
        let mut files_by_partition: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for &id in &touched {
            files_by_partition
                .entry(t.files[&id].partition().to_string())
                .or_default()
                .push(id);
        }
        self.add_small_files(t, &by_partition, &mut touched, &mut files_by_partition);
        let partitions: BTreeSet<String> = by_partition
            .keys()
            .chain(files_by_partition.keys())
            .cloned()
            .collect();
        let rewrite = Rewrite {
            schema: schema.clone(),
            changed_set: changed
                .as_ref()
                .and_then(|(_, ks)| ks.as_ref())
                .map(|ks| ks.iter().map(|k| &**k).collect()),
            changed: changed.as_ref(),
            sweeps: &sweeps,
            keep_index: t.index.is_some() && !t.primary_key.is_empty(),
        };
        let mut added: Vec<(u32, LiveFile)> = Vec::new();
        for p in &partitions {
            let files = files_by_partition.get(p).map_or(&[][..], Vec::as_slice);
            let rows = by_partition.get(p).map(Vec::as_slice);
            added.extend(self.rewrite_partition(t, plan, p, &rewrite, files, rows, &mut counts)?);
        }
        self.placeholder(t, &schema, plan, &mut touched, &mut added)?;
        if sweeps.iter().any(|s| matches!(s, Sweep::Forget { .. })) {
            // Keys of dropped files would point at files no longer there.
            t.index = None;
        }
        for id in &touched {
            plan.removes
                .push(format!("{}/{}", t.name, t.files[id].path));
        }
        plan.dropped
            .insert(t.name.clone(), touched.into_iter().collect());
        plan.added.insert(t.name.clone(), added);
        Ok(counts)
    }

    /// The keys of each keyed operation (`None`: unkeyed, or a sweep).
    fn op_keys(&self, t: &Table, ops: &[PendingOp]) -> Result<Vec<Option<Vec<Key>>>> {
        let has_pk = !t.primary_key.is_empty();
        ops.iter()
            .map(|op| match op {
                PendingOp::Upsert(b) | PendingOp::Update(b) | PendingOp::Delete(b) if has_pk => {
                    Ok(Some(self.keys(t, b)?))
                }
                _ => Ok(None),
            })
            .collect()
    }

    /// The index entries of each keyed operation's keys, looked up at once
    /// (`None`: unkeyed, a sweep, or no index).
    fn lookup(&self, t: &Table, op_keys: &[Option<Vec<Key>>]) -> Result<Found> {
        let Some(index) = &t.index else {
            return Ok(op_keys.iter().map(|_| None).collect());
        };
        let all: Vec<IndexKey> = op_keys
            .iter()
            .flatten()
            .flatten()
            .map(|k| index_key(k))
            .collect();
        let mut entries = index
            .get_many(&all)
            .map_err(|e| self.index_err(&t.name, e))?
            .into_iter();
        Ok(op_keys
            .iter()
            .map(|ks| {
                ks.as_ref()
                    .map(|ks| entries.by_ref().take(ks.len()).collect())
            })
            .collect())
    }

    /// The files holding old versions of the operations' keys, and the keys
    /// whose old versions an update or delete patches.
    fn touched<'k>(
        &self,
        ops: &[PendingOp],
        op_keys: &'k [Option<Vec<Key>>],
        found: &Found,
    ) -> (BTreeSet<u32>, HashSet<&'k [u8]>) {
        let mut touched = BTreeSet::new();
        let mut seed_keys = HashSet::new();
        for ((op, keys), found) in ops.iter().zip(op_keys).zip(found) {
            let (Some(keys), Some(found)) = (keys, found) else {
                continue;
            };
            for (k, e) in keys.iter().zip(found) {
                if let Some(e) = e {
                    touched.insert(e.file);
                    if !matches!(op, PendingOp::Upsert(_)) {
                        seed_keys.insert(&**k);
                    }
                }
            }
        }
        (touched, seed_keys)
    }

    /// The current rows of `seed_keys`, read from the touched files.
    fn old_versions(
        &self,
        t: &Table,
        schema: &SchemaRef,
        touched: &BTreeSet<u32>,
        seed_keys: &HashSet<&[u8]>,
    ) -> Result<Work> {
        let mut work = Work {
            segs: Vec::new(),
            cur: Vec::new(),
            map: HashMap::new(),
            upserted: Vec::new(),
        };
        if seed_keys.is_empty() {
            return Ok(work);
        }
        for id in touched {
            for b in self.read(t, &t.files[id], None)? {
                let b = self.align(t, schema, &b?)?;
                let keys = self.keys(t, &b)?;
                let rows: Vec<u32> = (0..keys.len() as u32)
                    .filter(|&i| seed_keys.contains(&*keys[i as usize]))
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let b =
                    compute::take_record_batch(&b, &arrow::array::UInt32Array::from(rows.clone()))
                        .map_err(|e| self.err(&t.name, e))?;
                let seg = work.segs.len();
                work.segs.push(b);
                for (j, &i) in rows.iter().enumerate() {
                    work.map.insert(keys[i as usize].clone(), work.cur.len());
                    work.cur.push((seg, j));
                    work.upserted.push(false);
                }
            }
        }
        Ok(work)
    }

    /// The changed rows in one batch, with their keys (a keyed table).
    fn changed_rows(
        &self,
        t: &Table,
        work: &Work,
    ) -> Result<Option<(RecordBatch, Option<Vec<Key>>)>> {
        if work.cur.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = work.segs.iter().collect();
        let b =
            compute::interleave_record_batch(&refs, &work.cur).map_err(|e| self.err(&t.name, e))?;
        let keys = match t.primary_key.is_empty() {
            true => None,
            false => Some(self.keys(t, &b)?),
        };
        Ok(Some((b, keys)))
    }

    /// Row numbers of `b` by partition.
    fn rows_by_partition(&self, t: &Table, b: &RecordBatch) -> Result<BTreeMap<String, Vec<u32>>> {
        let mut by_partition: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, p) in self.partitions(t, b)?.into_iter().enumerate() {
            by_partition.entry(p).or_default().push(i as u32);
        }
        Ok(by_partition)
    }

    /// Merge a partition's many small files while writing it anyway: they
    /// join the files to rewrite. Files are merged with files of about their
    /// size (the same power of 4 of bytes), so what one merge wrote is not
    /// rewritten by the next merge of small files, over and over as the
    /// partition grows: a row is rewritten once per tier, a handful of times.
    fn add_small_files(
        &self,
        t: &Table,
        by_partition: &BTreeMap<String, Vec<u32>>,
        touched: &mut BTreeSet<u32>,
        files_by_partition: &mut BTreeMap<String, Vec<u32>>,
    ) {
        let small = (self.opts.file_bytes / 16) as u64;
        for p in by_partition.keys() {
            let mut tiers: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for (id, f) in &t.files {
                if f.partition() != p || touched.contains(id) {
                    continue;
                }
                let bytes = f.bytes.or_else(|| {
                    fs::metadata(self.table_dir(t).join(&f.path))
                        .ok()
                        .map(|m| m.len())
                });
                if let Some(n) = bytes.filter(|&n| n < small) {
                    tiers.entry(n.max(1).ilog2() / 2).or_default().push(*id);
                }
            }
            for (tier, smalls) in tiers {
                if smalls.len() >= COMPACT_FILES {
                    tracing::debug!(table = %t.name, partition = %p, files = smalls.len(),
                        bytes_about = 4u64.pow(tier), "merging small files");
                    touched.extend(&smalls);
                    files_by_partition
                        .entry(p.clone())
                        .or_default()
                        .extend(smalls);
                }
            }
        }
    }

    /// Write partition `p`: its `files` rewritten without the changed keys'
    /// old versions (and swept), then its changed `rows`; the files written.
    /// Every key written is pointed at its new file in the key index as it
    /// is written (a commit that fails after this drops the index: see
    /// `abandon`), so a commit rewriting millions of keys holds none of
    /// them in memory.
    #[allow(clippy::too_many_arguments)]
    fn rewrite_partition(
        &self,
        t: &mut Table,
        plan: &mut Plan,
        p: &str,
        r: &Rewrite,
        files: &[u32],
        rows: Option<&[u32]>,
        counts: &mut TableCounts,
    ) -> Result<Vec<(u32, LiveFile)>> {
        let has_pk = !t.primary_key.is_empty();
        // `finish` numbers the files from here, in the order `write` returns
        // their ordinals.
        let base = t.next_id;
        let mut index = if r.keep_index { t.index.take() } else { None };
        let mut point = |k: &Key, ordinal: u32, fp: u64| -> Result<()> {
            let index = index.as_mut().expect("keep_index");
            let entry = IndexEntry {
                file: base + ordinal,
                fp,
            };
            index
                .insert(index_key(k), entry)
                .map_err(|e| self.index_err(&t.name, e))
        };
        let mut w = PartWriter::new(self, t, p, r.schema.clone(), plan);
        let forgotten = r
            .sweeps
            .iter()
            .any(|s| matches!(s, Sweep::Forget { partition } if partition == p));
        let spares = r
            .sweeps
            .iter()
            .any(|s| matches!(s, Sweep::OlderThan { .. }));
        for id in files.iter().filter(|_| !forgotten) {
            let f = t.files[id].clone();
            for b in self.read(t, &f, None)? {
                let mut b = self.align(t, &r.schema, &b?)?;
                let mut keys = if has_pk && (r.changed_set.is_some() || r.keep_index || spares) {
                    Some(self.keys(t, &b)?)
                } else {
                    None
                };
                if let (Some(set), Some(ks)) = (&r.changed_set, &keys) {
                    let keep: BooleanArray = ks.iter().map(|k| Some(!set.contains(&**k))).collect();
                    if keep.false_count() > 0 {
                        b = compute::filter_record_batch(&b, &keep)
                            .map_err(|e| self.err(&t.name, e))?;
                        keys = Some(
                            ks.iter()
                                .filter(|k| !set.contains(&***k))
                                .cloned()
                                .collect(),
                        );
                    }
                }
                for s in r.sweeps {
                    let (nb, n) = self.sweep(t, b, keys.as_deref(), s)?;
                    counts.deleted += n;
                    b = nb;
                }
                let file = w.write(&b)?;
                if r.keep_index {
                    let fps = self.fingerprints(t, &b)?;
                    for (k, fp) in keys.iter().flatten().zip(fps) {
                        point(k, file, fp)?;
                    }
                }
            }
        }
        if let (Some((b, changed_keys)), Some(rows)) = (r.changed, rows) {
            let part =
                compute::take_record_batch(b, &arrow::array::UInt32Array::from(rows.to_vec()))
                    .map_err(|e| self.err(&t.name, e))?;
            // In slices, so files roll over at their size bound.
            let mut offset = 0;
            while offset < part.num_rows() {
                let len = READ_BATCH_ROWS.min(part.num_rows() - offset);
                let slice = part.slice(offset, len);
                let file = w.write(&slice)?;
                if r.keep_index {
                    let ks = changed_keys.as_ref().expect("keyed");
                    let fps = self.fingerprints(t, &slice)?;
                    for (&i, fp) in rows[offset..offset + len].iter().zip(fps) {
                        point(&ks[i as usize], file, fp)?;
                    }
                }
                offset += len;
            }
        }
        let files = w.finish(&mut t.next_id)?;
        debug_assert!(files
            .iter()
            .enumerate()
            .all(|(i, (id, _))| *id == base + i as u32));
        t.index = index;
        Ok(files)
    }

    /// A declared table with no file at all gets an empty one, so readers
    /// see its columns; once rows arrive, the empty one goes.
    fn placeholder(
        &self,
        t: &mut Table,
        schema: &SchemaRef,
        plan: &mut Plan,
        touched: &mut BTreeSet<u32>,
        added: &mut Vec<(u32, LiveFile)>,
    ) -> Result<()> {
        let remaining = t.files.len() - touched.len() + added.len();
        if remaining == 0 {
            let p = match &t.partition {
                Some(p) => format!("{}={NULL_PARTITION}", p.key()),
                None => String::new(),
            };
            let mut w = PartWriter::new(self, t, &p, schema.clone(), plan);
            w.allow_empty = true;
            w.write(&RecordBatch::new_empty(schema.clone()))?;
            added.extend(w.finish(&mut t.next_id)?);
        } else if added.iter().any(|(_, f)| f.rows > 0) || t.files.values().any(|f| f.rows > 0) {
            for (id, f) in &t.files {
                if f.rows == 0 {
                    touched.insert(*id);
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply(
        &self,
        t: &Table,
        schema: &SchemaRef,
        ops: Vec<PendingOp>,
        op_keys: Vec<Option<Vec<Key>>>,
        found: &Found,
        work: &mut Work,
        counts: &mut TableCounts,
    ) -> Result<()> {
        for ((op, keys), found) in ops.into_iter().zip(op_keys).zip(found) {
            match op {
                PendingOp::Upsert(b) => {
                    let b = self.align(t, schema, &b)?;
                    let seg = work.segs.len();
                    let n = b.num_rows();
                    work.segs.push(b);
                    let Some(keys) = keys else {
                        // No primary key: every row is new.
                        counts.inserted += n as u64;
                        for r in 0..n {
                            work.cur.push((seg, r));
                            work.upserted.push(true);
                        }
                        continue;
                    };
                    for (r, k) in keys.into_iter().enumerate() {
                        let on_disk = found.as_ref().is_some_and(|f| f[r].is_some());
                        match work.map.get(&k) {
                            Some(&i) => {
                                if !work.upserted[i] {
                                    counts.updated += 1;
                                    work.upserted[i] = true;
                                }
                                work.cur[i] = (seg, r);
                            }
                            None => {
                                if on_disk {
                                    counts.updated += 1;
                                } else {
                                    counts.inserted += 1;
                                }
                                work.map.insert(k, work.cur.len());
                                work.cur.push((seg, r));
                                work.upserted.push(true);
                            }
                        }
                    }
                }
                PendingOp::Update(b) => {
                    self.patch(t, schema, &b, keys.unwrap_or_default(), work, counts, false)?
                }
                PendingOp::Delete(b) => {
                    self.patch(t, schema, &b, keys.unwrap_or_default(), work, counts, true)?
                }
                PendingOp::Sweep(s) => {
                    if work.cur.is_empty() {
                        continue;
                    }
                    let refs: Vec<&RecordBatch> = work.segs.iter().collect();
                    let all = compute::interleave_record_batch(&refs, &work.cur)
                        .map_err(|e| self.err(&t.name, e))?;
                    let keys = match t.primary_key.is_empty() {
                        true => None,
                        false => Some(self.keys(t, &all)?),
                    };
                    let (all, n) = self.sweep(t, all, keys.as_deref(), &s)?;
                    counts.deleted += n;
                    work.segs = vec![all];
                    for (i, c) in work.cur.iter_mut().enumerate() {
                        *c = (0, i);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// A partial update (or, with `delete`, a soft delete) of the rows whose
    /// keys have a current version; unknown keys change nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch(
        &self,
        t: &Table,
        schema: &SchemaRef,
        b: &RecordBatch,
        keys: Vec<Key>,
        work: &mut Work,
        counts: &mut TableCounts,
        delete: bool,
    ) -> Result<()> {
        // The last occurrence of a key in the batch wins.
        let mut last: HashMap<&[u8], usize> = HashMap::new();
        for (r, k) in keys.iter().enumerate() {
            if work.map.contains_key(k) {
                last.insert(k, r);
            }
        }
        let mut rows: Vec<usize> = last.into_values().collect();
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_unstable();
        let idx: Vec<usize> = rows.iter().map(|&r| work.map[&keys[r]]).collect();
        let picks: Vec<(usize, usize)> = idx.iter().map(|&i| work.cur[i]).collect();
        let refs: Vec<&RecordBatch> = work.segs.iter().collect();
        let old =
            compute::interleave_record_batch(&refs, &picks).map_err(|e| self.err(&t.name, e))?;
        let mut cols = old.columns().to_vec();
        let di = schema.index_of(t.deleted).expect("aligned");
        if delete {
            let was = cols[di]
                .as_any()
                .downcast_ref::<BooleanArray>()
                .expect("boolean");
            counts.deleted += was.false_count() as u64;
            cols[di] = Arc::new(BooleanArray::from(vec![true; rows.len()]));
        } else {
            let take = arrow::array::UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
            for f in b.schema().fields() {
                if t.primary_key.contains(f.name()) {
                    continue;
                }
                let ci = schema.index_of(f.name()).expect("columns registered");
                let col =
                    compute::take(b.column_by_name(f.name()).expect("own field"), &take, None)
                        .map_err(|e| self.err(&t.name, e))?;
                let target = schema.field(ci).data_type();
                cols[ci] = if col.data_type() == target {
                    col
                } else {
                    compute::cast(&col, target).map_err(|e| {
                        self.err(format!("table {}, column {}", t.name, f.name()), e)
                    })?
                };
            }
            counts.updated += rows.len() as u64;
        }
        let new = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| self.err(format!("table {}", t.name), e))?;
        let seg = work.segs.len();
        work.segs.push(new);
        for (j, &i) in idx.iter().enumerate() {
            work.cur[i] = (seg, j);
        }
        Ok(())
    }
}
