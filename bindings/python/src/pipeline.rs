//! The offline pipeline, one function per `recsys-train` command. Each converts its arguments,
//! releases the GIL, calls the same library function as the command line and returns the same
//! report the command prints, as a dict.

use crate::convert::{from_py, parse_enum, report, to_py};
use crate::errors::IntoPy;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use recsys_core::features::FeatureConfig;
use recsys_core::model::TwoTowerConfig;
use recsys_train::dataset::Dataset;
use recsys_train::evaluate::SplitOptions;
use recsys_train::gates::Gates;
use recsys_train::import::{ColumnMap, EventTypeSource, ImportOptions, TsFormat};
use recsys_train::precompute::PrecomputeOptions;
use recsys_train::progress::Progress;
use recsys_train::train::TrainOptions;
use recsys_train::{Error, features, import};
use std::path::{Path, PathBuf};

fn progress(quiet: bool) -> Progress {
    Progress { quiet }
}

/// Writes a synthetic TechShop export (``items.parquet``, ``users.parquet``,
/// ``events/events-YYYY-MM-DD.parquet``) with planted structure into ``out``; the same seed gives
/// the same files. Returns the report ``recsys-train generate`` prints.
#[pyfunction]
#[pyo3(signature = (out, *, users=5_000, items=1_000, events_per_day=40_000, days=14, seed=42, start="2025-10-01", quiet=false))]
#[allow(clippy::too_many_arguments)]
pub fn generate<'py>(
    py: Python<'py>,
    out: PathBuf,
    users: u32,
    items: u32,
    events_per_day: u64,
    days: u32,
    seed: u64,
    start: &str,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = recsys_train::generate::GenerateConfig {
        users,
        items,
        events_per_day,
        days,
        seed,
        start_day: recsys_train::generate::GenerateConfig::start_day_of(start).py()?,
    };
    let r = py
        .detach(|| recsys_train::generate::generate(&out, &cfg, progress(quiet)))
        .py()?;
    report(py, &r)
}

/// Imports event files (CSV, zipped CSV, Parquet, Arrow IPC, user sequences) into the dataset
/// ``out``. The native half of ``techshop_recs.import_events`` (which also takes DataFrames).
#[pyfunction]
#[pyo3(signature = (events, out, map, *, items=None, users=None, ts_format="rfc3339", event_type=None, on_error="fail", format=None, quiet=false))]
#[allow(clippy::too_many_arguments)]
pub fn import_files<'py>(
    py: Python<'py>,
    events: Vec<PathBuf>,
    out: PathBuf,
    map: &str,
    items: Option<PathBuf>,
    users: Option<PathBuf>,
    ts_format: &str,
    event_type: Option<&str>,
    on_error: &str,
    format: Option<&str>,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut opts = ImportOptions::new(events, map.parse::<ColumnMap>().py()?);
    opts.items = items;
    opts.users = users;
    opts.ts_format = ts_format.parse::<TsFormat>().py()?;
    opts.event_type = event_type.map(str::parse::<EventTypeSource>).transpose().py()?;
    opts.on_error = parse_enum("on_error", on_error).py()?;
    opts.format = format.map(|f| parse_enum("format", f)).transpose().py()?;
    opts.progress = progress(quiet);
    let r = py.detach(|| import::import(&out, &opts)).py()?;
    report(py, &r)
}

/// Computes point-in-time user and item features of the dataset ``data`` into ``out``
/// (``user_features.parquet``, ``item_features.parquet``, ``features.json``): only events strictly
/// before ``as_of`` (milliseconds, ``YYYY-MM-DD``, RFC 3339 or ``"end"``) count. Returns the report.
#[pyfunction]
#[pyo3(signature = (data, out, *, as_of="end", quiet=false))]
pub fn compute_features<'py>(
    py: Python<'py>,
    data: PathBuf,
    out: PathBuf,
    as_of: &str,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let r = py
        .detach(|| {
            let ds = Dataset::open(&data)?;
            let as_of = features::parse_as_of(as_of, Some(&ds))?;
            features::compute_features_of(&ds, as_of, &out, FeatureConfig::default(), progress(quiet))
        })
        .py()?;
    report(py, &r)
}

