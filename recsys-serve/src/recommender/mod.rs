//! [`Recommender`]: the online pipeline as one embeddable object (the HTTP service, the Python
//! and the Node bindings all call it). One request runs, in named steps:
//!
//! | step | where |
//! |---|---|
//! | 1. history: offline recent events + the live session, exclusions | `history.rs` |
//! | 2. candidates: store, else user tower + item index, else trending/popular | `candidates.rs` |
//! | 3. re-ranking features | `features.rs` |
//! | 4. re-rank, rules, diversity, pins, fill-up | [`recsys_core::pipeline::recommend`] |
//! | 5. ids and reasons, pinned slots | `render.rs` |
//!
//! Candidates come from the candidate store (the pre-computed top-500 of the user); a user without
//! stored candidates gets them from the model (user tower on demographics and the live session,
//! then the item index); an anonymous visitor with no session gets what is trending and popular in
//! the request's context. A failing store is a fallback, counted in the metrics, never an error.

use crate::canary::Canary;
use crate::canary::shared::{DirShared, RedisShared, SharedState};
use crate::config::{MAX_K, ServeConfig};
use crate::error::truncate_chars;
use crate::logs::{EventLog, ExposureLog};
use crate::metrics::{CacheLabel, Metrics, VariantLabel};
use crate::model::LoadedModel;
use crate::online::{EventIn, OnlineFeatures};
use crate::snapshot::{ItemSnapshot, Refresher};
use crate::{Error, Result};
use arc_swap::ArcSwap;
use history::UserHistory;
use lru::LruCache;
use recsys_core::diversify::Similarity;
use recsys_core::exploration::{UniformExploration, request_rng};
use recsys_core::exposure::{ExposedItem, ExposureContext, ExposureRecord};
use recsys_core::pipeline::{Context, Request, recommend};
use recsys_core::rerank::{RerankItem, RerankUser, last_category_times};
use recsys_core::retrieval::Filter;
use recsys_core::rules::{
    Boost, BoostTarget, Eligibility, ItemAttributes, Pin, ReasonInputs, RequestFilters, RulesConfig, UserExclusions,
};
use recsys_core::schema::EventType;
use recsys_core::store::{
    CandidateStore, MemorySessions, RedisOptions, RedisStore, Scored, SessionEvent, SessionStore, open_store,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

mod candidates;
mod features;
mod history;
mod render;
use candidates::CandidateInputs;

/// Where [`Recommender::open`] finds its inputs.
#[derive(Debug, Clone)]
pub struct RecommenderOptions {
    /// Model registry; the `current` version serves.
    pub registry: PathBuf,
    /// Dataset directory to warm the online features from (catalogue, users, history), instead of
    /// the feature snapshot published in the store with the model's version. Needs the `dataset`
    /// cargo feature (which links the offline pipeline); without a store, that feature also
    /// falls back to the dataset the current model was trained on.
    pub data: Option<PathBuf>,
    /// Candidate store URL (`file:DIR`, `redis://...`): the candidates and the online feature
    /// snapshot published with the model's version. `None`: candidates from the model only, and
    /// features only from a dataset (the `dataset` feature). With Redis, session state lives there
    /// too, shared by every replica.
    pub store: Option<String>,
    /// Serving configuration.
    pub config: ServeConfig,
    /// The registry version serving the `control` variant (default: `current`, followed on
    /// reload); a pinned version keeps serving across reloads.
    pub model: Option<String>,
    /// Serve every request as an anonymous visitor would be served: what is trending and popular
    /// in the request's context, no personalisation (the `popular` policy of the simulator).
    pub popular_only: bool,
}

impl RecommenderOptions {
    /// Options with the default configuration.
    pub fn new(registry: impl Into<PathBuf>) -> Self {
        RecommenderOptions {
            registry: registry.into(),
            data: None,
            store: None,
            config: ServeConfig::default(),
            model: None,
            popular_only: false,
        }
    }
}

/// What a recommendation request may say besides the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecQuery {
    /// Items to return (default: the config's `rules.k`, 20); at most 500.
    pub k: Option<usize>,
    /// Page context: `home`, `cart`, `product:ITEM_ID` (that item is excluded, and an anonymous
    /// visitor gets items similar to it) or `category:NAME` (an anonymous visitor gets what is
    /// popular there).
    pub context: Option<String>,
    /// Only items of this category (name as imported).
    pub category: Option<String>,
    /// Only items priced at least this.
    pub min_price: Option<f64>,
    /// Only items priced at most this.
    pub max_price: Option<f64>,
    /// Item ids never to return (at most [`MAX_EXCLUDE`]).
    pub exclude: Vec<String>,
    /// The client's device (`mobile`, `desktop`, `tablet`, `app`, ...): 1 to 32 bytes of
    /// `[A-Za-z0-9_-]`. Recorded in the exposure log's context.
    pub device: Option<String>,
    /// The user's local hour of day, 0–23 (default: the UTC hour of the request). Recorded in the
    /// exposure log's context.
    pub hour: Option<u8>,
    /// The caller's id for this request (1 to 64 characters of `A-Z a-z 0-9 _ - . :`), used as the
    /// answer's `request_id` instead of a fresh one: a front that already has a request id logs
    /// under it, and a replay with the same id draws the same exploration (the draw is seeded by
    /// the id). Ids should be unique per request: events are attributed to exposures by this id.
    pub request_id: Option<String>,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecItem {
    /// Item id as imported.
    pub item_id: String,
    /// Final score (higher is better; comparable within one answer).
    pub score: f32,
    /// A short explanation ("Similar to X you viewed", "Popular in Y", "Trending now", ...).
    pub reason: String,
}

/// The A/B variant of an answer (serialised as `control` / `candidate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The registry's current version.
    Control,
    /// The A/B or canary candidate.
    Candidate,
}

impl Variant {
    /// `control` or `candidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Control => "control",
            Variant::Candidate => "candidate",
        }
    }
}

/// Where an answer's candidates came from (serialised as `store` / `model` / `popular`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The pre-computed candidate store.
    Store,
    /// The model's nearest items to the user's embedding, computed for the request.
    Model,
    /// Trending and popular items (anonymous visitors, cold starts).
    Popular,
}

impl Source {
    /// `store`, `model` or `popular`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Store => "store",
            Source::Model => "model",
            Source::Popular => "popular",
        }
    }
}

macro_rules! str_like {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
str_like!(Variant);
str_like!(Source);

/// The answer of [`Recommender::recommend`] (the JSON of `GET /api/v1/recommendations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    /// The user asked for.
    pub user_id: String,
    /// The model version that answered.
    pub model_version: String,
    /// The A/B variant: `control` or `candidate`.
    pub variant: Variant,
    /// Best first.
    pub items: Vec<RecItem>,
    /// Where the candidates came from: `store`, `model` or `popular`.
    pub source: Source,
    /// Unique per response (a cached answer gets a fresh one): 32 hex characters. The exposure
    /// log records it; events may quote it back (`EventIn::request_id`) to attribute a click to
    /// the response it came from.
    pub request_id: String,
}

