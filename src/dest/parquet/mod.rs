//! Parquet destination: a plain hive-partitioned dataset, merged by primary
//! key with copy-on-write files, published atomically.
//!
//! Layout: `DIR/<table>/<key>=<value>/part-<commit>-<n>.parquet` (or directly
//! under `DIR/<table>/` for tables without partitioning), rejects in
//! `DIR/_etl_rejects/`, and `DIR/_etl/state.json`: the format version, the
//! committed state of each connector, and the manifest (columns,
//! partitioning, live files) of each table.
//!
//! Operations are kept in memory until [`Destination::commit`]. A commit finds
//! the files holding old versions of the keys it changes (an in-memory key
//! index, built on first use by reading the key columns), rewrites only those
//! files (plus the rows of new keys, added as new files in their partitions),
//! and leaves every other file alone. Deletes are soft (`_fivetran_deleted`,
//! or `_etl_deleted` under source naming).
//!
//! Publishing, so that a crash at any instant ends in the old or the new
//! commit and never in between:
//! 1. new files are written and fsynced as hidden `.part-….parquet.tmp`;
//! 2. `_etl/commit.pending.json` records the new manifest, the renames and the
//!    files to remove (the commit point);
//! 3. the temporary files are renamed into place and replaced files removed;
//! 4. `_etl/state.json` is replaced (write, fsync, rename) and the pending
//!    record removed.
//!
//! Opening a dataset finishes a pending commit (roll forward: every file it
//! names was fsynced before it was written) and deletes leftovers of a commit
//! that never reached its commit point (temporary files, unlisted parts).
//! Between steps 3 and 4 a reader listing the directory may briefly see both
//! the old and the new copy of a rewritten file; after a crash there, the next
//! run finishes the commit before doing anything else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, Int64Array, StringArray};
use arrow::compute::{self, kernels::cmp};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};

mod files;
mod options;

use self::files::{escape_partition, sync_dir, write_atomic};
pub use self::options::{parse_compression, parse_partition_override, ParquetOptions};
use super::namespace::Namespace;
use super::{Destination, TableCounts, WriteSummary};
use crate::decode::Reject;
use crate::error::{Error, Result};
use crate::schema::{
    Column, ColumnType, PartitionTransform, Partitioning, TableSchema, TypeChange, DELETED_COLUMN,
    UTC,
};
use crate::state::State;

/// Version of `_etl/state.json` this build writes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "etl-parquet";
/// Directory of the dataset's own files (state, pending commit, lock).
pub const META_DIR: &str = "_etl";
const STATE_FILE: &str = "state.json";
const PENDING_FILE: &str = "commit.pending.json";
const LOCK_FILE: &str = "lock";
const REJECTS_TABLE: &str = "_etl_rejects";
/// Directory value of a null partition value (Hive's convention, read as NULL).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
/// Rows per batch when reading files back.
const READ_BATCH_ROWS: usize = 8192;
/// A partition with this many small files gets them merged when it is written.
const COMPACT_FILES: usize = 16;

// ---------------------------------------------------------------------------
// The state file

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u32,
    /// Number of the last commit (file names carry the commit that wrote them).
    commit: u64,
    #[serde(default)]
    connectors: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    tables: BTreeMap<String, TableManifest>,
    /// How the tables are named (none: written before namings were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    naming: Option<crate::naming::Naming>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            commit: 0,
            connectors: BTreeMap::new(),
            tables: BTreeMap::new(),
            naming: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableManifest {
    /// The connector that created the table (none: before tables had owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default)]
    primary_key: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_by: Option<String>,
    columns: Vec<ManifestColumn>,
    files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    /// Relative to the table directory.
    path: String,
    rows: u64,
}

/// The commit point: what step 3 and 4 of publishing must finish.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pending {
    manifest: Manifest,
    /// Temporary → final paths, relative to the dataset root.
    renames: Vec<(String, String)>,
    /// Replaced files, relative to the dataset root.
    removes: Vec<String>,
}

// ---------------------------------------------------------------------------
// Tables in memory

/// A key, encoded so equal keys have equal bytes.
type Key = Box<[u8]>;

/// A key as the key → file index holds it: 128 bits of two independently
/// seeded hashes (seeds random per process; the index lives in memory
/// only). 24 bytes an entry instead of a boxed key (~75 bytes with its
/// allocation), so a table of millions of keys indexes in a third of the
/// memory. The index only says which files may hold a key: rewriting a file
/// compares the keys themselves, so even a collision (odds about n²/2¹²⁹)
/// would cost one needless file rewrite and an insert counted as an update,
/// never a row.
type IndexKey = [u64; 2];

fn index_key(k: &[u8]) -> IndexKey {
    use std::hash::BuildHasher;
    static SEEDS: std::sync::OnceLock<[std::hash::RandomState; 2]> = std::sync::OnceLock::new();
    let [a, b] =
        SEEDS.get_or_init(|| [std::hash::RandomState::new(), std::hash::RandomState::new()]);
    [a.hash_one(k), b.hash_one(k)]
}

#[derive(Debug, Clone)]
struct LiveFile {
    /// Relative to the table directory.
    path: String,
    rows: u64,
}

impl LiveFile {
    /// The partition directory ("" for the table directory itself).
    fn partition(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(p, _)| p)
    }
}

#[derive(Debug)]
enum PendingOp {
    Upsert(RecordBatch),
    Update(RecordBatch),
    Delete(RecordBatch),
    Sweep(Sweep),
}

#[derive(Debug, Clone)]
enum Sweep {
    Truncate,
    OlderThan { column: String, before: i64 },
}

struct Table {
    name: String,
    owner: Option<String>,
    /// The soft-delete flag among `columns`.
    deleted: &'static str,
    primary_key: Vec<String>,
    partition: Option<Partitioning>,
    /// Columns in file order, `_etl_deleted` included.
    columns: Vec<(String, ColumnType)>,
    files: BTreeMap<u32, LiveFile>,
    next_id: u32,
    /// Key → file holding it; `None` until a commit needs it.
    index: Option<HashMap<IndexKey, u32>>,
    ops: Vec<PendingOp>,
    /// Declared since the last commit (written even without rows).
    declared: bool,
}

impl Table {
    fn new(name: &str) -> Self {
        Table {
            name: name.into(),
            owner: None,
            deleted: DELETED_COLUMN,
            primary_key: Vec::new(),
            partition: None,
            columns: Vec::new(),
            files: BTreeMap::new(),
            next_id: 0,
            index: None,
            ops: Vec::new(),
            declared: false,
        }
    }

