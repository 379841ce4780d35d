//! The HTTP surface over [`Recommender`] (documented in `recsys-serve/openapi.yaml`).
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/recommendations?user_id=&k=&context=&category=&min_price=&max_price=&exclude=&device=&hour=` | top-k for a user (with its `request_id`) |
//! | `GET /api/v1/similar?item_id=&k=` | item-to-item |
//! | `POST /api/v1/events` | one event object or an array (optional `request_id` attribution); updates the session state at once |
//! | `GET /api/v1/features/users/{user_id}`, `/api/v1/features/items/{item_id}` | real-time features |
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness |
//! | `POST /admin/reload`, `GET /admin/status` | bearer token required |
//! | `GET /admin/canary` | the canary's state, figures and decision history (bearer token; 404 without a canary) |

use crate::metrics::{Metrics, RouteLabel};
use crate::online::EventIn;
use crate::recommender::{RecQuery, Recommender};
use crate::{Error, Result};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::FutureExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most events accepted in one batch.
pub const MAX_BATCH: usize = 10_000;

/// Shared state of the service.
#[derive(Clone, Debug)]
pub struct AppState {
    rec: Recommender,
    admin_token: Option<String>,
    /// Permits for the API requests in flight (`http.max_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The runtime's queueing delay, against `http.max_queue_ms`.
    delay: Arc<QueueDelay>,
    /// The bearer token of event posts; with one, only its holders may post events.
    events_token: Option<String>,
    /// Per-client limits on event posts (a server without an events token).
    event_limits: Arc<crate::event_limits::EventLimits>,
}

/// The address of the peer of the connection a request came on (set by [`serve`]).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl AppState {
    /// The service over a recommender; admin routes need `admin_token` (refused when `None`).
    pub fn new(rec: Recommender, admin_token: Option<String>) -> Self {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(rec.config().http.max_in_flight));
        let event_limits = Arc::new(crate::event_limits::EventLimits::new(rec.config().http.events.clone()));
        AppState {
            rec,
            admin_token,
            in_flight,
            delay: Arc::new(QueueDelay::new()),
            events_token: None,
            event_limits,
        }
    }

    /// Requires `token` (a bearer token) on `POST /api/v1/events`: only its holders may post
    /// events, and they are trusted, so the per-client limits of `http.events` do not apply
    /// (see [`crate::event_limits`]). `None` (the default) lets anyone post within those limits.
    pub fn with_events_token(mut self, token: Option<String>) -> Self {
        self.events_token = token.filter(|t| !t.is_empty());
        self
    }

    /// The recommender.
    pub fn recommender(&self) -> &Recommender {
        &self.rec
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Error::BadRequest { field, value, reason } => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": self.to_string(), "field": field, "value": value, "reason": reason}),
            ),
            Error::Core(recsys_core::Error::InvalidInput { field, value, reason }) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": self.to_string(), "field": field, "value": value, "reason": reason}),
            ),
            Error::NotFound { kind, id } => (
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": self.to_string(), "kind": kind, "id": id}),
            ),
            Error::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"error": self.to_string(), "field": "body", "limit": limit}),
            ),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, serde_json::json!({"error": self.to_string()})),
            Error::RateLimited {
                limit,
                field,
                value,
                reason,
                retry_after_s,
            } => {
                let body = serde_json::json!({
                    "error": self.to_string(), "limit": limit, "field": field, "value": value, "reason": reason,
                });
                let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after_s));
                return resp;
            }
            Error::Core(recsys_core::Error::Unavailable { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": self.to_string()}),
            ),
            e if e.is_user_error() => (StatusCode::BAD_REQUEST, serde_json::json!({"error": e.to_string()})),
            e => {
                tracing::error!("internal error: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!({"error": "internal error"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// Query parameters of `GET /api/v1/recommendations` (unknown parameters are refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecParams {
    user_id: Option<String>,
    k: Option<String>,
    context: Option<String>,
    category: Option<String>,
    min_price: Option<String>,
    max_price: Option<String>,
    exclude: Option<String>,
    device: Option<String>,
    hour: Option<String>,
    request_id: Option<String>,
}

fn parse_num<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>> {
    match v {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| Error::bad(name, &s, "not a number")),
    }
}

fn query_error(e: QueryRejection) -> Error {
    let text = e.body_text();
    // serde's message names the offending parameter ("unknown field `kk`, expected ...").
    let field = text
        .split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "query".to_string());
    Error::bad(field, "", text)
}

