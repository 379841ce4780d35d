//! Validation gates: whether a freshly trained model may be published or promoted.
//!
//! Per-metric minimums (the ADR's AUC > 0.80 and NDCG@20 > 0.65, overridable per data set), a bounded
//! regression against the current model, and the CTR-simulation gate. The registry the gated model
//! goes into is [`recsys_core::registry`].
//!
//! ```no_run
//! use recsys_core::registry::Registry;
//! use recsys_train::gates::Gates;
//! use std::collections::BTreeMap;
//! use std::path::Path;
//!
//! let reg = Registry::open("out/registry")?;
//! let metrics = BTreeMap::from([("auc".to_string(), 0.86), ("ndcg@20".to_string(), 0.71)]);
//! let current = reg.current()?.map(|v| reg.manifest(&v)).transpose()?;
//! Gates::default().check(None, &metrics, current.as_ref().map(|m| &m.metrics))?;
//! let version = reg.publish(Path::new("out/model"), None, &metrics, serde_json::json!({"model": "two-tower"}))?;
//! reg.promote(&version)?;
//! # Ok::<(), recsys_train::Error>(())
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Thresholds a model must meet to be published or promoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// Minimum value per metric (defaults: `{"auc": 0.80, "ndcg@20": 0.65}`, the ADR's thresholds).
    pub min: BTreeMap<String, f64>,
    /// Per-dataset overrides of `min` (dataset name -> metric -> minimum), e.g. for real data sets where
    /// the ADR's synthetic thresholds do not apply. An override replaces the minimum of its metrics only.
    pub overrides: BTreeMap<String, BTreeMap<String, f64>>,
    /// Metrics that must not fall more than `max_regression` (absolute) below the current model's.
    pub regression_metrics: Vec<String>,
    /// Largest allowed absolute drop of a regression metric against the current model.
    pub max_regression: f64,
    /// The ADR's "CTR simulation" gate: the new version's CTR on simulated traffic (the click
    /// simulator serving it through the real recommender) must reach a minimum and must not fall
    /// more than a margin below the current version's on the same traffic. Off when absent (the
    /// default); it needs a simulator, which the `recsys-train` command provides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctr_sim: Option<CtrSimGate>,
}

/// Settings of the `ctr_sim` gate (`{"ctr_sim": {"min": 0.02, "max_regression": 0.002}}` in a gates
/// file; missing fields take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CtrSimGate {
    /// Minimum simulated CTR (clicks / impressions; default 0).
    pub min: f64,
    /// Largest allowed absolute drop against the current version's simulated CTR (default 0.002).
    pub max_regression: f64,
    /// Simulated requests per version (default 20,000).
    pub requests: u64,
    /// Seed of the simulated traffic, the same for both versions (default 1).
    pub seed: u64,
}

impl Default for CtrSimGate {
    fn default() -> Self {
        CtrSimGate {
            min: 0.0,
            max_regression: 0.002,
            requests: 20_000,
            seed: 1,
        }
    }
}

