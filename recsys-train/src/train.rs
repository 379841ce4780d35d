//! `recsys-train train`: fit the two-tower model on a split of the dataset, evaluate it, publish
//! it to the registry and promote it when the validation gates pass.

use crate::dataset::Dataset;
use crate::evaluate::{
    EvalOptions, Metrics, Protocol, Scorer, Split, SplitOptions, TestCase, evaluate, histories, load_interactions,
    split, validation_split,
};
use crate::features::catalog_from;
use crate::gates::Gates;
use crate::progress::Progress;
use crate::registry::Registry;
use crate::{Error, Result};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use recsys_core::atomic::write_atomic;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::trainer::{TrainBackend, TrainReport, Validator};
use recsys_core::model::{
    HistoryEvent, ItemSide, TrainingData, TwoTowerConfig, UserContext, UserInputs, UserProfile, Vocab,
};
use recsys_core::retrieval::{HnswConfig, HnswIndex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which burn backend trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's `NdArray` CPU backend.
    #[default]
    Cpu,
    /// burn's CUDA backend (needs the `cuda` cargo feature and an NVIDIA GPU).
    Cuda,
}

/// Whether a model version carries an HNSW graph of its item embeddings ([`files::HNSW`]), which
/// `recsys-serve` opens memory-mapped for retrieval (the cold-start path) instead of scanning every
/// item per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemIndexKind {
    /// A graph for catalogues of at least [`recsys_core::retrieval::EXACT_MAX_ITEMS`] items; smaller
    /// ones are scanned exactly.
    #[default]
    Auto,
    /// Always build the graph.
    Hnsw,
    /// Never build one (exact scans only).
    Exact,
}

impl ItemIndexKind {
    /// Whether a catalogue of `items` items gets a graph.
    pub fn builds_graph(self, items: usize) -> bool {
        match self {
            ItemIndexKind::Auto => items >= recsys_core::retrieval::EXACT_MAX_ITEMS,
            ItemIndexKind::Hnsw => items > 0,
            ItemIndexKind::Exact => false,
        }
    }
}

pub use recsys_core::registry::{Vocabularies, files};

/// Model codes of optional strings: 1 + the dictionary index, 0 for unknown.
fn codes(values: &[Option<String>]) -> (Vec<u32>, Vec<String>) {
    let (codes, names) = crate::features::dictionary_codes(values);
    (codes.into_iter().map(|c| c.map_or(0, |c| c + 1)).collect(), names)
}

/// Builds the model inputs from a dataset and the split's training interactions (item
/// popularity is counted on `split.train` only, so nothing from the test period leaks in).
pub fn training_data(ds: &Dataset, split: &Split) -> (TrainingData, Vocabularies) {
    let (catalog, _) = catalog_from(&ds.items);
    let (category, categories) = codes(&ds.items.category);
    let (brand, brands) = codes(&ds.items.brand);
    let (ages_c, ages) = codes(&ds.users.age_bucket);
    let (regions_c, regions) = codes(&ds.users.region);
    let n_items = ds.items.len();
    let mut counts = vec![0u32; n_items];
    for it in &split.train {
        counts[it.item as usize] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0) as f32;
    let numeric = (0..n_items)
        .map(|i| {
            let pop = if max > 0.0 {
                (1.0 + counts[i] as f32).ln() / (1.0 + max).ln()
            } else {
                0.0
            };
            let rating = ds.items.avg_rating[i].map(|r| ((r - 3.0) / 2.0) as f32).unwrap_or(0.0);
            [pop, rating]
        })
        .collect();
    let price_bucket = ds
        .items
        .price
        .iter()
        .map(|p| p.map(|p| u32::from(catalog.price_bucket_of(p)) + 1).unwrap_or(0))
        .collect();
    let vocab = Vocab {
        items: n_items,
        categories: categories.len() + 1,
        brands: brands.len() + 1,
        price_buckets: catalog.price_bounds.len() + 2,
        ages: ages.len() + 1,
        regions: regions.len() + 1,
    };
    let items = ItemSide {
        category,
        brand,
        price_bucket,
        numeric,
    };
    let users = (0..ds.users.len())
        .map(|u| UserProfile {
            age: ages_c[u],
            region: regions_c[u],
        })
        .collect();
    let data = TrainingData {
        vocab,
        items,
        users,
        histories: histories(&split.train, ds.users.len()),
    };
    let vocabs = Vocabularies {
        categories,
        brands,
        ages,
        regions,
        price_bounds: catalog.price_bounds.clone(),
    };
    (data, vocabs)
}