/// Unique ids of responses: a per-process random nonce and a counter, 32 hex characters.
/// Cheap (one atomic increment and a format); unique within a process, and across processes
/// with overwhelming probability.
pub fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;
    static NONCE: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(|| {
        // std's RandomState is seeded from the OS's randomness once per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nonce:016x}{n:016x}")
}

/// The answer of [`Recommender::similar`] (the JSON of `GET /api/v1/similar`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarItems {
    /// The item asked for.
    pub item_id: String,
    /// The model version that answered.
    pub model_version: String,
    /// Most similar first (the item itself and out-of-stock items excluded).
    pub items: Vec<RecItem>,
}

/// What [`Recommender::status`] reports (`GET /admin/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Version serving the `control` variant.
    pub model_version: String,
    /// Version serving the `candidate` variant, when an A/B split is configured.
    pub candidate_version: Option<String>,
    /// Share of users on the candidate, percent.
    pub candidate_percent: f64,
    /// The candidate-store version read (None: no store or no version for the model).
    pub store_version: Option<String>,
    /// The store URL (password redacted).
    pub store: Option<String>,
    /// Whether the re-ranker weights were fitted offline (else the documented fallback).
    pub reranker_fitted: bool,
    /// Where session state lives.
    pub sessions: String,
    /// Catalogue items.
    pub items: usize,
    /// Known users.
    pub users: usize,
    /// Successful reloads since start.
    pub reloads: u64,
    /// The error of the last failed reload (the previous models kept serving).
    pub last_reload_error: Option<String>,
    /// Response-cache entries.
    pub cache_entries: usize,
}

/// The models being served: control and, with an A/B split, the candidate.
struct Serving {
    control: Arc<LoadedModel>,
    candidate: Option<Arc<LoadedModel>>,
}

/// Popular and trending lists, recomputed in the background.
#[derive(Debug, Default)]
struct Trends {
    /// Best first, the whole catalogue's top.
    popular: Vec<u32>,
    /// Best first, per category code.
    popular_by_category: Vec<Vec<u32>>,
    /// Sorted ascending: items counted "popular in their category" for the reasons.
    popular_reason: Vec<u32>,
    /// Best first.
    trending: Vec<u32>,
    /// Sorted ascending.
    trending_sorted: Vec<u32>,
}

const POPULAR_KEEP: usize = 1_000;
const POPULAR_PER_CATEGORY: usize = 200;
const POPULAR_REASON_PER_CATEGORY: usize = 10;
const TRENDING_KEEP: usize = 50;

/// Every item's re-ranking inputs ([`RerankItem`]) as of one moment, indexed by item.
fn item_snapshot(f: &OnlineFeatures, now_ms: i64) -> Result<Vec<RerankItem>> {
    let as_of = f.as_of(now_ms);
    (0..f.num_items() as u32).map(|i| rerank_item(f, i, as_of)).collect()
}

/// One item's re-ranking inputs: its features as of `as_of` and its current price.
fn rerank_item(f: &OnlineFeatures, item: u32, as_of: i64) -> Result<RerankItem> {
    let features = f.engine().item_features(item, as_of)?;
    let price = f.item_prices().get(item as usize).copied().flatten();
    Ok(RerankItem::new(&features, price))
}

impl Trends {
    /// The lists from the item snapshot (its `ln(1 + score)` values rank as the scores do).
    fn compute(f: &OnlineFeatures, items: &[RerankItem]) -> Result<Trends> {
        let mut pop = Vec::with_capacity(items.len());
        let mut trend = Vec::new();
        for (i, it) in (0u32..).zip(items) {
            pop.push((it.popularity, i));
            if it.trending > 0.0 {
                trend.push((it.trending, i));
            }
        }
        let by_score = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        pop.sort_by(by_score);
        trend.sort_by(by_score);
        let cats = f.item_categories();
        let mut popular_by_category = vec![Vec::new(); f.categories().len()];
        for &(_, i) in &pop {
            if let Some(Some(c)) = cats.get(i as usize)
                && let Some(list) = popular_by_category.get_mut(*c as usize)
                && list.len() < POPULAR_PER_CATEGORY
            {
                list.push(i);
            }
        }
        let mut popular_reason: Vec<u32> = popular_by_category
            .iter()
            .flat_map(|l| l.iter().take(POPULAR_REASON_PER_CATEGORY).copied())
            .collect();
        popular_reason.sort_unstable();
        let trending: Vec<u32> = trend.iter().take(TRENDING_KEEP).map(|t| t.1).collect();
        let mut trending_sorted = trending.clone();
        trending_sorted.sort_unstable();
        Ok(Trends {
            popular: pop.iter().take(POPULAR_KEEP).map(|p| p.1).collect(),
            popular_by_category,
            popular_reason,
            trending,
            trending_sorted,
        })
    }

    /// The popular list of a category, else of the catalogue.
    fn popular_in(&self, category: Option<u32>) -> &[u32] {
        match category.and_then(|c| self.popular_by_category.get(c as usize)) {
            Some(l) if !l.is_empty() => l,
            _ => &self.popular,
        }
    }
}

struct CacheEntry {
    generation: u64,
    at: Instant,
    value: Arc<Ranked>,
}

/// One served answer with how it was chosen (the simulator, behind the `dataset` feature, reads
/// how).
#[cfg_attr(not(feature = "dataset"), allow(dead_code))]
pub(crate) struct Served {
    /// The answer.
    pub recs: Recommendations,
    /// The deterministic ranking the serving policy chose from (its first `k` items are what a
    /// policy without exploration shows).
    pub ranked: Arc<Ranked>,
    /// The propensity of each shown item at its slot (`None`: a deterministic policy, all 1.0).
    pub propensities: Option<Vec<f64>>,
}

/// The deterministic ranking of one request (what the response cache keeps): the pipeline's
/// answer (with exploration, `max(pool, k)` items long) before the serving policy picks what is
/// shown; `request_id` is empty.
pub(crate) struct Ranked {
    pub(crate) recs: Recommendations,
    /// `pinned[i]`: item `i` is a pinned item at its pinned slot (kept there by exploration).
    pinned: Vec<bool>,
}

