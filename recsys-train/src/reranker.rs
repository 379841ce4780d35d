//! Fits the online re-ranker ([`recsys_core::rerank::Reranker`], a logistic regression over the
//! [`RerankFeatures`]) offline, on the training run's own split: for sampled test cases, the
//! trained model's top candidates are the impressions, and a candidate the user went on to
//! interact with is a positive. Features come from the same [`RerankFeatures::with_similarity`] serving
//! calls, with the similarity from the same 8-bit item codes ([`QuantizedVectors`]), on the feature
//! engine as of the prediction time, so training and serving cannot skew.
//!
//! Half of the cases (by user) fit the weights, the other half measure them: the report gives the
//! held-out AUC of the fitted re-ranker and of the embedding similarity alone.

use crate::Result;
use crate::dataset::Dataset;
use crate::evaluate::{Split, histories};
use crate::features::build_engine;
use crate::progress::Progress;
use recsys_core::features::FeatureConfig;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::trainer::UserProfile;
use recsys_core::model::{UserContext, UserInputs};
use recsys_core::rerank::{FitConfig, RerankFeatures, RerankUser, Reranker, auc, last_category_times};
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
        let out = if n % 2 == 0 { &mut fit_set } else { &mut holdout };
        for c in candidates {
            let item = engine.item_features(c.item, as_of)?;
            let similarity = codes.dot(c.item, &emb)?.unwrap_or(0.0);
            let price = engine.catalog().price.get(c.item as usize).copied().flatten();
            let f = RerankFeatures::with_similarity(c, similarity, &item, price, &user);
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
    let report = RerankFitReport {
        examples: fit_set.len(),
        positives: positives(&fit_set),
        auc: auc(&fitted, &labels),
        auc_similarity_only: auc(&sim, &labels),
    };
    progress.summary(format!(
        "re-ranker fitted on {} candidates ({} positive): held-out AUC {:.4} (similarity alone {:.4})",
        report.examples, report.positives, report.auc, report.auc_similarity_only
    ));
    Ok(Some((reranker, report)))
}
