//! CSV export endpoints (the Connector SDK's `export` example): `GET` a URL
//! that answers `text/csv`, stream the body through a CSV parser into Arrow
//! batches of the declared `user` table, and upsert them by `id`.
//!
//! The body is never held whole: network chunks flow through a small bounded
//! channel into a parser on a blocking thread, which hands bounded batches to
//! the writer, so an export of any size syncs in flat memory. Quoted fields,
//! embedded newlines, CRLF line ends and a UTF-8 byte-order mark are read as
//! CSV means them; a row with the wrong number of fields or a value that does
//! not fit its column fails the sync naming the line (or, with
//! `"on_bad_row": "quarantine"`, goes to `_etl_rejects` with the line).
//!
//! An export is a full snapshot: after a complete download, rows it no longer
//! contains are soft-deleted. A download cut short commits what was parsed
//! (merging is idempotent) and the next sync downloads the export again.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::json;
use url::Url;

use super::{Connector, ConnectorInfo, SyncContext};
use crate::config::ConfigReader;
use crate::decode::{convert_column, keep_rows, Cells, Reject};
use crate::error::{Error, Result};
use crate::http::{Auth, HttpClient, HttpMetrics, Request, RetryPolicy, Secret};
use crate::schema::{Column, ColumnSource, ColumnType, OnBadRow, TableSchema, UTC};
use crate::source::scan::{Evidence, FromStart, FullScan};

pub const NAME: &str = "csv_export";
/// The Fivetran api playground's export, the seed's default source.
pub const DEFAULT_URL: &str = "http://127.0.0.1:5001/export/csv";

pub const SAMPLE_CONFIG: &str = r#"{
  "url": "http://127.0.0.1:5001/export/csv"
}"#;

/// The seed's `user` table (plus `_synced_at`).
pub fn user_table(on_bad_row: OnBadRow) -> TableSchema {
    let mut t = TableSchema::new(
        "user",
        &["id"],
        vec![
            Column::new("id", ColumnType::String),
            Column::new("name", ColumnType::String),
            Column::new("email", ColumnType::String),
            Column::new("address", ColumnType::String),
            Column::new("company", ColumnType::String),
            Column::new("job", ColumnType::String),
            Column::new("updatedAt", ColumnType::UtcDatetime),
            Column::new("createdAt", ColumnType::UtcDatetime),
            Column::synced_at("_synced_at"),
        ],
    );
    t.on_bad_row = on_bad_row;
    t
}

pub fn info() -> ConnectorInfo {
    ConnectorInfo {
        name: NAME,
        description: "A CSV export endpoint (GET, streamed; the SDK export example's user table)",
        sample_config: SAMPLE_CONFIG,
        tables: || vec![Arc::new(user_table(OnBadRow::Fail))],
        build: |c, m| Ok(Arc::new(CsvExport::new(CsvConfig::validate(c)?, m)) as Arc<dyn Connector>),
    }
}

#[derive(Debug, Clone)]
pub struct CsvConfig {
    pub url: Url,
    /// Sent as `Authorization: Bearer` when given.
    pub api_key: Option<Secret>,
    /// For the whole download (default one hour).
    pub timeout: Duration,
    pub attempts: u32,
    /// Rows per Arrow batch handed to the writer.
    pub batch_rows: usize,
    pub on_bad_row: OnBadRow,
}

impl CsvConfig {
    pub fn validate(mut c: ConfigReader) -> Result<Self> {
        let cfg = CsvConfig {
            url: c.url_or("url", DEFAULT_URL)?,
            api_key: c.opt_secret("api_key")?,
            timeout: Duration::from_secs(
                c.int_in("request_timeout_seconds", 1..=86_400, 3_600)? as u64
            ),
            attempts: c.int_in("retry_attempts", 1..=10, 3)? as u32,
            batch_rows: c.int_in("batch_rows", 1..=1_000_000, 4_096)? as usize,
            on_bad_row: match c.opt_string("on_bad_row")?.as_deref() {
                None | Some("fail") => OnBadRow::Fail,
                Some("quarantine") => OnBadRow::Quarantine,
                Some(other) => {
                    return Err(c.error(
                        "on_bad_row",
                        format!("must be \"fail\" or \"quarantine\", got {other:?}"),
                    ))
                }
            },
        };
        c.finish()?;
        Ok(cfg)
    }
}

pub struct CsvExport {
    cfg: CsvConfig,
    http: HttpClient,
    table: Arc<TableSchema>,
}

