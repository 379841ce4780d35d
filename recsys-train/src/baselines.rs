//! Baseline recommenders (popularity, matrix factorisation), evaluated like the two-tower model.
//!
//! Every baseline fits on [`Split::train`] (and, for the per-user parts, [`Split::context`]) and
//! implements [`Scorer`], so [`crate::evaluate::evaluate`] measures them under exactly the same
//! protocol as any other model:
//!
//! * [`Popularity`]: the number of training interactions of each item, the same list for everyone;
//! * [`CategoryPopularity`]: popularity, with the items of the user's favourite categories first;
//! * [`Als`]: implicit-feedback matrix factorisation (Hu, Koren & Volinsky, 2008).

use crate::dataset::ItemTable;
use crate::evaluate::{Scorer, Split, TestCase};
use crate::{Error, Result};
use ahash::AHashMap;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Training interactions per item (items outside `0..num_items` are ignored).
fn item_counts(split: &Split) -> Vec<f32> {
    let mut counts = vec![0u64; split.num_items];
    for x in &split.train {
        if let Some(c) = counts.get_mut(x.item as usize) {
            *c += 1;
        }
    }
    counts.into_iter().map(|c| c as f32).collect()
}

/// Copies `src` into `out`, zero-filling whatever `src` does not cover.
fn fill_from(out: &mut [f32], src: &[f32]) {
    let n = out.len().min(src.len());
    out[..n].copy_from_slice(&src[..n]);
    out[n..].fill(0.0);
}

/// Most popular items first, for everyone: the score of an item is its number of training
/// interactions (all event types).
#[derive(Debug, Clone)]
pub struct Popularity {
    scores: Vec<f32>,
}

impl Popularity {
    /// Counts the training interactions of every item of the split.
    pub fn fit(split: &Split) -> Self {
        Popularity {
            scores: item_counts(split),
        }
    }

    /// The score (training interaction count) of every item.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }
}

impl Scorer for Popularity {
    fn score(&self, _case: &TestCase, out: &mut [f32]) {
        fill_from(out, &self.scores);
    }
}

/// Number of favourite categories [`CategoryPopularity`] promotes.
pub const FAVORITE_CATEGORIES: usize = 3;
const NO_CATEGORY: u32 = u32::MAX;

/// Popularity within the user's favourite categories first, then popularity among the rest.
///
/// An item's score is its training-interaction count normalised to `[0, 1)` (`count / (max + 1)`),
/// plus 1 when its category is one of the [`FAVORITE_CATEGORIES`] categories the user interacted
/// with most often in their context (ties: lower category index). Items of the favourite categories
/// therefore come first, each group by popularity; a user without context gets plain popularity.
#[derive(Debug, Clone)]
pub struct CategoryPopularity {
    popularity: Vec<f32>,
    category: Vec<u32>,
    favorites: Vec<[u32; FAVORITE_CATEGORIES]>,
}

impl CategoryPopularity {
    /// Fits on the split: popularity from `train`, each user's favourite categories from their
    /// `context`. `item_category[item]` is the item's category index (`None` or missing: unknown,
    /// never promoted); [`item_categories`] derives it from an item table.
    pub fn fit(split: &Split, item_category: &[Option<u32>]) -> Self {
        let counts = item_counts(split);
        let max = counts.iter().copied().fold(0.0f32, f32::max);
        let popularity = counts.iter().map(|&c| c / (max + 1.0)).collect();
        let category: Vec<u32> = (0..split.num_items)
            .map(|i| item_category.get(i).copied().flatten().unwrap_or(NO_CATEGORY))
            .collect();
        let mut per_user: AHashMap<(u32, u32), u64> = AHashMap::new();
        for x in &split.context {
            match category.get(x.item as usize) {
                Some(&c) if c != NO_CATEGORY => *per_user.entry((x.user, c)).or_default() += 1,
                _ => {}
            }
        }
        let mut rows: Vec<(u32, u64, u32)> = per_user.into_iter().map(|((u, c), n)| (u, n, c)).collect();
        // By user, then most frequent first, then lower category index.
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut favorites = vec![[NO_CATEGORY; FAVORITE_CATEGORIES]; split.num_users];
        let mut k = 0;
        for (r, &(u, _, c)) in rows.iter().enumerate() {
            if r == 0 || rows[r - 1].0 != u {
                k = 0;
            }
            if let Some(slot) = favorites.get_mut(u as usize).and_then(|f| f.get_mut(k)) {
                *slot = c;
            }
            k += 1;
        }
        CategoryPopularity {
            popularity,
            category,
            favorites,
        }
    }

