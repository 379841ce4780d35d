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
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Instant;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most events accepted in one batch.
pub const MAX_BATCH: usize = 10_000;

/// Shared state of the service.
#[derive(Clone, Debug)]
pub struct AppState {
    rec: Recommender,
    admin_token: Option<String>,
}

impl AppState {
    /// The service over a recommender; admin routes need `admin_token` (refused when `None`).
    pub fn new(rec: Recommender, admin_token: Option<String>) -> Self {
        AppState { rec, admin_token }
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

async fn post_events(
    State(st): State<AppState>,
    body: std::result::Result<Json<EventsBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
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
    let n = st.rec.ingest(&events)?;
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

async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route: &'static str = match req.uri().path() {
        "/api/v1/recommendations" => "/api/v1/recommendations",
        "/api/v1/similar" => "/api/v1/similar",
        "/api/v1/events" => "/api/v1/events",
        p if p.starts_with("/api/v1/features/") => "/api/v1/features",
        "/metrics" => "/metrics",
        "/healthz" | "/readyz" => "/health",
        p if p.starts_with("/admin/") => "/admin",
        _ => "other",
    };
    let resp = next.run(req).await;
    st.rec.metrics().http(route, resp.status().as_u16(), started.elapsed());
    resp
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
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
