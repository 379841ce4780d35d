//! The serving configuration (`recsys-serve --config FILE`, JSON): business rules, diversity, the
//! response cache, sessions, the A/B split, logs and per-stage time budgets. Every field has a
//! default, so `{}` is a valid file.

use crate::{Error, Result};
use recsys_core::diversify::DiversityConfig;
use recsys_core::rules::RulesConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest `k` a request may ask for (the stored candidate lists hold 500).
pub const MAX_K: usize = 500;

/// The whole serving configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Business rules: default `k`, boosts and pins (item ids as imported).
    pub rules: RulesSection,
    /// Diversification: MMR and per-category caps.
    pub diversity: DiversityConfig,
    /// Candidates fetched per request (default 500).
    pub candidates: usize,
    /// Re-ranked candidates passed on to diversification (default 100).
    pub rerank_keep: usize,
    /// The in-process response cache.
    pub cache: CacheConfig,
    /// Session state.
    pub session: SessionConfig,
    /// A/B split between the current model and a candidate version.
    pub ab: Option<AbConfig>,
    /// A canary of a candidate version whose share of users moves on evidence (5% → 25% → 100%
    /// by default); excludes `ab` (the canary drives the candidate's percent).
    pub canary: Option<CanaryConfig>,
    /// Directory receiving the events posted to the API as daily CSV files for the next training
    /// run (`events-YYYY-MM-DD.csv`); none by default.
    pub event_log: Option<PathBuf>,
    /// When the event log is forced to disk (`fsync`). Events are written to the log before the
    /// request is answered, so an acknowledged event survives the process being killed (`kill -9`)
    /// under every policy; the policy decides what a machine crash or power loss can take:
    /// `"always"` (synced before the answer, nothing), `"interval"` (the default, synced every
    /// `event_log_fsync_ms`: at most that much) or `"never"` (whatever the OS had not written).
    pub event_log_fsync: FsyncPolicy,
    /// Period of the `"interval"` fsync policy, in milliseconds (default 1,000).
    pub event_log_fsync_ms: u64,
    /// Directory receiving the exposure log (format 2, `recsys_core::exposure`): one JSON line per
    /// served response, response-cache hits included, in daily files `exposures-YYYY-MM-DD.jsonl`
    /// (UTC day). None by default. A path ending in `.jsonl` (the first format's single file) is
    /// refused, naming the field.
    pub exposure_log: Option<PathBuf>,
    /// Capacity of the queue between the request path and the exposure-log writer thread
    /// (default 65,536 records): when it is full a record is dropped and counted
    /// (`recsys_exposure_log_dropped_total`), the request is never blocked.
    pub exposure_queue: usize,
    /// A randomised serving policy (off by default): ε-uniform exploration over the top of the
    /// deterministic ranking, with exact propensities in the exposure log.
    pub exploration: Option<ExplorationConfig>,
    /// Time budget of one store read in milliseconds (default 20): a slower store counts as a
    /// fallback and the request is answered without it.
    pub store_timeout_ms: u64,
    /// How often trending and popular lists are recomputed, in seconds (default 60).
    pub trending_refresh_seconds: u64,
    /// How often the item side of the re-ranking features (decayed popularity, trending count,
    /// rating) is snapshotted for all items, in milliseconds (default 1000): requests read the
    /// snapshot instead of recomputing 500 items' windows each.
    pub item_features_refresh_ms: u64,
    /// Every item's snapshot is recomputed at least this often, in seconds (default 60), for what
    /// changes without events (popularity decay, events leaving the trending window); items with
    /// new events are recomputed at the next refresh. Each refresh does a slice of this sweep.
    pub item_features_sweep_seconds: u64,
    /// The HTTP server's connection limits (`recsys-serve` only; embedders ignore it).
    pub http: HttpConfig,
}

