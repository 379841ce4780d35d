//! # techshop-recs-node
//!
//! The Node.js binding of techshop-recs (npm package `techshop-recs`): a thin napi-rs layer over
//! [`recsys_serve::Recommender`]. Every behaviour lives in the Rust crates; this file only converts
//! arguments and answers between JavaScript and Rust and maps errors to JS `Error`s with a `code`.
//!
//! Calls that do real work return promises and run off the event loop: the online calls
//! (`recommend`, `similar`, `ingest`) on the binding's own worker threads when they come back to
//! back ([`lane`], which spares them libuv's two thread wake-ups per call), else on the libuv
//! thread pool, where `open` and `reload` always run, as napi [`Task`]s.

pub mod lane;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use recsys_serve::online::EventIn;
use recsys_serve::{Error as RecError, RecQuery, RecommenderOptions, ServeConfig};
use std::path::PathBuf;

/// The `code` of a JS error for a Rust error: the one place that classifies errors.
///
/// `INVALID_ARGUMENT` (the caller's input; the message names the field), `NOT_FOUND` (an unknown
/// id), `IO` (a file could not be read or written), `UNAVAILABLE` (an external service such as
/// Redis failed), `INTERNAL` (a bug).
pub fn error_code(e: &RecError) -> &'static str {
    fn core(e: &recsys_core::Error) -> &'static str {
        match e {
            recsys_core::Error::NotFound { .. } => "NOT_FOUND",
            recsys_core::Error::Io { .. } => "IO",
            recsys_core::Error::Unavailable { .. } => "UNAVAILABLE",
            e if e.is_user_error() => "INVALID_ARGUMENT",
            _ => "INTERNAL",
        }
    }
    match e {
        RecError::NotFound { .. } => "NOT_FOUND",
        RecError::Core(c) => core(c),
        e if e.is_user_error() => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    }
}

/// The field a user error names, if any (set as the JS error's `field` property).
fn error_field(e: &RecError) -> Option<&str> {
    match e {
        RecError::BadRequest { field, .. } => Some(field),
        RecError::Core(recsys_core::Error::InvalidInput { field, .. }) => Some(field),
        _ => None,
    }
}

/// The operating system's error kind of an `IO` error (`NotFound`, `PermissionDenied`, ...), as
/// Rust's `std::io::ErrorKind` names it.
fn error_io_kind(e: &RecError) -> Option<String> {
    match e {
        RecError::Core(recsys_core::Error::Io { kind, .. }) => Some(format!("{kind:?}")),
        _ => None,
    }
}

/// The JS `Error` for a Rust error (message: the Rust message; `code`: [`error_code`]; `field`
/// for invalid arguments; `ioKind` for `IO` errors).
fn js_error_unknown<'env>(env: &Env, e: &RecError) -> Unknown<'env> {
    let value = JsError::from(Error::new(error_code(e), e.to_string())).into_unknown(Env::from_raw(env.raw()));
    // Best effort: without these properties the error still has the message naming them.
    if let Some(field) = error_field(e) {
        let _ = value.coerce_to_object().and_then(|mut o| o.set("field", field));
    }
    if let Some(kind) = error_io_kind(e) {
        let _ = value.coerce_to_object().and_then(|mut o| o.set("ioKind", kind));
    }
    value
}

/// [`js_error_unknown`] as the raw value a [`lane`] call's promise rejects with.
fn js_error_value(env: &Env, e: &RecError) -> napi::sys::napi_value {
    js_error_unknown(env, e).raw()
}

/// [`js_error_unknown`] wrapped so that napi throws or rejects with exactly that object.
fn js_error(env: &Env, e: &RecError) -> Error {
    Error::from(js_error_unknown(env, e))
}

/// A user error raised by the binding itself (argument checks JavaScript's types cannot express).
fn bad(field: &str, value: impl ToString, reason: &str) -> RecError {
    RecError::bad(field, value, reason)
}

/// A JS number that must be a whole count in 0..=u32::MAX.
fn count(field: &str, v: Option<f64>) -> std::result::Result<Option<usize>, RecError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => Ok(Some(x as usize)),
        Some(x) => Err(bad(field, x, "must be a non-negative integer")),
    }
}

/// The f32 score as the number its shortest decimal form denotes, so that JavaScript sees the same
/// value as a JSON client of `recsys-serve` (and Python).
fn score(s: f32) -> f64 {
    s.to_string().parse().unwrap_or(s as f64)
}

/// A call into the recommender, run on the libuv thread pool; its Rust error is kept for
/// [`Task::resolve`], which runs on the JS thread and builds the JS error there.
pub struct Job<T: Send + 'static, J> {
    work: Option<Box<dyn FnOnce() -> std::result::Result<T, RecError> + Send>>,
    convert: fn(T) -> J,
}

