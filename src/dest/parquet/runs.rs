//! The key → file index of a table, kept on disk so memory does not grow
//! with the table: sorted runs of 24-byte slots in unlinked temporary files
//! (under `$TMPDIR`; gone when the process ends, however it ends), each with
//! a directory of its blocks and a Bloom filter in memory (about 1.3 bytes a
//! key), and the keys changed since the last flush in a small map. Lookups
//! come in batches (a commit's keys at once), sorted, so each run is read at
//! most once per batch, in runs of consecutive blocks, and only where its
//! Bloom filter says a key may be. Runs are merged by size class (powers of
//! 4), so a key is rewritten a few times as the index grows, not once per
//! flush — the log-structured merge of LevelDB and RocksDB, in miniature.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use super::table::{IndexEntry, IndexKey, KeyMap};

/// Bytes of one slot on disk.
const SLOT: usize = 24;
/// Slots per block: the directory has one entry per block.
const BLOCK_SLOTS: usize = 256;
const BLOCK: usize = SLOT * BLOCK_SLOTS;
/// Consecutive blocks read with one call.
const READ_BLOCKS: usize = 64;
/// Bloom filter bits per key (7 probes in one block: about 1.5% false positives).
const BLOOM_BITS: usize = 10;
const BLOOM_PROBES: u64 = 7;
/// Runs of one size class merged into one.
const MERGE_RUNS: usize = 4;

/// How much is held in memory (fields, so tests can make them tiny).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Changed keys held before they are written as a run (a map of 2¹⁸
    /// buckets, 8.6 MB, at 7/8 of its capacity).
    pub(super) mem_keys: usize,
    /// Keys a load sorts in memory before writing them as a run (12 MB).
    pub(super) load_slots: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            mem_keys: 229_376,
            load_slots: 1 << 19,
        }
    }
}

/// One key on disk: 96 bits of its [`IndexKey`], its file, its fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    key: u64,
    check: u32,
    file: u32,
    fp: u64,
}

impl Slot {
    fn new(k: &IndexKey, e: IndexEntry) -> Self {
        Slot {
            key: k[0],
            check: k[1] as u32,
            file: e.file,
            fp: e.fp,
        }
    }

    fn ord(&self) -> (u64, u32) {
        (self.key, self.check)
    }

    fn entry(&self) -> IndexEntry {
        IndexEntry {
            file: self.file,
            fp: self.fp,
        }
    }

    fn put(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.key.to_le_bytes());
        out[8..12].copy_from_slice(&self.check.to_le_bytes());
        out[12..16].copy_from_slice(&self.file.to_le_bytes());
        out[16..24].copy_from_slice(&self.fp.to_le_bytes());
    }

    fn get(b: &[u8]) -> Slot {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Slot {
            key: u64_at(0),
            check: u32_at(8),
            file: u32_at(12),
            fp: u64_at(16),
        }
    }

    fn ord_at(b: &[u8], i: usize) -> (u64, u32) {
        let s = &b[i * SLOT..];
        (
            u64::from_le_bytes(s[0..8].try_into().expect("8 bytes")),
            u32::from_le_bytes(s[8..12].try_into().expect("4 bytes")),
        )
    }
}

/// A Bloom filter of a run's keys (which are hashes: the probes are taken
/// from their bits), blocked: a key's probes all fall in one 512-bit block,
/// so a lookup costs one cache miss, not seven.
struct Bloom {
    blocks: Vec<[u64; 8]>,
}

impl Bloom {
    fn new(keys: usize) -> Self {
        Bloom {
            blocks: vec![[0; 8]; (keys * BLOOM_BITS).div_ceil(512).max(1)],
        }
    }

