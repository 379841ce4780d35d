//! `train_and_register` with tuning: the search never reads the test split. Two datasets that
//! differ only in their test interactions (poisoned: every test event moved to an item of another
//! taste) must give the same trials, the same choice and the same trained model, while the test
//! metrics show that the poison is there.

mod common;

use common::*;
use recsys_core::model::TwoTowerConfig;
use recsys_core::schema::DAY_MS;
use recsys_train::evaluate::{Protocol, SplitOptions};
use recsys_train::progress::Progress;
use recsys_train::train::{BackendKind, ItemIndexKind, TrainOptions, TrainOutcome, train_and_register};
use recsys_train::tune::{Dimension, TuneOptions};
use serde_json::Value;
use std::path::Path;

const USERS: u32 = 240;
const ITEMS: u32 = 60;
const DAYS: i64 = 12;
const TEST_DAYS: u32 = 2;

/// One event: user, item, time, type.
type Event = (u32, u32, i64, &'static str);

/// Users of three tastes (20 items each) with two events a day, in time order. Day 0 names every
/// item and user first, so both versions of the data get the same id dictionaries.
fn events() -> Vec<Event> {
    let start = ms("2025-03-01T00:00:00Z");
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let mut out = Vec::new();
    for day in 0..DAYS {
        for u in 0..USERS {
            for j in 0..2u32 {
                let ts = start + day * DAY_MS + i64::from(u * 2 + j) * 60_000;
                let item = if day == 0 && j == 0 {
                    u % ITEMS
                } else if next() % 100 < 85 {
                    (u % 3) * 20 + next() % 20
                } else {
                    next() % ITEMS
                };
                let kind = if next() % 4 == 0 { "purchase" } else { "click" };
                out.push((u, item, ts, kind));
            }
        }
    }
    out
}

/// The events with every test interaction of `protocol` moved to an item of another taste.
fn poisoned(events: &[Event], protocol: Protocol) -> Vec<Event> {
    let max_ts = events.iter().map(|e| e.2).max().unwrap();
    let cutoff = max_ts + 1 - i64::from(TEST_DAYS) * DAY_MS;
    let mut last = vec![0usize; USERS as usize];
    for (k, e) in events.iter().enumerate() {
        last[e.0 as usize] = k;
    }
    events
        .iter()
        .enumerate()
        .map(|(k, &(u, item, ts, kind))| {
            let test = match protocol {
                Protocol::TimeSplit => ts >= cutoff,
                Protocol::LeaveOneOut => last[u as usize] == k,
            };
            (u, if test { (item + 20) % ITEMS } else { item }, ts, kind)
        })
        .collect()
}

fn import(dir: &Path, name: &str, events: &[Event]) -> std::path::PathBuf {
    let mut csv = String::from("user,item,ts,event_type\n");
    for (u, i, ts, kind) in events {
        csv.push_str(&format!("u{u},i{i},{},{kind}\n", rfc3339(*ts)));
    }
    let file = write_file(dir, &format!("{name}.csv"), &csv);
    let out = dir.join(name);
    let mut opts = options(&[file.as_path()], "user=user,item=item,ts=ts");
    opts.event_type = Some("event_type".parse().unwrap());
    recsys_train::import::import(&out, &opts).unwrap();
    out
}

fn train(data: &Path, registry: &Path, protocol: Protocol) -> TrainOutcome {
    let config = TwoTowerConfig::new()
        .with_embedding_dim(16)
        .with_id_dim(8)
        .with_side_dim(4)
        .with_hidden_dim(16)
        .with_history_len(20)
        .with_batch_size(128)
        .with_epochs(3)
        .with_validation_metric("ndcg@10".into());
    let mut tune = TuneOptions::new(None, Some(5));
    tune.space = vec![
        Dimension::new("temperature", [0.05, 0.1, 0.2]),
        Dimension::new("learning_rate", [0.002, 0.01, 0.03]),
    ];
    tune.min_compared = 2;
    train_and_register(&TrainOptions {
        data: data.to_path_buf(),
        registry: registry.to_path_buf(),
        config,
        backend: BackendKind::Cpu,
        gates: None,
        split: SplitOptions {
            protocol,
            test_days: Some(TEST_DAYS),
            ..Default::default()
        },
        item_index: ItemIndexKind::Exact,
        tune: Some(tune),
        progress: Progress::quiet(),
    })
    .unwrap()
}

/// The tuning report without its wall-clock times.
fn without_times(tuning: &Value) -> Value {
    let mut t = tuning.clone();
    t.as_object_mut().unwrap().remove("seconds");
    for trial in t["trials"].as_array_mut().unwrap() {
        trial.as_object_mut().unwrap().remove("seconds");
    }
    rounded(t)
}

/// Every float to 12 significant digits: the two datasets list their events in another order
/// (the poisoned test events sort elsewhere), so a mean over the same validation cases may be
/// summed in another order and differ in the last bit; any use of the test split would move the
/// scores far more than that.
fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => Value::String(format!("{:.11e}", n.as_f64().unwrap())),
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        v => v,
    }
}

#[test]
fn tuning_never_reads_the_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let clean_events = events();
    for protocol in [Protocol::TimeSplit, Protocol::LeaveOneOut] {
        let name = format!("{protocol:?}");
        let bad_events = poisoned(&clean_events, protocol);
        let changed = clean_events.iter().zip(&bad_events).filter(|(a, b)| a != b).count();
        assert!(changed >= 200, "{name}: only {changed} test events poisoned");
        let clean = import(tmp.path(), &format!("clean-{name}"), &clean_events);
        let bad = import(tmp.path(), &format!("bad-{name}"), &bad_events);
        let a = train(&clean, &tmp.path().join(format!("reg-clean-{name}")), protocol);
        let b = train(&bad, &tmp.path().join(format!("reg-bad-{name}")), protocol);

        let ta = serde_json::to_value(a.tuning.as_ref().unwrap()).unwrap();
        let tb = serde_json::to_value(b.tuning.as_ref().unwrap()).unwrap();
        let trials = ta["trials"].as_array().unwrap();
        assert!(trials.len() >= 3, "{name}: {ta}");
        assert!(
            trials
                .iter()
                .filter(|t| t["validation"].as_f64().unwrap_or(0.0) > 0.0)
                .count()
                >= 2,
            "{name}: {ta}"
        );
        // The same search, trial by trial, and the same choice.
        assert_eq!(without_times(&ta), without_times(&tb), "{name}");
        // The same model: the final training, too, saw only the training part.
        let losses = |o: &TrainOutcome| rounded(serde_json::json!(o.training.loss_per_epoch));
        assert_eq!(losses(&a), losses(&b), "{name}");
        // ... while the final evaluation did read the (poisoned) test split.
        assert_ne!(
            a.metrics.get("ndcg@10"),
            b.metrics.get("ndcg@10"),
            "{name}: the poison did not reach the test"
        );

        // The version records the chosen configuration and the search.
        let dir = tmp.path().join(format!("reg-clean-{name}")).join(&a.version);
        let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(saved, ta["chosen"]["config"], "{name}");
        assert_eq!(saved["epochs"], ta["chosen"]["settings"]["epochs"], "{name}");
        let info: Value = serde_json::from_slice(&std::fs::read(dir.join("data.json")).unwrap()).unwrap();
        assert_eq!(without_times(&info["tuning"]), without_times(&ta), "{name}");
    }
}
