//! Approximate top-k retrieval with an HNSW graph ([usearch]), inner-product metric.

use super::{Filter, ItemIndex, by_rank, check_queries, check_query, check_vectors, filters_for};
use crate::store::Scored;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// How the HNSW index stores item vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 32-bit floats: exact scores, 1 KiB per 256-d item.
    #[default]
    F32,
    /// 16-bit floats: half the memory, scores within about 1e-3.
    F16,
    /// 8-bit integers (each vector scaled to unit length, then to ±127): a quarter of the memory,
    /// scores within about 1e-2; only meaningful for L2-normalised embeddings.
    I8,
}

impl Quantization {
    /// The inner product behind a usearch IP distance: `1 − dot`, where the `i8` kernel's dot is
    /// over the ±127-scaled integers.
    fn score(self, distance: f32) -> f32 {
        match self {
            Quantization::F32 | Quantization::F16 => 1.0 - distance,
            Quantization::I8 => (1.0 - distance) / (127.0 * 127.0),
        }
    }

    fn scalar_kind(self) -> ScalarKind {
        match self {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        }
    }
}

/// Parameters of an [`HnswIndex`].
///
/// The defaults were tuned on the ADR-scale benchmark (100,000 trained 256-d item embeddings,
/// 2,000 user-embedding queries, top-500; `benches/ann_vs_faiss.sh`, figures in
/// `benches/README.md`): `M` 16 tops out at recall@500 0.91 (`efSearch` 1,500); `M` 32,
/// `efConstruction` 256 reaches 0.949 at `efSearch` 1,000 and 0.978 at 2,000, the default.
/// At that recall and k = 500 the exact scan ([`super::ExactIndex::search_batch`]) was faster on
/// that catalogue, and the inverted file ([`super::IvfIndex`]) faster still; HNSW pays off for
/// small k (serving).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswConfig {
    /// Graph degree `M`: neighbours kept per node and level (the base level keeps `2M`).
    /// Higher: better recall, more memory, slower build.
    pub connectivity: usize,
    /// Candidate list size while inserting (`efConstruction`). Higher: better graph, slower build.
    pub expansion_add: usize,
    /// Candidate list size while searching (`efSearch`); a search for `k` items always uses at
    /// least `k` (a top-500 query explores at least 500 candidates). Higher: better recall,
    /// slower queries.
    pub expansion_search: usize,
    /// Storage of the item vectors.
    pub quantization: Quantization,
    /// Most searches (or inserts) running at once; further callers wait for a free slot (usearch
    /// keeps one search context per slot). 0: automatic (at least 8, and 2 per CPU thread).
    pub threads: usize,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            connectivity: 32,
            expansion_add: 256,
            expansion_search: 2000,
            quantization: Quantization::F32,
            threads: 0,
        }
    }
}

impl HnswConfig {
    /// Refuses out-of-range values with [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(2..=1024).contains(&self.connectivity) {
            return Err(Error::invalid(
                "hnsw.connectivity",
                self.connectivity,
                "must be between 2 and 1024",
            ));
        }
        if !(1..=1 << 20).contains(&self.expansion_add) {
            return Err(Error::invalid(
                "hnsw.expansion_add",
                self.expansion_add,
                "must be between 1 and 1048576",
            ));
        }
        if !(1..=1 << 20).contains(&self.expansion_search) {
            return Err(Error::invalid(
                "hnsw.expansion_search",
                self.expansion_search,
                "must be between 1 and 1048576",
            ));
        }
        if self.threads > 4096 {
            return Err(Error::invalid("hnsw.threads", self.threads, "must be at most 4096"));
        }
        Ok(())
    }

    fn slots(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (2 * cpus.max(rayon::current_num_threads())).max(8)
    }

    fn options(&self, dim: usize) -> IndexOptions {
        IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: self.quantization.scalar_kind(),
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: self.expansion_search,
            multi: false,
        }
    }
}

