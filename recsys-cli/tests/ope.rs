//! `recsys-train ope` end to end: a model version as the target policy on an exposure log whose
//! logged lists are the model's own rankings (checked by brute force here), the contract's JSON
//! shape, the Open Bandit Dataset format, and bad input.

mod common;

use common::cli::{dataset, json, run, small_config};
use recsys_core::model::{UserContext, UserInputs};
use recsys_core::schema::EventType;
use recsys_train::dataset::Dataset;
use recsys_train::evaluate::{histories, load_interactions};
use recsys_train::train::{Vocabularies, load_model};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

fn trained(dir: &Path) -> (String, String) {
    let data = dataset(dir);
    let reg = dir.join("reg").to_str().unwrap().to_string();
    let cfg = small_config(dir);
    let out = run(&[
        "-q",
        "train",
        "--data",
        &data,
        "--registry",
        &reg,
        "--config",
        &cfg,
        "--gates",
        "off",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (data, reg)
}

/// The model's top `k` item ids for user `u` at `ts`, by brute force: history strictly before
/// `ts`, items purchased before `ts` excluded.
fn brute_force_top(data: &str, reg: &str, users: &[usize], ts: i64, k: usize) -> Vec<Vec<String>> {
    let ds = Dataset::open(data).unwrap();
    let (model, _, vdir) = load_model("current", Some(Path::new(reg))).unwrap();
    let vocab: Vocabularies = serde_json::from_slice(&std::fs::read(vdir.join("vocab.json")).unwrap()).unwrap();
    let hist = histories(&load_interactions(&ds).unwrap(), ds.users.len());
    let code = |v: &Option<String>, names: &[String]| {
        v.as_ref()
            .and_then(|s| names.iter().position(|n| n == s))
            .map_or(0, |p| p as u32 + 1)
    };
    let emb = model.item_embeddings();
    users
        .iter()
        .map(|&u| {
            let ctx = UserContext {
                history: &hist[u],
                as_of: ts,
                age: code(&ds.users.age_bucket[u], &vocab.ages),
                region: code(&ds.users.region[u], &vocab.regions),
            };
            let mut ue = vec![0.0; model.dim()];
            model
                .user_embedding(&UserInputs::build(&ctx, &model.config), &mut ue)
                .unwrap();
            let bought: BTreeSet<u32> = hist[u]
                .iter()
                .filter(|e| e.event_type == EventType::Purchase && e.ts < ts)
                .map(|e| e.item)
                .collect();
            let mut scored: Vec<(f32, u32)> = emb
                .chunks_exact(model.dim())
                .enumerate()
                .filter(|(i, _)| !bought.contains(&(*i as u32)))
                .map(|(i, e)| (ue.iter().zip(e).map(|(a, b)| a * b).sum(), i as u32))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored
                .iter()
                .take(k)
                .map(|s| ds.items.ids.id(s.1).unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn a_model_policy_matches_a_log_of_its_own_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let (data, reg) = trained(dir.path());
    let ds = Dataset::open(&data).unwrap();
    let interactions = load_interactions(&ds).unwrap();
    // Mid-period: histories before it are partial, so the time cut matters.
    let ts = interactions[interactions.len() / 2].ts;
    let users: Vec<usize> = (0..ds.users.len()).step_by(151).take(6).collect();
    let tops = brute_force_top(&data, &reg, &users, ts, 3);

    let logs = dir.path().join("exposures");
    std::fs::create_dir(&logs).unwrap();
    let mut lines = String::new();
    for (n, (&u, top)) in users.iter().zip(&tops).enumerate() {
        // Distinct top scores, so the ranking is not decided by ties.
        let items: Vec<serde_json::Value> = top
            .iter()
            .enumerate()
            .map(|(p, id)| serde_json::json!({"item_id": id, "position": p + 1, "score": 1.0, "propensity": 1.0}))
            .collect();
        let rec = serde_json::json!({"v": 2, "request_id": format!("q{n}"), "ts": ts, "user_id": ds.users.ids.id(u as u32).unwrap(),
            "variant": "control", "model_version": "1.0.0", "policy": "two-tower", "context": {}, "items": items});
        lines.push_str(&format!("{rec}\n"));
    }
    std::fs::write(logs.join("exposures-2025-10-05.jsonl"), lines).unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    // One click, attributed by request id, on the first request's first item.
    std::fs::write(
        events.join("events-2025-10-05.csv"),
        format!(
            "user_id,item_id,event_type,timestamp,session_id,price,quantity,request_id\n{},{},click,{},,,,q0\n",
            ds.users.ids.id(users[0] as u32).unwrap(),
            tops[0][0],
            ts + 1000
        ),
    )
    .unwrap();
    let (logs_s, events_s) = (logs.to_str().unwrap(), events.to_str().unwrap());
    let out = run(&[
        "-q",
        "ope",
        "--logs",
        logs_s,
        "--events",
        events_s,
        "--policy",
        "current",
        "--registry",
        &reg,
        "--data",
        &data,
        "--bootstrap",
        "50",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!(r["rows"], 18);
    assert_eq!(r["matches"], 18, "{r}");
    assert_eq!(r["attributed_clicks"], 1);
    for e in ["replay", "ips", "snips", "dr"] {
        let v = r["estimators"][e]["value"].as_f64().unwrap();
        assert!((v - 1.0 / 18.0).abs() < 1e-12, "{e}: {v}");
        assert_eq!(r["estimators"][e]["ci95"].as_array().unwrap().len(), 2);
    }
    assert_eq!(r["ess"], 18.0);
    assert_eq!(r["positions"]["1"]["estimators"]["ips"]["value"], 1.0 / 6.0);
    assert_eq!(r["policy"], "model 1.0.0");

    // The uniform policy over the logged pool: the contract's shape.
    let out = run(&[
        "-q", "ope", "--logs", logs_s, "--events", events_s, "--policy", "uniform", "--seed", "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    // The log imported into the dataset (Parquet) reads back to the same figures.
    let out = run(&["-q", "import", "--exposures", logs_s, "--out", &data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let imported = json(&out);
    assert_eq!(imported["exposures"]["records"], 6, "{imported}");
    assert_eq!(imported["exposures"]["rows"], 18, "{imported}");
    assert_eq!(imported["exposures"]["days"].as_array().unwrap().len(), 1, "{imported}");
    let table_dir = format!("{data}/exposures");
    let out = run(&[
        "-q", "ope", "--logs", &table_dir, "--events", events_s, "--policy", "uniform", "--seed", "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out), r);
    assert_eq!(r["policy"], "uniform");
    assert_eq!(r["rows"], 18);
    assert!(r["ess"].as_f64().unwrap() > 0.0);
    for e in ["replay", "ips", "snips", "dr"] {
        assert!(r["estimators"][e]["value"].is_number(), "{e}: {r}");
        assert!(r["estimators"][e]["ci95"].is_array(), "{e}: {r}");
    }

    // A model policy without its registry or data is a usage error naming the flag.
    let out = run(&["-q", "ope", "--logs", logs_s, "--policy", "current"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registry"));
    let out = run(&["-q", "ope", "--logs", logs_s, "--policy", "current", "--registry", &reg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
}

fn obd_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TECHSHOP_OBD_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/techshop-recs/obd")))?;
    if dir.join("bts/all/all.csv").is_file() {
        return Some(dir);
    }
    if std::env::var("TECHSHOP_REQUIRE_TEST_DATA").as_deref() == Ok("1") {
        panic!(
            "the Open Bandit Dataset is not in {} (scripts/fetch-obd.sh)",
            dir.display()
        );
    }
    // Straight to the stderr handle: `cargo test` captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "NOTICE: skipping the OBD command test: no {} (run scripts/fetch-obd.sh)",
        dir.join("bts/all/all.csv").display()
    );
    None
}

#[test]
fn the_obd_format_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = common::write_file(
        tmp.path(),
        "bad.csv",
        ",timestamp,item_id,position,click,propensity_score\n0,t,3,1,0,0.5\n1,t,4,2,1,0\n",
    );
    let out = run(&[
        "-q",
        "ope",
        "--logs",
        bad.to_str().unwrap(),
        "--format",
        "obd",
        "--policy",
        "uniform",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv") && err.contains("row 2") && err.contains("propensity_score") && err.contains("\"0\""),
        "{err}"
    );
    let out = run(&[
        "-q",
        "ope",
        "--logs",
        bad.to_str().unwrap(),
        "--format",
        "obd",
        "--policy",
        "current",
    ]);
    assert_eq!(out.status.code(), Some(2));

    let Some(dir) = obd_dir() else { return };
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../recsys-train/tests/data/obd_reference.json"))
            .unwrap(),
    )
    .unwrap();
    let file = dir.join("bts/all/all.csv");
    let out = run(&[
        "-q",
        "ope",
        "--logs",
        file.to_str().unwrap(),
        "--format",
        "obd",
        "--policy",
        "uniform",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!(r["rows"], 10_000);
    assert_eq!(r["format"], "obd");
    for e in ["ips", "snips"] {
        let ours = r["estimators"][e]["value"].as_f64().unwrap();
        let theirs = reference["files"]["bts/all/all.csv"][e].as_f64().unwrap();
        assert!((ours - theirs).abs() <= 1e-9 * theirs, "{e}: {ours} vs {theirs}");
        let [lo, hi] = [0, 1].map(|i| r["estimators"][e]["ci95"][i].as_f64().unwrap());
        assert!(lo < ours && ours < hi, "{e}: {ours} outside [{lo}, {hi}]");
    }
    assert_eq!(r["positions"].as_object().unwrap().len(), 3);
}
