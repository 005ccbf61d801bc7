//! One sync of a spec: each table's scans, page by page.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::cursor::{cursor_cmp, parent_key};
use super::spec::{Backfill, Operation, TableSpec, Windows};
use super::state::TableState;
use super::{table_schema, Rest};
use crate::connectors::SyncContext;
use crate::decode::observe::{CursorOrder, Watch};
use crate::decode::values::format_utc_micros;
use crate::decode::{envelope, spawn_decode, BatchDecoder, Decoded, PageContext};
use crate::error::{Error, Result};
use crate::http::Response;
use crate::schema::{Column, ColumnSource, ColumnType, TableSchema};
use crate::source::fetch::{FetchError, PageFetcher};
use crate::source::paginate::PageView;
use crate::source::scan::{soft_delete_unseen, Evidence, HistoryLimit, WindowPlan, WindowSpec};

/// One scan of a spec table: for one parent record, or one window.
struct Scan<'s> {
    t: &'s TableSpec,
    /// The destination table (the spec table's, or an update's target).
    target: &'s str,
    parent: Option<&'s Value>,
    /// The parent record's identity for the child's cursor.
    parent_key: Option<&'s str>,
    /// Extra query parameters (a window's bounds).
    extra: &'s [(String, String)],
}

/// What a scan has seen so far.
#[derive(Default)]
struct Seen {
    /// The largest cursor value.
    best: Option<String>,
    rows: u64,
    /// Records read, against the total the first page gave (progress).
    read: u64,
    total: Option<u64>,
    /// Whether any record had the cursor field, and the fields one had.
    cursor_seen: bool,
    some_fields: Option<Vec<String>>,
}

/// One sync of a spec.
pub(super) struct Run<'a> {
    pub(super) rest: &'a Rest,
    pub(super) ctx: &'a SyncContext,
    /// Each destination table as it is now (declared + inferred columns).
    pub(super) schemas: HashMap<String, Arc<TableSchema>>,
    /// Inferred columns per table, in the order first seen.
    pub(super) inferred: HashMap<String, Vec<(String, ColumnType)>>,
    /// Records of each parent table read this sync (its children are read for each).
    pub(super) parent_rows: HashMap<String, Vec<Value>>,
    /// Each spec table's decoder, for the table as it is now.
    pub(super) decoders: HashMap<String, (Arc<TableSchema>, Arc<BatchDecoder>)>,
}

impl<'a> Run<'a> {
    pub(super) async fn table(&mut self, t: &TableSpec) -> Result<()> {
        let mut state = TableState::load(&self.ctx.state, &t.name)?;
        // The table written to: this one, or an update/delete's target.
        let target = t.target.clone().unwrap_or_else(|| t.name.clone());
        if !state.inferred.is_empty() {
            let list = self.inferred.entry(target.clone()).or_default();
            for (k, ty) in state.inferred_columns() {
                if !list.iter().any(|(n, _)| n == k) {
                    list.push((k.clone(), ty));
                }
            }
            // Later syncs type the columns the way the first one did.
            self.rebuild(t, &target);
        }
        if let Some(w) = &t.windows {
            return self.windowed(t, w, &target, state).await;
        }
        // `truncate`: rows a full read no longer returns are soft-deleted
        // once it is complete (through the engine's deletion guard).
        let read_began = chrono::Utc::now().timestamp_micros();
        let keeps_rows = self
            .rest
            .spec
            .tables
            .iter()
            .any(|c| c.parent.as_deref() == Some(&t.name));
        let mut rows_for_children = Vec::new();
        let parents = self.parents_of(t);
        tracing::info!(table = %t.name, parents = t.parent.as_ref().map(|_| parents.len()), "reading");
        for parent in parents {
            let parent_key = parent.as_ref().map(|p| parent_key(t, p));
            let cursor = state.cursor(parent_key.as_deref()).cloned();
            let scan = Scan {
                t,
                target: &target,
                parent: parent.as_ref(),
                parent_key: parent_key.as_deref(),
                extra: &[],
            };
            let keep = keeps_rows.then_some(&mut rows_for_children);
            if let Some(c) = self.scan(&scan, cursor, &mut state, keep).await? {
                state.set_cursor(parent_key.as_deref(), c);
            }
            if !t.truncate {
                self.save(t, &target, &mut state, true).await?;
            }
        }
        if keeps_rows {
            self.parent_rows.insert(t.name.clone(), rows_for_children);
        }
        if t.truncate {
            // The read is complete: rows it did not return are gone, soft-
            // deleted in the same commit as the last page.
            let schema = self.schema(&target)?;
            let read_all = Evidence::Complete { source_total: None };
            soft_delete_unseen(&self.ctx.emit, &schema, read_began, &read_all).await?;
            self.save(t, &target, &mut state, true).await?;
        }
        Ok(())
    }

