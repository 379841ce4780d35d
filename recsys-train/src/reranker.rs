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
use recsys_core::rerank::{RerankFeatures, RerankItem, RerankUser, Reranker, auc, last_category_times};
use recsys_core::retrieval::{ExactIndex, Filter, ItemIndex, QuantizedVectors};
use serde::{Deserialize, Serialize};

/// The logistic regression behind the re-ranker, fitted here and only scored by serving
/// ([`Reranker::score`]). Errors are recsys-core's (`InvalidInput` naming the example and field).
mod logistic {
    use recsys_core::rerank::{FEATURE_NAMES, NUM_FEATURES, RerankFeatures, Reranker};
    use recsys_core::{Error, Result};
    use serde::{Deserialize, Serialize};

    /// Hyper-parameters of [`fit`].
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct FitConfig {
        /// L2 penalty on the (standardised) weights, not the bias: loss = mean log-loss + l2/2 · |w|².
        pub l2: f64,
        /// Most Newton iterations.
        pub max_iter: usize,
        /// Stop when the largest parameter update is below this.
        pub tolerance: f64,
    }

    impl Default for FitConfig {
        fn default() -> Self {
            FitConfig {
                l2: 1e-3,
                max_iter: 50,
                tolerance: 1e-7,
            }
        }
    }

    impl FitConfig {
        /// Refuses a negative or non-finite `l2`, a zero `max_iter` and a non-positive `tolerance`.
        pub fn validate(&self) -> Result<()> {
            if !self.l2.is_finite() || self.l2 < 0.0 {
                return Err(Error::invalid("l2", self.l2, "must be finite and >= 0"));
            }
            if self.max_iter == 0 {
                return Err(Error::invalid("max_iter", 0, "must be positive"));
            }
            if !self.tolerance.is_finite() || self.tolerance <= 0.0 {
                return Err(Error::invalid("tolerance", self.tolerance, "must be finite and > 0"));
            }
            Ok(())
        }
    }

