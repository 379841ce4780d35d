//! Integration tests of `recsys-train features` (point-in-time correctness, training/serving
//! skew) and of the `recsys-train` command line.

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use common::*;
use recsys_core::features::{FeatureConfig, FeatureEngine, FeatureEvent};
use recsys_core::schema::{DAY_MS, EventType, HOUR_MS};
use recsys_train::arrow;
use recsys_train::dataset::Dataset;
use recsys_train::features::{FeaturesReport, catalog_from, compute_features};
use recsys_train::generate::{GenerateConfig, generate};
use recsys_train::import::{OnError, import};
use recsys_train::progress::Progress;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One row of `user_features.parquet`.
#[derive(Debug, Clone, PartialEq)]
struct UserRow {
    user_idx: u32,
    total_purchases_30d: u32,
    avg_order_value: Option<f64>,
    favorite_categories: Vec<String>,
    browsing_velocity: f64,
    recent_items: Vec<String>,
    recent_event_types: Vec<String>,
    recent_timestamps: Vec<i64>,
}

/// One row of `item_features.parquet`.
#[derive(Debug, Clone, PartialEq)]
struct ItemRow {
    item_idx: u32,
    popularity_score: f64,
    avg_rating: Option<f64>,
    price_bucket: Option<u8>,
    trending_score_1h: f64,
    category: Option<String>,
}

fn string_list(b: &RecordBatch, name: &str, row: usize) -> Vec<String> {
    let l = b.column_by_name(name).unwrap().as_list::<i32>();
    let v = l.value(row);
    v.as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect()
}

fn read_users(out: &Path) -> HashMap<String, UserRow> {
    let b = read_parquet(&out.join("user_features.parquet"));
    let ids = strs(&b, "user_id");
    let idx = u64s(&b, "user_idx");
    let total = u64s(&b, "total_purchases_30d");
    let aov = f64s(&b, "avg_order_value");
    let vel = f64s(&b, "browsing_velocity");
    let ts_list = b.column_by_name("recent_timestamps").unwrap().as_list::<i32>();
    let mut out = HashMap::new();
    for r in 0..b.num_rows() {
        let ts = ts_list.value(r);
        let row = UserRow {
            user_idx: idx[r].unwrap() as u32,
            total_purchases_30d: total[r].unwrap() as u32,
            avg_order_value: aov[r],
            favorite_categories: string_list(&b, "favorite_categories", r),
            browsing_velocity: vel[r].unwrap(),
            recent_items: string_list(&b, "recent_items", r),
            recent_event_types: string_list(&b, "recent_event_types", r),
            recent_timestamps: ts.as_primitive::<TimestampMillisecondType>().values().to_vec(),
        };
        assert!(out.insert(ids[r].clone(), row).is_none(), "user {} twice", ids[r]);
    }
    out
}

fn read_items(out: &Path) -> HashMap<String, ItemRow> {
    let b = read_parquet(&out.join("item_features.parquet"));
    let ids = strs(&b, "item_id");
    let idx = u64s(&b, "item_idx");
    let pop = f64s(&b, "popularity_score");
    let rating = f64s(&b, "avg_rating");
    let bucket = u64s(&b, "price_bucket");
    let trend = f64s(&b, "trending_score_1h");
    let cat = strings(&b, "category");
    let mut out = HashMap::new();
    for r in 0..b.num_rows() {
        let row = ItemRow {
            item_idx: idx[r].unwrap() as u32,
            popularity_score: pop[r].unwrap(),
            avg_rating: rating[r],
            price_bucket: bucket[r].map(|b| b as u8),
            trending_score_1h: trend[r].unwrap(),
            category: cat[r].clone(),
        };
        assert!(out.insert(ids[r].clone(), row).is_none(), "item {} twice", ids[r]);
    }
    out
}

fn features_at(data: &Path, as_of: i64, out: &Path) -> FeaturesReport {
    compute_features(data, as_of, out, FeatureConfig::default(), Progress::quiet())
        .unwrap_or_else(|e| panic!("features as of {as_of}: {e}"))
}

/// A dataset from CSV rows `(user, item, event_type, ts_ms)`.
fn dataset(dir: &Path, rows: &[(&str, &str, &str, i64)]) -> PathBuf {
    let mut csv = String::from("user,item,ts,event_type\n");
    for (u, i, t, ts) in rows {
        csv.push_str(&format!("{u},{i},{},{t}\n", rfc3339(*ts)));
    }
    let f = write_file(dir, "events.csv", &csv);
    let out = dir.join("data");
    import_csv(&out, &f);
    out
}