    /// The favourite categories of a user, most frequent first.
    pub fn favorites(&self, user: u32) -> Vec<u32> {
        self.favorites
            .get(user as usize)
            .map(|f| f.iter().copied().filter(|&c| c != NO_CATEGORY).collect())
            .unwrap_or_default()
    }
}

impl Scorer for CategoryPopularity {
    fn score(&self, case: &TestCase, out: &mut [f32]) {
        fill_from(out, &self.popularity);
        let Some(fav) = self.favorites.get(case.user as usize) else {
            return;
        };
        if fav[0] == NO_CATEGORY {
            return;
        }
        for (o, &c) in out.iter_mut().zip(&self.category) {
            if c != NO_CATEGORY && fav.contains(&c) {
                *o += 1.0;
            }
        }
    }
}

/// Category index per item of an item table (sorted category names, as
/// [`crate::features::catalog_from`] numbers them), for [`CategoryPopularity::fit`].
pub fn item_categories(items: &ItemTable) -> Vec<Option<u32>> {
    crate::features::catalog_from(items).0.category
}

/// Settings of [`Als`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsConfig {
    /// Latent dimensions `k`.
    pub factors: usize,
    /// L2 regularisation `λ` (added to the diagonal of every solve, not scaled by counts).
    pub regularization: f32,
    /// Confidence slope: `c = 1 + alpha * r` for `r` training interactions of a pair.
    pub alpha: f32,
    /// Alternating sweeps (users, then items).
    pub iterations: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

impl Default for AlsConfig {
    fn default() -> Self {
        AlsConfig {
            factors: 64,
            regularization: 0.01,
            alpha: 40.0,
            iterations: 15,
            seed: 42,
        }
    }
}

