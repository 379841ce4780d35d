//! `recsys-train train --tune`: automatic tuning of the two-tower model on the validation split
//! inside the training period.
//!
//! The tuner searches a list of [`Dimension`]s (a [`TwoTowerConfig`] field and its candidate
//! values; [`default_space`] is the one `--tune` uses), and the number of epochs through early
//! stopping. Every trial trains on the training part of a [`validation_split`](crate::evaluate::validation_split) and is scored on
//! its validation cases after every epoch, through the same evaluation as the test:
//!
//! * leave-one-out: trained on the training interactions, scored on each user's second-to-last
//!   interaction;
//! * time split: trained on the training period minus its last window (as long as the test
//!   window), scored on the new items users met in that window.
//!
//! [`tune`] takes only that split and the training data built from it, so it cannot read the test
//! split; [`crate::train::train_and_register`] then trains the chosen settings for the chosen
//! number of epochs on the whole training part (the normal path), and the test split is touched
//! once, by the final evaluation.
//!
//! # Search
//!
//! Trial 0 is the base configuration (the defaults, or `--config`). Then each other value of the
//! space's first dimension (the user encoder) is tried alone against the base. Each later trial changes one
//! dimension (two, one time in three) of the best trial so far to another of its candidate values,
//! drawn from a generator seeded by the configuration's `seed`; settings already tried are drawn
//! again. Each trial runs up to [`TuneOptions::max_epochs`] epochs with early stopping
//! ([`TuneOptions::patience`]), and is pruned after an epoch whose best score so far is below the
//! median of the earlier trials' best scores up to the same epoch (the halving rule of
//! successive halving applied per epoch, once [`TuneOptions::min_compared`] earlier trials can
//! be compared). The trial with the highest validation score wins (ties: the earlier trial, so
//! the base configuration wins a tie), with its best epoch as the epoch count.
//!
//! # Determinism
//!
//! Training and evaluation are deterministic for a seed, and the next trial depends only on the
//! generator and the earlier trials' scores, so with a number of trials as the bound
//! ([`TuneOptions::max_trials`]) the trials and the choice are identical from run to run. With a
//! time budget the sequence of trials is the same, and only its length depends on the machine's
//! speed: no trial starts once the budget is spent, and the trial running when it runs out stops
//! after its current epoch (status `cut`; its scores so far still count).

use crate::evaluate::Split;
use crate::progress::Progress;
use crate::train::{BackendKind, SplitValidator, fit};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::trainer::Validator;
use recsys_core::model::{TrainingData, TwoTowerConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One dimension of the search space: a [`TwoTowerConfig`] field and the values to try, as JSON
/// (as a `--config` file writes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    /// The [`TwoTowerConfig`] field.
    pub name: String,
    /// Its candidate values.
    pub values: Vec<Value>,
}