/// Scores a test case with a trained two-tower model: the user embedding from the user's context
/// history before `as_of`, against precomputed item embeddings.
pub struct TwoTowerScorer<'a> {
    model: &'a TwoTowerModel,
    items: Vec<f32>,
    contexts: std::borrow::Cow<'a, [Vec<HistoryEvent>]>,
    profiles: &'a [UserProfile],
}

impl<'a> TwoTowerScorer<'a> {
    /// Precomputes item embeddings and the users' context histories.
    pub fn new(model: &'a TwoTowerModel, split: &Split, profiles: &'a [UserProfile]) -> Self {
        let contexts = histories(&split.context, split.num_users);
        TwoTowerScorer {
            model,
            items: model.item_embeddings(),
            contexts: contexts.into(),
            profiles,
        }
    }

    /// [`TwoTowerScorer::new`] with the per-user context histories already built
    /// ([`histories`] of the split's context).
    pub fn with_contexts(
        model: &'a TwoTowerModel,
        contexts: &'a [Vec<HistoryEvent>],
        profiles: &'a [UserProfile],
    ) -> Self {
        TwoTowerScorer {
            model,
            items: model.item_embeddings(),
            contexts: contexts.into(),
            profiles,
        }
    }
}

impl TwoTowerScorer<'_> {
    /// The case's user embedding into `out`; `false` when the model refuses the history.
    fn user(&self, case: &TestCase, out: &mut [f32]) -> bool {
        let p = self.profiles.get(case.user as usize).copied().unwrap_or_default();
        let history = self.contexts.get(case.user as usize).map(Vec::as_slice).unwrap_or(&[]);
        let ctx = UserContext {
            history,
            as_of: case.as_of,
            age: p.age,
            region: p.region,
        };
        let inputs = UserInputs::build(&ctx, &self.model.config);
        self.model.user_embedding(&inputs, out).is_ok()
    }
}

impl Scorer for TwoTowerScorer<'_> {
    fn score(&self, case: &TestCase, out: &mut [f32]) {
        self.score_batch(std::slice::from_ref(case), out);
    }

    /// One matrix product of the cases' user embeddings with all item embeddings (each item row
    /// is read once per block instead of once per case).
    fn score_batch(&self, cases: &[TestCase], out: &mut [f32]) {
        let d = self.model.dim();
        let n = self.items.len() / d.max(1);
        if cases.is_empty() || n == 0 || out.len() != cases.len() * n {
            out.fill(0.0);
            return;
        }
        let mut users = vec![0f32; cases.len() * d];
        let ok: Vec<bool> = cases
            .iter()
            .zip(users.chunks_exact_mut(d))
            .map(|(case, u)| self.user(case, u))
            .collect();
        let shapes = (
            ArrayView2::from_shape((cases.len(), d), &users),
            ArrayView2::from_shape((n, d), &self.items[..n * d]),
            ArrayViewMut2::from_shape((cases.len(), n), &mut *out),
        );
        let (Ok(u), Ok(items), Ok(mut o)) = shapes else {
            out.fill(0.0);
            return;
        };
        general_mat_mul(1.0, &u, &items.t(), 0.0, &mut o);
        for (row, ok) in out.chunks_exact_mut(n).zip(ok) {
            if !ok {
                row.fill(0.0);
            }
        }
    }
}

