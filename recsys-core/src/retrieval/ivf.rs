//! Approximate top-k by an inverted file (IVF): the items are clustered by spherical k-means into
//! `lists`, and a query scans only the lists whose centroids score highest against it (`probes`
//! of them).
//!
//! Made for the batch pre-computation's large k (top-500 for every user). There an HNSW graph
//! needs a search budget in the thousands and visits much of the catalogue one random access at
//! a time, which made it slower than the exact scan (`benches/README.md`).
//! [`IvfIndex::search_batch`] instead groups a block of queries by the lists they probe and scores
//! each list against all of its queries with one matrix product (the `gemm` kernels of the exact
//! scan), so its cost falls with the share of the catalogue scanned while keeping the exact
//! scan's dense arithmetic.

use super::{Filter, ItemIndex, RunningTopK, block_scores, check_queries, check_query, check_vectors, filters_for};
use crate::store::Scored;
use crate::{Error, Result};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Parameters of an [`IvfIndex`].
///
/// The defaults were tuned on the ADR-scale benchmark (100,000 trained 256-d item embeddings,
/// 2,000 user-embedding queries, top-500; `benches/ann_vs_faiss.sh`, figures in
/// `benches/README.md`), two models of different seeds: with 1,265 lists (the automatic count)
/// and lists ranked with spread weight 0.35, 112 probes (6 % of the catalogue scanned: the lists
/// queries pick are smaller than average) gave recall@500 0.975 and 0.958 at 5.0x the
/// exact scan's queries/s; ranked by the centroid alone (weight 0) the same probes gave 0.961 and
/// 0.939.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IvfConfig {
    /// Number of lists (k-means clusters). 0: automatic, `4·√n` for `n` items (1,265 for
    /// 100,000). Never more than the number of items.
    pub lists: usize,
    /// Lists scanned per query. Higher: better recall, slower queries; `probes ≥ lists` is an
    /// exact scan.
    pub probes: usize,
    /// k-means iterations.
    pub iterations: usize,
    /// At most this many training points per list for k-means (a seeded sample of the items when
    /// there are more); every item is assigned to its list afterwards.
    pub train_per_list: usize,
    /// Lists are ranked for a query by `query · centroid + spread_weight × radius`, the radius
    /// being the largest distance of the list's items from its centroid: 1 ranks by an upper
    /// bound of the best item score (for a unit-length query), 0 by the centroid alone. Measured,
    /// 0.25 to 0.35 lifted recall@500 at equal probes by 0.01 to 0.02; 1 lowered it by 0.05.
    pub spread_weight: f32,
    /// Seed of the training sample and the initial centroids: the same items, config and seed
    /// build the same index.
    pub seed: u64,
}

impl Default for IvfConfig {
    fn default() -> Self {
        IvfConfig {
            lists: 0,
            probes: 112,
            iterations: 10,
            train_per_list: 64,
            spread_weight: 0.35,
            seed: 42,
        }
    }
}