/// u1 buys A at t - 1 ms and B at exactly t; u0 viewed C two days before.
fn leakage_case(t: i64) {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(
        tmp.path(),
        &[
            ("u0", "C", "view", t - 2 * DAY_MS),
            ("u1", "B", "purchase", t),
            ("u1", "A", "purchase", t - 1),
        ],
    );
    let half_life = FeatureConfig::default().popularity_half_life_ms as f64;
    let decayed = |age_ms: i64| 8.0 * (-(age_ms as f64) / half_life).exp2();

    // as_of = t: only the purchase at t - 1 exists yet.
    let out = tmp.path().join("at_t");
    let report = features_at(&data, t, &out);
    assert_eq!(report.events_used, 2, "events strictly before as_of");
    let users = read_users(&out);
    let u1 = &users["u1"];
    assert_eq!(u1.total_purchases_30d, 1);
    assert_eq!(u1.recent_items, ["A"]);
    assert_eq!(u1.recent_event_types, ["purchase"]);
    assert_eq!(u1.recent_timestamps, [t - 1]);
    let items = read_items(&out);
    assert_eq!(
        items["B"].popularity_score, 0.0,
        "the purchase at as_of leaked into popularity"
    );
    assert_eq!(
        items["B"].trending_score_1h, 0.0,
        "the purchase at as_of leaked into trending"
    );
    assert_eq!(items["A"].trending_score_1h, 8.0);
    assert!(
        (items["A"].popularity_score - decayed(1)).abs() < 1e-9,
        "{}",
        items["A"].popularity_score
    );
    assert!(items["A"].popularity_score > 7.99);

    // as_of = t + 1: both.
    let out = tmp.path().join("after_t");
    let report = features_at(&data, t + 1, &out);
    assert_eq!(report.events_used, 3);
    let u1 = &read_users(&out)["u1"];
    assert_eq!(u1.total_purchases_30d, 2);
    assert_eq!(u1.recent_items, ["B", "A"]);
    assert_eq!(u1.recent_timestamps, [t, t - 1]);
    let items = read_items(&out);
    assert_eq!(items["B"].trending_score_1h, 8.0);
    assert_eq!(items["A"].trending_score_1h, 8.0);
    assert!((items["B"].popularity_score - decayed(1)).abs() < 1e-9);
    assert!((items["A"].popularity_score - decayed(2)).abs() < 1e-9);

    // as_of = t - 1: neither.
    let out = tmp.path().join("before_t");
    features_at(&data, t - 1, &out);
    let u1 = &read_users(&out)["u1"];
    assert_eq!((u1.total_purchases_30d, u1.recent_items.len()), (0, 0));
    let items = read_items(&out);
    assert_eq!(items["A"].popularity_score, 0.0);
    assert_eq!(items["A"].trending_score_1h, 0.0);
}

#[test]
fn cut_off_is_exact_to_the_millisecond_within_a_day() {
    leakage_case(ms("2024-06-15T12:00:00Z"));
}

#[test]
fn cut_off_is_exact_to_the_millisecond_at_a_partition_boundary() {
    // t - 1 is the last millisecond of one partition, t the first of the next.
    leakage_case(ms("2024-06-15T00:00:00Z"));
}

#[test]
fn purchase_window_is_thirty_days_half_open() {
    let tmp = tempfile::tempdir().unwrap();
    let w = ms("2024-08-01T06:00:00Z");
    let window = 30 * DAY_MS;
    let data = dataset(
        tmp.path(),
        &[
            ("u5", "old", "purchase", w - window - 1),
            ("u5", "edge", "purchase", w - window),
            ("u6", "x", "view", w - 10 * DAY_MS),
        ],
    );
    let total = |as_of: i64, name: &str| {
        let out = tmp.path().join(name);
        features_at(&data, as_of, &out);
        read_users(&out)["u5"].total_purchases_30d
    };
    assert_eq!(
        total(w, "w"),
        1,
        "exactly 30 days before counts, 30 days + 1 ms does not"
    );
    assert_eq!(total(w - 1, "w_minus_1"), 2);
    assert_eq!(total(w + 1, "w_plus_1"), 0);
}

// ---------------------------------------------------------------------------------------------
// Training/serving skew: the offline parquet equals an online engine fed event by event.

const GENERATED_MAP: &str =
    "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page";

