//! Integration tests of `recsys-train generate`: determinism, funnel, day files, planted structure.

mod common;

use common::*;
use recsys_core::schema::DAY_MS;
use recsys_train::generate::{GenerateConfig, GenerateReport, generate};
use recsys_train::progress::Progress;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

fn config(seed: u64) -> GenerateConfig {
    GenerateConfig {
        users: 400,
        items: 200,
        events_per_day: 20_000,
        days: 4,
        seed,
        ..Default::default()
    }
}

fn gen_into(dir: &Path, cfg: &GenerateConfig) -> GenerateReport {
    generate(dir, cfg, Progress::quiet()).unwrap()
}

/// The event files in date order.
fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn same_seed_same_data_other_seed_other_events() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = GenerateConfig {
        events_per_day: 5_000,
        days: 2,
        ..config(3)
    };
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let ra = gen_into(&a, &cfg);
    let rb = gen_into(&b, &cfg);
    assert_eq!((ra.events, ra.purchases), (rb.events, rb.purchases));
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    let mut expected: Vec<PathBuf> = ["generate.json", "items.parquet", "users.parquet"]
        .iter()
        .map(PathBuf::from)
        .collect();
    expected.push(PathBuf::from("events/events-2025-10-01.parquet"));
    expected.push(PathBuf::from("events/events-2025-10-02.parquet"));
    expected.sort();
    assert_eq!(ta.keys().cloned().collect::<Vec<_>>(), expected);
    for rel in ta.keys() {
        if rel.extension().is_some_and(|e| e == "parquet") {
            let (x, y) = (read_parquet(&a.join(rel)), read_parquet(&b.join(rel)));
            assert!(x.num_rows() > 0, "{}", rel.display());
            assert_eq!(x, y, "{} differs between two runs with the same seed", rel.display());
        } else {
            assert_eq!(ta[rel], tb[rel], "{}", rel.display());
        }
    }
    // Another seed: other events.
    gen_into(&c, &GenerateConfig { seed: 4, ..cfg.clone() });
    for rel in ["events/events-2025-10-01.parquet", "events/events-2025-10-02.parquet"] {
        let (x, z) = (read_parquet(&a.join(rel)), read_parquet(&c.join(rel)));
        assert_ne!(x, z, "{rel} is the same for seeds 3 and 4");
        assert_ne!(strs(&x, "user_id"), strs(&z, "user_id"));
    }
}

#[test]
fn funnel_day_files_and_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(42);
    let report = gen_into(tmp.path(), &cfg);
    let items: HashSet<String> = strs(&read_parquet(&tmp.path().join("items.parquet")), "item_id")
        .into_iter()
        .collect();
    let users: HashSet<String> = strs(&read_parquet(&tmp.path().join("users.parquet")), "user_id")
        .into_iter()
        .collect();
    assert_eq!(items.len(), cfg.items as usize);
    assert_eq!(users.len(), cfg.users as usize);
    let files = event_files(tmp.path());
    assert_eq!(files.len(), cfg.days as usize);
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    for (d, f) in files.iter().enumerate() {
        let day = cfg.start_day + d as i64;
        let date = recsys_train::dataset::day_to_date(day);
        assert_eq!(
            f.file_name().unwrap().to_string_lossy(),
            format!("events-{date}.parquet")
        );
        let b = read_parquet(f);
        // Near the target (a day loses the sessions cut at midnight, gains at most one session per chunk).
        let n = b.num_rows() as u64;
        assert!(
            n > cfg.events_per_day * 9 / 10 && n < cfg.events_per_day * 11 / 10,
            "{date}: {n} events"
        );
        total += n;
        for t in timestamps(&b, "timestamp") {
            assert!(
                (day * DAY_MS..(day + 1) * DAY_MS).contains(&t),
                "event at {} in the file of {date}",
                rfc3339(t)
            );
        }
        for u in strs(&b, "user_id") {
            assert!(users.contains(&u), "unknown user {u} in {date}");
        }
        for i in strs(&b, "item_id") {
            assert!(items.contains(&i), "unknown item {i} in {date}");
        }
        for k in strs(&b, "event_type") {
            *counts.entry(k).or_default() += 1;
        }
    }
    assert_eq!(report.events, total);
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert_eq!(report.purchases, c("purchase"));
    assert!(c("view") > c("click"), "{counts:?}");
    assert!(c("click") > c("add_to_cart"), "{counts:?}");
    assert!(c("add_to_cart") > c("purchase"), "{counts:?}");
    assert!(c("purchase") > 0);
    let share = c("purchase") as f64 / total as f64;
    assert!(
        (0.003..=0.008).contains(&share),
        "purchase share {share:.5} ({counts:?})"
    );
}

#[test]
fn users_concentrate_on_their_own_categories() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(9);
    gen_into(tmp.path(), &cfg);
    let items = read_parquet(&tmp.path().join("items.parquet"));
    let category: HashMap<String, String> = strs(&items, "item_id")
        .into_iter()
        .zip(strs(&items, "category"))
        .collect();
    // Clicks and purchases per user and category: earlier days fit, the last day tests.
    type Counts = HashMap<String, HashMap<String, u64>>;
    let (mut fit, mut test): (Counts, Counts) = (HashMap::new(), HashMap::new());
    let files = event_files(tmp.path());
    for (d, f) in files.iter().enumerate() {
        let b = read_parquet(f);
        let target = if d + 1 < files.len() { &mut fit } else { &mut test };
        let (u, i, k) = (strs(&b, "user_id"), strs(&b, "item_id"), strs(&b, "event_type"));
        for r in 0..b.num_rows() {
            if k[r] == "click" || k[r] == "purchase" {
                *target
                    .entry(u[r].clone())
                    .or_default()
                    .entry(category[&i[r]].clone())
                    .or_default() += 1;
            }
        }
    }
    let top3 = |m: &HashMap<String, u64>| -> HashSet<String> {
        let mut v: Vec<(&String, &u64)> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.into_iter().take(3).map(|(c, _)| c.clone()).collect()
    };
    let mut global: HashMap<String, u64> = HashMap::new();
    for m in fit.values() {
        for (c, n) in m {
            *global.entry(c.clone()).or_default() += n;
        }
    }
    let global_top = top3(&global);
    let (mut personal_hits, mut global_hits, mut n, mut users) = (0u64, 0u64, 0u64, 0);
    for (u, m) in &test {
        let Some(past) = fit.get(u).filter(|p| p.values().sum::<u64>() >= 5) else {
            continue;
        };
        let mine = top3(past);
        users += 1;
        for (c, k) in m {
            n += k;
            personal_hits += if mine.contains(c) { *k } else { 0 };
            global_hits += if global_top.contains(c) { *k } else { 0 };
        }
    }
    assert!(users >= 50 && n >= 1000, "too little data: {users} users, {n} events");
    let personal = personal_hits as f64 / n as f64;
    let global = global_hits as f64 / n as f64;
    eprintln!("personal top-3 share {personal:.3}, global top-3 share {global:.3} ({users} users, {n} events)");
    assert!(
        personal > global + 0.3 && personal > 2.0 * global,
        "personal top-3 share {personal:.3} vs global top-3 share {global:.3}"
    );
}
