//! One sync of a spec: each table's scans, page by page.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::cursor::{cursor_cmp, parent_key, set_cursor};
use super::spec::{Backfill, Operation, TableSpec, Windows};
use super::{table_schema, Rest, STEP_POSITION};
use crate::connectors::SyncContext;
use crate::decode::observe::{CursorOrder, Watch};
use crate::decode::values::{format_utc_micros, parse_utc_micros};
use crate::decode::{envelope, spawn_decode, BatchDecoder, Decoded, PageContext};
use crate::error::{Error, Result};
use crate::schema::{Column, ColumnSource, ColumnType, TableSchema};
use crate::source::fetch::{FetchError, PageFetcher};
use crate::source::paginate::PageView;
use crate::source::scan::{soft_delete_unseen, Evidence};

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
        let stream = t.name.clone();
        let saved = self
            .ctx
            .state
            .stream(&stream)
            .cloned()
            .unwrap_or(Value::Null);
        // The table written to: this one, or an update/delete's target.
        let target = t.target.clone().unwrap_or_else(|| t.name.clone());
        if let Some(Value::Object(cols)) = saved.get("inferred") {
            let list = self.inferred.entry(target.clone()).or_default();
            for (k, v) in cols {
                if let Some(ty) = v.as_str().and_then(|s| ColumnType::parse(s).ok()) {
                    if !list.iter().any(|(n, _)| n == k) {
                        list.push((k.clone(), ty));
                    }
                }
            }
            // Later syncs type the columns the way the first one did.
            self.rebuild(t, &target);
        }
        let parents: Vec<Option<Value>> = match &t.parent {
            None => vec![None],
            Some(p) => self
                .parent_rows
                .get(p)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(Some)
                .collect(),
        };
        let keeps_rows = self
            .rest
            .spec
            .tables
            .iter()
            .any(|c| c.parent.as_deref() == Some(&t.name));
        let mut state = saved.as_object().cloned().unwrap_or_default();
        let mut rows_for_children = Vec::new();
        // `truncate`: rows a full read no longer returns are soft-deleted
        // once it is complete (through the engine's deletion guard).
        let read_began = chrono::Utc::now().timestamp_micros();
        if let Some(w) = &t.windows {
            return self.windowed(t, w, &target, state).await;
        }
        tracing::info!(table = %t.name, parents = t.parent.as_ref().map(|_| parents.len()), "reading");
        for parent in parents {
            let parent_key = parent.as_ref().map(|p| parent_key(t, p));
            let cursor = match &parent_key {
                None => state
                    .get("cursor")
                    .and_then(Value::as_str)
                    .map(String::from),
                Some(k) => state
                    .get("parents")
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .map(String::from),
            };
            let new_cursor = self
                .scan(
                    t,
                    &target,
                    parent.as_ref(),
                    cursor.clone(),
                    &[],
                    &mut state,
                    parent_key.as_deref(),
                    keeps_rows.then_some(&mut rows_for_children),
                )
                .await?;
            if let Some(c) = new_cursor {
                set_cursor(&mut state, parent_key.as_deref(), c);
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

    /// A priority-first table: forward from the last sync's end to now, then
    /// back into history window by window (see [`spec::Windows`]). State:
    /// `incremental_cursor` (where the forward read ends), `historical_cursor`
    /// (history is read from here on) and `historical_limit` (where history
    /// ends), each committed with the window it closes.
    async fn windowed(
        &mut self,
        t: &TableSpec,
        w: &Windows,
        target: &str,
        mut state: Map<String, Value>,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_micros();
        let now = now - now.rem_euclid(1_000_000);
        let size = w.size.as_micros() as i64;
        let saved = |k: &str| {
            state
                .get(k)
                .and_then(Value::as_str)
                .and_then(parse_utc_micros)
        };
        let mut forward = saved("incremental_cursor").unwrap_or(now - size);
        let mut history = saved("historical_cursor").unwrap_or(now - size);
        let limit = match w.backfill {
            Backfill::Days(d) => {
                saved("historical_limit").unwrap_or(now - d as i64 * 86_400_000_000)
            }
            Backfill::From(f) => f,
        };
        let put = |state: &mut Map<String, Value>, k: &str, v: i64| {
            state.insert(k.into(), Value::String(format_utc_micros(v)));
        };
        put(&mut state, "incremental_cursor", forward);
        put(&mut state, "historical_cursor", history);
        put(&mut state, "historical_limit", limit);
        tracing::info!(
            table = %t.name,
            from = %format_utc_micros(forward),
            history_left_hours = (history - limit).max(0) / 3_600_000_000,
            "reading by windows, newest first"
        );
        let lookback = w.lookback.as_micros() as i64;
        while forward < now {
            let end = (forward + size).min(now);
            self.window(t, w, target, forward - lookback, end, &mut state)
                .await?;
            forward = end;
            put(&mut state, "incremental_cursor", forward);
            self.save(t, target, &mut state, false).await?;
        }
        let mut read = 0u64;
        while history > limit && w.backfill_windows_per_sync.is_none_or(|m| read < m) {
            let start = (history - size).max(limit);
            self.window(t, w, target, start, history, &mut state)
                .await?;
            history = start;
            put(&mut state, "historical_cursor", history);
            self.save(t, target, &mut state, false).await?;
            read += 1;
        }
        if history > limit {
            tracing::info!(
                table = %t.name,
                windows = read,
                history_left_hours = (history - limit) / 3_600_000_000,
                "history windows read this sync; the next sync goes on from here"
            );
        } else {
            tracing::info!(table = %t.name, windows = read, "history complete");
        }
        self.save(t, target, &mut state, true).await
    }

    /// Read one window `[start, end)`.
    async fn window(
        &mut self,
        t: &TableSpec,
        w: &Windows,
        target: &str,
        start: i64,
        end: i64,
        state: &mut Map<String, Value>,
    ) -> Result<()> {
        let params = [
            (w.start_param.clone(), w.format.write(start)),
            (w.end_param.clone(), w.format.write(end)),
        ];
        tracing::debug!(table = %t.name, start = %params[0].1, end = %params[1].1, "window");
        self.scan(t, target, None, None, &params, state, None, None)
            .await?;
        Ok(())
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
        state: &mut Map<String, Value>,
        done: bool,
    ) -> Result<()> {
        if let Some(list) = self.inferred.get(target) {
            let m: Map<String, Value> = list
                .iter()
                .map(|(k, ty)| (k.clone(), Value::String(ty.fivetran_name())))
                .collect();
            state.insert("inferred".into(), Value::Object(m));
        }
        if done {
            state.insert(
                "last_complete".into(),
                Value::String(format_utc_micros(chrono::Utc::now().timestamp_micros())),
            );
        }
        self.ctx
            .emit
            .checkpoint(&t.name, Value::Object(state.clone()))
            .await
    }
    /// Read every page of one scan; the table's new cursor if it advanced.
    #[allow(clippy::too_many_arguments)]
    async fn scan(
        &mut self,
        t: &TableSpec,
        target: &str,
        parent: Option<&Value>,
        cursor: Option<String>,
        extra: &[(String, String)],
        state: &mut Map<String, Value>,
        parent_key: Option<&str>,
        mut keep: Option<&mut Vec<Value>>,
    ) -> Result<Option<String>> {
        let url = self.rest.first_url(t, parent, cursor.as_deref(), extra)?;
        // A step-size scan goes on from the window after the last one that
        // had rows (the SDK pattern's saved `current_id`).
        let resume = parent
            .is_none()
            .then(|| state.get(STEP_POSITION).and_then(Value::as_u64))
            .flatten();
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
        let mut best = cursor;
        let mut rows: u64 = 0;
        // Records read, against the total the first page gave (progress).
        let (mut read, mut total) = (0u64, None);
        // Whether any record had the cursor field, and the fields one had.
        let mut cursor_seen = false;
        let mut some_fields: Option<Vec<String>> = None;
        while let Some(fetched) = pages.next().await {
            let (url, resp) = match fetched {
                Ok(f) => f,
                Err(FetchError::Http(e)) => return Err(e.into()),
                Err(FetchError::Pagination(m)) => {
                    let m = self.rest.http.redact(&m);
                    return Err(Error::source(format!("table {}", t.name), m));
                }
            };
            let location = self.rest.http.redact(url.as_str());
            let page_error = |m: String| Error::source(format!("table {}: {location}", t.name), m);
            let page = envelope::split(&resp.body, &t.records).map_err(page_error)?;
            let n = page.ranges.len() as u64;
            if let Some(keep) = keep.as_deref_mut() {
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
                    self.decode(t, target, &resp.body, page.ranges, &location, rows)
                        .await?,
                ),
            };
            let page_max = decoded.as_ref().and_then(|d| d.observed.cursor_max.clone());
            if let Some(d) = &decoded {
                cursor_seen |= d.observed.cursor_seen;
                some_fields = some_fields.or_else(|| d.observed.first_fields.clone());
            }
            // The ranges went to the decoder: the view is built by hand.
            let view = PageView {
                url: &url,
                response_url: &resp.url,
                headers: &resp.headers,
                envelope: &page.fields,
                records: n,
                last_record: None,
                max_cursor: page_max.as_deref(),
            };
            // A top-level table whose pages say how many records there are shows how far it is.
            if parent.is_none() {
                read += n;
                total = total.or_else(|| pages.total_records(&view));
                if let Some(total) = total {
                    self.ctx.emit.stats.scanned(target, read, total);
                }
            }
            if let Some(d) = decoded {
                self.emit(t, target, d).await?;
            }
            rows += n;
            self.ctx.emit.page_fetched();
            if let Some(pm) = &page_max {
                if best.as_deref().is_none_or(|b| cursor_cmp(pm, b).is_gt()) {
                    best = Some(pm.clone());
                }
            }
            // Ascending: the cursor is safe to keep with this page.
            if t.incremental.as_ref().is_some_and(|i| i.ascending) {
                if let Some(c) = &best {
                    set_cursor(state, parent_key, c.clone());
                }
            }
            pages.advance(&view).map_err(page_error)?;
            if let Some(pos) = pages.position().filter(|_| parent.is_none()) {
                state.insert(STEP_POSITION.into(), json!(pos));
            }
            // A truncated table's last page is committed with its deletions.
            if !(t.truncate && pages.complete()) {
                self.save(t, target, state, false).await?;
            }
        }
        if let (Some(inc), Some(fields), false) = (&t.incremental, &some_fields, cursor_seen) {
            // Never incremental, silently: the spec names a field the API does not send.
            return Err(Error::config(
                Some(&self.rest.spec.path),
                format!(
                    "table {}: incremental.cursor_field {:?} is in none of the {rows} records read \
                     (they have: {})",
                    t.name,
                    inc.cursor_field,
                    crate::text::truncate_for_display(&fields.join(", "), 300)
                ),
            ));
        }
        tracing::info!(table = %t.name, rows, pages = pages.pages(), "table read");
        Ok(best)
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
