//! Stage 2 of the online pipeline: re-rank the retrieval candidates (e.g. 500 → 100) with a small
//! learned model.
//!
//! Each candidate gets a fixed vector of [`RerankFeatures`] built from the fresh user embedding, the
//! retrieval score, item popularity/trending, price fit and the current session; a [`Reranker`]
//! (standardisation + logistic regression, fitted offline by `recsys_train::reranker::fit`) turns it
//! into a click probability, and [`Reranker::rerank`] keeps the best `keep` candidates.
//!
//! Everything here is pure (no I/O apart from the explicit [`Reranker::save`] / [`Reranker::load`]),
//! deterministic and allocation-light: scoring a candidate is a dozen multiply-adds.
//!
//! ```
//! use recsys_core::rerank::{RerankFeatures, Reranker};
//! use recsys_core::Scored;
//!
//! let f = |similarity: f32| RerankFeatures { similarity, ..Default::default() };
//! // A model as training fits it: weights on standardised features.
//! let model = Reranker { weights: [3.0, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], ..Default::default() };
//! let candidates = [Scored { item: 7, score: 0.5 }, Scored { item: 3, score: 0.9 }];
//! let ranked = model.rerank(&candidates, &[f(0.9), f(0.1)], 10)?;
//! assert_eq!(ranked[0].item, 7);
//! # Ok::<(), recsys_core::Error>(())
//! ```

use crate::features::{ItemCatalog, ItemFeatures};
use crate::schema::EventType;
use crate::store::Scored;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::path::Path;

/// Number of re-ranking features (the length of [`RerankFeatures::to_array`]).
pub const NUM_FEATURES: usize = 8;

/// Names of the features, in [`RerankFeatures::to_array`] order (for logs and model reports).
pub const FEATURE_NAMES: [&str; NUM_FEATURES] = [
    "similarity",
    "retrieval_score",
    "log_popularity",
    "log_trending",
    "price_fit",
    "price_unknown",
    "session_category_share",
    "category_recency",
];

/// The re-ranking features of one candidate for one request.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RerankFeatures {
    /// Dot product of the fresh (session-aware) user embedding and the item embedding.
    pub similarity: f32,
    /// The pre-computed retrieval score of the candidate ([`Scored::score`]).
    pub retrieval_score: f32,
    /// `ln(1 + popularity_score)` of the item.
    pub popularity: f32,
    /// `ln(1 + trending_score_1h)` of the item.
    pub trending: f32,
    /// `-|ln(price / avg_order_value)|`: 0 is a perfect fit, and also the value when unknown.
    pub price_fit: f32,
    /// 1 when the price or the user's average order value is unknown, else 0.
    pub price_unknown: f32,
    /// Share of the current session's events that fall in the item's category (0 when none).
    pub session_category_share: f32,
    /// `2^(-age / half_life)` of the user's last interaction with the item's category (1 = just now,
    /// 0 = never or unknown category).
    pub category_recency: f32,
}

impl RerankFeatures {
    /// The features as a vector, in [`FEATURE_NAMES`] order.
    pub fn to_array(&self) -> [f32; NUM_FEATURES] {
        [
            self.similarity,
            self.retrieval_score,
            self.popularity,
            self.trending,
            self.price_fit,
            self.price_unknown,
            self.session_category_share,
            self.category_recency,
        ]
    }

    /// The inverse of [`RerankFeatures::to_array`].
    pub fn from_array(a: [f32; NUM_FEATURES]) -> Self {
        RerankFeatures {
            similarity: a[0],
            retrieval_score: a[1],
            popularity: a[2],
            trending: a[3],
            price_fit: a[4],
            price_unknown: a[5],
            session_category_share: a[6],
            category_recency: a[7],
        }
    }

    /// Computes the features of one candidate; the same function serves training-example
    /// generation and online serving, so the two cannot skew.
    ///
    /// `item_embedding` must have the user embedding's dimension; `price` is the item's current price.
    pub fn compute(
        candidate: Scored,
        item_embedding: &[f32],
        item: &ItemFeatures,
        price: Option<f64>,
        user: &RerankUser<'_>,
    ) -> Result<Self> {
        if item_embedding.len() != user.embedding.len() {
            return Err(Error::invalid(
                "item_embedding",
                item_embedding.len(),
                format!("dimension must equal the user embedding's {}", user.embedding.len()),
            ));
        }
        Ok(Self::with_similarity(
            candidate,
            dot(user.embedding, item_embedding),
            item,
            price,
            user,
        ))
    }

