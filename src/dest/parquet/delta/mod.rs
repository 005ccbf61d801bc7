//! `--format delta`: the Parquet destination's merge planning, committed
//! as Delta Lake transactions (delta-rs) on a local directory or S3.
//!
//! Layout: every table is a Delta table at `<out>/<schema>/<table>`; the
//! sync state is the Delta table `<out>/<schema>/_etl_state` (an
//! append-only history of each connector's and stream's state, see
//! `state`). Data files are written by etl's Parquet writer under names no
//! other writer can pick, then one Delta commit per table
//! adds them and removes the files they replace (copy-on-write), so a
//! reader sees each table before or after a commit, never a mix.
//!
//! Exactly once: a commit writes every table with changes, then the state
//! rows of the streams whose state changed. A crash in between leaves the
//! state of the previous commit, and the next run replays from it: merges by
//! key are idempotent, so the replay ends with the same rows.
//!
//! Several writers: a keyed commit is a Delta merge that read the whole
//! table, so a concurrent commit that changed its data is a conflict; the
//! commit is then planned again on the new snapshot (with its key index
//! rebuilt) and retried, a few times, before the sync stops with "busy"
//! (exit 4) having committed nothing of that table. Appends to a table
//! without a primary key never conflict, nor do state rows of different
//! streams.

mod schema;
mod state;
pub mod store;
pub mod vacuum;

use std::collections::HashMap;
use std::time::Duration;

use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Add, MetadataExt, Remove, TableFeatures, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};

use self::schema::*;
pub(super) use self::state::STATE_TABLE;
use super::*;

/// Times a table's commit is planned and tried before giving up as busy.
const ATTEMPTS: u32 = 6;
/// Times the state rows are numbered and committed before giving up as
/// busy: they conflict only with a writer of the same streams.
const STATE_ATTEMPTS: u32 = 12;

/// The Delta side of a Parquet destination in `--format delta`.
pub(super) struct Lake {
    rt: Option<tokio::runtime::Runtime>,
    io: store::ObjectIo,
    /// `<out>/<schema>` as the user wrote `<out>`.
    shown: String,
    schema: String,
    /// The delta-rs table of each table that exists.
    logs: HashMap<String, DeltaTable>,
    /// The state of each stream as this writer last read or committed
    /// it: (connector, stream) → JSON.
    committed: BTreeMap<(String, String), String>,
    /// The last sequence number of each stream in the state table.
    seqs: BTreeMap<(String, String), i64>,
    /// The state rows staged for the next state commit.
    staged: Option<state::StagedState>,
}