impl<T: Send + 'static, J> Job<T, J> {
    fn new(work: impl FnOnce() -> std::result::Result<T, RecError> + Send + 'static, convert: fn(T) -> J) -> Self {
        Job {
            work: Some(Box::new(work)),
            convert,
        }
    }
}

/// A task's closure, taken out for its one run on the thread pool.
fn take_work<W>(work: &mut Option<W>) -> Result<W> {
    work.take()
        .ok_or_else(|| Error::from_reason("techshop-recs: task computed twice"))
}

impl<T: Send + 'static, J: ToNapiValue + TypeName> Task for Job<T, J> {
    type Output = std::result::Result<T, RecError>;
    type JsValue = J;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(take_work(&mut self.work)?())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        output.map(self.convert).map_err(|e| js_error(&env, &e))
    }
}

/// An online call on libuv's thread pool, when the [`lane`] does not take it (busy-waiting off, a
/// call after idle time, or no core free for spinning): the work runs in [`Task::compute`], the
/// answer becomes a JS value in [`Task::resolve`] (as the lane's `JsSide::drain` does for its own).
pub struct PoolJob {
    work: Option<lane::Work>,
    _slot: lane::PoolSlot,
}

impl Task for PoolJob {
    type Output = std::result::Result<lane::Answer, RecError>;
    type JsValue = Either<Unknown<'static>, u32>;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(take_work(&mut self.work)?())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        lane::settled();
        match output.map_err(|e| js_error(&env, &e))? {
            lane::Answer::Json(text) => {
                let json: napi::JSON<'static> = env.get_global()?.get_named_property_unchecked("JSON")?;
                let parse: Function<'static, String, Unknown<'static>> = json.get_named_property_unchecked("parse")?;
                parse.call(text).map(Either::A)
            }
            lane::Answer::Count(n) => Ok(Either::B(n)),
        }
    }
}

/// Runs an online call off the event loop: on the [`lane`] when it takes it
/// ([`lane::takes_call`]), else on libuv's pool. A Rust error rejects the promise with
/// [`js_error_value`].
fn online_call<'env>(env: &'env Env, work: lane::Work) -> Result<Unknown<'env>> {
    match lane::config() {
        Ok(c) if !lane::takes_call(&c) => {
            let job = PoolJob {
                work: Some(work),
                _slot: lane::PoolSlot::take(),
            };
            Ok(env.spawn(job)?.promise_object().to_unknown())
        }
        // The lane takes it; bad settings make the lane reject it, naming them.
        _ => lane::call(env, work, js_error_value),
    }
}

/// An online call whose answer is serialised to JSON on the worker and turned into JS objects by
/// V8's `JSON.parse` on the JS thread: one string crossing instead of an object and a property
/// set per field, which halves the binding's overhead for `recommend` and keeps the conversion
/// work off the event loop. The shape is the `#[napi(object)]` struct's (camelCase).
fn json_call<'env, T: serde::Serialize>(
    env: &'env Env,
    work: impl FnOnce() -> std::result::Result<T, RecError> + Send + 'static,
) -> Result<Unknown<'env>> {
    online_call(
        env,
        Box::new(move || {
            let value = work()?;
            serde_json::to_string(&value)
                .map(lane::Answer::Json)
                .map_err(|e| RecError::Internal(format!("serialising the answer: {e}")))
        }),
    )
}

/// Options of `Recommender.open`.
#[napi(object)]
pub struct OpenOptions {
    /// Candidate store URL (`file:DIR`, `redis://...`): the candidates and the online features
    /// `recsys-train precompute` published with the model's version.
    pub store: Option<String>,
    /// Dataset directory to warm the features from instead of the store; only an addon built with
    /// recsys-serve's `dataset` feature accepts it (the npm package's does not).
    pub data: Option<String>,
    /// Serving configuration: the JSON of `recsys-serve --config` as an object (every field
    /// optional), e.g. `{ cache: { capacity: 0 }, rules: { k: 10 } }`.
    #[napi(ts_type = "Record<string, unknown>")]
    pub config: Option<serde_json::Value>,
}

/// Options of `recommend`.
#[napi(object)]
pub struct RecommendOptions {
    /// Items to return (default: the config's `rules.k`, 20); 1 to 500.
    pub k: Option<f64>,
    /// Page context: `home`, `cart`, `product:ITEM_ID` or `category:NAME`.
    pub context: Option<String>,
    /// Only items of this category.
    pub category: Option<String>,
    /// Only items priced at least this.
    pub min_price: Option<f64>,
    /// Only items priced at most this.
    pub max_price: Option<f64>,
    /// Item ids never to return.
    pub exclude: Option<Vec<String>>,
    /// The client's device (`mobile`, `desktop`, ...): 1 to 32 characters of `[A-Za-z0-9_-]`.
    pub device: Option<String>,
    /// The user's local hour of day, 0 to 23 (default: the UTC hour of the request).
    pub hour: Option<f64>,
    /// Your id for this request (1 to 64 characters of `[A-Za-z0-9_.:-]`), returned as the
    /// answer's `requestId` and logged with the exposure instead of a fresh one.
    pub request_id: Option<String>,
}

