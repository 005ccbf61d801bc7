//! A table in memory: its manifest, its live files, its key → file index
//! and the operations waiting for the next commit.

use super::*;

/// A key, encoded so equal keys have equal bytes.
pub(super) type Key = Box<[u8]>;

/// A key as the key → file index holds it: its 128-bit XXH3 hash (seed
/// random per process; the index lives for the process only), never the
/// key itself. The [`KeyIndex`] keeps 96 of the bits: two keys sharing them
/// (odds about n²/2⁹⁷, 2·10⁻¹⁶ for 5M keys) would share one entry, so one
/// of them could keep an old version in a file no longer pointed at.
/// [`KeySet`]s (a commit's keys) keep 64: a key taken for another there
/// only has one row of one commit written when it need not be.
pub(super) type IndexKey = [u64; 2];

/// Random per process, so no input is chosen to collide.
fn seeds() -> &'static [u64; 2] {
    static SEEDS: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    SEEDS.get_or_init(rand::random)
}

pub(super) fn index_key(k: &[u8]) -> IndexKey {
    let h = twox_hash::XxHash3_128::oneshot_with_seed(seeds()[0], k);
    [h as u64, (h >> 64) as u64]
}

/// Maps keyed by [`IndexKey`]s, which are hashes already: their first half
/// is the table hash (no second hashing of every lookup).
pub(super) type KeyMap<V> = HashMap<IndexKey, V, std::hash::BuildHasherDefault<KeyHasher>>;
/// Keys by the first half of their [`IndexKey`] (8 bytes).
pub(super) type KeySet = HashSet<u64, std::hash::BuildHasherDefault<KeyHasher>>;

/// The [`KeyMap`] hasher: takes the first 8 bytes it is given (an
/// `[u64; 2]` hashes as its 16 bytes, after its length).
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }
    fn write_usize(&mut self, _len: usize) {}
}

/// What the key → file index knows of a key: the file holding it, and a
/// fingerprint of the row there (every column but the sync time), so an
/// upsert of the same content is told apart without reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) file: u32,
    pub(super) fp: u64,
}

/// The keys a sweep spares: those its scan saw unchanged in earlier
/// commits (read from `_etl_seen` into a [`KeyIndex`] on disk), and those
/// seen in the sweep's own commit.
#[derive(Default)]
pub(super) struct Spare {
    seen: Option<Arc<KeyIndex>>,
    now: KeyMap<()>,
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spare")
            .field("seen", &self.seen.as_ref().map_or(0, |s| s.len()))
            .field("now", &self.now.len())
            .finish()
    }
}

impl Spare {
    pub(super) fn new(seen: KeyIndex) -> Self {
        Spare {
            seen: (!seen.is_empty()).then(|| Arc::new(seen)),
            now: KeyMap::default(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.seen.is_none() && self.now.is_empty()
    }

    /// Seen in the sweep's own commit?
    pub(super) fn seen_now(&self, k: &IndexKey) -> bool {
        self.now.contains_key(k)
    }

    /// These keys too.
    pub(super) fn with(&self, keys: impl Iterator<Item = IndexKey>) -> Spare {
        let mut now = self.now.clone();
        now.extend(keys.map(|k| (k, ())));
        Spare {
            seen: self.seen.clone(),
            now,
        }
    }

    /// Which of `keys` are spared.
    pub(super) fn contains_many(&self, keys: &[IndexKey]) -> std::io::Result<Vec<bool>> {
        let mut out: Vec<bool> = keys.iter().map(|k| self.now.contains_key(k)).collect();
        if let Some(seen) = &self.seen {
            for (o, e) in out.iter_mut().zip(seen.get_many(keys)?) {
                *o |= e.is_some();
            }
        }
        Ok(out)
    }
}

/// A row's fingerprint: the 64-bit XXH3 hash of its row-format bytes (seed
/// random per process). Two different contents share one with odds of
/// about 2⁻⁶⁴ per changed row.
pub(super) fn fingerprint(row: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot_with_seed(seeds()[1], row)
}

#[derive(Debug, Clone)]
pub(super) struct LiveFile {
    /// Relative to the table directory.
    pub(super) path: String,
    pub(super) rows: u64,
    /// Its size, when known without asking the filesystem (a Delta log's add).
    pub(super) bytes: Option<u64>,
}

impl LiveFile {
    /// The partition directory ("" for the table directory itself).
    pub(super) fn partition(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(p, _)| p)
    }
}

#[derive(Debug, Clone)]
pub(super) enum PendingOp {
    Upsert(RecordBatch),
    Update(RecordBatch),
    Delete(RecordBatch),
    Sweep(Sweep),
}

#[derive(Debug, Clone)]
pub(super) enum Sweep {
    Truncate,
    /// Soft-delete the live rows whose `column` is older than `before`,
    /// but those whose keys are in `spare` (seen unchanged by the scan).
    OlderThan {
        column: String,
        before: i64,
        spare: Option<Arc<Spare>>,
        /// The count that preceded the sweep: which files hold stale rows.
        counted: Option<Arc<Counted>>,
    },
    /// Drop the files of one partition (`_etl_seen`'s entries of a table,
    /// used up by its sweep).
    Forget {
        partition: String,
    },
}

/// A count of the rows a sweep by time would soft-delete
/// ([`Destination::live_and_stale`], or the sweep itself), kept for that
/// sweep: it rewrites the files found stale and deletes the rows found
/// stale, without looking up every row's key again, as long as the table's
/// files are still the ones counted.
#[derive(Debug)]
pub(crate) struct Counted {
    pub(super) table: String,
    pub(super) column: String,
    pub(super) before: i64,
    /// The table's live files when counted.
    pub(super) live: BTreeSet<String>,
    /// Those holding a row the sweep deletes.
    pub(super) stale: HashSet<String>,
    /// The keys (96 bits, sorted) of the rows it deletes; `None`: every
    /// live row older than `before` (none was seen unchanged).
    pub(super) stale_keys: Option<Vec<(u64, u32)>>,
    pub(super) spare: Arc<Spare>,
}

impl Counted {
    pub(super) fn is_stale(&self, k: &IndexKey) -> bool {
        self.stale_keys
            .as_ref()
            .is_none_or(|s| s.binary_search(&(k[0], k[1] as u32)).is_ok())
    }