impl Dimension {
    /// A dimension of `name` with `values`.
    pub fn new<V: Into<Value>>(name: &str, values: impl IntoIterator<Item = V>) -> Self {
        Dimension {
            name: name.to_string(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}

/// The fields the tuner sets itself, which a [`Dimension`] may not name.
pub const TUNER_FIELDS: [&str; 5] = [
    "epochs",
    "early_stopping_patience",
    "validation_metric",
    "validation_users",
    "seed",
];

/// The search space of `--tune`: the user encoder (tried first, see [`tune`]), the dense and
/// id-table learning rates, the softmax temperature, the uniform negatives per batch, id dropout
/// and the embedding sizes (the epochs come from early stopping).
/// A new setting is one more [`Dimension`] here.
pub fn default_space() -> Vec<Dimension> {
    vec![
        Dimension::new("user_encoder", ["pooled", "attention"]),
        Dimension::new("learning_rate", [0.0005, 0.001, 0.002, 0.004, 0.008]),
        Dimension::new("sparse_learning_rate", [0.003, 0.01, 0.03]),
        Dimension::new("temperature", [0.02, 0.05, 0.1, 0.2]),
        Dimension::new("uniform_negatives", [0u32, 256, 1024, 2048]),
        Dimension::new("id_dropout", [0.0, 0.1, 0.3]),
        Dimension::new("embedding_dim", [64u32, 128, 256]),
        Dimension::new("id_dim", [32u32, 64, 128]),
        Dimension::new("hidden_dim", [128u32, 256]),
    ]
}

/// Settings of a trial: dimension name → value.
pub type Settings = BTreeMap<String, Value>;

/// Bounds and rules of a search ([`tune`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOptions {
    /// Wall-clock budget of the search (the final training comes on top).
    pub budget: Option<Duration>,
    /// Most trials, the base configuration included. With `budget` too, whichever comes first;
    /// at least one of them must be set.
    pub max_trials: Option<usize>,
    /// The dimensions searched.
    pub space: Vec<Dimension>,
    /// Most epochs per trial; `None`: the base configuration's `epochs`.
    pub max_epochs: Option<usize>,
    /// Early-stopping patience of the trials; `None`: the base configuration's
    /// `early_stopping_patience`, or 1 when that is 0.
    pub patience: Option<usize>,
    /// Earlier trials needed at an epoch before a trial can be pruned there.
    pub min_compared: usize,
}

impl TuneOptions {
    /// The default search ([`default_space`]) within `budget` and/or `max_trials`.
    pub fn new(budget: Option<Duration>, max_trials: Option<usize>) -> Self {
        TuneOptions {
            budget,
            max_trials,
            space: default_space(),
            max_epochs: None,
            patience: None,
            min_compared: 3,
        }
    }

    /// Checks the options against the base configuration, naming the first bad setting.
    pub fn validate(&self, base: &TwoTowerConfig) -> Result<()> {
        if self.budget.is_none() && self.max_trials.is_none() {
            return Err(Error::arg(
                "tune",
                "no bound",
                "needs a time budget (--tune DURATION) or a number of trials (--tune-trials N)",
            ));
        }
        if self.budget == Some(Duration::ZERO) {
            return Err(Error::arg("tune", "0s", "the time budget must be positive"));
        }
        if self.max_trials == Some(0) {
            return Err(Error::arg("tune-trials", 0, "must be at least 1"));
        }
        if self.max_epochs == Some(0) {
            return Err(Error::arg("max_epochs", 0, "must be at least 1"));
        }
        if self.patience == Some(0) {
            return Err(Error::arg("patience", 0, "must be at least 1"));
        }
        let mut names = BTreeSet::new();
        for d in &self.space {
            if TUNER_FIELDS.contains(&d.name.as_str()) {
                return Err(Error::arg(
                    "tune space",
                    &d.name,
                    "set by the tuner itself (epochs come from early stopping)",
                ));
            }
            if !names.insert(d.name.as_str()) {
                return Err(Error::arg("tune space", &d.name, "named twice"));
            }
            if d.values.is_empty() {
                return Err(Error::arg("tune space", &d.name, "has no values"));
            }
            for v in &d.values {
                let one = Settings::from([(d.name.clone(), v.clone())]);
                apply(base, &one)?;
            }
        }
        Ok(())
    }
}

/// Parses a duration such as `90s`, `10m`, `1h`, `1h30m` or `1.5h` (units `s`, `m`, `h`; a
/// positive total). Errors name the argument `--tune` and the value.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = |reason: &str| Error::arg("--tune", text, reason);
    const EXPECTED: &str = "expected a duration such as 90s, 10m, 1h or 1h30m";
    let s = text.trim();
    if s.is_empty() {
        return Err(bad(EXPECTED));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("missing unit (s, m or h), e.g. 90s"))?;
        let value: f64 = rest[..n].parse().map_err(|_| bad(EXPECTED))?;
        let unit_len = rest[n..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len() - n);
        let seconds = match &rest[n..n + unit_len] {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad(EXPECTED)),
        };
        total += value * seconds;
        rest = &rest[n + unit_len..];
    }
    if !(total > 0.0 && total.is_finite() && total < 1e9) {
        return Err(bad("must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// The configuration `base` with `settings` applied, validated (naming a bad field).
pub fn apply(base: &TwoTowerConfig, settings: &Settings) -> Result<TwoTowerConfig> {
    let mut json = canonical_json(base)?;
    let obj = json
        .as_object_mut()
        .ok_or_else(|| Error::Internal("a TwoTowerConfig is not a JSON object".into()))?;
    for (k, v) in settings {
        obj.insert(k.clone(), v.clone());
    }
    Ok(TwoTowerConfig::from_json(&json)?)
}

/// `cfg` as the JSON a config file holds (`f32` fields as their shortest decimal, `0.05` and not
/// `0.05000000074505806`, so they compare equal to the values of a [`Dimension`]).
fn canonical_json(cfg: &TwoTowerConfig) -> Result<Value> {
    let text = serde_json::to_string(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| Error::Internal(e.to_string()))
}

/// The base configuration's value of every dimension.
fn base_settings(base: &TwoTowerConfig, space: &[Dimension]) -> Result<Settings> {
    let json = canonical_json(base)?;
    space
        .iter()
        .map(|d| {
            json.get(&d.name)
                .cloned()
                .map(|v| (d.name.clone(), v))
                .ok_or_else(|| Error::arg("tune space", &d.name, "not a TwoTowerConfig field"))
        })
        .collect()
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Ran until early stopping or its last epoch.
    Complete,
    /// Stopped after an epoch below the median of the earlier trials at that epoch.
    Pruned,
    /// Stopped because the time budget ran out.
    Cut,
    /// Training failed (e.g. the loss diverged); `error` says why.
    Failed,
}

/// One trial of the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Its number (0: the base configuration).
    pub trial: usize,
    /// The value of every dimension.
    pub settings: Settings,
    /// How it ended.
    pub status: TrialStatus,
    /// Its best validation score (`None` when it failed).
    pub validation: Option<f64>,
    /// The epoch of that score (the epochs it would train).
    pub epochs: Option<usize>,
    /// The validation score after each epoch it ran.
    pub validation_per_epoch: Vec<f64>,
    /// Wall-clock seconds of the trial (training and validation).
    pub seconds: f64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Trial {
    /// Its best score up to epoch `epoch` (from 1), for comparing trials at the same epoch:
    /// `None` when it stopped before that epoch for another reason than having finished.
    fn best_up_to(&self, epoch: usize) -> Option<f64> {
        let s = &self.validation_per_epoch;
        let reached = s.len() >= epoch || (self.status == TrialStatus::Complete && !s.is_empty());
        reached.then(|| s[..epoch.min(s.len())].iter().copied().fold(f64::MIN, f64::max))
    }
}

/// The settings chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    /// The trial that won.
    pub trial: usize,
    /// Its settings, and `epochs`: the epoch count trained on the whole training part.
    pub settings: Settings,
    /// Its validation score.
    pub validation: f64,
    /// The full configuration trained (saved as the version's `config.json`).
    pub config: Value,
}

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoppedBy {
    /// `max_trials` trials ran.
    Trials,
    /// The time budget ran out.
    Budget,
    /// Every neighbour of the best settings was tried.
    Space,
}

/// What a search did: every trial and the choice (the `tuning` object of `recsys-train train`'s
/// output, also saved in the version's `data.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneReport {
    /// The validation metric maximised ([`TwoTowerConfig::validation_metric`]).
    pub metric: String,
    /// Validation cases scored after each epoch.
    pub validation_cases: usize,
    /// The seed of the search (the configuration's `seed`).
    pub seed: u64,
    /// The time budget in seconds, if any.
    pub budget_seconds: Option<f64>,
    /// The trial bound, if any.
    pub max_trials: Option<usize>,
    /// Most epochs per trial.
    pub max_epochs: usize,
    /// Early-stopping patience of the trials.
    pub patience: usize,
    /// The dimensions searched.
    pub space: Vec<Dimension>,
    /// Why the search stopped.
    pub stopped_by: StoppedBy,
    /// Wall-clock seconds of the search.
    pub seconds: f64,
    /// Every trial, in order.
    pub trials: Vec<Trial>,
    /// The choice.
    pub chosen: Chosen,
}

/// The outcome of [`tune`]: the configuration to train and the report.
#[derive(Debug, Clone)]
pub struct Tuned {
    /// The base configuration with the chosen settings, `epochs` = the chosen epoch count and
    /// early stopping off: what the normal training path trains on the whole training part.
    pub config: TwoTowerConfig,
    /// The search.
    pub report: TuneReport,
}

/// Scores a trial after each epoch, and stops it when pruned or out of time.
struct TrialValidator<'a> {
    inner: SplitValidator<'a>,
    scores: Vec<f64>,
    earlier: &'a [Trial],
    min_compared: usize,
    deadline: Option<Instant>,
    pruned: bool,
    cut: bool,
}