    /// The parent records `t` is read for (`[None]`: a top-level table).
    fn parents_of(&self, t: &TableSpec) -> Vec<Option<Value>> {
        match &t.parent {
            None => vec![None],
            Some(p) => self
                .parent_rows
                .get(p)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(Some)
                .collect(),
        }
    }

    /// A priority-first table: forward from the last sync's end to now, then
    /// back into history window by window ([`WindowPlan`]), each window
    /// committed with the cursors it moves.
    async fn windowed(
        &mut self,
        t: &TableSpec,
        w: &Windows,
        target: &str,
        mut state: TableState,
    ) -> Result<()> {
        let spec = WindowSpec {
            size: w.size,
            lookback: w.lookback,
            limit: match w.backfill {
                Backfill::Days(d) => HistoryLimit::Back(Duration::from_secs(d * 86_400)),
                Backfill::From(f) => HistoryLimit::At(f),
            },
            history_per_sync: w.backfill_windows_per_sync,
        };
        let mut plan = WindowPlan::new(spec, &state.windows, chrono::Utc::now().timestamp_micros());
        state.windows = plan.state();
        tracing::info!(
            table = %t.name,
            from = %format_utc_micros(plan.forward_from()),
            history_left_hours = plan.history_left().as_secs() / 3600,
            "reading by windows, newest first"
        );
        while let Some(window) = plan.next_window() {
            let params = [
                (w.start_param.clone(), w.format.write(window.start)),
                (w.end_param.clone(), w.format.write(window.end)),
            ];
            tracing::debug!(table = %t.name, start = %params[0].1, end = %params[1].1, "window");
            let scan = Scan {
                t,
                target,
                parent: None,
                parent_key: None,
                extra: &params,
            };
            self.scan(&scan, None, &mut state, None).await?;
            plan.close(window);
            state.windows = plan.state();
            self.save(t, target, &mut state, false).await?;
        }
        let left = plan.history_left();
        match left.is_zero() {
            true => {
                tracing::info!(table = %t.name, windows = plan.history_read(), "history complete")
            }
            false => tracing::info!(
                table = %t.name,
                windows = plan.history_read(),
                history_left_hours = left.as_secs() / 3600,
                "history windows read this sync; the next sync goes on from here"
            ),
        }
        self.save(t, target, &mut state, true).await
    }

    fn schema(&self, name: &str) -> Result<Arc<TableSchema>> {
        self.schemas
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no table {name}")))
    }

    /// Checkpoint the table's state (its inferred columns with it).
    async fn save(
        &self,
        t: &TableSpec,
        target: &str,
        state: &mut TableState,
        done: bool,
    ) -> Result<()> {
        if let Some(list) = self.inferred.get(target) {
            state.inferred = list
                .iter()
                .map(|(k, ty)| (k.clone(), ty.fivetran_name()))
                .collect();
        }
        if done {
            state.last_complete = Some(format_utc_micros(chrono::Utc::now().timestamp_micros()));
        }
        let value = serde_json::to_value(&*state)
            .map_err(|e| Error::Internal(format!("state of {}: {e}", t.name)))?;
        self.ctx.emit.checkpoint(&t.name, value).await
    }

    /// Read every page of one scan; the table's new cursor if it advanced.
    async fn scan(
        &mut self,
        s: &Scan<'_>,
        cursor: Option<String>,
        state: &mut TableState,
        mut keep: Option<&mut Vec<Value>>,
    ) -> Result<Option<String>> {
        let t = s.t;
        let url = self
            .rest
            .first_url(t, s.parent, cursor.as_deref(), s.extra)?;
        // A step-size scan goes on from the window after the last one that
        // had rows (the SDK pattern's saved `current_id`).
        let resume = s.parent.is_none().then_some(state.step_position).flatten();
        let paginator = self.rest.paginator(t, resume);
        if let (Some(pos), Some(_)) = (resume, paginator.position()) {
            tracing::info!(table = %t.name, from = pos, "resuming the step-size scan");
        }
        let mut pages = PageFetcher::new(
            paginator,
            url,
            self.rest.sender(t),
            self.ctx.max_pages,
            t.concurrency,
        );
        let mut seen = Seen {
            best: cursor,
            ..Seen::default()
        };
        while let Some(fetched) = pages.next().await {
            let (url, resp) = match fetched {
                Ok(f) => f,
                Err(FetchError::Http(e)) => return Err(e.into()),
                Err(FetchError::Pagination(m)) => {
                    let m = self.rest.http.redact(&m);
                    return Err(Error::source(format!("table {}", t.name), m));
                }
            };
            self.page(s, &url, &resp, &mut pages, &mut seen, keep.as_deref_mut())
                .await?;
            // Ascending: the cursor is safe to keep with this page.
            if t.incremental.as_ref().is_some_and(|i| i.ascending) {
                if let Some(c) = &seen.best {
                    state.set_cursor(s.parent_key, c.clone());
                }
            }
            if let Some(pos) = pages.position().filter(|_| s.parent.is_none()) {
                state.step_position = Some(pos);
            }
            // A truncated table's last page is committed with its deletions.
            if !(t.truncate && pages.complete()) {
                self.save(t, s.target, state, false).await?;
            }
        }
        if let (Some(inc), Some(fields), false) =
            (&t.incremental, &seen.some_fields, seen.cursor_seen)
        {
            // Never incremental, silently: the spec names a field the API does not send.
            return Err(Error::config(
                Some(&self.rest.spec.path),
                format!(
                    "table {}: incremental.cursor_field {:?} is in none of the {} records read \
                     (they have: {})",
                    t.name,
                    inc.cursor_field,
                    seen.rows,
                    crate::text::truncate_for_display(&fields.join(", "), 300)
                ),
            ));
        }
        tracing::info!(table = %t.name, rows = seen.rows, pages = pages.pages(), "table read");
        Ok(seen.best)
    }

