//! A table in memory: its manifest, its live files, its key → file index
//! and the operations waiting for the next commit.

use super::*;

/// A key, encoded so equal keys have equal bytes.
pub(super) type Key = Box<[u8]>;

/// A key as the key → file index holds it: its 128-bit XXH3 hash (seed
/// random per process; the index lives in memory only), never the boxed key
/// itself (~75 bytes with its allocation). The [`KeyIndex`] keeps 96 of the
/// bits: two keys sharing them (odds about n²/2⁹⁷, 2·10⁻¹⁶ for 5M keys)
/// would share one entry, so one of them could keep an old version in a
/// file no longer pointed at. [`KeySet`]s keep 64: a key taken for another
/// there only spares one unseen row from one sweep (seeds change per run).
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

/// One key of a [`KeyIndex`]: 24 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Slot {
    /// The key's hash: its first half, and 32 bits of its second.
    key: u64,
    check: u32,
    fp: u64,
    file: u32,
}

impl Slot {
    fn new(k: &IndexKey, e: IndexEntry) -> Self {
        Slot {
            key: k[0],
            check: k[1] as u32,
            fp: e.fp,
            file: e.file,
        }
    }

    /// The order slots are sorted in.
    fn ord(&self) -> (u64, u32) {
        (self.key, self.check)
    }
}

/// The key → file index of a table, in 24 bytes a key (96 bits of its
/// [`IndexKey`], its file, its row's fingerprint), in one array sorted by
/// key: no hash table's slack, no doubling as it grows. Keys added since
/// the last merge wait in a small map.
#[derive(Default)]
pub(super) struct KeyIndex {
    sorted: Vec<Slot>,
    /// Where in `sorted` the keys of each prefix (the top `64 - shift`
    /// bits) begin: keys are hashes, so with about one prefix per 4 keys a
    /// lookup reads two or three cache lines, not a binary search's dozens.
    starts: Vec<u32>,
    shift: u32,
    recent: KeyMap<IndexEntry>,
}

impl KeyIndex {
    /// An empty index with room for `n` keys, filled by [`push`](Self::push)
    /// and then [`seal`](Self::seal)ed.
    pub(super) fn with_capacity(n: usize) -> Self {
        KeyIndex {
            sorted: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    /// Add a key while loading (any order, each key once).
    pub(super) fn push(&mut self, k: &IndexKey, e: IndexEntry) {
        self.sorted.push(Slot::new(k, e));
    }

    /// Sort what was pushed.
    pub(super) fn seal(&mut self) {
        self.sorted.sort_unstable_by_key(Slot::ord);
        self.sorted.dedup_by_key(|s| s.ord());
        self.index_starts();
    }

    fn index_starts(&mut self) {
        let bits = (self.sorted.len() / 4).max(1).ilog2().clamp(4, 28);
        self.shift = 64 - bits;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for s in &self.sorted {
            starts[(s.key >> self.shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        self.starts = starts;
    }

    fn position(&self, k: &IndexKey) -> Option<usize> {
        if self.sorted.is_empty() {
            return None;
        }
        let b = (k[0] >> self.shift) as usize;
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.sorted[lo..hi]
            .binary_search_by_key(&(k[0], k[1] as u32), Slot::ord)
            .ok()
            .map(|i| lo + i)
    }

    pub(super) fn get(&self, k: &IndexKey) -> Option<IndexEntry> {
        if let Some(e) = self.recent.get(k) {
            return Some(*e);
        }
        self.position(k).map(|i| {
            let s = self.sorted[i];
            IndexEntry {
                file: s.file,
                fp: s.fp,
            }
        })
    }

    pub(super) fn contains_key(&self, k: &IndexKey) -> bool {
        self.get(k).is_some()
    }

    pub(super) fn insert(&mut self, k: IndexKey, e: IndexEntry) {
        match self.position(&k) {
            Some(i) => {
                self.sorted[i].file = e.file;
                self.sorted[i].fp = e.fp;
            }
            None => {
                self.recent.insert(k, e);
                if self.recent.len() > (self.sorted.len() / 8).max(1 << 17) {
                    self.merge();
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Merge the recent keys into the sorted array, in place from its end.
    fn merge(&mut self) {
        let mut recent: Vec<Slot> = self.recent.drain().map(|(k, e)| Slot::new(&k, e)).collect();
        self.recent.shrink_to(1 << 17);
        recent.sort_unstable_by_key(Slot::ord);
        let (n, m) = (self.sorted.len(), recent.len());
        self.sorted.reserve_exact(m);
        self.sorted.resize(n + m, recent[0]);
        let (mut i, mut j, mut w) = (n, m, n + m);
        while j > 0 {
            w -= 1;
            if i > 0 && self.sorted[i - 1].ord() > recent[j - 1].ord() {
                i -= 1;
                self.sorted[w] = self.sorted[i];
            } else {
                j -= 1;
                self.sorted[w] = recent[j];
            }
        }
        self.index_starts();
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
        spare: Option<Arc<KeySet>>,
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
/// ([`Destination::live_and_stale`]), kept for that sweep: it rewrites the
/// files found stale, without reading every file again, as long as the
/// table's files are still the ones counted.
#[derive(Debug)]
pub(crate) struct Counted {
    pub(super) table: String,
    pub(super) column: String,
    pub(super) before: i64,
    /// The table's live files when counted.
    pub(super) live: BTreeSet<String>,
    /// Those holding a row the sweep deletes.
    pub(super) stale: HashSet<String>,
    pub(super) spare: Arc<KeySet>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The sorted index answers as a map would, across merges.
    #[test]
    fn key_index_agrees_with_a_map() {
        let mut model: HashMap<u64, IndexEntry> = HashMap::new();
        let start: Vec<(u64, IndexEntry)> = (0..1_000u64)
            .map(|i| (i * 7919 % 100_003, IndexEntry { file: 1, fp: i }))
            .collect();
        model.extend(start.iter().copied());
        // A key's hash as a function of its first half.
        let full = |k: u64| [k, k.rotate_left(17) ^ 0x5bd1e995];
        let mut index = KeyIndex::with_capacity(start.len());
        for (k, e) in start {
            index.push(&full(k), e);
        }
        index.seal();
        let mut x = 12345u64;
        for round in 0..600_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Keys spread over every prefix, and crowded in a few.
            let key = if round % 2 == 0 { x % 400_000 } else { x };
            let e = IndexEntry {
                file: (round % 97) as u32,
                fp: x,
            };
            index.insert(full(key), e);
            model.insert(key, e);
        }
        assert_eq!(index.len(), model.len());
        for probe in (0..400_500u64).chain(model.keys().copied().collect::<Vec<_>>()) {
            assert_eq!(
                index.get(&full(probe)),
                model.get(&probe).copied(),
                "{probe}"
            );
        }
        // Keys that share their first half stay apart.
        let (a, b) = ([7, 1], [7, 2]);
        index.insert(a, IndexEntry { file: 1, fp: 1 });
        index.insert(b, IndexEntry { file: 2, fp: 2 });
        assert_eq!(index.get(&a).map(|e| e.file), Some(1));
        assert_eq!(index.get(&b).map(|e| e.file), Some(2));
    }
}