#[test]
fn offline_features_equal_online_engine_fed_event_by_event() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let cfg = GenerateConfig {
        users: 300,
        items: 120,
        events_per_day: 6000,
        days: 5,
        seed: 11,
        ..Default::default()
    };
    generate(&raw, &cfg, Progress::quiet()).unwrap();
    let data = tmp.path().join("data");
    let mut opts = options(&[&raw.join("events")], GENERATED_MAP);
    opts.event_type = Some("event_type".parse().unwrap());
    opts.items = Some(raw.join("items.parquet"));
    opts.users = Some(raw.join("users.parquet"));
    opts.on_error = OnError::Fail;
    import(&data, &opts).unwrap();
    let as_of = (cfg.start_day + i64::from(cfg.days) - 1) * DAY_MS + 12 * HOUR_MS + 12_345;
    let feats = tmp.path().join("features");
    let report = features_at(&data, as_of, &feats);

    // Online: raw files, in file order, one event at a time.
    let ds = Dataset::open(&data).unwrap();
    let (catalog, categories) = catalog_from(&ds.items);
    let mut engine = FeatureEngine::new(FeatureConfig::default(), catalog).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(raw.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), cfg.days as usize);
    let (mut fed, mut later) = (0u64, 0u64);
    for f in &files {
        let b = read_parquet(f);
        let users = strs(&b, "user_id");
        let items = strs(&b, "item_id");
        let kinds = strs(&b, "event_type");
        let ts = timestamps(&b, "timestamp");
        let sessions = strings(&b, "session_id");
        let price = f64s(&b, "price");
        let qty = u64s(&b, "quantity");
        for r in 0..b.num_rows() {
            if ts[r] >= as_of {
                later += 1;
                continue;
            }
            let ev = FeatureEvent::new(
                ds.users.ids.get(&users[r]).expect("user in the dictionary"),
                ds.items.ids.get(&items[r]).expect("item in the dictionary"),
                EventType::parse(&kinds[r]).expect("event type"),
                ts[r],
                price[r],
                qty[r].map(|q| q as u32),
                sessions[r].as_deref(),
                None,
            );
            engine.ingest(&ev);
            fed += 1;
        }
    }
    assert!(later > 0, "as_of must cut the last day");
    assert_eq!(report.events_used, fed, "offline and online saw different events");

    let user_rows = read_users(&feats);
    assert_eq!(user_rows.len(), ds.users.len());
    let mut with_purchases = 0;
    let mut with_orders = 0;
    for (id, row) in &user_rows {
        let u = ds.users.ids.get(id).unwrap();
        assert_eq!(row.user_idx, u);
        let f = engine.user_features(u, as_of).unwrap();
        let online = UserRow {
            user_idx: u,
            total_purchases_30d: f.total_purchases_30d,
            avg_order_value: f.avg_order_value,
            favorite_categories: f
                .favorite_categories
                .iter()
                .map(|&c| categories[c as usize].clone())
                .collect(),
            browsing_velocity: f.browsing_velocity,
            recent_items: f
                .recent
                .iter()
                .map(|r| ds.items.ids.id(r.0).unwrap().to_string())
                .collect(),
            recent_event_types: f.recent.iter().map(|r| r.1.as_str().to_string()).collect(),
            recent_timestamps: f.recent.iter().map(|r| r.2).collect(),
        };
        assert_eq!(row, &online, "user {id}: offline (left) vs online (right)");
        with_purchases += usize::from(row.total_purchases_30d > 0);
        with_orders += usize::from(row.avg_order_value.is_some());
    }
    assert!(with_purchases >= 10 && with_orders >= 10, "too few buyers to compare");

    let item_rows = read_items(&feats);
    assert_eq!(item_rows.len(), ds.items.len());
    let mut trending = 0;
    for (id, row) in &item_rows {
        let i = ds.items.ids.get(id).unwrap();
        let f = engine.item_features(i, as_of).unwrap();
        let online = ItemRow {
            item_idx: i,
            popularity_score: f.popularity_score,
            avg_rating: f.avg_rating,
            price_bucket: f.price_bucket,
            trending_score_1h: f.trending_score_1h,
            category: f.category.map(|c| categories[c as usize].clone()),
        };
        assert_eq!(row, &online, "item {id}: offline (left) vs online (right)");
        trending += usize::from(row.trending_score_1h > 0.0);
    }
    assert!(trending >= 10, "too few trending items to compare");
}
