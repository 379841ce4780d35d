//! `recsys-serve`: the HTTP service.
//!
//! ```text
//! recsys-serve --registry DIR --store file:DIR|redis://HOST:PORT --listen 127.0.0.1:8080 \
//!     [--data DIR] [--admin-token-file FILE] [--config FILE]
//! ```
//!
//! The admin token is best given as the environment variable `RECSYS_ADMIN_TOKEN` or in a file
//! (`--admin-token-file`, first line): `--admin-token TOKEN` also works, but any user of the machine
//! can read a command line in the process list.
//!
//! SIGTERM or Ctrl-C shuts it down gracefully: no new connections, the requests in flight finish,
//! then the exposure log is flushed.

use clap::Parser;
use recsys_serve::http::{AppState, router, serve};
use recsys_serve::{Recommender, RecommenderOptions, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "recsys-serve",
    version,
    about = "techshop-recs online recommendation service"
)]
struct Cli {
    /// Model registry (`recsys-train train --registry`); its `current` version serves.
    #[arg(long)]
    registry: PathBuf,
    /// Candidate store: `file:DIR`, `redis://HOST:PORT[/DB]` or `redis+cluster://...`. The online
    /// features come from the snapshot `recsys-train precompute` published there with the model's
    /// version. With Redis, session state is shared there by every replica.
    #[arg(long)]
    store: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Warm the online features from this dataset directory instead of the store's snapshot (needs a
    /// build with the `dataset` feature; such a build also falls back to the dataset the current
    /// model was trained on when the store has no snapshot).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Bearer token of the admin routes; admin routes are refused without one. Prefer the
    /// environment variable RECSYS_ADMIN_TOKEN or --admin-token-file: a command line is visible to
    /// every user of the machine in the process list.
    #[arg(
        long,
        env = "RECSYS_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    admin_token: Option<String>,
    /// A file whose first line is the admin routes' bearer token (e.g. a mounted Kubernetes secret).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Bearer token of `POST /api/v1/events`: with one, only its holders may post events (the
    /// storefront's backend, say) and the per-client limits of `http.events` do not apply to them;
    /// without one, anyone may post within those limits. Prefer the environment variable
    /// RECSYS_EVENTS_TOKEN or --events-token-file to the command line.
    #[arg(
        long,
        env = "RECSYS_EVENTS_TOKEN",
        hide_env_values = true,
        conflicts_with = "events_token_file"
    )]
    events_token: Option<String>,
    /// A file whose first line is the bearer token of `POST /api/v1/events`.
    #[arg(long)]
    events_token_file: Option<PathBuf>,
    /// Serving configuration (JSON; see recsys-serve/src/config.rs).
    #[arg(long)]
    config: Option<PathBuf>,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A token from the first line of `file`, else `given` (the flag or its environment variable);
/// an unreadable file is exit status 2 naming `flag`.
fn token_of(flag: &str, file: Option<&std::path::Path>, given: &Option<String>) -> Result<Option<String>, ExitCode> {
    match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Ok(text.lines().next().map(|l| l.trim().to_string())),
            Err(e) => {
                eprintln!("error: cannot read {flag} {}: {e}", path.display());
                Err(ExitCode::from(2))
            }
        },
        None => Ok(given.clone()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let admin_token = match token_of("--admin-token-file", cli.admin_token_file.as_deref(), &cli.admin_token) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let events_token = match token_of(
        "--events-token-file",
        cli.events_token_file.as_deref(),
        &cli.events_token,
    ) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let config = match &cli.config {
        Some(p) => match ServeConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => ServeConfig::default(),
    };
    let options = RecommenderOptions {
        registry: cli.registry.clone(),
        data: cli.data.clone(),
        store: cli.store.clone(),
        config,
        model: None,
        popular_only: false,
    };
    let rec = match tokio::task::spawn_blocking(move || Recommender::open(options)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(if e.is_user_error() { 2 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    if let Ok(s) = rec.status() {
        tracing::info!(
            model = %s.model_version,
            store_version = ?s.store_version,
            items = s.items,
            users = s.users,
            "listening on http://{addr}"
        );
    }
    // One line on stdout that scripts and tests wait for.
    println!("listening on http://{addr}");
    let handle = rec.clone();
    let limits = rec.config().http.clone();
    let metrics = std::sync::Arc::clone(rec.metrics());
    let app = router(AppState::new(rec, admin_token.filter(|t| !t.is_empty())).with_events_token(events_token));
    serve(listener, app, &limits, metrics, shutdown_signal()).await;
    // Graceful shutdown (SIGTERM, Ctrl-C): the requests in flight have finished; every answered
    // request's exposure record is written and flushed before the process exits.
    let flushed = tokio::task::spawn_blocking(move || handle.flush_exposures()).await;
    let mut code = ExitCode::SUCCESS;
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("error: exposure log: {e}");
            code = ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: exposure log: {e}");
            code = ExitCode::from(1);
        }
    }
    code
}