    fn from_manifest(name: &str, m: &TableManifest, origin: &str) -> Result<Self> {
        let mut t = Table::new(name);
        t.owner = m.owner.clone();
        t.primary_key = m.primary_key.clone();
        t.partition = m
            .partition_by
            .as_deref()
            .map(Partitioning::parse)
            .transpose()
            .map_err(|e| Error::destination(origin, format!("table {name}: {e}")))?;
        for c in &m.columns {
            let ty = ColumnType::parse(&c.ty).map_err(|e| {
                Error::destination(origin, format!("table {name}, column {}: {e}", c.name))
            })?;
            t.columns.push((c.name.clone(), ty));
            if c.name == crate::naming::Naming::Fivetran.deleted() {
                t.deleted = crate::naming::Naming::Fivetran.deleted();
            }
        }
        for f in &m.files {
            t.files.insert(
                t.next_id,
                LiveFile {
                    path: f.path.clone(),
                    rows: f.rows,
                },
            );
            t.next_id += 1;
        }
        Ok(t)
    }

    fn manifest(&self) -> TableManifest {
        TableManifest {
            owner: self.owner.clone(),
            primary_key: self.primary_key.clone(),
            partition_by: self.partition.as_ref().map(|p| p.to_string()),
            columns: self
                .columns
                .iter()
                .map(|(n, t)| ManifestColumn {
                    name: n.clone(),
                    ty: t.fivetran_name(),
                })
                .collect(),
            files: self
                .files
                .values()
                .map(|f| FileEntry {
                    path: f.path.clone(),
                    rows: f.rows,
                })
                .collect(),
        }
    }

    fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|(n, _)| n == name)
    }

    /// The schema every file written now gets (JSON columns carry the
    /// canonical extension type, which the writer maps to Parquet's JSON).
    fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, ty)| {
                let required = name == self.deleted || self.primary_key.contains(name);
                let f = Field::new(name, ty.arrow_type(), !required);
                let mut md = HashMap::new();
                md.insert("etl.type".to_string(), ty.fivetran_name());
                let f = f.with_metadata(md);
                if *ty == ColumnType::Json {
                    f.with_extension_type(arrow_schema::extension::Json::default())
                } else {
                    f
                }
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn has_pending(&self) -> bool {
        !self.ops.is_empty() || self.declared
    }
}

