//! Item retrieval: the top-k items for a query embedding, exactly or approximately (HNSW).
//!
//! Two indexes answer the same [`ItemIndex`] queries (inner product, higher is better, best
//! first, ties broken towards the lower item index):
//!
//! - [`ExactIndex`]: a full scan. One query: a matrix-vector product (`ndarray`) and a partial
//!   selection (the running top-k buffer the batch scans use). Many queries
//!   ([`ExactIndex::search_batch`]): cache-sized blocks of queries × items through the `gemm`
//!   crate's AVX-512/AVX2 kernels, multi-threaded over query blocks, with a running top-k per query.
//!   Used for small catalogues, the batch pre-computation, and as ground truth.
//! - [`HnswIndex`]: an approximate HNSW graph (usearch), saved atomically and opened
//!   memory-mapped; tuned by [`HnswConfig`]. For small k (serving) and large catalogues.
//! - [`IvfIndex`]: an approximate inverted file (spherical k-means lists, a query scans the lists
//!   of its best centroids), batched through the exact scan's matrix products; tuned by
//!   [`IvfConfig`]. For large k over many queries (the top-500 pre-computation).
//!
//! [`AnyIndex::build`] picks between the two by catalogue size ([`EXACT_MAX_ITEMS`]).
//!
//! Queries can carry a [`Filter`]: excluded, out-of-stock and other-category items are never
//! returned, and `k` results still come back whenever at least `k` items pass.
//!
//! ```
//! use recsys_core::retrieval::{ExactIndex, Filter, ItemIndex};
//!
//! // Three 2-d items.
//! let index = ExactIndex::new(vec![1.0, 0.0, 0.6, 0.8, 0.0, 1.0], 2)?;
//! let best = index.search(&[0.8, 0.6], 2, &Filter::default())?;
//! assert_eq!(best.iter().map(|s| s.item).collect::<Vec<_>>(), vec![1, 0]);
//! // Item 1 already bought: never returned, and k results still come back.
//! let best = index.search(&[0.8, 0.6], 2, &Filter { exclude: &[1], ..Filter::default() })?;
//! assert_eq!(best.iter().map(|s| s.item).collect::<Vec<_>>(), vec![0, 2]);
//! # Ok::<(), recsys_core::Error>(())
//! ```

mod hnsw;
mod ivf;
mod quantized;

pub use hnsw::{HnswConfig, HnswIndex, Quantization, checksum_path};
pub use ivf::{IvfConfig, IvfIndex};
pub use quantized::QuantizedVectors;

use crate::store::Scored;
use crate::{Error, Result};
use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use std::cmp::Ordering;

/// Query-time restrictions on which items may be returned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Items never returned (e.g. already purchased), sorted ascending.
    pub exclude: &'a [u32],
    /// Only items of this category code (needs `categories`).
    pub category: Option<u32>,
    /// Category code of every item, indexed by item (`u32::MAX` = none).
    pub categories: Option<&'a [u32]>,
    /// In-stock flag of every item; `false` items are never returned.
    pub in_stock: Option<&'a [bool]>,
}

impl Filter<'_> {
    /// Whether `item` passes the filter.
    pub fn allows(&self, item: u32) -> bool {
        if self.exclude.binary_search(&item).is_ok() {
            return false;
        }
        if let Some(stock) = self.in_stock
            && !stock.get(item as usize).copied().unwrap_or(false)
        {
            return false;
        }
        if let (Some(c), Some(cats)) = (self.category, self.categories)
            && cats.get(item as usize).copied() != Some(c)
        {
            return false;
        }
        true
    }

    /// Whether the filter lets every item through (no exclusions, no category, no stock flags).
    pub fn is_trivial(&self) -> bool {
        self.exclude.is_empty() && self.category.is_none() && self.in_stock.is_none()
    }

    /// Checks the filter against an index of `items` items: `exclude` sorted ascending,
    /// `categories` present when `category` is set, and `categories` / `in_stock` holding one
    /// entry per item. Every search runs this first and refuses a bad filter with
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self, items: usize) -> Result<()> {
        if let Some(w) = self.exclude.windows(2).find(|w| w[0] > w[1]) {
            return Err(Error::invalid(
                "filter.exclude",
                format!("{} before {}", w[0], w[1]),
                "must be sorted ascending",
            ));
        }
        if self.category.is_some() && self.categories.is_none() {
            return Err(Error::invalid(
                "filter.categories",
                "none",
                "needed when filter.category is set",
            ));
        }
        if let Some(c) = self.categories
            && c.len() != items
        {
            return Err(Error::invalid(
                "filter.categories",
                c.len(),
                format!("expected one category code per item ({items})"),
            ));
        }
        if let Some(s) = self.in_stock
            && s.len() != items
        {
            return Err(Error::invalid(
                "filter.in_stock",
                s.len(),
                format!("expected one flag per item ({items})"),
            ));
        }
        Ok(())
    }

    /// How many of the items `0..items` pass the filter, counting no further than `limit` (the
    /// answer is `min(count, limit)`; the scan stops at the `limit`-th passing item).
    pub fn count_allowed(&self, items: usize, limit: usize) -> usize {
        if self.is_trivial() {
            return items.min(limit);
        }
        (0..items as u32).filter(|&i| self.allows(i)).take(limit).count()
    }
}

