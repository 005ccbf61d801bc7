//! The key → file index: which live files may hold the keys a commit
//! changes and what their rows' fingerprints are (built on first use from
//! the live files), row fingerprints, and the sweeps that soft-delete by time.

use super::*;

impl Ctx<'_> {
    /// The encoded primary key of each row.
    pub(super) fn keys(&self, t: &Table, batch: &RecordBatch) -> Result<Vec<Key>> {
        let mut parts: Vec<ArrayRef> = Vec::with_capacity(t.primary_key.len());
        for k in &t.primary_key {
            let c = batch.column_by_name(k).ok_or_else(|| {
                self.err(
                    format!("table {}", t.name),
                    format!("batch lacks key column {k}"),
                )
            })?;
            let c = match c.data_type() {
                DataType::Utf8 | DataType::Binary => c.clone(),
                _ => compute::cast(c, &DataType::Utf8)
                    .map_err(|e| self.err(format!("table {}, key {k}", t.name), e))?,
            };
            if c.null_count() > 0 {
                return Err(self.err(
                    format!("table {}, column {k}", t.name),
                    "a primary key value is null",
                ));
            }
            parts.push(c);
        }
        let bytes_of = |c: &ArrayRef, i: usize| -> Vec<u8> {
            match c.data_type() {
                DataType::Binary => c
                    .as_any()
                    .downcast_ref::<arrow::array::BinaryArray>()
                    .expect("binary")
                    .value(i)
                    .to_vec(),
                _ => c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("utf8")
                    .value(i)
                    .as_bytes()
                    .to_vec(),
            }
        };
        Ok((0..batch.num_rows())
            .map(|i| {
                if parts.len() == 1 {
                    bytes_of(&parts[0], i).into_boxed_slice()
                } else {
                    let mut k = Vec::new();
                    for p in &parts {
                        let b = bytes_of(p, i);
                        k.extend_from_slice(&(b.len() as u32).to_le_bytes());
                        k.extend_from_slice(&b);
                    }
                    k.into_boxed_slice()
                }
            })
            .collect())
    }

    /// Read a live file in batches, optionally only some columns.
    pub(super) fn read(
        &self,
        t: &Table,
        f: &LiveFile,
        columns: Option<&[String]>,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + '_>> {
        if let Some(io) = self.io {
            return self.read_object(io, t, f, columns);
        }
        let path = self.table_dir(t).join(&f.path);
        let what = format!("reading {}", path.display());
        let file = File::open(&path).map_err(|e| self.err(&what, e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| self.err(&what, e))?
            .with_batch_size(READ_BATCH_ROWS);
        if let Some(cols) = columns {
            let mask =
                ProjectionMask::columns(builder.parquet_schema(), cols.iter().map(String::as_str));
            builder = builder.with_projection(mask);
        }
        let reader = builder.build().map_err(|e| self.err(&what, e))?;
        Ok(Box::new(
            reader.map(move |b| b.map_err(|e| self.err(&what, e))),
        ))
    }

    /// [`read`](Ctx::read) of a file in an object store: ranged reads of
    /// the footer and the projected column chunks, on the lake's runtime.
    fn read_object(
        &self,
        io: &'_ delta::store::ObjectIo,
        t: &Table,
        f: &LiveFile,
        columns: Option<&[String]>,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + '_>> {
        use parquet::arrow::ParquetRecordBatchStreamBuilder;
        let rel = format!("{}/{}", t.name, f.path);
        let what = format!("reading {rel}");
        let reader = io.reader(&rel, f.bytes);
        let builder = io
            .rt
            .block_on(ParquetRecordBatchStreamBuilder::new(reader))
            .map_err(|e| self.err(&what, e))?
            .with_batch_size(READ_BATCH_ROWS);
        let builder = match columns {
            Some(cols) => {
                let mask = ProjectionMask::columns(
                    builder.parquet_schema(),
                    cols.iter().map(String::as_str),
                );
                builder.with_projection(mask)
            }
            None => builder,
        };
        let mut stream = builder.build().map_err(|e| self.err(&what, e))?;
        let rt = io.rt.clone();
        Ok(Box::new(std::iter::from_fn(move || {
            use futures::StreamExt;
            rt.block_on(stream.next())
                .map(|b| b.map_err(|e| self.err(&what, e)))
        })))
    }

    /// Build the key → file index from every live file: each key, its file
    /// and its row's fingerprint (so every column is read, once per process).
    pub(super) fn load_index(&self, t: &Table) -> Result<KeyIndex> {
        let started = std::time::Instant::now();
        let schema = t.schema();
        let index = std::sync::Mutex::new(KeyIndex::default());
        // Files are read and fingerprinted on every core, each batch's
        // entries added as they come.
        use rayon::prelude::*;
        let files: Vec<(u32, &LiveFile)> = t.files.iter().map(|(&id, f)| (id, f)).collect();
        files.par_iter().try_for_each(|&(id, f)| -> Result<()> {
            for b in self.read(t, f, None)? {
                let b = self.align(t, &schema, &b?)?;
                let fps = self.fingerprints(t, &b)?;
                let keys = self.keys(t, &b)?;
                let entries: Vec<IndexKey> = keys.iter().map(|k| index_key(k)).collect();
                let mut index = index.lock().expect("not poisoned");
                for (k, fp) in entries.iter().zip(fps) {
                    index
                        .push(k, IndexEntry { file: id, fp })
                        .map_err(|e| self.index_err(&t.name, e))?;
                }
            }
            Ok(())
        })?;
        let mut index = index.into_inner().expect("not poisoned");
        index.seal().map_err(|e| self.index_err(&t.name, e))?;
        tracing::debug!(table = %t.name, keys = index.len(), files = t.files.len(),
            ms = started.elapsed().as_millis() as u64, "loaded key index");
        Ok(index)
    }

    /// The fingerprint of each row of `batch` (aligned to the table's
    /// schema): every column but the sync time, the soft-delete flag included.
    pub(super) fn fingerprints(&self, t: &Table, batch: &RecordBatch) -> Result<Vec<u64>> {
        use arrow::row::{RowConverter, SortField};
        let schema = batch.schema();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| !t.synced.contains(f.name()))
            .map(|(_, c)| c.clone())
            .collect();
        if cols.is_empty() {
            return Ok(vec![0; batch.num_rows()]);
        }
        let fields = cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        let rows = RowConverter::new(fields)
            .and_then(|conv| conv.convert_columns(&cols))
            .map_err(|e| self.err(format!("table {}: fingerprinting rows", t.name), e))?;
        Ok(rows.iter().map(|r| fingerprint(r.as_ref())).collect())
    }

    /// Could `sweep` change a row of this file? (Row-group statistics.)
    pub(super) fn may_match(&self, t: &Table, f: &LiveFile, sweeps: &[Sweep]) -> bool {
        let md = if let Some(io) = self.io {
            use parquet::arrow::async_reader::AsyncFileReader;
            let mut reader = io.reader(&format!("{}/{}", t.name, f.path), f.bytes);
            match io.rt.block_on(reader.get_metadata(None)) {
                Ok(md) => md,
                Err(_) => return true,
            }
        } else {
            let path = self.table_dir(t).join(&f.path);
            let Ok(file) = File::open(&path) else {
                return true;
            };
            let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
                return true;
            };
            builder.metadata().clone()
        };
        let column_index = |name: &str| {
            md.file_metadata()
                .schema_descr()
                .columns()
                .iter()
                .position(|c| c.path().parts() == [name.to_string()])
        };
        let del = column_index(t.deleted);
        sweeps.iter().any(|s| {
            md.row_groups().iter().any(|rg| {
                // Rows already all deleted cannot change.
                let all_deleted = del.is_some_and(|i| {
                    matches!(rg.column(i).statistics(), Some(Statistics::Boolean(s)) if s.min_opt() == Some(&true))
                });
                if all_deleted || rg.num_rows() == 0 {
                    return false;
                }
                match s {
                    Sweep::Truncate => true,
                    Sweep::Forget { partition } => f.partition() == partition,
                    Sweep::OlderThan { column, before, .. } => match column_index(column) {
                        None => false,
                        Some(i) => match rg.column(i).statistics() {
                            Some(Statistics::Int64(st)) => st.min_opt().is_none_or(|m| m < before),
                            _ => true,
                        },
                    },
                }
            })
        })
    }

    /// Which rows of `batch` are live and have `column` older than
    /// `before` (`None`: the batch has no such column).
    pub(super) fn older_live(
        &self,
        t: &Table,
        batch: &RecordBatch,
        column: &str,
        before: i64,
    ) -> Result<Option<BooleanArray>> {
        let schema = batch.schema();
        let Ok(ci) = schema.index_of(column) else {
            return Ok(None);
        };
        let deleted = batch
            .column_by_name(t.deleted)
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| self.err(&t.name, "no soft-delete column"))?;
        let values = compute::cast(batch.column(ci), &DataType::Int64)
            .map_err(|e| self.err(format!("table {}, column {column}", t.name), e))?;
        let older = cmp::lt(&values, &Int64Array::new_scalar(before))
            .map_err(|e| self.err(format!("table {}", t.name), e))?;
        // Null values are not older than anything.
        let older = if older.null_count() > 0 {
            compute::prep_null_mask_filter(&older)
        } else {
            older
        };
        let live = compute::not(deleted).map_err(|e| self.err(&t.name, e))?;
        compute::and(&older, &live)
            .map(Some)
            .map_err(|e| self.err(&t.name, e))
    }

    /// Apply a sweep to aligned rows (whose keys are `keys`, where the table
    /// has a primary key): returns the new batch and how many rows it deleted.
    pub(super) fn sweep(
        &self,
        t: &Table,
        batch: RecordBatch,
        keys: Option<&[Key]>,
        s: &Sweep,
    ) -> Result<(RecordBatch, u64)> {
        let schema = batch.schema();
        let di = schema.index_of(t.deleted).expect("aligned");
        let deleted = batch
            .column(di)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("boolean")
            .clone();
        let hits = match s {
            Sweep::Forget { .. } => return Ok((batch, 0)),
            Sweep::Truncate => compute::not(&deleted),
            Sweep::OlderThan {
                column,
                before,
                spare,
                counted,
            } => {
                let Some(older) = self.older_live(t, &batch, column, *before)? else {
                    return Ok((batch, 0));
                };
                let spared = |k: &IndexKey| spare.as_ref().is_some_and(|s| s.seen_now(k));
                let stale: Option<BooleanArray> = match (counted, keys) {
                    // As counted: the keys found stale, but those seen since.
                    (Some(c), Some(keys)) => Some(
                        keys.iter()
                            .map(|k| {
                                let ik = index_key(k);
                                Some(c.is_stale(&ik) && !spared(&ik))
                            })
                            .collect(),
                    ),
                    (None, Some(keys)) if spare.as_ref().is_some_and(|s| !s.is_empty()) => {
                        let spare = spare.as_ref().expect("some");
                        let iks: Vec<IndexKey> = keys.iter().map(|k| index_key(k)).collect();
                        let seen = spare.contains_many(&iks).map_err(|e| {
                            self.err(format!("table {}: the keys seen unchanged", t.name), e)
                        })?;
                        Some(seen.into_iter().map(|s| Some(!s)).collect())
                    }
                    _ => None,
                };
                match stale {
                    Some(stale) => compute::and(&older, &stale),
                    None => Ok(older),
                }
            }
        }
        .map_err(|e| self.err(format!("table {}", t.name), e))?;
        let n = hits.true_count() as u64;
        if n == 0 {
            return Ok((batch, 0));
        }
        let new = compute::or(&deleted, &hits).map_err(|e| self.err(&t.name, e))?;
        let mut cols = batch.columns().to_vec();
        cols[di] = Arc::new(new);
        let b = RecordBatch::try_new(schema, cols).map_err(|e| self.err(&t.name, e))?;
        Ok((b, n))
    }
}