    /// One page of a scan: split, decoded, handed to the destination, and
    /// the paginator told what it held.
    async fn page(
        &mut self,
        s: &Scan<'_>,
        url: &Url,
        resp: &Response,
        pages: &mut PageFetcher,
        seen: &mut Seen,
        keep: Option<&mut Vec<Value>>,
    ) -> Result<()> {
        let t = s.t;
        let location = self.rest.http.redact(url.as_str());
        let page_error = |m: String| Error::source(format!("table {}: {location}", t.name), m);
        // Records are only located here: the decoder checks each one.
        let page = envelope::locate(&resp.body, &t.records).map_err(page_error)?;
        let n = page.ranges.len() as u64;
        if let Some(keep) = keep {
            // Children are read for each parent record that is an object.
            keep.extend(page.ranges.iter().filter_map(|r| {
                serde_json::from_slice::<Value>(&resp.body[r.clone()])
                    .ok()
                    .filter(Value::is_object)
            }));
        }
        let decoded = match n {
            0 => None,
            _ => Some(
                self.decode(t, s.target, &resp.body, page.ranges, &location, seen.rows)
                    .await?,
            ),
        };
        let page_max = decoded.as_ref().and_then(|d| d.observed.cursor_max.clone());
        if let Some(d) = &decoded {
            seen.cursor_seen |= d.observed.cursor_seen;
            seen.some_fields = seen
                .some_fields
                .take()
                .or_else(|| d.observed.first_fields.clone());
        }
        // The ranges went to the decoder: the view is built by hand.
        let view = PageView {
            url,
            response_url: &resp.url,
            headers: &resp.headers,
            envelope: &page.fields,
            records: n,
            last_record: None,
            max_cursor: page_max.as_deref(),
        };
        // A top-level table whose pages say how many records there are shows how far it is.
        if s.parent.is_none() {
            seen.read += n;
            seen.total = seen.total.or_else(|| pages.total_records(&view));
            if let Some(total) = seen.total {
                self.ctx.emit.stats.scanned(s.target, seen.read, total);
            }
        }
        if let Some(d) = decoded {
            self.emit(t, s.target, d).await?;
        }
        seen.rows += n;
        self.ctx.emit.page_fetched();
        pages.advance(&view).map_err(page_error)?;
        if let Some(pm) = page_max {
            if seen
                .best
                .as_deref()
                .is_none_or(|b| cursor_cmp(&pm, b).is_gt())
            {
                seen.best = Some(pm);
            }
        }
        Ok(())
    }

    /// Decode a page's records into the table as it is now, after widening
    /// it if they bring new fields (the page is then decoded a second time;
    /// see [`crate::decode::observe`]).
    async fn decode(
        &mut self,
        t: &TableSpec,
        target: &str,
        body: &bytes::Bytes,
        ranges: Vec<Range<usize>>,
        location: &str,
        first_row: u64,
    ) -> Result<Decoded> {
        let ctx = PageContext {
            first_row,
            location: location.to_string(),
            synced_at_micros: chrono::Utc::now().timestamp_micros(),
        };
        for _ in 0..2 {
            let decoder = self.decoder(t, target)?;
            let d = spawn_decode(decoder, body.clone(), ranges.clone(), ctx.clone()).await?;
            if !d.observed.stale() {
                return Ok(d);
            }
            self.learn(t, target, &d.observed.widen);
        }
        Err(Error::Internal(format!(
            "table {}: the columns inferred from a page changed twice",
            t.name
        )))
    }