/// The network side of the parser: chunks as they arrive, a UTF-8 BOM at the
/// very start dropped, a failed download surfacing as a read error.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>,
    cur: Bytes,
    at_start: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at_start && self.cur.len() >= 3 {
                if self.cur.starts_with(b"\xEF\xBB\xBF") {
                    self.cur = self.cur.slice(3..);
                }
                self.at_start = false;
            }
            if !(self.cur.is_empty() || self.at_start && self.cur.len() < 3) {
                let n = buf.len().min(self.cur.len());
                buf[..n].copy_from_slice(&self.cur[..n]);
                self.cur = self.cur.slice(n..);
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    if self.at_start {
                        // Gather at least three bytes to look for a BOM.
                        let mut v = self.cur.to_vec();
                        v.extend_from_slice(&b);
                        self.cur = Bytes::from(v);
                    } else {
                        self.cur = b;
                    }
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => {
                    // The end: whatever is left (fewer than three bytes) is data.
                    self.at_start = false;
                    if self.cur.is_empty() {
                        return Ok(0);
                    }
                }
            }
        }
    }
}

/// What the parser hands the sync: a batch and the rows set aside with it.
type Parsed = std::result::Result<(RecordBatch, Vec<Reject>), Error>;

/// Parse the CSV read from `input` into batches of `table`, sent to `out`.
fn parse(
    input: impl Read,
    table: Arc<TableSchema>,
    batch_rows: usize,
    synced_at: i64,
    location: String,
    out: tokio::sync::mpsc::Sender<Parsed>,
) {
    let fail = |e: Error| {
        let _ = out.blocking_send(Err(e));
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let names: Vec<String> = match rdr.byte_headers() {
        Ok(h) => h
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .collect(),
        Err(e) => {
            return fail(Error::source(
                format!("CSV {location}"),
                format!("cannot read the header: {e}"),
            ))
        }
    };
    let fields = match columns(&table, &names, &location) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut batch = Batch {
        table: &table,
        fields: &fields,
        location: &location,
        synced_at,
        rows: Vec::new(),
        rejects: Vec::new(),
    };
    let mut record = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return fail(Error::source(
                    batch.at(line),
                    format!("cannot read the CSV: {e}"),
                ));
            }
        }
        if let Err(e) = batch.push(&record, names.len()) {
            return fail(e);
        }
        if batch.rows.len() >= batch_rows {
            match batch.flush() {
                Ok(parsed) => {
                    if out.blocking_send(Ok(parsed)).is_err() {
                        return;
                    }
                }
                Err(e) => return fail(e),
            }
        }
    }
    if !batch.rows.is_empty() || !batch.rejects.is_empty() {
        match batch.flush() {
            Ok(parsed) => {
                let _ = out.blocking_send(Ok(parsed));
            }
            Err(e) => fail(e),
        }
    }
}

/// Where each declared column is in a row (`None`: the sync time).
fn columns(table: &TableSchema, names: &[String], location: &str) -> Result<Vec<Option<usize>>> {
    let mut fields = Vec::new();
    for c in &table.columns {
        let index = match c.source {
            ColumnSource::SyncedAt => None,
            ColumnSource::RowHash | ColumnSource::FivetranId => {
                return Err(Error::Internal(format!(
                    "CSV column {} cannot be a row hash",
                    c.name
                )))
            }
            _ => Some(names.iter().position(|n| n == &c.name).ok_or_else(|| {
                Error::source(
                    format!("CSV {location} line 1"),
                    format!(
                        "the header has no column {:?} (it has: {})",
                        c.name,
                        crate::text::truncate_for_display(&names.join(", "), 300)
                    ),
                )
            })?),
        };
        fields.push(index);
    }
    Ok(fields)
}

/// The rows of the batch being read, and the rows set aside.
struct Batch<'a> {
    table: &'a TableSchema,
    /// Each column's field in a row (`None`: the sync time).
    fields: &'a [Option<usize>],
    location: &'a str,
    synced_at: i64,
    /// (line, fields) of each row with the right shape.
    rows: Vec<(u64, csv::StringRecord)>,
    rejects: Vec<Reject>,
}

