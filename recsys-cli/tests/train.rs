//! `recsys-train train | evaluate | registry` end to end through the binary.

mod common;

use common::cli::{dataset, json, run, small_config};
use serde_json::Value;
use std::path::Path;

#[test]
fn train_publishes_promotes_and_gates_block_regressions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let reg = tmp.path().join("registry");
    let reg = reg.to_str().unwrap();
    let cfg = small_config(tmp.path());

    // Gates off: the first model is promoted.
    let out = run(&[
        "-q",
        "train",
        "--data",
        &data,
        "--registry",
        reg,
        "--config",
        &cfg,
        "--gates",
        "off",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = json(&out);
    assert_eq!(first["promoted"], true);
    let v1 = first["version"].as_str().unwrap().to_string();
    for k in ["recall@20", "ndcg@20", "hr@10", "auc", "coverage@20", "entropy@20"] {
        assert!(first["metrics"][k].is_number(), "metric {k} missing: {first}");
    }
    for f in [
        "model.bin",
        "config.json",
        "metrics.json",
        "data.json",
        "vocab.json",
        "manifest.json",
    ] {
        assert!(
            Path::new(reg).join(&v1).join(f).is_file(),
            "{f} missing in the version directory"
        );
    }
    assert!(
        !Path::new(reg).join(&v1).join("items.hnsw").exists(),
        "a small catalogue is scanned exactly: no HNSW graph by default"
    );

    // Impossible gates: the new version is published but not promoted; exit status 3 names the metric.
    let gates = tmp.path().join("gates.json");
    std::fs::write(&gates, r#"{"min": {"recall@20": 0.999}}"#).unwrap();
    let out = run(&[
        "-q",
        "train",
        "--data",
        &data,
        "--registry",
        reg,
        "--config",
        &cfg,
        "--gates",
        gates.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let second = json(&out);
    assert_eq!(second["promoted"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("recall@20"));
    let list = json(&run(&["registry", "--registry", reg, "list"]));
    let current: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["version"], v1.as_str(), "the previous model keeps serving");

    // Promote the second explicitly, then roll back.
    let v2 = second["version"].as_str().unwrap();
    let out = run(&["registry", "--registry", reg, "promote", v2]);
    assert!(out.status.success());
    assert_eq!(json(&out)["current"], v2);
    let out = run(&["registry", "--registry", reg, "rollback"]);
    assert_eq!(json(&out)["current"], v1.as_str());

    // Evaluate the current model with baselines: one JSON object, logs on stderr.
    let out = run(&[
        "-q",
        "evaluate",
        "--data",
        &data,
        "--registry",
        reg,
        "--model",
        "current",
        "--baselines",
        "popularity,mf",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = json(&out);
    assert_eq!(ev["protocol"], "time-split");
    assert!(ev["users_evaluated"].as_u64().unwrap() > 100);
    for m in ["two_tower", "popularity", "mf"] {
        assert!(ev["models"][m]["recall@20"].is_number(), "{m}: {ev}");
    }
    // The two-tower model learns the planted preferences: it beats popularity.
    let tt = ev["models"]["two_tower"]["recall@20"].as_f64().unwrap();
    let pop = ev["models"]["popularity"]["recall@20"].as_f64().unwrap();
    assert!(tt > pop, "two-tower {tt} vs popularity {pop}");

    // A corrupt artifact is refused on promote, and current is unchanged.
    let model = Path::new(reg).join(v2).join("model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    let out = run(&["registry", "--registry", reg, "promote", v2]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("model.bin"));
    let list = json(&run(&["registry", "--registry", reg, "list"]));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|v| v["current"] == true && v["version"] == v1.as_str())
    );
}

#[test]
fn bad_config_and_unknown_model_are_user_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let cfg = tmp.path().join("bad.json");
    std::fs::write(&cfg, r#"{"temprature": 0.1}"#).unwrap();
    let reg = tmp.path().join("r");
    let out = run(&[
        "train",
        "--data",
        &data,
        "--registry",
        reg.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("temprature"));
    let out = run(&[
        "evaluate",
        "--data",
        &data,
        "--model",
        "9.9.9",
        "--registry",
        reg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn item_index_hnsw_saves_a_graph_with_the_version_that_agrees_with_the_exact_scan() {
    use recsys_core::model::inference::TwoTowerModel;
    use recsys_core::retrieval::{ExactIndex, Filter, HnswConfig, HnswIndex, ItemIndex};

    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let reg = tmp.path().join("registry");
    let cfg = small_config(tmp.path());
    let out = run(&[
        "-q",
        "train",
        "--data",
        &data,
        "--registry",
        reg.to_str().unwrap(),
        "--config",
        &cfg,
        "--gates",
        "off",
        "--item-index",
        "hnsw",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = reg.join(json(&out)["version"].as_str().unwrap());
    // Part of the version: checksummed in its manifest like the weights.
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"]["items.hnsw"].is_object(), "{manifest}");

    let model = TwoTowerModel::load(&mut std::fs::File::open(dir.join("model.bin")).unwrap()).unwrap();
    let graph = HnswIndex::open(dir.join("items.hnsw"), &HnswConfig::default()).unwrap();
    assert_eq!((graph.len(), graph.dim()), (model.num_items(), model.dim()));
    let vectors = model.item_embeddings();
    let exact = ExactIndex::new(vectors.clone(), model.dim()).unwrap();
    let (mut hits, mut total) = (0, 0);
    for q in vectors.chunks(model.dim()).step_by(37) {
        let want: Vec<u32> = exact
            .search(q, 10, &Filter::default())
            .unwrap()
            .iter()
            .map(|s| s.item)
            .collect();
        let got = graph.search(q, 10, &Filter::default()).unwrap();
        hits += got.iter().filter(|s| want.contains(&s.item)).count();
        total += want.len();
    }
    assert!(
        total > 0 && hits as f64 / total as f64 > 0.95,
        "recall@10 {hits}/{total}"
    );

    // `exact` never builds one; an unknown value is a usage error naming the flag.
    let reg2 = tmp.path().join("registry2");
    let out = run(&[
        "-q",
        "train",
        "--data",
        &data,
        "--registry",
        reg2.to_str().unwrap(),
        "--config",
        &cfg,
        "--gates",
        "off",
        "--item-index",
        "exact",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out)["version"].as_str().unwrap().to_string();
    assert!(!reg2.join(v).join("items.hnsw").exists());
    let out = run(&[
        "train",
        "--data",
        &data,
        "--registry",
        reg2.to_str().unwrap(),
        "--item-index",
        "faiss",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("item-index"));
}

#[test]
fn early_stopping_selects_the_epoch_on_validation_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let cfg = tmp.path().join("early.json");
    std::fs::write(
        &cfg,
        r#"{"embedding_dim": 64, "id_dim": 32, "side_dim": 8, "hidden_dim": 64, "epochs": 4, "batch_size": 512,
            "early_stopping_patience": 1, "validation_metric": "ndcg@20", "validation_users": 300}"#,
    )
    .unwrap();
    for protocol in ["time-split", "leave-one-out"] {
        let reg = tmp.path().join(format!("registry-{protocol}"));
        let out = run(&[
            "train",
            "--data",
            &data,
            "--registry",
            reg.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--gates",
            "off",
            "--protocol",
            protocol,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("validation ndcg@20"), "{stderr}");
        let version = json(&out)["version"].as_str().unwrap().to_string();
        let info: Value =
            serde_json::from_slice(&std::fs::read(reg.join(&version).join("data.json")).unwrap()).unwrap();
        let t = &info["training"];
        let scores = t["validation_per_epoch"].as_array().unwrap();
        let best = t["best_epoch"].as_u64().unwrap() as usize;
        assert!((1..=4).contains(&scores.len()), "{t}");
        // The best epoch has the highest score, and training stopped one epoch after it at most.
        let top = scores.iter().map(|v| v.as_f64().unwrap()).fold(f64::MIN, f64::max);
        assert_eq!(scores[best - 1].as_f64().unwrap(), top, "{t}");
        assert!(scores.len() == 4 || scores.len() == best + 1, "{t}");
        let epochs_trained = t["loss_per_epoch"].as_array().unwrap().len();
        if protocol == "time-split" {
            // The refit on the whole training period ran the chosen number of epochs.
            assert_eq!(epochs_trained, best, "{t}");
            assert!(
                stderr.contains(&format!("early stopping chose {best} epoch")),
                "{stderr}"
            );
        } else {
            assert_eq!(epochs_trained, scores.len(), "{t}");
        }
        // The version's config is the one asked for.
        let saved: Value =
            serde_json::from_slice(&std::fs::read(reg.join(&version).join("config.json")).unwrap()).unwrap();
        assert_eq!(saved["early_stopping_patience"], 1);
    }

    // A metric the evaluation does not compute is refused before any training, naming it.
    std::fs::write(&cfg, r#"{"early_stopping_patience": 1, "validation_metric": "mrr"}"#).unwrap();
    let out = run(&[
        "-q",
        "train",
        "--data",
        &data,
        "--registry",
        tmp.path().join("registry-bad").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--gates",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("validation_metric") && stderr.contains("mrr"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_model_configs_load() {
    // The JSON files under examples/ that benches and examples pass to `train --config`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("examples");
    let quick = recsys_train::train::load_model_config(&root.join("quick-train.json")).unwrap();
    assert_eq!(quick.epochs, 2);
    let ta_feng = recsys_train::train::load_model_config(&root.join("ta-feng-train.json")).unwrap();
    assert_eq!((ta_feng.epochs, ta_feng.uniform_negatives), (1, 2048));
    // Everything else keeps the defaults.
    assert_eq!(
        ta_feng.with_epochs(5).with_uniform_negatives(0),
        recsys_core::model::TwoTowerConfig::new()
    );
}