    /// The decoder of spec table `t` for its target as it is now.
    fn decoder(&mut self, t: &TableSpec, target: &str) -> Result<Arc<BatchDecoder>> {
        let schema = self.schema(target)?;
        if let Some((s, d)) = self.decoders.get(&t.name) {
            if Arc::ptr_eq(s, &schema) {
                return Ok(d.clone());
            }
        }
        let mut decode_schema = (*schema).clone();
        decode_schema.on_bad_row = t.on_bad_row;
        if self.ctx.naming == crate::naming::Naming::Fivetran {
            // A table without a key is keyed by the tester's own hash.
            for c in &mut decode_schema.columns {
                if c.source == ColumnSource::RowHash {
                    c.source = ColumnSource::FivetranId;
                }
            }
        }
        let inferred: HashMap<String, ColumnType> = self
            .inferred
            .get(target)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        let declared = schema
            .columns
            .iter()
            .filter(|c| !inferred.contains_key(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let watch = Watch {
            infer: true,
            inferred: Arc::new(inferred),
            declared: Arc::new(declared),
            cursor: t
                .incremental
                .as_ref()
                .map(|i| (i.cursor_field.clone(), cursor_cmp as CursorOrder)),
            fields: t.operation == Operation::Update,
        };
        let d = Arc::new(BatchDecoder::new(Arc::new(decode_schema)).with_watch(watch));
        self.decoders.insert(t.name.clone(), (schema, d.clone()));
        Ok(d)
    }

    /// Widen the target with the columns a page needs: new fields, and
    /// inferred columns whose values got wider.
    fn learn(&mut self, t: &TableSpec, target: &str, widen: &[(String, ColumnType)]) {
        let list = self.inferred.entry(target.to_string()).or_default();
        for (k, ty) in widen {
            match list.iter_mut().find(|(n, _)| n == k) {
                Some((_, old)) => {
                    // Values of another type widen the column, as in the SDK's tester.
                    let wider = crate::decode::infer::widen(*old, *ty);
                    tracing::info!(table = %t.name, column = %k, from = %old, to = %wider, "inferred column widened");
                    *old = wider;
                }
                None => {
                    tracing::debug!(table = %t.name, column = %k, r#type = %ty.fivetran_name(), "column inferred");
                    list.push((k.clone(), *ty));
                }
            }
        }
        self.rebuild(t, target);
    }

    /// The target's schema: the declared columns, then the inferred ones, then the sync time.
    fn rebuild(&mut self, t: &TableSpec, target: &str) {
        let spec_table = self
            .rest
            .spec
            .tables
            .iter()
            .find(|x| x.name == target)
            .unwrap_or(t);
        let mut s = table_schema(spec_table);
        let synced = s.columns.pop().expect("_synced_at");
        for (k, ty) in self.inferred.get(target).into_iter().flatten() {
            s.columns.push(Column::new(k, *ty));
        }
        s.columns.push(synced);
        self.schemas.insert(target.to_string(), Arc::new(s));
    }

    /// Hand a decoded page to the destination.
    async fn emit(&self, t: &TableSpec, target: &str, decoded: Decoded) -> Result<()> {
        let schema = self.schema(target)?;
        if !decoded.rejects.is_empty() {
            tracing::warn!(table = %t.name, rejected = decoded.rejects.len(), "rows quarantined in _etl_rejects");
            self.ctx.emit.reject(decoded.rejects).await?;
        }
        let batch = decoded.batch;
        // The columns an update or delete carries: the key, the sync time,
        // and (for an update) the fields its records have.
        let fields = &decoded.observed.fields;
        let carried = |c: &Column| match t.operation {
            Operation::Upsert => true,
            Operation::Delete => schema.is_primary_key(&c.name),
            Operation::Update => {
                schema.is_primary_key(&c.name)
                    || c.source == ColumnSource::SyncedAt
                    || matches!(&c.source, ColumnSource::Path(p) if p.len() == 1 && fields.contains(&p[0]))
            }
        };
        let keep: Vec<usize> = (0..schema.columns.len())
            .filter(|&i| carried(&schema.columns[i]))
            .collect();
        let batch = match t.operation {
            Operation::Upsert => batch,
            _ => batch
                .project(&keep)
                .map_err(|e| Error::Internal(format!("{:?} batch: {e}", t.operation)))?,
        };
        match t.operation {
            Operation::Upsert => self.ctx.emit.upsert(&schema, batch).await,
            Operation::Delete => self.ctx.emit.delete(&schema, batch).await,
            Operation::Update => self.ctx.emit.update(&schema, batch).await,
        }
    }
}
