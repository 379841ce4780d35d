//! The `recsys-train` command line: one subcommand per offline pipeline stage.

use clap::{Parser, Subcommand};
use recsys_core::features::FeatureConfig;
use recsys_train::dataset::Dataset;
use recsys_train::import::{ColumnMap, EventTypeSource, ImportOptions, OnError, TsFormat};
use recsys_train::progress::Progress;
use recsys_train::read::InputFormat;
use recsys_train::{Error, Result, features, generate, import};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "recsys-train",
    version,
    about = "techshop-recs offline pipeline: generate, import, features"
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
    /// Import events (CSV, zipped CSV, Parquet, Arrow IPC, user sequences) into a dataset.
    Import {
        /// Event file(s) or directories of them (repeatable).
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<PathBuf>,
        /// Item catalogue (CSV, Parquet, Arrow or item-attribute JSON).
        #[arg(long)]
        items: Option<PathBuf>,
        /// User table.
        #[arg(long)]
        users: Option<PathBuf>,
        /// Column mapping: user=COL,item=COL,ts=COL[,event_type=COL,category=COL,price=COL,
        /// line_price=COL,quantity=COL,session=COL,rating=COL,device=COL,page=COL,age_bucket=COL,region=COL]
        #[arg(long)]
        map: String,
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
    /// Print a dataset's manifest summary.
    Info {
        /// Dataset directory.
        #[arg(long)]
        data: PathBuf,
    },
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
            let start_ms = import::parse_time_text(&start, &TsFormat::Rfc3339)
                .ok_or_else(|| Error::arg("start", &start, "expected YYYY-MM-DD"))?;
            let cfg = generate::GenerateConfig {
                users,
                items,
                events_per_day,
                days,
                seed,
                start_day: start_ms.div_euclid(recsys_core::schema::DAY_MS),
            };
            print_json(&generate::generate(&out, &cfg, progress)?)
        }
        Command::Import {
            events,
            items,
            users,
            map,
            ts_format,
            event_type,
            on_error,
            format,
            out,
        } => {
            let map: ColumnMap = map.parse()?;
            let mut opts = ImportOptions::new(events, map);
            opts.items = items;
            opts.users = users;
            opts.ts_format = ts_format.parse()?;
            opts.event_type = event_type.map(|e| e.parse::<EventTypeSource>()).transpose()?;
            opts.on_error = on_error;
            opts.format = format;
            opts.progress = progress;
            print_json(&import::import(&out, &opts)?)
        }
        Command::Features { data, as_of, out } => {
            let ds = Dataset::open(&data)?;
            let as_of = features::parse_as_of(&as_of, Some(&ds))?;
            drop(ds);
            let report = features::compute_features(&data, as_of, &out, FeatureConfig::default(), progress)?;
            print_json(&report)
        }
        Command::Info { data } => print_json(&Dataset::open(&data)?.manifest),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_user_error() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