async fn recommendations(
    State(st): State<AppState>,
    params: std::result::Result<Query<RecParams>, QueryRejection>,
) -> Result<Response> {
    let Query(p) = params.map_err(query_error)?;
    let user_id = p.user_id.ok_or_else(|| Error::bad("user_id", "", "required"))?;
    let q = RecQuery {
        k: parse_num("k", p.k)?,
        context: p.context.filter(|c| !c.is_empty()),
        category: p.category.filter(|c| !c.is_empty()),
        min_price: parse_num("min_price", p.min_price)?,
        max_price: parse_num("max_price", p.max_price)?,
        exclude: p
            .exclude
            .map(|e| e.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        device: p.device.filter(|d| !d.is_empty()),
        hour: match parse_num::<i64>("hour", p.hour.clone())? {
            None => None,
            Some(h) => Some(
                u8::try_from(h)
                    .ok()
                    .filter(|h| *h <= 23)
                    .ok_or_else(|| Error::bad("hour", h, "must be in 0..=23"))?,
            ),
        },
        request_id: p.request_id.filter(|r| !r.is_empty()),
    };
    let out = st.rec.recommend(&user_id, &q)?;
    Ok(Json(out).into_response())
}

async fn similar(State(st): State<AppState>, Query(p): Query<HashMap<String, String>>) -> Result<Response> {
    if let Some(k) = p.keys().find(|k| !matches!(k.as_str(), "item_id" | "k")) {
        return Err(Error::bad(k.as_str(), &p[k], "unknown parameter (expected item_id, k)"));
    }
    let item_id = p.get("item_id").ok_or_else(|| Error::bad("item_id", "", "required"))?;
    let k = parse_num::<usize>("k", p.get("k").cloned())?.unwrap_or(20);
    Ok(Json(st.rec.similar(item_id, k)?).into_response())
}

/// One event or a batch.
#[derive(Deserialize)]
#[serde(untagged)]
enum EventsBody {
    Many(Vec<EventIn>),
    One(EventIn),
}

/// Who posted: the first address of the `http.events.client` header, or the peer's address;
/// `None` for an in-process call of the router (no connection: an embedder or a test), which is
/// not limited.
fn client_of(st: &AppState, headers: &HeaderMap, peer: Option<PeerAddr>) -> Option<String> {
    let PeerAddr(addr) = peer?;
    let from_header = st.event_limits.config().client_header().and_then(|h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    });
    Some(match from_header {
        Some(h) => crate::error::truncate_chars(h, 64).to_string(),
        None => addr.ip().to_string(),
    })
}

async fn post_events(
    State(st): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<PeerAddr>>,
    body: std::result::Result<Json<EventsBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    // Who may post (before the body is even looked at).
    let trusted = match &st.events_token {
        Some(token) => {
            check_token(token, &headers)?;
            true
        }
        None => false,
    };
    let Json(body) = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge { limit: MAX_BODY_BYTES }
        } else {
            Error::bad("body", e.body_text(), "expected an event object or an array of events")
        }
    })?;
    let events = match body {
        EventsBody::One(e) => vec![e],
        EventsBody::Many(v) => v,
    };
    if events.len() > MAX_BATCH {
        return Err(Error::bad(
            "body",
            events.len(),
            format!("at most {MAX_BATCH} events per request"),
        ));
    }
    if !trusted && let Some(client) = client_of(&st, &headers, peer.map(|axum::Extension(p)| p)) {
        st.event_limits.admit(&client, &events, crate::recommender::now_ms())?;
    }
    // Under the "always" fsync policy the event log's fsync blocks: off the async workers.
    let config = st.rec.config();
    let n = if config.event_log.is_some() && config.event_log_fsync == crate::config::FsyncPolicy::Always {
        let rec = st.rec.clone();
        tokio::task::spawn_blocking(move || rec.ingest(&events))
            .await
            .map_err(|e| Error::Internal(format!("event ingestion: {e}")))??
    } else {
        st.rec.ingest(&events)?
    };
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": n}))))
}