/// Limits of the HTTP server's connections and requests, so that idle, slow or abandoned
/// connections cannot exhaust the process's file descriptors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Open connections at most (default 4,096); a connection over the cap is closed at once and
    /// counted (`recsys_http_connections_refused_total`). Keep it below the process's file
    /// descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, in milliseconds (default 10,000): from the
    /// connection's start, and on a keep-alive connection from the previous response, so it is
    /// also the idle timeout of keep-alive connections.
    pub header_timeout_ms: u64,
    /// Time one request may take once its headers are read, in milliseconds (default 30,000):
    /// reading its body and answering it. A request over it gets a 503 and is counted
    /// (`recsys_http_request_timeouts_total`).
    pub request_timeout_ms: u64,
    /// API requests that may run at once (default 256); one more is shed: answered at once with a
    /// 503 and `Retry-After: 1` (`recsys_http_shed_total`), so that under overload the requests
    /// accepted keep their latency instead of every request queueing. Health, metrics and admin
    /// routes are not counted.
    pub max_in_flight: usize,
    /// Longest an API request may wait for the server's workers, in milliseconds (default 50).
    /// The server measures every 5 ms how late its async runtime runs a task that became ready
    /// (its queueing delay, `recsys_http_queue_delay_seconds`); while that delay is over this
    /// limit, API requests are shed like over `max_in_flight` (503, `Retry-After: 1`). Under a
    /// spike the queue forms before any handler runs, where `max_in_flight` does not see it: this
    /// limit keeps the accepted requests' latency bounded instead. It applies to the requests of
    /// `recsys-serve`'s own listener; an in-process call of the router is not measured against it.
    pub max_queue_ms: u64,
    /// Who may post events and how much (see `recsys_serve::event_limits`): the per-client limits
    /// of a server without an events token.
    pub events: EventLimitsConfig,
}

/// Per-client limits on `POST /api/v1/events` for a server without an events token (holders of
/// the token are trusted and not limited). A batch over a limit is refused whole with a 429 and
/// `Retry-After`, naming the limit; 0 turns a limit off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimitsConfig {
    /// How a client is told apart: `"ip"` (the peer's address, the default) or `"header:NAME"`,
    /// the first address in header NAME (e.g. `header:X-Forwarded-For`), only behind a proxy that
    /// sets it (a client reaching the server directly could write any value); a request without
    /// the header counts as its peer address.
    pub client: String,
    /// Events per second one client may post on average (default 100; 0: no rate limit).
    pub per_second: f64,
    /// Events one client may post at once after a quiet spell (default 1,000), and the largest
    /// batch it may post.
    pub burst: u32,
    /// Events one client may post on one item per clock hour (default 120; 0: no cap): what
    /// bounds how far one client moves the item's popularity and trending.
    pub per_item_per_hour: u32,
    /// Clients whose rate is remembered (default 100,000); the least recently seen is forgotten
    /// first.
    pub max_clients: usize,
}

impl Default for EventLimitsConfig {
    fn default() -> Self {
        EventLimitsConfig {
            client: "ip".into(),
            per_second: 100.0,
            burst: 1_000,
            per_item_per_hour: 120,
            max_clients: 100_000,
        }
    }
}

impl EventLimitsConfig {
    /// The header naming the client, for `"header:NAME"`.
    pub fn client_header(&self) -> Option<&str> {
        self.client.strip_prefix("header:")
    }