/// An index over item embeddings answering inner-product top-k queries.
pub trait ItemIndex: Send + Sync {
    /// Embedding size.
    fn dim(&self) -> usize;
    /// Number of items.
    fn len(&self) -> usize;
    /// Whether the index holds no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `k` best items for `query` passing `filter`, best first.
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>>;
}

/// Ranking order of results: higher score first, then the lower item index.
pub(crate) fn by_rank(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.item.cmp(&b.item))
}

/// Refuses a query of the wrong size or with non-finite values.
pub(crate) fn check_query(query: &[f32], dim: usize) -> Result<()> {
    if query.len() != dim {
        return Err(Error::invalid(
            "query",
            query.len(),
            format!("expected {dim} dimensions"),
        ));
    }
    if let Some(i) = query.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid("query", query[i], format!("non-finite value at {i}")));
    }
    Ok(())
}

/// Refuses a batch of queries that is not a whole number of `dim`-vectors, or has non-finite values.
pub(crate) fn check_queries(queries: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 || !queries.len().is_multiple_of(dim) {
        return Err(Error::invalid(
            "queries",
            queries.len(),
            format!("not a multiple of dim {dim}"),
        ));
    }
    if let Some(i) = queries.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "queries",
            queries[i],
            format!("non-finite value in query {} at {}", i / dim, i % dim),
        ));
    }
    Ok(queries.len() / dim)
}

/// Refuses item vectors that are not a whole number of `dim`-vectors, have non-finite values or
/// more items than `u32` can index. Returns the number of items.
pub(crate) fn check_vectors(vectors: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 || !vectors.len().is_multiple_of(dim) {
        return Err(Error::invalid(
            "vectors",
            vectors.len(),
            format!("not a multiple of dim {dim}"),
        ));
    }
    if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "vectors",
            vectors[i],
            format!("non-finite value in item {} at {}", i / dim, i % dim),
        ));
    }
    let n = vectors.len() / dim;
    if n > u32::MAX as usize {
        return Err(Error::invalid("vectors", n, "more items than u32 indices"));
    }
    Ok(n)
}

/// The filter of each of `n` queries: `filters` empty (no filter), one filter (for every query)
/// or one per query. Validates each against `items` items.
pub(crate) fn filters_for<'f, 'a>(
    filters: &'f [Filter<'a>],
    n: usize,
    items: usize,
) -> Result<impl Fn(usize) -> Filter<'a> + Sync + 'f> {
    if filters.len() > 1 && filters.len() != n {
        return Err(Error::invalid(
            "filters",
            filters.len(),
            format!("expected 0, 1 or one per query ({n})"),
        ));
    }
    for f in filters {
        f.validate(items)?;
    }
    Ok(move |q: usize| match filters.len() {
        0 => Filter::default(),
        1 => filters[0],
        _ => filters[q],
    })
}

/// Exact top-k by a full inner-product scan.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    vectors: Vec<f32>,
    dim: usize,
}

/// Most queries in one block of [`ExactIndex::search_batch`].
const MAX_QUERY_BLOCK: usize = 512;
/// Items per matrix product in [`ExactIndex::search_batch`]: 8,192 items × 256-d is 8 MiB of
/// item vectors, and a 512-query block's scores for them 16 MiB. Measured on this project's 2-core
/// Xeon (AVX-512) at 100,000 × 256-d: 2.6k queries/s, against 0.9k/s for whole-catalogue
/// products of 256 queries and 0.7k/s for 41 (the `ndarray` path this replaced).
const ITEM_CHUNK: usize = 8192;