    /// [`RerankFeatures::compute`] with the user-item similarity already computed, e.g. from
    /// [`crate::retrieval::QuantizedVectors::dot`] (what serving and the re-ranker's training
    /// both use).
    pub fn with_similarity(
        candidate: Scored,
        similarity: f32,
        item: &ItemFeatures,
        price: Option<f64>,
        user: &RerankUser<'_>,
    ) -> Self {
        Self::from_parts(candidate, similarity, &RerankItem::new(item, price), &user.prepare())
    }

    /// [`RerankFeatures::with_similarity`] from the item and user sides computed beforehand: the
    /// per-candidate part of a request, which reads one 16-byte [`RerankItem`] and takes no
    /// logarithm or exponential. [`RerankFeatures::with_similarity`] goes through this function,
    /// so both give the same features.
    pub fn from_parts(candidate: Scored, similarity: f32, item: &RerankItem, user: &PreparedUser) -> Self {
        let (price_fit, price_unknown) = match user.ln_avg_order_value {
            Some(ln_aov) if !item.ln_price.is_nan() => (-(item.ln_price - ln_aov).abs(), 0.0),
            _ => (0.0, 1.0),
        };
        let (session_category_share, category_recency) = user.category(item.category);
        RerankFeatures {
            similarity,
            retrieval_score: candidate.score,
            popularity: item.popularity,
            trending: item.trending,
            price_fit,
            price_unknown,
            session_category_share,
            category_recency,
        }
    }
}

/// [`RerankItem::category`] of an item without a category.
pub const NO_CATEGORY: u32 = u32::MAX;

/// The item side of [`RerankFeatures`], computed once per item (serving keeps one per item in a
/// snapshot refreshed in the background) instead of once per candidate: the logarithms taken and
/// the price folded in. 16 bytes, aligned, so a candidate's record is one cache line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C, align(16))]
pub struct RerankItem {
    /// `ln(1 + popularity_score)` ([`RerankFeatures::popularity`]).
    pub popularity: f32,
    /// `ln(1 + trending_score_1h)` ([`RerankFeatures::trending`]).
    pub trending: f32,
    /// `ln(price)`; NaN when the price is unknown, not positive or not finite.
    pub ln_price: f32,
    /// Category index, [`NO_CATEGORY`] when unknown.
    pub category: u32,
}

impl RerankItem {
    /// The record of an item from its features and current price (negative scores count as 0).
    pub fn new(item: &ItemFeatures, price: Option<f64>) -> Self {
        RerankItem {
            popularity: item.popularity_score.max(0.0).ln_1p() as f32,
            trending: item.trending_score_1h.max(0.0).ln_1p() as f32,
            ln_price: match price {
                Some(p) if p > 0.0 && p.is_finite() => p.ln() as f32,
                _ => f32::NAN,
            },
            category: item.category.unwrap_or(NO_CATEGORY),
        }
    }
}

/// The user side of [`RerankFeatures`] that does not depend on the candidate, computed once per
/// request by [`RerankUser::prepare`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreparedUser {
    /// `ln(avg_order_value)`; `None` when unknown, not positive or not finite.
    ln_avg_order_value: Option<f32>,
    /// (category, session share, recency) for every category of the session or the history.
    categories: Vec<(u32, f32, f32)>,
}

impl PreparedUser {
    /// ([`RerankFeatures::session_category_share`], [`RerankFeatures::category_recency`]) of an
    /// item in category `category` (zeros for [`NO_CATEGORY`] and categories the user never saw).
    fn category(&self, category: u32) -> (f32, f32) {
        // `prepare` never lists NO_CATEGORY.
        self.categories
            .iter()
            .find(|e| e.0 == category)
            .map_or((0.0, 0.0), |e| (e.1, e.2))
    }
}