/// Trains with the chosen backend; with a `validator`, early stopping as
/// [`TwoTowerConfig::early_stopping_patience`] says.
pub fn fit(
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    backend: BackendKind,
    progress: Progress,
    validator: Option<&mut dyn Validator>,
) -> Result<(TwoTowerModel, TrainReport)> {
    let bar = progress.bar(0, "train");
    let lines = progress.lines();
    let started = std::time::Instant::now();
    let mut on_step = |step: usize, total: usize, loss: f32| {
        bar.set_length(total as u64);
        bar.set_position(step as u64);
        if step.is_multiple_of(20) {
            bar.set_message(format!("loss {loss:.3}"));
        }
        if lines && Progress::is_milestone(step, total) {
            eprintln!(
                "train: step {step}/{total}, loss {loss:.4}, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    };
    let backend = match backend {
        BackendKind::Cpu => TrainBackend::Cpu,
        BackendKind::Cuda => TrainBackend::Cuda,
    };
    let out = recsys_core::model::trainer::train_on(backend, data, cfg, &mut on_step, validator);
    bar.finish_and_clear();
    Ok(out?)
}

/// Scores a model on a validation split after each epoch ([`validation_split`]): the metric
/// [`TwoTowerConfig::validation_metric`] names, through the same evaluation as the test.
pub struct SplitValidator<'a> {
    split: &'a Split,
    data: &'a TrainingData,
    metric: String,
    progress: Progress,
    epoch: usize,
}

impl<'a> SplitValidator<'a> {
    /// A validator of `metric` on the cases of `split`, a [`validation_split`], whose context is
    /// what the model trains on: `data`, built from it by [`training_data`], supplies the users'
    /// demographics and context histories (built once, not once per epoch).
    pub fn new(split: &'a Split, data: &'a TrainingData, metric: &str, progress: Progress) -> Self {
        debug_assert_eq!(
            data.histories.iter().map(Vec::len).sum::<usize>(),
            split.context.len(),
            "the training histories are the validation split's context"
        );
        SplitValidator {
            split,
            data,
            metric: metric.to_string(),
            progress,
            epoch: 0,
        }
    }
}

impl Validator for SplitValidator<'_> {
    fn score(&mut self, model: &TwoTowerModel) -> recsys_core::Result<f64> {
        self.epoch += 1;
        let scorer = TwoTowerScorer::with_contexts(model, &self.data.histories, &self.data.users);
        let metrics = evaluate(self.split, &scorer, &EvalOptions::default());
        let score = metrics.get(&self.metric).copied().ok_or_else(|| {
            recsys_core::Error::invalid(
                "validation_metric",
                &self.metric,
                "not a metric the evaluation computes",
            )
        })?;
        self.progress.summary(format!(
            "train: epoch {}, validation {} {score:.4} ({} users)",
            self.epoch,
            self.metric,
            self.split.test.len()
        ));
        Ok(score)
    }
}

/// Trains on `sp` ([`fit`]); with early stopping ([`TwoTowerConfig::early_stopping_patience`] >
/// 0), first selects the epoch on a validation split carved from the training part: leave-one-out
/// keeps the best epoch's weights; a time split, whose validation window is part of the training
/// period, refits on the whole period for the best epoch count. The report carries the
/// selection (validation scores, best epoch).
pub fn fit_selected(
    ds: &Dataset,
    sp: &Split,
    data: &TrainingData,
    cfg: &TwoTowerConfig,
    backend: BackendKind,
    split_opts: &SplitOptions,
    progress: Progress,
) -> Result<(TwoTowerModel, TrainReport)> {
    if cfg.early_stopping_patience == 0 {
        return fit(data, cfg, backend, progress, None);
    }
    let val = validation_split(sp, split_opts, cfg.validation_users)?;
    if val.test.is_empty() {
        return Err(Error::arg(
            "early_stopping_patience",
            cfg.early_stopping_patience,
            "the training data leaves no validation cases (leave-one-out needs users with 3+ interactions; \
             a time split needs targets in the last window of the training period); set it to 0",
        ));
    }
    match sp.protocol {
        Protocol::LeaveOneOut => {
            let mut v = SplitValidator::new(&val, data, &cfg.validation_metric, progress);
            fit(data, cfg, backend, progress, Some(&mut v))
        }
        Protocol::TimeSplit => {
            let (data_v, _) = training_data(ds, &val);
            let mut v = SplitValidator::new(&val, &data_v, &cfg.validation_metric, progress);
            let (_, selection) = fit(&data_v, cfg, backend, progress, Some(&mut v))?;
            let best = selection.best_epoch.unwrap_or(cfg.epochs);
            progress.summary(format!(
                "early stopping chose {best} epoch(s) ({} {:.4}); refitting on the whole training period",
                cfg.validation_metric,
                selection
                    .validation_per_epoch
                    .get(best - 1)
                    .copied()
                    .unwrap_or(f64::NAN),
            ));
            let refit = cfg.clone().with_epochs(best).with_early_stopping_patience(0);
            let (model, mut report) = fit(data, &refit, backend, progress, None)?;
            report.validation_per_epoch = selection.validation_per_epoch;
            report.best_epoch = selection.best_epoch;
            report.validation_seconds = selection.validation_seconds;
            report.seconds += selection.seconds;
            Ok((model, report))
        }
    }
}

/// What data a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The dataset directory.
    pub dataset: String,
    /// Dataset name used for per-dataset gate overrides (the directory's file name).
    pub dataset_name: String,
    /// Evaluation protocol.
    pub protocol: Protocol,
    /// Time-split cut-off (UTC ms).
    pub cutoff_ms: Option<i64>,
    /// Earliest training interaction.
    pub train_min_ts: Option<i64>,
    /// Latest training interaction.
    pub train_max_ts: Option<i64>,
    /// Training interactions.
    pub train_rows: usize,
    /// Events in the dataset.
    pub dataset_events: u64,
    /// Users in the dataset.
    pub users: usize,
    /// Items in the dataset.
    pub items: usize,
    /// Training report.
    pub training: TrainReport,
    /// Backend used.
    pub backend: BackendKind,
    /// With `--tune`: the search that chose the configuration (its trials and the choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::tune::TuneReport>,
}