/// A counting semaphore: usearch fails a search when all its thread contexts are taken, so
/// callers beyond the reserved count wait here instead.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Approximate inner-product top-k over item embeddings: an HNSW graph (usearch), searched in
/// parallel, saved atomically, opened memory-mapped.
///
/// Items are keyed by their row index. Scores are inner products (`1 − distance` of usearch's IP
/// metric): exact for [`Quantization::F32`], approximate for the quantised kinds.
pub struct HnswIndex {
    index: Index,
    dim: usize,
    len: usize,
    quantization: Quantization,
    slots: Slots,
    source: Option<PathBuf>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.dim)
            .field("len", &self.len)
            .field("quantization", &self.quantization)
            .field("connectivity", &self.index.connectivity())
            .field("expansion_search", &self.index.expansion_search())
            .field("source", &self.source)
            .finish()
    }
}

fn internal<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Internal(format!("usearch {what}: {e}"))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::invalid("path", path.display(), "not valid UTF-8"))
}

#[cfg(test)]
thread_local! {
    /// Test hook: make the next `save` on this thread fail after writing the temporary file.
    static FAIL_SAVE_BEFORE_RENAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl HnswIndex {
    /// Builds an index over `vectors` (row-major, `len × dim`, item `i` = row `i`), inserting one
    /// item at a time (see the comment inside on why not in parallel). Refuses bad shapes, non-finite values and out-of-range `config`
    /// fields with [`Error::InvalidInput`].
    pub fn build(vectors: &[f32], dim: usize, config: &HnswConfig) -> Result<Self> {
        config.validate()?;
        let len = check_vectors(vectors, dim)?;
        let slots = config.slots();
        let index = Index::new(&config.options(dim)).map_err(internal("new"))?;
        index
            .reserve_capacity_and_threads(len.max(1), slots)
            .map_err(internal("reserve"))?;
        let out = HnswIndex {
            index,
            dim,
            len,
            quantization: config.quantization,
            slots: Slots::new(slots),
            source: None,
        };
        // One insert at a time: usearch 2.x's concurrent `add` can leave a node stored but
        // unreachable by any search (unum-cloud/USearch#735, open; a node's upper-level links are
        // published before its base-level ones). A stranded item is silently never recommended,
        // and it showed here as an occasional recall-test failure in CI. Searches stay parallel.
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            out.index.add(i as u64, v).map_err(internal("add"))?;
        }
        Ok(out)
    }

    /// Opens an index file written by [`HnswIndex::save`] memory-mapped (pages are read on
    /// demand and shared between processes). `config` supplies the search-time settings
    /// (`expansion_search`, `threads`); the graph's own come from the file.
    ///
    /// A missing or unreadable file is [`Error::Io`], one that is not a valid index (garbage,
    /// truncated, another metric) is [`Error::Corrupt`]; both name the path.
    ///
    /// The file must match the checksum file [`HnswIndex::save`] writes beside it
    /// (`<file>.crc32`, see [`checksum_path`]): usearch's reader trusts the graph it reads, and a
    /// corrupt neighbour list makes it read out of bounds (found by fuzzing: 8 bytes overwritten
    /// in a saved index crashed the process), so a file that does not match, or has no checksum
    /// file, is refused as [`Error::Corrupt`] before usearch sees it.
    pub fn open(path: impl AsRef<Path>, config: &HnswConfig) -> Result<Self> {
        verify_checksum(path.as_ref())?;
        Self::restore(path.as_ref(), config, true)
    }

    /// Like [`HnswIndex::open`], but reads the whole file into memory.
    pub fn load(path: impl AsRef<Path>, config: &HnswConfig) -> Result<Self> {
        verify_checksum(path.as_ref())?;
        Self::restore(path.as_ref(), config, false)
    }

    /// [`HnswIndex::open`] without the checksum file, for a caller that has verified the file's
    /// integrity itself (the model registry checks every file of a version against the sha256 of
    /// its manifest before serving it, also versions saved before the checksum file existed). A
    /// corrupt graph passed here can crash the process inside usearch.
    pub fn open_verified_elsewhere(path: impl AsRef<Path>, config: &HnswConfig) -> Result<Self> {
        Self::restore(path.as_ref(), config, true)
    }

    fn restore(path: &Path, config: &HnswConfig, mmap: bool) -> Result<Self> {
        config.validate()?;
        let meta = std::fs::metadata(path).map_err(Error::io(path))?;
        if !meta.is_file() {
            return Err(Error::Io {
                path: path.display().to_string(),
                kind: std::io::ErrorKind::InvalidInput,
                message: "not a regular file".into(),
            });
        }
        let s = path_str(path)?;
        let corrupt = |reason: String| Error::corrupt(path.display(), reason);
        let head = Index::metadata(s).map_err(|e| corrupt(format!("not an HNSW index file: {e}")))?;
        if head.metric != MetricKind::IP {
            return Err(corrupt(format!(
                "built with metric {:?}, expected inner product",
                head.metric
            )));
        }
        let quantization = [Quantization::F32, Quantization::F16, Quantization::I8]
            .into_iter()
            .find(|q| q.scalar_kind() == head.quantization)
            .ok_or_else(|| corrupt(format!("unsupported quantization {:?}", head.quantization)))?;
        let (dim, len) = (head.dimensions as usize, head.count_present as usize);
        if dim == 0 || head.multi || head.count_deleted != 0 || len > u32::MAX as usize {
            return Err(corrupt(format!(
                "unexpected header: {dim} dimensions, {len} items, {} deleted, multi {}",
                head.count_deleted, head.multi
            )));
        }
        let options = IndexOptions {
            quantization: head.quantization,
            ..config.options(dim)
        };
        let index = Index::new(&options).map_err(internal("new"))?;
        let slots = config.slots();
        // The thread contexts survive `view` / `load` (capacity comes from the file).
        index
            .reserve_capacity_and_threads(1, slots)
            .map_err(internal("reserve"))?;
        let opened = if mmap { index.view(s) } else { index.load(s) };
        opened.map_err(|e| corrupt(e.to_string()))?;
        if index.size() != len || index.dimensions() != dim {
            return Err(corrupt(format!(
                "header says {len} items of {dim} dimensions, the graph holds {} of {}",
                index.size(),
                index.dimensions()
            )));
        }
        if len > 0 && !(index.contains(0) && index.contains(len as u64 - 1)) {
            return Err(corrupt(format!("item keys are not 0..{len}")));
        }
        index.change_expansion_search(config.expansion_search);
        Ok(HnswIndex {
            index,
            dim,
            len,
            quantization,
            slots: Slots::new(slots),
            source: Some(path.to_path_buf()),
        })
    }

    /// Writes the index to `path` atomically: to a temporary file in the same directory, synced,
    /// then renamed over `path`. A reader never sees a partial file, and an existing file at
    /// `path` survives a failed save untouched; no temporary file is left behind.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        path.file_name()
            .ok_or_else(|| Error::invalid("path", path.display(), "no file name"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = crate::atomic::temp_path(path);
        let result = (|| -> Result<()> {
            let s = path_str(&tmp)?;
            self.index.save(s).map_err(|e| Error::Io {
                path: tmp.display().to_string(),
                kind: std::io::ErrorKind::Other,
                message: e.to_string(),
            })?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(&tmp))?;
            #[cfg(test)]
            if FAIL_SAVE_BEFORE_RENAME.with(|f| f.replace(false)) {
                return Err(Error::Io {
                    path: tmp.display().to_string(),
                    kind: std::io::ErrorKind::Other,
                    message: "injected failure".into(),
                });
            }
            // The checksum of the new file goes in place first: until the index is renamed over
            // an older one, a reader sees the old index with the new checksum and is refused
            // (an error, never a crash), then the new pair.
            let (crc, len) = file_checksum(&tmp)?;
            crate::atomic::write_bytes_atomic(&checksum_path(path), format!("crc32 {crc:08x} {len}\n").as_bytes())?;
            std::fs::rename(&tmp, path).map_err(Error::io(path))?;
            // Make the rename durable; not every platform can sync a directory.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Changes the search-time candidate list size (`efSearch`; a search for `k` items still
    /// uses at least `k`). Takes `&mut self`: no search may run meanwhile.
    pub fn set_expansion_search(&mut self, expansion: usize) -> Result<()> {
        if !(1..=1 << 20).contains(&expansion) {
            return Err(Error::invalid(
                "hnsw.expansion_search",
                expansion,
                "must be between 1 and 1048576",
            ));
        }
        self.index.change_expansion_search(expansion);
        Ok(())
    }

    /// The search-time candidate list size.
    pub fn expansion_search(&self) -> usize {
        self.index.expansion_search()
    }

    /// How the item vectors are stored.
    pub fn quantization(&self) -> Quantization {
        self.quantization
    }

    /// Bytes of memory the index uses (for a memory-mapped index, mostly the mapping).
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    /// The `k` best items for each of many queries (`queries` row-major, `n × dim`), searched
    /// in parallel with rayon. `filters` holds no filter, one for every query, or one per query.
    pub fn search_batch(&self, queries: &[f32], k: usize, filters: &[Filter<'_>]) -> Result<Vec<Vec<Scored>>> {
        let nq = check_queries(queries, self.dim)?;
        let filter_of = filters_for(filters, nq, self.len)?;
        queries
            .par_chunks_exact(self.dim)
            .enumerate()
            .map(|(i, q)| self.search_unchecked(q, k, &filter_of(i)))
            .collect()
    }

    /// Search with `query` and `filter` already validated.
    fn search_unchecked(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        if k == 0 || self.len == 0 {
            return Ok(Vec::new());
        }
        let k = k.min(self.len);
        let budget = self.expansion_search().max(k);
        if !filter.is_trivial() && filter.count_allowed(self.len, budget + 1) <= budget {
            // No more items pass than a graph walk visits anyway: scanning them costs no more, and
            // is exact, where a filtered walk stops at k passing items and can miss better ones.
            return self.scan(query, k, filter);
        }
        let matches = {
            let _slot = self.slots.acquire();
            let found = if filter.is_trivial() {
                self.index.search(query, k)
            } else {
                self.index.filtered_search(query, k, |key| filter.allows(key as u32))
            };
            found.map_err(internal("search"))?
        };
        let mut out = Vec::with_capacity(matches.keys.len());
        for (&key, &distance) in matches.keys.iter().zip(&matches.distances) {
            let item = u32::try_from(key)
                .ok()
                .filter(|&i| (i as usize) < self.len)
                .ok_or_else(|| Error::corrupt(self.describe(), format!("item key {key} out of range")))?;
            if filter.allows(item) {
                out.push(Scored {
                    item,
                    score: self.quantization.score(distance),
                });
            }
        }
        if out.len() < k && !filter.is_trivial() {
            // More than `budget >= k` items pass (checked above), yet the filtered walk was cut
            // short of k: scan the passing items instead.
            return self.scan(query, k, filter);
        }
        out.sort_unstable_by(by_rank);
        out.truncate(k);
        Ok(out)
    }

    /// Exact top-k over the items passing `filter`, reading vectors back from the index.
    fn scan(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        let mut v = vec![0.0f32; self.dim];
        let mut all = Vec::new();
        for item in (0..self.len as u32).filter(|&i| filter.allows(i)) {
            let found = self.index.get(u64::from(item), &mut v).map_err(internal("get"))?;
            if found == 0 {
                return Err(Error::corrupt(self.describe(), format!("item {item} missing")));
            }
            let score = crate::rerank::dot(&v, query);
            all.push(Scored { item, score });
        }
        if all.len() > k {
            all.select_nth_unstable_by(k - 1, by_rank);
            all.truncate(k);
        }
        all.sort_unstable_by(by_rank);
        Ok(all)
    }

    fn describe(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "HNSW index".into(),
        }
    }
}

impl ItemIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.len
    }
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        check_query(query, self.dim)?;
        filter.validate(self.len)?;
        self.search_unchecked(query, k, filter)
    }
}