impl Validator for TrialValidator<'_> {
    fn score(&mut self, model: &TwoTowerModel) -> recsys_core::Result<f64> {
        let score = self.inner.score(model)?;
        self.scores.push(score);
        let epoch = self.scores.len();
        let best = self.scores.iter().copied().fold(f64::MIN, f64::max);
        let mut others: Vec<f64> = self.earlier.iter().filter_map(|t| t.best_up_to(epoch)).collect();
        if others.len() >= self.min_compared.max(1) {
            others.sort_by(|a, b| b.total_cmp(a));
            // The upper median: the trial must be in the better half to go on.
            self.pruned = best < others[(others.len() - 1) / 2];
        }
        self.cut = self.deadline.is_some_and(|d| Instant::now() >= d);
        Ok(score)
    }

    fn stop(&self) -> bool {
        self.pruned || self.cut
    }
}

/// Searches `opts.space` around `base` on the validation split `val` ([`validation_split`](crate::evaluate::validation_split):
/// what to train on, and the validation cases as its `test`) with `data`, the training data built
/// from it ([`crate::train::training_data`]`(ds, val)`). Trials are logged on stderr through
/// `progress`. See the [module documentation](self) for the search and its guarantees.
///
/// [`validation_split`](crate::evaluate::validation_split): crate::evaluate::validation_split
pub fn tune(
    val: &Split,
    data: &TrainingData,
    base: &TwoTowerConfig,
    backend: BackendKind,
    opts: &TuneOptions,
    progress: Progress,
) -> Result<Tuned> {
    base.validate()?;
    opts.validate(base)?;
    if val.test.is_empty() {
        return Err(Error::arg(
            "tune",
            "no validation cases",
            "the training data leaves no validation cases (leave-one-out needs users with 3+ interactions; \
             a time split needs new items in the last window of the training period)",
        ));
    }
    let max_epochs = opts.max_epochs.unwrap_or(base.epochs).max(1);
    let patience = opts.patience.unwrap_or(base.early_stopping_patience).max(1);
    let started = Instant::now();
    let deadline = opts.budget.map(|b| started + b);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(base.seed ^ 0x7475_6e65_7475_6e65);
    let mut trials: Vec<Trial> = Vec::new();
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut first_error: Option<Error> = None;
    let base_settings = base_settings(base, &opts.space)?;
    progress.summary(format!(
        "tune: searching {} on {} validation cases, {} dimension(s), up to {} epoch(s) per trial, {}",
        base.validation_metric,
        val.test.len(),
        opts.space.len(),
        max_epochs,
        bound_text(opts),
    ));
    let stopped_by = loop {
        if opts.max_trials.is_some_and(|n| trials.len() >= n) {
            break StoppedBy::Trials;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break StoppedBy::Budget;
        }
        let settings = if trials.is_empty() {
            base_settings.clone()
        } else if let Some(s) = first_dimension_next(&base_settings, &opts.space, &tried) {
            s
        } else {
            let incumbent = best_trial(&trials).map_or(&base_settings, |t| &t.settings);
            match propose(incumbent, &opts.space, &tried, &mut rng) {
                Some(s) => s,
                None => break StoppedBy::Space,
            }
        };
        tried.insert(key(&settings));
        let k = trials.len();
        let began = Instant::now();
        // Values are checked one by one up front; a combination the model refuses is a failed trial.
        let cfg = match apply(base, &settings) {
            Ok(cfg) => cfg.with_epochs(max_epochs).with_early_stopping_patience(patience),
            Err(e) => {
                let trial = failed(k, settings, Vec::new(), began, &e);
                first_error.get_or_insert(e);
                progress.summary(trial_line(&trial, &base.validation_metric, &base_settings));
                trials.push(trial);
                continue;
            }
        };
        let mut v = TrialValidator {
            inner: SplitValidator::new(val, data, &base.validation_metric, Progress::quiet()),
            scores: Vec::new(),
            earlier: &trials,
            min_compared: opts.min_compared,
            deadline,
            pruned: false,
            cut: false,
        };
        let fitted = fit(data, &cfg, backend, Progress::quiet(), Some(&mut v));
        let (pruned, cut, scores) = (v.pruned, v.cut, std::mem::take(&mut v.scores));
        let seconds = began.elapsed().as_secs_f64();
        let trial = match fitted {
            Ok((_, report)) => Trial {
                trial: k,
                settings,
                status: if cut {
                    TrialStatus::Cut
                } else if pruned {
                    TrialStatus::Pruned
                } else {
                    TrialStatus::Complete
                },
                validation: report
                    .best_epoch
                    .and_then(|e| report.validation_per_epoch.get(e - 1).copied()),
                epochs: report.best_epoch,
                validation_per_epoch: report.validation_per_epoch,
                seconds,
                error: None,
            },
            Err(e) => {
                let trial = failed(k, settings, scores, began, &e);
                first_error.get_or_insert(e);
                trial
            }
        };
        progress.summary(trial_line(&trial, &base.validation_metric, &base_settings));
        trials.push(trial);
    };
    let Some(best) = best_trial(&trials) else {
        return Err(first_error.unwrap_or_else(|| Error::Internal("the search ran no trial".into())));
    };
    let epochs = best
        .epochs
        .ok_or_else(|| Error::Internal("a scored trial without a best epoch".into()))?;
    let config = apply(base, &best.settings)?
        .with_epochs(epochs)
        .with_early_stopping_patience(0);
    let mut settings = best.settings.clone();
    settings.insert("epochs".into(), Value::from(epochs));
    let chosen = Chosen {
        trial: best.trial,
        settings,
        validation: best.validation.unwrap_or(f64::NAN),
        config: canonical_json(&config)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    progress.summary(format!(
        "tune: {} trial(s) in {seconds:.1}s (stopped by {stopped_by:?}); chose trial {} ({} {:.4}, {epochs} epoch(s)): {}",
        trials.len(),
        chosen.trial,
        base.validation_metric,
        chosen.validation,
        changes(&best.settings, &base_settings),
    ));
    let report = TuneReport {
        metric: base.validation_metric.clone(),
        validation_cases: val.test.len(),
        seed: base.seed,
        budget_seconds: opts.budget.map(|b| b.as_secs_f64()),
        max_trials: opts.max_trials,
        max_epochs,
        patience,
        space: opts.space.clone(),
        stopped_by,
        seconds,
        trials,
        chosen,
    };
    Ok(Tuned { config, report })
}

/// A trial that failed with `error`.
fn failed(trial: usize, settings: Settings, scores: Vec<f64>, began: Instant, error: &Error) -> Trial {
    Trial {
        trial,
        settings,
        status: TrialStatus::Failed,
        validation: None,
        epochs: None,
        validation_per_epoch: scores,
        seconds: began.elapsed().as_secs_f64(),
        error: Some(error.to_string()),
    }
}

/// The scored trial with the highest validation score (ties: the earliest).
fn best_trial(trials: &[Trial]) -> Option<&Trial> {
    trials
        .iter()
        .filter_map(|t| Some((t.validation?, t)))
        .fold(None, |best: Option<(f64, &Trial)>, (s, t)| match best {
            Some((b, _)) if s <= b => best,
            _ => Some((s, t)),
        })
        .map(|(_, t)| t)
}

/// A canonical text of settings (for "already tried").
fn key(settings: &Settings) -> String {
    serde_json::to_string(settings).unwrap_or_default()
}

/// The next settings: `incumbent` with one dimension (two, one time in three) changed to another
/// of its values, drawn from `rng` until untried (64 draws); then the first untried single change
/// in dimension order; `None` when every single change was tried.
/// The next untried value of the space's first dimension as the only change from the base
/// settings, if any: the first dimension (in [`default_space`], the user encoder, a change of
/// model rather than of a setting) has each of its values tried before the local search.
fn first_dimension_next(base: &Settings, space: &[Dimension], tried: &BTreeSet<String>) -> Option<Settings> {
    let dim = space.first()?;
    dim.values.iter().find_map(|v| {
        let mut s = base.clone();
        s.insert(dim.name.clone(), v.clone());
        (!tried.contains(&key(&s))).then_some(s)
    })
}

fn propose(
    incumbent: &Settings,
    space: &[Dimension],
    tried: &BTreeSet<String>,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Settings> {
    // Dimensions with another value to move to.
    let open: Vec<&Dimension> = space
        .iter()
        .filter(|d| d.values.iter().any(|v| Some(v) != incumbent.get(&d.name)))
        .collect();
    if open.is_empty() {
        return None;
    }
    for _ in 0..64 {
        let changes = if open.len() >= 2 && rng.random_range(0..3) == 0 {
            2
        } else {
            1
        };
        let mut s = incumbent.clone();
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < changes {
            let d = rng.random_range(0..open.len());
            if !picked.contains(&d) {
                picked.push(d);
            }
        }
        for &d in &picked {
            let dim = open[d];
            let others: Vec<&Value> = dim
                .values
                .iter()
                .filter(|v| Some(*v) != incumbent.get(&dim.name))
                .collect();
            s.insert(dim.name.clone(), others[rng.random_range(0..others.len())].clone());
        }
        if !tried.contains(&key(&s)) {
            return Some(s);
        }
    }
    open.iter().find_map(|dim| {
        dim.values.iter().find_map(|v| {
            let mut s = incumbent.clone();
            s.insert(dim.name.clone(), v.clone());
            (!tried.contains(&key(&s))).then_some(s)
        })
    })
}

/// `name=value` for each setting that differs from `base` (`defaults` when none does).
fn changes(settings: &Settings, base: &Settings) -> String {
    let diff: Vec<String> = settings
        .iter()
        .filter(|(k, v)| base.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if diff.is_empty() {
        "base settings".into()
    } else {
        diff.join(" ")
    }
}

fn bound_text(opts: &TuneOptions) -> String {
    match (opts.budget, opts.max_trials) {
        (Some(b), Some(n)) => format!("budget {:.0}s or {n} trial(s)", b.as_secs_f64()),
        (Some(b), None) => format!("budget {:.0}s", b.as_secs_f64()),
        (None, Some(n)) => format!("{n} trial(s)"),
        (None, None) => "no bound".into(),
    }
}

fn trial_line(t: &Trial, metric: &str, base: &Settings) -> String {
    let scores: Vec<String> = t.validation_per_epoch.iter().map(|s| format!("{s:.4}")).collect();
    let outcome = match (t.validation, t.epochs) {
        (Some(s), Some(e)) => format!("{metric} {s:.4} at epoch {e} [{}]", scores.join(", ")),
        _ => format!("failed: {}", t.error.as_deref().unwrap_or("?")),
    };
    format!(
        "tune: trial {} ({}): {outcome}, {:?}, {:.1}s",
        t.trial,
        changes(&t.settings, base),
        t.status,
        t.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_name_the_flag_and_value() {
        let secs = |s: &str| parse_duration(s).unwrap().as_secs_f64();
        assert_eq!(secs("90s"), 90.0);
        assert_eq!(secs("10m"), 600.0);
        assert_eq!(secs("1h"), 3600.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("1.5m"), 90.0);
        for bad in ["", "10", "10x", "m", "-5m", "0s", "1h-", "ten minutes", "1e3s"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("--tune") && e.contains(&format!("{bad:?}")), "{bad}: {e}");
            assert!(parse_duration(bad).unwrap_err().is_user_error());
        }
    }

    #[test]
    fn the_default_space_applies_to_the_defaults_and_bad_spaces_are_refused() {
        let base = TwoTowerConfig::new();
        let opts = TuneOptions::new(None, Some(3));
        opts.validate(&base).unwrap();
        // Every default is among the candidates, so trial 0 is a point of the space.
        let at_base = base_settings(&base, &opts.space).unwrap();
        for d in &opts.space {
            assert!(d.values.contains(&at_base[&d.name]), "{}: {}", d.name, at_base[&d.name]);
        }
        let cfg = apply(&base, &Settings::from([("temperature".into(), Value::from(0.1))])).unwrap();
        assert_eq!(cfg, base.clone().with_temperature(0.1));

        let refused = |space: Vec<Dimension>| {
            let mut o = TuneOptions::new(None, Some(3));
            o.space = space;
            o.validate(&base).unwrap_err().to_string()
        };
        assert!(refused(vec![Dimension::new("epochs", [1, 2])]).contains("epochs"));
        assert!(refused(vec![Dimension::new("temprature", [0.1])]).contains("temprature"));
        assert!(refused(vec![Dimension::new("temperature", [-1.0])]).contains("temperature"));
        assert!(
            refused(vec![Dimension {
                name: "temperature".into(),
                values: vec![]
            }])
            .contains("no values")
        );
        let e = TuneOptions::new(None, None).validate(&base).unwrap_err().to_string();
        assert!(e.contains("--tune-trials"), "{e}");
    }

    #[test]
    fn proposals_change_one_or_two_dimensions_and_never_repeat() {
        let space = vec![
            Dimension::new("a", [1, 2, 3]),
            Dimension::new("b", [1, 2]),
            Dimension::new("c", [1, 2, 3, 4]),
        ];
        let inc: Settings = [("a", 1), ("b", 1), ("c", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut tried = BTreeSet::from([key(&inc)]);
        let mut seq = Vec::new();
        while let Some(s) = propose(&inc, &space, &tried, &mut rng) {
            let changed = s.iter().filter(|(k, v)| inc[*k] != **v).count();
            assert!((1..=2).contains(&changed), "{s:?}");
            assert!(tried.insert(key(&s)), "repeated {s:?}");
            seq.push(s);
        }
        // Every single change (2 + 1 + 3) is reached before the search gives up.
        for (name, n) in [("a", 3), ("b", 2), ("c", 4)] {
            for v in 2..=n {
                let mut s = inc.clone();
                s.insert(name.into(), Value::from(v));
                assert!(tried.contains(&key(&s)), "{s:?}");
            }
        }
        // The same seed draws the same sequence.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut tried = BTreeSet::from([key(&inc)]);
        let again: Vec<Settings> = std::iter::from_fn(|| {
            let s = propose(&inc, &space, &tried, &mut rng)?;
            tried.insert(key(&s));
            Some(s)
        })
        .collect();
        assert_eq!(seq, again);
    }

    #[test]
    fn the_first_dimension_is_tried_alone_before_the_local_search() {
        let space = default_space();
        assert_eq!(space[0].name, "user_encoder");
        let base = base_settings(&TwoTowerConfig::new(), &space).unwrap();
        let mut tried = BTreeSet::from([key(&base)]);
        let next = first_dimension_next(&base, &space, &tried).expect("attention is untried");
        let changed: Vec<&String> = next.keys().filter(|k| next[*k] != base[*k]).collect();
        assert_eq!(changed, ["user_encoder"]);
        assert_eq!(next["user_encoder"], Value::from("attention"));
        tried.insert(key(&next));
        assert_eq!(first_dimension_next(&base, &space, &tried), None);
        // The configuration it makes is the attention encoder's.
        let cfg = apply(&TwoTowerConfig::new(), &next).unwrap();
        assert_eq!(cfg.user_encoder, recsys_core::model::UserEncoder::Attention);
    }

    fn trial(k: usize, status: TrialStatus, scores: &[f64]) -> Trial {
        let best = scores
            .iter()
            .enumerate()
            .fold(None, |b: Option<(usize, f64)>, (e, &s)| match b {
                Some((_, v)) if s <= v => b,
                _ => Some((e + 1, s)),
            });
        Trial {
            trial: k,
            settings: Settings::new(),
            status,
            validation: best.map(|b| b.1),
            epochs: best.map(|b| b.0),
            validation_per_epoch: scores.to_vec(),
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn trials_compare_at_the_same_epoch_and_the_earliest_best_wins() {
        let done = trial(0, TrialStatus::Complete, &[0.1, 0.3, 0.2]);
        assert_eq!(done.best_up_to(1), Some(0.1));
        assert_eq!(done.best_up_to(3), Some(0.3));
        // A finished trial carries its best forward; a pruned one is not compared beyond its end.
        assert_eq!(done.best_up_to(5), Some(0.3));
        let pruned = trial(1, TrialStatus::Pruned, &[0.05]);
        assert_eq!(pruned.best_up_to(2), None);
        let trials = vec![
            done.clone(),
            pruned,
            trial(2, TrialStatus::Complete, &[0.3]),
            trial(3, TrialStatus::Failed, &[]),
        ];
        assert_eq!(best_trial(&trials).unwrap().trial, 0, "a tie goes to the earlier trial");
        assert!(best_trial(&trials[3..]).is_none());
    }
}