impl ExactIndex {
    /// An index over `vectors` (row-major, `len × dim`). Refuses a length that is not a multiple
    /// of `dim` and non-finite values.
    pub fn new(vectors: Vec<f32>, dim: usize) -> Result<Self> {
        check_vectors(&vectors, dim)?;
        Ok(ExactIndex { vectors, dim })
    }

    /// The item vectors, row-major `len × dim`.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// The `k` best items for each of many queries (`queries` row-major, `n × dim`), best first.
    ///
    /// The queries are split into blocks, one or more per rayon thread (at most
    /// `MAX_QUERY_BLOCK`); each block is multiplied with the item matrix
    /// `ITEM_CHUNK` items at a time (a cache-sized matrix product through the `gemm` crate, which
    /// picks AVX-512, AVX2+FMA or NEON kernels at run time), and every query keeps a running top-k
    /// over the chunks. Same answers as [`ItemIndex::search`] query by query.
    ///
    /// `filters` holds no filter (nothing filtered), one filter applied to every query, or one
    /// filter per query.
    pub fn search_batch(&self, queries: &[f32], k: usize, filters: &[Filter<'_>]) -> Result<Vec<Vec<Scored>>> {
        let (n, d) = (self.len(), self.dim);
        let nq = check_queries(queries, d)?;
        let filter_of = filters_for(filters, nq, n)?;
        if k == 0 || n == 0 || nq == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let threads = rayon::current_num_threads().max(1);
        let block = nq.div_ceil(threads).clamp(1, MAX_QUERY_BLOCK);
        let chunk = ITEM_CHUNK.min(n);
        let blocks: Vec<Vec<Vec<Scored>>> = queries
            .par_chunks(block * d)
            .enumerate()
            .map(|(b, qs)| {
                let rows = qs.len() / d;
                let mut tops: Vec<RunningTopK> = (0..rows).map(|_| RunningTopK::new(k)).collect();
                let mut scores = vec![0.0f32; rows * chunk];
                for (c, items) in self.vectors.chunks(chunk * d).enumerate() {
                    let cols = items.len() / d;
                    let out = &mut scores[..rows * cols];
                    block_scores(qs, items, d, out)?;
                    let first = (c * chunk) as u32;
                    for (r, top) in tops.iter_mut().enumerate() {
                        top.offer(&out[r * cols..(r + 1) * cols], first, &filter_of(b * block + r));
                    }
                }
                Ok(tops.into_iter().map(RunningTopK::into_sorted).collect())
            })
            .collect::<Result<_>>()?;
        Ok(blocks.into_iter().flatten().collect())
    }

    fn matrix(&self) -> Result<ArrayView2<'_, f32>> {
        ArrayView2::from_shape((self.len(), self.dim), &self.vectors).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// `out[r × cols + c] = queries[r] · items[c]` for a block of queries and a block of items (both
/// row-major with `d` columns): one matrix product through `gemm`, on the calling thread.
fn block_scores(queries: &[f32], items: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
    let rows = crate::linalg::row_count(queries, d, "block_scores: queries")?;
    let cols = crate::linalg::row_count(items, d, "block_scores: items")?;
    crate::linalg::matmul(
        crate::linalg::MatRef::row_major(queries, rows, d),
        crate::linalg::MatRef::transposed(items, cols, d),
        out,
    )
}

/// A query's best `k` items so far, fed blocks of scores.
///
/// A buffer, not a heap: an offer that beats the floor (the `k`-th best score at the last
/// compaction) is appended, and when the buffer holds `2k` the `k` best are selected
/// (`select_nth_unstable`) and the floor raised. A heap pays a sift of `log k` comparisons for
/// every item that enters; at top-500 over the ~10,000 candidates of an IVF search that was 40 % of
/// the search time (perf), the buffer's amortised selection a few comparisons per entry. Entries
/// are [`rank_key`]s, so selection and the final sort compare plain integers.
struct RunningTopK {
    k: usize,
    buf: Vec<u64>,
    /// No item scoring below this can be among the best `k`.
    floor: f32,
}

/// `Scored` packed into a `u64` whose ascending order is [`by_rank`]: higher score first (the
/// score's bits mapped to an order-preserving unsigned integer, inverted), then the lower item.
#[inline]
fn rank_key(item: u32, score: f32) -> u64 {
    let bits = score.to_bits();
    let ordered = if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 };
    (u64::from(!ordered) << 32) | u64::from(item)
}

/// The inverse of [`rank_key`].
#[inline]
fn from_rank_key(key: u64) -> Scored {
    let ordered = !((key >> 32) as u32);
    let bits = if ordered >> 31 == 1 {
        ordered & 0x7fff_ffff
    } else {
        !ordered
    };
    Scored {
        item: key as u32,
        score: f32::from_bits(bits),
    }
}

impl RunningTopK {
    fn new(k: usize) -> Self {
        RunningTopK {
            k,
            buf: Vec::with_capacity((2 * k).min(4096)),
            floor: f32::NEG_INFINITY,
        }
    }