    /// The block of a key, and its probes' bits (9 bits each: word and bit).
    fn probes(&self, key: u64, check: u32) -> (usize, u64) {
        let block = (key % self.blocks.len() as u64) as usize;
        let h = (u64::from(check) << 32 | key >> 32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (block, h)
    }

    fn add(&mut self, key: u64, check: u32) {
        let (b, h) = self.probes(key, check);
        for i in 0..BLOOM_PROBES {
            let p = (h >> (i * 9)) & 511;
            self.blocks[b][(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn may_hold(&self, key: u64, check: u32) -> bool {
        let (b, h) = self.probes(key, check);
        let block = &self.blocks[b];
        (0..BLOOM_PROBES).all(|i| {
            let p = (h >> (i * 9)) & 511;
            block[(p / 64) as usize] & (1 << (p % 64)) != 0
        })
    }
}

/// Sorted slots in an unlinked temporary file.
struct Run {
    file: File,
    len: usize,
    /// The first key of each block.
    firsts: Vec<(u64, u32)>,
    bloom: Bloom,
}

impl Run {
    /// Read `n` blocks from block `b` into `buf`.
    fn read_blocks(&self, b: usize, n: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let start = b * BLOCK;
        let end = ((b + n) * BLOCK).min(self.len * SLOT);
        buf.resize(end - start, 0);
        self.file.read_exact_at(buf, start as u64)
    }

    fn slots(&self) -> RunReader<'_> {
        RunReader {
            run: self,
            block: 0,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// Look up the sorted `queries` (position in `out`, key) not found yet.
    fn lookup(
        &self,
        queries: &[((u64, u32), usize)],
        out: &mut [Option<IndexEntry>],
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        // The block each wanted key would be in.
        let mut wanted: Vec<(usize, (u64, u32), usize)> = Vec::new();
        for &(q, i) in queries {
            if out[i].is_some() || !self.bloom.may_hold(q.0, q.1) {
                continue;
            }
            let b = self.firsts.partition_point(|f| *f <= q);
            if b > 0 {
                wanted.push((b - 1, q, i));
            }
        }
        let mut w = 0;
        while w < wanted.len() {
            // Consecutive blocks, read with one call.
            let first = wanted[w].0;
            let mut last = first;
            let mut end = w;
            while end < wanted.len()
                && wanted[end].0 <= last + 1
                && wanted[end].0 < first + READ_BLOCKS
            {
                last = wanted[end].0;
                end += 1;
            }
            self.read_blocks(first, last - first + 1, buf)?;
            for &(b, q, i) in &wanted[w..end] {
                let lo = (b - first) * BLOCK_SLOTS;
                let hi = (lo + BLOCK_SLOTS).min(buf.len() / SLOT);
                let (mut l, mut h) = (lo, hi);
                while l < h {
                    let m = (l + h) / 2;
                    match Slot::ord_at(buf, m).cmp(&q) {
                        std::cmp::Ordering::Less => l = m + 1,
                        std::cmp::Ordering::Greater => h = m,
                        std::cmp::Ordering::Equal => {
                            out[i] = Some(Slot::get(&buf[m * SLOT..]).entry());
                            break;
                        }
                    }
                }
            }
            w = end;
        }
        Ok(())
    }
}

/// A run's slots in order, read many blocks at a time.
struct RunReader<'r> {
    run: &'r Run,
    block: usize,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader<'_> {
    fn next(&mut self) -> std::io::Result<Option<Slot>> {
        if self.at * SLOT == self.buf.len() {
            if self.block * BLOCK_SLOTS >= self.run.len {
                return Ok(None);
            }
            self.run
                .read_blocks(self.block, READ_BLOCKS, &mut self.buf)?;
            self.block += READ_BLOCKS;
            self.at = 0;
        }
        let s = Slot::get(&self.buf[self.at * SLOT..]);
        self.at += 1;
        Ok(Some(s))
    }
}

/// Writes sorted slots (each key once) as a run.
struct RunWriter {
    out: BufWriter<File>,
    len: usize,
    firsts: Vec<(u64, u32)>,
    bloom: Bloom,
    slot: [u8; SLOT],
}

impl RunWriter {
    /// A run of at most `keys` keys.
    fn new(keys: usize) -> std::io::Result<Self> {
        Ok(RunWriter {
            out: BufWriter::with_capacity(READ_BLOCKS * BLOCK, tempfile::tempfile()?),
            len: 0,
            firsts: Vec::with_capacity(keys.div_ceil(BLOCK_SLOTS)),
            bloom: Bloom::new(keys),
            slot: [0; SLOT],
        })
    }

    fn push(&mut self, s: &Slot) -> std::io::Result<()> {
        if self.len.is_multiple_of(BLOCK_SLOTS) {
            self.firsts.push(s.ord());
        }
        self.bloom.add(s.key, s.check);
        s.put(&mut self.slot);
        self.out.write_all(&self.slot)?;
        self.len += 1;
        Ok(())
    }

    fn finish(self) -> std::io::Result<Run> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Run {
            file,
            len: self.len,
            firsts: self.firsts,
            bloom: self.bloom,
        })
    }
}

/// Write sorted `slots` as a run, each key once (the last of equal keys).
fn write_sorted(slots: &[Slot]) -> std::io::Result<Run> {
    let mut w = RunWriter::new(slots.len())?;
    for (i, s) in slots.iter().enumerate() {
        if slots.get(i + 1).is_some_and(|n| n.ord() == s.ord()) {
            continue;
        }
        w.push(s)?;
    }
    w.finish()
}

/// Merge runs (oldest first) into one: of a key in several, the newest.
fn merge(runs: &[Run]) -> std::io::Result<Run> {
    let mut w = RunWriter::new(runs.iter().map(|r| r.len).sum())?;
    let mut readers: Vec<RunReader> = runs.iter().map(Run::slots).collect();
    let mut heads: Vec<Option<Slot>> = readers
        .iter_mut()
        .map(RunReader::next)
        .collect::<std::io::Result<_>>()?;
    loop {
        // The smallest key; the newest run holding it.
        let mut best: Option<(usize, (u64, u32))> = None;
        for (i, h) in heads.iter().enumerate() {
            if let Some(s) = h {
                if best.is_none_or(|(_, o)| s.ord() <= o) {
                    best = Some((i, s.ord()));
                }
            }
        }
        let Some((newest, ord)) = best else { break };
        w.push(&heads[newest].expect("a head"))?;
        for (i, h) in heads.iter_mut().enumerate() {
            if h.is_some_and(|s| s.ord() == ord) {
                *h = readers[i].next()?;
            }
        }
    }
    w.finish()
}

/// The size class of a run of `len` slots: its power of 4 in units of `unit`.
fn class(len: usize, unit: usize) -> u32 {
    (len / unit.max(1)).max(1).ilog2() / 2
}

/// The key → file index of a table (see the module doc).
pub(super) struct KeyIndex {
    limits: Limits,
    /// Keys changed since the last flush (they shadow the runs).
    mem: KeyMap<IndexEntry>,
    /// Oldest first: of a key in several, the newest counts.
    runs: Vec<Run>,
    /// Slots pushed by a load, not yet written.
    loading: Vec<Slot>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl KeyIndex {
    pub(super) fn new(limits: Limits) -> Self {
        KeyIndex {
            limits,
            mem: KeyMap::default(),
            runs: Vec::new(),
            loading: Vec::new(),
        }
    }

    /// Add a key while loading (any order, each key once), then
    /// [`seal`](Self::seal).
    pub(super) fn push(&mut self, k: &IndexKey, e: IndexEntry) -> std::io::Result<()> {
        self.loading.push(Slot::new(k, e));
        if self.loading.len() >= self.limits.load_slots {
            self.spill_loading()?;
        }
        Ok(())
    }

    fn spill_loading(&mut self) -> std::io::Result<()> {
        if self.loading.is_empty() {
            return Ok(());
        }
        self.loading.sort_unstable_by_key(Slot::ord);
        self.runs.push(write_sorted(&self.loading)?);
        self.loading.clear();
        Ok(())
    }

    /// End a load: what was pushed becomes one run.
    pub(super) fn seal(&mut self) -> std::io::Result<()> {
        self.spill_loading()?;
        self.loading = Vec::new();
        if self.runs.len() > 1 {
            let run = merge(&self.runs)?;
            self.runs = vec![run];
        }
        Ok(())
    }

    /// The entries of `keys` (`None`: not in the index).
    pub(super) fn get_many(&self, keys: &[IndexKey]) -> std::io::Result<Vec<Option<IndexEntry>>> {
        let mut out: Vec<Option<IndexEntry>> =
            keys.iter().map(|k| self.mem.get(k).copied()).collect();
        if self.runs.is_empty() {
            return Ok(out);
        }
        let mut queries: Vec<((u64, u32), usize)> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| out[*i].is_none())
            .map(|(i, k)| ((k[0], k[1] as u32), i))
            .collect();
        queries.sort_unstable();
        let mut buf = Vec::new();
        for run in self.runs.iter().rev() {
            run.lookup(&queries, &mut out, &mut buf)?;
        }
        Ok(out)
    }

    pub(super) fn insert(&mut self, k: IndexKey, e: IndexEntry) -> std::io::Result<()> {
        self.mem.insert(k, e);
        if self.mem.len() >= self.limits.mem_keys {
            self.flush()?;
        }
        Ok(())
    }

    /// Write the changed keys as a run; merge the newest runs while
    /// `MERGE_RUNS` of them share a size class.
    fn flush(&mut self) -> std::io::Result<()> {
        let mut slots: Vec<Slot> = self.mem.drain().map(|(k, e)| Slot::new(&k, e)).collect();
        self.mem.shrink_to(self.limits.mem_keys);
        slots.sort_unstable_by_key(Slot::ord);
        self.runs.push(write_sorted(&slots)?);
        drop(slots);
        let unit = self.limits.mem_keys;
        loop {
            let c = class(self.runs.last().expect("a run").len, unit);
            let same = self
                .runs
                .iter()
                .rev()
                .take_while(|r| class(r.len, unit) <= c)
                .count();
            if same < MERGE_RUNS {
                return Ok(());
            }
            let from = self.runs.len() - same;
            let run = merge(&self.runs[from..])?;
            self.runs.truncate(from);
            self.runs.push(run);
        }
    }

    /// How many keys, at most (a key may be counted in more than one run
    /// until they merge).
    pub(super) fn len(&self) -> usize {
        self.mem.len() + self.runs.iter().map(|r| r.len).sum::<usize>() + self.loading.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs on disk.
    #[cfg(test)]
    fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    fn full(k: u64) -> IndexKey {
        // Spread like hashes, with keys sharing their first half.
        let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        [h & !0xF, k]
    }

    #[test]
    fn key_index_on_disk_agrees_with_a_map() {
        let limits = Limits {
            mem_keys: 50,
            load_slots: 300,
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut model: HashMap<u64, IndexEntry> = HashMap::new();
        let mut index = KeyIndex::new(limits);
        // A load of 2,000 keys in several runs, merged into one.
        for k in 0..2_000u64 {
            let e = IndexEntry {
                file: (k % 13) as u32,
                fp: k * 3,
            };
            index.push(&full(k), e).unwrap();
            model.insert(k, e);
        }
        index.seal().unwrap();
        assert_eq!(index.runs(), 1);
        assert_eq!(index.len(), 2_000);
        // Changes and new keys, flushed and merged by size class.
        let mut most_runs = 0;
        for round in 0..40u32 {
            for _ in 0..97 {
                let k = rng.random_range(0..6_000u64);
                let e = IndexEntry {
                    file: round,
                    fp: rng.random(),
                };
                index.insert(full(k), e).unwrap();
                model.insert(k, e);
            }
            most_runs = most_runs.max(index.runs());
            let probes: Vec<u64> = (0..300).map(|_| rng.random_range(0..7_000u64)).collect();
            let got = index
                .get_many(&probes.iter().map(|&k| full(k)).collect::<Vec<_>>())
                .unwrap();
            for (k, g) in probes.iter().zip(got) {
                assert_eq!(g, model.get(k).copied(), "key {k} after round {round}");
            }
        }
        assert!(most_runs > 1, "changes were flushed as runs");
        assert!(most_runs < 12, "runs were merged ({most_runs})");
        // Every key at once: consecutive blocks read together.
        let all: Vec<u64> = (0..7_000).collect();
        let got = index
            .get_many(&all.iter().map(|&k| full(k)).collect::<Vec<_>>())
            .unwrap();
        for (k, g) in all.iter().zip(got) {
            assert_eq!(g, model.get(k).copied(), "key {k}");
        }
    }

    #[test]
    fn keys_sharing_their_first_half_are_told_apart() {
        let mut index = KeyIndex::new(Limits {
            mem_keys: 2,
            load_slots: 2,
        });
        let (a, b) = ([5u64, 1], [5u64, 2]);
        index.insert(a, IndexEntry { file: 1, fp: 1 }).unwrap();
        index.insert(b, IndexEntry { file: 2, fp: 2 }).unwrap();
        let got = index.get_many(&[a, b, [5, 3]]).unwrap();
        assert_eq!(got[0].map(|e| e.file), Some(1));
        assert_eq!(got[1].map(|e| e.file), Some(2));
        assert_eq!(got[2], None);
    }
}