/// The checksum file [`HnswIndex::save`] writes beside an index file: `<file>.crc32`, one line
/// `crc32 <8 hex digits> <length in bytes>`.
pub fn checksum_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".crc32");
    std::path::PathBuf::from(name)
}

/// CRC-32 and length of a file, read in 1 MiB blocks.
fn file_checksum(path: &Path) -> Result<(u32, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hasher.finalize(), len))
}

/// Checks an index file against its [`checksum_path`] file; [`Error::Corrupt`] naming the file
/// when they differ or the checksum file is missing or unreadable.
fn verify_checksum(path: &Path) -> Result<()> {
    let sum_path = checksum_path(path);
    let corrupt = |reason: String| Error::corrupt(path.display(), reason);
    let text = match std::fs::read_to_string(&sum_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A missing index is an I/O error about the index, not about its checksum.
            std::fs::metadata(path).map_err(Error::io(path))?;
            return Err(corrupt(format!(
                "no checksum file {} beside it (HnswIndex::save writes one; the index cannot be \
                 trusted without it)",
                sum_path.display()
            )));
        }
        Err(e) => return Err(Error::io(&sum_path)(e)),
    };
    let mut parts = text.split_whitespace();
    let (crc, len) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("crc32"), Some(c), Some(l), None) => match (u32::from_str_radix(c, 16), l.parse::<u64>()) {
            (Ok(c), Ok(l)) => (c, l),
            _ => return Err(corrupt(format!("unreadable checksum file {}", sum_path.display()))),
        },
        _ => return Err(corrupt(format!("unreadable checksum file {}", sum_path.display()))),
    };
    let (actual, actual_len) = file_checksum(path)?;
    if (actual, actual_len) != (crc, len) {
        return Err(corrupt(format!(
            "checksum mismatch: {} says crc32 {crc:08x} over {len} bytes, the file has {actual:08x} over \
             {actual_len} bytes",
            sum_path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::{ExactIndex, recall};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        for row in v.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    #[test]
    fn scores_are_inner_products_for_every_quantization() {
        let (n, dim) = (300, 16);
        let items = unit_vectors(n, dim, 1);
        let query = &unit_vectors(1, dim, 2)[..];
        for (q, tol) in [
            (Quantization::F32, 1e-5),
            (Quantization::F16, 5e-3),
            (Quantization::I8, 5e-2),
        ] {
            let cfg = HnswConfig {
                quantization: q,
                ..HnswConfig::default()
            };
            let index = HnswIndex::build(&items, dim, &cfg).unwrap();
            assert_eq!(index.quantization(), q);
            let got = index.search(query, 10, &Filter::default()).unwrap();
            assert_eq!(got.len(), 10);
            for s in &got {
                let row = &items[s.item as usize * dim..][..dim];
                let dot: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
                assert!((s.score - dot).abs() < tol, "{q:?}: {} vs {dot}", s.score);
            }
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }

    /// Every item is reachable: with `expansion_search` above the catalogue size a search visits
    /// the whole connected graph, so an item's own vector must find it first. Built inside an
    /// 8-thread pool, where parallel inserts stranded items (unum-cloud/USearch#735).
    #[test]
    fn every_item_is_reachable_from_its_own_vector() {
        let (n, dim) = (1500, 16);
        let items = unit_vectors(n, dim, 11);
        let cfg = HnswConfig {
            connectivity: 4,
            expansion_add: 16,
            expansion_search: 2 * n,
            ..HnswConfig::default()
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(8).build().unwrap();
        for round in 0..3 {
            let index = pool.install(|| HnswIndex::build(&items, dim, &cfg)).unwrap();
            let lost: Vec<usize> = (0..n)
                .filter(|&i| {
                    let found = index.search(&items[i * dim..][..dim], 1, &Filter::default()).unwrap();
                    found.first().map(|s| s.item as usize) != Some(i)
                })
                .collect();
            assert!(lost.is_empty(), "round {round}: items not reachable: {lost:?}");
        }
    }

    #[test]
    fn restrictive_filters_still_return_k() {
        let (n, dim) = (2000, 16);
        let items = unit_vectors(n, dim, 3);
        let index = HnswIndex::build(&items, dim, &HnswConfig::default()).unwrap();
        let exact = ExactIndex::new(items.clone(), dim).unwrap();
        // 1 item in 100 in stock.
        let stock: Vec<bool> = (0..n).map(|i| i % 100 == 7).collect();
        let f = Filter {
            in_stock: Some(&stock),
            ..Filter::default()
        };
        let q = &unit_vectors(1, dim, 4)[..];
        let got = index.search(q, 15, &f).unwrap();
        assert_eq!(got.len(), 15);
        assert!(got.iter().all(|s| stock[s.item as usize]));
        assert_eq!(recall(&got, &exact.search(q, 15, &f).unwrap()), 1.0);
        // Fewer pass than k: all of them.
        assert_eq!(index.search(q, 100, &f).unwrap().len(), 20);
    }

    #[test]
    fn a_failed_save_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.usearch");
        let dim = 8;
        let old = HnswIndex::build(&unit_vectors(50, dim, 5), dim, &HnswConfig::default()).unwrap();
        old.save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let new = HnswIndex::build(&unit_vectors(80, dim, 6), dim, &HnswConfig::default()).unwrap();
        FAIL_SAVE_BEFORE_RENAME.with(|f| f.set(true));
        let err = new.save(&path).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(
            names,
            vec![
                std::ffi::OsString::from("items.usearch"),
                std::ffi::OsString::from("items.usearch.crc32")
            ]
        );
        assert_eq!(HnswIndex::open(&path, &HnswConfig::default()).unwrap().len(), 50);
    }

    #[test]
    fn more_concurrent_searches_than_slots_wait_instead_of_failing() {
        let dim = 8;
        let items = unit_vectors(500, dim, 7);
        let cfg = HnswConfig {
            threads: 2,
            ..HnswConfig::default()
        };
        let index = HnswIndex::build(&items, dim, &cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.usearch");
        index.save(&path).unwrap();
        let opened = HnswIndex::open(&path, &cfg).unwrap();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (index, opened) = (&index, &opened);
                s.spawn(move || {
                    let q = unit_vectors(1, dim, 100 + t);
                    for _ in 0..50 {
                        assert_eq!(index.search(&q, 20, &Filter::default()).unwrap().len(), 20);
                        assert_eq!(opened.search(&q, 20, &Filter::default()).unwrap().len(), 20);
                    }
                });
            }
        });
    }

    #[test]
    fn config_is_validated_and_round_trips_as_json() {
        let bad = HnswConfig {
            connectivity: 1,
            ..HnswConfig::default()
        };
        let err = HnswIndex::build(&[1.0, 0.0], 2, &bad).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "hnsw.connectivity"));
        let cfg: HnswConfig = serde_json::from_str(r#"{"quantization": "f16", "expansion_search": 64}"#).unwrap();
        assert_eq!(cfg.quantization, Quantization::F16);
        assert_eq!(cfg.connectivity, HnswConfig::default().connectivity);
        assert!(serde_json::from_str::<HnswConfig>(r#"{"m": 3}"#).is_err());
    }
}