/// The per-request user side of [`RerankFeatures::compute`], built once per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RerankUser<'a> {
    /// The fresh user embedding (the user tower on the live session).
    pub embedding: &'a [f32],
    /// The user's average order value ([`crate::features::UserFeatures::avg_order_value`]).
    pub avg_order_value: Option<f64>,
    /// The category of every event of the current session (repeats count).
    pub session_categories: &'a [u32],
    /// (category, time of the user's last interaction with it), see [`last_category_times`].
    pub last_category_ms: &'a [(u32, i64)],
    /// The request time (UTC ms).
    pub now_ms: i64,
    /// Half-life of [`RerankFeatures::category_recency`].
    pub recency_half_life_ms: i64,
}

impl RerankUser<'_> {
    /// The part of the features that is the same for every candidate of this request: the
    /// logarithm of the average order value, and the session share and recency of each category
    /// the user touched (a category's recency from its first entry in `last_category_ms`).
    pub fn prepare(&self) -> PreparedUser {
        let ln_avg_order_value = self
            .avg_order_value
            .filter(|aov| *aov > 0.0 && aov.is_finite())
            .map(|aov| aov.ln() as f32);
        let mut categories: Vec<(u32, f32, f32)> = Vec::new();
        let touched = self
            .session_categories
            .iter()
            .chain(self.last_category_ms.iter().map(|e| &e.0));
        for &c in touched {
            if c == NO_CATEGORY || categories.iter().any(|e| e.0 == c) {
                continue;
            }
            let share = if self.session_categories.is_empty() {
                0.0
            } else {
                let n = self.session_categories.iter().filter(|&&s| s == c).count();
                n as f32 / self.session_categories.len() as f32
            };
            let recency = match self.last_category_ms.iter().find(|(k, _)| *k == c) {
                Some(&(_, ts)) if self.recency_half_life_ms > 0 => {
                    let age = (self.now_ms - ts).max(0) as f64;
                    (-age / self.recency_half_life_ms as f64).exp2() as f32
                }
                _ => 0.0,
            };
            categories.push((c, share, recency));
        }
        PreparedUser {
            ln_avg_order_value,
            categories,
        }
    }
}

/// The time of the user's last interaction per category, from a newest-first history
/// ([`crate::features::UserFeatures::recent`]); items without a category are skipped.
pub fn last_category_times(recent: &[(u32, EventType, i64)], catalog: &ItemCatalog) -> Vec<(u32, i64)> {
    let mut out: Vec<(u32, i64)> = Vec::new();
    for &(item, _, ts) in recent {
        if let Some(c) = catalog.category.get(item as usize).copied().flatten() {
            match out.iter_mut().find(|(k, _)| *k == c) {
                Some(e) => e.1 = e.1.max(ts),
                None => out.push((c, ts)),
            }
        }
    }
    out
}

/// Inner product of two equally long vectors (the shorter length is used otherwise); see
/// [`crate::simd::dot`].
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::simd::dot(a, b)
}

/// One re-ranked candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// Item index (as in [`Scored::item`]).
    pub item: u32,
    /// Ranking score, higher is better (the re-ranker's click probability, possibly boosted later).
    pub score: f32,
    /// Position of the candidate in the input list (to find its features again).
    pub candidate: u32,
}

/// The total order of every ranked list: score descending (NaN last), then item ascending, then
/// input position ascending.
pub fn rank_order(a: &Ranked, b: &Ranked) -> Ordering {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    key(b.score)
        .total_cmp(&key(a.score))
        .then(a.item.cmp(&b.item))
        .then(a.candidate.cmp(&b.candidate))
}

/// Sorts `list` by [`rank_order`] and keeps the best `keep` (partial selection: O(n + keep log keep)).
pub fn top_in_place(list: &mut Vec<Ranked>, keep: usize) {
    if keep == 0 {
        list.clear();
        return;
    }
    if list.len() > keep {
        list.select_nth_unstable_by(keep - 1, rank_order);
        list.truncate(keep);
    }
    list.sort_unstable_by(rank_order);
}

/// Logistic regression over standardised [`RerankFeatures`]:
/// `p(click) = σ(bias + Σ weights[i] · (x[i] - means[i]) / stds[i])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reranker {
    /// One weight per feature, in [`FEATURE_NAMES`] order (on standardised features).
    pub weights: [f32; NUM_FEATURES],
    /// Intercept.
    pub bias: f32,
    /// Feature means subtracted before weighting.
    pub means: [f32; NUM_FEATURES],
    /// Feature standard deviations divided by before weighting (> 0).
    pub stds: [f32; NUM_FEATURES],
}