impl Batch<'_> {
    fn at(&self, line: u64) -> String {
        format!("CSV {} line {line}", self.location)
    }

    /// A row read: kept when it has the header's fields, all UTF-8, and a
    /// key; otherwise set aside or, without quarantine, the error.
    fn push(&mut self, record: &csv::ByteRecord, fields: usize) -> Result<()> {
        let line = record.position().map_or(0, |p| p.line());
        match self.shape(record, fields) {
            Ok(row) => {
                self.rows.push((line, row));
                Ok(())
            }
            Err(m) => {
                if self.table.on_bad_row != OnBadRow::Quarantine {
                    // A bad value on an earlier line of this batch fails first.
                    self.flush()?;
                }
                let fields = record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                self.reject(line, fields, m)
            }
        }
    }

    /// The row as text, or what is wrong with its shape.
    fn shape(
        &self,
        record: &csv::ByteRecord,
        fields: usize,
    ) -> std::result::Result<csv::StringRecord, String> {
        if record.len() != fields {
            return Err(format!(
                "expected {fields} fields (as in the header), found {}",
                record.len()
            ));
        }
        let column_of = |field: usize| {
            let c = self.fields.iter().position(|f| *f == Some(field));
            c.map_or_else(
                || format!("field {}", field + 1),
                |c| format!("column {:?}", self.table.columns[c].name),
            )
        };
        let row = csv::StringRecord::from_byte_record(record.clone()).map_err(|e| {
            let field = e.utf8_error().field();
            format!("{}: is not UTF-8", column_of(field))
        })?;
        for (c, field) in self.fields.iter().enumerate() {
            let column = &self.table.columns[c].name;
            if field.is_some_and(|f| row[f].is_empty()) && self.table.is_primary_key(column) {
                return Err(format!("column {column:?}: the primary key is empty"));
            }
        }
        Ok(row)
    }

    /// Set a row aside (with quarantine), or fail naming its line.
    fn reject(&mut self, line: u64, fields: Vec<String>, why: String) -> Result<()> {
        if self.table.on_bad_row != OnBadRow::Quarantine {
            return Err(Error::source(self.at(line), why));
        }
        self.rejects.push(Reject {
            table: self.table.name.clone(),
            raw: json!({"line": line, "fields": fields}).to_string(),
            error: format!("line {line}: {why}"),
        });
        Ok(())
    }

    /// The rows read so far as a batch, through the decoder's column
    /// builders; rows with a value that does not fit are set aside.
    fn flush(&mut self) -> Result<(RecordBatch, Vec<Reject>)> {
        let rows = std::mem::take(&mut self.rows);
        let mut bad = Vec::new();
        let arrays: Vec<ArrayRef> = self
            .table
            .columns
            .iter()
            .zip(self.fields)
            .enumerate()
            .map(|(c, (col, field))| match field {
                None => {
                    let ts = vec![Some(self.synced_at); rows.len()];
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone(UTC)) as ArrayRef
                }
                Some(f) => {
                    let cells: Vec<Option<&str>> = rows.iter().map(|(_, r)| Some(&r[*f])).collect();
                    convert_column(col.ty, Cells::Text, &cells, c, &mut bad)
                }
            })
            .collect();
        bad.sort_by_key(|b| b.row);
        let mut keep = vec![true; rows.len()];
        for b in &bad {
            if !keep[b.row] {
                continue;
            }
            keep[b.row] = false;
            let (line, row) = &rows[b.row];
            let column = &self.table.columns[b.column].name;
            let value = b.value.as_deref().unwrap_or_default();
            let why = format!("column {column:?}: {} (value: {value})", b.message);
            self.reject(*line, row.iter().map(String::from).collect(), why)?;
        }
        let batch = keep_rows(&self.table.arrow_schema(), arrays, &keep)
            .map_err(|e| Error::Internal(format!("CSV batch: {e}")))?;
        Ok((batch, std::mem::take(&mut self.rejects)))
    }
}

impl CsvExport {
    pub fn new(cfg: CsvConfig, metrics: Arc<HttpMetrics>) -> Self {
        let policy = RetryPolicy {
            max_attempts: cfg.attempts,
            timeout: cfg.timeout,
            ..RetryPolicy::default()
        };
        let auth = cfg.api_key.clone().map_or(Auth::None, Auth::Bearer);
        let http = HttpClient::new(policy, auth)
            .with_header("accept", "text/csv")
            .with_metrics(metrics)
            .for_origins([&cfg.url]);
        let table = Arc::new(user_table(cfg.on_bad_row));
        CsvExport { cfg, http, table }
    }