/// Options of `similar`.
#[napi(object)]
pub struct SimilarOptions {
    /// Items to return (default 20); 1 to 500.
    pub k: Option<f64>,
}

/// One event for `ingest`.
#[napi(object)]
pub struct UserEvent {
    /// User id as imported.
    pub user_id: String,
    /// Item id as imported.
    pub item_id: String,
    /// `view`, `click`, `add_to_cart` or `purchase`.
    pub event_type: String,
    /// UTC milliseconds; now when absent.
    pub timestamp: Option<f64>,
    /// Session id.
    pub session_id: Option<String>,
    /// Unit price.
    pub price: Option<f64>,
    /// Quantity.
    pub quantity: Option<f64>,
    /// Rating.
    pub rating: Option<f64>,
    /// The `requestId` of the answer this event came from (attribution; at most 64 bytes).
    pub request_id: Option<String>,
}

/// One recommended item.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecItem {
    /// Item id as imported.
    pub item_id: String,
    /// Final score (higher is better; comparable within one answer).
    pub score: f64,
    /// A short explanation.
    pub reason: String,
}

fn items(v: Vec<recsys_serve::RecItem>) -> Vec<RecItem> {
    v.into_iter()
        .map(|i| RecItem {
            item_id: i.item_id,
            score: score(i.score),
            reason: i.reason,
        })
        .collect()
}

/// The answer of `recommend`.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendations {
    /// The user asked for.
    pub user_id: String,
    /// The model version that answered.
    pub model_version: String,
    /// The A/B variant: `control` or `candidate`.
    pub variant: String,
    /// Best first.
    pub items: Vec<RecItem>,
    /// Where the candidates came from: `store`, `model` or `popular`.
    pub source: String,
    /// Unique per answer (a cached answer gets a fresh one); events may quote it back.
    pub request_id: String,
}

impl From<recsys_serve::Recommendations> for Recommendations {
    fn from(r: recsys_serve::Recommendations) -> Self {
        Recommendations {
            user_id: r.user_id,
            model_version: r.model_version,
            variant: r.variant.to_string(),
            items: items(r.items),
            source: r.source.to_string(),
            request_id: r.request_id,
        }
    }
}

/// The answer of `similar`.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimilarItems {
    /// The item asked for.
    pub item_id: String,
    /// The model version that answered.
    pub model_version: String,
    /// Most similar first (the item itself and out-of-stock items excluded).
    pub items: Vec<RecItem>,
}

impl From<recsys_serve::SimilarItems> for SimilarItems {
    fn from(s: recsys_serve::SimilarItems) -> Self {
        SimilarItems {
            item_id: s.item_id,
            model_version: s.model_version,
            items: items(s.items),
        }
    }
}

/// What `status` and `reload` report.
#[napi(object)]
pub struct Status {
    /// Version serving the `control` variant.
    pub model_version: String,
    /// Version serving the `candidate` variant, when an A/B split is configured.
    pub candidate_version: Option<String>,
    /// Share of users on the candidate, percent.
    pub candidate_percent: f64,
    /// The candidate-store version read.
    pub store_version: Option<String>,
    /// The store URL (password redacted).
    pub store: Option<String>,
    /// Whether the re-ranker weights were fitted offline.
    pub reranker_fitted: bool,
    /// Where session state lives.
    pub sessions: String,
    /// Catalogue items.
    pub items: f64,
    /// Known users.
    pub users: f64,
    /// Successful reloads since start.
    pub reloads: f64,
    /// The error of the last failed reload (the previous models kept serving).
    pub last_reload_error: Option<String>,
    /// Response-cache entries.
    pub cache_entries: f64,
}

impl From<recsys_serve::Status> for Status {
    fn from(s: recsys_serve::Status) -> Self {
        Status {
            model_version: s.model_version,
            candidate_version: s.candidate_version,
            candidate_percent: s.candidate_percent,
            store_version: s.store_version,
            store: s.store,
            reranker_fitted: s.reranker_fitted,
            sessions: s.sessions,
            items: s.items as f64,
            users: s.users as f64,
            reloads: s.reloads as f64,
            last_reload_error: s.last_reload_error,
            cache_entries: s.cache_entries as f64,
        }
    }
}