    /// Checks the limits, naming the field.
    pub fn validate(&self) -> Result<()> {
        match self.client_header() {
            None if self.client == "ip" => {}
            Some(h) if is_header_name(h) => {}
            _ => {
                return Err(Error::bad(
                    "http.events.client",
                    &self.client,
                    "must be \"ip\" or \"header:NAME\" with a valid header name",
                ));
            }
        }
        if !(self.per_second.is_finite() && self.per_second >= 0.0) {
            return Err(Error::bad(
                "http.events.per_second",
                self.per_second,
                "must be a number >= 0",
            ));
        }
        if self.per_second > 0.0 && self.burst == 0 {
            return Err(Error::bad(
                "http.events.burst",
                0,
                "must be at least 1 with a rate limit",
            ));
        }
        if self.max_clients == 0 {
            return Err(Error::bad("http.events.max_clients", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// A header name as HTTP allows it (RFC 9110 token characters).
fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 4_096,
            header_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_in_flight: 256,
            max_queue_ms: 50,
            events: EventLimitsConfig::default(),
        }
    }
}

impl HttpConfig {
    /// Checks the limits, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_connections == 0 {
            return Err(Error::bad("http.max_connections", 0, "must be at least 1"));
        }
        if self.header_timeout_ms == 0 {
            return Err(Error::bad("http.header_timeout_ms", 0, "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::bad("http.max_in_flight", 0, "must be at least 1"));
        }
        if self.request_timeout_ms == 0 {
            return Err(Error::bad("http.request_timeout_ms", 0, "must be at least 1"));
        }
        if self.max_queue_ms == 0 {
            return Err(Error::bad("http.max_queue_ms", 0, "must be at least 1"));
        }
        self.events.validate()?;
        Ok(())
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            rules: RulesSection::default(),
            diversity: DiversityConfig::default(),
            candidates: 500,
            rerank_keep: 100,
            cache: CacheConfig::default(),
            session: SessionConfig::default(),
            ab: None,
            canary: None,
            event_log: None,
            event_log_fsync: FsyncPolicy::Interval,
            event_log_fsync_ms: 1000,
            exposure_log: None,
            exposure_queue: DEFAULT_EXPOSURE_QUEUE,
            exploration: None,
            store_timeout_ms: 20,
            trending_refresh_seconds: 60,
            item_features_refresh_ms: 1000,
            item_features_sweep_seconds: 60,
            http: HttpConfig::default(),
        }
    }
}

/// When an append-only log is forced to disk ([`ServeConfig::event_log_fsync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before each write is acknowledged.
    Always,
    /// Periodically, by a background thread.
    Interval,
    /// Never by the service: the OS writes its cache back when it chooses.
    Never,
}

/// Default of [`ServeConfig::exposure_queue`].
pub const DEFAULT_EXPOSURE_QUEUE: usize = 65_536;

/// ε-uniform exploration (`recsys_core::exploration::UniformExploration`): with probability
/// `epsilon`, drawn per request from a generator seeded by the request id, the answer is a
/// uniformly random ordered draw of `k` items from the first `pool` items of the deterministic
/// ranking (pinned items keep their slots); otherwise the deterministic top-`k`. A request asking
/// for more than `pool` items draws from its `k` first items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplorationConfig {
    /// Probability of the random draw, in `[0, 1]`.
    pub epsilon: f64,
    /// Size of the pool the draw chooses from: the deterministic ranking's first items (1..=500).
    pub pool: usize,
}

/// Rules with item ids as strings (resolved against the catalogue at load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSection {
    /// Items per answer when the request does not say (default 20).
    pub k: usize,
    /// Score multipliers by category name or brand name.
    pub boosts: Vec<BoostSpec>,
    /// Items forced at positions (0-based) when eligible.
    pub pins: Vec<PinSpec>,
    /// Similarity above which the reason is "similar to X you viewed" (default 0.5).
    pub similar_threshold: f32,
}

impl Default for RulesSection {
    fn default() -> Self {
        let r = RulesConfig::default();
        RulesSection {
            k: r.k,
            boosts: Vec::new(),
            pins: Vec::new(),
            similar_threshold: r.similar_threshold,
        }
    }
}

/// A boost of every item of a category or brand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostSpec {
    /// Category name (as imported).
    #[serde(default)]
    pub category: Option<String>,
    /// Brand name (as imported).
    #[serde(default)]
    pub brand: Option<String>,
    /// Score multiplier (> 0).
    pub factor: f32,
}

/// A pinned item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinSpec {
    /// Item id as imported.
    pub item_id: String,
    /// 0-based position.
    pub position: usize,
}

/// The response cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Entries kept (0 turns the cache off; default 100,000).
    pub capacity: usize,
    /// Time to live in seconds (default 600, the ADR's 10 minutes).
    pub ttl_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 100_000,
            ttl_seconds: 600,
        }
    }
}

