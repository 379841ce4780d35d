//! Fits the online re-ranker ([`recsys_core::rerank::Reranker`], a logistic regression over the
//! [`RerankFeatures`]) offline, on the training run's own split: for sampled test cases, the
//! trained model's top candidates are the impressions, and a candidate the user went on to
//! interact with is a positive. Features come from the same [`RerankFeatures::from_parts`] serving
//! calls, with the similarity from the same 8-bit item codes ([`QuantizedVectors`]), on the feature
//! engine as of the prediction time, so training and serving cannot skew.
//!
//! Half of the cases (by user) fit the weights, the other half measure them: the report gives the
//! held-out AUC of the fitted re-ranker and of the embedding similarity alone, and the quality of
//! the top 20 on those cases three ways ([`ListQuality`]): the candidates re-ranked, the same
//! candidates in retrieval order, and global popularity over the whole catalogue.

use crate::Result;
use crate::baselines::Popularity;
use crate::dataset::Dataset;
use crate::evaluate::{Split, histories, ndcg_at_k, recall_at_k};
use crate::features::build_engine;
use crate::progress::Progress;
use recsys_core::features::FeatureConfig;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::{UserContext, UserInputs, UserProfile};
use recsys_core::rerank::{FitConfig, RerankFeatures, RerankItem, RerankUser, Reranker, auc, last_category_times};
use recsys_core::retrieval::{ExactIndex, Filter, ItemIndex, QuantizedVectors};
use serde::{Deserialize, Serialize};

/// How many test cases and candidates the fit uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RerankFitOptions {
    /// Test cases sampled (default 4,000).
    pub max_cases: usize,
    /// Candidates per case (default 50).
    pub candidates: usize,
}

impl Default for RerankFitOptions {
    fn default() -> Self {
        RerankFitOptions {
            max_cases: 4_000,
            candidates: 50,
        }
    }
}

/// What the fit did (part of `recsys-train train`'s report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankFitReport {
    /// Labelled candidates used to fit.
    pub examples: usize,
    /// Positives among them.
    pub positives: usize,
    /// Held-out AUC of the fitted re-ranker.
    pub auc: f64,
    /// Held-out AUC of the embedding similarity alone (what ranking by retrieval score gives).
    pub auc_similarity_only: f64,
    /// Top-20 quality on the held-out cases (absent in reports written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_top20: Option<ListQuality>,
}

/// The top 20 of the held-out cases, mean NDCG@20 and recall@20 over the cases (targets as the
/// evaluation's; items in the user's history before the prediction time never ranked): the
/// candidates as the re-ranker orders them (what serving returns, before diversity and rules),
/// the same candidates in retrieval order (the two-tower alone), and the items by training
/// popularity (the popularity baseline on the same cases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListQuality {
    /// Held-out cases measured.
    pub cases: usize,
    /// Candidates per case the re-ranker ordered.
    pub candidates: usize,
    /// NDCG@20 of the re-ranked candidates.
    pub ndcg_reranked: f64,
    /// NDCG@20 of the candidates in retrieval order.
    pub ndcg_retrieval: f64,
    /// NDCG@20 of global popularity.
    pub ndcg_popularity: f64,
    /// Recall@20 of the re-ranked candidates.
    pub recall_reranked: f64,
    /// Recall@20 of the candidates in retrieval order.
    pub recall_retrieval: f64,
    /// Recall@20 of global popularity.
    pub recall_popularity: f64,
}

/// One held-out case: its slice of the held-out candidates (retrieval order), targets and the
/// items never to rank (sorted).
struct HeldOut {
    rows: std::ops::Range<usize>,
    items: Vec<u32>,
    targets: Vec<u32>,
    seen: Vec<u32>,
}

/// Cut-off of [`ListQuality`].
const LIST_K: usize = 20;