impl Drop for Lake {
    fn drop(&mut self) {
        // Dropped on any thread, a runtime inside a runtime included.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Lake {
    pub(super) fn io(&self) -> &store::ObjectIo {
        &self.io
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.io.rt.block_on(f)
    }

    fn table_url(&self, name: &str) -> url::Url {
        self.io.loc.join(&format!("{}/{name}", self.schema))
    }

    /// Load `name`'s Delta table (latest version).
    fn load(&self, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(name);
        let root = self.io.loc.root.clone();
        self.block_on(async move {
            DeltaTableBuilder::from_url(url.clone())?
                .with_storage_backend(root, url)
                .load()
                .await
        })
        .map_err(|e| self.err(format!("loading table {name}"), e))
    }

    fn err(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::destination(
            self.shown.clone(),
            format!("{what}: {}", store::clean(&e.to_string())),
        )
    }
}

/// How a Delta commit failed.
enum Failed {
    /// Another writer committed first and the commit cannot go on top.
    Conflict(String),
    Other(Error),
}

impl ParquetDestination {
    /// Open (or, with `create`, create) the schema `ns` of the Delta lake
    /// `out` (a directory or `s3://bucket/prefix`).
    pub fn open_delta(
        out: &str,
        opts: ParquetOptions,
        ns: &Namespace,
        create: bool,
    ) -> Result<Self> {
        let loc = store::Location::parse(out, create)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etl-delta")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the Delta runtime: {e}")))?;
        let schema = ns.schema().to_string();
        let shown = format!("{}/{schema}", out.trim_end_matches('/'));
        let io = store::ObjectIo {
            base: loc.path(&schema),
            loc,
            rt: rt.handle().clone(),
        };
        let lake = Lake {
            rt: Some(rt),
            io,
            shown: shown.clone(),
            schema,
            logs: HashMap::new(),
            committed: BTreeMap::new(),
            seqs: BTreeMap::new(),
            staged: None,
        };
        if lake.io.size(&format!("{META_DIR}/{STATE_FILE}")).is_some() {
            return Err(Error::refused(
                &shown,
                format!("{shown} is a plain Parquet dataset; sync it with --format parquet, or give --format delta a new --out"),
            ));
        }
        let names = lake.io.dirs("")?;
        if !create && !names.iter().any(|n| n == STATE_TABLE) {
            return Err(Error::refused(
                out,
                format!(
                    "connector {} has never committed to {out} (it has no {}/ schema with etl state)",
                    ns.connector,
                    ns.schema()
                ),
            ));
        }
        let mut d = ParquetDestination {
            root: PathBuf::from(&shown),
            owner: None,
            naming: None,
            opts,
            manifest: Manifest::default(),
            tables: BTreeMap::new(),
            pending: WriteSummary::default(),
            _lock: None,
            poisoned: false,
            dropping: Vec::new(),
            fail_at: None,
            delta: Some(lake),
            counted: None,
        };
        for name in names {
            if !d.lake().io.any_under(&format!("{name}/_delta_log/"))? {
                continue;
            }
            d.reload(&name)?;
        }
        d.load_state_rows()?;
        Ok(d)
    }

    fn lake(&self) -> &Lake {
        self.delta.as_ref().expect("a Delta destination")
    }

    fn lake_mut(&mut self) -> &mut Lake {
        self.delta.as_mut().expect("a Delta destination")
    }

    /// Read `name` again from its log (its files, columns and properties).
    fn reload(&mut self, name: &str) -> Result<Table> {
        let table = self.lake().load(name)?;
        let snap = table
            .snapshot()
            .map_err(|e| self.lake().err(format!("table {name}"), e))?;
        let t = table_from_snapshot(name, snap, &self.lake().shown)?;
        self.lake_mut().logs.insert(name.to_string(), table);
        let old = self.tables.insert(name.to_string(), t);
        Ok(old.unwrap_or_else(|| Table::new(name)))
    }

    /// Commit every table's pending operations, then the changed streams'
    /// state (see the module doc).
    pub(super) fn publish_delta(&mut self, state: Option<(&str, &State)>) -> Result<WriteSummary> {
        let mut written = std::mem::take(&mut self.pending);
        let names: Vec<String> = self
            .tables
            .iter()
            .filter(|(n, _)| {
                ![STATE_TABLE, super::seen::SEEN_TABLE].contains(&n.as_str())
                    && !self.dropping.contains(n)
            })
            .filter(|(_, t)| t.has_pending())
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            match self.commit_delta_table(name, 1, ATTEMPTS) {
                Ok(c) => {
                    if c != TableCounts::default() {
                        written.table(name).add(c);
                    }
                }
                Err(e) => {
                    let _ = self.rollback();
                    return Err(e);
                }
            }
        }
        // What the tables' commits found unchanged, before the state that
        // counts on it.
        let seen = super::seen::SEEN_TABLE;
        let queued = self.queue_seen().and_then(|q| match q {
            true => self.commit_delta_table(seen, 1, ATTEMPTS).map(|_| ()),
            false => Ok(()),
        });
        if let Err(e) = queued {
            let _ = self.rollback();
            return Err(e);
        }
        if let Err(e) = self.commit_state(state) {
            let _ = self.rollback();
            return Err(e);
        }
        if let Some((connector, state)) = state {
            let v: serde_json::Value =
                serde_json::from_str(&state.to_json()).expect("state is JSON");
            self.manifest.connectors.insert(connector.to_string(), v);
        }
        self.manifest.naming = self.naming.or(self.manifest.naming);
        for name in std::mem::take(&mut self.dropping) {
            self.drop_delta_table(&name)?;
        }
        Ok(written)
    }

    /// Commit the changed streams' state rows: appends, which conflict only
    /// with another writer of the same stream's state (or a compaction), and
    /// are then numbered again on top of what that writer committed.
    fn commit_state(&mut self, state: Option<(&str, &State)>) -> Result<()> {
        let mut attempt = 1;
        loop {
            self.stage_state(state)?;
            let pending = self
                .tables
                .get(STATE_TABLE)
                .is_some_and(|t| t.has_pending());
            let r = match pending {
                true => self.commit_delta_table(STATE_TABLE, attempt, attempt),
                false => Ok(TableCounts::default()),
            };
            match r {
                Ok(_) => {
                    self.state_committed();
                    return Ok(());
                }
                Err(Error::Busy { .. }) if attempt < STATE_ATTEMPTS => {
                    pause(attempt);
                    if self
                        .lake()
                        .io
                        .any_under(&format!("{STATE_TABLE}/_delta_log/"))?
                    {
                        self.refresh_state_seqs()?;
                    } else {
                        self.tables.remove(STATE_TABLE);
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Remove every object of a dropped table (its log first, so what is
    /// left of an interrupted drop is no table).
    fn drop_delta_table(&mut self, name: &str) -> Result<()> {
        self.tables.remove(name);
        self.lake_mut().logs.remove(name);
        let io = self.lake().io.clone();
        let mut objects = io.list(&format!("{name}/_delta_log/"))?;
        objects.extend(io.list(&format!("{name}/"))?);
        let base = format!("{}/", io.base);
        for o in objects {
            if let Some(rel) = o.strip_prefix(&base) {
                io.delete(rel);
            }
        }
        Ok(())
    }

    /// Plan and commit one table, planning again on top of what another
    /// writer committed when the commit conflicts: attempts number `first`
    /// to `last`, then "busy".
    fn commit_delta_table(&mut self, name: &str, first: u32, last: u32) -> Result<TableCounts> {
        let mut attempt = first;
        loop {
            let mut t = self.tables.remove(name).expect("listed");
            let saved = t.ops.clone();
            let declared = t.declared;
            let mut plan = Plan::new(0, format!("{:016x}", rand::random::<u64>()));
            let planned = self.commit_table(&mut t, &mut plan);
            let outcome = match planned {
                Ok(counts) => self.commit_log(&t, &plan).map(|table| (counts, table)),
                Err(e) => Err(Failed::Other(e)),
            };
            match outcome {
                Ok((counts, table)) => {
                    t.declared = false;
                    for id in plan.dropped.remove(name).into_iter().flatten() {
                        t.files.remove(&id);
                    }
                    for (id, f) in plan.added.remove(name).into_iter().flatten() {
                        t.files.insert(id, f);
                    }
                    if let Some(table) = table {
                        self.lake_mut().logs.insert(name.to_string(), table);
                    }
                    tracing::debug!(
                        table = name,
                        attempt,
                        files_added = plan.seq,
                        "committed to Delta"
                    );
                    self.tables.insert(name.to_string(), t);
                    return Ok(counts);
                }
                Err(failed) => {
                    for f in &plan.written {
                        self.lake().io.delete(f);
                    }
                    t.index = None;
                    t.ops = saved;
                    let message = match failed {
                        Failed::Other(e) => {
                            self.tables.insert(name.to_string(), t);
                            return Err(e);
                        }
                        Failed::Conflict(m) => m,
                    };
                    if attempt >= last {
                        self.tables.insert(name.to_string(), t);
                        return Err(Error::Busy {
                            target: format!("{}/{name}", self.lake().shown),
                            message: format!(
                                "other writers kept committing to table {name} ({attempt} attempts, last: {message}); \
                                 nothing of this commit was kept, run the sync again"
                            ),
                        });
                    }
                    tracing::info!(table = name, attempt, conflict = %message,
                        "another writer committed to the table first; planning the commit again on top");
                    self.tables.insert(name.to_string(), t);
                    let mine = self.reload(name)?;
                    let t = self.tables.get_mut(name).expect("reloaded");
                    for (c, ty) in mine.columns {
                        if !t.has_column(&c) {
                            t.columns.push((c, ty));
                        }
                    }
                    t.owner = t.owner.clone().or(mine.owner);
                    if t.primary_key.is_empty() {
                        t.primary_key = mine.primary_key;
                    }
                    if t.partition.is_none() && t.files.is_empty() {
                        t.partition = mine.partition;
                    }
                    t.ops = mine.ops;
                    t.declared = declared;
                    pause(attempt);
                    attempt += 1;
                }
            }
        }
    }

    /// The Delta commit of a planned table: adds for the files written,
    /// removes for the files replaced, and a metadata action when columns
    /// or properties changed. `None`: nothing to commit.
    fn commit_log(
        &self,
        t: &Table,
        plan: &Plan,
    ) -> std::result::Result<Option<DeltaTable>, Failed> {
        let lake = self.lake();
        let origin = lake.shown.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let mut actions = Vec::new();
        for (_, f) in plan.added.get(&t.name).into_iter().flatten() {
            actions.push(Action::Add(Add {
                path: f.path.clone(),
                partition_values: partition_value(t, &f.path),
                size: f.bytes.unwrap_or(0) as i64,
                modification_time: now,
                data_change: true,
                stats: Some(serde_json::json!({ "numRecords": f.rows }).to_string()),
                ..Default::default()
            }));
        }
        let dropped = plan.dropped.get(&t.name).map_or(&[][..], Vec::as_slice);
        // The state table is append-only: a file it drops is compacted into
        // another as it is (see `state`).
        let is_state = t.name == STATE_TABLE;
        for id in dropped {
            let f = &t.files[id];
            actions.push(Action::Remove(Remove {
                path: f.path.clone(),
                data_change: !is_state,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(partition_value(t, &f.path)),
                size: f.bytes.map(|b| b as i64),
                ..Default::default()
            }));
        }
        if is_state {
            for (app_id, version) in lake.staged.iter().flat_map(state::StagedState::txns) {
                actions.push(Action::Txn(Transaction::new_with_last_update(
                    app_id,
                    version,
                    Some(now),
                )));
            }
            if !dropped.is_empty() {
                actions.push(Action::Txn(Transaction::new_with_last_update(
                    state::COMPACTION_TXN,
                    now,
                    Some(now),
                )));
            }
        }
        let schema = delta_schema(t, &origin).map_err(Failed::Other)?;
        let mut props = properties(t);
        if is_state {
            if let Some(n) = self.naming.or(self.manifest.naming) {
                props.insert(NAMING.to_string(), n.to_string());
            }
        }
        let Some(table) = lake.logs.get(&t.name) else {
            return self.create_table(t, schema, props, actions).map(Some);
        };
        let table = self
            .with_features_for(table, &schema)
            .map_err(Failed::Other)?;
        let snap = table
            .snapshot()
            .map_err(|e| Failed::Other(lake.err(format!("table {}", t.name), e)))?;
        let current = snap.metadata().configuration();
        let changed_props = props.iter().any(|(k, v)| current.get(k) != Some(v));
        if *snap.schema() != schema || changed_props {
            let mut md = snap.metadata().clone().with_schema(&schema);
            for (k, v) in props {
                md = md.and_then(|m| m.add_config_key(k, v));
            }
            let md = md.map_err(|e| Failed::Other(lake.err(format!("table {}", t.name), e)))?;
            actions.push(Action::Metadata(md));
        }
        if actions.is_empty() {
            return Ok(None);
        }
        let keyed = !is_state && (!t.primary_key.is_empty() || !dropped.is_empty());
        let op = if keyed {
            DeltaOperation::Merge {
                predicate: None,
                merge_predicate: None,
                matched_predicates: Vec::new(),
                not_matched_predicates: Vec::new(),
                not_matched_by_source_predicates: Vec::new(),
            }
        } else {
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: t.partition.as_ref().map(|p| vec![p.key()]),
                predicate: None,
            }
        };
        let log_store = table.log_store();
        let snap = snap.clone();
        let mut table = table;
        let name = t.name.clone();
        let r = lake.block_on(async move {
            CommitBuilder::from(commit_properties())
                .with_actions(actions)
                .build(Some(&snap), log_store, op)
                .await?;
            table.update_incremental(None).await?;
            Ok::<_, DeltaTableError>(table)
        });
        r.map(Some).map_err(|e| classify(lake, &name, e))
    }

    /// `table`, its protocol upgraded first (a commit of its own) when
    /// `schema` gains a type the table's features do not cover yet: a
    /// NAIVE_DATETIME column needs `timestampNtz`.
    fn with_features_for(
        &self,
        table: &DeltaTable,
        schema: &deltalake_core::kernel::StructType,
    ) -> Result<DeltaTable> {
        let lake = self.lake();
        let ntz = schema
            .fields()
            .any(|f| f.data_type() == &deltalake_core::kernel::DataType::TIMESTAMP_NTZ);
        let snap = table
            .snapshot()
            .map_err(|e| lake.err("reading the table", e))?;
        let protocol = serde_json::to_value(snap.protocol()).unwrap_or_default();
        let has_ntz = protocol["writerFeatures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "timestampNtz"));
        if !ntz || has_ntz {
            return Ok(table.clone());
        }
        let table = table.clone();
        lake.block_on(async move {
            table
                .add_feature()
                .with_feature(TableFeatures::TimestampWithoutTimezone)
                .with_allow_protocol_versions_increase(true)
                .await
        })
        .map_err(|e| lake.err("enabling timestampNtz", e))
    }

    /// Create `t`'s Delta table with its first files, in one commit.
    fn create_table(
        &self,
        t: &Table,
        schema: deltalake_core::kernel::StructType,
        props: HashMap<String, String>,
        actions: Vec<Action>,
    ) -> std::result::Result<DeltaTable, Failed> {
        let lake = self.lake();
        let url = lake.table_url(&t.name);
        let root = lake.io.loc.root.clone();
        let parts = partition_columns(t);
        let name = t.name.clone();
        let r = lake.block_on(async move {
            let table = DeltaTableBuilder::from_url(url.clone())?
                .with_storage_backend(root, url)
                .build()?;
            let created = deltalake_core::operations::create::CreateBuilder::new()
                .with_log_store(table.log_store())
                .with_table_name(name.clone())
                .with_columns(schema.fields().cloned())
                .with_partition_columns(parts)
                .with_configuration(props.into_iter().map(|(k, v)| (k, Some(v))))
                .with_raise_if_key_not_exists(false)
                .with_actions(actions)
                // No retry: when another writer created the table first,
                // delta-rs would put this create (its data included) on top
                // of that table unchecked. Failing instead, the commit is
                // planned again against the table that now exists.
                .with_commit_properties(commit_properties().with_max_retries(0))
                .await?;
            Ok::<_, DeltaTableError>(created)
        });
        r.map_err(|e| {
            // Created by another writer since this one looked: plan on top of it.
            if lake
                .io
                .any_under(&format!("{}/_delta_log/", t.name))
                .unwrap_or(false)
            {
                Failed::Conflict(format!(
                    "table {} was created by another writer: {}",
                    t.name,
                    store::clean(&e.to_string())
                ))
            } else {
                classify(lake, &t.name, e)
            }
        })
    }
}

/// Commit info every etl commit carries.
/// The pause before attempt `attempt + 1` of a conflicting commit: growing,
/// with random jitter so writers that collided spread out.
fn pause(attempt: u32) {
    let jitter = rand::random::<u64>() % (50 << attempt.min(6));
    std::thread::sleep(Duration::from_millis(20 * attempt as u64 + jitter));
}

fn commit_properties() -> CommitProperties {
    CommitProperties::default()
        .with_metadata([(
            "engineInfo".to_string(),
            serde_json::Value::String(format!("etl/{}", env!("CARGO_PKG_VERSION"))),
        )])
        .with_create_checkpoint(true)
}

/// A commit error: a conflict with another writer, or anything else.
fn classify(lake: &Lake, table: &str, e: DeltaTableError) -> Failed {
    let conflict = match &e {
        DeltaTableError::VersionAlreadyExists(_) => true,
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::CommitConflict(_)
                | TransactionError::VersionAlreadyExists(_)
                | TransactionError::MaxCommitAttempts(_)
        ),
        _ => false,
    };
    if conflict {
        Failed::Conflict(store::clean(&e.to_string()))
    } else {
        Failed::Other(lake.err(format!("committing table {table}"), e))
    }
}