async fn user_features(State(st): State<AppState>, Path(user_id): Path<String>) -> Result<Response> {
    Ok(Json(st.rec.user_features(&user_id)?).into_response())
}

async fn item_features(State(st): State<AppState>, Path(item_id): Path<String>) -> Result<Response> {
    Ok(Json(st.rec.item_features(&item_id)?).into_response())
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.rec.metrics().encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<AppState>) -> Response {
    let status = st.rec.status();
    let store_ok = st.rec.store_ok();
    match status {
        Ok(s) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "ready": true,
                "model_version": s.model_version,
                "store_reachable": store_ok,
            })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn check_admin(st: &AppState, headers: &HeaderMap) -> Result<()> {
    let Some(token) = &st.admin_token else {
        return Err(Error::Unauthorized);
    };
    check_token(token, headers)
}

/// The request's `Authorization: Bearer` token is `token`.
fn check_token(token: &str, headers: &HeaderMap) -> Result<()> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time comparison of equal-length strings.
    let ok = given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if ok { Ok(()) } else { Err(Error::Unauthorized) }
}

async fn admin_reload(State(st): State<AppState>, headers: HeaderMap) -> Result<Response> {
    check_admin(&st, &headers)?;
    let rec = st.rec.clone();
    let out = tokio::task::spawn_blocking(move || rec.reload())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    match out {
        Ok(s) => Ok(Json(s).into_response()),
        Err(e) => {
            let status = st.rec.status()?;
            Ok((
                StatusCode::CONFLICT,
                Json(serde_json::json!({
                    "error": format!("reload failed, still serving {}: {e}", status.model_version),
                    "status": status,
                })),
            )
                .into_response())
        }
    }
}

async fn admin_status(State(st): State<AppState>, headers: HeaderMap) -> Result<Response> {
    check_admin(&st, &headers)?;
    Ok(Json(st.rec.status()?).into_response())
}

async fn admin_canary(State(st): State<AppState>, headers: HeaderMap) -> Result<Response> {
    check_admin(&st, &headers)?;
    let rec = st.rec.clone();
    let report = tokio::task::spawn_blocking(move || match rec.canary() {
        Some(c) => c.report(),
        None => Err(Error::NotFound {
            kind: "canary",
            id: "no `canary` section in the serving config".into(),
        }),
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    Ok(Json(report).into_response())
}

/// The route label of a request path (bounded: unknown paths are `other`).
fn route_of(path: &str) -> &'static str {
    match path {
        "/api/v1/recommendations" => "/api/v1/recommendations",
        "/api/v1/similar" => "/api/v1/similar",
        "/api/v1/events" => "/api/v1/events",
        p if p.starts_with("/api/v1/features/") => "/api/v1/features",
        "/metrics" => "/metrics",
        "/healthz" | "/readyz" => "/health",
        p if p.starts_with("/admin/") => "/admin",
        _ => "other",
    }
}

async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(req.uri().path());
    let resp = next.run(req).await;
    st.rec.metrics().http(route, resp.status().as_u16(), started.elapsed());
    resp
}

/// A request (reading its body and answering it) over `http.request_timeout_ms` gets a 503 and
/// is counted, so a slow client or a stuck dependency cannot hold a worker and a connection forever.
async fn limit_time(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(st.rec.config().http.request_timeout_ms);
    let route = route_of(req.uri().path());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            st.rec
                .metrics()
                .request_timeouts
                .get_or_create(&RouteLabel { route })
                .inc();
            unavailable(format!("the request did not complete within {} ms", limit.as_millis()))
        }
    }
}

