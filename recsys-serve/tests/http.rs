//! The events API and real-time features over HTTP (in-process, through the router).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use recsys_core::features::FeatureConfig;
use recsys_serve::http::{AppState, router};
use recsys_serve::online::OnlineFeatures;
use recsys_train::generate::{GenerateConfig, generate};
use recsys_train::import::{ImportOptions, import};
use recsys_train::progress::Progress;
use serde_json::{Value, json};
use std::path::Path;
use tower::ServiceExt;

fn dataset(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("raw");
    let cfg = GenerateConfig {
        users: 200,
        items: 80,
        events_per_day: 3_000,
        days: 3,
        ..Default::default()
    };
    generate(&raw, &cfg, Progress::quiet()).unwrap();
    let map = "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity"
        .parse()
        .unwrap();
    let mut opts = ImportOptions::new(vec![raw.join("events")], map);
    opts.items = Some(raw.join("items.parquet"));
    opts.users = Some(raw.join("users.parquet"));
    opts.event_type = Some("event_type".parse().unwrap());
    opts.progress = Progress::quiet();
    let data = dir.join("data");
    import(&data, &opts).unwrap();
    data
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    let req = match body {
        Some(b) => req.body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

#[tokio::test]
async fn events_update_features_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let app = router(AppState::new(
        OnlineFeatures::from_dataset(&data, FeatureConfig::default()).unwrap(),
    ));

    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    let (s, before) = call(&app, "GET", "/api/v1/features/users/U0000007", None).await;
    assert_eq!(s, StatusCode::OK, "{before}");
    let purchases = before["total_purchases_30d"].as_u64().unwrap();

    let ev = json!({"user_id": "U0000007", "item_id": "P000003", "event_type": "purchase", "price": 10.0});
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
    assert_eq!((s, v["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(1)));
    let (_, after) = call(&app, "GET", "/api/v1/features/users/U0000007", None).await;
    assert_eq!(after["total_purchases_30d"].as_u64().unwrap(), purchases + 1);
    assert_eq!(after["recent_items"][0], "P000003");

    // A brand-new user becomes known with the first event.
    let batch = json!([
        {"user_id": "new-visitor", "item_id": "P000001", "event_type": "view"},
        {"user_id": "new-visitor", "item_id": "P000002", "event_type": "click", "session_id": "s1"}
    ]);
    assert_eq!(
        call(&app, "POST", "/api/v1/events", Some(batch)).await.0,
        StatusCode::ACCEPTED
    );
    let (s, v) = call(&app, "GET", "/api/v1/features/users/new-visitor", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["recent_items"], json!(["P000002", "P000001"]));

    let (s, v) = call(&app, "GET", "/api/v1/features/items/P000003", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["trending_score_1h"].as_f64().unwrap() >= 8.0, "{v}");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_nothing_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let app = router(AppState::new(
        OnlineFeatures::from_dataset(&data, FeatureConfig::default()).unwrap(),
    ));
    let (_, before) = call(&app, "GET", "/api/v1/features/users/U0000001", None).await;

    let batch = json!([
        {"user_id": "U0000001", "item_id": "P000001", "event_type": "purchase"},
        {"user_id": "U0000001", "item_id": "P000001", "event_type": "wishlist"}
    ]);
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(batch)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "[1].event_type");
    assert_eq!(v["value"], "wishlist");
    let (_, after) = call(&app, "GET", "/api/v1/features/users/U0000001", None).await;
    assert_eq!(before, after, "a refused batch must not be applied in part");

    for (ev, field) in [
        (
            json!({"user_id": "", "item_id": "P000001", "event_type": "view"}),
            "[0].user_id",
        ),
        (
            json!({"user_id": "u", "item_id": "nope", "event_type": "view"}),
            "[0].item_id",
        ),
        (
            json!({"user_id": "u", "item_id": "P000001", "event_type": "view", "price": -1.0}),
            "[0].price",
        ),
        (
            json!({"user_id": "u", "item_id": "P000001", "event_type": "view", "quantity": 0}),
            "[0].quantity",
        ),
    ] {
        let (s, v) = call(&app, "POST", "/api/v1/events", Some(ev)).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
    }
    let (s, v) = call(&app, "POST", "/api/v1/events", Some(json!({"user_id": 5}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "body");
    let (s, v) = call(&app, "GET", "/api/v1/features/users/nobody", None).await;
    assert_eq!((s, v["kind"].as_str()), (StatusCode::NOT_FOUND, Some("user")));
}

#[tokio::test]
async fn online_warm_start_equals_offline_features() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let online = OnlineFeatures::from_dataset(&data, FeatureConfig::default()).unwrap();
    let ds = recsys_train::dataset::Dataset::open(&data).unwrap();
    let end = ds.manifest.partitions.values().map(|p| p.max_ts).max().unwrap() + 1;
    let out = tmp.path().join("features");
    recsys_train::features::compute_features(&data, end, &out, FeatureConfig::default(), Progress::quiet()).unwrap();
    let batches = recsys_train::dataset::read_parquet(&out.join("user_features.parquet"), None).unwrap();
    use arrow::array::AsArray;
    let b = &batches[0];
    let ids = b.column_by_name("user_id").unwrap().as_string::<i32>();
    let p30 = b
        .column_by_name("total_purchases_30d")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let vel = b
        .column_by_name("browsing_velocity")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    for i in 0..b.num_rows() {
        let f = online.user_features(ids.value(i), end).unwrap();
        assert_eq!(f.as_of, end);
        assert_eq!(f.total_purchases_30d, p30.value(i));
        assert_eq!(f.browsing_velocity, vel.value(i));
    }
}