struct Inner {
    options: RecommenderOptions,
    /// Where the online features came from (for `Debug`).
    features_source: String,
    serving: ArcSwap<Serving>,
    features: RwLock<OnlineFeatures>,
    trends: RwLock<Arc<Trends>>,
    /// The item side of the re-ranking features, refreshed every `item_features_refresh_ms`.
    item_features: ItemSnapshot<RerankItem>,
    sessions: Arc<dyn SessionStore>,
    store: Option<Arc<dyn CandidateStore>>,
    rules: RulesConfig,
    cache: Option<Mutex<LruCache<String, CacheEntry>>>,
    metrics: Arc<Metrics>,
    event_log: Option<EventLog>,
    exposure_log: Option<ExposureLog>,
    /// The randomised serving policy, when configured.
    exploration: Option<UniformExploration>,
    reloads: Mutex<(u64, Option<String>)>,
    reload_lock: Mutex<()>,
    /// The canary, when the config has one.
    canary: Option<Arc<Canary>>,
    /// Circuit breaker: until this time (UTC ms) the shared store and session state are not asked,
    /// after a failure, so a down or frozen Redis costs one time budget per second, not per request.
    store_down_until: AtomicI64,
}

/// How long the store is skipped after a failure.
const STORE_BACKOFF_MS: i64 = 1_000;

impl Inner {
    fn store_skipped(&self, now: i64) -> bool {
        now < self.store_down_until.load(Ordering::Relaxed)
    }

    fn store_failed(&self, now: i64) {
        self.store_down_until.store(now + STORE_BACKOFF_MS, Ordering::Relaxed);
    }
}

/// The online recommender: cheap to clone (one shared state), safe to call from many threads.
#[derive(Clone)]
pub struct Recommender {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("registry", &self.inner.options.registry)
            .field("features", &self.inner.features_source)
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Opens the store with the serving time budget on every Redis call.
fn open_serving_store(url: &str, config: &ServeConfig) -> Result<(Arc<dyn CandidateStore>, Arc<dyn SessionStore>)> {
    let sessions_ttl = Duration::from_secs(config.session.ttl_seconds);
    if url.starts_with("redis://") || url.starts_with("redis+cluster://") {
        let budget = Duration::from_millis(config.store_timeout_ms.max(1));
        let store = RedisStore::open_with(
            url,
            RedisOptions {
                connect_timeout: budget.max(Duration::from_millis(100)),
                io_timeout: budget,
                ..RedisOptions::default()
            },
        )?;
        let sessions = Arc::new(store.sessions(config.session.max_events, sessions_ttl));
        Ok((Arc::new(store), sessions))
    } else {
        Ok((
            open_store(url)?,
            Arc::new(MemorySessions::new(config.session.max_events, config.session.max_users)),
        ))
    }
}

/// Resolves the config's rules (item, category and brand names) against the catalogue.
fn resolve_rules(config: &ServeConfig, f: &OnlineFeatures) -> Result<RulesConfig> {
    let mut rules = RulesConfig {
        k: config.rules.k,
        similar_threshold: config.rules.similar_threshold,
        ..RulesConfig::default()
    };
    for (i, b) in config.rules.boosts.iter().enumerate() {
        let target =
            match (&b.category, &b.brand) {
                (Some(c), None) => BoostTarget::Category(f.category_code(c).ok_or_else(|| {
                    Error::bad(
                        format!("rules.boosts[{i}].category"),
                        c,
                        "not a category of the catalogue",
                    )
                })?),
                (None, Some(name)) => BoostTarget::Brand(f.brands().iter().position(|x| x == name).ok_or_else(|| {
                    Error::bad(format!("rules.boosts[{i}].brand"), name, "not a brand of the catalogue")
                })? as u32),
                _ => {
                    return Err(Error::bad(
                        format!("rules.boosts[{i}]"),
                        "",
                        "name one of category or brand",
                    ));
                }
            };
        rules.boosts.push(Boost {
            target,
            factor: b.factor,
        });
    }
    for (i, p) in config.rules.pins.iter().enumerate() {
        let item = f
            .item_index(&p.item_id)
            .ok_or_else(|| Error::bad(format!("rules.pins[{i}].item_id"), &p.item_id, "not in the catalogue"))?;
        rules.pins.push(Pin {
            item,
            position: p.position,
        });
    }
    rules.validate()?;
    Ok(rules)
}

/// How much lower than the serving threads' the CPU priority of a reload is (`nice` steps).
const RELOAD_NICENESS: i32 = 10;

/// Runs `work` on a thread of its own whose CPU priority is [`RELOAD_NICENESS`] steps lower (on
/// Linux; elsewhere at the same priority), so that loading a model on a busy machine takes the CPU
/// the requests served meanwhile leave over instead of delaying them.
fn at_low_priority<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            lower_this_threads_priority(RELOAD_NICENESS);
            work()
        })
        .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Raises the calling thread's nice value by `steps` (best effort: a failure leaves it unchanged).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_this_threads_priority(steps: i32) {
    // SAFETY: `gettid` and `getpriority`/`setpriority` on the calling thread's own id take and
    // return plain integers and touch no memory of ours. On Linux the nice value is per thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + steps).min(19));
    }
}

/// Raises the calling thread's nice value by `steps` (a no-op off Linux).
#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_steps: i32) {}

fn load_serving(
    inner_opts: &RecommenderOptions,
    store: Option<&Arc<dyn CandidateStore>>,
    ids: &[String],
) -> Result<Serving> {
    let version = inner_opts.model.as_deref().unwrap_or("current");
    let control = Arc::new(LoadedModel::load(&inner_opts.registry, version, store, ids)?);
    let candidate_version = match (&inner_opts.config.ab, &inner_opts.config.canary) {
        (Some(ab), _) => Some(&ab.candidate),
        (None, Some(canary)) => Some(&canary.candidate),
        (None, None) => None,
    };
    let candidate = match candidate_version {
        Some(v) => Some(Arc::new(LoadedModel::load(&inner_opts.registry, v, store, ids)?)),
        None => None,
    };
    Ok(Serving { control, candidate })
}

/// Where the canary keeps its shared state: the Redis store's server, the `file:` store's
/// directory, or (no store) the registry directory.
fn open_canary_shared(options: &RecommenderOptions) -> Result<Box<dyn SharedState>> {
    match &options.store {
        Some(url) if url.starts_with("redis://") || url.starts_with("redis+cluster://") => {
            let budget = Duration::from_millis(options.config.store_timeout_ms.max(200));
            Ok(Box::new(RedisShared::open(url, budget)?))
        }
        Some(url) => {
            let dir = url.strip_prefix("file:").unwrap_or(url);
            let dir = dir.strip_prefix("//").unwrap_or(dir);
            Ok(Box::new(DirShared::open(std::path::Path::new(dir))?))
        }
        None => Ok(Box::new(DirShared::open(&options.registry)?)),
    }
}

/// A stable bucket in 0..10000 of a user id (CRC-32 of `salt:user`): the single-experiment
/// bucket, [`recsys_core::ab::crc_bucket`]. Several experiments at once need
/// [`recsys_core::ab::Layer`], whose buckets are independent across salts.
pub fn ab_bucket(salt: &str, user_id: &str) -> u32 {
    recsys_core::ab::crc_bucket(salt, user_id)
}

fn session_generation(session: &[SessionEvent]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    for e in session {
        h.update(&e.ts.to_le_bytes());
        h.update(&[e.event_type as u8]);
        h.update(e.item_id.as_bytes());
    }
    ((session.len() as u64) << 32) | h.finalize() as u64
}