impl CtrSimGate {
    /// `Ok(())` when the `candidate`'s simulated CTR meets the minimum and is at most
    /// `max_regression` below the `current` version's; else [`Error::GateFailed`] with metric
    /// `ctr_sim`.
    pub fn check(&self, candidate: f64, current: Option<f64>) -> Result<()> {
        if !meets(candidate, self.min) {
            return Err(Error::GateFailed {
                metric: "ctr_sim".into(),
                value: candidate,
                threshold: self.min,
                reason: "minimum".into(),
            });
        }
        if let Some(base) = current.filter(|b| b.is_finite()) {
            let threshold = base - self.max_regression;
            if !meets(candidate, threshold) {
                return Err(Error::GateFailed {
                    metric: "ctr_sim".into(),
                    value: candidate,
                    threshold,
                    reason: format!(
                        "regression: current model has {base:.4} on the same simulated traffic, allowed drop {:.4}",
                        self.max_regression
                    ),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !self.min.is_finite() {
            return Err(format!("ctr_sim.min is not finite: {}", self.min));
        }
        if !(self.max_regression.is_finite() && self.max_regression >= 0.0) {
            return Err(format!(
                "ctr_sim.max_regression must be finite and >= 0, got {}",
                self.max_regression
            ));
        }
        if self.requests == 0 {
            return Err("ctr_sim.requests must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min: BTreeMap::from([("auc".to_string(), 0.80), ("ndcg@20".to_string(), 0.65)]),
            overrides: BTreeMap::new(),
            regression_metrics: vec!["recall@20".to_string(), "ndcg@20".to_string()],
            max_regression: 0.01,
            ctr_sim: None,
        }
    }
}

/// Slack for comparisons of metrics that went through decimal text and back.
const EPS: f64 = 1e-12;

/// `value >= threshold` (with [`EPS`] slack); false when either is NaN.
fn meets(value: f64, threshold: f64) -> bool {
    matches!(
        (value + EPS).partial_cmp(&threshold),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

impl Gates {
    /// Reads gates from a JSON file; missing fields take their defaults, unknown fields are refused.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read(path).map_err(Error::io(path))?;
        let gates: Gates =
            serde_json::from_slice(&text).map_err(|e| Error::data(path, format!("not a gates file: {e}")))?;
        gates.validate().map_err(|m| Error::data(path, m))?;
        Ok(gates)
    }

    /// Gates from a JSON object (a Python dict, say); the same rules as [`Gates::load`], errors name
    /// the argument `gates`.
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        let text = value.to_string();
        let gates: Gates = serde_json::from_value(value).map_err(|e| Error::arg("gates", &text, e.to_string()))?;
        gates.validate().map_err(|m| Error::arg("gates", &text, m))?;
        Ok(gates)
    }

    /// Finite thresholds and a finite, non-negative `max_regression`.
    fn validate(&self) -> std::result::Result<(), String> {
        let thresholds = self.min.iter().chain(self.overrides.values().flatten());
        if let Some((metric, t)) = thresholds.into_iter().find(|(_, t)| !t.is_finite()) {
            return Err(format!("threshold of `{metric}` is not finite: {t}"));
        }
        if !(self.max_regression.is_finite() && self.max_regression >= 0.0) {
            return Err(format!(
                "max_regression must be finite and >= 0, got {}",
                self.max_regression
            ));
        }
        if let Some(c) = &self.ctr_sim {
            c.validate()?;
        }
        Ok(())
    }

    /// The minimums that apply to `dataset`: `min` with that data set's overrides applied.
    pub fn minimums(&self, dataset: Option<&str>) -> BTreeMap<String, f64> {
        let mut min = self.min.clone();
        if let Some(o) = dataset.and_then(|d| self.overrides.get(d)) {
            min.extend(o.iter().map(|(k, v)| (k.clone(), *v)));
        }
        min
    }

    /// `Ok(())` when every gate passes; otherwise [`Error::GateFailed`] for the first failing metric:
    /// minimums (in metric-name order) before regressions (in `regression_metrics` order). A metric a
    /// gate names but `metrics` lacks fails with reason `missing`; a NaN value fails. Regressions are
    /// checked only against metrics the `current` model has.
    pub fn check(
        &self,
        dataset: Option<&str>,
        metrics: &BTreeMap<String, f64>,
        current: Option<&BTreeMap<String, f64>>,
    ) -> Result<()> {
        let fail = |metric: &str, value: f64, threshold: f64, reason: String| Error::GateFailed {
            metric: metric.to_string(),
            value,
            threshold,
            reason,
        };
        for (metric, &threshold) in &self.minimums(dataset) {
            match metrics.get(metric) {
                None => return Err(fail(metric, f64::NAN, threshold, "missing".into())),
                Some(&v) if !meets(v, threshold) => return Err(fail(metric, v, threshold, "minimum".into())),
                Some(_) => {}
            }
        }
        let Some(current) = current else {
            return Ok(());
        };
        for metric in &self.regression_metrics {
            let Some(&base) = current.get(metric).filter(|b| b.is_finite()) else {
                continue;
            };
            let threshold = base - self.max_regression;
            match metrics.get(metric) {
                None => return Err(fail(metric, f64::NAN, threshold, "missing".into())),
                Some(&v) if !meets(v, threshold) => {
                    return Err(fail(
                        metric,
                        v,
                        threshold,
                        format!(
                            "regression: current model has {base:.4}, allowed drop {:.4}",
                            self.max_regression
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_error_display() {
        let e = Error::GateFailed {
            metric: "ndcg@20".into(),
            value: 0.41,
            threshold: 0.65,
            reason: "minimum".into(),
        };
        assert_eq!(
            e.to_string(),
            "validation gate failed: ndcg@20 = 0.4100 < 0.6500 (minimum)"
        );
        assert!(e.is_user_error());
    }

    #[test]
    fn ctr_sim_gate_minimum_and_regression() {
        let g = CtrSimGate {
            min: 0.02,
            max_regression: 0.002,
            ..Default::default()
        };
        assert!(g.check(0.03, None).is_ok());
        assert!(g.check(0.03, Some(0.031)).is_ok());
        assert!(
            matches!(g.check(0.019, None), Err(Error::GateFailed { ref metric, ref reason, .. })
            if metric == "ctr_sim" && reason == "minimum")
        );
        assert!(
            matches!(g.check(0.03, Some(0.0325)), Err(Error::GateFailed { ref reason, .. })
            if reason.starts_with("regression"))
        );
        assert!(g.check(f64::NAN, None).is_err());
        let parsed = Gates::from_json(serde_json::json!({"ctr_sim": {"min": 0.01}})).unwrap();
        assert_eq!(parsed.ctr_sim.unwrap().max_regression, 0.002);
        assert!(Gates::from_json(serde_json::json!({"ctr_sim": {"requests": 0}})).is_err());
        assert!(Gates::from_json(serde_json::json!({"ctr_sim": {"mni": 0.01}})).is_err());
    }

    #[test]
    fn nan_metric_fails_minimum() {
        let m = BTreeMap::from([("auc".to_string(), f64::NAN), ("ndcg@20".to_string(), 0.9)]);
        assert!(matches!(
            Gates::default().check(None, &m, None),
            Err(Error::GateFailed { ref metric, .. }) if metric == "auc"
        ));
    }
}
