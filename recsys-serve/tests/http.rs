//! Every endpoint of the service, in process through the router: recommendations (store, model and
//! popular paths), freshness from the events API, rules, similar items, bad input, metrics,
//! health, admin reload/status, the A/B split and the logs.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::fixture;
use http_body_util::BodyExt;
use recsys_serve::config::{AbConfig, ServeConfig};
use recsys_serve::http::{AppState, router};
use recsys_serve::{RecQuery, Recommender, RecommenderOptions};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tower::ServiceExt;

const TOKEN: &str = "s3cret";

fn open(config: ServeConfig, registry: Option<&std::path::Path>) -> Recommender {
    let f = fixture();
    Recommender::open(RecommenderOptions {
        registry: registry.unwrap_or(&f.registry).to_path_buf(),
        data: None,
        store: Some(f.store.clone()),
        config,
        model: None,
        popular_only: false,
    })
    .unwrap()
}

fn app(rec: &Recommender) -> axum::Router {
    router(AppState::new(rec.clone(), Some(TOKEN.to_string())))
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_raw(app, method, uri, body.map(|b| b.to_string()), None).await
}

async fn call_raw(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<String>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn recommendations_from_the_store_with_reasons() {
    let f = fixture();
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    let (s, v) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000007&k=10", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], "U0000007");
    assert_eq!(v["model_version"], f.versions.1.as_str());
    assert_eq!(v["variant"], "control");
    assert_eq!(v["source"], "store");
    let got = ids(&v);
    assert_eq!(got.len(), 10);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 10, "distinct items");
    for item in v["items"].as_array().unwrap() {
        assert!(item["item_id"].as_str().unwrap().starts_with('P'), "{item}");
        assert!(!item["reason"].as_str().unwrap().is_empty());
        assert!(item["score"].as_f64().unwrap().is_finite());
    }
    // The HTTP answer is the library call's.
    let lib = rec
        .recommend(
            "U0000007",
            &RecQuery {
                k: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
    let mut lib: Value = serde_json::from_str(&serde_json::to_string(&lib).unwrap()).unwrap();
    // Every response has its own request id (32 hex characters), the rest is equal.
    let mut v = v;
    let (a, b) = (lib["request_id"].take(), v["request_id"].take());
    assert_ne!(a, b);
    for id in [&a, &b] {
        let id = id.as_str().unwrap();
        assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_eq!(lib, v);
    // Default k is 20.
    let (_, v) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000008", None).await;
    assert_eq!(ids(&v).len(), 20);
}

#[tokio::test]
async fn events_change_the_next_answer_at_once() {
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    let uri = "/api/v1/recommendations?user_id=U0000011&k=10";
    let (_, before) = call(&app, "GET", uri, None).await;
    let first = ids(&before)[0].clone();
    // Bought: never recommended again (the cached answer is invalidated by the session change).
    let ev = json!({"user_id": "U0000011", "item_id": first, "event_type": "purchase", "price": 10.0});
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
    assert_eq!((s, v["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(1)), "{v}");
    let (_, after) = call(&app, "GET", uri, None).await;
    assert!(
        !ids(&after).contains(&first),
        "{first} still recommended after purchase: {after}"
    );
    // In the cart: excluded too.
    let second = ids(&after)[0].clone();
    let ev = json!({"user_id": "U0000011", "item_id": second, "event_type": "add_to_cart"});
    call(&app, "POST", "/api/v1/events", Some(ev)).await;
    let (_, after2) = call(&app, "GET", uri, None).await;
    assert!(!ids(&after2).contains(&second));
    assert_ne!(ids(&after2), ids(&after));
}

#[tokio::test]
async fn cold_start_popular_then_personal_from_the_session() {
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    let (s, v) = call(&app, "GET", "/api/v1/recommendations?user_id=brand-new&k=15", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["source"], "popular");
    assert_eq!(ids(&v).len(), 15, "never empty while the catalogue has items");
    // A product page: the product itself is excluded, the rest is similar to it.
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/recommendations?user_id=brand-new&k=15&context=product:P000003",
        None,
    )
    .await;
    assert!(!ids(&v).contains(&"P000003".to_string()));
    assert_eq!(ids(&v).len(), 15);
    // After a few views the user tower computes the embedding from the live session.
    let batch = json!([
        {"user_id": "brand-new", "item_id": "P000010", "event_type": "view"},
        {"user_id": "brand-new", "item_id": "P000011", "event_type": "click"}
    ]);
    let (s, _) = call(&app, "POST", "/api/v1/events", Some(batch)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, v) = call(&app, "GET", "/api/v1/recommendations?user_id=brand-new&k=15", None).await;
    assert_eq!(v["source"], "model", "{v}");
    assert_eq!(ids(&v).len(), 15);
    let reasons: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().all(|r| !r.is_empty()), "{reasons:?}");
}

#[tokio::test]
async fn filters_and_category() {
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    let (_, item) = call(&app, "GET", "/api/v1/features/items/P000001", None).await;
    let category = item["category"].as_str().unwrap().to_string();
    let (s, v) = call(
        &app,
        "GET",
        &format!("/api/v1/recommendations?user_id=U0000020&k=5&category={category}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!ids(&v).is_empty());
    for id in ids(&v) {
        let (_, it) = call(&app, "GET", &format!("/api/v1/features/items/{id}"), None).await;
        assert_eq!(it["category"].as_str().unwrap(), category, "{id}");
    }
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/recommendations?user_id=U0000020&k=10&exclude=P000001,P000002",
        None,
    )
    .await;
    assert!(!ids(&v).iter().any(|i| i == "P000001" || i == "P000002"));
}

#[tokio::test]
async fn similar_items() {
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    let (s, v) = call(&app, "GET", "/api/v1/similar?item_id=P000005&k=8", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = ids(&v);
    assert_eq!(got.len(), 8);
    assert!(!got.contains(&"P000005".to_string()));
    let (s, v) = call(&app, "GET", "/api/v1/similar?item_id=NOPE", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = call(&app, "GET", "/api/v1/similar?k=3", None).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("item_id")));
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_parameter() {
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    for (uri, field) in [
        ("/api/v1/recommendations", "user_id"),
        ("/api/v1/recommendations?user_id=U1&k=0", "k"),
        ("/api/v1/recommendations?user_id=U1&k=501", "k"),
        ("/api/v1/recommendations?user_id=U1&k=ten", "k"),
        ("/api/v1/recommendations?user_id=U1&kk=3", "kk"),
        ("/api/v1/recommendations?user_id=U1&category=NoSuchThing", "category"),
        (
            "/api/v1/recommendations?user_id=U1&min_price=9&max_price=1",
            "min_price",
        ),
        ("/api/v1/recommendations?user_id=U1&min_price=-1", "min_price"),
        ("/api/v1/recommendations?user_id=U1&context=product:NOPE", "context"),
        ("/api/v1/similar?item_id=P000001&k=0", "k"),
        ("/api/v1/recommendations?user_id=U1&device=a%20b", "device"),
        (
            "/api/v1/recommendations?user_id=U1&device=0123456789012345678901234567890123",
            "device",
        ),
        ("/api/v1/recommendations?user_id=U1&hour=24", "hour"),
        ("/api/v1/recommendations?user_id=U1&hour=-1", "hour"),
        ("/api/v1/recommendations?user_id=U1&hour=noon", "hour"),
        ("/api/v1/recommendations?user_id=U1&request_id=a%20b", "request_id"),
        (
            "/api/v1/recommendations?user_id=U1&request_id=r12345678901234567890123456789012345678901234567890123456789012345",
            "request_id",
        ),
    ] {
        let (s, v) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["field"].as_str(), Some(field), "{uri}: {v}");
    }
    // More excluded ids than `MAX_EXCLUDE`: refused naming the limit; exactly the limit is served.
    let ids = |n: usize| (0..n).map(|i| format!("P{i:06}")).collect::<Vec<_>>().join(",");
    let uri = format!("/api/v1/recommendations?user_id=U1&exclude={}", ids(1_001));
    let (s, v) = call(&app, "GET", &uri, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"].as_str(), Some("exclude"), "{v}");
    assert!(v.to_string().contains("at most 1000"), "{v}");
    let uri = format!("/api/v1/recommendations?user_id=U1&exclude={}", ids(1_000));
    let (s, v) = call(&app, "GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A context over the length limit with a two-byte character across byte 32 (where the error
    // quotes it): a 400 naming the field, not a worker panic and an empty reply.
    let uri = format!(
        "/api/v1/recommendations?user_id=U1&context={}%C3%A9{}",
        "a".repeat(31),
        "b".repeat(300)
    );
    let (s, v) = call(&app, "GET", &uri, None).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("context")),
        "{v}"
    );
    assert_eq!(v["value"].as_str(), Some("a".repeat(31).as_str()), "{v}");
    // Timestamps outside the window (7 days back, 1 minute ahead) are refused: i64::MIN used to
    // overflow the decayed popularity and put its item first for every visitor.
    let now = chrono::Utc::now().timestamp_millis();
    for ts in [i64::MIN, now - 8 * 86_400_000, now + 3_600_000, i64::MAX] {
        let ev = json!({"user_id": "U1", "item_id": "P000001", "event_type": "click", "timestamp": ts});
        let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
        assert_eq!(
            (s, v["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("[0].timestamp")),
            "{ts}: {v}"
        );
    }
    let ev = json!({"user_id": "U1", "item_id": "P000001", "event_type": "click", "timestamp": now - 6 * 86_400_000});
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "six days back is inside the window: {v}");
    let ev = json!({"user_id": "U1", "item_id": "P000001", "event_type": "wishlist"});
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("[0].event_type")),
        "{v}"
    );
    // A bad event in a batch: nothing of the batch is applied.
    let before = rec.user_features("U0000030").unwrap();
    let batch = json!([
        {"user_id": "U0000030", "item_id": "P000001", "event_type": "purchase"},
        {"user_id": "U0000030", "item_id": "NOPE", "event_type": "view"}
    ]);
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(batch)).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("[1].item_id")),
        "{v}"
    );
    assert_eq!(
        rec.user_features("U0000030").unwrap().total_purchases_30d,
        before.total_purchases_30d
    );
    let long_id = "r".repeat(65);
    let ev = json!({"user_id": "U1", "item_id": "P000001", "event_type": "click", "request_id": long_id});
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
    assert_eq!(
        (s, v["field"].as_str(), v["value"].as_str()),
        (StatusCode::BAD_REQUEST, Some("[0].request_id"), Some(long_id.as_str())),
        "{v}"
    );
    let (s, v) = call(&app, "GET", "/api/v1/recommendations?user_id=U1&device=a%20b", None).await;
    assert_eq!((s, v["value"].as_str()), (StatusCode::BAD_REQUEST, Some("a b")), "{v}");
    let (s, _) = call_raw(&app, "POST", "/api/v1/events", Some("{not json".into()), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let big = format!(
        "[{}]",
        vec!["{\"user_id\":\"U1\",\"item_id\":\"P000001\",\"event_type\":\"view\"}"; 30_000].join(",")
    );
    let (s, _) = call_raw(&app, "POST", "/api/v1/events", Some(big), None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_health_and_cache() {
    let f = fixture();
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    let (s, v) = call(&app, "GET", "/readyz", None).await;
    assert_eq!((s, v["ready"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let uri = "/api/v1/recommendations?user_id=U0000042&k=7";
    let (_, mut a) = call(&app, "GET", uri, None).await;
    let (_, mut b) = call(&app, "GET", uri, None).await;
    // The cached answer, with a fresh request id.
    assert_ne!(a["request_id"].take(), b["request_id"].take());
    assert_eq!(a, b);
    call(&app, "GET", "/api/v1/recommendations", None).await;
    let (s, text) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    for needle in [
        "recsys_stage_duration_seconds_bucket{",
        "stage=\"candidates\"",
        "stage=\"rerank\"",
        "recsys_http_request_duration_seconds_count{route=\"/api/v1/recommendations\"}",
        "recsys_http_requests_total{route=\"/api/v1/recommendations\",status=\"4xx\"} 1",
        "recsys_cache_requests_total{result=\"hit\"} 1",
        "recsys_variant_requests_total{variant=\"control\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    assert!(text.contains(&format!("version=\"{}\"", f.versions.1)), "{text}");
    // Or the caller's own id.
    let (s, mut c) = call(&app, "GET", &format!("{uri}&request_id=bff:42.a-b_c"), None).await;
    assert_eq!(
        (s, c["request_id"].take()),
        (StatusCode::OK, json!("bff:42.a-b_c")),
        "{c}"
    );
    assert_eq!(c, a);
}

#[tokio::test]
async fn admin_routes_need_the_token_and_reload_keeps_serving_on_a_broken_version() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let registry = common::copy_registry(tmp.path());
    let rec = open(ServeConfig::default(), Some(&registry));
    let app = app(&rec);
    for token in [None, Some("wrong")] {
        let (s, _) = call_raw(&app, "GET", "/admin/status", None, token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = call_raw(&app, "POST", "/admin/reload", None, token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, v) = call_raw(&app, "GET", "/admin/status", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model_version"], f.versions.1.as_str());
    assert_eq!(v["store_version"], f.versions.1.as_str());
    assert_eq!(v["reranker_fitted"], true, "{v}");

    // Roll back to v1 and reload: v1 answers (candidates from the store's active version).
    recsys_train::registry::Registry::open(&registry)
        .unwrap()
        .promote(&f.versions.0)
        .unwrap();
    let (s, v) = call_raw(&app, "POST", "/admin/reload", None, Some(TOKEN)).await;
    assert_eq!(
        (s, v["model_version"].as_str()),
        (StatusCode::OK, Some(f.versions.0.as_str())),
        "{v}"
    );
    let (_, r) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000001", None).await;
    assert_eq!(r["model_version"], f.versions.0.as_str());

    // A corrupted version: the reload is refused, v1 keeps serving, the status says why.
    let reg = recsys_train::registry::Registry::open(&registry).unwrap();
    reg.promote(&f.versions.1).unwrap();
    let model = reg.path_of(&f.versions.1).unwrap().join("model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    let (s, v) = call_raw(&app, "POST", "/admin/reload", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["status"]["model_version"], f.versions.0.as_str());
    assert!(v["status"]["last_reload_error"].as_str().is_some(), "{v}");
    let (s, r) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000001", None).await;
    assert_eq!(
        (s, r["model_version"].as_str()),
        (StatusCode::OK, Some(f.versions.0.as_str()))
    );
}

/// Every file of a model version and of its store version, corrupted in each byte range (first,
/// middle and last byte flipped, cut in half, emptied): the reload that would serve it is refused
/// with a 409 whose error names the file, and the old version keeps answering; the online feature
/// snapshot, read at start, makes the start fail naming it (issue 28).
#[tokio::test]
async fn every_file_of_a_version_corrupted_anywhere_is_refused_naming_it_and_the_old_one_serves() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let registry = common::copy_registry(tmp.path());
    let store_dir = tmp.path().join("store");
    common::copy_dir(std::path::Path::new(f.store.trim_start_matches("file:")), &store_dir);
    let rec = Recommender::open(RecommenderOptions {
        registry: registry.clone(),
        data: None,
        store: Some(format!("file:{}", store_dir.display())),
        config: ServeConfig::default(),
        model: None,
        popular_only: false,
    })
    .unwrap();
    let app = app(&rec);
    let reg = recsys_train::registry::Registry::open(&registry).unwrap();
    // Serve v1, then make v2 current: every reload below tries v2.
    reg.promote(&f.versions.0).unwrap();
    let (s, v) = call_raw(&app, "POST", "/admin/reload", None, Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    reg.promote(&f.versions.1).unwrap();
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for dir in [reg.path_of(&f.versions.1).unwrap(), store_dir.join(&f.versions.1)] {
        for e in std::fs::read_dir(&dir).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut cases = 0;
    for file in &files {
        let good = std::fs::read(file).unwrap();
        let n = good.len();
        let flip = |at: usize| {
            let mut b = good.clone();
            b[at] ^= 0x5a;
            b
        };
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("first byte flipped", flip(0)),
            ("middle byte flipped", flip(n / 2)),
            ("last byte flipped", flip(n - 1)),
            ("cut in half", good[..n / 2].to_vec()),
            ("emptied", Vec::new()),
        ];
        for (what, bytes) in variants {
            std::fs::write(file, &bytes).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if name == "features.bin" {
                // The online feature snapshot is read when a server starts, not on reload: a
                // start on it is refused naming the file.
                let e = Recommender::open(RecommenderOptions {
                    registry: registry.clone(),
                    data: None,
                    store: Some(format!("file:{}", store_dir.display())),
                    config: ServeConfig::default(),
                    model: None,
                    popular_only: false,
                })
                .err()
                .unwrap_or_else(|| panic!("{name} {what}: the server started"));
                assert!(e.to_string().contains(&name), "{name} {what}: {e}");
                cases += 1;
                continue;
            }
            let (s, v) = call_raw(&app, "POST", "/admin/reload", None, Some(TOKEN)).await;
            if name.ends_with(".tsc") && what == "middle byte flipped" {
                // A candidate file's records carry their own checksums, verified when a list is
                // read (checking every record at open would read the whole file): the version
                // loads; a request that meets the damaged record falls back, none fails.
                assert_eq!(s, StatusCode::OK, "{name} {what}: {v}");
                for n in 0..100 {
                    let (s, r) = call(
                        &app,
                        "GET",
                        &format!("/api/v1/recommendations?user_id=U{n:07}&k=5"),
                        None,
                    )
                    .await;
                    assert_eq!(s, StatusCode::OK, "{name} {what}: {r}");
                    let (s, r) = call(&app, "GET", &format!("/api/v1/similar?item_id=P{n:06}&k=5"), None).await;
                    assert!(
                        s == StatusCode::OK || s == StatusCode::NOT_FOUND,
                        "{name} {what}: {s} {r}"
                    );
                }
                reg.promote(&f.versions.0).unwrap();
                let (s, v) = call_raw(&app, "POST", "/admin/reload", None, Some(TOKEN)).await;
                assert_eq!(s, StatusCode::OK, "{v}");
                reg.promote(&f.versions.1).unwrap();
                cases += 1;
                continue;
            }
            assert_eq!(s, StatusCode::CONFLICT, "{name} {what}: {v}");
            let error = v["status"]["last_reload_error"].as_str().unwrap_or_default();
            assert!(
                error.contains(&name),
                "{name} {what}: the error does not name the file: {error}"
            );
            let (s, r) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000001&k=5", None).await;
            assert_eq!(
                (s, r["model_version"].as_str()),
                (StatusCode::OK, Some(f.versions.0.as_str())),
                "{name} {what}"
            );
            cases += 1;
        }
        std::fs::write(file, &good).unwrap();
    }
    // Everything restored: v2 loads.
    let (s, v) = call_raw(&app, "POST", "/admin/reload", None, Some(TOKEN)).await;
    assert_eq!(
        (s, v["model_version"].as_str()),
        (StatusCode::OK, Some(f.versions.1.as_str())),
        "{v}"
    );
    assert!(cases >= 40, "{cases}");
}

#[tokio::test]
async fn ab_split_proportions_and_exposure_log() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("exposures");
    let events = tmp.path().join("events");
    let config = ServeConfig {
        ab: Some(AbConfig {
            candidate: f.versions.0.clone(),
            percent: 25.0,
            salt: "exp-1".into(),
        }),
        exposure_log: Some(log.clone()),
        event_log: Some(events.clone()),
        ..Default::default()
    };
    let rec = open(config, None);
    let n = 2_000;
    let mut on_candidate = 0;
    for i in 0..n {
        let user = format!("U{i:07}");
        let variant = rec.variant_of(&user);
        assert_eq!(variant, rec.variant_of(&user), "stable per user");
        if variant == "candidate" {
            on_candidate += 1;
        }
    }
    let share = on_candidate as f64 / n as f64;
    assert!((0.22..=0.28).contains(&share), "candidate share {share}");
    // Answers carry the variant and its model version.
    let app = app(&rec);
    let mut seen = BTreeSet::new();
    for i in 0..40 {
        let user = format!("U{i:07}");
        let (_, v) = call(
            &app,
            "GET",
            &format!("/api/v1/recommendations?user_id={user}&k=5"),
            None,
        )
        .await;
        let expected = if rec.variant_of(&user) == "candidate" {
            &f.versions.0
        } else {
            &f.versions.1
        };
        assert_eq!(v["variant"], rec.variant_of(&user).as_str());
        assert_eq!(v["model_version"], expected.as_str());
        seen.insert(v["variant"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both variants served");
    rec.flush_exposures().unwrap();
    let records = recsys_core::exposure::read_exposures(&log).unwrap();
    assert_eq!(records.len(), 40);
    assert_eq!(records[0].items.len(), 5);
    for r in &records {
        let expected = if rec.variant_of(&r.user_id) == "candidate" {
            &f.versions.0
        } else {
            &f.versions.1
        };
        assert_eq!(&r.model_version, expected);
    }
    // Posted events land in the daily CSV for the next training run.
    let ev = json!({"user_id": "U0000001", "item_id": "P000001", "event_type": "click"});
    call(&app, "POST", "/api/v1/events", Some(ev)).await;
    let files: Vec<_> = std::fs::read_dir(&events).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(text.starts_with("user_id,item_id,event_type,timestamp"), "{text}");
    assert!(text.contains("U0000001,P000001,click,"), "{text}");
    assert!(text.starts_with(recsys_serve::logs::EVENT_CSV_HEADER), "{text}");
    let ev = json!({"user_id": "U0000002", "item_id": "P000001", "event_type": "click", "request_id": "abc123"});
    let (s, _) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("U0000002,P000001,click,") && last.ends_with(",abc123"),
        "{text}"
    );
}

#[tokio::test]
async fn real_time_features_endpoints() {
    let rec = open(ServeConfig::default(), None);
    let app = app(&rec);
    let (s, before) = call(&app, "GET", "/api/v1/features/users/U0000007", None).await;
    assert_eq!(s, StatusCode::OK, "{before}");
    let purchases = before["total_purchases_30d"].as_u64().unwrap();
    let ev = json!({"user_id": "U0000007", "item_id": "P000003", "event_type": "purchase", "price": 10.0});
    call(&app, "POST", "/api/v1/events", Some(ev)).await;
    let (_, after) = call(&app, "GET", "/api/v1/features/users/U0000007", None).await;
    assert_eq!(after["total_purchases_30d"].as_u64().unwrap(), purchases + 1);
    assert_eq!(after["recent_items"][0], "P000003");
    let (s, _) = call(&app, "GET", "/api/v1/features/users/nobody-at-all", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, "GET", "/api/v1/features/items/P000003", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn events_make_an_item_trending_at_the_next_refresh_not_the_next_sweep() {
    // Refresh every 200 ms, but a sweep of the whole catalogue only once an hour: one item per
    // refresh. An item with new events must show at the next refresh (and the trending list a
    // second later), long before the sweep reaches it. (No response cache: the anonymous
    // visitor's session does not change.)
    let mut config = ServeConfig {
        item_features_refresh_ms: 200,
        item_features_sweep_seconds: 3600,
        trending_refresh_seconds: 1,
        ..ServeConfig::default()
    };
    config.cache.capacity = 0;
    let rec = open(config, None);
    let app = app(&rec);
    let uri = "/api/v1/recommendations?user_id=anonymous-visitor&k=100";
    let (_, before) = call(&app, "GET", uri, None).await;
    assert_eq!(before["source"], "popular", "{before}");
    assert!(
        !before["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["reason"] == "Trending now"),
        "the fixture's events are days old: nothing trends yet: {before}"
    );
    // The least popular of the answer, with a catalogue index the sweep cannot reach in time.
    let item = ids(&before)
        .into_iter()
        .rev()
        .find(|id| id.trim_start_matches('P').parse::<u32>().is_ok_and(|n| n >= 100))
        .expect("an item P000100 or later");
    let events: Vec<Value> = (0..5)
        .map(|u| json!({"user_id": format!("trend-buyer-{u}"), "item_id": item, "event_type": "purchase"}))
        .collect();
    let (s, _) = call(&app, "POST", "/api/v1/events", Some(Value::Array(events))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let started = std::time::Instant::now();
    loop {
        let (_, v) = call(&app, "GET", uri, None).await;
        let first = &v["items"][0];
        if first["item_id"] == item.as_str() {
            assert_eq!(first["reason"], "Trending now", "{v}");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{item} not trending 4 s after its events: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_instances_give_identical_answers() {
    let mut config = ServeConfig::default();
    config.cache.capacity = 0;
    let a = open(config.clone(), None);
    let b = open(config, None);
    for i in 0..60 {
        let user = format!("U{:07}", i * 7);
        let q = RecQuery::default();
        let (x, y) = (a.recommend(&user, &q).unwrap(), b.recommend(&user, &q).unwrap());
        let ids = |r: &recsys_serve::Recommendations| r.items.iter().map(|i| i.item_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&x), ids(&y), "{user}");
        assert_eq!(ids(&x), ids(&a.recommend(&user, &q).unwrap()), "{user} twice");
    }
}

#[tokio::test]
async fn one_exposure_record_per_response_cache_hits_included() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("exposures");
    let config = ServeConfig {
        exposure_log: Some(log.clone()),
        ..Default::default()
    };
    assert!(config.cache.capacity > 0, "the response cache is on");
    let rec = open(config, None);
    let app = app(&rec);
    let mut answers = Vec::new();
    for round in 0..3 {
        for u in 0..10 {
            let uri = format!("/api/v1/recommendations?user_id=U{u:07}&k=6&context=home&device=mobile&hour={round}");
            let (s, v) = call(&app, "GET", &uri, None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            answers.push(v);
        }
    }
    // An anonymous visitor: the popular policy, context absent.
    let (_, v) = call(&app, "GET", "/api/v1/recommendations?user_id=someone-new&k=4", None).await;
    answers.push(v);
    rec.flush_exposures().unwrap();
    let records = recsys_core::exposure::read_exposures(&log).unwrap();
    assert_eq!(records.len(), answers.len(), "N requests, N records");
    let files: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].to_str().unwrap().starts_with("exposures-"), "{files:?}");
    let unique: BTreeSet<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(unique.len(), records.len(), "request ids are unique");
    assert_eq!(
        records.iter().filter(|r| r.cached).count(),
        20,
        "rounds 2 and 3 are cache hits"
    );
    for (r, v) in records.iter().zip(&answers) {
        assert_eq!(r.v, 2);
        assert_eq!(v["request_id"].as_str(), Some(r.request_id.as_str()));
        assert_eq!(v["user_id"].as_str(), Some(r.user_id.as_str()));
        assert_eq!(v["source"].as_str(), r.source.as_deref());
        let shown: Vec<String> = ids(v);
        let logged: Vec<String> = r.items.iter().map(|i| i.item_id.clone()).collect();
        assert_eq!(logged, shown);
        for (n, it) in r.items.iter().enumerate() {
            assert_eq!(it.position as usize, n + 1);
            assert_eq!(it.propensity, 1.0);
            assert_eq!(v["items"][n]["score"].as_f64().map(|x| x as f32), Some(it.score));
        }
    }
    let r = &records[13];
    assert_eq!(r.policy, "two-tower");
    assert_eq!(r.context.page.as_deref(), Some("home"));
    assert_eq!(r.context.device.as_deref(), Some("mobile"));
    assert_eq!(r.context.hour, Some(1));
    let anon = records.last().unwrap();
    assert_eq!(
        (anon.policy.as_str(), anon.source.as_deref()),
        ("popular", Some("popular"))
    );
    assert_eq!(anon.context.page, None);
    assert_eq!(anon.context.hour, recsys_core::exposure::hour_of(anon.ts));
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    let text = text.as_str().unwrap();
    assert!(text.contains("recsys_exposure_log_written_total 31"), "{text}");
    assert!(text.contains("recsys_exposure_log_dropped_total 0"), "{text}");
}

#[tokio::test]
async fn exploration_serves_draws_from_the_pool_with_exact_propensities() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("exposures");
    // The deterministic policy (no log), then the exploring one.
    let plain = open(ServeConfig::default(), None);
    let config = ServeConfig {
        exposure_log: Some(log.clone()),
        exploration: Some(recsys_serve::config::ExplorationConfig { epsilon: 0.5, pool: 10 }),
        ..Default::default()
    };
    let rec = open(config, None);
    let user = "U0000021";
    let q = |k| RecQuery {
        k: Some(k),
        ..Default::default()
    };
    let item_ids = |r: &recsys_serve::Recommendations| r.items.iter().map(|i| i.item_id.clone()).collect::<Vec<_>>();
    let pool = item_ids(&plain.recommend(user, &q(10)).unwrap());
    let top = &pool[..4];
    let n = 60;
    let mut explored = 0;
    for _ in 0..n {
        let r = rec.recommend(user, &q(4)).unwrap();
        let got = item_ids(&r);
        assert!(got.iter().all(|i| pool.contains(i)), "{got:?} not from {pool:?}");
        if got != top {
            explored += 1;
        }
    }
    // ε = 0.5 over 60 requests (cache hits included): both branches serve.
    assert!((10..=50).contains(&explored), "{explored} of {n} explored");
    // The draw is seeded by the request id: the caller's id replays it.
    let with_id = |id: &str| RecQuery {
        request_id: Some(id.to_string()),
        ..q(4)
    };
    let draws: Vec<Vec<String>> = (0..20)
        .map(|i| item_ids(&rec.recommend(user, &with_id(&format!("replay-{i}"))).unwrap()))
        .collect();
    for (i, d) in draws.iter().enumerate() {
        let again = rec.recommend(user, &with_id(&format!("replay-{i}"))).unwrap();
        assert_eq!(again.request_id, format!("replay-{i}"));
        assert_eq!(&item_ids(&again), d);
    }
    assert!(draws.iter().any(|d| d != top), "20 ids, all unexplored");
    let n = n + 40;
    rec.flush_exposures().unwrap();
    let records = recsys_core::exposure::read_exposures(&log).unwrap();
    assert_eq!(records.len(), n);
    for r in &records {
        assert_eq!(r.policy, "two-tower+explore(eps=0.5,pool=10)");
        for (slot, it) in r.items.iter().enumerate() {
            let exact = if it.item_id == top[slot] { 0.5 + 0.05 } else { 0.05 };
            assert!((it.propensity - exact).abs() < 1e-12, "{r:?}");
        }
    }
}

/// `POST /api/v1/events` whose body never arrives (a slow or stalled client).
fn stalled_event_post() -> Request<Body> {
    let stalled = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    Request::builder()
        .method("POST")
        .uri("/api/v1/events")
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap()
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_times_out_with_a_503() {
    let mut config = ServeConfig::default();
    config.http.request_timeout_ms = 300;
    let rec = open(config, None);
    let app = app(&rec);
    let req = stalled_event_post();
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("the server gave up on the body")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains(r#"recsys_http_request_timeouts_total{route="/api/v1/events"} 1"#),
        "{text}"
    );
    // A normal request on the same service is answered.
    let (s, _) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000007&k=3", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn users_first_seen_online_are_bounded_the_least_recently_active_forgotten() {
    let mut config = ServeConfig::default();
    config.session.max_users = 5;
    let rec = open(config, None);
    let app = app(&rec);
    let base = rec.status().unwrap().users;
    let post = |user: String| {
        let app = app.clone();
        async move {
            let ev = json!({"user_id": user, "item_id": "P000003", "event_type": "click"});
            let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        }
    };
    for i in 0..5 {
        post(format!("new-{i}")).await;
    }
    // new-0 is active again: new-1 is now the least recently active.
    post("new-0".to_string()).await;
    for i in 5..40 {
        post(format!("new-{i}")).await;
    }
    assert_eq!(
        rec.status().unwrap().users,
        base + 5,
        "memory bounded: 5 online users held"
    );
    for (user, held) in [("new-1", false), ("new-2", false), ("new-39", true), ("new-35", true)] {
        let (s, v) = call(&app, "GET", &format!("/api/v1/features/users/{user}"), None).await;
        assert_eq!(s == StatusCode::OK, held, "{user}: {s} {v}");
    }
    // The snapshot's users are never evicted, however many new ids come.
    let (s, _) = call(&app, "GET", "/api/v1/features/users/U0000007", None).await;
    assert_eq!(s, StatusCode::OK);
    // A forgotten user who comes back starts afresh, as a new visitor.
    post("new-1".to_string()).await;
    let (s, v) = call(&app, "GET", "/api/v1/features/users/new-1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["recent_items"].as_array().map(Vec::len), Some(1), "{v}");
}

/// The queue of a spike forms before any handler runs (ready connections waiting for a worker),
/// where `max_in_flight` does not see it: requests that reach the service after the runtime was
/// busy longer than `http.max_queue_ms` are shed, and served again once it has caught up.
#[tokio::test(flavor = "current_thread")]
async fn requests_that_waited_past_max_queue_ms_are_shed_and_served_again_when_the_queue_drains() {
    let mut config = ServeConfig::default();
    config.http.max_queue_ms = 20;
    let rec = open(config, None);
    let app = app(&rec);
    let uri = "/api/v1/recommendations?user_id=U0000007&k=3";
    // As `serve` marks the requests of its connections (the queueing delay is measured for those).
    let from_listener = |uri: &str| {
        let mut req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(recsys_serve::http::PeerAddr("203.0.113.7:5000".parse().unwrap()));
        req
    };
    // The first API request starts the delay probe; nothing waits yet.
    let resp = app.clone().oneshot(from_listener(uri)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The runtime's only worker is busy for 300 ms: every task that became ready meanwhile waits.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // An in-process call of the router is not shed on the queueing delay.
    let (s, v) = call(&app, "GET", uri, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let resp = app.clone().oneshot(from_listener(uri)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let resp = app
        .clone()
        .oneshot(from_listener("/api/v1/similar?item_id=P000005&k=3"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v["error"].as_str().unwrap().contains("http.max_queue_ms 20"), "{v}");
    let (s, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK, "health is never shed");
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains(r#"recsys_http_shed_total{route="/api/v1/recommendations"} 1"#),
        "{text}"
    );
    // Once the probe has run on time again, requests are served.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let resp = app.clone().oneshot(from_listener(uri)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    let delay: f64 = text
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("recsys_http_queue_delay_seconds "))
        .expect("the queue delay gauge")
        .parse()
        .unwrap();
    assert!(delay < 0.020, "{delay}");
}

#[tokio::test]
async fn requests_over_max_in_flight_are_shed_at_once_and_health_is_not() {
    let mut config = ServeConfig::default();
    config.http.max_in_flight = 1;
    config.http.request_timeout_ms = 1_500;
    let rec = open(config, None);
    let app = app(&rec);
    // One request holds the only permit: its body never arrives.
    let req = stalled_event_post();
    let holder = tokio::spawn(app.clone().oneshot(req));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let req = Request::builder()
        .uri("/api/v1/recommendations?user_id=U0000007&k=3")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "shed at once, not queued"
    );
    let (s, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK, "health is never shed");
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    assert!(
        text.as_str()
            .unwrap()
            .contains(r#"recsys_http_shed_total{route="/api/v1/recommendations"} 1"#),
        "{text}"
    );
    // The holder times out and gives its permit back: requests run again.
    assert_eq!(holder.await.unwrap().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let (s, v) = call(&app, "GET", "/api/v1/recommendations?user_id=U0000007&k=3", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// `POST /api/v1/events` from `peer` (as `serve` marks a request of a connection), with extra
/// headers; the status, the `Retry-After` header and the body.
async fn post_events_from(
    app: &axum::Router,
    peer: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder()
        .method("POST")
        .uri("/api/v1/events")
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut()
        .insert(recsys_serve::http::PeerAddr(peer.parse().unwrap()));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn clicks(user: &str, item: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|_| json!({"user_id": user, "item_id": item, "event_type": "click"}))
            .collect(),
    )
}

/// Without an events token anyone may post, within per-client limits: one client moves one item
/// by at most `per_item_per_hour` events (a refused batch is neither applied nor logged), and
/// posts at most `per_second` on average; other clients are not affected.
#[tokio::test]
async fn an_anonymous_client_is_held_to_its_limits_and_refused_events_are_not_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServeConfig {
        event_log: Some(tmp.path().join("events")),
        ..ServeConfig::default()
    };
    config.http.events.per_item_per_hour = 10;
    config.http.events.per_second = 5.0;
    config.http.events.burst = 12;
    let rec = open(config, None);
    let app = app(&rec);
    let (s, _, v) = post_events_from(&app, "203.0.113.7:5000", &[], clicks("U0000001", "P000009", 8)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let trending = |v: &Value| v["trending_score_1h"].as_f64().unwrap();
    let (_, before) = call(&app, "GET", "/api/v1/features/items/P000009", None).await;
    // Three more on the same item would make 11: refused whole, naming the limit and the event.
    let mut batch = clicks("U0000001", "P000010", 1);
    batch
        .as_array_mut()
        .unwrap()
        .extend(clicks("U0000002", "P000009", 3).as_array().unwrap().clone());
    let (s, retry, v) = post_events_from(&app, "203.0.113.7:5001", &[], batch).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["limit"], "http.events.per_item_per_hour", "{v}");
    assert_eq!(
        (v["field"].as_str(), v["value"].as_str()),
        (Some("[1].item_id"), Some("P000009")),
        "{v}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let (_, after) = call(&app, "GET", "/api/v1/features/items/P000009", None).await;
    assert!(trending(&before) > 0.0, "{before}");
    assert_eq!(trending(&after), trending(&before), "refused events are not applied");
    // Another client (another address) is not affected.
    let (s, _, v) = post_events_from(&app, "198.51.100.1:6000", &[], clicks("U0000003", "P000009", 10)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // The first client's bucket: 8 of 12 spent, so 5 more (other items) go over the burst left.
    let (s, retry, v) = post_events_from(&app, "203.0.113.7:5002", &[], clicks("U0000001", "P000011", 5)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        (v["limit"].as_str(), retry.as_deref()),
        (Some("http.events.per_second"), Some("1")),
        "{v}"
    );
    let (s, _, v) = post_events_from(&app, "203.0.113.7:5002", &[], clicks("U0000001", "P000011", 20)).await;
    assert_eq!(
        (s, v["limit"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("http.events.burst")),
        "{v}"
    );
    // The log holds the accepted events only: 8 + 10.
    let logged: usize = std::fs::read_dir(tmp.path().join("events"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap().lines().count() - 1)
        .sum();
    assert_eq!(logged, 18);
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    assert!(
        text.as_str()
            .unwrap()
            .contains(r#"recsys_http_requests_total{route="/api/v1/events",status="4xx"} 3"#),
        "{text}"
    );
}

/// Behind a proxy the client is the first address of the configured header, not the proxy.
#[tokio::test]
async fn behind_a_proxy_the_client_is_the_forwarded_address() {
    let mut config = ServeConfig::default();
    config.http.events.client = "header:X-Forwarded-For".into();
    config.http.events.per_item_per_hour = 3;
    let rec = open(config, None);
    let app = app(&rec);
    let proxy = "10.0.0.2:40000";
    for visitor in ["203.0.113.7", "203.0.113.8"] {
        let xff = format!("{visitor}, 10.0.0.1");
        let (s, _, v) = post_events_from(
            &app,
            proxy,
            &[("x-forwarded-for", &xff)],
            clicks("U0000001", "P000012", 3),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{visitor}: {v}");
    }
    let xff = "203.0.113.7";
    let (s, _, v) = post_events_from(
        &app,
        proxy,
        &[("x-forwarded-for", xff)],
        clicks("U0000001", "P000012", 1),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
}

/// With an events token only its holders may post, and they are not held to per-client limits.
#[tokio::test]
async fn with_an_events_token_only_its_holders_post_and_they_are_not_limited() {
    let mut config = ServeConfig::default();
    config.http.events.per_item_per_hour = 2;
    let rec = open(config, None);
    let app = router(AppState::new(rec.clone(), Some(TOKEN.to_string())).with_events_token(Some("ev-tok".into())));
    let peer = "203.0.113.7:5000";
    let (s, _, v) = post_events_from(&app, peer, &[], clicks("U0000001", "P000013", 1)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let wrong = [("authorization", "Bearer ev-tol")];
    let (s, _, _) = post_events_from(&app, peer, &wrong, clicks("U0000001", "P000013", 1)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The admin token is not the events token.
    let admin = format!("Bearer {TOKEN}");
    let (s, _, _) = post_events_from(
        &app,
        peer,
        &[("authorization", &admin)],
        clicks("U0000001", "P000013", 1),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let good = [("authorization", "Bearer ev-tok")];
    let (s, _, v) = post_events_from(&app, peer, &good, clicks("U0000001", "P000013", 50)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    assert!(
        !text.as_str().unwrap().contains("ev-tok"),
        "the token never shows in /metrics"
    );
}

/// An event log that cannot be written (here the day's file is `/dev/full`): the post is a 503
/// and the events are not applied, so the client's retry neither loses nor double-counts them.
#[tokio::test]
async fn events_the_log_cannot_take_are_refused_and_not_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("events");
    std::fs::create_dir_all(&log).unwrap();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    std::os::unix::fs::symlink("/dev/full", log.join(format!("events-{today}.csv"))).unwrap();
    let rec = open(
        ServeConfig {
            event_log: Some(log),
            ..ServeConfig::default()
        },
        None,
    );
    let app = app(&rec);
    let (_, before) = call(&app, "GET", "/api/v1/features/items/P000014", None).await;
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/events",
        Some(json!({"user_id": "fresh-visitor", "item_id": "P000014", "event_type": "purchase"})),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("event log"), "{v}");
    let (_, after) = call(&app, "GET", "/api/v1/features/items/P000014", None).await;
    assert_eq!(after["trending_score_1h"], before["trending_score_1h"], "not applied");
    let (s, v) = call(&app, "GET", "/api/v1/features/users/fresh-visitor", None).await;
    assert!(
        s == StatusCode::NOT_FOUND || v["recent_items"].as_array().is_some_and(Vec::is_empty),
        "{s} {v}"
    );
}