/// Mean top-20 quality of the held-out cases under the fitted re-ranker, the retrieval order and
/// popularity (`popular`: every item, most popular first).
fn list_quality(cases: &[HeldOut], logits: &[f32], popular: &[u32], candidates: usize) -> ListQuality {
    let mut sums = [0f64; 6];
    for c in cases {
        let mut reranked: Vec<(f32, u32)> = logits[c.rows.clone()]
            .iter()
            .copied()
            .zip(c.items.iter().copied())
            .collect();
        // Stable: ties keep the retrieval order.
        reranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let reranked: Vec<u32> = reranked.into_iter().map(|(_, i)| i).collect();
        let by_popularity: Vec<u32> = popular
            .iter()
            .copied()
            .filter(|i| c.seen.binary_search(i).is_err())
            .take(LIST_K)
            .collect();
        for (k, ranking) in [&reranked, &c.items, &by_popularity].into_iter().enumerate() {
            sums[k] += ndcg_at_k(ranking, &c.targets, LIST_K);
            sums[3 + k] += recall_at_k(ranking, &c.targets, LIST_K);
        }
    }
    let n = cases.len().max(1) as f64;
    ListQuality {
        cases: cases.len(),
        candidates,
        ndcg_reranked: sums[0] / n,
        ndcg_retrieval: sums[1] / n,
        ndcg_popularity: sums[2] / n,
        recall_reranked: sums[3] / n,
        recall_retrieval: sums[4] / n,
        recall_popularity: sums[5] / n,
    }
}