/// Options of [`train_and_register`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Dataset directory.
    pub data: PathBuf,
    /// Registry directory.
    pub registry: PathBuf,
    /// Model hyper-parameters.
    pub config: TwoTowerConfig,
    /// Backend.
    pub backend: BackendKind,
    /// Gates; `None` = off.
    pub gates: Option<Gates>,
    /// Split settings.
    pub split: SplitOptions,
    /// Whether the version gets an HNSW graph of its item embeddings.
    pub item_index: ItemIndexKind,
    /// Tune the configuration on the validation split first ([`crate::tune`]), starting from
    /// `config`; `None`: train `config` as given.
    pub tune: Option<crate::tune::TuneOptions>,
    /// Progress reporting.
    pub progress: Progress,
}

/// Builds a [`TwoTowerConfig`] from a JSON object of its fields (`--config FILE`, or a Python dict):
/// missing fields take their defaults, unknown fields and invalid values are refused.
/// `origin` names the source in errors (a file path, or `config` for an API argument).
pub fn model_config_from_json(given: &serde_json::Value, origin: &Path) -> Result<TwoTowerConfig> {
    if !given.is_object() {
        return Err(Error::data(origin, "expected a JSON object"));
    }
    Ok(TwoTowerConfig::from_json(given)?)
}

/// Reads a [`TwoTowerConfig`] from a JSON file (see [`model_config_from_json`]).
pub fn load_model_config(path: &Path) -> Result<TwoTowerConfig> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let given: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::data(path, e.to_string()))?;
    model_config_from_json(&given, path)
}

/// The JSON `recsys-train train` prints.
#[derive(Debug, Serialize)]
pub struct TrainOutcome {
    /// Registry version written.
    pub version: String,
    /// Whether it became `current`.
    pub promoted: bool,
    /// Its metrics.
    pub metrics: Metrics,
    /// The re-ranker fitted with it (`None`: too few positives; serving uses the fallback weights).
    pub reranker: Option<crate::reranker::RerankFitReport>,
    /// What training did: steps, loss per epoch, speed, and with early stopping the validation
    /// scores and the epoch chosen.
    pub training: TrainReport,
    /// With `--tune`: every trial of the search and the settings chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::tune::TuneReport>,
    /// The simulated CTRs the `ctr_sim` gate compared (when that gate is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctr_sim: Option<CtrSimScores>,
    /// Why it was not promoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_failure: Option<String>,
    /// The failed gate as an error (not serialised).
    #[serde(skip)]
    pub gate_error: Option<Error>,
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(path, |f| {
        use std::io::Write;
        f.write_all(&text).map_err(Error::io(path))
    })
}