/// The Fivetran type of an Arrow type (columns a batch carries undeclared).
fn column_type_of(dt: &DataType) -> Option<ColumnType> {
    Some(match dt {
        DataType::Boolean => ColumnType::Boolean,
        DataType::Int16 => ColumnType::Short,
        DataType::Int32 => ColumnType::Int,
        DataType::Int64 => ColumnType::Long,
        DataType::Float32 => ColumnType::Float,
        DataType::Float64 => ColumnType::Double,
        DataType::Decimal128(p, s) => ColumnType::Decimal {
            precision: *p,
            scale: *s,
        },
        DataType::Date32 => ColumnType::NaiveDate,
        DataType::Timestamp(TimeUnit::Microsecond, None) => ColumnType::NaiveDatetime,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => ColumnType::UtcDatetime,
        DataType::Binary => ColumnType::Binary,
        DataType::Utf8 => ColumnType::String,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// The destination

/// Where a commit can be made to stop, to test recovery (see `fail_commit_at`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// New files written as temporaries, nothing recorded.
    FilesWritten,
    /// The pending record written (the commit point).
    PendingWritten,
    /// Half of the renames done.
    HalfRenamed,
    /// All renames done, no replaced file removed.
    Renamed,
    /// Replaced files removed, state not replaced.
    Removed,
    /// State replaced, pending record still there.
    StateWritten,
}

pub struct ParquetDestination {
    root: PathBuf,
    /// The connector that claimed the tables; new tables are its.
    owner: Option<String>,
    /// The naming to record with the next commit.
    naming: Option<crate::naming::Naming>,
    opts: ParquetOptions,
    manifest: Manifest,
    tables: BTreeMap<String, Table>,
    pending: WriteSummary,
    /// Held for the destination's lifetime: one writer per dataset.
    _lock: File,
    /// A commit failed after its commit point; only reopening recovers.
    poisoned: bool,
    /// Tables to drop at the next commit.
    dropping: Vec<String>,
    fail_at: Option<CommitStep>,
}

impl ParquetDestination {
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, ParquetOptions::default())
    }

    /// Open (or, with `create`, create) the dataset of the namespace `ns`
    /// in the lake `out`: `<out>/<schema>/`, or `<out>` itself when it is a
    /// dataset written before namespaces that holds the connector's state.
    pub fn open_in(out: &Path, opts: ParquetOptions, ns: &Namespace, create: bool) -> Result<Self> {
        let origin = out.display().to_string();
        if out.is_file() {
            return Err(Error::Usage(format!(
                "--out {origin} is a file; a Parquet dataset is a directory"
            )));
        }
        if out.join(META_DIR).is_dir() {
            let connectors = Self::connectors_in(out)?;
            if ns.explicit.is_none() && connectors.contains(&ns.connector) {
                tracing::info!(
                    dataset = %origin,
                    connector = %ns.connector,
                    "this dataset was written before connectors had schemas of their own: \
                     {} stays at its top level",
                    ns.connector
                );
                return Self::open_with(out, opts);
            }
            return Err(Error::Usage(format!(
                "{origin} is an etl dataset written before connectors had schemas of their own \
                 (it holds {}); write {} to another --out, or move the dataset's contents into \
                 {origin}/<schema>/ to make {origin} a lake of several schemas",
                if connectors.is_empty() {
                    "no connector's state".to_string()
                } else {
                    connectors.join(", ")
                },
                ns.connector
            )));
        }
        let schema = ns.schema();
        let dir = out.join(schema);
        if !create && !dir.join(META_DIR).is_dir() {
            return Err(Error::Usage(format!(
                "connector {} has never committed to {origin} (it has no {schema}/ dataset)",
                ns.connector
            )));
        }
        if out.exists() {
            let entries = fs::read_dir(out).map_err(|e| {
                Error::destination(origin.clone(), format!("listing the directory: {e}"))
            })?;
            let foreign = entries.flatten().find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !(name.starts_with('.') || e.path().join(META_DIR).is_dir() || e.path() == dir)
            });
            if let Some(e) = foreign {
                return Err(Error::Usage(format!(
                    "{origin} is not empty and is not an etl lake ({} is not a schema's dataset); \
                     give a new or empty directory",
                    e.file_name().to_string_lossy()
                )));
            }
        } else {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.exists() {
                    return Err(Error::Usage(format!(
                        "output directory {} does not exist",
                        parent.display()
                    )));
                }
            }
            fs::create_dir(out).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(Error::destination(
                    origin.clone(),
                    format!("creating the directory: {e}"),
                )),
            })?;
        }
        Self::open_with(&dir, opts)
    }

    /// The connectors whose state the dataset at `root` holds (without
    /// locking it: only to tell the user).
    fn connectors_in(root: &Path) -> Result<Vec<String>> {
        let path = root.join(META_DIR).join(STATE_FILE);
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(Vec::new());
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::destination(path.display().to_string(), format!("not valid: {e}"))
        })?;
        Ok(m.connectors.into_keys().collect())
    }

    /// Open (or create) the dataset at `root`, finishing or cleaning up after
    /// an interrupted commit.
    pub fn open_with(root: &Path, opts: ParquetOptions) -> Result<Self> {
        let origin = root.display().to_string();
        let derr = |what: &str, e: &dyn std::fmt::Display| {
            Error::destination(origin.clone(), format!("{what}: {e}"))
        };
        if root.is_file() {
            return Err(Error::Usage(format!(
                "--out {origin} is a file; a Parquet dataset is a directory"
            )));
        }
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                return Err(Error::Usage(format!(
                    "output directory {} does not exist",
                    parent.display()
                )));
            }
        }
        let meta = root.join(META_DIR);
        if root.exists() && !meta.is_dir() {
            let mut entries = fs::read_dir(root).map_err(|e| derr("listing the directory", &e))?;
            if entries.next().is_some() {
                return Err(Error::Usage(format!(
                    "{origin} is not empty and is not an etl Parquet dataset (it has no {META_DIR}/ directory); \
                     give a new or empty directory"
                )));
            }
        }
        fs::create_dir_all(&meta).map_err(|e| derr("creating the directory", &e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(meta.join(LOCK_FILE))
            .map_err(|e| derr("opening the lock file", &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy {
                    target: origin,
                    message: "another etl process is writing to this dataset".into(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(derr("locking the dataset", &e)),
        }
        let mut d = ParquetDestination {
            root: root.to_path_buf(),
            owner: None,
            naming: None,
            opts,
            manifest: Manifest::default(),
            tables: BTreeMap::new(),
            pending: WriteSummary::default(),
            _lock: lock,
            poisoned: false,
            dropping: Vec::new(),
            fail_at: None,
        };
        d.recover()?;
        Ok(d)
    }

    /// Stop the next commit at `step`, as a crash there would (tests).
    #[doc(hidden)]
    pub fn fail_commit_at(&mut self, step: CommitStep) {
        self.fail_at = Some(step);
    }

    /// The dataset directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Live files of `table`, relative to the table directory (tests, benches).
    pub fn files(&self, table: &str) -> Vec<String> {
        self.tables
            .get(table)
            .map(|t| t.files.values().map(|f| f.path.clone()).collect())
            .unwrap_or_default()
    }

    fn origin(&self) -> String {
        self.root.display().to_string()
    }

    fn err(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::destination(self.origin(), format!("{what}: {e}"))
    }

    fn io<T>(&self, what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T> {
        r.map_err(|e| self.err(what(), e))
    }

    /// Finish a pending commit, load the manifest, delete leftovers.
    fn recover(&mut self) -> Result<()> {
        let meta = self.root.join(META_DIR);
        let pending_path = meta.join(PENDING_FILE);
        if pending_path.exists() {
            let text = self.io(
                || format!("reading {}", pending_path.display()),
                fs::read_to_string(&pending_path),
            )?;
            let p: Pending = serde_json::from_str(&text)
                .map_err(|e| self.err(format!("reading {}", pending_path.display()), e))?;
            tracing::warn!(dataset = %self.origin(), commit = p.manifest.commit, "finishing a commit interrupted by a crash");
            self.finish_publish(&p)?;
        }
        let state_path = meta.join(STATE_FILE);
        if state_path.exists() {
            let text = self.io(
                || format!("reading {}", state_path.display()),
                fs::read_to_string(&state_path),
            )?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| self.err(format!("{} is not valid", state_path.display()), e))?;
            if m.format != FORMAT_NAME || m.version > FORMAT_VERSION {
                return Err(self.err(
                    state_path.display(),
                    format!(
                        "format {} version {} is not one this etl understands ({FORMAT_NAME} up to {FORMAT_VERSION}); upgrade etl",
                        m.format, m.version
                    ),
                ));
            }
            self.manifest = m;
        }
        let origin = self.origin();
        self.tables.clear();
        for (name, tm) in &self.manifest.tables {
            self.tables
                .insert(name.clone(), Table::from_manifest(name, tm, &origin)?);
        }
        self.clean_leftovers()
    }

    /// Delete temporary files and parts no manifest lists (a commit that
    /// crashed before its commit point).
    fn clean_leftovers(&self) -> Result<()> {
        let entries = self.io(|| "listing the dataset".into(), fs::read_dir(&self.root))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == META_DIR || !e.path().is_dir() {
                continue;
            }
            let live: BTreeSet<&str> = self
                .tables
                .get(&name)
                .map(|t| t.files.values().map(|f| f.path.as_str()).collect())
                .unwrap_or_default();
            self.clean_dir(&e.path(), "", &live, 0)?;
        }
        Ok(())
    }

    fn clean_dir(&self, dir: &Path, rel: &str, live: &BTreeSet<&str>, depth: usize) -> Result<()> {
        let entries = self.io(|| format!("listing {}", dir.display()), fs::read_dir(dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let rel_path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                if depth == 0 {
                    self.clean_dir(&path, &rel_path, live, depth + 1)?;
                    // An emptied partition directory goes too.
                    if fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                        let _ = fs::remove_dir(&path);
                    }
                }
                continue;
            }
            let ours_tmp = name.starts_with(".part-") && name.ends_with(".tmp");
            let stray_part = name.starts_with("part-")
                && name.ends_with(".parquet")
                && !live.contains(rel_path.as_str());
            if ours_tmp || stray_part {
                tracing::info!(file = %path.display(), "removing a leftover of an interrupted commit");
                self.io(
                    || format!("removing {}", path.display()),
                    fs::remove_file(&path),
                )?;
            }
        }
        Ok(())
    }

    /// Steps 3 and 4 of publishing; idempotent, so recovery can repeat them.
    fn finish_publish(&mut self, p: &Pending) -> Result<()> {
        let mut dirs = BTreeSet::new();
        for (i, (tmp, fin)) in p.renames.iter().enumerate() {
            if self.fail_at == Some(CommitStep::HalfRenamed) && i == p.renames.len() / 2 {
                return self.simulated(CommitStep::HalfRenamed);
            }
            let (tmp, fin) = (self.root.join(tmp), self.root.join(fin));
            if tmp.exists() {
                self.io(
                    || format!("renaming {} into place", tmp.display()),
                    fs::rename(&tmp, &fin),
                )?;
            } else if !fin.exists() {
                return Err(self.err(
                    "finishing an interrupted commit",
                    format!("{} and its temporary file are both missing", fin.display()),
                ));
            }
            if let Some(d) = fin.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in &dirs {
            sync_dir(d).map_err(|e| self.err(format!("syncing {}", d.display()), e))?;
        }
        self.check_step(CommitStep::Renamed)?;
        for r in &p.removes {
            let path = self.root.join(r);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(format!("removing {}", path.display()), e)),
            }
            // A partition directory left empty goes too.
            if let Some(d) = path.parent() {
                if fs::read_dir(d).is_ok_and(|mut e| e.next().is_none()) {
                    let _ = fs::remove_dir(d);
                }
            }
        }
        self.check_step(CommitStep::Removed)?;
        let meta = self.root.join(META_DIR);
        let text = serde_json::to_string_pretty(&p.manifest).expect("manifest serialises");
        write_atomic(&meta.join(STATE_FILE), text.as_bytes())
            .map_err(|e| self.err("saving state", e))?;
        self.check_step(CommitStep::StateWritten)?;
        self.io(
            || "removing the pending commit record".into(),
            fs::remove_file(meta.join(PENDING_FILE)),
        )?;
        sync_dir(&meta).map_err(|e| self.err("syncing the state directory", e))?;
        Ok(())
    }

    fn check_step(&mut self, step: CommitStep) -> Result<()> {
        if self.fail_at == Some(step) {
            return self.simulated(step);
        }
        Ok(())
    }

    fn simulated(&mut self, step: CommitStep) -> Result<()> {
        self.poisoned = true;
        Err(Error::Internal(format!("simulated crash at {step:?}")))
    }

    /// The table `t` declares, created or evolved (columns added, never changed).
    fn ensure_table(&mut self, t: &TableSchema) -> Result<&mut Table> {
        let overridden = self.opts.partition_overrides.get(&t.name);
        let partition = match overridden {
            Some(p) => p.clone(),
            None => t.partition_by.clone(),
        };
        if let Some(p) = &partition {
            p.check(t).map_err(|e| match overridden {
                Some(_) => Error::Usage(format!("--partition-by {}={p}: {e}", t.name)),
                None => self.err(format!("table {}", t.name), e),
            })?;
        }
        let origin = self.origin();
        let owner = self.owner.clone().filter(|_| !t.name.starts_with("_etl"));
        let table = self
            .tables
            .entry(t.name.clone())
            .or_insert_with(|| Table::new(&t.name));
        // A table nothing was written to yet is laid out again from the
        // declaration (columns inferred from the first rows go before the
        // system columns, as in the tester).
        if table.files.is_empty() && table.ops.is_empty() {
            table.columns.clear();
        }
        if table.columns.is_empty() {
            table.owner = table.owner.clone().or(owner);
            table.deleted = t.deleted_column;
            table.primary_key = t.primary_key.clone();
            table.partition = partition;
        } else if table.partition != partition && !table.files.is_empty() {
            let show =
                |p: &Option<Partitioning>| p.as_ref().map_or("none".into(), |p| p.to_string());
            return Err(Error::Usage(format!(
                "table {} in {origin} is partitioned by {} but this sync asks for {}; \
                     pass --partition-by {}={} or sync into a new directory",
                t.name,
                show(&table.partition),
                show(&partition),
                t.name,
                show(&table.partition)
            )));
        } else if table.primary_key != t.primary_key && !table.files.is_empty() {
            return Err(Error::destination(
                origin,
                format!(
                    "table {} has primary key ({}) here but is now declared with ({})",
                    t.name,
                    table.primary_key.join(", "),
                    t.primary_key.join(", ")
                ),
            ));
        }
        let existed = !table.columns.is_empty();
        for c in &t.columns {
            // A column declared with another type than its files have: its
            // files are not rewritten, so only a type that holds the new
            // values is kept; anything else is refused, never ignored.
            if let Some((_, old)) = table.columns.iter().find(|(n, _)| n == &c.name) {
                let why = match TypeChange::of(*old, c.ty) {
                    TypeChange::Keep => None,
                    TypeChange::Widen => {
                        Some("and a Parquet dataset's files are not rewritten to widen a column")
                    }
                    TypeChange::Refuse => Some("which cannot hold them all"),
                };
                if let (Some(why), false) = (why, table.files.is_empty()) {
                    return Err(Error::Usage(TypeChange::refused(
                        &t.name, &c.name, *old, c.ty, why,
                    )));
                }
                continue;
            }
            if !table.has_column(&c.name) {
                if existed {
                    tracing::info!(table = %t.name, column = %c.name, r#type = %c.ty, "added column");
                }
                table.columns.push((c.name.clone(), c.ty));
            }
        }
        if !table.has_column(table.deleted) {
            // A new table: before its sync-time column, as the tester orders them.
            let at = if existed {
                table.columns.len()
            } else {
                t.deleted_position()
            };
            table
                .columns
                .insert(at, (table.deleted.into(), ColumnType::Boolean));
        }
        Ok(table)
    }

    /// Register the columns a batch carries that the table lacks (inferred).
    fn ensure_batch_columns(&mut self, t: &TableSchema, schema: &Schema) -> Result<&mut Table> {
        let origin = self.origin();
        let table = self.ensure_table(t)?;
        for f in schema.fields() {
            if !table.has_column(f.name()) {
                let declared =
                    crate::schema::declared_type_of(f).filter(|t| t.arrow_type() == *f.data_type());
                let ty = declared
                    .or_else(|| column_type_of(f.data_type()))
                    .ok_or_else(|| {
                        Error::destination(
                            origin.clone(),
                            format!(
                                "table {}, column {}: unsupported Arrow type {}",
                                t.name,
                                f.name(),
                                f.data_type()
                            ),
                        )
                    })?;
                tracing::info!(table = %t.name, column = %f.name(), r#type = %ty, "added column");
                table.columns.push((f.name().clone(), ty));
            }
        }
        Ok(table)
    }

    /// Give up a commit before its commit point: delete its temporaries and
    /// forget its operations. Key indexes already point at files that will
    /// not exist, so they are rebuilt when next needed.
    fn abandon(&mut self, plan: &Plan) {
        plan.discard(&self.root);
        for t in self.tables.values_mut() {
            t.index = None;
        }
        let _ = self.rollback();
    }

    fn rejects_schema() -> TableSchema {
        TableSchema::new(
            REJECTS_TABLE,
            &[],
            vec![
                Column::new("table_name", ColumnType::String),
                Column::new("raw", ColumnType::String),
                Column::new("error", ColumnType::String),
                Column::new("rejected_at", ColumnType::UtcDatetime),
            ],
        )
    }

    /// Write one table's pending operations as new temporary files.
    fn commit_table(&self, t: &mut Table, plan: &mut Plan) -> Result<TableCounts> {
        let ctx = Ctx {
            root: &self.root,
            origin: self.origin(),
            opts: &self.opts,
            commit: plan.commit,
        };
        ctx.commit_table(t, plan)
    }
}

/// What a commit writes: temporaries to rename, files to remove.
struct Plan {
    commit: u64,
    renames: Vec<(String, String)>,
    removes: Vec<String>,
    /// Per table: (file id, entry) to add and ids to drop once published.
    added: BTreeMap<String, Vec<(u32, LiveFile)>>,
    dropped: BTreeMap<String, Vec<u32>>,
    seq: u32,
}

impl Plan {
    /// Delete the temporaries of a commit that will not happen.
    fn discard(&self, root: &Path) {
        for (tmp, _) in &self.renames {
            let _ = fs::remove_file(root.join(tmp));
        }
    }
}

/// Everything `commit_table` needs from the destination, borrowed apart from
/// the table it mutates.
struct Ctx<'a> {
    root: &'a Path,
    origin: String,
    opts: &'a ParquetOptions,
    commit: u64,
}

/// The changed rows of one commit: the latest version of each key touched by
/// an upsert, update or delete, in batches of the table's current schema.
struct Work {
    segs: Vec<RecordBatch>,
    /// Current version of each row: (segment, row).
    cur: Vec<(usize, usize)>,
    /// Key → index in `cur` (tables with a primary key).
    map: HashMap<Key, usize>,
    /// Rows of `cur` an upsert has written this commit (counted once).
    upserted: Vec<bool>,
}

impl Ctx<'_> {
    fn err(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::destination(self.origin.clone(), format!("{what}: {e}"))
    }

    fn table_dir(&self, t: &Table) -> PathBuf {
        self.root.join(&t.name)
    }

    /// Cast `batch` to `schema`: columns by name, missing ones null
    /// (`_etl_deleted` false), types cast to the table's.
    fn align(&self, t: &Table, schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
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

    /// The encoded primary key of each row.
    fn keys(&self, t: &Table, batch: &RecordBatch) -> Result<Vec<Key>> {
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
    fn read(
        &self,
        t: &Table,
        f: &LiveFile,
        columns: Option<&[String]>,
    ) -> Result<impl Iterator<Item = Result<RecordBatch>> + '_> {
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
        Ok(reader.map(move |b| b.map_err(|e| self.err(&what, e))))
    }

    /// Build the key → file index from the key columns of every live file.
    fn load_index(&self, t: &Table) -> Result<HashMap<IndexKey, u32>> {
        let started = std::time::Instant::now();
        let rows: u64 = t.files.values().map(|f| f.rows).sum();
        let mut index = HashMap::with_capacity(rows as usize);
        for (&id, f) in &t.files {
            for b in self.read(t, f, Some(&t.primary_key))? {
                for k in self.keys(t, &b?)? {
                    index.insert(index_key(&k), id);
                }
            }
        }
        tracing::debug!(table = %t.name, keys = index.len(), files = t.files.len(),
            ms = started.elapsed().as_millis() as u64, "loaded key index");
        Ok(index)
    }

    /// Could `sweep` change a row of this file? (Row-group statistics.)
    fn may_match(&self, t: &Table, f: &LiveFile, sweeps: &[Sweep]) -> bool {
        let path = self.table_dir(t).join(&f.path);
        let Ok(file) = File::open(&path) else {
            return true;
        };
        let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
            return true;
        };
        let md = builder.metadata();
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
                    Sweep::OlderThan { column, before } => match column_index(column) {
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

    /// Apply a sweep to aligned rows: returns the new batch and how many rows it deleted.
    fn sweep(&self, t: &Table, batch: RecordBatch, s: &Sweep) -> Result<(RecordBatch, u64)> {
        let schema = batch.schema();
        let di = schema.index_of(t.deleted).expect("aligned");
        let deleted = batch
            .column(di)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("boolean")
            .clone();
        let hits = match s {
            Sweep::Truncate => compute::not(&deleted),
            Sweep::OlderThan { column, before } => {
                let Ok(ci) = schema.index_of(column) else {
                    return Ok((batch, 0));
                };
                let values = compute::cast(batch.column(ci), &DataType::Int64)
                    .map_err(|e| self.err(format!("table {}, column {column}", t.name), e))?;
                let older = cmp::lt(&values, &Int64Array::new_scalar(*before))
                    .map_err(|e| self.err(format!("table {}", t.name), e))?;
                // Null values are not older than anything.
                let older = if older.null_count() > 0 {
                    compute::prep_null_mask_filter(&older)
                } else {
                    older
                };
                compute::and(
                    &older,
                    &compute::not(&deleted).map_err(|e| self.err(&t.name, e))?,
                )
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

    /// The partition directory of each row ("" without partitioning).
    fn partitions(&self, t: &Table, batch: &RecordBatch) -> Result<Vec<String>> {
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

    fn commit_table(&self, t: &mut Table, plan: &mut Plan) -> Result<TableCounts> {
        let schema = t.schema();
        let has_pk = !t.primary_key.is_empty();
        let mut counts = TableCounts::default();
        let ops = std::mem::take(&mut t.ops);

        // 1. Keys of the keyed operations, and the files holding their old versions.
        let mut op_keys: Vec<Option<Vec<Key>>> = Vec::with_capacity(ops.len());
        for op in &ops {
            op_keys.push(match op {
                PendingOp::Upsert(b) | PendingOp::Update(b) | PendingOp::Delete(b) if has_pk => {
                    Some(self.keys(t, b)?)
                }
                _ => None,
            });
        }
        let any_keys = op_keys.iter().any(Option::is_some);
        if any_keys && t.index.is_none() {
            t.index = Some(self.load_index(t)?);
        }
        let mut touched: BTreeSet<u32> = BTreeSet::new();
        let mut seed_keys: HashSet<&[u8]> = HashSet::new();
        if let Some(index) = &t.index {
            for (op, keys) in ops.iter().zip(&op_keys) {
                let Some(keys) = keys else { continue };
                for k in keys {
                    if let Some(&f) = index.get(&index_key(k)) {
                        touched.insert(f);
                        if !matches!(op, PendingOp::Upsert(_)) {
                            seed_keys.insert(k);
                        }
                    }
                }
            }
        }
        let sweeps: Vec<Sweep> = ops
            .iter()
            .filter_map(|o| match o {
                PendingOp::Sweep(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if !sweeps.is_empty() {
            for (&id, f) in &t.files {
                if !touched.contains(&id) && self.may_match(t, f, &sweeps) {
                    touched.insert(id);
                }
            }
        }

        // 2. The old versions that updates and deletes patch.
        let mut work = Work {
            segs: Vec::new(),
            cur: Vec::new(),
            map: HashMap::new(),
            upserted: Vec::new(),
        };
        if !seed_keys.is_empty() {
            for id in &touched {
                for b in self.read(t, &t.files[id], None)? {
                    let b = self.align(t, &schema, &b?)?;
                    let keys = self.keys(t, &b)?;
                    let rows: Vec<u32> = (0..keys.len() as u32)
                        .filter(|&i| seed_keys.contains(&*keys[i as usize]))
                        .collect();
                    if rows.is_empty() {
                        continue;
                    }
                    let b = compute::take_record_batch(
                        &b,
                        &arrow::array::UInt32Array::from(rows.clone()),
                    )
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
        }
        drop(seed_keys);

        // 3. Apply the operations in order to the changed rows.
        self.apply(t, &schema, ops, op_keys, &mut work, &mut counts)?;

        // 4. Write: every touched file is rewritten without the changed keys'
        //    old versions; the changed rows go to their partitions.
        let changed = if work.cur.is_empty() {
            None
        } else {
            let refs: Vec<&RecordBatch> = work.segs.iter().collect();
            Some(
                compute::interleave_record_batch(&refs, &work.cur)
                    .map_err(|e| self.err(&t.name, e))?,
            )
        };
        let changed_keys: Option<Vec<Key>> = match &changed {
            Some(b) if has_pk => Some(self.keys(t, b)?),
            _ => None,
        };
        let mut by_partition: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        if let Some(b) = &changed {
            for (i, p) in self.partitions(t, b)?.into_iter().enumerate() {
                by_partition.entry(p).or_default().push(i as u32);
            }
        }
        let mut files_by_partition: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for &id in &touched {
            files_by_partition
                .entry(t.files[&id].partition().to_string())
                .or_default()
                .push(id);
        }
        // Merge a partition's many small files while writing it anyway.
        let small = (self.opts.file_bytes / 16) as u64;
        for p in by_partition.keys() {
            let smalls: Vec<u32> = t
                .files
                .iter()
                .filter(|(id, f)| {
                    f.partition() == p
                        && !touched.contains(id)
                        && fs::metadata(self.table_dir(t).join(&f.path))
                            .is_ok_and(|m| m.len() < small)
                })
                .map(|(id, _)| *id)
                .collect();
            if smalls.len() >= COMPACT_FILES {
                tracing::debug!(table = %t.name, partition = %p, files = smalls.len(), "merging small files");
                touched.extend(&smalls);
                files_by_partition
                    .entry(p.clone())
                    .or_default()
                    .extend(smalls);
            }
        }
        let partitions: BTreeSet<String> = by_partition
            .keys()
            .chain(files_by_partition.keys())
            .cloned()
            .collect();
        let changed_set: Option<HashSet<&[u8]>> = changed_keys
            .as_ref()
            .map(|ks| ks.iter().map(|k| &**k).collect());
        let mut new_index: Vec<(IndexKey, u32)> = Vec::new();
        let keep_index = t.index.is_some() && has_pk;
        let mut added: Vec<(u32, LiveFile)> = Vec::new();
        for p in &partitions {
            // Keys written here, with the ordinal of their file in this partition.
            let mut part_index: Vec<(IndexKey, u32)> = Vec::new();
            let mut w = PartWriter::new(self, t, p, schema.clone(), plan);
            for id in files_by_partition.get(p).into_iter().flatten() {
                let f = t.files[id].clone();
                for b in self.read(t, &f, None)? {
                    let mut b = self.align(t, &schema, &b?)?;
                    let mut keys = if has_pk && (changed_set.is_some() || keep_index) {
                        Some(self.keys(t, &b)?)
                    } else {
                        None
                    };
                    if let (Some(set), Some(ks)) = (&changed_set, &keys) {
                        let keep: BooleanArray =
                            ks.iter().map(|k| Some(!set.contains(&**k))).collect();
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
                    for s in &sweeps {
                        let (nb, n) = self.sweep(t, b, s)?;
                        counts.deleted += n;
                        b = nb;
                    }
                    let file = w.write(&b)?;
                    if keep_index {
                        part_index
                            .extend(keys.into_iter().flatten().map(|k| (index_key(&k), file)));
                    }
                }
            }
            if let (Some(b), Some(rows)) = (&changed, by_partition.get(p)) {
                let part =
                    compute::take_record_batch(b, &arrow::array::UInt32Array::from(rows.clone()))
                        .map_err(|e| self.err(&t.name, e))?;
                // In slices, so files roll over at their size bound.
                let mut offset = 0;
                while offset < part.num_rows() {
                    let len = READ_BATCH_ROWS.min(part.num_rows() - offset);
                    let file = w.write(&part.slice(offset, len))?;
                    if keep_index {
                        let ks = changed_keys.as_ref().expect("keyed");
                        part_index.extend(
                            rows[offset..offset + len]
                                .iter()
                                .map(|&i| (index_key(&ks[i as usize]), file)),
                        );
                    }
                    offset += len;
                }
            }
            let files = w.finish(&mut t.next_id)?;
            new_index.extend(
                part_index
                    .into_iter()
                    .map(|(k, ordinal)| (k, files[ordinal as usize].0)),
            );
            added.extend(files);
        }
        // A declared table with no file at all gets an empty one, so readers see its columns.
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
            // Rows arrived: the empty placeholder is no longer needed.
            for (id, f) in &t.files {
                if f.rows == 0 {
                    touched.insert(*id);
                }
            }
        }
        if let Some(index) = t.index.as_mut() {
            // Keys in replaced files were all rewritten: point them at the new files.
            for (k, f) in new_index {
                index.insert(k, f);
            }
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

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        t: &Table,
        schema: &SchemaRef,
        ops: Vec<PendingOp>,
        op_keys: Vec<Option<Vec<Key>>>,
        work: &mut Work,
        counts: &mut TableCounts,
    ) -> Result<()> {
        let on_disk = |k: &Key| {
            t.index
                .as_ref()
                .is_some_and(|i| i.contains_key(&index_key(k)))
        };
        for (op, keys) in ops.into_iter().zip(op_keys) {
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
                        match work.map.get(&k) {
                            Some(&i) => {
                                if !work.upserted[i] {
                                    counts.updated += 1;
                                    work.upserted[i] = true;
                                }
                                work.cur[i] = (seg, r);
                            }
                            None => {
                                if on_disk(&k) {
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
                    let (all, n) = self.sweep(t, all, &s)?;
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
    fn patch(
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

/// Writes one partition's rows into as many files as the size limit needs.
struct PartWriter<'c, 'p> {
    ctx: &'c Ctx<'c>,
    dir: PathBuf,
    /// Partition directory relative to the table directory ("" for none).
    partition: String,
    table: String,
    schema: SchemaRef,
    plan: &'p mut Plan,
    /// Write a file even with no rows (an empty table's placeholder).
    allow_empty: bool,
    current: Option<(ArrowWriter<File>, PathBuf, String, u64)>,
    done: Vec<(String, u64)>,
}

impl<'c, 'p> PartWriter<'c, 'p> {
    fn new(
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

    fn props(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.ctx.opts.compression)
            .set_max_row_group_bytes(Some(self.ctx.opts.row_group_bytes.max(1)))
            .set_created_by(format!("etl {}", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Write `batch`; returns the ordinal of the file it went to.
    fn write(&mut self, batch: &RecordBatch) -> Result<u32> {
        if batch.num_rows() == 0 && !self.allow_empty {
            return Ok(self.done.len() as u32);
        }
        if let Some((w, ..)) = &self.current {
            if (w.bytes_written() + w.in_progress_size()) as u64 >= self.ctx.opts.file_bytes as u64
            {
                self.close()?;
            }
        }
        if self.current.is_none() {
            fs::create_dir_all(&self.dir)
                .map_err(|e| self.ctx.err(format!("creating {}", self.dir.display()), e))?;
            let name = format!("part-{:08}-{:05}.parquet", self.ctx.commit, self.plan.seq);
            self.plan.seq += 1;
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp)
                .map_err(|e| self.ctx.err(format!("creating {}", tmp.display()), e))?;
            let w = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props()))
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

    fn close(&mut self) -> Result<()> {
        let Some((w, tmp, name, rows)) = self.current.take() else {
            return Ok(());
        };
        let file = w
            .into_inner()
            .map_err(|e| self.ctx.err(format!("writing {}", tmp.display()), e))?;
        file.sync_all()
            .map_err(|e| self.ctx.err(format!("syncing {}", tmp.display()), e))?;
        let rel = if self.partition.is_empty() {
            name
        } else {
            format!("{}/{name}", self.partition)
        };
        self.done.push((rel, rows));
        Ok(())
    }

    /// Close the last file; the written files with ids from `next_id`.
    /// (`write` returned ordinals into this list.)
    fn finish(mut self, next_id: &mut u32) -> Result<Vec<(u32, LiveFile)>> {
        self.close()?;
        Ok(self
            .done
            .into_iter()
            .map(|(path, rows)| {
                let id = *next_id;
                *next_id += 1;
                (id, LiveFile { path, rows })
            })
            .collect())
    }
}

impl Destination for ParquetDestination {
    fn describe(&self) -> String {
        format!("parquet:{}", self.root.display())
    }

    fn recorded_naming(&mut self) -> Result<Option<crate::naming::Naming>> {
        Ok(self.manifest.naming.or_else(|| {
            // Written before namings were recorded: etl's own names.
            (!self.manifest.connectors.is_empty()).then_some(crate::naming::Naming::Source)
        }))
    }

    fn record_naming(&mut self, naming: crate::naming::Naming) -> Result<()> {
        self.naming = Some(naming);
        Ok(())
    }

    fn claim(&mut self, owner: &str, connector: &str, tables: &[Arc<TableSchema>]) -> Result<()> {
        let holds_state = self.manifest.connectors.contains_key(connector);
        let schema = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for t in tables {
            let Some(existing) = self.tables.get_mut(&t.name) else {
                continue;
            };
            match existing.owner.as_deref() {
                Some(o) if o == owner => {}
                Some(o) => {
                    return Err(super::namespace::owned_by_other(&schema, &t.name, o, owner))
                }
                // A table made before tables had owners: the connector whose state is here made it.
                None if holds_state => existing.owner = Some(owner.to_string()),
                None => return Err(super::namespace::unowned(&schema, &t.name, owner)),
            }
        }
        // Tables created from here on are the owner's.
        self.owner = Some(owner.to_string());
        Ok(())
    }

    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()> {
        for t in tables {
            self.ensure_table(t)?.declared = true;
        }
        Ok(())
    }

    fn load_state(&mut self, connector: &str) -> Result<Option<State>> {
        self.manifest
            .connectors
            .get(connector)
            .map(|v| State::from_json(&v.to_string(), &self.describe()))
            .transpose()
    }

    fn upsert(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        self.ensure_batch_columns(table, &schema)?
            .ops
            .push(PendingOp::Upsert(batch));
        Ok(())
    }

    fn update(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if table.primary_key.is_empty() {
            return Err(self.err(
                format!("table {}", table.name),
                "update needs a primary key",
            ));
        }
        let schema = batch.schema();
        for k in &table.primary_key {
            if schema.field_with_name(k).is_err() {
                return Err(self.err(
                    format!("update of table {}", table.name),
                    format!("batch lacks key column {k}"),
                ));
            }
        }
        self.ensure_batch_columns(table, &schema)?
            .ops
            .push(PendingOp::Update(batch));
        Ok(())
    }

    fn delete(&mut self, table: &TableSchema, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if table.primary_key.is_empty() {
            return Err(self.err(
                format!("table {}", table.name),
                "delete needs a primary key",
            ));
        }
        self.ensure_table(table)?.ops.push(PendingOp::Delete(batch));
        Ok(())
    }

    fn truncate(&mut self, table: &TableSchema) -> Result<()> {
        self.ensure_table(table)?
            .ops
            .push(PendingOp::Sweep(Sweep::Truncate));
        Ok(())
    }

    fn delete_older_than(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<()> {
        self.ensure_table(table)?
            .ops
            .push(PendingOp::Sweep(Sweep::OlderThan {
                column: column.into(),
                before: before_micros,
            }));
        Ok(())
    }

    fn live_and_stale(
        &mut self,
        table: &TableSchema,
        column: &str,
        before_micros: i64,
    ) -> Result<(u64, u64)> {
        let Some(t) = self.tables.get(&table.name) else {
            return Ok((0, 0));
        };
        if !t.ops.is_empty() {
            return Err(Error::Internal(format!(
                "table {}: live rows counted with changes not committed",
                t.name
            )));
        }
        if !t.has_column(column) {
            return Ok((0, 0));
        }
        let ctx = Ctx {
            root: &self.root,
            origin: self.origin(),
            opts: &self.opts,
            commit: 0,
        };
        let cols = [column.to_string(), t.deleted.to_string()];
        let (mut live, mut stale) = (0u64, 0u64);
        for f in t.files.values() {
            for b in ctx.read(t, f, Some(&cols))? {
                let b = b?;
                let deleted = b
                    .column_by_name(t.deleted)
                    .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
                    .ok_or_else(|| ctx.err(&t.name, "no soft-delete column"))?;
                let values = compute::cast(
                    b.column_by_name(column).expect("projected"),
                    &DataType::Int64,
                )
                .map_err(|e| ctx.err(format!("table {}, column {column}", t.name), e))?;
                let values = values
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("cast to Int64");
                for i in 0..b.num_rows() {
                    if deleted.value(i) {
                        continue;
                    }
                    live += 1;
                    if values.is_valid(i) && values.value(i) < before_micros {
                        stale += 1;
                    }
                }
            }
        }
        Ok((live, stale))
    }

    fn reject(&mut self, rejects: &[Reject]) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        let t = Self::rejects_schema();
        let now = chrono::Utc::now().timestamp_micros();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.table.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.raw.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.error.as_str()),
            )),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![now; rejects.len()])
                    .with_timezone(UTC),
            ),
        ];
        let batch = RecordBatch::try_new(t.arrow_schema(), cols)
            .map_err(|e| self.err("recording rejects", e))?;
        self.ensure_table(&t)?.ops.push(PendingOp::Upsert(batch));
        self.pending.rejected += rejects.len() as u64;
        Ok(())
    }

    fn commit_with(&mut self, state: Option<(&str, &State)>) -> Result<WriteSummary> {
        if self.poisoned {
            return Err(self.err(
                "commit",
                "an earlier commit failed half-way; reopen the dataset to recover it",
            ));
        }
        let mut plan = Plan {
            commit: self.manifest.commit + 1,
            renames: Vec::new(),
            removes: Vec::new(),
            added: BTreeMap::new(),
            dropped: BTreeMap::new(),
            seq: 0,
        };
        let mut written = std::mem::take(&mut self.pending);
        for name in &self.dropping {
            if let Some(t) = self.tables.get(name) {
                plan.removes
                    .extend(t.files.values().map(|f| format!("{}/{}", t.name, f.path)));
            }
        }
        let names: Vec<String> = self
            .tables
            .iter()
            .filter(|(n, _)| !self.dropping.contains(n))
            .filter(|(_, t)| t.has_pending())
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            let mut t = self.tables.remove(name).expect("listed");
            let r = self.commit_table(&mut t, &mut plan);
            self.tables.insert(name.clone(), t);
            match r {
                Ok(c) => {
                    if c != TableCounts::default() {
                        written.table(name).add(c);
                    }
                }
                Err(e) => {
                    self.abandon(&plan);
                    return Err(e);
                }
            }
        }
        // The manifest as it will be once the commit is published.
        let mut manifest = self.manifest.clone();
        manifest.commit = plan.commit;
        manifest.naming = self.naming.or(manifest.naming);
        if let Some((connector, state)) = state {
            let state_json: serde_json::Value =
                serde_json::from_str(&state.to_json()).expect("state is JSON");
            manifest.connectors.insert(connector.into(), state_json);
        }
        for name in &self.dropping {
            manifest.tables.remove(name);
        }
        for (name, t) in self
            .tables
            .iter()
            .filter(|(n, _)| !self.dropping.contains(n))
        {
            let mut files = t.files.clone();
            for id in plan.dropped.get(name).into_iter().flatten() {
                files.remove(id);
            }
            for (id, f) in plan.added.get(name).into_iter().flatten() {
                files.insert(*id, f.clone());
            }
            if t.columns.is_empty() {
                continue;
            }
            let mut m = t.manifest();
            m.files = files
                .values()
                .map(|f| FileEntry {
                    path: f.path.clone(),
                    rows: f.rows,
                })
                .collect();
            manifest.tables.insert(name.clone(), m);
        }
        if self.fail_at == Some(CommitStep::FilesWritten) {
            self.simulated(CommitStep::FilesWritten)?;
        }
        let pending = Pending {
            manifest,
            renames: plan.renames.clone(),
            removes: plan.removes.clone(),
        };
        let meta = self.root.join(META_DIR);
        let r = write_atomic(
            &meta.join(PENDING_FILE),
            serde_json::to_string(&pending)
                .expect("pending serialises")
                .as_bytes(),
        );
        if let Err(e) = r {
            self.abandon(&plan);
            return Err(self.err("recording the commit", e));
        }
        self.check_step(CommitStep::PendingWritten)?;
        if let Err(e) = self.finish_publish(&pending) {
            self.poisoned = true;
            return Err(e);
        }
        // Published: the in-memory view follows.
        for name in std::mem::take(&mut self.dropping) {
            self.tables.remove(&name);
        }
        for (name, t) in self.tables.iter_mut() {
            t.declared = false;
            for id in plan.dropped.get(name).into_iter().flatten() {
                t.files.remove(id);
            }
            for (id, f) in plan.added.remove(name).into_iter().flatten() {
                t.files.insert(id, f);
            }
        }
        self.manifest = pending.manifest;
        tracing::debug!(dataset = %self.origin(), commit = self.manifest.commit,
            files_written = plan.renames.len(), files_removed = plan.removes.len(), "committed");
        Ok(written)
    }

    fn drop_table(&mut self, table: &str) -> Result<bool> {
        let exists = self.tables.contains_key(table);
        if exists && !self.dropping.iter().any(|t| t == table) {
            self.dropping.push(table.to_string());
        }
        Ok(exists)
    }

    fn rollback(&mut self) -> Result<()> {
        self.dropping.clear();
        self.pending = WriteSummary::default();
        for t in self.tables.values_mut() {
            t.ops.clear();
        }
        // Declared tables stay declared: the next commit writes them.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_map_back_to_fivetran_types() {
        for ty in [
            "BOOLEAN",
            "SHORT",
            "INT",
            "LONG",
            "DECIMAL(10,2)",
            "FLOAT",
            "DOUBLE",
            "NAIVE_DATE",
            "NAIVE_DATETIME",
            "UTC_DATETIME",
            "BINARY",
            "STRING",
        ] {
            let t = ColumnType::parse(ty).unwrap();
            assert_eq!(column_type_of(&t.arrow_type()), Some(t), "{ty}");
        }
    }
}