/// Builds labelled candidates for the sampled cases and fits the re-ranker; `Ok(None)` when the
/// split has too few positives to fit (tiny data): serving then uses the documented fallback.
pub fn fit_reranker(
    ds: &Dataset,
    split: &Split,
    model: &TwoTowerModel,
    profiles: &[UserProfile],
    opts: &RerankFitOptions,
    progress: Progress,
) -> Result<Option<(Reranker, RerankFitReport)>> {
    if split.test.is_empty() {
        return Ok(None);
    }
    // One engine as of the earliest prediction time: no feature sees anything at or after any
    // case's prediction time (for a time split every case has the same cut-off).
    let as_of = split.test.iter().map(|c| c.as_of).min().unwrap_or(0);
    let (engine, _, _) = build_engine(ds, as_of, FeatureConfig::default(), Progress::quiet())?;
    let index = ExactIndex::new(model.item_embeddings(), model.dim())?;
    // The similarity feature through the same 8-bit codes serving reads.
    let codes = QuantizedVectors::new(index.vectors(), model.dim())?;
    let contexts = histories(&split.context, split.num_users);
    let step = split.test.len().div_ceil(opts.max_cases.max(1)).max(1);
    let cases: Vec<_> = split.test.iter().step_by(step).collect();
    let bar = progress.bar(cases.len() as u64, "re-ranker");
    let mut fit_set = Vec::new();
    let mut holdout = Vec::new();
    let mut held_out_cases = Vec::new();
    let d = model.dim();
    for (n, case) in cases.iter().enumerate() {
        bar.inc(1);
        let u = case.user as usize;
        let history: Vec<_> = contexts
            .get(u)
            .map(|h| h.iter().filter(|e| e.ts < case.as_of).copied().collect())
            .unwrap_or_default();
        let p = profiles.get(u).copied().unwrap_or_default();
        let inputs = UserInputs::build(
            &UserContext {
                history: &history,
                as_of: case.as_of,
                age: p.age,
                region: p.region,
            },
            &model.config,
        );
        let mut emb = vec![0.0; d];
        model.user_embedding(&inputs, &mut emb)?;
        let mut seen: Vec<u32> = history.iter().map(|e| e.item).collect();
        seen.sort_unstable();
        seen.dedup();
        let candidates = index.search(
            &emb,
            opts.candidates,
            &Filter {
                exclude: &seen,
                ..Default::default()
            },
        )?;
        let uf = engine.user_features(case.user, as_of)?;
        let session_categories: Vec<u32> = history
            .iter()
            .rev()
            .take_while(|e| case.as_of - e.ts < 30 * 60_000)
            .filter_map(|e| engine.catalog().category.get(e.item as usize).copied().flatten())
            .collect();
        let last_cats = last_category_times(&uf.recent, engine.catalog());
        let user = RerankUser {
            embedding: &emb,
            avg_order_value: uf.avg_order_value,
            session_categories: &session_categories,
            last_category_ms: &last_cats,
            now_ms: case.as_of,
            recency_half_life_ms: 24 * 3600 * 1000,
        };
        let held_out = n % 2 == 1;
        let out = if held_out { &mut holdout } else { &mut fit_set };
        if held_out {
            held_out_cases.push(HeldOut {
                rows: out.len()..out.len() + candidates.len(),
                items: candidates.iter().map(|c| c.item).collect(),
                targets: case.targets.clone(),
                seen,
            });
        }
        let prepared = user.prepare();
        for c in candidates {
            let item = engine.item_features(c.item, as_of)?;
            let similarity = codes.dot(c.item, &emb)?.unwrap_or(0.0);
            let price = engine.catalog().price.get(c.item as usize).copied().flatten();
            let f = RerankFeatures::from_parts(c, similarity, &RerankItem::new(&item, price), &prepared);
            out.push((f, case.targets.contains(&c.item)));
        }
    }
    bar.finish_and_clear();
    let positives = |s: &[(RerankFeatures, bool)]| s.iter().filter(|e| e.1).count();
    if positives(&fit_set) < 5 || positives(&holdout) < 1 || positives(&fit_set) == fit_set.len() {
        progress.summary(format!(
            "re-ranker not fitted: only {} positive candidates among {} (serving uses the fallback weights)",
            positives(&fit_set),
            fit_set.len()
        ));
        return Ok(None);
    }
    let reranker = Reranker::fit(&fit_set, &FitConfig::default())?;
    let labels: Vec<bool> = holdout.iter().map(|e| e.1).collect();
    let fitted: Vec<f32> = holdout.iter().map(|e| reranker.logit(&e.0)).collect();
    let sim: Vec<f32> = holdout.iter().map(|e| e.0.similarity).collect();
    let mut popular: Vec<u32> = (0..split.num_items as u32).collect();
    let counts = Popularity::fit(split);
    let count = |i: u32| counts.scores().get(i as usize).copied().unwrap_or(0.0);
    // Stable: ties in item order, as the evaluation's ranking breaks them.
    popular.sort_by(|&a, &b| count(b).total_cmp(&count(a)));
    let quality = list_quality(&held_out_cases, &fitted, &popular, opts.candidates);
    let report = RerankFitReport {
        examples: fit_set.len(),
        positives: positives(&fit_set),
        auc: auc(&fitted, &labels),
        auc_similarity_only: auc(&sim, &labels),
        holdout_top20: Some(quality.clone()),
    };
    progress.summary(format!(
        "re-ranker fitted on {} candidates ({} positive): held-out AUC {:.4} (similarity alone {:.4}); \
         held-out NDCG@20 {:.4} re-ranked, {:.4} retrieval order, {:.4} popularity ({} cases)",
        report.examples,
        report.positives,
        report.auc,
        report.auc_similarity_only,
        quality.ndcg_reranked,
        quality.ndcg_retrieval,
        quality.ndcg_popularity,
        quality.cases
    ));
    Ok(Some((reranker, report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_quality_ranks_each_way_and_never_shows_history() {
        // Case 1: retrieval order [10, 11, 12]; the re-ranker puts 12 first; 12 is the target.
        // Case 2: retrieval order [20, 21]; the re-ranker keeps it; 20 is the target.
        let cases = [
            HeldOut {
                rows: 0..3,
                items: vec![10, 11, 12],
                targets: vec![12],
                seen: vec![0],
            },
            HeldOut {
                rows: 3..5,
                items: vec![20, 21],
                targets: vec![20],
                seen: vec![],
            },
        ];
        let logits = [0.1, 0.2, 0.9, 0.5, -0.5];
        // Item 0 is the most popular but case 1 has it in its history; 12 comes next.
        let popular = [0, 12, 7, 20];
        let q = list_quality(&cases, &logits, &popular, 3);
        // The gain of a hit at 0-based position p.
        let dcg = |p: usize| 1.0 / ((p + 2) as f64).log2();
        assert_eq!((q.cases, q.candidates), (2, 3));
        // Re-ranked: both targets first.
        assert!((q.ndcg_reranked - 1.0).abs() < 1e-12, "{q:?}");
        // Retrieval order: case 1's target third, case 2's first.
        assert!((q.ndcg_retrieval - (dcg(2) + 1.0) / 2.0).abs() < 1e-12, "{q:?}");
        // Popularity: case 1 ranks [12, 7, 20] (0 is history), case 2 ranks [0, 12, 7, 20].
        assert!((q.ndcg_popularity - (1.0 + dcg(3)) / 2.0).abs() < 1e-12, "{q:?}");
        assert_eq!(
            (q.recall_reranked, q.recall_retrieval, q.recall_popularity),
            (1.0, 1.0, 1.0)
        );
    }
}