/// Item ids one request may exclude (`RecQuery::exclude`, the `exclude` query parameter); more is
/// a 400 naming `exclude`.
pub const MAX_EXCLUDE: usize = 1_000;

/// Checks a device name: 1 to 32 bytes of `[A-Za-z0-9_-]` (the error names the field `device`).
pub fn check_device(device: &str) -> Result<()> {
    if device.is_empty()
        || device.len() > 32
        || !device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::bad(
            "device",
            device,
            "must be 1 to 32 characters of A-Z, a-z, 0-9, _ or -",
        ));
    }
    Ok(())
}

/// Checks the query's `device` and `hour`.
fn check_query_context(q: &RecQuery) -> Result<()> {
    if let Some(d) = &q.device {
        check_device(d)?;
    }
    if let Some(h) = q.hour
        && h > 23
    {
        return Err(Error::bad("hour", h, "must be in 0..=23"));
    }
    if let Some(id) = &q.request_id {
        check_request_id(id)?;
    }
    Ok(())
}

/// Checks a caller-supplied request id: 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
pub fn check_request_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(Error::bad(
            "request_id",
            id,
            "must be 1 to 64 characters of A-Z, a-z, 0-9, _, -, . or :",
        ));
    }
    Ok(())
}

/// The online features a recommender starts from, and where they came from: the dataset
/// directory of [`RecommenderOptions::data`] (the `dataset` feature); else the feature snapshot
/// published in the store with the serving model's version (or, when the store has no such version,
/// with its active one); else, with the `dataset` feature, the dataset the model was trained on.
fn load_features(
    options: &RecommenderOptions,
    store: Option<&Arc<dyn CandidateStore>>,
) -> Result<(OnlineFeatures, String)> {
    if let Some(dir) = &options.data {
        return features_from_dataset(dir);
    }
    let spec = options.model.as_deref().unwrap_or("current");
    let model_dir = recsys_core::registry::model_dir(spec, Some(&options.registry), false)?;
    let version = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    if let Some(store) = store
        && let Some(snapshot) = crate::model::store_version_for(store.as_ref(), &version)?
        && let Some(f) = snapshot.features()?
    {
        let source = format!("store {} version {}", store.url(), snapshot.meta().version);
        return Ok((OnlineFeatures::from_snapshot(f)?, source));
    }
    trained_on_dataset(&model_dir, &version, store)
}

#[cfg(feature = "dataset")]
fn features_from_dataset(dir: &Path) -> Result<(OnlineFeatures, String)> {
    Ok((
        OnlineFeatures::from_dataset(dir, recsys_core::features::FeatureConfig::default())?,
        format!("dataset {}", dir.display()),
    ))
}

#[cfg(not(feature = "dataset"))]
fn features_from_dataset(dir: &Path) -> Result<(OnlineFeatures, String)> {
    Err(Error::bad(
        "data",
        dir.display(),
        "this build reads its features from the store only (warming from a dataset directory needs \
         recsys-serve's `dataset` feature)",
    ))
}

/// The dataset named in the model version's `data.json`, when the store had no feature snapshot.
#[cfg(feature = "dataset")]
fn trained_on_dataset(
    model_dir: &Path,
    _version: &str,
    _store: Option<&Arc<dyn CandidateStore>>,
) -> Result<(OnlineFeatures, String)> {
    let info = recsys_train::train::model_data_info(&model_dir.display().to_string(), None)?;
    features_from_dataset(Path::new(&info.dataset))
}

#[cfg(not(feature = "dataset"))]
fn trained_on_dataset(
    _model_dir: &Path,
    version: &str,
    store: Option<&Arc<dyn CandidateStore>>,
) -> Result<(OnlineFeatures, String)> {
    let why = match store {
        Some(s) => format!(
            "neither version {version} nor the active version of {} carries a feature snapshot",
            s.url()
        ),
        None => "no store was given".to_string(),
    };
    Err(Error::bad(
        "store",
        store.map(|s| s.url()).unwrap_or_default(),
        format!(
            "{why}: run `recsys-train precompute` for model {version} into the store (it publishes the \
             online features), or warm from a dataset with recsys-serve's `dataset` feature"
        ),
    ))
}

/// A request after validation, with catalogue codes.
struct Resolved {
    k: usize,
    filters: RequestFilters,
    anchor: Option<u32>,
    context_category: Option<u32>,
}