/// A 503 with `Retry-After: 1` and `{"error": ...}`: the answer of the server's own limits
/// (request timeout, load shedding).
fn unavailable(error: String) -> Response {
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": error })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// The queueing delay of the server's async runtime: how long a task that became ready waits
/// behind the others before it runs.
///
/// A probe task (started with the first API request, on the server's runtime) sleeps 5 ms, then
/// yields once, and records how late it ran: a sleep ends late when the workers are blocked, and a
/// yielded task goes to the back of the run queue, behind every connection whose request is
/// ready, so the time until it runs again is what a request arriving now waits. (A timer's
/// lateness alone would not show that queue: tokio runs a task woken by its driver next, ahead
/// of it.) While the probe waits, the time since it was due is a lower bound of the current
/// delay, so a sudden queue is seen at once, not one measurement later.
#[derive(Debug)]
struct QueueDelay {
    /// Origin of the microsecond clocks below.
    base: Instant,
    /// When the probe should run next: the end of its sleep, or the moment it yielded (µs since
    /// `base`).
    due_us: std::sync::atomic::AtomicU64,
    /// How long the probe waited last time (µs).
    last_us: std::sync::atomic::AtomicU64,
    started: std::sync::Once,
}

/// How often the queueing-delay probe wakes.
const PROBE_EVERY: Duration = Duration::from_millis(5);

impl QueueDelay {
    fn new() -> Self {
        QueueDelay {
            base: Instant::now(),
            due_us: u64::MAX.into(),
            last_us: 0.into(),
            started: std::sync::Once::new(),
        }
    }

    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// The current delay: the last measured one, or the time the probe has been waiting if that
    /// is longer.
    fn current(&self) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let overdue = self.now_us().saturating_sub(self.due_us.load(Relaxed));
        Duration::from_micros(overdue.max(self.last_us.load(Relaxed)))
    }

    /// Starts the probe on the current runtime (once); it ends when the service is dropped.
    fn start(self: &Arc<Self>, metrics: &Arc<Metrics>) {
        self.started.call_once(|| {
            let weak = Arc::downgrade(self);
            let metrics = Arc::clone(metrics);
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                while let Some(d) = weak.upgrade() {
                    // A timer first (late when the workers are blocked), then a yield (late when
                    // ready tasks queue ahead of it).
                    let slept = Instant::now();
                    d.due_us.store(d.now_us() + PROBE_EVERY.as_micros() as u64, Relaxed);
                    drop(d);
                    tokio::time::sleep(PROBE_EVERY).await;
                    let late = slept.elapsed().saturating_sub(PROBE_EVERY);
                    let Some(d) = weak.upgrade() else { break };
                    let asked = Instant::now();
                    d.due_us.store(d.now_us(), Relaxed);
                    drop(d);
                    tokio::task::yield_now().await;
                    let waited = late.max(asked.elapsed());
                    let Some(d) = weak.upgrade() else { break };
                    d.last_us.store(waited.as_micros() as u64, Relaxed);
                    metrics.queue_delay.set(waited.as_secs_f64());
                }
            });
        });
    }
}

/// Load shedding: an API request (recommendations, similar items, events, features) is answered
/// at once with a 503 and `Retry-After: 1`, counted in `recsys_http_shed_total{route}`, when
/// `http.max_in_flight` API requests already run, or, for a request that came through [`serve`]'s
/// listener, when the server's queueing delay ([`QueueDelay`]) is over `http.max_queue_ms`:
/// rather than queueing so that every request's latency grows with the overload. Health, metrics
/// and admin routes are never shed.
async fn shed_load(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_of(req.uri().path());
    if !route.starts_with("/api/") {
        return next.run(req).await;
    }
    let shed = |why: String| {
        st.rec.metrics().shed.get_or_create(&RouteLabel { route }).inc();
        unavailable(why)
    };
    // The queueing delay is that of `serve`'s runtime: measured for requests that came through
    // its listener (an in-process call of the router brings its own runtime and its own pace).
    if req.extensions().get::<PeerAddr>().is_some() {
        st.delay.start(st.rec.metrics());
        let waited = st.delay.current();
        let limit = Duration::from_millis(st.rec.config().http.max_queue_ms);
        if waited > limit {
            return shed(format!(
                "overloaded: requests wait {} ms for the server (http.max_queue_ms {}), retry shortly",
                waited.as_millis(),
                limit.as_millis()
            ));
        }
    }
    let Ok(permit) = Arc::clone(&st.in_flight).try_acquire_owned() else {
        return shed("overloaded: too many requests in flight, retry shortly".into());
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

/// A panic in a handler is a bug: it is answered with a 500 and counted (`recsys_http_panics`),
/// instead of dropping the connection with an empty reply.
async fn catch_panics(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = route_of(req.uri().path());
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(route, "handler panicked: {what}");
            metrics.panics.get_or_create(&RouteLabel { route }).inc();
            Error::Internal("the handler panicked".into()).into_response()
        }
    }
}