/// `config`: None (defaults), a dict of TwoTowerConfig fields, or a JSON file.
fn model_config(config: Option<&Bound<'_, PyAny>>) -> PyResult<TwoTowerConfig> {
    match config {
        None => Ok(TwoTowerConfig::new()),
        Some(c) if c.is_instance_of::<pyo3::types::PyDict>() => {
            recsys_train::train::model_config_from_json(&from_py("config", c)?, Path::new("config")).py()
        }
        Some(c) => recsys_train::train::load_model_config(&c.extract::<PathBuf>()?).py(),
    }
}

/// `gates`: None (the ADR's), "off", a dict or a JSON file.
fn gates(gates: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Gates>> {
    match gates {
        None => Ok(Some(Gates::default())),
        Some(g) if g.is_instance_of::<PyString>() && g.extract::<String>()? == "off" => Ok(None),
        Some(g) if g.is_instance_of::<pyo3::types::PyDict>() => Gates::from_json(from_py("gates", g)?).map(Some).py(),
        Some(g) => Gates::load(&g.extract::<PathBuf>()?).map(Some).py(),
    }
}

fn split_options(protocol: &str, test_days: Option<u32>) -> PyResult<SplitOptions> {
    Ok(SplitOptions {
        protocol: parse_enum("protocol", protocol).py()?,
        test_days,
        ..Default::default()
    })
}

/// Trains the two-tower model on ``data``, evaluates it, publishes it to ``registry`` and promotes
/// it when the validation gates pass. ``config``: a dict (or JSON file) of TwoTowerConfig fields;
/// ``gates``: None for the ADR's thresholds, ``"off"``, a dict or a JSON file. Returns
/// ``{"version", "promoted", "metrics", "training", "gate_failure"?}`` (``training``: steps, loss
/// per epoch, samples/s, and with ``early_stopping_patience`` in ``config`` the validation scores
/// and the epoch chosen): a failed gate is not an exception
/// (``promoted`` is False and ``gate_failure`` names the metric; the previous model stays current).
/// ``item_index``: ``"auto"`` saves an HNSW graph of the item embeddings with the version for
/// catalogues of 20,000 items or more, ``"hnsw"`` always, ``"exact"`` never.
/// ``tune``: a time budget such as ``"10m"`` and/or ``tune_trials``: a number of trials; with
/// either, the settings are first tuned on a validation split inside the training period (as
/// ``recsys-train train --tune``) and the result carries ``"tuning": {"trials", "chosen", ...}``.
#[pyfunction]
#[pyo3(signature = (data, registry, *, config=None, gates=None, backend="cpu", protocol="time-split", test_days=None, item_index="auto", tune=None, tune_trials=None, quiet=false))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    data: PathBuf,
    registry: PathBuf,
    config: Option<&Bound<'py, PyAny>>,
    gates: Option<&Bound<'py, PyAny>>,
    backend: &str,
    protocol: &str,
    test_days: Option<u32>,
    item_index: &str,
    tune: Option<&str>,
    tune_trials: Option<usize>,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let budget = tune.map(recsys_train::tune::parse_duration).transpose().py()?;
    let opts = TrainOptions {
        data,
        registry,
        config: model_config(config)?,
        backend: parse_enum("backend", backend).py()?,
        gates: self::gates(gates)?,
        split: split_options(protocol, test_days)?,
        item_index: parse_enum("item_index", item_index).py()?,
        tune: (budget.is_some() || tune_trials.is_some())
            .then(|| recsys_train::tune::TuneOptions::new(budget, tune_trials)),
        progress: progress(quiet),
    };
    // The `ctr_sim` gate simulates traffic through the serving crate's Recommender, as the command does.
    let simulator = recsys_serve::simulate::GateSimulator {
        progress: opts.progress,
        ..Default::default()
    };
    let outcome = py
        .detach(|| recsys_train::train::train_and_register_with(&opts, Some(&simulator)))
        .py()?;
    report(py, &outcome)
}

