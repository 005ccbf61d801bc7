//! Writing a partition's rows into size-bounded Parquet files.

use super::*;

/// Where a file's bytes go while it is written: a temporary file beside
/// its final place (a plain dataset), or an upload to the object store
/// under its final, unique name (a Delta lake).
pub(super) enum Sink {
    File(File),
    Upload(Box<delta::store::Upload>),
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Upload(u) => u.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Upload(u) => u.flush(),
        }
    }
}

/// Writes one partition's rows into as many files as the size limit needs.
pub(super) struct PartWriter<'c, 'p> {
    pub(super) ctx: &'c Ctx<'c>,
    pub(super) dir: PathBuf,
    /// Partition directory relative to the table directory ("" for none).
    pub(super) partition: String,
    pub(super) table: String,
    pub(super) schema: SchemaRef,
    pub(super) plan: &'p mut Plan,
    /// Write a file even with no rows (an empty table's placeholder).
    pub(super) allow_empty: bool,
    pub(super) current: Option<(ArrowWriter<Sink>, PathBuf, String, u64)>,
    /// Written files: path in the table, rows, bytes.
    pub(super) done: Vec<(String, u64, Option<u64>)>,
}

impl<'c, 'p> PartWriter<'c, 'p> {
    pub(super) fn new(
        ctx: &'c Ctx<'c>,
        t: &Table,
        partition: &str,
        schema: SchemaRef,
        plan: &'p mut Plan,
    ) -> Self {
        let mut dir = ctx.table_dir(t);
        if !partition.is_empty() {
            dir.push(partition);
        }
        PartWriter {
            ctx,
            dir,
            partition: partition.into(),
            table: t.name.clone(),
            schema,
            plan,
            allow_empty: false,
            current: None,
            done: Vec::new(),
        }
    }

    pub(super) fn props(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.ctx.opts.compression)
            .set_max_row_group_bytes(Some(self.ctx.opts.row_group_bytes.max(1)))
            .set_created_by(format!("etl {}", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Write `batch`; returns the ordinal of the file it went to.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<u32> {
        if batch.num_rows() == 0 && !self.allow_empty {
            return Ok(self.done.len() as u32);
        }
        if let Some((w, ..)) = &self.current {
            if (w.bytes_written() + w.in_progress_size()) as u64 >= self.ctx.opts.file_bytes as u64
            {
                self.close()?;
            }
        }
        if let (None, Some(io)) = (&self.current, self.ctx.io) {
            // A Delta lake: a name no other writer can pick, nothing to rename.
            let name = format!(
                "part-{:05}-{}.{}.parquet",
                self.plan.seq,
                self.plan.tag,
                compression_suffix(self.ctx.opts.compression)
            );
            self.plan.seq += 1;
            let at = match self.partition.is_empty() {
                true => format!("{}/{name}", self.table),
                false => format!("{}/{}/{name}", self.table, self.partition),
            };
            // Recorded first: an upload cut short may still have landed.
            self.plan.written.push(at.clone());
            let w = ArrowWriter::try_new(
                Sink::Upload(Box::new(io.upload(&at))),
                self.schema.clone(),
                Some(self.props()),
            )
            .map_err(|e| self.ctx.err(format!("writing {at}"), e))?;
            self.current = Some((w, PathBuf::new(), name, 0));
        }
        if self.current.is_none() {
            fs::create_dir_all(&self.dir)
                .map_err(|e| self.ctx.err(format!("creating {}", self.dir.display()), e))?;
            let name = format!("part-{:08}-{:05}.parquet", self.ctx.commit, self.plan.seq);
            self.plan.seq += 1;
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp)
                .map_err(|e| self.ctx.err(format!("creating {}", tmp.display()), e))?;
            let w = ArrowWriter::try_new(Sink::File(file), self.schema.clone(), Some(self.props()))
                .map_err(|e| self.ctx.err(format!("writing {}", tmp.display()), e))?;
            // Recorded at once, so a failure later still deletes the temporary.
            let rel = |n: &str| {
                let mut s = self.table.clone();
                if !self.partition.is_empty() {
                    s.push('/');
                    s.push_str(&self.partition);
                }
                s.push('/');
                s.push_str(n);
                s
            };
            self.plan
                .renames
                .push((rel(&format!(".{name}.tmp")), rel(&name)));
            self.current = Some((w, tmp, name, 0));
        }
        let (w, tmp, _, rows) = self.current.as_mut().expect("opened");
        w.write(batch)
            .map_err(|e| self.ctx.err(format!("writing {}", tmp.display()), e))?;
        *rows += batch.num_rows() as u64;
        Ok(self.done.len() as u32)
    }

    pub(super) fn close(&mut self) -> Result<()> {
        let Some((w, tmp, name, rows)) = self.current.take() else {
            return Ok(());
        };
        let rel = if self.partition.is_empty() {
            name
        } else {
            format!("{}/{name}", self.partition)
        };
        let sink = w
            .into_inner()
            .map_err(|e| self.ctx.err(format!("writing {}/{rel}", self.table), e))?;
        let bytes = match sink {
            Sink::File(file) => {
                file.sync_all()
                    .map_err(|e| self.ctx.err(format!("syncing {}", tmp.display()), e))?;
                None
            }
            Sink::Upload(u) => Some(u.finish()?),
        };
        self.done.push((rel, rows, bytes));
        Ok(())
    }

    /// Close the last file; the written files with ids from `next_id`.
    /// (`write` returned ordinals into this list.)
    pub(super) fn finish(mut self, next_id: &mut u32) -> Result<Vec<(u32, LiveFile)>> {
        self.close()?;
        Ok(self
            .done
            .into_iter()
            .map(|(path, rows, bytes)| {
                let id = *next_id;
                *next_id += 1;
                (id, LiveFile { path, rows, bytes })
            })
            .collect())
    }
}

/// The codec in a Delta data file's name, as Spark and delta-rs name them.
fn compression_suffix(c: parquet::basic::Compression) -> &'static str {
    use parquet::basic::Compression as C;
    match c {
        C::ZSTD(_) => "zstd",
        C::SNAPPY => "snappy",
        C::GZIP(_) => "gz",
        C::LZ4 | C::LZ4_RAW => "lz4",
        C::UNCOMPRESSED => "uncompressed",
        _ => "c000",
    }
}