impl AlsConfig {
    /// Checks the settings: at least one factor, finite non-negative `regularization` and `alpha`.
    pub fn validate(&self) -> Result<()> {
        if self.factors == 0 {
            return Err(Error::arg("factors", self.factors, "must be at least 1"));
        }
        if !(self.regularization.is_finite() && self.regularization >= 0.0) {
            return Err(Error::arg(
                "regularization",
                self.regularization,
                "must be finite and >= 0",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::arg("alpha", self.alpha, "must be finite and >= 0"));
        }
        Ok(())
    }
}

/// Implicit-feedback alternating least squares (Hu, Koren & Volinsky, *Collaborative Filtering for
/// Implicit Feedback Datasets*, ICDM 2008).
///
/// With `r_ui` the number of training interactions of user `u` with item `i` (all event types),
/// the preference is `p_ui = 1` when `r_ui > 0` (else 0) and the confidence is
/// `c_ui = 1 + alpha * r_ui`. Each sweep solves exactly, for every user,
/// `(YᵀY + Yᵀ(C_u − I)Y + λI) x_u = Yᵀ C_u p_u` (the `YᵀY` term is computed once per sweep, so a
/// user costs `O(n_u k² + k³)`) by a Cholesky factorisation in `f64`, then the same for every item.
///
/// After the last sweep every user's vector is solved once more, the same way, from the user's
/// whole [`Split::context`] against the final item factors ("fold-in"): the item factors only ever
/// see `train`, but the user side uses all the history a model may use when scoring (under
/// leave-one-out this adds the validation interaction; under the time split context and train are
/// the same). Users and items without interactions get zero vectors, so they score 0. The fit is
/// deterministic for a seed, whatever the thread count.
#[derive(Debug, Clone)]
pub struct Als {
    /// User factors, row-major `num_users × factors`.
    pub user_factors: Vec<f32>,
    /// Item factors, row-major `num_items × factors`.
    pub item_factors: Vec<f32>,
    factors: usize,
}

/// Sparse rows: `(column, alpha * r)` per row.
struct Rows {
    offsets: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl Rows {
    fn row(&self, r: usize) -> &[(u32, f32)] {
        &self.entries[self.offsets[r]..self.offsets[r + 1]]
    }

    /// Rows from `(row, col, weight)` triples sorted by row.
    fn from_sorted(n: usize, triples: impl Iterator<Item = (u32, u32, f32)>) -> Self {
        let mut offsets = vec![0usize; n + 1];
        let mut entries = Vec::new();
        for (r, c, w) in triples {
            offsets[r as usize + 1] += 1;
            entries.push((c, w));
        }
        for r in 0..n {
            offsets[r + 1] += offsets[r];
        }
        Rows { offsets, entries }
    }
}

/// `(user, item, alpha * r)` for every distinct pair of `xs` inside the matrix, sorted by
/// `(user, item)`, where `r` counts the pair's interactions.
fn pair_weights(xs: &[crate::evaluate::Interaction], nu: usize, ni: usize, alpha: f32) -> Vec<(u32, u32, f32)> {
    let mut pairs: Vec<u64> = xs
        .iter()
        .filter(|x| (x.user as usize) < nu && (x.item as usize) < ni)
        .map(|x| (u64::from(x.user) << 32) | u64::from(x.item))
        .collect();
    pairs.par_sort_unstable();
    let mut triples: Vec<(u32, u32, f32)> = Vec::new();
    for (j, &p) in pairs.iter().enumerate() {
        if j > 0 && pairs[j - 1] == p {
            if let Some(t) = triples.last_mut() {
                t.2 += 1.0;
            }
        } else {
            triples.push(((p >> 32) as u32, p as u32, 1.0));
        }
    }
    for t in &mut triples {
        t.2 *= alpha;
    }
    triples
}

impl Als {
    /// Fits the item factors on `split.train` and the final user factors on `split.context` (see
    /// [`Als`]). An invalid configuration (see [`AlsConfig::validate`]) is not refused here: zero
    /// factors give a model that scores everything 0, and non-positive pivots are clamped so no
    /// NaN can appear.
    pub fn fit(split: &Split, cfg: &AlsConfig) -> Self {
        let k = cfg.factors;
        let (nu, ni) = (split.num_users, split.num_items);
        let triples = pair_weights(&split.train, nu, ni, cfg.alpha);
        let by_user = Rows::from_sorted(nu, triples.iter().copied());
        let mut by_item_triples: Vec<(u32, u32, f32)> = triples.iter().map(|&(u, i, w)| (i, u, w)).collect();
        by_item_triples.sort_unstable_by_key(|t| (t.0, t.1));
        let by_item = Rows::from_sorted(ni, by_item_triples.into_iter());
        drop(triples);

        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let mut normal = || {
            // Box–Muller, N(0, 0.01²).
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            (0.01 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        };
        let mut user_factors: Vec<f32> = (0..nu * k).map(|_| normal()).collect();
        let mut item_factors: Vec<f32> = (0..ni * k).map(|_| normal()).collect();
        if k > 0 {
            let reg = f64::from(cfg.regularization);
            for _ in 0..cfg.iterations {
                solve_side(&mut user_factors, &item_factors, &by_user, k, reg);
                solve_side(&mut item_factors, &user_factors, &by_item, k, reg);
            }
            // Fold-in: each user's vector from their whole context given the final item factors.
            let history = if split.context == split.train {
                by_user
            } else {
                Rows::from_sorted(nu, pair_weights(&split.context, nu, ni, cfg.alpha).into_iter())
            };
            solve_side(&mut user_factors, &item_factors, &history, k, reg);
        }
        Als {
            user_factors,
            item_factors,
            factors: k,
        }
    }

    /// Latent dimensions.
    pub fn factors(&self) -> usize {
        self.factors
    }

    /// The factor vector of a user (empty for an unknown user).
    pub fn user_vector(&self, user: u32) -> &[f32] {
        let k = self.factors;
        let start = user as usize * k;
        self.user_factors.get(start..start + k).unwrap_or(&[])
    }
}

impl Scorer for Als {
    fn score(&self, case: &TestCase, out: &mut [f32]) {
        let k = self.factors;
        let x = self.user_vector(case.user);
        if x.is_empty() {
            out.fill(0.0);
            return;
        }
        let ni = self.item_factors.len() / k;
        for (i, o) in out.iter_mut().enumerate() {
            *o = if i < ni {
                recsys_core::simd::dot(x, &self.item_factors[i * k..(i + 1) * k])
            } else {
                0.0
            };
        }
    }
}

fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    let b = &b[..a.len()];
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `g[a][0..=a] += w * y[a] * y[0..=a]` for every `a`: the lower triangle of `w y yᵀ`.
fn add_outer_lower(g: &mut [f64], y: &[f64], w: f64, k: usize) {
    for a in 0..k {
        let f = w * y[a];
        for (g, &yb) in g[a * k..a * k + a + 1].iter_mut().zip(&y[..=a]) {
            *g += f * yb;
        }
    }
}

/// The lower triangle of `YᵀY` (`k × k`, row-major), summed in fixed chunks in a fixed order so
/// the result does not depend on the thread count.
fn gram(y: &[f32], k: usize) -> Vec<f64> {
    const CHUNK_ROWS: usize = 512;
    let partials: Vec<Vec<f64>> = y
        .par_chunks(CHUNK_ROWS * k)
        .map(|chunk| {
            let mut g = vec![0f64; k * k];
            let mut row = vec![0f64; k];
            for r in chunk.chunks_exact(k) {
                for (d, &s) in row.iter_mut().zip(r) {
                    *d = f64::from(s);
                }
                add_outer_lower(&mut g, &row, 1.0, k);
            }
            g
        })
        .collect();
    let mut g = vec![0f64; k * k];
    for p in partials {
        for (a, b) in g.iter_mut().zip(p) {
            *a += b;
        }
    }
    g
}

/// In-place Cholesky factorisation of the lower triangle of `a` (`k × k`, row-major): afterwards
/// `a`'s lower triangle is `L` with `L Lᵀ = A` (the strict upper triangle is not read). The
/// right-looking (outer-product) order makes every update a contiguous `axpy`, which vectorises;
/// `col` is scratch of length `k`. Non-positive pivots (a matrix that is not positive definite,
/// possible only without regularisation) are clamped to a tiny positive value.
fn cholesky(a: &mut [f64], k: usize, col: &mut [f64]) {
    const MIN_PIVOT: f64 = 1e-12;
    for j in 0..k {
        let d = a[j * k + j];
        let d = if d > MIN_PIVOT { d.sqrt() } else { MIN_PIVOT.sqrt() };
        a[j * k + j] = d;
        let inv = 1.0 / d;
        for i in j + 1..k {
            a[i * k + j] *= inv;
            col[i] = a[i * k + j];
        }
        // Trailing update: A[i][j+1..=i] -= L[i][j] * L[j+1..=i][j].
        for i in j + 1..k {
            let f = col[i];
            let row = &mut a[i * k + j + 1..i * k + i + 1];
            for (x, &c) in row.iter_mut().zip(&col[j + 1..=i]) {
                *x -= f * c;
            }
        }
    }
}

/// Solves `L Lᵀ x = b` in place (`b` becomes `x`) with `L` from [`cholesky`].
fn cholesky_solve(l: &[f64], b: &mut [f64], k: usize) {
    for i in 0..k {
        let s = b[i] - dot_f64(&l[i * k..i * k + i], &b[..i]);
        b[i] = s / l[i * k + i];
    }
    for i in (0..k).rev() {
        let xi = b[i] / l[i * k + i];
        b[i] = xi;
        for (bj, &lij) in b[..i].iter_mut().zip(&l[i * k..i * k + i]) {
            *bj -= lij * xi;
        }
    }
}

struct SolveScratch {
    a: Vec<f64>,
    b: Vec<f64>,
    y: Vec<f64>,
    col: Vec<f64>,
}

/// One half-sweep: every row `x_u` of `x` from the fixed factors `y` and its sparse row.
fn solve_side(x: &mut [f32], y: &[f32], rows: &Rows, k: usize, reg: f64) {
    let g = gram(y, k);
    x.par_chunks_mut(k).enumerate().for_each_init(
        || SolveScratch {
            a: vec![0.0; k * k],
            b: vec![0.0; k],
            y: vec![0.0; k],
            col: vec![0.0; k],
        },
        |s, (u, xu)| {
            let row = rows.row(u);
            if row.is_empty() {
                xu.fill(0.0);
                return;
            }
            s.a.copy_from_slice(&g);
            s.b.fill(0.0);
            for &(j, w) in row {
                let yj = &y[j as usize * k..(j as usize + 1) * k];
                for (d, &v) in s.y.iter_mut().zip(yj) {
                    *d = f64::from(v);
                }
                let w = f64::from(w);
                // (C_u − I) term: weight c − 1 = alpha * r; right-hand side: c * y_j.
                add_outer_lower(&mut s.a, &s.y, w, k);
                for (b, &v) in s.b.iter_mut().zip(&s.y) {
                    *b += (1.0 + w) * v;
                }
            }
            for d in 0..k {
                s.a[d * k + d] += reg;
            }
            cholesky(&mut s.a, k, &mut s.col);
            cholesky_solve(&s.a, &mut s.b, k);
            for (o, &v) in xu.iter_mut().zip(&s.b) {
                *o = v as f32;
            }
        },
    );
}
