//! The hot path: a page of JSON records → one Arrow `RecordBatch` in a table's
//! declared schema.
//!
//! Sans-I/O: the decoder takes the page's bytes and the byte range of each
//! record in it (connectors find those while parsing their envelope) and
//! returns a batch. Records are never re-serialised: a JSON column holding the
//! whole record (`raw`) is a slice of the page, and unescaped strings are
//! borrowed. Each record's object is scanned once; nested paths
//! (`attributes.email`) share the scan of their parent object.
//!
//! Large pages are split into chunks decoded in parallel on the rayon pool;
//! [`decode_on_pool`] runs a whole page there so async fetchers never block.

pub mod columns;
pub mod envelope;
pub mod infer;
pub mod observe;
pub mod pyjson;
pub mod scan;
pub mod shape;
pub mod values;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde_json::value::RawValue;

use crate::schema::{ColumnSource, ColumnType, OnBadRow, TableSchema, UTC};
use crate::text::truncate_for_display;

pub use columns::{convert_column, keep_rows, BadValue, Cells};

/// Rows per chunk when a page is big enough to decode in parallel.
const PARALLEL_CHUNK_ROWS: usize = 4096;

/// A value that does not fit its declared type, or a page that is not what it should be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DecodeError {
    pub table: String,
    pub column: Option<String>,
    /// Row number within the stream of this sync (0-based), when known.
    pub row: Option<u64>,
    pub value: Option<String>,
    pub message: String,
    /// Where the page came from (URL), when known.
    pub location: Option<String>,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table {}", self.table)?;
        if let Some(c) = &self.column {
            write!(f, ", column {c}")?;
        }
        if let Some(r) = self.row {
            write!(f, ", row {r}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(v) = &self.value {
            write!(f, " (value: {v})")?;
        }
        if let Some(l) = &self.location {
            write!(f, " [from {l}]")?;
        }
        Ok(())
    }
}

/// Where a page sits in a stream, for error messages and `_synced_at`.
#[derive(Debug, Clone)]
pub struct PageContext {
    /// Row number of the page's first record within this sync of the stream.
    pub first_row: u64,
    /// The URL the page came from.
    pub location: String,
    /// Value of `_synced_at`-style columns, UTC microseconds.
    pub synced_at_micros: i64,
}

/// A record set aside because one of its values does not fit (quarantine mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub table: String,
    pub raw: String,
    pub error: String,
}

/// The result of decoding one page.
#[derive(Debug)]
pub struct Decoded {
    /// Empty when the page is stale (see [`observe`]).
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
    /// What the decoder's [`observe::Watch`] noticed.
    pub observed: observe::Observed,
}

/// Byte range of a borrowed JSON value inside the page it was parsed from.
pub fn range_in(page: &[u8], value: &RawValue) -> Range<usize> {
    let start = value.get().as_ptr() as usize - page.as_ptr() as usize;
    start..start + value.get().len()
}

/// A JSON object's fields: each key (unescaped) with its value's text.
pub(super) struct RawObject<'a>(Vec<(Cow<'a, str>, &'a str)>);

impl<'a> RawObject<'a> {
    /// The fields of the object `text`, checked to be JSON.
    pub(super) fn parse(text: &'a str) -> scan::Result<Self> {
        let mut fields = Vec::new();
        let mut s = scan::Scanner::new(text);
        if s.ws() != Some(b'{') {
            return Err(s.error(scan::Why::Object));
        }
        PathNode::default().scan(&mut s, text, 0, &mut [], Some(&mut fields))?;
        s.end()?;
        Ok(RawObject(fields))
    }
}

/// An object key's text unescaped (`raw` is the key with its quotes).
fn unescape_key(raw: &str, at: usize) -> scan::Result<Cow<'_, str>> {
    match serde_json::from_str::<String>(raw) {
        Ok(k) => Ok(Cow::Owned(k)),
        Err(_) => Err(scan::ScanError {
            at,
            why: scan::Why::KeyNotUnicode,
        }),
    }
}