    /// Download and parse the export, handing each batch (and the rows set
    /// aside with it) to `each` in order; the rows read. `synced_at` stamps
    /// `_synced_at`. Memory stays bounded whatever the export's size.
    pub async fn read_export<F, Fut>(
        &self,
        synced_at: i64,
        progress: Option<Arc<crate::source::emit::StreamStats>>,
        mut each: F,
    ) -> Result<u64>
    where
        F: FnMut(RecordBatch, Vec<Reject>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut resp = self
            .http
            .send_streaming(Request::get(self.cfg.url.clone()))
            .await?;
        let location = self.http.redact(self.cfg.url.as_str());
        let table_name = self.table.name.clone();
        if let (Some(p), Some(len)) = (&progress, resp.content_length()) {
            p.expect_bytes(&table_name, len);
        }
        // Network → parser: a few chunks at most in between.
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel(16);
        let feeder = tokio::spawn({
            let location = location.clone();
            async move {
                loop {
                    match resp.chunk().await {
                        Ok(Some(b)) => {
                            if let Some(p) = &progress {
                                p.add_bytes(&table_name, b.len() as u64);
                            }
                            if chunk_tx.send(Ok(b)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = chunk_tx
                                .send(Err(format!("the download from {location} broke off: {e}")))
                                .await;
                            return;
                        }
                    }
                }
            }
        });
        let _abort_feeder = AbortTask(feeder);
        let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Parsed>(2);
        let reader = ChunkReader {
            rx: chunk_rx,
            cur: Bytes::new(),
            at_start: true,
        };
        let (table, rows) = (self.table.clone(), self.cfg.batch_rows);
        let parser = tokio::task::spawn_blocking(move || {
            parse(reader, table, rows, synced_at, location, batch_tx)
        });
        let mut total = 0u64;
        while let Some(parsed) = batch_rx.recv().await {
            let (batch, rejects) = parsed?;
            total += batch.num_rows() as u64;
            each(batch, rejects).await?;
        }
        parser
            .await
            .map_err(|e| Error::Internal(format!("CSV parser failed: {e}")))?;
        Ok(total)
    }

    async fn run(&self, ctx: SyncContext) -> Result<()> {
        // An export is read whole each time (a broken download starts over).
        let scan = FullScan::<FromStart>::begin_fresh(&ctx.state, self.table.clone())?;
        let (began, emit, table) = (scan.began_us(), &ctx.emit, &self.table);
        let total = self
            .read_export(began, Some(emit.stats.clone()), |batch, rejects| {
                let rows = batch.num_rows() as u64;
                let scan = &scan;
                async move {
                    emit.page_fetched();
                    emit.reject(rejects).await?;
                    emit.upsert(table, batch).await?;
                    scan.page(emit, rows, FromStart {}).await
                }
            })
            .await?;
        tracing::info!(rows = total, url = %self.http.redact(self.cfg.url.as_str()), "export read");
        // The whole export was read: rows it no longer has were deleted.
        scan.finish(emit, Evidence::Complete { source_total: None })
            .await
    }
}

/// Aborts a spawned task when dropped (a failed sync stops its download).
struct AbortTask(tokio::task::JoinHandle<()>);

impl Drop for AbortTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Connector for CsvExport {
    fn name(&self) -> &str {
        NAME
    }

    fn tables(&self) -> Vec<Arc<TableSchema>> {
        vec![self.table.clone()]
    }