    /// Keeps the best `k` of the buffer and raises the floor to the worst of them.
    fn compact(&mut self) {
        if self.k == 0 {
            self.buf.clear();
        } else if self.buf.len() > self.k {
            self.buf.select_nth_unstable(self.k - 1);
            self.buf.truncate(self.k);
            self.floor = from_rank_key(self.buf[self.k - 1]).score;
        }
    }

    #[inline]
    fn push(&mut self, item: u32, score: f32) {
        self.buf.push(rank_key(item, score));
        if self.buf.len() >= 2 * self.k {
            self.compact();
        }
    }

    /// Offers the scores of items `first, first + 1, …`.
    fn offer(&mut self, scores: &[f32], first: u32, filter: &Filter<'_>) {
        self.offer_by(scores, |i| first + i as u32, filter);
    }

    /// Offers the scores of items `ids` (in any order; `scores[i]` is item `ids[i]`).
    fn offer_ids(&mut self, scores: &[f32], ids: &[u32], filter: &Filter<'_>) {
        self.offer_by(&scores[..scores.len().min(ids.len())], |i| ids[i], filter);
    }

    /// Offers `scores[i]` for item `item(i)`.
    #[inline]
    fn offer_by(&mut self, scores: &[f32], item: impl Fn(usize) -> u32, filter: &Filter<'_>) {
        let trivial = filter.is_trivial();
        for (b, block) in scores.chunks(16).enumerate() {
            // Once the floor has risen most blocks of 16 hold nothing above it: one vectorised
            // count skips them.
            let floor = self.floor;
            if block.iter().filter(|&&s| s >= floor).count() == 0 {
                continue;
            }
            for (j, &score) in block.iter().enumerate() {
                let id = item(b * 16 + j);
                if score >= self.floor && (trivial || filter.allows(id)) {
                    self.push(id, score);
                }
            }
        }
    }

    /// The kept items, best first (ties: the lower item first).
    fn into_sorted(mut self) -> Vec<Scored> {
        self.compact();
        self.buf.sort_unstable();
        self.buf.into_iter().map(from_rank_key).collect()
    }
}

/// The `k` best of `scores` (indexed by item) passing `filter`, best first: the running top-k
/// of the batch scans fed one block ([`RunningTopK`]; the filter is only asked about items
/// good enough to enter it).
fn top_k(scores: &[f32], k: usize, filter: &Filter<'_>) -> Vec<Scored> {
    let mut top = RunningTopK::new(k);
    top.offer(scores, 0, filter);
    top.into_sorted()
}

impl ItemIndex for ExactIndex {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        check_query(query, self.dim)?;
        filter.validate(self.len())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let scores = self.matrix()?.dot(&ArrayView1::from(query));
        let scores = scores
            .as_slice()
            .ok_or_else(|| Error::Internal("score vector not contiguous".into()))?;
        Ok(top_k(scores, k, filter))
    }
}

/// Catalogues below this many items get an [`ExactIndex`] from [`AnyIndex::build`], larger ones an
/// [`HnswIndex`].
///
/// An exact scan of 20,000 256-d items is 5 M multiply-adds per query: fast enough for serving,
/// exact, and with no build step. At the ADR's 100,000 items (`benches/ann_vs_faiss.sh`, figures in
/// benches/README.md) the batched exact scan beat HNSW for top-500 at recall@500 ≥ 0.95, and the
/// batched inverted file ([`IvfIndex::search_batch`]) beat the exact scan; HNSW wins for small k
/// (serving).
pub const EXACT_MAX_ITEMS: usize = 20_000;