    /// Fits the re-ranker on `(features, clicked)` examples: standardisation from the examples, then
    /// L2-regularised logistic regression by Newton's method with step halving (9 parameters, so each
    /// iteration is one pass over the data plus a 9×9 solve).
    ///
    /// Refuses an empty input, a single class, non-finite features and a bad [`FitConfig`].
    #[allow(clippy::needless_range_loop)] // index loops read best in the small dense linear algebra
    pub fn fit(examples: &[(RerankFeatures, bool)], config: &FitConfig) -> Result<Reranker> {
        config.validate()?;
        if examples.is_empty() {
            return Err(Error::invalid("examples", 0, "need at least one example"));
        }
        let positives = examples.iter().filter(|e| e.1).count();
        if positives == 0 || positives == examples.len() {
            let class = if positives == 0 { "not clicked" } else { "clicked" };
            return Err(Error::invalid(
                "examples",
                format!("{} examples, all {class}", examples.len()),
                "need both clicked and not-clicked examples",
            ));
        }
        const P: usize = NUM_FEATURES + 1;
        let n = examples.len() as f64;
        let mut mean = [0f64; NUM_FEATURES];
        for (j, (f, _)) in examples.iter().enumerate() {
            for (i, v) in f.to_array().into_iter().enumerate() {
                if !v.is_finite() {
                    return Err(Error::invalid(
                        format!("examples[{j}].{}", FEATURE_NAMES[i]),
                        v,
                        "must be finite",
                    ));
                }
                mean[i] += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = [0f64; NUM_FEATURES];
        for (f, _) in examples {
            for (i, v) in f.to_array().into_iter().enumerate() {
                var[i] += (f64::from(v) - mean[i]).powi(2);
            }
        }
        let std: [f64; NUM_FEATURES] = std::array::from_fn(|i| {
            let s = (var[i] / n).sqrt();
            if s > 1e-9 { s } else { 1.0 }
        });
        // Row of the design matrix: standardised features, then 1 for the bias.
        let row = |f: &RerankFeatures| -> [f64; P] {
            let a = f.to_array();
            std::array::from_fn(|i| {
                if i < NUM_FEATURES {
                    (f64::from(a[i]) - mean[i]) / std[i]
                } else {
                    1.0
                }
            })
        };
        let loss = |theta: &[f64; P]| -> f64 {
            let mut l = 0.0;
            for (f, y) in examples {
                let x = row(f);
                let z: f64 = x.iter().zip(theta).map(|(a, b)| a * b).sum();
                // log(1 + e^z) - y z, computed stably.
                l += z.max(0.0) + (-z.abs()).exp().ln_1p() - if *y { z } else { 0.0 };
            }
            l / n + 0.5 * config.l2 * theta[..NUM_FEATURES].iter().map(|w| w * w).sum::<f64>()
        };
        let mut theta = [0f64; P];
        let prior = positives as f64 / n;
        theta[NUM_FEATURES] = (prior / (1.0 - prior)).ln();
        let mut current = loss(&theta);
        for _ in 0..config.max_iter {
            let mut grad = [0f64; P];
            let mut hess = [[0f64; P]; P];
            for (f, y) in examples {
                let x = row(f);
                let z: f64 = x.iter().zip(&theta).map(|(a, b)| a * b).sum();
                let p = 1.0 / (1.0 + (-z).exp());
                let r = p - if *y { 1.0 } else { 0.0 };
                let w = p * (1.0 - p);
                for a in 0..P {
                    grad[a] += r * x[a];
                    let wa = w * x[a];
                    for b in 0..=a {
                        hess[a][b] += wa * x[b];
                    }
                }
            }
            for a in 0..P {
                grad[a] /= n;
                for b in 0..=a {
                    hess[a][b] /= n;
                    hess[b][a] = hess[a][b];
                }
                let reg = if a < NUM_FEATURES { config.l2 } else { 0.0 };
                grad[a] += reg * theta[a];
                hess[a][a] += reg + 1e-10;
            }
            let step = solve_spd(hess, grad).ok_or_else(|| Error::Internal("re-ranker Hessian is singular".into()))?;
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..30 {
                let cand: [f64; P] = std::array::from_fn(|i| theta[i] - t * step[i]);
                let l = loss(&cand);
                if l <= current {
                    theta = cand;
                    current = l;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            let largest = step.iter().fold(0f64, |m, s| m.max((t * s).abs()));
            if !accepted || largest < config.tolerance {
                break;
            }
        }
        let model = Reranker {
            weights: std::array::from_fn(|i| theta[i] as f32),
            bias: theta[NUM_FEATURES] as f32,
            means: mean.map(|m| m as f32),
            stds: std.map(|s| s as f32),
        };
        model.validate()?;
        Ok(model)
    }

    /// Solves `a x = b` for a symmetric positive-definite `a` by Cholesky; `None` when not SPD.
    #[allow(clippy::needless_range_loop)] // textbook index form of Cholesky and the two triangular solves
    fn solve_spd<const P: usize>(mut a: [[f64; P]; P], b: [f64; P]) -> Option<[f64; P]> {
        for j in 0..P {
            let mut d = a[j][j];
            for k in 0..j {
                d -= a[j][k] * a[j][k];
            }
            if d <= 0.0 || !d.is_finite() {
                return None;
            }
            let d = d.sqrt();
            a[j][j] = d;
            for i in j + 1..P {
                let mut s = a[i][j];
                for k in 0..j {
                    s -= a[i][k] * a[j][k];
                }
                a[i][j] = s / d;
            }
        }
        let mut y = [0f64; P];
        for i in 0..P {
            let mut s = b[i];
            for k in 0..i {
                s -= a[i][k] * y[k];
            }
            y[i] = s / a[i][i];
        }
        let mut x = [0f64; P];
        for i in (0..P).rev() {
            let mut s = y[i];
            for k in i + 1..P {
                s -= a[k][i] * x[k];
            }
            x[i] = s / a[i][i];
        }
        Some(x)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use rand::{Rng, SeedableRng};
        use rand_xoshiro::Xoshiro256PlusPlus;
        use recsys_core::rerank::auc;

        fn sigmoid(z: f32) -> f32 {
            1.0 / (1.0 + (-z).exp())
        }

        fn synthetic(n: usize, seed: u64) -> Vec<(RerankFeatures, bool)> {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            (0..n)
                .map(|_| {
                    let similarity: f32 = rng.random_range(-1.0..1.0);
                    let session: f32 = rng.random_range(0.0..1.0);
                    // Retrieval score: a weak, noisy proxy of similarity.
                    let retrieval_score = 0.3 * similarity + rng.random_range(-1.0..1.0);
                    let popularity: f32 = rng.random_range(0.0..5.0);
                    let f = RerankFeatures {
                        similarity,
                        retrieval_score,
                        popularity,
                        session_category_share: session,
                        ..Default::default()
                    };
                    // True model: logit = 3·similarity + 2·session - 1.5 (popularity is noise).
                    let z = 3.0 * similarity + 2.0 * session - 1.5;
                    let clicked = rng.random_range(0.0..1.0) < sigmoid(z);
                    (f, clicked)
                })
                .collect()
        }

        #[test]
        fn fit_recovers_signs_and_order_and_beats_retrieval_only() {
            let train = synthetic(20_000, 1);
            let model = fit(&train, &FitConfig::default()).unwrap();
            // Raw-scale weights: w / std.
            let raw: Vec<f32> = (0..NUM_FEATURES).map(|i| model.weights[i] / model.stds[i]).collect();
            assert!((raw[0] - 3.0).abs() < 0.4, "similarity weight {raw:?}");
            assert!((raw[6] - 2.0).abs() < 0.4, "session weight {raw:?}");
            assert!(raw[0] > raw[6] && raw[6] > 0.0);
            for i in [1, 2] {
                assert!(raw[i].abs() < 0.15, "noise feature {} got {}", FEATURE_NAMES[i], raw[i]);
            }
            let test = synthetic(5_000, 2);
            let labels: Vec<bool> = test.iter().map(|e| e.1).collect();
            let learned: Vec<f32> = test.iter().map(|e| model.score(&e.0)).collect();
            let retrieval: Vec<f32> = test.iter().map(|e| e.0.retrieval_score).collect();
            let (a_model, a_retrieval) = (auc(&learned, &labels), auc(&retrieval, &labels));
            assert!(
                a_model > a_retrieval + 0.1,
                "model {a_model} vs retrieval {a_retrieval}"
            );
            assert!(a_model > 0.75, "{a_model}");
        }

        #[test]
        fn fit_refuses_empty_single_class_and_nan() {
            let f = RerankFeatures::default();
            let err = fit(&[], &FitConfig::default()).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput { field, .. } if field == "examples"),
                "{err}"
            );
            let err = fit(&[(f, true), (f, true)], &FitConfig::default()).unwrap_err();
            assert!(err.to_string().contains("all clicked"), "{err}");
            let nan = RerankFeatures {
                trending: f32::NAN,
                ..f
            };
            let err = fit(&[(f, true), (nan, false)], &FitConfig::default()).unwrap_err();
            assert!(err.to_string().contains("examples[1].log_trending"), "{err}");
            let cfg = FitConfig {
                l2: -1.0,
                ..Default::default()
            };
            let err = fit(&[(f, true), (f, false)], &cfg).unwrap_err();
            assert!(
                err.to_string().contains("`l2`") && err.to_string().contains("-1"),
                "{err}"
            );
        }

        #[test]
        fn fit_on_separable_data_stays_finite() {
            let f = |s: f32| RerankFeatures {
                similarity: s,
                ..Default::default()
            };
            let model = fit(&[(f(1.0), true), (f(-1.0), false)], &FitConfig::default()).unwrap();
            assert!(model.weights[0] > 0.0 && model.weights.iter().all(|w| w.is_finite()));
        }
    }
}

pub use logistic::{FitConfig, fit};

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
    let reranker = fit(&fit_set, &FitConfig::default())?;
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