/// What the `ctr_sim` gate measured: both versions on the same simulated traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtrSimScores {
    /// Simulated CTR of the new version.
    pub candidate: f64,
    /// Simulated CTR of the version that was current (none on a first training).
    pub current: Option<f64>,
    /// That version.
    pub current_version: Option<String>,
    /// Simulated requests per version.
    pub requests: u64,
    /// Seed of the traffic.
    pub seed: u64,
}

/// Scores registry versions on simulated traffic for the `ctr_sim` gate. recsys-train cannot run
/// the serving pipeline itself (recsys-serve depends on it); the `recsys-train` command passes
/// recsys-serve's click simulator, and an embedding program may pass its own.
pub trait CtrSimulator: Send + Sync {
    /// The CTR of registry `version` of `registry` serving simulated traffic on dataset `data`:
    /// `requests` requests drawn from `seed` (the same traffic for every version).
    fn simulated_ctr(&self, data: &Path, registry: &Path, version: &str, requests: u64, seed: u64) -> Result<f64>;
}

/// Trains, evaluates, publishes the version and promotes it when the gates pass (the previous
/// `current` keeps serving otherwise). Keeps the last 10 versions. Gates with `ctr_sim` need a
/// simulator: use [`train_and_register_with`].
pub fn train_and_register(opts: &TrainOptions) -> Result<TrainOutcome> {
    train_and_register_with(opts, None)
}

