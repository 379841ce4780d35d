//! `recsys-train train --tune DURATION | --tune-trials N` through the binary: the output contract,
//! determinism for a seed, what the version records, and bad values.

mod common;

use common::cli::{dataset, json, run};
use serde_json::Value;
use std::path::Path;

/// A small configuration whose trials stay cheap whatever the search picks (examples capped).
fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.json");
    std::fs::write(
        &p,
        r#"{"embedding_dim": 32, "id_dim": 16, "side_dim": 8, "hidden_dim": 32, "history_len": 30,
            "epochs": 2, "batch_size": 256, "max_examples_per_epoch": 3000, "validation_users": 300}"#,
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn train(data: &str, registry: &Path, cfg: &str, tune: &[&str]) -> Value {
    let mut args = vec![
        "-q",
        "train",
        "--data",
        data,
        "--registry",
        registry.to_str().unwrap(),
        "--config",
        cfg,
        "--gates",
        "off",
        "--item-index",
        "exact",
    ];
    args.extend_from_slice(tune);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

/// The tuning object without wall-clock times.
fn without_times(tuning: &Value) -> Value {
    let mut t = tuning.clone();
    t.as_object_mut().unwrap().remove("seconds");
    for trial in t["trials"].as_array_mut().unwrap() {
        trial.as_object_mut().unwrap().remove("seconds");
    }
    t
}

#[test]
fn tune_trials_is_deterministic_and_the_version_records_the_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let cfg = tiny_config(tmp.path());
    let reg = tmp.path().join("registry");
    let first = train(&data, &reg, &cfg, &["--tune-trials", "3"]);
    let second = train(&data, &reg, &cfg, &["--tune-trials", "3"]);

    // The contract: "tuning": {"trials": [...], "chosen": {...}} beside the usual fields.
    let t = &first["tuning"];
    let trials = t["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3, "{t}");
    assert_eq!(t["stopped_by"], "trials");
    assert_eq!(t["max_trials"], 3);
    assert!(t["budget_seconds"].is_null());
    assert_eq!(t["metric"], "recall@20");
    assert_eq!(t["seed"], 42);
    assert!(t["validation_cases"].as_u64().unwrap() > 0);
    assert!(t["seconds"].as_f64().unwrap() > 0.0);
    let names: Vec<&str> = t["space"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for name in [
        "learning_rate",
        "temperature",
        "uniform_negatives",
        "embedding_dim",
        "id_dim",
    ] {
        assert!(names.contains(&name), "{name} not searched: {names:?}");
    }
    for (k, trial) in trials.iter().enumerate() {
        assert_eq!(trial["trial"], k);
        for field in [
            "settings",
            "status",
            "validation",
            "epochs",
            "validation_per_epoch",
            "seconds",
        ] {
            assert!(trial.get(field).is_some(), "trial {k} lacks {field}: {trial}");
        }
        assert_eq!(trial["settings"].as_object().unwrap().len(), names.len(), "{trial}");
    }
    // Trial 0 is the base configuration (here --config; the others keep the defaults).
    assert_eq!(trials[0]["settings"]["embedding_dim"], 32);
    assert_eq!(trials[0]["settings"]["learning_rate"], 0.002);
    assert_eq!(trials[0]["settings"]["temperature"], 0.05);
    // The choice is the best trial, with its best epoch.
    let chosen = &t["chosen"];
    let best = trials
        .iter()
        .map(|t| t["validation"].as_f64().unwrap_or(f64::MIN))
        .fold(f64::MIN, f64::max);
    assert_eq!(chosen["validation"].as_f64().unwrap(), best, "{t}");
    let winner = &trials[chosen["trial"].as_u64().unwrap() as usize];
    assert_eq!(chosen["settings"]["epochs"], winner["epochs"]);
    for (k, v) in winner["settings"].as_object().unwrap() {
        assert_eq!(&chosen["settings"][k], v, "{k}");
        assert_eq!(&chosen["config"][k], v, "{k}");
    }
    assert_eq!(chosen["config"]["epochs"], winner["epochs"]);
    assert_eq!(chosen["config"]["early_stopping_patience"], 0);

    // The version: config.json is the chosen configuration, data.json holds the search.
    let dir = reg.join(first["version"].as_str().unwrap());
    let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved, chosen["config"]);
    let info: Value = serde_json::from_slice(&std::fs::read(dir.join("data.json")).unwrap()).unwrap();
    assert_eq!(without_times(&info["tuning"]), without_times(t));

    // Determinism: the same trials, the same choice, the same model.
    assert_eq!(without_times(t), without_times(&second["tuning"]));
    assert_eq!(first["metrics"], second["metrics"]);
    assert_eq!(
        first["training"]["loss_per_epoch"],
        second["training"]["loss_per_epoch"]
    );

    // A time budget alone: trial 0 always runs (cut after an epoch when time is short).
    let timed = train(&data, &tmp.path().join("registry-timed"), &cfg, &["--tune", "1s"]);
    let t = &timed["tuning"];
    assert_eq!(t["budget_seconds"], 1.0);
    assert!(t["max_trials"].is_null());
    assert!(matches!(t["stopped_by"].as_str(), Some("budget" | "space")), "{t}");
    assert!(!t["trials"].as_array().unwrap().is_empty());
    // The same sequence: its trial 0 is the trial-bounded run's, epoch for epoch as far as it got.
    let (a, b) = (&t["trials"][0], &first["tuning"]["trials"][0]);
    assert_eq!(a["settings"], b["settings"]);
    assert_eq!(a["validation_per_epoch"][0], b["validation_per_epoch"][0], "{a} vs {b}");
    // Without --tune there is no tuning object.
    let plain = train(&data, &tmp.path().join("registry-plain"), &cfg, &[]);
    assert!(plain.get("tuning").is_none(), "{plain}");
}

#[test]
fn bad_tune_values_are_usage_errors_naming_the_flag_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, reg) = (tmp.path().join("data"), tmp.path().join("registry"));
    for (flag, value) in [
        ("--tune", "10x"),
        ("--tune", "10"),
        ("--tune", "0s"),
        ("--tune", "soon"),
        ("--tune-trials", "0"),
        ("--tune-trials", "many"),
    ] {
        let out = run(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--registry",
            reg.to_str().unwrap(),
            flag,
            value,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{flag} {value}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(!reg.exists(), "nothing was written");
}
