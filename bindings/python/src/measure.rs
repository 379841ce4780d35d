//! The measurement loop, one function per `recsys-train` command: `simulate` (the click and purchase
//! simulator through the real `Recommender`), `ope` (off-policy evaluation) and `ab_report` (an A/B
//! experiment's figures). Each releases the GIL and returns the report the command prints, as a dict.

use crate::convert::{from_py, parse_enum, report};
use crate::errors::{IntoPy, serve_error};
use pyo3::prelude::*;
use recsys_serve::simulate::{SimPolicy, SimulateOptions};
use recsys_train::abtest::{AbOptions, AnalysisOptions};
use recsys_train::ope::OpeCommand;
use recsys_train::progress::Progress;
use std::path::PathBuf;

/// Simulates ``requests`` recommendation requests of the users of the dataset ``data`` against the
/// registry's models, served by the real ``Recommender`` in process; a click model decides clicks
/// and purchases. ``policy``: ``"current"``, a version, or ``"popular"``. ``config``: a serving
/// configuration dict (an A/B split under ``"ab"``, ``"exploration"``, rules...). With
/// ``exposure_log`` / ``event_log`` directories the run writes the logs ``ab_report`` and ``ope``
/// read. Returns the report of ``recsys-train simulate`` (CTR, conversion and AOV with 95% intervals,
/// ``true_ctr``).
#[pyfunction]
#[pyo3(signature = (data, registry, *, policy="current", requests=10_000, seed=1, k=10, config=None, store=None, exposure_log=None, event_log=None, window_days=7.0, threads=None, quiet=true))]
#[allow(clippy::too_many_arguments)]
pub fn simulate<'py>(
    py: Python<'py>,
    data: PathBuf,
    registry: PathBuf,
    policy: &str,
    requests: u64,
    seed: u64,
    k: usize,
    config: Option<&Bound<'py, PyAny>>,
    store: Option<String>,
    exposure_log: Option<PathBuf>,
    event_log: Option<PathBuf>,
    window_days: f64,
    threads: Option<usize>,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut o = SimulateOptions::new(data, registry);
    o.policy = SimPolicy::parse(policy).map_err(serve_error)?;
    o.requests = requests;
    o.seed = seed;
    o.k = k;
    if let Some(c) = config {
        o.config = recsys_serve::ServeConfig::from_json(from_py("config", c)?).map_err(serve_error)?;
    }
    o.store = store;
    o.exposure_log = exposure_log;
    o.event_log = event_log;
    o.window_days = window_days;
    o.threads = threads;
    o.progress = Progress { quiet };
    let r = py
        .detach(|| recsys_serve::simulate::simulate(&o))
        .map_err(serve_error)?;
    report(py, &r)
}

/// Estimates the click-through rate ``policy`` would have had from a logged exposure log (and the
/// serving event files ``events``), or from an Open Bandit Dataset CSV with ``format="obd"``:
/// replay, IPS, self-normalised IPS and doubly robust, with bootstrap intervals and the effective
/// sample size. ``policy``: ``"uniform"``, or ``"current"`` / a version of ``registry`` (needs
/// ``data``). Returns the report of ``recsys-train ope``.
#[pyfunction]
#[pyo3(signature = (logs, policy, *, events=None, format="exposure", registry=None, data=None, window_minutes=30, clip=None, bootstrap=200, seed=42, folds=5, quiet=true))]
#[allow(clippy::too_many_arguments)]
pub fn ope<'py>(
    py: Python<'py>,
    logs: PathBuf,
    policy: &str,
    events: Option<PathBuf>,
    format: &str,
    registry: Option<PathBuf>,
    data: Option<PathBuf>,
    window_minutes: u64,
    clip: Option<f64>,
    bootstrap: u32,
    seed: u64,
    folds: u32,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut cmd = OpeCommand::new(logs, policy);
    cmd.events = events;
    cmd.format = parse_enum("format", format).py()?;
    cmd.registry = registry;
    cmd.data = data;
    cmd.window_minutes = window_minutes;
    cmd.options.clip = clip;
    cmd.options.bootstrap = bootstrap;
    cmd.options.seed = seed;
    cmd.options.folds = folds;
    cmd.progress = Progress { quiet };
    let r = py.detach(|| recsys_train::ope::ope_command(&cmd)).py()?;
    report(py, &r)
}

/// An A/B experiment's figures from the serving exposure log and event files: per variant users,
/// exposures, CTR, conversion, AOV and revenue per user with 95% intervals (users as the unit),
/// lifts against ``control``, the sample-ratio check (``expected``: ``{"control": 0.5, ...}``), the
/// conversion guardrail, optional always-valid intervals (``sequential=True``) and CUPED with a
/// pre-period (``cuped_pre``). Returns the report of ``recsys-train ab-report``.
#[pyfunction]
#[pyo3(signature = (exposures, events, *, window_minutes=30, purchase_window_minutes=None, control="control", expected=None, min_conversion=recsys_train::abtest::DEFAULT_MIN_CONVERSION, sequential=false, sequential_tau=recsys_train::abtest::DEFAULT_SEQUENTIAL_TAU, cuped_pre=None, quiet=true))]
#[allow(clippy::too_many_arguments)]
pub fn ab_report<'py>(
    py: Python<'py>,
    exposures: PathBuf,
    events: PathBuf,
    window_minutes: u64,
    purchase_window_minutes: Option<u64>,
    control: &str,
    expected: Option<Vec<(String, f64)>>,
    min_conversion: f64,
    sequential: bool,
    sequential_tau: f64,
    cuped_pre: Option<PathBuf>,
    quiet: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = AbOptions {
        window_minutes,
        purchase_window_minutes,
        analysis: AnalysisOptions {
            control: control.to_string(),
            expected,
            min_conversion,
            sequential_tau: sequential.then_some(sequential_tau),
        },
        cuped_pre,
        progress: Progress { quiet },
    };
    let r = py
        .detach(|| recsys_train::abtest::ab_report(&exposures, &events, &opts))
        .py()?;
    report(py, &r)
}