/// [`train_and_register`] with a simulator for the `ctr_sim` gate: after the metric gates pass,
/// the new version and the current one serve the same simulated traffic, and the new one is
/// promoted only when its CTR meets the gate.
pub fn train_and_register_with(opts: &TrainOptions, simulator: Option<&dyn CtrSimulator>) -> Result<TrainOutcome> {
    let ctr_gate = opts.gates.as_ref().and_then(|g| g.ctr_sim.clone());
    if ctr_gate.is_some() && simulator.is_none() {
        return Err(Error::arg(
            "gates",
            "ctr_sim",
            "the CTR simulation gate needs a simulator (the recsys-train command provides one)",
        ));
    }
    let ds = Dataset::open(&opts.data)?;
    let interactions = load_interactions(&ds)?;
    let sp = split(&interactions, ds.users.len(), ds.items.len(), &opts.split)?;
    let (data, vocabs) = training_data(&ds, &sp);
    let (config, tuning) = match &opts.tune {
        None => (opts.config.clone(), None),
        Some(tune) => {
            // The tuner sees the validation split and the training data built from it, never `sp`
            // (whose test cases only the final evaluation below reads).
            opts.config.validate()?;
            let val = validation_split(&sp, &opts.split, opts.config.validation_users)?;
            let (data_v, _) = training_data(&ds, &val);
            let tuned = crate::tune::tune(&val, &data_v, &opts.config, opts.backend, tune, opts.progress)?;
            (tuned.config, Some(tuned.report))
        }
    };
    let (model, report) = fit_selected(&ds, &sp, &data, &config, opts.backend, &opts.split, opts.progress)?;
    let scorer = TwoTowerScorer::new(&model, &sp, &data.users);
    let metrics = evaluate(&sp, &scorer, &EvalOptions::default());
    opts.progress.summary(format!(
        "trained on {} examples in {:.1}s ({:.0} samples/s); recall@20 {:.4}, ndcg@20 {:.4}, auc {:.4}",
        report.examples,
        report.seconds,
        report.samples_per_second,
        metrics.get("recall@20").copied().unwrap_or(f64::NAN),
        metrics.get("ndcg@20").copied().unwrap_or(f64::NAN),
        metrics.get("auc").copied().unwrap_or(f64::NAN),
    ));
    let reranker = crate::reranker::fit_reranker(
        &ds,
        &sp,
        &model,
        &data.users,
        &crate::reranker::RerankFitOptions::default(),
        opts.progress,
    )?;
    let hnsw = if opts.item_index.builds_graph(model.num_items()) {
        let bar = opts.progress.counter("hnsw");
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let index = HnswIndex::build(&model.item_embeddings(), model.dim(), &HnswConfig::default())?;
        bar.finish_and_clear();
        opts.progress.summary(format!(
            "hnsw graph of {} items built in {:.1}s",
            model.num_items(),
            started.elapsed().as_secs_f64()
        ));
        Some(index)
    } else {
        None
    };
    let dataset_name = opts
        .data
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_default();
    let info = DataInfo {
        dataset: opts.data.display().to_string(),
        dataset_name: dataset_name.clone(),
        protocol: sp.protocol,
        cutoff_ms: sp.cutoff_ms,
        train_min_ts: sp.train.first().map(|i| i.ts),
        train_max_ts: sp.train.last().map(|i| i.ts),
        train_rows: sp.train.len(),
        dataset_events: ds.manifest.num_events,
        users: ds.users.len(),
        items: ds.items.len(),
        training: report.clone(),
        backend: opts.backend,
        tuning: tuning.clone(),
    };
    let registry = Registry::open(&opts.registry)?;
    let staging = tempfile_dir(&opts.registry)?;
    let result = (|| -> Result<String> {
        let mpath = staging.join(files::MODEL);
        write_atomic(&mpath, |f| {
            let mut w = std::io::BufWriter::new(f);
            model.save(&mut w).map_err(|e| match e {
                recsys_core::Error::Io { kind, message, .. } => Error::io(&mpath)(std::io::Error::new(kind, message)),
                other => other.into(),
            })?;
            use std::io::Write;
            w.flush().map_err(Error::io(&mpath))
        })?;
        write_json(&staging.join(files::CONFIG), &config)?;
        write_json(&staging.join(files::METRICS), &metrics)?;
        write_json(&staging.join(files::VOCAB), &vocabs)?;
        write_json(&staging.join(files::DATA), &info)?;
        if let Some((r, _)) = &reranker {
            r.save(staging.join(files::RERANKER))?;
        }
        if let Some(index) = &hnsw {
            index.save(staging.join(files::HNSW))?;
        }
        let info_value = serde_json::to_value(&info).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(registry.publish(&staging, None, &metrics, info_value)?)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    let version = result?;
    let current_metrics = match registry.current()? {
        Some(v) => Some(registry.manifest(&v)?.metrics),
        None => None,
    };
    let mut gate = match &opts.gates {
        Some(g) => g.check(Some(&dataset_name), &metrics, current_metrics.as_ref()),
        None => Ok(()),
    };
    let mut ctr_sim = None;
    if let (Ok(()), Some(g), Some(sim)) = (&gate, &ctr_gate, simulator) {
        let current_version = registry.current()?;
        let candidate = sim.simulated_ctr(&opts.data, &opts.registry, &version, g.requests, g.seed)?;
        let current = match &current_version {
            Some(v) => Some(sim.simulated_ctr(&opts.data, &opts.registry, v, g.requests, g.seed)?),
            None => None,
        };
        opts.progress.summary(format!(
            "ctr_sim: {version} {candidate:.4}{}",
            match (&current_version, current) {
                (Some(v), Some(c)) => format!(", current {v} {c:.4}"),
                _ => String::new(),
            }
        ));
        gate = g.check(candidate, current);
        ctr_sim = Some(CtrSimScores {
            candidate,
            current,
            current_version,
            requests: g.requests,
            seed: g.seed,
        });
    }
    let outcome = match gate {
        Ok(()) => {
            registry.promote(&version)?;
            TrainOutcome {
                version,
                promoted: true,
                metrics,
                reranker: reranker.map(|r| r.1),
                training: report,
                tuning,
                ctr_sim,
                gate_failure: None,
                gate_error: None,
            }
        }
        Err(e @ Error::GateFailed { .. }) => TrainOutcome {
            version,
            promoted: false,
            metrics,
            reranker: reranker.map(|r| r.1),
            training: report,
            tuning,
            ctr_sim,
            gate_failure: Some(e.to_string()),
            gate_error: Some(e),
        },
        Err(e) => return Err(e),
    };
    registry.prune(10)?;
    Ok(outcome)
}

fn tempfile_dir(near: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(near).map_err(Error::io(near))?;
    let p = near.join(format!(".staging-{}", recsys_core::atomic::unique_token()));
    std::fs::create_dir_all(&p).map_err(Error::io(&p))?;
    Ok(p)
}

/// Loads a model version: `spec` is a directory holding `model.bin`, or a version of `registry`
/// (`current` for the promoted one); verified against its manifest
/// ([`recsys_core::registry::load_model`]), with the description of its training data.
pub fn load_model(spec: &str, registry: Option<&Path>) -> Result<(TwoTowerModel, DataInfo, PathBuf)> {
    let (model, dir) = recsys_core::registry::load_model(spec, registry)?;
    let info = read_data_info(&dir)?;
    Ok((model, info, dir))
}

/// The description of the dataset a model was trained on (its `data.json`), without loading or
/// verifying the model: `spec` as in [`load_model`].
pub fn model_data_info(spec: &str, registry: Option<&Path>) -> Result<DataInfo> {
    read_data_info(&recsys_core::registry::model_dir(spec, registry, false)?)
}

fn read_data_info(dir: &Path) -> Result<DataInfo> {
    let dpath = dir.join(files::DATA);
    serde_json::from_slice(&std::fs::read(&dpath).map_err(Error::io(&dpath))?)
        .map_err(|e| Error::data(&dpath, e.to_string()))
}

/// `recsys-train evaluate`: the model and the chosen baselines on one split, as one JSON object.
pub fn evaluate_command(
    data: &Path,
    model_spec: &str,
    registry: Option<&Path>,
    split_opts: &SplitOptions,
    baselines: &[String],
    progress: Progress,
) -> Result<serde_json::Value> {
    let ds = Dataset::open(data)?;
    let (model, info, _) = load_model(model_spec, registry)?;
    if model.num_items() != ds.items.len() {
        return Err(Error::arg(
            "model",
            model_spec,
            format!(
                "model knows {} items, the dataset {}",
                model.num_items(),
                ds.items.len()
            ),
        ));
    }
    let interactions = load_interactions(&ds)?;
    let sp = split(&interactions, ds.users.len(), ds.items.len(), split_opts)?;
    if sp.protocol != info.protocol {
        return Err(Error::arg(
            "protocol",
            format!("{:?}", sp.protocol),
            format!("the model was trained for {:?}", info.protocol),
        ));
    }
    if let (Some(cut), Some(max)) = (sp.cutoff_ms, info.train_max_ts)
        && max >= cut
    {
        return Err(Error::arg(
            "model",
            model_spec,
            "the model was trained on events at or after the test cut-off (leakage)",
        ));
    }

    let (data_in, _) = training_data(&ds, &sp);
    let opts = EvalOptions::default();
    let mut models = BTreeMap::new();
    let scorer = TwoTowerScorer::new(&model, &sp, &data_in.users);
    models.insert("two_tower".to_string(), evaluate(&sp, &scorer, &opts));
    for b in baselines {
        let m = match b.as_str() {
            "popularity" => evaluate(&sp, &crate::baselines::Popularity::fit(&sp), &opts),
            "category_popularity" => {
                let cats = crate::baselines::item_categories(&ds.items);
                evaluate(&sp, &crate::baselines::CategoryPopularity::fit(&sp, &cats), &opts)
            }
            "mf" | "als" => evaluate(&sp, &crate::baselines::Als::fit(&sp, &Default::default()), &opts),
            other => {
                return Err(Error::arg(
                    "baselines",
                    other,
                    "expected popularity, category_popularity or mf",
                ));
            }
        };
        models.insert(b.clone(), m);
    }
    progress.summary(format!("evaluated {} users", sp.test.len()));
    Ok(serde_json::json!({
        "protocol": match sp.protocol { Protocol::TimeSplit => "time-split", Protocol::LeaveOneOut => "leave-one-out" },
        "models": models,
        "users_evaluated": sp.test.len(),
    }))
}