impl Default for Reranker {
    /// A hand-set **fallback only**, for a deployment that has no fitted re-ranker yet: it ranks
    /// mostly by the two embedding scores, nudged by popularity, price fit and the session.
    /// Production models are fitted at train time (`recsys_train::reranker::fit`).
    fn default() -> Self {
        Reranker {
            weights: [1.0, 1.0, 0.1, 0.1, 0.3, 0.0, 0.5, 0.3],
            bias: 0.0,
            means: [0.0; NUM_FEATURES],
            stds: [1.0; NUM_FEATURES],
        }
    }
}

impl Reranker {
    /// Refuses non-finite weights, bias or means and non-positive or non-finite stds.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: &[f32], positive: bool| -> Result<()> {
            for (i, x) in v.iter().enumerate() {
                if !x.is_finite() || (positive && *x <= 0.0) {
                    let why = if positive {
                        "must be finite and > 0"
                    } else {
                        "must be finite"
                    };
                    return Err(Error::invalid(format!("{name}[{i}] ({})", FEATURE_NAMES[i]), x, why));
                }
            }
            Ok(())
        };
        check("weights", &self.weights, false)?;
        check("means", &self.means, false)?;
        check("stds", &self.stds, true)?;
        if !self.bias.is_finite() {
            return Err(Error::invalid("bias", self.bias, "must be finite"));
        }
        Ok(())
    }

    /// The logit `bias + Σ w·(x-m)/s` (monotone in [`Reranker::score`], one `exp` cheaper).
    pub fn logit(&self, features: &RerankFeatures) -> f32 {
        let x = features.to_array();
        let terms = x.iter().zip(&self.weights).zip(self.means.iter().zip(&self.stds));
        terms.fold(self.bias, |z, ((x, w), (m, s))| z + w * (x - m) / s)
    }

    /// The predicted click probability of a candidate, in (0, 1).
    pub fn score(&self, features: &RerankFeatures) -> f32 {
        sigmoid(self.logit(features))
    }

    /// Scores every candidate and returns the best `keep`, sorted by [`rank_order`] (ties: lower item
    /// first). `features[i]` belongs to `candidates[i]`.
    pub fn rerank(&self, candidates: &[Scored], features: &[RerankFeatures], keep: usize) -> Result<Vec<Ranked>> {
        let mut out = self.score_all(candidates, features)?;
        top_in_place(&mut out, keep);
        Ok(out)
    }

    /// Every candidate with its re-ranker score, in input order (unsorted): for callers that
    /// filter before selecting the best (sorting 500 candidates to keep 100 would be wasted).
    pub fn score_all(&self, candidates: &[Scored], features: &[RerankFeatures]) -> Result<Vec<Ranked>> {
        if candidates.len() != features.len() {
            return Err(Error::invalid(
                "features",
                features.len(),
                format!("need one feature row per candidate ({})", candidates.len()),
            ));
        }
        Ok(candidates
            .iter()
            .zip(features)
            .enumerate()
            .map(|(i, (c, f))| Ranked {
                item: c.item,
                score: self.score(f),
                candidate: i as u32,
            })
            .collect())
    }

    /// The model as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Reranker always serialises")
    }

    /// Parses and validates a model written by [`Reranker::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        let m: Reranker = serde_json::from_str(json).map_err(|e| Error::corrupt("re-ranker JSON", e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Writes the model as JSON to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        std::fs::write(path.as_ref(), self.to_json()).map_err(Error::io(path.as_ref()))
    }

    /// Reads a model saved by [`Reranker::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let text = std::fs::read_to_string(path.as_ref()).map_err(Error::io(path.as_ref()))?;
        Reranker::from_json(&text)
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Area under the ROC curve of `scores` against `labels` (ties count half); 0.5 when a class is missing.
pub fn auc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos) = (0f64, 0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg_rank;
                pos += 1.0;
            }
        }
        i = j + 1;
    }
    let neg = idx.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerank_orders_by_score_then_item_and_keeps() {
        let m = Reranker::default();
        let f = |s: f32| RerankFeatures {
            similarity: s,
            ..Default::default()
        };
        let cands = [
            Scored { item: 9, score: 0.0 },
            Scored { item: 4, score: 0.0 },
            Scored { item: 2, score: 0.0 },
            Scored { item: 7, score: 0.0 },
        ];
        let feats = [f(0.5), f(0.9), f(0.5), f(0.1)];
        let out = m.rerank(&cands, &feats, 3).unwrap();
        let items: Vec<u32> = out.iter().map(|r| r.item).collect();
        assert_eq!(items, vec![4, 2, 9]);
        assert_eq!(out[0].candidate, 1);
        assert!(m.rerank(&cands, &feats[..2], 3).is_err());
        assert!(m.rerank(&cands, &feats, 0).unwrap().is_empty());
        assert_eq!(m.rerank(&cands, &feats, 10).unwrap().len(), 4);
    }

    #[test]
    fn serde_round_trip_and_nan_weights_refused() {
        let m = Reranker {
            weights: [2.5, 0.25, -0.5, 0.125, 0.0, 1.0, 0.75, -0.25],
            bias: -1.5,
            means: [0.1; NUM_FEATURES],
            stds: [0.5; NUM_FEATURES],
        };
        let back = Reranker::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reranker.json");
        m.save(&path).unwrap();
        assert_eq!(Reranker::load(&path).unwrap(), m);

        let mut bad = Reranker::default();
        bad.weights[3] = f32::NAN;
        let err = bad.validate().unwrap_err();
        assert!(err.to_string().contains("weights[3] (log_trending)") && err.to_string().contains("NaN"));
        let mut bad = Reranker::default();
        bad.stds[0] = 0.0;
        assert!(bad.validate().unwrap_err().to_string().contains("stds[0]"));
        assert!(matches!(Reranker::from_json("{}"), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn compute_features_by_hand() {
        let catalog = ItemCatalog::new(vec![Some(1), Some(2), None], vec![None; 3], vec![None; 3]);
        let recent = [
            (0, EventType::View, 5_000),
            (1, EventType::View, 4_000),
            (0, EventType::Click, 3_000),
            (2, EventType::View, 2_000),
        ];
        let last = last_category_times(&recent, &catalog);
        assert_eq!(last, vec![(1, 5_000), (2, 4_000)]);
        let user = RerankUser {
            embedding: &[1.0, 2.0],
            avg_order_value: Some(100.0),
            session_categories: &[1, 1, 2, 1],
            last_category_ms: &last,
            now_ms: 7_000,
            recency_half_life_ms: 2_000,
        };
        let item = ItemFeatures {
            item: 0,
            popularity_score: std::f64::consts::E - 1.0,
            avg_rating: None,
            price_bucket: None,
            trending_score_1h: 0.0,
            category: Some(1),
        };
        let f =
            RerankFeatures::compute(Scored { item: 0, score: 0.25 }, &[0.5, 0.5], &item, Some(50.0), &user).unwrap();
        assert_eq!(f.similarity, 1.5);
        assert_eq!(f.retrieval_score, 0.25);
        assert!((f.popularity - 1.0).abs() < 1e-6);
        assert_eq!(f.trending, 0.0);
        assert!((f.price_fit + std::f32::consts::LN_2).abs() < 1e-6);
        assert_eq!(f.price_unknown, 0.0);
        assert_eq!(f.session_category_share, 0.75);
        assert_eq!(f.category_recency, 0.5);
        let none = ItemFeatures { category: None, ..item };
        let g = RerankFeatures::compute(Scored { item: 2, score: 0.0 }, &[0.0, 0.0], &none, None, &user).unwrap();
        assert_eq!(
            (
                g.price_fit,
                g.price_unknown,
                g.session_category_share,
                g.category_recency
            ),
            (0.0, 1.0, 0.0, 0.0)
        );
        assert!(RerankFeatures::compute(Scored { item: 0, score: 0.0 }, &[1.0], &item, None, &user).is_err());
        assert_eq!(RerankFeatures::from_array(f.to_array()), f);
    }

    /// The per-candidate formulas of the features, written out in f64 as they read in the docs.
    fn reference(
        c: Scored,
        similarity: f32,
        item: &ItemFeatures,
        price: Option<f64>,
        u: &RerankUser,
    ) -> RerankFeatures {
        let (price_fit, price_unknown) = match (price, u.avg_order_value) {
            (Some(p), Some(a)) if p > 0.0 && a > 0.0 && p.is_finite() && a.is_finite() => {
                (-((p / a).ln().abs()) as f32, 0.0)
            }
            _ => (0.0, 1.0),
        };
        let (share, recency) = match item.category {
            None => (0.0, 0.0),
            Some(cat) => {
                let n = u.session_categories.iter().filter(|&&s| s == cat).count();
                let share = if n == 0 {
                    0.0
                } else {
                    n as f32 / u.session_categories.len() as f32
                };
                let recency = u.last_category_ms.iter().find(|e| e.0 == cat).map_or(0.0, |&(_, ts)| {
                    (-((u.now_ms - ts).max(0) as f64) / u.recency_half_life_ms as f64).exp2() as f32
                });
                (share, recency)
            }
        };
        RerankFeatures {
            similarity,
            retrieval_score: c.score,
            popularity: item.popularity_score.max(0.0).ln_1p() as f32,
            trending: item.trending_score_1h.max(0.0).ln_1p() as f32,
            price_fit,
            price_unknown,
            session_category_share: share,
            category_recency: recency,
        }
    }

    #[test]
    fn prepared_user_and_item_records_give_the_per_candidate_formulas() {
        // Categories only in the session (4), only in the history (7), in both (1), in neither (9),
        // none; prices unknown, zero, negative, infinite, cheap and dear; popularity negative.
        let last = [(1u32, 9_000i64), (7, 1_000), (1, 2_000)];
        let sessions: [&[u32]; 2] = [&[4, 1, 4, 4], &[]];
        for session in sessions {
            for aov in [None, Some(80.0), Some(0.0), Some(f64::NAN)] {
                let user = RerankUser {
                    embedding: &[1.0],
                    avg_order_value: aov,
                    session_categories: session,
                    last_category_ms: &last,
                    now_ms: 10_000,
                    recency_half_life_ms: 3_000,
                };
                let prepared = user.prepare();
                for category in [Some(1), Some(4), Some(7), Some(9), None] {
                    for price in [
                        None,
                        Some(0.0),
                        Some(-5.0),
                        Some(f64::INFINITY),
                        Some(3.5),
                        Some(2_400.0),
                    ] {
                        let item = ItemFeatures {
                            item: 3,
                            popularity_score: 41.5,
                            avg_rating: None,
                            price_bucket: None,
                            trending_score_1h: -2.0,
                            category,
                        };
                        let c = Scored { item: 3, score: 0.7 };
                        let want = reference(c, 0.25, &item, price, &user);
                        let got = RerankFeatures::from_parts(c, 0.25, &RerankItem::new(&item, price), &prepared);
                        for (k, (g, w)) in got.to_array().iter().zip(want.to_array()).enumerate() {
                            assert!(
                                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                                "{}: {g} vs {w} ({category:?}, {price:?}, {aov:?}, {session:?})",
                                FEATURE_NAMES[k]
                            );
                        }
                        assert_eq!(got, RerankFeatures::with_similarity(c, 0.25, &item, price, &user));
                    }
                }
            }
        }
        // By hand: category 1's recency from its first entry (1 s old, half-life 3 s), its share 1/4.
        let user = RerankUser {
            embedding: &[1.0],
            avg_order_value: None,
            session_categories: sessions[0],
            last_category_ms: &last,
            now_ms: 10_000,
            recency_half_life_ms: 3_000,
        };
        let cat1 = RerankItem {
            category: 1,
            ..Default::default()
        };
        let f = RerankFeatures::from_parts(Scored { item: 0, score: 0.0 }, 0.0, &cat1, &user.prepare());
        assert_eq!(f.session_category_share, 0.25);
        assert!((f.category_recency - (-1.0f64 / 3.0).exp2() as f32).abs() < 1e-7);
        assert_eq!(std::mem::size_of::<RerankItem>(), 16);
        assert_eq!(std::mem::align_of::<RerankItem>(), 16);
    }

    #[test]
    fn auc_by_hand() {
        assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), 0.75);
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
    }
}