    fn sync(&self, ctx: SyncContext) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(ctx))
    }

    fn check(&self) -> BoxFuture<'_, Vec<super::TableCheck>> {
        Box::pin(async move {
            let location = self.http.redact(self.cfg.url.as_str());
            let outcome = async {
                let mut resp = self
                    .http
                    .send_streaming(Request::get(self.cfg.url.clone()))
                    .await?;
                // The header line is enough: the export itself is not read.
                let mut head = Vec::new();
                while !head.contains(&b'\n') && head.len() < 1 << 16 {
                    match resp.chunk().await {
                        Ok(Some(b)) => head.extend_from_slice(&b),
                        Ok(None) => break,
                        Err(e) => {
                            return Err(Error::source(
                                format!("CSV {location}"),
                                format!("the download broke off: {e}"),
                            ))
                        }
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let header = line
                    .trim_start_matches('\u{feff}')
                    .lines()
                    .next()
                    .unwrap_or("");
                let names: Vec<&str> = header
                    .split(',')
                    .map(|h| h.trim().trim_matches('"'))
                    .collect();
                for c in &self.table.columns {
                    if matches!(c.source, ColumnSource::Path(_))
                        && !names.contains(&c.name.as_str())
                    {
                        return Err(Error::source(
                            format!("CSV {location} line 1"),
                            format!(
                                "the header has no column {:?} (it has: {})",
                                c.name,
                                crate::text::truncate_for_display(header, 300)
                            ),
                        ));
                    }
                }
                Ok(format!("a header with {} columns", names.len()))
            }
            .await;
            vec![super::TableCheck::new(
                &self.table.name,
                format!("GET {location}"),
                outcome,
            )]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(csv: &[u8], mode: OnBadRow) -> std::result::Result<(usize, Vec<Reject>), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (ctx, crx) = tokio::sync::mpsc::channel(4);
            // Fed in 7-byte pieces: fields and the BOM straddle chunks.
            let pieces: Vec<Bytes> = csv.chunks(7).map(Bytes::copy_from_slice).collect();
            tokio::spawn(async move {
                for piece in pieces {
                    if ctx.send(Ok(piece)).await.is_err() {
                        return;
                    }
                }
            });
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let reader = ChunkReader {
                rx: crx,
                cur: Bytes::new(),
                at_start: true,
            };
            let table = Arc::new(user_table(mode));
            tokio::task::spawn_blocking(move || parse(reader, table, 2, 0, "test".into(), tx));
            let (mut rows, mut rejects) = (0, Vec::new());
            while let Some(p) = rx.recv().await {
                let (b, r) = p.map_err(|e| e.to_string())?;
                rows += b.num_rows();
                rejects.extend(r);
            }
            Ok((rows, rejects))
        })
    }

    const HEADER: &str = "id,name,email,address,company,job,createdAt,updatedAt";

    #[test]
    fn quoting_newlines_bom_and_crlf() {
        let csv = format!(
            "\u{feff}{HEADER}\r\n1,\"Roe, Jane\",j@x.io,\"12 Main St\nSpringfield\",Roe LLC,\"Says \"\"hi\"\"\",2024-09-22T12:15:33Z,2024-09-22T12:15:50Z\r\n2,Bo,b@x.io,,,,2024-09-22T12:15:33Z,\r\n3,C,c@x.io,a,b,c,2024-09-22T12:15:33+0000,2024-09-22 12:15:50\r\n"
        );
        assert_eq!(parse_all(csv.as_bytes(), OnBadRow::Fail).unwrap().0, 3);
    }

    #[test]
    fn a_ragged_row_fails_naming_its_line_or_is_quarantined() {
        let csv = format!("{HEADER}\n1,a,b,c,d,e,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z\n2,\"multi\nline\",x\n3,a,b,c,d,e,2024-01-01T00:00:00Z,2024-01-01T00:00:00Z\n");
        let e = parse_all(csv.as_bytes(), OnBadRow::Fail).unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("expected 8 fields") && e.contains("found 3"),
            "{e}"
        );
        let (rows, rejects) = parse_all(csv.as_bytes(), OnBadRow::Quarantine).unwrap();
        assert_eq!(rows, 2);
        assert_eq!(rejects.len(), 1);
        assert!(rejects[0].error.starts_with("line 3:"), "{:?}", rejects[0]);
        assert!(rejects[0].raw.contains("multi\\nline"), "{:?}", rejects[0]);
    }

    #[test]
    fn a_bad_timestamp_names_line_and_column() {
        let csv = format!("{HEADER}\n1,a,b,c,d,e,yesterday,2024-01-01T00:00:00Z\n");
        let e = parse_all(csv.as_bytes(), OnBadRow::Fail).unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("createdAt") && e.contains("yesterday"),
            "{e}"
        );
    }

    #[test]
    fn the_first_bad_line_is_the_one_named() {
        // A bad value (line 2) and a ragged row (line 3) in one batch.
        let csv = format!("{HEADER}\n1,a,b,c,d,e,yesterday,2024-01-01T00:00:00Z\n2,x\n");
        let e = parse_all(csv.as_bytes(), OnBadRow::Fail).unwrap_err();
        assert!(e.contains("line 2") && e.contains("yesterday"), "{e}");
        let (rows, rejects) = parse_all(csv.as_bytes(), OnBadRow::Quarantine).unwrap();
        assert_eq!(rows, 0);
        let lines: Vec<&str> = rejects.iter().map(|r| &r.error[..6]).collect();
        assert_eq!(lines.len(), 2, "{rejects:?}");
        assert!(
            lines.contains(&"line 2") && lines.contains(&"line 3"),
            "{rejects:?}"
        );
    }

    #[test]
    fn empty_cells_are_null_timestamps_and_empty_strings() {
        let csv = format!("{HEADER}\n1,,,,,,,\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let table = Arc::new(user_table(OnBadRow::Fail));
        let input = std::io::Cursor::new(csv.into_bytes());
        std::thread::spawn(move || parse(input, table, 10, 0, "test".into(), tx))
            .join()
            .unwrap();
        let (b, _) = rt.block_on(rx.recv()).unwrap().unwrap();
        let name = b.column_by_name("name").unwrap();
        let created = b.column_by_name("createdAt").unwrap();
        assert_eq!((name.null_count(), created.null_count()), (0, 1));
    }

    #[test]
    fn a_missing_header_column_is_named() {
        let e = parse_all(b"id,name\n1,a\n", OnBadRow::Fail).unwrap_err();
        assert!(e.contains("no column \"email\""), "{e}");
    }
}