/// Session state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Events kept per user (default 50).
    pub max_events: usize,
    /// Seconds a session lives after its last event (default 86,400).
    pub ttl_seconds: u64,
    /// Users this process holds state for beyond the feature snapshot's (default 1,000,000): the
    /// in-process sessions (without Redis) and the online features of user ids the snapshot does
    /// not know. Past it the least recently active such user is forgotten, so posting events for
    /// ever new ids cannot grow memory without bound; the snapshot's users are always kept.
    pub max_users: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_events: 50,
            ttl_seconds: 86_400,
            max_users: crate::online::DEFAULT_MAX_ONLINE_USERS,
        }
    }
}

/// Traffic split between the registry's `current` model (variant `control`) and a candidate
/// version (variant `candidate`) by a stable hash of the user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbConfig {
    /// The candidate model version in the registry.
    pub candidate: String,
    /// Share of users on the candidate, in percent (0–100; the ADR's canary steps 5, 25, 100).
    pub percent: f64,
    /// Salt of the hash: a new salt reshuffles users between variants (default "ab").
    #[serde(default = "default_salt")]
    pub salt: String,
}

fn default_salt() -> String {
    "ab".to_string()
}

/// A canary: the candidate serves a growing share of users, step by step, while its guardrails
/// hold, and none as soon as one fails (see [`crate::canary`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The candidate model version in the registry.
    pub candidate: String,
    /// The steps, in increasing percent, the last one 100 (default 5, 25, 100).
    #[serde(default = "default_steps")]
    pub steps: Vec<CanaryStep>,
    /// Seconds between evaluations (default 30): each replica then publishes its counts, reads the
    /// shared state and, when the evidence says so, moves it.
    #[serde(default = "default_evaluate_every")]
    pub evaluate_every_seconds: f64,
    /// Salt of the user hash (default "canary"); a new salt also starts a new canary state.
    #[serde(default = "default_canary_salt")]
    pub salt: String,
    /// When the candidate reaches 100%, also make it the registry's `current` version (default
    /// false: it serves everyone as the `candidate` variant until an operator promotes it).
    #[serde(default)]
    pub promote_in_registry: bool,
    /// What rolls the candidate back.
    #[serde(default)]
    pub guardrails: CanaryGuardrails,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    /// Share of users on the candidate, percent (0 < p ≤ 100).
    pub percent: f64,
    /// Candidate responses needed in this step before moving on (default 1,000).
    #[serde(default = "default_min_exposures")]
    pub min_exposures: u64,
    /// Seconds the step lasts at least (default 3,600).
    #[serde(default = "default_min_duration")]
    pub min_duration_seconds: f64,
}

/// The guardrails of a canary, judged on the current step's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryGuardrails {
    /// Largest share of candidate calls failing with a server error (default 0.01).
    pub max_error_rate: f64,
    /// Largest P99 latency of the candidate's calls, ms (default 100; estimated from buckets).
    pub max_p99_ms: f64,
    /// Roll back when the candidate's CTR is significantly lower than control's (default true).
    pub ctr: bool,
    /// Roll back when the candidate's conversion is significantly lower (default true).
    pub conversion: bool,
    /// Level of the one-sided tests (default 0.05).
    pub alpha: f64,
    /// Candidate calls in the step before any guardrail is judged (default 100).
    pub min_requests: u64,
}

impl Default for CanaryGuardrails {
    fn default() -> Self {
        CanaryGuardrails {
            max_error_rate: 0.01,
            max_p99_ms: 100.0,
            ctr: true,
            conversion: true,
            alpha: 0.05,
            min_requests: 100,
        }
    }
}

fn default_steps() -> Vec<CanaryStep> {
    [5.0, 25.0, 100.0]
        .into_iter()
        .map(|percent| CanaryStep {
            percent,
            min_exposures: default_min_exposures(),
            min_duration_seconds: default_min_duration(),
        })
        .collect()
}

