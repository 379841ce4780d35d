//! `recsys-train simulate` and the `ctr_sim` gate of `recsys-train train`, through the binary.

mod common;

use common::cli::{dataset, json, run, small_config};
use serde_json::Value;

fn current(reg: &str) -> Value {
    let out = run(&["-q", "registry", "--registry", reg, "list"]);
    assert!(out.status.success());
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["current"] == true)
        .map(|v| v["version"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn simulate_prints_the_contract_and_ctr_sim_gates_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let reg = tmp.path().join("registry");
    let reg = reg.to_str().unwrap();
    let cfg = small_config(tmp.path());
    let train = |gates: &str| {
        run(&[
            "-q",
            "train",
            "--data",
            &data,
            "--registry",
            reg,
            "--config",
            &cfg,
            "--gates",
            gates,
        ])
    };
    let out = train("off");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v1 = json(&out)["version"].as_str().unwrap().to_string();

    // The contract: {"policy", "requests", "ctr": {"value", "ci95": [lo, hi]}, "conversion",
    // "aov", "true_ctr"}.
    let simulate = |policy: &str| {
        let out = run(&[
            "-q",
            "simulate",
            "--data",
            &data,
            "--registry",
            reg,
            "--policy",
            policy,
            "--requests",
            "600",
            "--seed",
            "4",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out)
    };
    let r = simulate("current");
    assert_eq!(r["policy"], "current");
    assert_eq!(r["requests"], 600);
    for k in ["ctr", "conversion", "aov", "revenue_per_session"] {
        let v = r[k]["value"].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
        let ci = r[k]["ci95"].as_array().unwrap();
        assert_eq!(ci.len(), 2);
        assert!(ci[0].as_f64().unwrap() <= v && v <= ci[1].as_f64().unwrap(), "{k}: {r}");
    }
    assert!(r["true_ctr"].as_f64().unwrap() > 0.0);
    assert_eq!(simulate(&v1)["model_versions"][0], v1.as_str());
    assert_eq!(simulate("popular")["policy"], "popular");
    // Same seed, same figures (timings aside).
    let figures = |mut v: Value| {
        for k in ["seconds", "requests_per_second"] {
            v[k] = Value::Null;
        }
        v
    };
    assert_eq!(figures(simulate("current")), figures(r.clone()));

    // A bad flag is the user's error (exit 2).
    let out = run(&["-q", "simulate", "--data", &data, "--registry", reg, "--requests", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // A ctr_sim gate that passes: promoted, both versions' simulated CTRs reported.
    let gates = tmp.path().join("gates-pass.json");
    std::fs::write(
        &gates,
        r#"{"min": {}, "regression_metrics": [], "ctr_sim": {"min": 0.001, "max_regression": 1.0, "requests": 400}}"#,
    )
    .unwrap();
    let out = train(gates.to_str().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = json(&out);
    assert_eq!(second["promoted"], true);
    assert!(second["ctr_sim"]["candidate"].as_f64().unwrap() > 0.001);
    assert_eq!(second["ctr_sim"]["current_version"], v1.as_str());
    assert!(second["ctr_sim"]["current"].is_number());
    let v2 = second["version"].clone();
    assert_eq!(current(reg), v2);

    // One that fails: exit status 3, the current model is kept.
    let gates = tmp.path().join("gates-fail.json");
    std::fs::write(
        &gates,
        r#"{"min": {}, "regression_metrics": [], "ctr_sim": {"min": 0.9, "requests": 400}}"#,
    )
    .unwrap();
    let out = train(gates.to_str().unwrap());
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let third = json(&out);
    assert_eq!(third["promoted"], false);
    assert!(third["gate_failure"].as_str().unwrap().contains("ctr_sim"), "{third}");
    assert_eq!(current(reg), v2);
}