/// An exact or HNSW index, chosen by catalogue size.
#[derive(Debug)]
pub enum AnyIndex {
    /// Full scan (small catalogues).
    Exact(ExactIndex),
    /// Approximate HNSW graph (large catalogues).
    Hnsw(HnswIndex),
}

impl AnyIndex {
    /// An [`ExactIndex`] for fewer than [`EXACT_MAX_ITEMS`] items, an [`HnswIndex`] built with
    /// `config` otherwise.
    pub fn build(vectors: Vec<f32>, dim: usize, config: &HnswConfig) -> Result<Self> {
        let n = check_vectors(&vectors, dim)?;
        if n < EXACT_MAX_ITEMS {
            Ok(AnyIndex::Exact(ExactIndex::new(vectors, dim)?))
        } else {
            Ok(AnyIndex::Hnsw(HnswIndex::build(&vectors, dim, config)?))
        }
    }

    /// The `k` best items for each of many queries; see [`ExactIndex::search_batch`].
    pub fn search_batch(&self, queries: &[f32], k: usize, filters: &[Filter<'_>]) -> Result<Vec<Vec<Scored>>> {
        match self {
            AnyIndex::Exact(i) => i.search_batch(queries, k, filters),
            AnyIndex::Hnsw(i) => i.search_batch(queries, k, filters),
        }
    }
}

impl ItemIndex for AnyIndex {
    fn dim(&self) -> usize {
        match self {
            AnyIndex::Exact(i) => i.dim(),
            AnyIndex::Hnsw(i) => i.dim(),
        }
    }
    fn len(&self) -> usize {
        match self {
            AnyIndex::Exact(i) => i.len(),
            AnyIndex::Hnsw(i) => i.len(),
        }
    }
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        match self {
            AnyIndex::Exact(i) => i.search(query, k, filter),
            AnyIndex::Hnsw(i) => i.search(query, k, filter),
        }
    }
}

/// Recall of `found` against `truth`: the share of the true top-k items that were returned
/// (1.0 when `truth` is empty).
pub fn recall(found: &[Scored], truth: &[Scored]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let mut t: Vec<u32> = truth.iter().map(|s| s.item).collect();
    t.sort_unstable();
    let hits = found.iter().filter(|s| t.binary_search(&s.item).is_ok()).count();
    hits as f64 / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_keys_sort_like_by_rank_and_round_trip() {
        let scores = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.25,
            0.5,
            1.0,
            f32::MAX,
            f32::INFINITY,
        ];
        let mut all: Vec<Scored> = Vec::new();
        for (i, &score) in scores.iter().enumerate() {
            for item in [0, 7, u32::MAX] {
                all.push(Scored {
                    item: item ^ i as u32,
                    score,
                });
            }
        }
        for s in &all {
            let back = from_rank_key(rank_key(s.item, s.score));
            assert_eq!((back.item, back.score.to_bits()), (s.item, s.score.to_bits()));
        }
        let mut by_key = all.clone();
        by_key.sort_unstable_by_key(|s| rank_key(s.item, s.score));
        let mut by_cmp = all;
        by_cmp.sort_unstable_by(by_rank);
        let bits = |v: &[Scored]| v.iter().map(|s| (s.item, s.score.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&by_key), bits(&by_cmp));
    }

    #[test]
    fn running_top_k_keeps_the_best_whatever_the_offer_order() {
        let scores: Vec<f32> = (0..5000u32).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let ids: Vec<u32> = (0..5000u32).rev().collect();
        let mut want: Vec<Scored> = ids
            .iter()
            .zip(&scores)
            .map(|(&item, &score)| Scored { item, score })
            .collect();
        want.sort_unstable_by(by_rank);
        for k in [0, 1, 3, 100, 4999, 5000, 6000] {
            let mut top = RunningTopK::new(k);
            for (s, i) in scores.chunks(333).zip(ids.chunks(333)) {
                top.offer_ids(s, i, &Filter::default());
            }
            assert_eq!(top.into_sorted(), want[..k.min(5000)], "k {k}");
        }
    }
}