fn default_min_exposures() -> u64 {
    1_000
}

fn default_min_duration() -> f64 {
    3_600.0
}

fn default_evaluate_every() -> f64 {
    30.0
}

fn default_canary_salt() -> String {
    "canary".to_string()
}

impl CanaryConfig {
    /// A canary of `candidate` with every default.
    pub fn new(candidate: impl Into<String>) -> Self {
        CanaryConfig {
            candidate: candidate.into(),
            steps: default_steps(),
            evaluate_every_seconds: default_evaluate_every(),
            salt: default_canary_salt(),
            promote_in_registry: false,
            guardrails: CanaryGuardrails::default(),
        }
    }

    /// Refuses values the canary cannot run with, naming the field (`canary.…`).
    pub fn validate(&self) -> Result<()> {
        check_candidate_version("canary.candidate", &self.candidate)?;
        if self.steps.is_empty() {
            return Err(Error::bad("canary.steps", "[]", "needs at least one step"));
        }
        let mut previous = 0.0;
        for (i, s) in self.steps.iter().enumerate() {
            if !(s.percent.is_finite() && s.percent > previous && s.percent <= 100.0) {
                return Err(Error::bad(
                    format!("canary.steps[{i}].percent"),
                    s.percent,
                    "must be in (0, 100] and larger than the step before",
                ));
            }
            if !(s.min_duration_seconds.is_finite() && s.min_duration_seconds >= 0.0) {
                return Err(Error::bad(
                    format!("canary.steps[{i}].min_duration_seconds"),
                    s.min_duration_seconds,
                    "must be ≥ 0",
                ));
            }
            previous = s.percent;
        }
        if previous != 100.0 {
            return Err(Error::bad(
                format!("canary.steps[{}].percent", self.steps.len() - 1),
                previous,
                "the last step must be 100",
            ));
        }
        if !(self.evaluate_every_seconds.is_finite() && self.evaluate_every_seconds >= 0.01) {
            return Err(Error::bad(
                "canary.evaluate_every_seconds",
                self.evaluate_every_seconds,
                "must be at least 0.01",
            ));
        }
        if self.salt.is_empty()
            || !self
                .salt
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::bad(
                "canary.salt",
                &self.salt,
                "must be 1+ characters of [A-Za-z0-9._-]",
            ));
        }
        let g = &self.guardrails;
        if !(g.max_error_rate.is_finite() && (0.0..=1.0).contains(&g.max_error_rate)) {
            return Err(Error::bad(
                "canary.guardrails.max_error_rate",
                g.max_error_rate,
                "must be in 0..=1",
            ));
        }
        if !(g.max_p99_ms.is_finite() && g.max_p99_ms > 0.0) {
            return Err(Error::bad("canary.guardrails.max_p99_ms", g.max_p99_ms, "must be > 0"));
        }
        if !(g.alpha.is_finite() && g.alpha > 0.0 && g.alpha < 0.5) {
            return Err(Error::bad("canary.guardrails.alpha", g.alpha, "must be in (0, 0.5)"));
        }
        Ok(())
    }
}