impl IvfConfig {
    /// Refuses out-of-range values with [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.lists > 1 << 24 {
            return Err(Error::invalid("ivf.lists", self.lists, "must be at most 16,777,216"));
        }
        if self.probes == 0 {
            return Err(Error::invalid("ivf.probes", self.probes, "must be at least 1"));
        }
        if !(1..=1000).contains(&self.iterations) {
            return Err(Error::invalid("ivf.iterations", self.iterations, "must be 1 to 1000"));
        }
        if !(self.spread_weight.is_finite() && self.spread_weight >= 0.0) {
            return Err(Error::invalid(
                "ivf.spread_weight",
                self.spread_weight,
                "must be a finite number ≥ 0",
            ));
        }
        if self.train_per_list == 0 {
            return Err(Error::invalid(
                "ivf.train_per_list",
                self.train_per_list,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The number of lists for `n` items.
    fn lists_for(&self, n: usize) -> usize {
        let lists = if self.lists == 0 {
            (4.0 * (n as f64).sqrt()).round() as usize
        } else {
            self.lists
        };
        lists.clamp(1, n.max(1))
    }
}

/// Most queries in one block of [`IvfIndex::search_batch`]: more queries per block put more of
/// them on each list's matrix product.
const MAX_QUERY_BLOCK: usize = 4096;
/// Rows per matrix product while assigning points to centroids.
const ASSIGN_BLOCK: usize = 1024;

/// Approximate inner-product top-k over item embeddings through an inverted file (spherical
/// k-means lists of the item vectors; each query scans its best lists; how it is built and tuned
/// is documented in `recsys-core/src/retrieval/ivf.rs`).
///
/// Items keep their row index as their id. Scores are exact inner products of the items
/// scanned; an item is missed only when none of the query's `probes` lists holds it. Filters are
/// applied while scanning, and a query whose probed lists hold fewer than `k` passing items is
/// asked again over twice as many lists (up to all of them), so `k` results come back whenever
/// `k` items pass.
#[derive(Debug, Clone)]
pub struct IvfIndex {
    dim: usize,
    /// `lists × dim`, unit length (or zero).
    centroids: Vec<f32>,
    /// List `l` holds positions `offsets[l]..offsets[l + 1]` of `ids` and `vectors`.
    offsets: Vec<usize>,
    /// Item id of each position.
    ids: Vec<u32>,
    /// Item vectors in list order, `len × dim`.
    vectors: Vec<f32>,
    /// Per list: `weight ×` the largest distance of its items from its centroid, added to the
    /// centroid's score when ranking lists for a query.
    spread: Vec<f32>,
    probes: usize,
}

impl IvfIndex {
    /// Builds an index over `vectors` (row-major, `len × dim`, item `i` = row `i`): spherical
    /// k-means on a seeded sample (multi-threaded with rayon), then every item assigned to the
    /// centroid with the highest inner product. Refuses bad shapes, non-finite values and
    /// out-of-range `config` fields with [`Error::InvalidInput`].
    pub fn build(vectors: &[f32], dim: usize, config: &IvfConfig) -> Result<Self> {
        config.validate()?;
        let n = check_vectors(vectors, dim)?;
        if n == 0 {
            return Ok(IvfIndex {
                dim,
                centroids: Vec::new(),
                offsets: vec![0],
                ids: Vec::new(),
                vectors: Vec::new(),
                spread: Vec::new(),
                probes: config.probes,
            });
        }
        let lists = config.lists_for(n);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let train_n = n.min(lists.saturating_mul(config.train_per_list));
        let train: Vec<f32> = if train_n == n {
            vectors.to_vec()
        } else {
            let mut rows = sample(&mut rng, n, train_n).into_vec();
            rows.sort_unstable();
            rows.iter()
                .flat_map(|&r| &vectors[r * dim..(r + 1) * dim])
                .copied()
                .collect()
        };
        let centroids = kmeans(&train, dim, lists, config.iterations, &mut rng)?;

        let (labels, _) = assign(vectors, &centroids, dim)?;
        let (offsets, ids) = group_by(&labels, lists);
        let ordered: Vec<f32> = ids
            .iter()
            .flat_map(|&item| &vectors[item as usize * dim..(item as usize + 1) * dim])
            .copied()
            .collect();
        let spread = (0..lists)
            .map(|l| {
                let c = &centroids[l * dim..(l + 1) * dim];
                let far = ordered[offsets[l] * dim..offsets[l + 1] * dim]
                    .chunks_exact(dim)
                    .map(|v| v.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f32>())
                    .fold(0.0f32, f32::max);
                config.spread_weight * far.sqrt()
            })
            .collect();
        Ok(IvfIndex {
            dim,
            centroids,
            offsets,
            ids,
            vectors: ordered,
            spread,
            probes: config.probes,
        })
    }

    /// Number of lists.
    pub fn lists(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The number of items in each list.
    pub fn list_sizes(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Lists scanned per query.
    pub fn probes(&self) -> usize {
        self.probes
    }

    /// Changes the lists scanned per query (0 is refused with [`Error::InvalidInput`]).
    pub fn set_probes(&mut self, probes: usize) -> Result<()> {
        if probes == 0 {
            return Err(Error::invalid("ivf.probes", probes, "must be at least 1"));
        }
        self.probes = probes;
        Ok(())
    }

    /// The `k` best items for each of many queries (`queries` row-major, `n × dim`), best first.
    ///
    /// The queries are split into blocks, one or more per rayon thread. In a block, every query
    /// picks its `probes` best centroids (one matrix product), the block is grouped by list, and
    /// each list's items are scored against all the queries probing it with one matrix product.
    /// Same answers as [`ItemIndex::search`] query by query.
    ///
    /// `filters` holds no filter (nothing filtered), one filter applied to every query, or one
    /// filter per query.
    pub fn search_batch(&self, queries: &[f32], k: usize, filters: &[Filter<'_>]) -> Result<Vec<Vec<Scored>>> {
        let d = self.dim;
        let nq = check_queries(queries, d)?;
        let filter_of = filters_for(filters, nq, self.len())?;
        if k == 0 || self.is_empty() || nq == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let threads = rayon::current_num_threads().max(1);
        let block = nq.div_ceil(threads).clamp(1, MAX_QUERY_BLOCK);
        let blocks: Vec<Vec<Vec<Scored>>> = queries
            .par_chunks(block * d)
            .enumerate()
            .map(|(b, qs)| self.search_block(qs, k, &|r| filter_of(b * block + r), self.probes))
            .collect::<Result<_>>()?;
        Ok(blocks.into_iter().flatten().collect())
    }

    /// [`IvfIndex::search_batch`] for one block of queries over their `probes` best lists each.
    fn search_block<'a>(
        &self,
        qs: &[f32],
        k: usize,
        filter_of: &dyn Fn(usize) -> Filter<'a>,
        probes: usize,
    ) -> Result<Vec<Vec<Scored>>> {
        let (d, lists) = (self.dim, self.lists());
        let rows = qs.len() / d;
        let probes = probes.min(lists);
        let mut centroid_scores = vec![0.0f32; rows * lists];
        block_scores(qs, &self.centroids, d, &mut centroid_scores)?;
        for row in centroid_scores.chunks_exact_mut(lists) {
            row.iter_mut().zip(&self.spread).for_each(|(s, w)| *s += w);
        }

        // Row `r`'s lists are `picked[r * probes..(r + 1) * probes]`.
        let mut picked = Vec::with_capacity(rows * probes);
        let (mut keys, mut scratch) = (Vec::with_capacity(lists), Vec::with_capacity(probes));
        for r in 0..rows {
            best_lists(
                &centroid_scores[r * lists..(r + 1) * lists],
                probes,
                &mut keys,
                &mut scratch,
            );
            picked.extend_from_slice(&scratch);
        }
        drop(centroid_scores);
        // The block grouped by list: `members[first[l]..first[l + 1]]` are the rows probing `l`.
        let (first, mut members) = group_by(&picked, lists);
        members.iter_mut().for_each(|i| *i /= probes as u32);

        let mut tops: Vec<RunningTopK> = (0..rows).map(|_| RunningTopK::new(k)).collect();
        let mut gathered: Vec<f32> = Vec::new();
        let mut scores: Vec<f32> = Vec::new();
        for l in 0..lists {
            let rows_of = &members[first[l]..first[l + 1]];
            let (start, end) = (self.offsets[l], self.offsets[l + 1]);
            if rows_of.is_empty() || start == end {
                continue;
            }
            gathered.clear();
            for &r in rows_of {
                gathered.extend_from_slice(&qs[r as usize * d..(r as usize + 1) * d]);
            }
            let cols = end - start;
            scores.resize(rows_of.len() * cols, 0.0);
            block_scores(&gathered, &self.vectors[start * d..end * d], d, &mut scores)?;
            for (j, &r) in rows_of.iter().enumerate() {
                let filter = filter_of(r as usize);
                tops[r as usize].offer_ids(&scores[j * cols..(j + 1) * cols], &self.ids[start..end], &filter);
            }
        }
        let mut found: Vec<Vec<Scored>> = tops.into_iter().map(RunningTopK::into_sorted).collect();
        // Queries whose lists held fewer than k passing items: again, over twice the lists.
        let short: Vec<usize> = (0..rows).filter(|&r| found[r].len() < k.min(self.len())).collect();
        if !short.is_empty() && probes < lists {
            let again: Vec<f32> = short.iter().flat_map(|&r| &qs[r * d..(r + 1) * d]).copied().collect();
            let wider = self.search_block(&again, k, &|j| filter_of(short[j]), probes.saturating_mul(2))?;
            for (&r, list) in short.iter().zip(wider) {
                found[r] = list;
            }
        }
        Ok(found)
    }

    /// The mean number of items in the lists `queries` (row-major) probe: the share of the
    /// catalogue a search scans, which sets its cost (popular regions have larger lists).
    pub fn mean_items_scanned(&self, queries: &[f32]) -> Result<f64> {
        let nq = check_queries(queries, self.dim)?;
        let (lists, probes) = (self.lists(), self.probes.min(self.lists()));
        if nq == 0 || lists == 0 {
            return Ok(0.0);
        }
        let sizes = self.list_sizes();
        let (mut keys, mut picked) = (Vec::new(), Vec::new());
        let mut total = 0usize;
        for q in queries.chunks_exact(self.dim) {
            best_lists(&self.list_scores(q), probes, &mut keys, &mut picked);
            total += picked.iter().map(|&l| sizes[l as usize]).sum::<usize>();
        }
        Ok(total as f64 / nq as f64)
    }

    /// How `query` ranks the lists (higher first): centroid score plus the list's spread term.
    fn list_scores(&self, query: &[f32]) -> Vec<f32> {
        self.centroids
            .chunks_exact(self.dim)
            .zip(&self.spread)
            .map(|(c, w)| crate::simd::dot(c, query) + w)
            .collect()
    }

    /// One query over its `probes` best lists.
    fn search_lists(&self, query: &[f32], k: usize, filter: &Filter<'_>, probes: usize) -> Result<Vec<Scored>> {
        let (d, lists) = (self.dim, self.lists());
        let centroid_scores = self.list_scores(query);
        let mut picked = Vec::with_capacity(lists);
        best_lists(&centroid_scores, probes.min(lists), &mut Vec::new(), &mut picked);
        let mut top = RunningTopK::new(k);
        let mut scores = Vec::new();
        for &l in &picked {
            let (start, end) = (self.offsets[l as usize], self.offsets[l as usize + 1]);
            scores.clear();
            scores.extend(
                self.vectors[start * d..end * d]
                    .chunks_exact(d)
                    .map(|v| crate::simd::dot(v, query)),
            );
            top.offer_ids(&scores, &self.ids[start..end], filter);
        }
        Ok(top.into_sorted())
    }
}

impl ItemIndex for IvfIndex {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        check_query(query, self.dim)?;
        filter.validate(self.len())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let mut probes = self.probes.min(self.lists());
        loop {
            let found = self.search_lists(query, k, filter, probes)?;
            if found.len() >= k.min(self.len()) || probes == self.lists() {
                return Ok(found);
            }
            // The lists held fewer than k passing items: again, over twice the lists.
            probes = probes.saturating_mul(2).min(self.lists());
        }
    }
}

/// A counting sort of the indexes of `keys` (each `< buckets`) by key: bucket `b` holds
/// `order[offsets[b]..offsets[b + 1]]`, in ascending index order.
fn group_by(keys: &[u32], buckets: usize) -> (Vec<usize>, Vec<u32>) {
    let mut offsets = vec![0usize; buckets + 1];
    for &b in keys {
        offsets[b as usize + 1] += 1;
    }
    for b in 0..buckets {
        offsets[b + 1] += offsets[b];
    }
    let mut next = offsets[..buckets].to_vec();
    let mut order = vec![0u32; keys.len()];
    for (i, &b) in keys.iter().enumerate() {
        order[next[b as usize]] = i as u32;
        next[b as usize] += 1;
    }
    (offsets, order)
}

/// Into `out`: the indexes of the `probes` highest of `scores` (in no particular order; ties to
/// the lower index). Selects over packed integer keys ([`super::rank_key`]): no indirection.
fn best_lists(scores: &[f32], probes: usize, keys: &mut Vec<u64>, out: &mut Vec<u32>) {
    keys.clear();
    keys.extend(scores.iter().enumerate().map(|(l, &s)| super::rank_key(l as u32, s)));
    if probes < keys.len() {
        keys.select_nth_unstable(probes.max(1) - 1);
        keys.truncate(probes);
    }
    out.clear();
    out.extend(keys.iter().map(|&k| k as u32));
}

/// For every row of `points`: the centroid with the highest inner product and that product.
fn assign(points: &[f32], centroids: &[f32], dim: usize) -> Result<(Vec<u32>, Vec<f32>)> {
    let lists = centroids.len() / dim;
    let parts: Vec<(Vec<u32>, Vec<f32>)> = points
        .par_chunks(ASSIGN_BLOCK * dim)
        .map(|block| {
            let rows = block.len() / dim;
            let mut scores = vec![0.0f32; rows * lists];
            block_scores(block, centroids, dim, &mut scores)?;
            Ok(scores
                .chunks_exact(lists)
                .map(|row| {
                    let (best, score) =
                        row.iter().enumerate().fold(
                            (0usize, f32::NEG_INFINITY),
                            |acc, (l, &s)| if s > acc.1 { (l, s) } else { acc },
                        );
                    (best as u32, score)
                })
                .unzip())
        })
        .collect::<Result<_>>()?;
    let mut labels = Vec::with_capacity(points.len() / dim);
    let mut best = Vec::with_capacity(points.len() / dim);
    for (l, s) in parts {
        labels.extend(l);
        best.extend(s);
    }
    Ok((labels, best))
}

/// Scales `v` to unit length (a zero vector stays zero).
fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Spherical k-means: `lists` unit-length centroids of `points` (`lists ≤` the number of points),
/// starting from distinct random points. A list left empty takes the point its centroid serves
/// worst, so that every centroid keeps points.
fn kmeans(
    points: &[f32],
    dim: usize,
    lists: usize,
    iterations: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<f32>> {
    let n = points.len() / dim;
    let mut centroids: Vec<f32> = sample(rng, n, lists)
        .into_iter()
        .flat_map(|r| &points[r * dim..(r + 1) * dim])
        .copied()
        .collect();
    centroids.chunks_exact_mut(dim).for_each(normalise);
    for _ in 0..iterations {
        let (labels, best) = assign(points, &centroids, dim)?;
        let mut sums = vec![0.0f32; lists * dim];
        let mut counts = vec![0usize; lists];
        for (p, &l) in labels.iter().enumerate() {
            counts[l as usize] += 1;
            let sum = &mut sums[l as usize * dim..(l as usize + 1) * dim];
            sum.iter_mut()
                .zip(&points[p * dim..(p + 1) * dim])
                .for_each(|(s, x)| *s += x);
        }
        // Worst-served points first, for the lists left empty.
        let mut worst: Vec<usize> = Vec::new();
        let empty = counts.iter().filter(|&&c| c == 0).count();
        if empty > 0 {
            worst = (0..n).collect();
            worst.select_nth_unstable_by(empty.min(n) - 1, |&a, &b| best[a].total_cmp(&best[b]).then(a.cmp(&b)));
            worst.truncate(empty);
            worst.sort_unstable_by(|&a, &b| best[a].total_cmp(&best[b]).then(a.cmp(&b)));
        }
        let mut reseed = worst.into_iter();
        for (l, sum) in sums.chunks_exact_mut(dim).enumerate() {
            if counts[l] == 0
                && let Some(p) = reseed.next()
            {
                sum.copy_from_slice(&points[p * dim..(p + 1) * dim]);
            }
            normalise(sum);
        }
        centroids = sums;
    }
    Ok(centroids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::{ExactIndex, recall};
    use rand::Rng;

    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
        v.chunks_exact_mut(dim).for_each(normalise);
        v
    }

    /// Same items in the same order, scores equal up to float rounding (the batch path sums
    /// through `gemm`, the one-query path through a dot product).
    fn same(got: &[Scored], want: &[Scored]) {
        let ids = |v: &[Scored]| v.iter().map(|s| s.item).collect::<Vec<_>>();
        assert_eq!(ids(got), ids(want));
        for (g, w) in got.iter().zip(want) {
            assert!((g.score - w.score).abs() < 1e-5, "{g:?} vs {w:?}");
        }
    }

    /// `n` unit vectors around `centres` random directions.
    fn clustered(n: usize, dim: usize, centres: usize, seed: u64) -> Vec<f32> {
        let c = unit_vectors(centres, dim, seed);
        let noise = unit_vectors(n, dim, seed + 1);
        let mut v: Vec<f32> = (0..n)
            .flat_map(|i| {
                let centre = &c[(i % centres) * dim..][..dim];
                let e = &noise[i * dim..][..dim];
                centre.iter().zip(e).map(|(a, b)| a + 0.3 * b).collect::<Vec<_>>()
            })
            .collect();
        v.chunks_exact_mut(dim).for_each(normalise);
        v
    }

    #[test]
    fn every_item_lands_in_exactly_one_list_and_builds_are_reproducible() {
        let (n, dim) = (3000, 16);
        let items = clustered(n, dim, 20, 1);
        let cfg = IvfConfig {
            lists: 30,
            ..IvfConfig::default()
        };
        let a = IvfIndex::build(&items, dim, &cfg).unwrap();
        assert_eq!((a.len(), a.lists()), (n, 30));
        assert_eq!(a.list_sizes().iter().sum::<usize>(), n);
        let mut ids = a.ids.clone();
        ids.sort_unstable();
        assert!(ids.iter().enumerate().all(|(i, &id)| id as usize == i));
        // The vectors moved with their ids.
        for (pos, &id) in a.ids.iter().enumerate() {
            assert_eq!(&a.vectors[pos * dim..][..dim], &items[id as usize * dim..][..dim]);
        }
        let b = IvfIndex::build(&items, dim, &cfg).unwrap();
        assert_eq!((a.ids, a.offsets), (b.ids, b.offsets));
        // Automatic list count: 4·√n.
        let auto = IvfIndex::build(&items, dim, &IvfConfig::default()).unwrap();
        assert_eq!(auto.lists(), 219);
    }

    #[test]
    fn probing_every_list_is_the_exact_scan() {
        let (n, dim) = (2000, 24);
        let items = unit_vectors(n, dim, 2);
        let cfg = IvfConfig {
            lists: 40,
            probes: 40,
            ..IvfConfig::default()
        };
        let ivf = IvfIndex::build(&items, dim, &cfg).unwrap();
        let exact = ExactIndex::new(items.clone(), dim).unwrap();
        let queries = unit_vectors(37, dim, 3);
        let want = exact.search_batch(&queries, 50, &[]).unwrap();
        for (g, w) in ivf.search_batch(&queries, 50, &[]).unwrap().iter().zip(&want) {
            same(g, w);
        }
        for (q, w) in queries.chunks_exact(dim).zip(&want) {
            same(&ivf.search(q, 50, &Filter::default()).unwrap(), w);
        }
    }

    #[test]
    fn a_few_probes_find_the_neighbours_of_clustered_items() {
        let (n, dim) = (6000, 32);
        let items = clustered(n, dim, 60, 4);
        let ivf = IvfIndex::build(
            &items,
            dim,
            &IvfConfig {
                lists: 60,
                probes: 4,
                ..IvfConfig::default()
            },
        )
        .unwrap();
        let exact = ExactIndex::new(items.clone(), dim).unwrap();
        // Queries near the items: perturbed copies of every 50th item.
        let queries: Vec<f32> = items
            .chunks_exact(dim)
            .step_by(50)
            .flatten()
            .map(|x| x + 0.01)
            .collect();
        let got = ivf.search_batch(&queries, 20, &[]).unwrap();
        let want = exact.search_batch(&queries, 20, &[]).unwrap();
        let mean: f64 = got.iter().zip(&want).map(|(g, w)| recall(g, w)).sum::<f64>() / want.len() as f64;
        assert!(mean > 0.98, "recall@20 {mean}");
        // The batch and one-at-a-time paths agree.
        for (q, g) in queries.chunks_exact(dim).zip(&got) {
            same(&ivf.search(q, 20, &Filter::default()).unwrap(), g);
        }
        // Scores are the exact inner products, best first.
        for (q, g) in queries.chunks_exact(dim).zip(&got) {
            for s in g {
                let dot = crate::simd::dot(&items[s.item as usize * dim..][..dim], q);
                assert!((s.score - dot).abs() < 1e-5);
            }
            assert!(g.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }

    #[test]
    fn filters_apply_and_k_results_come_back_while_k_items_pass() {
        let (n, dim) = (3000, 16);
        let items = clustered(n, dim, 30, 5);
        let ivf = IvfIndex::build(
            &items,
            dim,
            &IvfConfig {
                lists: 30,
                probes: 2,
                ..IvfConfig::default()
            },
        )
        .unwrap();
        let exact = ExactIndex::new(items.clone(), dim).unwrap();
        // One item in 100 in stock: the two probed lists hold few of them.
        let stock: Vec<bool> = (0..n).map(|i| i % 100 == 7).collect();
        let exclude: Vec<u32> = vec![7, 107, 207];
        let f = Filter {
            in_stock: Some(&stock),
            exclude: &exclude,
            ..Filter::default()
        };
        let q = &items[..dim];
        let got = ivf.search(q, 15, &f).unwrap();
        assert_eq!(got.len(), 15);
        assert!(got.iter().all(|s| stock[s.item as usize] && !exclude.contains(&s.item)));
        let batch = ivf.search_batch(&items[..4 * dim], 15, &[f]).unwrap();
        assert!(batch.iter().all(|b| b.len() == 15));
        same(&batch[0], &got);
        // Fewer pass than k: all of them, as the exact scan finds them.
        same(&ivf.search(q, 100, &f).unwrap(), &exact.search(q, 100, &f).unwrap());
        let all = ivf.search_batch(&items[..4 * dim], 100, &[f]).unwrap();
        for (q, b) in items[..4 * dim].chunks_exact(dim).zip(&all) {
            assert_eq!(b.len(), 27);
            same(b, &exact.search(q, 100, &f).unwrap());
        }
    }

    #[test]
    fn duplicates_degenerate_inputs_and_bad_config() {
        let dim = 8;
        // 100 copies of 3 vectors, 10 lists: empty clusters are reseeded, nothing panics.
        let base = unit_vectors(3, dim, 6);
        let items: Vec<f32> = (0..100).flat_map(|i| base[(i % 3) * dim..][..dim].to_vec()).collect();
        let ivf = IvfIndex::build(
            &items,
            dim,
            &IvfConfig {
                lists: 10,
                probes: 3,
                ..IvfConfig::default()
            },
        )
        .unwrap();
        assert_eq!(ivf.list_sizes().iter().sum::<usize>(), 100);
        assert_eq!(ivf.search(&base[..dim], 40, &Filter::default()).unwrap().len(), 40);
        // More lists than items: one per item at most.
        let few = IvfIndex::build(
            &unit_vectors(5, dim, 7),
            dim,
            &IvfConfig {
                lists: 50,
                ..IvfConfig::default()
            },
        )
        .unwrap();
        assert_eq!(few.lists(), 5);
        // Empty index, empty batch, k = 0.
        let empty = IvfIndex::build(&[], dim, &IvfConfig::default()).unwrap();
        assert!(empty.search(&base[..dim], 5, &Filter::default()).unwrap().is_empty());
        assert_eq!(ivf.search_batch(&[], 5, &[]).unwrap().len(), 0);
        assert!(ivf.search(&base[..dim], 0, &Filter::default()).unwrap().is_empty());
        // Bad input names the field.
        let err = IvfIndex::build(
            &items,
            dim,
            &IvfConfig {
                probes: 0,
                ..IvfConfig::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "ivf.probes"),
            "{err}"
        );
        let err = IvfIndex::build(
            &items,
            dim,
            &IvfConfig {
                spread_weight: f32::NAN,
                ..IvfConfig::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "ivf.spread_weight"),
            "{err}"
        );
        let err = ivf.search(&[0.0; 3], 5, &Filter::default()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "query"),
            "{err}"
        );
        let err = IvfIndex::build(&[f32::NAN; 8], dim, &IvfConfig::default()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "vectors"),
            "{err}"
        );
        let cfg: IvfConfig = serde_json::from_str(r#"{"probes": 8}"#).unwrap();
        assert_eq!((cfg.probes, cfg.lists), (8, 0));
        assert!(serde_json::from_str::<IvfConfig>(r#"{"nprobe": 8}"#).is_err());
    }
}
