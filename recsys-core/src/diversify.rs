//! Stage 4 of the online pipeline: diversify a ranked list before it is cut to the top-k.
//!
//! Two independent, configurable tools ([`DiversityConfig`]):
//!
//! - **per-category caps**: at most `max_per_category` items of one category in the top-k (default 4,
//!   so a top-20 spans at least 5 categories when the candidates allow it); items of unknown category
//!   are never capped;
//! - **MMR** (maximal marginal relevance): position by position, pick the remaining item maximising
//!   `λ · score − (1 − λ) · max similarity to the items already picked`. Similarity comes from item
//!   embeddings (dot product) or, without embeddings, category equality (1 / 0). MMR is **off by
//!   default** (`mmr_lambda = 1`): the re-ranker's order is the learned one and the caps already give
//!   cheap, predictable diversity; MMR costs `k · n` similarity evaluations (about 20 × 100 dot
//!   products) and is enabled per deployment once an A/B test shows it pays (0.7 is a usual start).
//!   The score and the similarity should be on comparable scales (re-ranker probabilities in
//!   [0, 1] and cosine similarities of normalised embeddings are).
//!
//! Ties keep the input order (earlier wins), so the output is deterministic.

use crate::rerank::Ranked;
use crate::retrieval::QuantizedVectors;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Diversification settings (a section of the serving config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiversityConfig {
    /// MMR trade-off in [0, 1]: 1 = pure relevance (MMR off, the default), 0 = pure novelty.
    pub mmr_lambda: f32,
    /// Most items of one category in the top-k (>= 1); `None` = no cap. Default 4.
    pub max_per_category: Option<i64>,
    /// When the caps leave fewer than k items, fill the remaining places with the best capped items
    /// (caps become soft). Default false: caps are strict and the list may come back shorter.
    pub fill_over_cap: bool,
}

impl Default for DiversityConfig {
    fn default() -> Self {
        DiversityConfig {
            mmr_lambda: 1.0,
            max_per_category: Some(4),
            fill_over_cap: false,
        }
    }
}

impl DiversityConfig {
    /// Refuses `mmr_lambda` outside [0, 1] (or NaN) and a cap below 1, naming the field and value.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.mmr_lambda) {
            return Err(Error::invalid("mmr_lambda", self.mmr_lambda, "must be in [0, 1]"));
        }
        if let Some(c) = self.max_per_category
            && !(1..=i64::from(u32::MAX)).contains(&c)
        {
            return Err(Error::invalid(
                "max_per_category",
                c,
                "must be at least 1 (leave it out for no cap)",
            ));
        }
        Ok(())
    }

    /// Parses and validates a JSON config.
    pub fn from_json(json: &str) -> Result<Self> {
        let c: DiversityConfig =
            serde_json::from_str(json).map_err(|e| Error::invalid("diversity config", json, e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Whether MMR re-ordering is on (`mmr_lambda < 1`).
    pub fn mmr_enabled(&self) -> bool {
        self.mmr_lambda < 1.0
    }
}

/// Where MMR's item-item similarity comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Similarity<'a> {
    /// Row `item` of `vectors` (`dim` floats per item, e.g. the item tower's L2-normalised output);
    /// similarity is the dot product, 0 for an item without a row.
    Embeddings {
        /// Item-major matrix, `dim` floats per item.
        vectors: &'a [f32],
        /// Embedding size.
        dim: usize,
    },
    /// The dot product of the two items' 8-bit codes ([`QuantizedVectors::similarity`]), 0 for
    /// an item outside the table: a quarter of the memory traffic of [`Similarity::Embeddings`].
    Quantized(&'a QuantizedVectors),
    /// 1 when both items have the same known category, else 0.
    Category,
}

impl Similarity<'_> {
    /// Similarity of items `a` and `b` (`categories` indexed by item, used by [`Similarity::Category`]).
    pub fn between(&self, a: u32, b: u32, categories: &[Option<u32>]) -> f32 {
        match *self {
            Similarity::Embeddings { vectors, dim } => {
                let row = |i: u32| {
                    let start = (i as usize).checked_mul(dim)?;
                    vectors.get(start..start.checked_add(dim)?)
                };
                match (row(a), row(b)) {
                    (Some(x), Some(y)) => crate::rerank::dot(x, y),
                    _ => 0.0,
                }
            }
            Similarity::Quantized(q) => q.similarity(a, b).unwrap_or(0.0),
            Similarity::Category => match (category_of(categories, a), category_of(categories, b)) {
                (Some(x), Some(y)) if x == y => 1.0,
                _ => 0.0,
            },
        }
    }
}

pub(crate) fn category_of(categories: &[Option<u32>], item: u32) -> Option<u32> {
    categories.get(item as usize).copied().flatten()
}

/// Re-orders and cuts `ranked` (best first) to at most `k` items following `config`: MMR when enabled,
/// then per-category caps (strict unless `fill_over_cap`). With MMR off this is one O(n) pass.
///
/// Fewer than `k` come back when the input is shorter, or when strict caps exclude the rest; never an
/// empty list from a non-empty input with `k > 0` (a cap is at least 1).
pub fn diversify(
    ranked: &[Ranked],
    k: usize,
    config: &DiversityConfig,
    categories: &[Option<u32>],
    similarity: Similarity<'_>,
) -> Result<Vec<Ranked>> {
    config.validate()?;
    let k = k.min(ranked.len());
    let cap = config.max_per_category.map(|c| c as u32);
    let mut counts: Vec<(u32, u32)> = Vec::new();
    let mut taken = vec![false; ranked.len()];
    let mut out = Vec::with_capacity(k);
    // Whether `item` may still go in under the caps (without counting it).
    let allowed = |counts: &Vec<(u32, u32)>, item: u32| match (cap, category_of(categories, item)) {
        (Some(cap), Some(c)) => counts.iter().find(|e| e.0 == c).is_none_or(|e| e.1 < cap),
        _ => true,
    };
    let count = |counts: &mut Vec<(u32, u32)>, item: u32| {
        if let Some(c) = category_of(categories, item) {
            match counts.iter_mut().find(|e| e.0 == c) {
                Some(e) => e.1 += 1,
                None => counts.push((c, 1)),
            }
        }
    };
    if !config.mmr_enabled() {
        for (i, r) in ranked.iter().enumerate() {
            if out.len() == k {
                break;
            }
            if allowed(&counts, r.item) {
                count(&mut counts, r.item);
                taken[i] = true;
                out.push(*r);
            }
        }
    } else {
        let lambda = config.mmr_lambda;
        // Highest similarity of each candidate to the picked items (−∞: nothing picked yet).
        let mut max_sim = vec![f32::NEG_INFINITY; ranked.len()];
        while out.len() < k {
            let mut best: Option<(usize, f32)> = None;
            for (i, r) in ranked.iter().enumerate() {
                if taken[i] || !allowed(&counts, r.item) {
                    continue;
                }
                let score = if r.score.is_nan() { f32::NEG_INFINITY } else { r.score };
                let penalty = if out.is_empty() { 0.0 } else { max_sim[i] };
                let value = lambda * score - (1.0 - lambda) * penalty;
                if best.is_none_or(|(_, v)| value > v) {
                    best = Some((i, value));
                }
            }
            let Some((pick, _)) = best else { break };
            taken[pick] = true;
            count(&mut counts, ranked[pick].item);
            out.push(ranked[pick]);
            for (j, r) in ranked.iter().enumerate() {
                if !taken[j] {
                    let s = similarity.between(ranked[pick].item, r.item, categories);
                    max_sim[j] = max_sim[j].max(s);
                }
            }
        }
    }
    if config.fill_over_cap && out.len() < k {
        for (i, r) in ranked.iter().enumerate() {
            if out.len() == k {
                break;
            }
            if !taken[i] {
                out.push(*r);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(scores: &[(u32, f32)]) -> Vec<Ranked> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &(item, score))| Ranked {
                item,
                score,
                candidate: i as u32,
            })
            .collect()
    }

    fn items(v: &[Ranked]) -> Vec<u32> {
        v.iter().map(|r| r.item).collect()
    }

    #[test]
    fn caps_keep_rank_order_and_limit_each_category() {
        // Items 0..8, categories: 0 0 0 1 0 1 None 2.
        let cats = [Some(0), Some(0), Some(0), Some(1), Some(0), Some(1), None, Some(2)];
        let list = ranked(&[
            (0, 0.9),
            (1, 0.8),
            (2, 0.7),
            (3, 0.6),
            (4, 0.5),
            (5, 0.4),
            (6, 0.3),
            (7, 0.2),
        ]);
        let cfg = DiversityConfig {
            max_per_category: Some(2),
            ..Default::default()
        };
        let out = diversify(&list, 5, &cfg, &cats, Similarity::Category).unwrap();
        assert_eq!(items(&out), vec![0, 1, 3, 5, 6]);
        let out = diversify(&list, 10, &cfg, &cats, Similarity::Category).unwrap();
        assert_eq!(items(&out), vec![0, 1, 3, 5, 6, 7]);
        let soft = DiversityConfig {
            fill_over_cap: true,
            ..cfg.clone()
        };
        let out = diversify(&list, 8, &soft, &cats, Similarity::Category).unwrap();
        assert_eq!(items(&out), vec![0, 1, 3, 5, 6, 7, 2, 4]);
        let none = DiversityConfig {
            max_per_category: None,
            ..cfg
        };
        let out = diversify(&list, 3, &none, &cats, Similarity::Category).unwrap();
        assert_eq!(items(&out), vec![0, 1, 2]);
    }

    #[test]
    fn default_caps_four_per_category_in_twenty() {
        let cats: Vec<Option<u32>> = (0..60).map(|i| Some(i % 3)).collect();
        let list = ranked(&(0..60).map(|i| (i, 1.0 - i as f32 / 100.0)).collect::<Vec<_>>());
        let out = diversify(&list, 20, &DiversityConfig::default(), &cats, Similarity::Category).unwrap();
        assert_eq!(out.len(), 12);
        for c in 0..3 {
            assert_eq!(out.iter().filter(|r| cats[r.item as usize] == Some(c)).count(), 4);
        }
    }

    #[test]
    fn mmr_picks_the_hand_computed_sequence() {
        // A=0 (1,0) 1.0; B=1 (1,0) 0.9; C=2 (0,1) 0.6; D=3 (0.6,0.8) 0.5; λ = 0.5:
        // pick 1: 0.5·s → A (0.5).  sims to A: B 1, C 0, D 0.6.
        // pick 2: B 0.45−0.5=−0.05, C 0.3−0=0.3, D 0.25−0.3=−0.05 → C.  max sims: B 1, D 0.8.
        // pick 3: B −0.05, D 0.25−0.4=−0.15 → B; then D.
        let emb = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let sim = Similarity::Embeddings { vectors: &emb, dim: 2 };
        let list = ranked(&[(0, 1.0), (1, 0.9), (2, 0.6), (3, 0.5)]);
        let cfg = DiversityConfig {
            mmr_lambda: 0.5,
            max_per_category: None,
            fill_over_cap: false,
        };
        let out = diversify(&list, 4, &cfg, &[], sim).unwrap();
        assert_eq!(items(&out), vec![0, 2, 1, 3]);
        let out = diversify(&list, 2, &cfg, &[], sim).unwrap();
        assert_eq!(items(&out), vec![0, 2]);
        // λ = 1 is plain relevance.
        let off = DiversityConfig {
            mmr_lambda: 1.0,
            ..cfg.clone()
        };
        assert_eq!(items(&diversify(&list, 4, &off, &[], sim).unwrap()), vec![0, 1, 2, 3]);
        // Category equality instead of embeddings, λ = 0.7, categories A 0, B 0, C 1, D 0:
        // pick 1 A (0.7); pick 2: B 0.63−0.3=0.33, C 0.42, D 0.35−0.3=0.05 → C;
        // pick 3: B 0.33, D 0.05 → B; then D.
        let cats = [Some(0), Some(0), Some(1), Some(0)];
        let cat_cfg = DiversityConfig { mmr_lambda: 0.7, ..cfg };
        let out = diversify(&list, 4, &cat_cfg, &cats, Similarity::Category).unwrap();
        assert_eq!(items(&out), vec![0, 2, 1, 3]);
    }

    #[test]
    fn mmr_respects_caps() {
        let emb = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let cats = [Some(0), Some(0), Some(1), Some(0)];
        let list = ranked(&[(0, 1.0), (1, 0.9), (2, 0.6), (3, 0.5)]);
        let cfg = DiversityConfig {
            mmr_lambda: 0.5,
            max_per_category: Some(1),
            fill_over_cap: false,
        };
        let out = diversify(&list, 4, &cfg, &cats, Similarity::Embeddings { vectors: &emb, dim: 2 }).unwrap();
        assert_eq!(items(&out), vec![0, 2]);
    }

    #[test]
    fn bad_values_are_refused_naming_field_and_value() {
        let err = DiversityConfig::from_json(r#"{"max_per_category": -1}"#).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, value, .. } if field == "max_per_category" && value == "-1")
        );
        let err = DiversityConfig::from_json(r#"{"max_per_category": 0}"#).unwrap_err();
        assert!(err.to_string().contains("max_per_category"));
        let err = DiversityConfig::from_json(r#"{"mmr_lambda": 1.5}"#).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, value, .. } if field == "mmr_lambda" && value == "1.5"));
        let nan = DiversityConfig {
            mmr_lambda: f32::NAN,
            ..Default::default()
        };
        assert!(diversify(&[], 1, &nan, &[], Similarity::Category).is_err());
        assert!(DiversityConfig::from_json(r#"{"mmr": 0.5}"#).is_err());
        let ok = DiversityConfig::from_json(r#"{"mmr_lambda": 0.7}"#).unwrap();
        assert_eq!(ok.max_per_category, Some(4));
        assert_eq!(
            DiversityConfig::from_json(&serde_json::to_string(&ok).unwrap()).unwrap(),
            ok
        );
    }

    #[test]
    fn embedding_rows_out_of_range_are_dissimilar() {
        let sim = Similarity::Embeddings {
            vectors: &[1.0, 0.0],
            dim: 2,
        };
        assert_eq!(sim.between(0, 0, &[]), 1.0);
        assert_eq!(sim.between(0, 5, &[]), 0.0);
        assert_eq!(Similarity::Category.between(0, 1, &[None, None]), 0.0);
    }
}