    /// Counted on the files `t` has now?
    pub(super) fn holds_for(&self, t: &Table) -> bool {
        self.live.len() == t.files.len() && t.files.values().all(|f| self.live.contains(&f.path))
    }
}

pub(super) struct Table {
    pub(super) name: String,
    pub(super) owner: Option<String>,
    /// The soft-delete flag among `columns`.
    pub(super) deleted: &'static str,
    pub(super) primary_key: Vec<String>,
    pub(super) partition: Option<Partitioning>,
    /// Columns in file order, `_etl_deleted` included.
    pub(super) columns: Vec<(String, ColumnType)>,
    pub(super) files: BTreeMap<u32, LiveFile>,
    pub(super) next_id: u32,
    /// Key → file holding it; `None` until a commit needs it.
    pub(super) index: Option<KeyIndex>,
    /// The columns stamped with the sync time (left out of fingerprints).
    pub(super) synced: Vec<String>,
    /// Keys (and sync times) of rows this commit found unchanged, for `_etl_seen`.
    pub(super) seen_out: Vec<(Key, i64)>,
    /// This commit's sweep used up the table's `_etl_seen` entries.
    pub(super) forget_seen: bool,
    pub(super) ops: Vec<PendingOp>,
    /// Declared since the last commit (written even without rows).
    pub(super) declared: bool,
    /// JSON columns carry Parquet's JSON logical type (not in a Delta lake,
    /// whose readers expect plain strings).
    pub(super) json_ext: bool,
}

impl Table {
    pub(super) fn new(name: &str) -> Self {
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
            synced: Vec::new(),
            seen_out: Vec::new(),
            forget_seen: false,
            ops: Vec::new(),
            declared: false,
            json_ext: true,
        }
    }

    pub(super) fn from_manifest(name: &str, m: &TableManifest, origin: &str) -> Result<Self> {
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
                    bytes: None,
                },
            );
            t.next_id += 1;
        }
        Ok(t)
    }

    pub(super) fn manifest(&self) -> TableManifest {
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

    pub(super) fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|(n, _)| n == name)
    }

    /// The schema every file written now gets (JSON columns carry the
    /// canonical extension type, which the writer maps to Parquet's JSON).
    pub(super) fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, ty)| {
                let required = name == self.deleted || self.primary_key.contains(name);
                let f = Field::new(name, ty.arrow_type(), !required);
                let mut md = HashMap::new();
                md.insert("etl.type".to_string(), ty.fivetran_name());
                let f = f.with_metadata(md);
                if *ty == ColumnType::Json && self.json_ext {
                    f.with_extension_type(arrow_schema::extension::Json::default())
                } else {
                    f
                }
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    pub(super) fn has_pending(&self) -> bool {
        !self.ops.is_empty() || self.declared
    }
}

/// The Fivetran type of an Arrow type (columns a batch carries undeclared).
pub(super) fn column_type_of(dt: &DataType) -> Option<ColumnType> {
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