/// Which of a node's children an object has shown already: the first
/// occurrence of a key is the one read.
enum Seen {
    Few(u128),
    Many(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Self {
        if n <= 128 {
            Seen::Few(0)
        } else {
            Seen::Many(vec![false; n])
        }
    }

    /// Whether child `i` is seen for the first time (and mark it).
    fn first(&mut self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => {
                let was = *bits & (1 << i) == 0;
                *bits |= 1 << i;
                was
            }
            Seen::Many(v) => !std::mem::replace(&mut v[i], true),
        }
    }
}

/// Column paths compiled into a tree so nested objects are scanned once per record.
#[derive(Debug, Default)]
struct PathNode {
    key: String,
    /// Columns fed by exactly this path.
    columns: Vec<usize>,
    children: Vec<PathNode>,
}

impl PathNode {
    fn insert(&mut self, path: &[String], col: usize) {
        match path.split_first() {
            None => self.columns.push(col),
            Some((head, rest)) => {
                let pos = match self.children.iter().position(|c| &c.key == head) {
                    Some(p) => p,
                    None => {
                        self.children.push(PathNode {
                            key: head.clone(),
                            ..Default::default()
                        });
                        self.children.len() - 1
                    }
                };
                self.children[pos].insert(rest, col);
            }
        }
    }

    /// Read the object at the scanner (its `{`), `depth` levels deep,
    /// filling `slots` (one per column) from the fields on this node's
    /// paths and descending into those that lead further: one walk of the
    /// record whatever its nesting. Every field goes to `fields` when asked.
    fn scan<'a>(
        &self,
        s: &mut scan::Scanner<'a>,
        text: &'a str,
        depth: usize,
        slots: &mut [Option<&'a str>],
        mut fields: Option<&mut Vec<(Cow<'a, str>, &'a str)>>,
    ) -> scan::Result<()> {
        if depth >= scan::MAX_DEPTH {
            return Err(s.error(scan::Why::Depth));
        }
        s.pos += 1;
        if s.ws() == Some(b'}') {
            s.pos += 1;
            return Ok(());
        }
        let mut seen = Seen::new(self.children.len());
        loop {
            s.ws();
            let key_at = s.pos;
            let escaped = s.key()?;
            let key = if escaped {
                unescape_key(&text[key_at..s.pos], key_at)?
            } else {
                Cow::Borrowed(&text[key_at + 1..s.pos - 1])
            };
            s.expect(b':', scan::Why::Colon)?;
            let value_at = match s.ws() {
                Some(_) => s.pos,
                None => return Err(s.error(scan::Why::End)),
            };
            let child = self
                .children
                .iter()
                .position(|c| c.key == *key)
                .filter(|&i| seen.first(i))
                .map(|i| &self.children[i]);
            match child {
                Some(c) if !c.children.is_empty() && text.as_bytes()[value_at] == b'{' => {
                    c.scan(s, text, depth + 1, slots, None)?
                }
                // Most values are scalars: walked past without the skip's stack.
                _ => {
                    if !s.scalar()? {
                        s.skip_value(depth + 1)?
                    }
                }
            }
            let value = &text[value_at..s.pos];
            if let Some(c) = child.filter(|_| value != "null") {
                for &col in &c.columns {
                    slots[col] = Some(value);
                }
            }
            if let Some(f) = fields.as_deref_mut() {
                f.push((key, value));
            }
            match s.ws() {
                Some(b',') => s.pos += 1,
                Some(b'}') => {
                    s.pos += 1;
                    return Ok(());
                }
                None => return Err(s.error(scan::Why::End)),
                Some(_) => return Err(s.error(scan::Why::CommaOrBrace)),
            }
        }
    }
}

/// Decodes pages of JSON records for one table.
#[derive(Debug)]
pub struct BatchDecoder {
    table: Arc<TableSchema>,
    schema: SchemaRef,
    paths: PathNode,
    raw_columns: Vec<usize>,
    synced_columns: Vec<usize>,
    /// Columns holding the SDK row hash of the record.
    hash_columns: Vec<usize>,
    /// The hash is the tester's `_fivetran_id` (else the legacy `_etl_id`).
    fivetran_id: bool,
    pk_columns: Vec<usize>,
    watch: Option<observe::Watch>,
}