impl ServeConfig {
    /// Reads and validates a JSON config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::bad("config", path.display(), format!("cannot read: {e}")))?;
        let c: ServeConfig =
            serde_json::from_str(&text).map_err(|e| Error::bad("config", path.display(), e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Parses and validates a config given as a JSON value (a Python dict, a JS object): the same
    /// rules as [`ServeConfig::load`], errors naming `config`.
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        let c: ServeConfig = serde_json::from_value(value.clone()).map_err(|e| {
            Error::bad(
                "config",
                value.to_string().chars().take(200).collect::<String>(),
                e.to_string(),
            )
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Refuses values the service cannot run with, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.rules.k == 0 || self.rules.k > MAX_K {
            return Err(Error::bad("rules.k", self.rules.k, format!("must be in 1..={MAX_K}")));
        }
        if self.candidates == 0 || self.candidates > 10_000 {
            return Err(Error::bad("candidates", self.candidates, "must be in 1..=10000"));
        }
        if self.rerank_keep == 0 {
            return Err(Error::bad("rerank_keep", 0, "must be at least 1"));
        }
        if self.event_log_fsync_ms == 0 {
            return Err(Error::bad("event_log_fsync_ms", 0, "must be at least 1"));
        }
        for (i, b) in self.rules.boosts.iter().enumerate() {
            if b.category.is_some() == b.brand.is_some() {
                return Err(Error::bad(
                    format!("rules.boosts[{i}]"),
                    format!("{b:?}"),
                    "name exactly one of category or brand",
                ));
            }
            if !(b.factor.is_finite() && b.factor > 0.0) {
                return Err(Error::bad(format!("rules.boosts[{i}].factor"), b.factor, "must be > 0"));
            }
        }
        self.diversity.validate()?;
        self.http.validate()?;
        if self.session.max_users == 0 {
            return Err(Error::bad("session.max_users", 0, "must be at least 1"));
        }
        if let Some(ab) = &self.ab {
            check_candidate_version("ab.candidate", &ab.candidate)?;
            if !(ab.percent.is_finite() && (0.0..=100.0).contains(&ab.percent)) {
                return Err(Error::bad("ab.percent", ab.percent, "must be in 0..=100"));
            }
        }
        if let Some(canary) = &self.canary {
            if self.ab.is_some() {
                return Err(Error::bad(
                    "canary",
                    &canary.candidate,
                    "cannot be combined with `ab`: the canary drives the candidate's percent",
                ));
            }
            canary.validate()?;
        }
        if self.item_features_sweep_seconds == 0 {
            return Err(Error::bad("item_features_sweep_seconds", 0, "must be at least 1"));
        }
        if let Some(p) = &self.exposure_log
            && p.extension().is_some_and(|x| x == "jsonl")
        {
            return Err(Error::bad(
                "exposure_log",
                p.display(),
                "the exposure log is now a directory of daily files (exposures-YYYY-MM-DD.jsonl): \
                 name a directory, e.g. the file's parent",
            ));
        }
        if self.exposure_queue == 0 {
            return Err(Error::bad("exposure_queue", 0, "must be at least 1"));
        }
        if let Some(x) = &self.exploration {
            if !(x.epsilon.is_finite() && (0.0..=1.0).contains(&x.epsilon)) {
                return Err(Error::bad("exploration.epsilon", x.epsilon, "must be in [0, 1]"));
            }
            if x.pool == 0 || x.pool > MAX_K {
                return Err(Error::bad(
                    "exploration.pool",
                    x.pool,
                    format!("must be in 1..={MAX_K}"),
                ));
            }
        }
        if self.session.max_events == 0 {
            return Err(Error::bad("session.max_events", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// A candidate model named in the serving config must be a version of the registry (`1.4.0`), which
/// serving loads with its checksums verified: not a path (relative or absolute) to some directory
/// holding a `model.bin`.
fn check_candidate_version(field: &str, candidate: &str) -> Result<()> {
    recsys_core::registry::parse_version(candidate)
        .map(|_| ())
        .map_err(|_| Error::bad(field, candidate, "must name a version of the registry (x.y.z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_the_default() {
        let c: ServeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, ServeConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_field() {
        for (json, field) in [
            (r#"{"rules": {"k": 0}}"#, "rules.k"),
            (r#"{"ab": {"candidate": "1.0.0", "percent": 150}}"#, "ab.percent"),
            (r#"{"rules": {"boosts": [{"factor": 2}]}}"#, "rules.boosts[0]"),
            (r#"{"candidates": 0}"#, "candidates"),
            (r#"{"http": {"max_connections": 0}}"#, "http.max_connections"),
            (r#"{"http": {"header_timeout_ms": 0}}"#, "http.header_timeout_ms"),
            (r#"{"http": {"request_timeout_ms": 0}}"#, "http.request_timeout_ms"),
            (r#"{"http": {"max_in_flight": 0}}"#, "http.max_in_flight"),
            (r#"{"http": {"max_queue_ms": 0}}"#, "http.max_queue_ms"),
            (r#"{"event_log_fsync_ms": 0}"#, "event_log_fsync_ms"),
            (r#"{"http": {"events": {"client": "cookie"}}}"#, "http.events.client"),
            (r#"{"http": {"events": {"client": "header:"}}}"#, "http.events.client"),
            (
                r#"{"http": {"events": {"client": "header:X Forwarded"}}}"#,
                "http.events.client",
            ),
            (r#"{"http": {"events": {"per_second": -1}}}"#, "http.events.per_second"),
            (r#"{"http": {"events": {"burst": 0}}}"#, "http.events.burst"),
            (r#"{"http": {"events": {"max_clients": 0}}}"#, "http.events.max_clients"),
            (r#"{"item_features_sweep_seconds": 0}"#, "item_features_sweep_seconds"),
            (r#"{"exposure_log": "logs/exposures.jsonl"}"#, "exposure_log"),
            (r#"{"exposure_queue": 0}"#, "exposure_queue"),
            (
                r#"{"exploration": {"epsilon": 1.5, "pool": 50}}"#,
                "exploration.epsilon",
            ),
            (r#"{"exploration": {"epsilon": 0.1, "pool": 0}}"#, "exploration.pool"),
            (r#"{"exploration": {"epsilon": 0.1, "pool": 501}}"#, "exploration.pool"),
            (r#"{"canary": {"candidate": ""}}"#, "canary.candidate"),
            (r#"{"canary": {"candidate": "../../elsewhere"}}"#, "canary.candidate"),
            (
                r#"{"ab": {"candidate": "/tmp/some-model", "percent": 5}}"#,
                "ab.candidate",
            ),
            (r#"{"ab": {"candidate": "../1.0.0", "percent": 5}}"#, "ab.candidate"),
            (
                r#"{"canary": {"candidate": "2.0.0"}, "ab": {"candidate": "2.0.0", "percent": 5}}"#,
                "canary",
            ),
            (
                r#"{"canary": {"candidate": "2.0.0", "steps": [{"percent": 25}, {"percent": 5}, {"percent": 100}]}}"#,
                "canary.steps[1].percent",
            ),
            (
                r#"{"canary": {"candidate": "2.0.0", "steps": [{"percent": 5}, {"percent": 50}]}}"#,
                "canary.steps[1].percent",
            ),
            (r#"{"canary": {"candidate": "2.0.0", "steps": []}}"#, "canary.steps"),
            (
                r#"{"canary": {"candidate": "2.0.0", "evaluate_every_seconds": 0}}"#,
                "canary.evaluate_every_seconds",
            ),
            (
                r#"{"canary": {"candidate": "2.0.0", "guardrails": {"alpha": 0.7}}}"#,
                "canary.guardrails.alpha",
            ),
            (
                r#"{"canary": {"candidate": "2.0.0", "guardrails": {"max_error_rate": 2}}}"#,
                "canary.guardrails.max_error_rate",
            ),
            (r#"{"canary": {"candidate": "2.0.0", "salt": "a b"}}"#, "canary.salt"),
        ] {
            let c: ServeConfig = serde_json::from_str(json).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        assert!(serde_json::from_str::<ServeConfig>(r#"{"cahce": {}}"#).is_err());
        assert!(serde_json::from_str::<ServeConfig>(r#"{"canary": {"candidate": "2.0.0", "stpes": []}}"#).is_err());
    }

    #[test]
    fn canary_defaults_are_the_adr_steps() {
        let c: ServeConfig = serde_json::from_str(r#"{"canary": {"candidate": "2.0.0"}}"#).unwrap();
        c.validate().unwrap();
        let canary = c.canary.unwrap();
        assert_eq!(canary, CanaryConfig::new("2.0.0"));
        let percents: Vec<f64> = canary.steps.iter().map(|s| s.percent).collect();
        assert_eq!(percents, [5.0, 25.0, 100.0]);
    }
}
