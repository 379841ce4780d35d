//! The HTTP surface: health, the events API and real-time feature look-ups.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness |
//! | `POST /api/v1/events` | one event object or an array of them; updates the session state at once |
//! | `GET /api/v1/features/users/{user_id}` | the user's real-time features |
//! | `GET /api/v1/features/items/{item_id}` | the item's real-time features |

use crate::online::{EventIn, OnlineFeatures};
use crate::{Error, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::{Arc, RwLock};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most events accepted in one batch.
pub const MAX_BATCH: usize = 10_000;

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    features: Arc<RwLock<OnlineFeatures>>,
}

impl AppState {
    /// Wraps the online features for the router.
    pub fn new(features: OnlineFeatures) -> Self {
        AppState {
            features: Arc::new(RwLock::new(features)),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Error::BadRequest { field, value, reason } => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": self.to_string(), "field": field, "value": value, "reason": reason}),
            ),
            Error::NotFound { kind, id } => (
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": self.to_string(), "kind": kind, "id": id}),
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

/// One event or a batch.
#[derive(Deserialize)]
#[serde(untagged)]
enum EventsBody {
    Many(Vec<EventIn>),
    One(EventIn),
}

fn lock_error() -> Error {
    Error::Internal("feature state lock poisoned".into())
}

async fn post_events(
    State(st): State<AppState>,
    body: std::result::Result<Json<EventsBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    let Json(body) =
        body.map_err(|e| Error::bad("body", e.body_text(), "expected an event object or an array of events"))?;
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
    let now = now_ms();
    let mut f = st.features.write().map_err(|_| lock_error())?;
    // Validate the whole batch first: a batch is applied entirely or not at all.
    for (k, e) in events.iter().enumerate() {
        f.check(e, now).map_err(|err| match err {
            Error::BadRequest { field, value, reason } => Error::bad(format!("[{k}].{field}"), value, reason),
            other => other,
        })?;
    }
    for e in &events {
        f.ingest(e, now)?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"accepted": events.len()})),
    ))
}

async fn user_features(State(st): State<AppState>, Path(user_id): Path<String>) -> Result<Json<serde_json::Value>> {
    let f = st.features.read().map_err(|_| lock_error())?;
    Ok(Json(
        serde_json::to_value(f.user_features(&user_id, now_ms())?).map_err(|e| Error::Internal(e.to_string()))?,
    ))
}

async fn item_features(State(st): State<AppState>, Path(item_id): Path<String>) -> Result<Json<serde_json::Value>> {
    let f = st.features.read().map_err(|_| lock_error())?;
    Ok(Json(
        serde_json::to_value(f.item_features(&item_id, now_ms())?).map_err(|e| Error::Internal(e.to_string()))?,
    ))
}

async fn healthz() -> &'static str {
    "ok"
}

/// The service's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/features/users/{user_id}", get(user_features))
        .route("/api/v1/features/items/{item_id}", get(item_features))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
