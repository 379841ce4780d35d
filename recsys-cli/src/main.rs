//! The `recsys-train` command line: one subcommand per offline pipeline stage, each a thin call of
//! a library function of recsys-train (or, for the measurement commands, recsys-serve).

use clap::{Parser, Subcommand};
use recsys_core::features::FeatureConfig;
use recsys_core::model::TwoTowerConfig;
use recsys_train::dataset::Dataset;
use recsys_train::evaluate::{Protocol, SplitOptions};
use recsys_train::gates::Gates;
use recsys_train::import::{ColumnMap, EventTypeSource, ImportOptions, OnError};
use recsys_train::precompute::{self, PrecomputeOptions};
use recsys_train::progress::Progress;
use recsys_train::read::InputFormat;
use recsys_train::registry::Registry;
use recsys_train::train::{self, BackendKind, ItemIndexKind, TrainOptions};
use recsys_train::tune::TuneOptions;
use recsys_train::{Error, Result, features, generate, import};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "recsys-train",
    version,
    about = "techshop-recs offline pipeline: generate, import, features, train, evaluate, registry, precompute"
)]
struct Cli {
    /// No progress bars or summaries on stderr (results still go to stdout as JSON).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic TechShop export (items, users, daily event files) with planted structure.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Number of users.
        #[arg(long, default_value_t = 5_000)]
        users: u32,
        /// Number of items.
        #[arg(long, default_value_t = 1_000)]
        items: u32,
        /// Events per day (the ADR's scale is 10,000,000).
        #[arg(long, default_value_t = 40_000)]
        events_per_day: u64,
        /// Number of days.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Random seed; the same seed gives the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First day (YYYY-MM-DD, UTC).
        #[arg(long, default_value = "2025-10-01")]
        start: String,
    },
    /// Import events (CSV, zipped CSV, Parquet, Arrow IPC, user sequences) into a dataset, and/or
    /// a serving exposure log (daily Parquet tables under DATA/exposures).
    Import {
        /// Event file(s) or directories of them (repeatable).
        #[arg(long, required_unless_present = "exposures", num_args = 1..)]
        events: Vec<PathBuf>,
        /// A serving exposure log (JSONL file or directory of daily files) to import into
        /// DATA/exposures, one Parquet table per day (days replaced, others kept).
        #[arg(long)]
        exposures: Option<PathBuf>,
        /// Item catalogue (CSV, Parquet, Arrow or item-attribute JSON).
        #[arg(long)]
        items: Option<PathBuf>,
        /// User table.
        #[arg(long)]
        users: Option<PathBuf>,
        /// Column mapping: user=COL,item=COL,ts=COL[,event_type=COL,category=COL,price=COL,
        /// line_price=COL,quantity=COL,session=COL,rating=COL,device=COL,page=COL,age_bucket=COL,region=COL]
        #[arg(long, required_unless_present = "exposures")]
        map: Option<String>,
        /// Timestamp format: rfc3339, unix, unix_ms or a strftime pattern such as %m/%d/%Y.
        #[arg(long, default_value = "rfc3339")]
        ts_format: String,
        /// Event type: a constant (view, click, add_to_cart, purchase) or a column name.
        #[arg(long)]
        event_type: Option<String>,
        /// What to do with a malformed row.
        #[arg(long, value_enum, default_value_t = OnError::Fail)]
        on_error: OnError,
        /// Input format (default: from each file name).
        #[arg(long, value_enum)]
        format: Option<InputFormat>,
        /// Dataset directory (created when missing; days in the input replace the same days).
        #[arg(long)]
        out: PathBuf,
    },
    /// Compute point-in-time user and item features.
    Features {
        /// Dataset directory.
        #[arg(long)]
        data: PathBuf,
        /// Cut-off: only events strictly before it count (ms, YYYY-MM-DD, RFC 3339 or `end`).
        #[arg(long)]
        as_of: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Train the two-tower model, evaluate it, publish it to the registry and promote it when the
    /// validation gates pass (a failed gate exits with status 3 and keeps the current model). The
    /// gates may include `ctr_sim`: the new and the current version serve the same simulated
    /// traffic (`simulate`).
    Train {
        /// Dataset directory.
        #[arg(long)]
        data: PathBuf,
        /// Registry directory (created when missing).
        #[arg(long)]
        registry: PathBuf,
        /// Hyper-parameters as JSON (fields of TwoTowerConfig; missing ones take their defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Training backend.
        #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
        backend: BackendKind,
        /// Validation gates as JSON, or `off`; the ADR's thresholds by default.
        #[arg(long)]
        gates: Option<String>,
        /// Evaluation protocol.
        #[arg(long, value_enum, default_value_t = Protocol::TimeSplit)]
        protocol: Protocol,
        /// Days at the end held out by the time split (default: a seventh of the span, 1 to 14).
        #[arg(long)]
        test_days: Option<u32>,
        /// HNSW graph of the item embeddings saved with the version: `auto` builds one for
        /// catalogues of 20,000 items or more.
        #[arg(long, value_enum, default_value_t = ItemIndexKind::Auto)]
        item_index: ItemIndexKind,
        /// Tune the settings on a validation split inside the training period for at most this
        /// long (e.g. 90s, 10m, 1h) before training the chosen ones; the test split is only
        /// read by the final evaluation. Starts from --config (or the defaults).
        #[arg(long, value_name = "DURATION", value_parser = parse_tune_budget)]
        tune: Option<std::time::Duration>,
        /// Tune with at most this many trials (the base settings count as one); with --tune,
        /// whichever bound comes first. Deterministic: the same trials and choice every run.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        tune_trials: Option<u32>,
    },
    /// Evaluate a model (and baselines) with full ranking; prints one JSON object.
    Evaluate {
        /// Dataset directory.
        #[arg(long)]
        data: PathBuf,
        /// A model directory, or a version (or `current`) of --registry.
        #[arg(long)]
        model: String,
        /// Registry to look versions up in.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Evaluation protocol (must match the model's).
        #[arg(long, value_enum, default_value_t = Protocol::TimeSplit)]
        protocol: Protocol,
        /// Baselines to evaluate beside the model: popularity, category_popularity, mf.
        #[arg(long, value_delimiter = ',')]
        baselines: Vec<String>,
        /// Days at the end held out by the time split.
        #[arg(long)]
        test_days: Option<u32>,
    },
    /// Inspect and switch the model registry.
    Registry {
        /// Registry directory.
        #[arg(long)]
        registry: PathBuf,
        #[command(subcommand)]
        action: RegistryAction,
    },
    /// Pre-compute every user's top candidates and every item's neighbours into a candidate store.
    Precompute {
        /// Dataset directory (histories, purchases, ids).
        #[arg(long)]
        data: PathBuf,
        /// Model registry.
        #[arg(long)]
        registry: PathBuf,
        /// Store URL: file:DIR, redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,HOST:PORT,...
        #[arg(long)]
        store: String,
        /// Model version (default: the registry's current one).
        #[arg(long, default_value = "current")]
        model: String,
        /// Candidates per user.
        #[arg(long, default_value_t = 500)]
        top: u32,
        /// Similar items per item.
        #[arg(long, default_value_t = 50)]
        similar: u32,
        /// This worker's share of the users and items, I/N (N workers split the work; the version
        /// becomes active when the last one finishes).
        #[arg(long, default_value = "0/1")]
        shard: String,
        /// The index answering the top-N queries: auto (the inverted file for catalogues of
        /// 20,000 items or more, else exact), exact, or ivf.
        #[arg(long, value_enum, default_value_t = precompute::PrecomputeIndex::Auto)]
        index: precompute::PrecomputeIndex,
        /// Lists the inverted file scans per query (more: better recall, slower).
        #[arg(long, default_value_t = recsys_core::retrieval::IvfConfig::default().probes)]
        ivf_probes: usize,
        /// Redis key time to live in seconds.
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        ttl: u64,
        /// Do not publish the online feature snapshot with the version (shard 0 publishes it by
        /// default; serving without a dataset directory needs it).
        #[arg(long)]
        no_features: bool,
    },
    /// Inspect a candidate store: versions, the active one, one user's or item's list.
    Store {
        /// Store URL: file:DIR, redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,...
        #[arg(long)]
        store: String,
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Off-policy evaluation: estimate a policy's CTR from logged exposures and clicks (replay, IPS,
    /// self-normalised IPS, direct method, doubly robust; bootstrap intervals, effective sample size,
    /// per position).
    Ope {
        /// Exposure log v2 (file or directory of daily files), or an Open Bandit Dataset CSV.
        #[arg(long)]
        logs: PathBuf,
        /// Serving event CSV files (file or directory): clicks on shown items are the rewards.
        #[arg(long)]
        events: Option<PathBuf>,
        /// The policy to evaluate: `uniform`, or `current` / a model version of --registry
        /// (exposure logs).
        #[arg(long)]
        policy: String,
        /// Format of --logs.
        #[arg(long, value_enum, default_value_t = recsys_train::ope::LogFormat::Exposure)]
        format: recsys_train::ope::LogFormat,
        /// Model registry (model policies).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Dataset directory with the users' histories (model policies).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Events without a request id count for the same user's exposure of the item at most this
        /// many minutes earlier.
        #[arg(long, default_value_t = 30)]
        window_minutes: u64,
        /// Clip importance weights at this value.
        #[arg(long)]
        clip: Option<f64>,
        /// Bootstrap replicates of the 95% intervals (0: none).
        #[arg(long, default_value_t = 200)]
        bootstrap: u32,
        /// Seed of the bootstrap and of the reward model's folds.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Cross-fitting folds of the doubly robust estimator's reward model.
        #[arg(long, default_value_t = 5)]
        folds: u32,
    },
    /// An A/B experiment's figures per variant from recsys-serve's exposure log and event CSV
    /// files: CTR, conversion, AOV and revenue per user with 95% intervals (users as the unit),
    /// lifts against the control, the sample-ratio check and the conversion guardrail.
    AbReport {
        /// The exposure log: a JSONL file or a directory of daily files (`exposure_log` of the
        /// serving config).
        #[arg(long)]
        exposures: PathBuf,
        /// The event CSV file or directory (`event_log` of the serving config).
        #[arg(long)]
        events: PathBuf,
        /// A click counts for an exposure at most this many minutes earlier.
        #[arg(long, default_value_t = 30)]
        window_minutes: u64,
        /// A purchase counts for the user's latest exposure at most this many minutes earlier
        /// (default: --window-minutes).
        #[arg(long)]
        purchase_window_minutes: Option<u64>,
        /// The variant the others are compared with.
        #[arg(long, default_value = "control")]
        control: String,
        /// Expected share of users per variant for the sample-ratio check, e.g.
        /// `control=0.95,candidate=0.05` (default: equal shares of the variants seen).
        #[arg(long)]
        expected: Option<String>,
        /// Conversion guardrail: each variant's conversion must reach this (ADR: 3.0%).
        #[arg(long, default_value_t = recsys_train::abtest::DEFAULT_MIN_CONVERSION)]
        min_conversion: f64,
        /// Add always-valid (sequential) intervals to the lifts, for looking every day.
        #[arg(long)]
        sequential: bool,
        /// Mixing standard deviation of the sequential test, on the relative lift.
        #[arg(long, default_value_t = recsys_train::abtest::DEFAULT_SEQUENTIAL_TAU)]
        sequential_tau: f64,
        /// Events of a period before the experiment (CSV file or directory): CUPED-adjusted CTR
        /// and revenue per user.
        #[arg(long)]
        cuped_pre: Option<PathBuf>,
    },
    /// Simulated shoppers served by the real recommender in process: the click model of the data
    /// decides clicks, add-to-carts and purchases on what it shows; prints CTR, conversion, AOV and
    /// revenue per session with 95% intervals, and the true CTR.
    Simulate {
        /// Dataset directory (users, catalogue; the click model is rebuilt from it).
        #[arg(long)]
        data: PathBuf,
        /// Model registry.
        #[arg(long)]
        registry: PathBuf,
        /// What serves: `current`, a registry version, or `popular` (no personalisation).
        #[arg(long, default_value = "current")]
        policy: String,
        /// Recommendation requests to simulate.
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
        /// Seed: the same seed gives the same traffic.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Slots per response.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Serving configuration (recsys-serve's JSON: an A/B split, exploration, rules...).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Candidate store URL (default: candidates from the model).
        #[arg(long)]
        store: Option<String>,
        /// Write the exposure log into this directory (for `ab-report`, `ope`).
        #[arg(long)]
        exposure_log: Option<PathBuf>,
        /// Write the event log into this directory.
        #[arg(long)]
        event_log: Option<PathBuf>,
        /// Days the simulated sessions spread over, from the end of the data.
        #[arg(long, default_value_t = 7.0)]
        window_days: f64,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Print a dataset's manifest summary.
    Info {
        /// Dataset directory.
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// The complete versions and the active one.
    Versions,
    /// Make a complete version active.
    Activate {
        /// Version to activate.
        version: String,
    },
    /// One user's candidates (--user) or one item's neighbours (--item) in the active version.
    Get {
        /// User id.
        #[arg(long, conflicts_with = "item", required_unless_present = "item")]
        user: Option<String>,
        /// Item id.
        #[arg(long)]
        item: Option<String>,
        /// How many entries to print.
        #[arg(long, default_value_t = 20)]
        k: usize,
    },
}

#[derive(Subcommand)]
enum RegistryAction {
    /// List the versions (JSON array).
    List,
    /// Verify a version's checksums and make it current.
    Promote {
        /// Version to promote.
        version: String,
    },
    /// Switch back to the previously promoted version.
    Rollback,
}

/// `--tune DURATION` through [`recsys_train::tune::parse_duration`]; clap's error then names
/// the flag and the value.
fn parse_tune_budget(text: &str) -> std::result::Result<std::time::Duration, String> {
    recsys_train::tune::parse_duration(text).map_err(|e| match e {
        Error::InvalidArgument { reason, .. } => reason,
        e => e.to_string(),
    })
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let progress = Progress { quiet: cli.quiet };
    match cli.command {
        Command::Generate {
            out,
            users,
            items,
            events_per_day,
            days,
            seed,
            start,
        } => {
            let cfg = generate::GenerateConfig {
                users,
                items,
                events_per_day,
                days,
                seed,
                start_day: generate::GenerateConfig::start_day_of(&start)?,
            };
            print_json(&generate::generate(&out, &cfg, progress)?)
        }
        Command::Import {
            events,
            exposures,
            items,
            users,
            map,
            ts_format,
            event_type,
            on_error,
            format,
            out,
        } => {
            let mut report = serde_json::Map::new();
            if !events.is_empty() {
                let map = map.ok_or_else(|| recsys_train::Error::arg("--map", "", "required with --events"))?;
                let map: ColumnMap = map.parse()?;
                let mut opts = ImportOptions::new(events, map);
                opts.items = items;
                opts.users = users;
                opts.ts_format = ts_format.parse()?;
                opts.event_type = event_type.map(|e| e.parse::<EventTypeSource>()).transpose()?;
                opts.on_error = on_error;
                opts.format = format;
                opts.progress = progress;
                if let serde_json::Value::Object(m) = serde_json::to_value(import::import(&out, &opts)?)
                    .map_err(|e| recsys_train::Error::Internal(e.to_string()))?
                {
                    report = m;
                }
            }
            if let Some(log) = exposures {
                let x = recsys_train::exposures::import_exposures(&out, &log, progress)?;
                report.insert(
                    "exposures".into(),
                    serde_json::to_value(x).map_err(|e| recsys_train::Error::Internal(e.to_string()))?,
                );
            }
            print_json(&report)
        }
        Command::Features { data, as_of, out } => {
            let ds = Dataset::open(&data)?;
            let as_of = features::parse_as_of(&as_of, Some(&ds))?;
            let report = features::compute_features_of(&ds, as_of, &out, FeatureConfig::default(), progress)?;
            print_json(&report)
        }
        Command::Simulate {
            data,
            registry,
            policy,
            requests,
            seed,
            k,
            config,
            store,
            exposure_log,
            event_log,
            window_days,
            threads,
        } => {
            use recsys_serve::simulate::{self, SimPolicy, SimulateOptions, into_train_error};
            let mut o = SimulateOptions::new(data, registry);
            o.policy = SimPolicy::parse(&policy).map_err(into_train_error)?;
            o.requests = requests;
            o.seed = seed;
            o.k = k;
            if let Some(p) = &config {
                o.config = recsys_serve::ServeConfig::load(p).map_err(into_train_error)?;
            }
            o.store = store;
            o.exposure_log = exposure_log;
            o.event_log = event_log;
            o.window_days = window_days;
            o.threads = threads;
            o.progress = progress;
            print_json(&simulate::simulate(&o).map_err(into_train_error)?)
        }
        Command::Info { data } => print_json(&Dataset::open(&data)?.manifest),
        Command::Ope {
            logs,
            events,
            policy,
            format,
            registry,
            data,
            window_minutes,
            clip,
            bootstrap,
            seed,
            folds,
        } => {
            let mut cmd = recsys_train::ope::OpeCommand::new(logs, policy);
            cmd.events = events;
            cmd.format = format;
            cmd.registry = registry;
            cmd.data = data;
            cmd.window_minutes = window_minutes;
            cmd.options.clip = clip;
            cmd.options.bootstrap = bootstrap;
            cmd.options.seed = seed;
            cmd.options.folds = folds;
            cmd.progress = progress;
            print_json(&recsys_train::ope::ope_command(&cmd)?)
        }
        Command::AbReport {
            exposures,
            events,
            window_minutes,
            purchase_window_minutes,
            control,
            expected,
            min_conversion,
            sequential,
            sequential_tau,
            cuped_pre,
        } => {
            use recsys_train::abtest::{AbOptions, AnalysisOptions, ab_report, parse_expected};
            if !(min_conversion.is_finite() && (0.0..=1.0).contains(&min_conversion)) {
                return Err(Error::arg("--min-conversion", min_conversion, "must be in [0, 1]"));
            }
            if !(sequential_tau.is_finite() && sequential_tau > 0.0) {
                return Err(Error::arg("--sequential-tau", sequential_tau, "must be positive"));
            }
            let opts = AbOptions {
                window_minutes,
                purchase_window_minutes,
                analysis: AnalysisOptions {
                    control,
                    expected: expected.as_deref().map(parse_expected).transpose()?,
                    min_conversion,
                    sequential_tau: sequential.then_some(sequential_tau),
                },
                cuped_pre,
                progress,
            };
            print_json(&ab_report(&exposures, &events, &opts)?)
        }
        Command::Train {
            data,
            registry,
            config,
            backend,
            gates,
            protocol,
            test_days,
            item_index,
            tune,
            tune_trials,
        } => {
            let config = match config {
                Some(p) => train::load_model_config(&p)?,
                None => TwoTowerConfig::new(),
            };
            let gates = match gates.as_deref() {
                Some("off") => None,
                Some(p) => Some(Gates::load(std::path::Path::new(p))?),
                None => Some(Gates::default()),
            };
            let split = SplitOptions {
                protocol,
                test_days,
                ..Default::default()
            };
            let opts = TrainOptions {
                data,
                registry,
                config,
                backend,
                gates,
                split,
                item_index,
                tune: (tune.is_some() || tune_trials.is_some())
                    .then(|| TuneOptions::new(tune, tune_trials.map(|n| n as usize))),
                progress,
            };
            let simulator = recsys_serve::simulate::GateSimulator {
                progress,
                ..Default::default()
            };
            let mut outcome = train::train_and_register_with(&opts, Some(&simulator))?;
            print_json(&outcome)?;
            match outcome.gate_error.take() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        Command::Evaluate {
            data,
            model,
            registry,
            protocol,
            baselines,
            test_days,
        } => {
            let split = SplitOptions {
                protocol,
                test_days,
                ..Default::default()
            };
            let v = train::evaluate_command(&data, &model, registry.as_deref(), &split, &baselines, progress)?;
            print_json(&v)
        }
        Command::Precompute {
            data,
            registry,
            store,
            model,
            top,
            similar,
            shard,
            index,
            ivf_probes,
            ttl,
            no_features,
        } => {
            let mut opts = PrecomputeOptions::new(data, registry, store);
            opts.features = !no_features;
            opts.index = index;
            opts.ivf.probes = ivf_probes;
            opts.model = model;
            opts.top = top;
            opts.similar = similar;
            opts.shard = recsys_core::store::Shard::parse(&shard)?;
            opts.ttl_seconds = ttl;
            opts.progress = progress;
            print_json(&precompute::precompute(&opts)?)
        }
        Command::Store { store, action } => {
            let store = recsys_core::store::open_store(&store)?;
            match action {
                StoreAction::Versions => print_json(&precompute::store_versions(store.as_ref())?),
                StoreAction::Activate { version } => {
                    store.activate(&version)?;
                    print_json(&serde_json::json!({ "active": version }))
                }
                StoreAction::Get { user, item, k } => {
                    let key = match (&user, &item) {
                        (Some(u), _) => precompute::StoreKey::User(u),
                        (None, Some(i)) => precompute::StoreKey::Item(i),
                        (None, None) => unreachable!("clap requires --user or --item"),
                    };
                    print_json(&precompute::store_get(store.as_ref(), key, k)?)
                }
            }
        }
        Command::Registry { registry, action } => {
            if !registry.is_dir() {
                return Err(Error::arg("registry", registry.display(), "not a registry directory"));
            }
            let reg = Registry::open(&registry)?;
            match action {
                RegistryAction::List => print_json(&reg.list()?),
                RegistryAction::Promote { version } => {
                    reg.promote(&version)?;
                    print_json(&serde_json::json!({ "current": reg.current()? }))
                }
                RegistryAction::Rollback => {
                    let v = reg.rollback()?;
                    print_json(&serde_json::json!({ "current": v }))
                }
            }
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::GateFailed { .. } => ExitCode::from(3),
                e if e.is_user_error() => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}