/// The online recommender (candidates → session → re-rank → rules and diversity → top-k with
/// reasons), opened once and shared by every request of the process.
#[napi]
pub struct Recommender {
    inner: recsys_serve::Recommender,
}

#[napi]
impl Recommender {
    /// Loads the registry's `current` model and the store, with its candidates and online features (off
    /// the event loop).
    #[napi(ts_return_type = "Promise<Recommender>")]
    pub fn open(
        registry: String,
        options: Option<OpenOptions>,
    ) -> AsyncTask<Job<recsys_serve::Recommender, Recommender>> {
        let options = options.unwrap_or(OpenOptions {
            store: None,
            data: None,
            config: None,
        });
        AsyncTask::new(Job::new(
            move || {
                let config = match options.config {
                    None => ServeConfig::default(),
                    Some(v) => serde_json::from_value(v).map_err(|e| bad("config", "(object)", &e.to_string()))?,
                };
                let inner = recsys_serve::Recommender::open(RecommenderOptions {
                    registry: PathBuf::from(registry),
                    data: options.data.map(PathBuf::from),
                    store: options.store,
                    config,
                    model: None,
                    popular_only: false,
                })?;
                Ok(inner)
            },
            |inner| Recommender { inner },
        ))
    }

    /// The top-k recommendations for a user; an unknown user is a cold start, not an error.
    #[napi(strict, ts_return_type = "Promise<Recommendations>")]
    pub fn recommend<'env>(
        &self,
        env: &'env Env,
        user_id: String,
        options: Option<RecommendOptions>,
    ) -> Result<Unknown<'env>> {
        let rec = self.inner.clone();
        json_call(env, move || {
            let query = match options {
                None => RecQuery::default(),
                Some(o) => RecQuery {
                    k: count("k", o.k)?,
                    context: o.context,
                    category: o.category,
                    min_price: o.min_price,
                    max_price: o.max_price,
                    exclude: o.exclude.unwrap_or_default(),
                    device: o.device,
                    hour: match o.hour {
                        None => None,
                        Some(h) if h.is_finite() && h.fract() == 0.0 && (0.0..=23.0).contains(&h) => Some(h as u8),
                        Some(h) => return Err(bad("hour", h, "must be an integer in 0..=23")),
                    },
                    request_id: o.request_id,
                },
            };
            rec.recommend(&user_id, &query).map(Recommendations::from)
        })
    }

    /// Items similar to an item (the item itself excluded); `NOT_FOUND` for an unknown item.
    #[napi(strict, ts_return_type = "Promise<SimilarItems>")]
    pub fn similar<'env>(
        &self,
        env: &'env Env,
        item_id: String,
        options: Option<SimilarOptions>,
    ) -> Result<Unknown<'env>> {
        let rec = self.inner.clone();
        json_call(env, move || {
            let k = count("k", options.and_then(|o| o.k))?.unwrap_or(20);
            rec.similar(&item_id, k).map(SimilarItems::from)
        })
    }

    /// Applies events (features, session state): all or none; resolves to the number accepted.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn ingest<'env>(&self, env: &'env Env, events: Vec<UserEvent>) -> Result<Unknown<'env>> {
        let rec = self.inner.clone();
        let work: lane::Work = Box::new(move || {
            let mut batch = Vec::with_capacity(events.len());
            for (i, e) in events.into_iter().enumerate() {
                let timestamp = match e.timestamp {
                    Some(t) if !t.is_finite() || t.fract() != 0.0 => {
                        return Err(bad(&format!("[{i}].timestamp"), t, "must be an integer (UTC ms)"));
                    }
                    t => t.map(|t| t as i64),
                };
                let quantity = count(&format!("[{i}].quantity"), e.quantity)?.map(|q| q as u32);
                batch.push(EventIn {
                    user_id: e.user_id,
                    item_id: e.item_id,
                    event_type: e.event_type,
                    timestamp,
                    session_id: e.session_id,
                    price: e.price,
                    quantity,
                    rating: e.rating.map(|r| r as f32),
                    request_id: e.request_id,
                });
            }
            rec.ingest(&batch).map(|n| lane::Answer::Count(n as u32))
        });
        online_call(env, work)
    }

    /// Reloads the registry's `current` model and the store (atomic: on failure the previous
    /// models keep serving and the promise rejects).
    #[napi(ts_return_type = "Promise<Status>")]
    pub fn reload(&self) -> AsyncTask<Job<recsys_serve::Status, Status>> {
        let rec = self.inner.clone();
        AsyncTask::new(Job::new(move || rec.reload(), Status::from))
    }

    /// What is being served (cheap, synchronous).
    #[napi]
    pub fn status(&self, env: Env) -> Result<Status> {
        self.inner.status().map(Status::from).map_err(|e| js_error(&env, &e))
    }
}