/// The service's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/recommendations", get(recommendations))
        .route("/api/v1/similar", get(similar))
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/features/users/{user_id}", get(user_features))
        .route("/api/v1/features/items/{item_id}", get(item_features))
        .route("/admin/reload", post(admin_reload))
        .route("/admin/status", get(admin_status))
        .route("/admin/canary", get(admin_canary))
        .layer(middleware::from_fn_with_state(
            Arc::clone(state.rec.metrics()),
            catch_panics,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), limit_time))
        .layer(middleware::from_fn_with_state(state.clone(), shed_load))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The answer on a connection over `http.max_connections`: written without reading the request.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 64\r\n\r\n{\"error\":\"overloaded: too many open connections, retry shortly\"}";

/// Closes a connection over the cap with a 503 and `Retry-After: 1` that the client can act on:
/// written at once (the socket's buffer is empty), without reading the request, then closed.
/// Best effort and cheap, since it runs when the server is overloaded: a client whose request was
/// already sent may see the connection reset instead.
fn refuse(stream: tokio::net::TcpStream) {
    let _ = stream.try_write(OVER_CAPACITY);
}

/// Serves `app` on `listener` until `shutdown` completes, within the connection limits of
/// `limits`: at most `max_connections` open (a connection over the cap is closed at once and
/// counted), `header_timeout_ms` to send a request's headers (also the keep-alive idle timeout).
/// Accept errors (such as running out of file descriptors) are logged and retried after a pause
/// instead of ending the server. On shutdown it stops accepting, lets the requests in flight
/// finish and closes idle connections, then returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &crate::config::HttpConfig,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept failed, retrying in 50 ms: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.inc();
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            },
        ));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let metrics = Arc::clone(&metrics);
        metrics.connections.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            metrics.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500() {
        let metrics = Arc::new(Metrics::new());
        let app = Router::new()
            .route("/api/v1/similar", get(boom))
            .route("/healthz", get(healthz))
            .layer(middleware::from_fn_with_state(Arc::clone(&metrics), catch_panics));
        let req = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req("/api/v1/similar")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            !String::from_utf8_lossy(&body).contains("boom"),
            "no internals in the body"
        );
        let route = RouteLabel {
            route: "/api/v1/similar",
        };
        assert_eq!(metrics.panics.get_or_create(&route).get(), 1);
        // The service goes on answering.
        let resp = app.oneshot(req("/healthz")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    /// Reads until the peer closes the connection (or resets it); `None` when it is still open
    /// after `within`.
    async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        for _ in 0..200 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn idle_and_excess_connections_are_closed_and_the_server_keeps_answering() {
        use tokio::io::AsyncWriteExt;
        use tokio::net::{TcpListener, TcpStream};
        let metrics = Arc::new(Metrics::new());
        let app = Router::new().route("/healthz", get(healthz));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = crate::config::HttpConfig {
            max_connections: 8,
            header_timeout_ms: 400,
            request_timeout_ms: 1_000,
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let metrics = Arc::clone(&metrics);
            async move {
                serve(listener, app, &limits, metrics, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        // Eight connections that never send a byte fill the cap.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        wait_for("8 open connections", || metrics.connections.get() == 8).await;
        // The ninth is answered at once with a 503 and Retry-After (its request unread), closed,
        // and counted.
        let mut excess = TcpStream::connect(addr).await.unwrap();
        excess
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let got = closed_within(&mut excess, Duration::from_secs(2))
            .await
            .expect("closed");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 503") && text.contains("retry-after: 1\r\n"),
            "{text}"
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("overloaded"), "{text}");
        assert_eq!(metrics.connections_refused.get(), 1);
        // The silent ones are closed after the header timeout, and the slots come back.
        for c in &mut idle {
            assert!(
                closed_within(c, Duration::from_secs(3)).await.is_some(),
                "an idle connection stayed open"
            );
        }
        wait_for("no open connection", || metrics.connections.get() == 0).await;
        // A keep-alive connection is answered, then closed once idle past the same timeout.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let got = closed_within(&mut c, Duration::from_secs(3))
            .await
            .expect("closed when idle");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("ok"), "{text}");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