impl Recommender {
    /// Loads the registry's `current` model (and the A/B
    /// candidate), opens the store, and starts the background refresh of trending lists.
    pub fn open(options: RecommenderOptions) -> Result<Self> {
        options.config.validate()?;
        if !options.registry.is_dir() {
            return Err(Error::bad(
                "registry",
                options.registry.display(),
                "not a directory (train a model with `recsys-train train --registry DIR` first)",
            ));
        }
        let (store, sessions): (Option<Arc<dyn CandidateStore>>, Arc<dyn SessionStore>) = match &options.store {
            Some(url) => {
                let (s, sess) = open_serving_store(url, &options.config)?;
                (Some(s), sess)
            }
            None => (
                None,
                Arc::new(MemorySessions::new(
                    options.config.session.max_events,
                    options.config.session.max_users,
                )),
            ),
        };
        let (mut features, features_source) = load_features(&options, store.as_ref())?;
        features.set_max_online_users(options.config.session.max_users);
        let serving = load_serving(&options, store.as_ref(), features.item_ids())?;
        let rules = resolve_rules(&options.config, &features)?;
        let items = item_snapshot(&features, now_ms())?;
        let trends = Trends::compute(&features, &items)?;
        let cache = NonZeroUsize::new(options.config.cache.capacity).map(|n| Mutex::new(LruCache::new(n)));
        let event_log = match &options.config.event_log {
            Some(dir) => Some(EventLog::open(
                dir,
                options.config.event_log_fsync,
                Duration::from_millis(options.config.event_log_fsync_ms),
            )?),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let exposure_log = match &options.config.exposure_log {
            Some(p) => Some(ExposureLog::open(
                p,
                options.config.exposure_queue,
                metrics.exposure_written.clone(),
                metrics.exposure_dropped.clone(),
            )?),
            None => None,
        };
        let exploration = match &options.config.exploration {
            Some(x) => Some(UniformExploration::new(x.epsilon, x.pool)?),
            None => None,
        };
        let canary = match &options.config.canary {
            Some(c) => Some(Arc::new(Canary::new(
                c.clone(),
                open_canary_shared(&options)?,
                options.registry.clone(),
                Arc::clone(&metrics),
            )?)),
            None => None,
        };
        let inner = Arc::new(Inner {
            canary,
            features_source,
            serving: ArcSwap::from_pointee(serving),
            features: RwLock::new(features),
            trends: RwLock::new(Arc::new(trends)),
            item_features: ItemSnapshot::new(items),
            sessions,
            store,
            rules,
            cache,
            metrics,
            event_log,
            exposure_log,
            exploration,
            reloads: Mutex::new((0, None)),
            reload_lock: Mutex::new(()),
            store_down_until: AtomicI64::new(0),
            options,
        });
        let rec = Recommender { inner };
        rec.publish_model_metrics();
        rec.spawn_trend_refresh();
        rec.spawn_canary();
        Ok(rec)
    }

    /// The background thread refreshing the item-feature snapshot (every
    /// `item_features_refresh_ms`: the items with new events and a slice of a sweep over the
    /// catalogue every `item_features_sweep_seconds`, see `snapshot.rs`) and, from it, the
    /// trending and popular lists (every `trending_refresh_seconds`). It stops when the
    /// recommender is dropped.
    fn spawn_trend_refresh(&self) {
        let config = &self.inner.options.config;
        let items_every = Duration::from_millis(config.item_features_refresh_ms.max(10));
        let trends_every = Duration::from_secs(config.trending_refresh_seconds.max(1));
        let per_tick = crate::snapshot::per_tick(
            self.inner.item_features.current().len(),
            items_every.as_millis() as u64,
            config.item_features_sweep_seconds.saturating_mul(1000),
        );
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new().name("trends".into()).spawn(move || {
            let mut trends_at = Instant::now();
            let mut refresher = Refresher::new(per_tick);
            loop {
                std::thread::sleep(items_every);
                let Some(inner) = weak.upgrade() else { return };
                let Ok(f) = inner.features.read() else { return };
                let started = Instant::now();
                let as_of = f.as_of(now_ms());
                let items = match refresher.tick(&inner.item_features, |i| rerank_item(&f, i, as_of)) {
                    Ok(items) => {
                        tracing::debug!(took = ?started.elapsed(), "item feature snapshot");
                        items
                    }
                    Err(e) => {
                        tracing::warn!("item feature refresh failed: {e}");
                        continue;
                    }
                };
                if trends_at.elapsed() >= trends_every {
                    trends_at = Instant::now();
                    match Trends::compute(&f, &items) {
                        Ok(t) => {
                            if let Ok(mut w) = inner.trends.write() {
                                *w = Arc::new(t);
                            }
                        }
                        Err(e) => tracing::warn!("trending refresh failed: {e}"),
                    }
                }
            }
        });
    }

    /// The background thread of the canary: one [`Canary::evaluate_now`] every
    /// `canary.evaluate_every_seconds`; it stops when the recommender is dropped.
    fn spawn_canary(&self) {
        let Some(canary) = &self.inner.canary else { return };
        let every = canary.interval();
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new().name("canary".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(inner) = weak.upgrade() else { return };
                if let Some(c) = &inner.canary
                    && let Err(e) = c.evaluate_now()
                {
                    tracing::warn!("canary evaluation failed, the state is unchanged: {e}");
                }
            }
        });
    }

    /// The canary, when the config has one (its state, figures and an evaluation on demand).
    pub fn canary(&self) -> Option<&Arc<Canary>> {
        self.inner.canary.as_ref()
    }

    fn publish_model_metrics(&self) {
        let s = self.inner.serving.load();
        let mut models = vec![(s.control.version.clone(), "control")];
        if let Some(c) = &s.candidate {
            models.push((c.version.clone(), "candidate"));
        }
        self.inner.metrics.set_models(&models);
    }

    /// The metrics this recommender records.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.options.config
    }

    /// The A/B variant of a user: `candidate` for the configured share of users (stable per user;
    /// with a canary, the share its shared state says now), else `control`.
    pub fn variant_of(&self, user_id: &str) -> Variant {
        let s = self.inner.serving.load();
        if s.candidate.is_none() {
            return Variant::Control;
        }
        let (salt, percent) = match (&self.inner.options.config.ab, &self.inner.canary) {
            (Some(ab), _) => (ab.salt.as_str(), ab.percent),
            (None, Some(c)) => (c.config().salt.as_str(), c.percent()),
            (None, None) => return Variant::Control,
        };
        if (ab_bucket(salt, user_id) as f64) < percent * 100.0 {
            Variant::Candidate
        } else {
            Variant::Control
        }
    }

    fn resolve(&self, f: &OnlineFeatures, q: &RecQuery) -> Result<Resolved> {
        let k = q.k.unwrap_or(self.inner.rules.k);
        if k == 0 || k > MAX_K {
            return Err(Error::bad("k", k, format!("must be in 1..={MAX_K}")));
        }
        let category = match &q.category {
            Some(c) => Some(
                f.category_code(c)
                    .ok_or_else(|| Error::bad("category", c, "not a category of the catalogue"))?,
            ),
            None => None,
        };
        if q.exclude.len() > MAX_EXCLUDE {
            return Err(Error::bad(
                "exclude",
                format!("{} item ids", q.exclude.len()),
                format!("at most {MAX_EXCLUDE} item ids"),
            ));
        }
        let mut exclude: Vec<u32> = q.exclude.iter().filter_map(|id| f.item_index(id)).collect();
        let (mut anchor, mut context_category) = (None, None);
        if let Some(ctx) = &q.context {
            if ctx.len() > 256 {
                return Err(Error::bad("context", truncate_chars(ctx, 32), "longer than 256 bytes"));
            }
            if let Some(id) = ctx.strip_prefix("product:") {
                anchor = Some(
                    f.item_index(id)
                        .ok_or_else(|| Error::bad("context", ctx, "product not in the catalogue"))?,
                );
                exclude.extend(anchor);
            } else if let Some(name) = ctx.strip_prefix("category:") {
                context_category = Some(
                    f.category_code(name)
                        .ok_or_else(|| Error::bad("context", ctx, "not a category of the catalogue"))?,
                );
            }
        }
        exclude.sort_unstable();
        exclude.dedup();
        let filters = RequestFilters {
            k: Some(k),
            category,
            min_price: q.min_price,
            max_price: q.max_price,
            exclude,
        };
        filters.validate()?;
        Ok(Resolved {
            k,
            filters,
            anchor,
            context_category: context_category.or(category),
        })
    }

    /// The top-k recommendations for a user (see the module docs for the pipeline). An unknown
    /// user is a cold start, not an error.
    pub fn recommend(&self, user_id: &str, query: &RecQuery) -> Result<Recommendations> {
        self.recommend_served(user_id, query).map(|s| s.recs)
    }

    /// [`Self::recommend`] with what the simulator also needs: the deterministic ranking the
    /// serving policy drew from and the propensities of what it showed.
    pub(crate) fn recommend_served(&self, user_id: &str, query: &RecQuery) -> Result<Served> {
        if user_id.trim().is_empty() || user_id.len() > 256 {
            return Err(Error::bad("user_id", user_id, "must be 1 to 256 bytes, not blank"));
        }
        check_query_context(query)?;
        let variant = self.variant_of(user_id);
        let Some(canary) = &self.inner.canary else {
            return self.recommend_as(user_id, query, variant);
        };
        let started = Instant::now();
        let out = self.recommend_as(user_id, query, variant);
        let outcome = match &out {
            Ok(r) => Ok(r.recs.items.len()),
            Err(e) => Err(!e.is_user_error()),
        };
        canary.record_call(variant, outcome, started.elapsed());
        out
    }

    /// [`Self::recommend`] for a user already assigned to `variant`.
    fn recommend_as(&self, user_id: &str, query: &RecQuery, variant: Variant) -> Result<Served> {
        let started = Instant::now();
        let inner = &*self.inner;
        let m = &inner.metrics;
        let serving = inner.serving.load_full();
        let model = match variant {
            Variant::Candidate => serving.candidate.as_ref().unwrap_or(&serving.control),
            Variant::Control => &serving.control,
        };

        let t = Instant::now();
        let skip_store = inner.store_skipped(now_ms());
        let session = if skip_store {
            m.fallback("store_skipped");
            Vec::new()
        } else {
            match inner.sessions.recent(user_id) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("session read failed, serving without the live session: {e}");
                    m.fallback("session_error");
                    inner.store_failed(now_ms());
                    Vec::new()
                }
            }
        };
        m.stage("session", t.elapsed());
        let generation = session_generation(&session);
        // `device` and `hour` do not change the ranking: not part of the key.
        let cache_key = format!(
            "{variant}\u{1f}{user_id}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}",
            query.k, query.context, query.category, query.min_price, query.max_price, query.exclude
        );
        if let Some(cache) = &inner.cache {
            let mut c = cache
                .lock()
                .map_err(|_| Error::Internal("cache lock poisoned".into()))?;
            let ttl = Duration::from_secs(inner.options.config.cache.ttl_seconds);
            if let Some(e) = c.get(&cache_key)
                && e.generation == generation
                && e.at.elapsed() < ttl
                && e.value.recs.model_version == model.version
            {
                m.cache.get_or_create(&CacheLabel { result: "hit" }).inc();
                m.variants
                    .get_or_create(&VariantLabel {
                        variant: variant.as_str(),
                    })
                    .inc();
                let ranked = Arc::clone(&e.value);
                drop(c);
                let k = query.k.unwrap_or(inner.rules.k);
                let out = self.serve_ranked(ranked, k, query, true, now_ms());
                m.stage("total", started.elapsed());
                return Ok(out);
            }
            m.cache.get_or_create(&CacheLabel { result: "miss" }).inc();
        }

        let f = inner
            .features
            .read()
            .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
        let mut r = self.resolve(&f, query)?;
        let k = r.k;
        if let Some(x) = &inner.exploration {
            // The deterministic ranking of the pool the exploration draws from.
            r.k = x.pool.max(k);
            r.filters.k = Some(r.k);
        }
        let now = now_ms();
        let as_of = f.as_of(now);
        let user = f.user_index(user_id);
        let offline = match user {
            Some(u) => f.engine().user_features(u, as_of)?,
            None => f.engine().user_features(u32::MAX, as_of)?,
        };
        // Step 1: the history (the offline recent events and the live session).
        let hist = UserHistory::build(
            &offline.recent,
            session
                .iter()
                .filter_map(|e| f.item_index(&e.item_id).map(|i| (i, e.event_type, e.ts))),
            model.history_len().max(f.engine().config().history_len),
            model.num_items() as u32,
        );
        let (recent, history, purchased, in_cart) = (&hist.recent, &hist.events, &hist.purchased, &hist.in_cart);
        let (age, region) = user.map_or((None, None), |u| f.demographics(u));
        let anonymous = inner.options.popular_only || (history.is_empty() && age.is_none() && region.is_none());
        let trends = inner.trends.read().map(|t| Arc::clone(&t)).unwrap_or_default();
        let item_snapshot = inner.item_features.current();

        // Step 2: candidates (the store, else the user tower and the item index, else popular).
        let t = Instant::now();
        let embedding = if anonymous {
            None
        } else {
            Some(model.user_embedding(history, age, region, as_of)?)
        };
        let (candidates, source) = inner.candidates(
            model,
            user_id,
            CandidateInputs {
                anonymous,
                skip_store,
                embedding: embedding.as_deref(),
                purchased,
                anchor: r.anchor,
                context_category: r.context_category,
                trends: &trends,
            },
        )?;
        m.stage("candidates", t.elapsed());

        // Re-ranking features, then the pure pipeline.
        let t = Instant::now();
        let dim = model.dim();
        let zeros = vec![0.0f32; dim];
        let emb = embedding.as_deref().unwrap_or(&zeros);
        let catalog = f.engine().catalog();
        let session_categories: Vec<u32> = session
            .iter()
            .filter_map(|e| f.item_index(&e.item_id))
            .filter_map(|i| catalog.category.get(i as usize).copied().flatten())
            .collect();
        let last_cats = last_category_times(recent, catalog);
        let ruser = RerankUser {
            embedding: emb,
            avg_order_value: offline.avg_order_value,
            session_categories: &session_categories,
            last_category_ms: &last_cats,
            now_ms: as_of,
            recency_half_life_ms: 24 * 3600 * 1000,
        };
        let prepared = ruser.prepare();
        // Step 3: the re-ranking features, then step 4, the pure pipeline (re-rank, rules,
        // diversity, pins, fill-up).
        let codes = model.quantized();
        let feats = features::rerank_features(&candidates, codes, &item_snapshot, emb, &prepared, |item| {
            rerank_item(&f, item, as_of)
        })?;
        let recently_viewed = hist.recently_viewed(10);
        let similarity = Similarity::Quantized(codes);
        let items = ItemAttributes {
            category: f.item_categories(),
            brand: f.item_brands(),
            price: f.item_prices(),
            in_stock: f.in_stock(),
        };
        let ctx = Context {
            reranker: model.reranker(),
            rules: &inner.rules,
            diversity: &inner.options.config.diversity,
            items,
            similarity,
            rerank_keep: inner.options.config.rerank_keep,
        };
        let popular = trends.popular_in(r.filters.category.or(r.context_category));
        let request = Request {
            candidates: &candidates,
            features: &feats,
            filters: &r.filters,
            user: UserExclusions { purchased, in_cart },
            reasons: ReasonInputs {
                recently_viewed: &recently_viewed,
                similarity: Some(similarity),
                trending: &trends.trending_sorted,
                popular: &trends.popular_reason,
            },
            popular,
        };
        let mut top = recommend(&request, &ctx)?;
        if top.items.len() < r.k {
            // Never an empty answer while the catalogue has in-stock items: widen the fill-up to
            // the whole catalogue's popular list.
            let eligible = Eligibility::new(items, request.user, &r.filters)?;
            recsys_core::rules::fill_from(&mut top, &trends.popular, &eligible);
        }
        m.stage("rerank", t.elapsed());
        // Step 5: the answer in the catalogue's ids and words.
        let pinned = if inner.exploration.is_some() {
            render::pinned_slots(&top.items, &inner.rules.pins)
        } else {
            Vec::new()
        };
        let recs = Recommendations {
            user_id: user_id.to_string(),
            model_version: model.version.clone(),
            variant,
            items: render::render_items(&top.items, f.item_ids(), |i| f.item_label(i), f.categories()),
            source,
            request_id: String::new(),
        };
        drop(f);
        let ranked = Arc::new(Ranked { recs, pinned });
        let out = self.serve_ranked(Arc::clone(&ranked), k, query, false, now);
        if let Some(cache) = &inner.cache
            && let Ok(mut c) = cache.lock()
        {
            c.put(
                cache_key,
                CacheEntry {
                    generation,
                    at: Instant::now(),
                    value: ranked,
                },
            );
        }
        m.variants
            .get_or_create(&VariantLabel {
                variant: variant.as_str(),
            })
            .inc();
        m.stage("total", started.elapsed());
        Ok(out)
    }

    /// The serving policy's answer from a deterministic ranking (fresh or cached): the top `k`,
    /// or with exploration the request's draw; with a fresh request id. Queues its exposure
    /// record (never blocking) when an exposure log is configured.
    fn serve_ranked(&self, ranked: Arc<Ranked>, k: usize, query: &RecQuery, cached: bool, now: i64) -> Served {
        let request_id = query.request_id.clone().unwrap_or_else(new_request_id);
        let det = &ranked.recs;
        let n = det.items.len();
        let (shown, propensities) = match &self.inner.exploration {
            None => ((0..k.min(n)).collect::<Vec<usize>>(), None),
            Some(x) => {
                let draw = x.draw(n, &ranked.pinned, k, &mut request_rng(&request_id));
                let p = x.propensities(n, &ranked.pinned, k, &draw.shown);
                (draw.shown, Some(p))
            }
        };
        let out = Recommendations {
            user_id: det.user_id.clone(),
            model_version: det.model_version.clone(),
            variant: det.variant,
            items: shown.iter().map(|&i| det.items[i].clone()).collect(),
            source: det.source,
            request_id,
        };
        if let Some(log) = &self.inner.exposure_log {
            let base = if out.source == Source::Popular {
                "popular"
            } else {
                "two-tower"
            };
            let policy = match &self.inner.exploration {
                Some(x) => x.name(base),
                None => base.to_string(),
            };
            log.send(ExposureRecord {
                v: recsys_core::exposure::FORMAT_VERSION,
                request_id: out.request_id.clone(),
                ts: now,
                user_id: out.user_id.clone(),
                variant: out.variant.to_string(),
                model_version: out.model_version.clone(),
                policy,
                context: ExposureContext {
                    page: query.context.clone(),
                    device: query.device.clone(),
                    hour: query.hour.or_else(|| recsys_core::exposure::hour_of(now)),
                },
                items: out
                    .items
                    .iter()
                    .enumerate()
                    .map(|(slot, it)| ExposedItem {
                        item_id: it.item_id.clone(),
                        position: slot as u32 + 1,
                        score: it.score,
                        propensity: propensities.as_ref().map_or(1.0, |p| p[slot]),
                    })
                    .collect(),
                cached,
                source: Some(out.source.to_string()),
            });
        }
        Served {
            recs: out,
            ranked,
            propensities,
        }
    }

    /// Blocks until the exposure records of every response served so far are written and flushed
    /// (nothing to do without an exposure log). Dropping the last handle does the same.
    pub fn flush_exposures(&self) -> Result<()> {
        match &self.inner.exposure_log {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    /// Items similar to `item_id` (product pages): the stored neighbours, else the model's nearest
    /// items; the item itself and out-of-stock items are excluded.
    pub fn similar(&self, item_id: &str, k: usize) -> Result<SimilarItems> {
        if k == 0 || k > MAX_K {
            return Err(Error::bad("k", k, format!("must be in 1..={MAX_K}")));
        }
        let inner = &*self.inner;
        let f = inner
            .features
            .read()
            .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
        let item = f.item_index(item_id).ok_or_else(|| Error::NotFound {
            kind: "item",
            id: item_id.to_string(),
        })?;
        let serving = inner.serving.load_full();
        let model = &serving.control;
        let stored = if inner.store_skipped(now_ms()) {
            inner.metrics.fallback("store_skipped");
            None
        } else {
            match model.stored_similar(item_id) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("candidate store failed, answering from the model: {e}");
                    inner.metrics.fallback("store_error");
                    inner.store_failed(now_ms());
                    None
                }
            }
        };
        let in_stock = f.in_stock();
        let ok =
            |s: &Scored| s.item != item && in_stock.is_none_or(|st| st.get(s.item as usize).copied().unwrap_or(false));
        let mut list: Vec<Scored> = stored.unwrap_or_default().into_iter().filter(ok).collect();
        if list.len() < k
            && let Some(v) = model.item_vector(item)
        {
            let exclude = [item];
            let more = model.search(
                v,
                k + 1,
                &Filter {
                    exclude: &exclude,
                    ..Default::default()
                },
            )?;
            for s in more.into_iter().filter(ok) {
                if !list.iter().any(|x| x.item == s.item) {
                    list.push(s);
                }
            }
        }
        list.truncate(k);
        let label = f.item_label(item).unwrap_or_else(|| item_id.to_string());
        let ids = f.item_ids();
        Ok(SimilarItems {
            item_id: item_id.to_string(),
            model_version: model.version.clone(),
            items: list
                .into_iter()
                .map(|s| RecItem {
                    item_id: ids[s.item as usize].clone(),
                    score: s.score,
                    reason: format!("Similar to {label}"),
                })
                .collect(),
        })
    }

    /// Appends events to the event log, then applies them at once (features, session state). The
    /// batch is validated first and applied entirely or not at all; returns how many were accepted.
    pub fn ingest(&self, events: &[EventIn]) -> Result<usize> {
        let inner = &*self.inner;
        let now = now_ms();
        let mut resolved = Vec::with_capacity(events.len());
        {
            let f = inner
                .features
                .read()
                .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
            for (k, e) in events.iter().enumerate() {
                let (_, event_type, ts) = f.check(e, now).map_err(|err| match err {
                    Error::BadRequest { field, value, reason } => Error::bad(format!("[{k}].{field}"), value, reason),
                    other => other,
                })?;
                resolved.push((event_type, ts));
            }
        }
        // The event log first: an event is applied only once it is logged (and synced, by the
        // fsync policy), so a failed write is an error with nothing applied, and the client's
        // retry neither loses nor double-counts it.
        if let Some(log) = &inner.event_log {
            let rows: Vec<(EventIn, i64)> = events.iter().cloned().zip(resolved.iter().map(|r| r.1)).collect();
            log.append(&rows, now)?;
        }
        let session: Vec<(&str, SessionEvent)> = events
            .iter()
            .zip(&resolved)
            .map(|(e, &(event_type, ts))| {
                (
                    e.user_id.as_str(),
                    SessionEvent {
                        item_id: e.item_id.clone(),
                        event_type,
                        ts,
                    },
                )
            })
            .collect();
        // The shared session (Redis with several replicas), under the same time budget and
        // circuit breaker as the request path: when the store failed a moment ago it is not tried
        // again until the back-off ends, so a hung Redis cannot hold every event post (and the
        // requests behind them) for its timeout. The event still counts here (features, this
        // replica's history, the event log): no 5xx, a counted fallback.
        if inner.store_skipped(now) {
            inner.metrics.fallback("store_skipped");
        } else if let Err(e) = inner.sessions.append(&session) {
            tracing::warn!("session store failed, the event is applied to this replica only: {e}");
            inner.metrics.fallback("session_error");
            inner.store_failed(now_ms());
        }
        {
            let mut f = inner
                .features
                .write()
                .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
            let mut touched = Vec::with_capacity(events.len());
            for e in events {
                touched.push(f.ingest(e, now)?);
            }
            // Under the same write lock: the next snapshot tick sees these events.
            inner.item_features.touch(touched);
        }
        inner.metrics.events.inc_by(events.len() as u64);
        if let Some(canary) = &inner.canary {
            for (e, &(event_type, _)) in events.iter().zip(&resolved) {
                let (clicks, purchases) = match event_type {
                    EventType::Click => (1, 0),
                    EventType::Purchase => (0, 1),
                    _ => continue,
                };
                canary.record_events(self.variant_of(&e.user_id), clicks, purchases);
            }
        }
        Ok(events.len())
    }

    /// Loads the registry's `current` model (and the A/B candidate) and the matching store version,
    /// then swaps them in atomically: requests in flight finish on the old models, none fails. On
    /// error the old models keep serving and the error is reported (and kept for [`Self::status`]).
    pub fn reload(&self) -> Result<Status> {
        let inner = &*self.inner;
        let _guard = inner
            .reload_lock
            .lock()
            .map_err(|_| Error::Internal("reload lock poisoned".into()))?;
        let ids: Vec<String> = {
            let f = inner
                .features
                .read()
                .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
            f.item_ids().to_vec()
        };
        match at_low_priority(|| load_serving(&inner.options, inner.store.as_ref(), &ids)) {
            Ok(s) => {
                inner.serving.store(Arc::new(s));
                if let Some(c) = &inner.cache
                    && let Ok(mut c) = c.lock()
                {
                    c.clear();
                }
                if let Ok(mut r) = inner.reloads.lock() {
                    r.0 += 1;
                    r.1 = None;
                }
                inner.metrics.reloads.get_or_create(&CacheLabel { result: "hit" }).inc();
                self.publish_model_metrics();
                self.status()
            }
            Err(e) => {
                tracing::error!("reload failed, the previous models keep serving: {e}");
                if let Ok(mut r) = inner.reloads.lock() {
                    r.1 = Some(e.to_string());
                }
                inner
                    .metrics
                    .reloads
                    .get_or_create(&CacheLabel { result: "miss" })
                    .inc();
                Err(e)
            }
        }
    }

    /// What is being served.
    pub fn status(&self) -> Result<Status> {
        let inner = &*self.inner;
        let s = inner.serving.load();
        let f = inner
            .features
            .read()
            .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
        let (reloads, last_reload_error) = inner.reloads.lock().map(|r| r.clone()).unwrap_or((0, None));
        Ok(Status {
            model_version: s.control.version.clone(),
            candidate_version: s.candidate.as_ref().map(|c| c.version.clone()),
            candidate_percent: match (&inner.options.config.ab, &inner.canary, &s.candidate) {
                (Some(ab), _, Some(_)) => ab.percent,
                (None, Some(c), Some(_)) => c.percent(),
                _ => 0.0,
            },
            store_version: s.control.store_version().map(str::to_string),
            store: inner.store.as_ref().map(|st| st.url()),
            reranker_fitted: s.control.reranker_fitted,
            sessions: inner.sessions.describe(),
            items: f.num_items(),
            users: f.num_users(),
            reloads,
            last_reload_error,
            cache_entries: inner
                .cache
                .as_ref()
                .and_then(|c| c.lock().ok().map(|c| c.len()))
                .unwrap_or(0),
        })
    }

    /// Whether the store answers (always true without one).
    pub fn store_ok(&self) -> bool {
        match &self.inner.store {
            None => true,
            Some(s) => s.active_version().is_ok(),
        }
    }

    /// Features of a user now (real-time feature look-up).
    pub fn user_features(&self, user_id: &str) -> Result<crate::online::UserFeaturesOut> {
        let f = self
            .inner
            .features
            .read()
            .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
        f.user_features(user_id, now_ms())
    }

    /// Features of an item now.
    pub fn item_features(&self, item_id: &str) -> Result<crate::online::ItemFeaturesOut> {
        let f = self
            .inner
            .features
            .read()
            .map_err(|_| Error::Internal("feature lock poisoned".into()))?;
        f.item_features(item_id, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, from `/proc/thread-self/stat` (field 19).
    #[cfg(target_os = "linux")]
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reload_work_runs_at_a_lower_cpu_priority_and_leaves_the_callers() {
        let before = own_nice();
        let inside = at_low_priority(own_nice);
        assert_eq!(inside, (before + i64::from(RELOAD_NICENESS)).min(19));
        assert_eq!(own_nice(), before);
        let caught = std::panic::catch_unwind(|| at_low_priority(|| -> u8 { panic!("load failed") }));
        assert!(caught.is_err(), "a panic while loading reaches the caller");
    }

    #[test]
    fn ab_buckets_are_stable_and_spread() {
        assert_eq!(ab_bucket("ab", "U1"), ab_bucket("ab", "U1"));
        let n = 20_000;
        let under_5 = (0..n).filter(|i| ab_bucket("ab", &format!("U{i}")) < 500).count();
        let share = under_5 as f64 / n as f64;
        assert!((0.04..0.06).contains(&share), "{share}");
        assert_ne!(
            (0..100).map(|i| ab_bucket("a", &format!("U{i}"))).collect::<Vec<_>>(),
            (0..100).map(|i| ab_bucket("b", &format!("U{i}"))).collect::<Vec<_>>()
        );
    }

    #[test]
    fn session_generation_changes_with_every_event() {
        let e = |ts| SessionEvent {
            item_id: "P1".into(),
            event_type: EventType::Click,
            ts,
        };
        let a = session_generation(&[e(1)]);
        assert_ne!(a, session_generation(&[e(1), e(2)]));
        assert_ne!(a, session_generation(&[e(2)]));
        assert_eq!(a, session_generation(&[e(1)]));
    }
}