impl BatchDecoder {
    pub fn new(table: Arc<TableSchema>) -> Self {
        let schema = table.arrow_schema();
        let mut paths = PathNode::default();
        let mut raw_columns = Vec::new();
        let mut synced_columns = Vec::new();
        let mut hash_columns = Vec::new();
        let mut fivetran_id = false;
        for (i, c) in table.columns.iter().enumerate() {
            match &c.source {
                ColumnSource::Path(p) => paths.insert(p, i),
                ColumnSource::Raw => raw_columns.push(i),
                ColumnSource::SyncedAt => synced_columns.push(i),
                ColumnSource::RowHash => hash_columns.push(i),
                ColumnSource::FivetranId => {
                    hash_columns.push(i);
                    fivetran_id = true;
                }
            }
        }
        let pk_columns = table
            .primary_key
            .iter()
            .filter_map(|k| table.columns.iter().position(|c| &c.name == k))
            .filter(|c| !hash_columns.contains(c))
            .collect();
        BatchDecoder {
            table,
            schema,
            paths,
            raw_columns,
            synced_columns,
            hash_columns,
            fivetran_id,
            pk_columns,
            watch: None,
        }
    }

    /// Also notice what [`observe`] describes while decoding.
    pub fn with_watch(mut self, watch: observe::Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    /// Decode the records at `records` (byte ranges into `page`).
    pub fn decode(
        &self,
        page: &[u8],
        records: &[Range<usize>],
        ctx: &PageContext,
    ) -> Result<Decoded, DecodeError> {
        let page = std::str::from_utf8(page)
            .map_err(|e| self.page_error(ctx, format!("page is not UTF-8: {e}")))?;
        if records.len() <= PARALLEL_CHUNK_ROWS {
            return self.decode_chunk(page, records, ctx, 0);
        }
        use rayon::prelude::*;
        let parts: Vec<Result<Decoded, DecodeError>> = records
            .par_chunks(PARALLEL_CHUNK_ROWS)
            .enumerate()
            .map(|(i, chunk)| self.decode_chunk(page, chunk, ctx, i * PARALLEL_CHUNK_ROWS))
            .collect();
        let mut batches = Vec::with_capacity(parts.len());
        let mut rejects = Vec::new();
        let mut observed = observe::Observed::default();
        for p in parts {
            let d = p?;
            batches.push(d.batch);
            rejects.extend(d.rejects);
            if let Some(w) = &self.watch {
                observed.merge(d.observed, w);
            }
        }
        if observed.stale() {
            return Ok(self.stale(observed));
        }
        let batch = arrow::compute::concat_batches(&self.schema, &batches)
            .map_err(|e| self.page_error(ctx, format!("cannot concatenate chunks: {e}")))?;
        Ok(Decoded {
            batch,
            rejects,
            observed,
        })
    }

    /// A page the table must change for: nothing converted.
    fn stale(&self, observed: observe::Observed) -> Decoded {
        Decoded {
            batch: RecordBatch::new_empty(self.schema.clone()),
            rejects: Vec::new(),
            observed,
        }
    }

    fn page_error(&self, ctx: &PageContext, message: String) -> DecodeError {
        DecodeError {
            table: self.table.name.clone(),
            column: None,
            row: None,
            value: None,
            message,
            location: Some(ctx.location.clone()),
        }
    }

    fn decode_chunk(
        &self,
        page: &str,
        records: &[Range<usize>],
        ctx: &PageContext,
        offset: usize,
    ) -> Result<Decoded, DecodeError> {
        let mut chunk = self.extract(page, records, ctx)?;
        if chunk.observed.stale() {
            return Ok(self.stale(chunk.observed));
        }
        self.check_keys(&mut chunk);
        let arrays = self.columns(&mut chunk, ctx);
        let Chunk {
            mut bad, observed, ..
        } = chunk;
        if bad.is_empty() {
            let batch = RecordBatch::try_new(self.schema.clone(), arrays)
                .map_err(|e| self.page_error(ctx, format!("cannot build batch: {e}")))?;
            return Ok(Decoded {
                batch,
                rejects: Vec::new(),
                observed,
            });
        }
        bad.sort_by_key(|b| (b.row, b.column));
        if self.table.on_bad_row == OnBadRow::Fail {
            let b = &bad[0];
            return Err(DecodeError {
                table: self.table.name.clone(),
                column: self.table.columns.get(b.column).map(|c| c.name.clone()),
                row: Some(ctx.first_row + (offset + b.row) as u64),
                value: b.value.clone(),
                message: b.message.clone(),
                location: Some(ctx.location.clone()),
            });
        }
        let (batch, rejects) = self.quarantine(arrays, &bad, page, records, ctx)?;
        Ok(Decoded {
            batch,
            rejects,
            observed,
        })
    }

    /// Each record's column values as raw JSON text (column-major), what
    /// the watch noticed, the records' hashes, and what was wrong.
    fn extract<'p>(
        &self,
        page: &'p str,
        records: &[Range<usize>],
        ctx: &PageContext,
    ) -> Result<Chunk<'p>, DecodeError> {
        let ncols = self.table.columns.len();
        let n = records.len();
        let mut chunk = Chunk {
            n,
            slots: vec![None; n * ncols],
            bad: Vec::new(),
            hashes: Vec::new(),
            observed: observe::Observed::default(),
        };
        let mut row_slots: Vec<Option<&str>> = vec![None; ncols];
        let mut fields = Vec::new();
        for (r, range) in records.iter().enumerate() {
            let text = page.get(range.clone()).ok_or_else(|| {
                self.page_error(
                    ctx,
                    format!(
                        "record range {range:?} outside a page of {} bytes",
                        page.len()
                    ),
                )
            })?;
            row_slots.iter_mut().for_each(|s| *s = None);
            fields.clear();
            match self.extract_record(text, r, &mut row_slots, &mut fields, &mut chunk) {
                Ok(()) => {}
                Err(RecordError::Bad(bad)) => {
                    chunk.bad.push(bad);
                    continue;
                }
                // Not JSON: the page is broken, not the row (no quarantine).
                Err(RecordError::NotJson(e)) => {
                    return Err(DecodeError {
                        row: Some(ctx.first_row + r as u64),
                        value: Some(truncate_for_display(text, 120)),
                        ..self.page_error(ctx, format!("record is not valid JSON: {e}"))
                    });
                }
            }
            for (c, s) in row_slots.iter().enumerate() {
                chunk.slots[c * n + r] = *s;
            }
        }
        Ok(chunk)
    }

    /// Record `r`'s values into `row_slots` (and its hash into the chunk);
    /// `fields` is scratch space for what the watch reads. The record is
    /// checked to be JSON here, whatever found its range.
    fn extract_record<'p>(
        &self,
        text: &'p str,
        r: usize,
        row_slots: &mut [Option<&'p str>],
        fields: &mut Vec<(Cow<'p, str>, &'p str)>,
        chunk: &mut Chunk<'p>,
    ) -> Result<(), RecordError> {
        let mut s = scan::Scanner::new(text);
        if s.ws() != Some(b'{') {
            scan::validate(text).map_err(RecordError::NotJson)?;
            return Err(RecordError::Bad(BadValue {
                row: r,
                column: usize::MAX,
                value: Some(truncate_for_display(text, 120)),
                message: format!(
                    "record is not a JSON object (got {})",
                    shape::json_kind(text)
                ),
            }));
        }
        let watching = self.watch.is_some();
        self.paths
            .scan(&mut s, text, 0, row_slots, watching.then_some(&mut *fields))
            .and_then(|()| s.end())
            .map_err(|e| match e.why {
                // JSON, but a key no table could name: the row is bad.
                scan::Why::KeyNotUnicode => RecordError::Bad(BadValue {
                    row: r,
                    column: usize::MAX,
                    value: Some(snippet(text, e.at)),
                    message: format!("record is not a JSON object: {e}"),
                }),
                _ => RecordError::NotJson(e),
            })?;
        if let Some(w) = &self.watch {
            chunk.observed.record(fields, w);
        }
        // Only a `\u` escape can be a lone surrogate: most records have none.
        let lone = s
            .unicode_escapes
            .then(|| shape::lone_surrogate(text))
            .flatten();
        if let (Some(&c), Some(at)) = (self.raw_columns.first(), lone) {
            // The whole record is written as JSON: it must be Unicode.
            return Err(RecordError::Bad(BadValue {
                row: r,
                column: c,
                value: Some(snippet(text, at)),
                message: shape::surrogate_message(text, at),
            }));
        }
        for &c in &self.raw_columns {
            row_slots[c] = Some(text);
        }
        if let Some(&c) = self.hash_columns.first() {
            chunk.hashes.resize(r, None);
            let hash = if self.fivetran_id {
                pyjson::fivetran_id(text)
            } else {
                serde_json::from_str::<serde_json::Value>(text)
                    .map(|v| pyjson::row_hash(&v))
                    .map_err(|e| e.to_string())
            };
            let hash = hash.map_err(|e| {
                RecordError::Bad(BadValue {
                    row: r,
                    column: c,
                    value: Some(truncate_for_display(text, 120)),
                    message: format!("cannot hash the record: {e}"),
                })
            })?;
            chunk.hashes.push(Some(hash));
        }
        Ok(())
    }

    /// Every good record has a key, and every key is a scalar.
    fn check_keys(&self, chunk: &mut Chunk) {
        let n = chunk.n;
        for &c in &self.pk_columns {
            for r in 0..n {
                if chunk.bad.iter().any(|b| b.row == r) {
                    continue;
                }
                match chunk.slots[c * n + r] {
                    None => chunk.bad.push(BadValue {
                        row: r,
                        column: c,
                        value: None,
                        message: "primary key is missing or null".into(),
                    }),
                    // A key is a string or a number (or a boolean, in a
                    // BOOLEAN key column): an object stored as its text
                    // would never match the row it stands for.
                    Some(raw) if !key_scalar(raw, self.table.columns[c].ty) => {
                        chunk.bad.push(BadValue {
                            row: r,
                            column: c,
                            value: Some(truncate_for_display(raw, 120)),
                            message: format!(
                                "a primary key must be a string or a number, got {}",
                                shape::json_kind(raw)
                            ),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// The chunk's Arrow columns (bad values null, recorded in the chunk).
    fn columns(&self, chunk: &mut Chunk, ctx: &PageContext) -> Vec<ArrayRef> {
        let n = chunk.n;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.table.columns.len());
        for (c, col) in self.table.columns.iter().enumerate() {
            if self.synced_columns.contains(&c) {
                let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC);
                (0..n).for_each(|_| b.append_value(ctx.synced_at_micros));
                arrays.push(Arc::new(b.finish()));
                continue;
            }
            if self.hash_columns.contains(&c) {
                chunk.hashes.resize(n, None);
                let mut b = StringBuilder::with_capacity(n, n * 40);
                chunk
                    .hashes
                    .iter()
                    .for_each(|h| b.append_option(h.as_deref()));
                arrays.push(Arc::new(b.finish()));
                continue;
            }
            let column = &chunk.slots[c * n..(c + 1) * n];
            arrays.push(convert_column(
                col.ty,
                Cells::Json,
                column,
                c,
                &mut chunk.bad,
            ));
        }
        arrays
    }

    /// The good rows as a batch, and the bad ones as rejects for
    /// `_etl_rejects` (`bad` sorted by row).
    fn quarantine(
        &self,
        arrays: Vec<ArrayRef>,
        bad: &[BadValue],
        page: &str,
        records: &[Range<usize>],
        ctx: &PageContext,
    ) -> Result<(RecordBatch, Vec<Reject>), DecodeError> {
        let mut keep = vec![true; records.len()];
        let mut rejects = Vec::new();
        for b in bad {
            if !keep[b.row] {
                continue;
            }
            keep[b.row] = false;
            let col = self
                .table
                .columns
                .get(b.column)
                .map(|c| c.name.as_str())
                .unwrap_or("(record)");
            let mut error = format!("column {col}: {}", b.message);
            if let Some(v) = &b.value {
                error.push_str(&format!(" (value: {v})"));
            }
            rejects.push(Reject {
                table: self.table.name.clone(),
                raw: page[records[b.row].clone()].to_string(),
                error,
            });
        }
        let batch = keep_rows(&self.schema, arrays, &keep)
            .map_err(|e| self.page_error(ctx, format!("cannot build batch: {e}")))?;
        Ok((batch, rejects))
    }
}

/// Why a record was not read.
enum RecordError {
    /// A value of it does not fit: the row is bad (quarantined or named).
    Bad(BadValue),
    /// It is not JSON: the page is.
    NotJson(scan::ScanError),
}

/// One chunk of a page being decoded.
struct Chunk<'p> {
    /// Records in the chunk.
    n: usize,
    /// Column-major slots of raw JSON text; `None` = null or missing.
    slots: Vec<Option<&'p str>>,
    bad: Vec<BadValue>,
    /// The SDK hash of each record, when a column wants it.
    hashes: Vec<Option<String>>,
    observed: observe::Observed,
}

/// Whether `raw` (JSON text) can be a key: a string or a number, or a
/// boolean in a BOOLEAN column.
fn key_scalar(raw: &str, ty: ColumnType) -> bool {
    let string_or_number = matches!(raw.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'));
    string_or_number || (ty == ColumnType::Boolean && matches!(raw, "true" | "false"))
}

/// Up to 60 bytes of `text` around byte `at`, for an error message.
pub(super) fn snippet(text: &str, at: usize) -> String {
    let mut start = at.saturating_sub(30);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 30).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let pre = if start > 0 { "…" } else { "" };
    let post = if end < text.len() { "…" } else { "" };
    format!("{pre}{}{post}", &text[start..end])
}

/// Start decoding a page on the rayon pool now; await the returned future for
/// the result. Several pages can be in flight while the next one is fetched.
pub fn spawn_decode(
    decoder: Arc<BatchDecoder>,
    page: bytes::Bytes,
    records: Vec<Range<usize>>,
    ctx: PageContext,
) -> impl std::future::Future<Output = Result<Decoded, DecodeError>> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let table = decoder.table.name.clone();
    rayon::spawn(move || {
        let _ = tx.send(decoder.decode(&page, &records, &ctx));
    });
    async move {
        rx.await.unwrap_or_else(|_| {
            Err(DecodeError {
                table,
                column: None,
                row: None,
                value: None,
                message: "decoder task panicked".into(),
                location: None,
            })
        })
    }
}

/// Parse a page that is a JSON array of records (or an object holding one at
/// `key`; `null` there is no records), returning each record's byte range.
pub fn split_array(page: &[u8], key: Option<&str>) -> Result<Vec<Range<usize>>, String> {
    let text = std::str::from_utf8(page).map_err(|e| format!("page is not UTF-8: {e}"))?;
    let Some(k) = key else {
        if !text.trim_start().starts_with('[') {
            return Err(format!(
                "expected a JSON array of records, got {}",
                shape::json_kind(text)
            ));
        }
        let mut s = scan::Scanner::new(text);
        return s
            .array_items(0, scan::Check::Full)
            .and_then(|r| s.end().map(|()| r))
            .map_err(|e| format!("expected a JSON array of records: {e}"));
    };
    shape::expect_object(text, &format!("{k:?}"))?;
    let path = [k.to_string()];
    if let Ok(e) = envelope::split(page, &path) {
        return Ok(e.ranges);
    }
    // `null` where the list would be: no records.
    let fields = RawObject::parse(text).map_err(|e| format!("expected a JSON object: {e}"))?;
    match fields.0.iter().find(|(f, _)| f == k) {
        None => Err(format!("response has no {k:?} list")),
        Some((_, v)) if *v == "null" => Ok(Vec::new()),
        Some(_) => envelope::split(page, &path).map(|e| e.ranges),
    }
}

#[cfg(test)]
mod tests;