/// Evaluates a model (``model``: a version of ``registry``, ``"current"``, or a model directory)
/// and the named ``baselines`` (``popularity``, ``category_popularity``, ``mf``) with full ranking on
/// ``data``. Returns ``{"protocol", "models": {name: {metric: value}}, "users_evaluated"}``.
#[pyfunction]
#[pyo3(signature = (data, *, model="current", registry=None, protocol="time-split", baselines=Vec::new(), test_days=None, quiet=false))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate<'py>(
    py: Python<'py>,
    data: PathBuf,
    model: &str,
    registry: Option<PathBuf>,
    protocol: &str,
    baselines: Vec<String>,
    test_days: Option<u32>,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let split = split_options(protocol, test_days)?;
    let v = py
        .detach(|| {
            recsys_train::train::evaluate_command(
                &data,
                model,
                registry.as_deref(),
                &split,
                &baselines,
                progress(quiet),
            )
        })
        .py()?;
    to_py(py, &v)
}

/// Pre-computes every user's top ``top`` candidates and every item's ``similar`` neighbours with
/// ``model`` (default: the registry's current version) into the candidate store ``store``
/// (``file:DIR``, ``redis://HOST:PORT[/DB]``, ``redis+cluster://...``). ``shard``: this worker's
/// share ``"I/N"``. ``index``: ``"auto"`` (the inverted file from 20,000 items, else the exact
/// scan), ``"exact"`` or ``"ivf"``; ``ivf_probes``: lists the inverted file scans per user.
/// Returns the report ``recsys-train precompute`` prints.
#[pyfunction]
#[pyo3(signature = (data, registry, store, *, model="current", top=500, similar=50, shard="0/1", index="auto", ivf_probes=112, ttl=7 * 24 * 3600, quiet=false))]
#[allow(clippy::too_many_arguments)]
pub fn precompute<'py>(
    py: Python<'py>,
    data: PathBuf,
    registry: PathBuf,
    store: String,
    model: &str,
    top: u32,
    similar: u32,
    shard: &str,
    index: &str,
    ivf_probes: usize,
    ttl: u64,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut opts = PrecomputeOptions::new(data, registry, store);
    opts.index = parse_enum("index", index).py()?;
    opts.ivf.probes = ivf_probes;
    opts.model = model.to_string();
    opts.top = top;
    opts.similar = similar;
    opts.shard = recsys_core::store::Shard::parse(shard).py()?;
    opts.ttl_seconds = ttl;
    opts.progress = progress(quiet);
    let r = py.detach(|| recsys_train::precompute::precompute(&opts)).py()?;
    report(py, &r)
}

/// The dataset's manifest summary (``recsys-train info``).
#[pyfunction]
pub fn dataset_info<'py>(py: Python<'py>, data: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let ds = py.detach(|| Dataset::open(&data)).py()?;
    report(py, &ds.manifest)
}

/// The item embeddings of a model (``version`` of ``registry``, ``"current"``, or a model directory)
/// as ``(rows, dim, bytes)``: little-endian float32, row i is the item of dense index i (the
/// dataset's ``items.parquet`` order). ``techshop_recs.model_item_embeddings`` wraps it in numpy.
#[pyfunction]
#[pyo3(signature = (registry, version="current"))]
pub fn item_embeddings_raw<'py>(
    py: Python<'py>,
    registry: PathBuf,
    version: &str,
) -> PyResult<(usize, usize, Bound<'py, PyBytes>)> {
    let (rows, dim, values) = py
        .detach(|| {
            let (model, _, _) = recsys_train::train::load_model(version, Some(&registry))?;
            Ok::<_, Error>((model.num_items(), model.dim(), model.item_embeddings()))
        })
        .py()?;
    let bytes = PyBytes::new_with(py, values.len() * 4, |buf| {
        for (chunk, v) in buf.chunks_exact_mut(4).zip(&values) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    })?;
    Ok((rows, dim, bytes))
}
