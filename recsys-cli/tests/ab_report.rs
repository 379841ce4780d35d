//! `recsys-train ab-report`: the contract shape of its JSON, its flags and its bad-input errors.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the `recsys-train` binary.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recsys-train"))
        .args(args)
        .output()
        .expect("binary runs")
}

const MIN: i64 = 60_000;

/// An exposure log directory and an event CSV file: `control_users` and `candidate_users` users,
/// each shown four items twice; user `i` clicks the first item of its first response when
/// `i % 3 == 0` (by request id when `i % 2 == 0`) and buys it when `i % 5 == 0`.
fn logs(dir: &Path, control_users: usize, candidate_users: usize) -> (String, String, String) {
    let exp = dir.join("exposures");
    std::fs::create_dir_all(&exp).unwrap();
    let mut lines = String::new();
    let mut events = String::from("user_id,item_id,event_type,timestamp,session_id,price,quantity,request_id\n");
    let mut pre = String::from("user_id,item_id,event_type,timestamp,session_id,price,quantity\n");
    for i in 0..control_users + candidate_users {
        let variant = if i < control_users { "control" } else { "candidate" };
        for r in 0..2 {
            let ts = 1_760_000_000_000 + (i as i64) * MIN + r * 40 * MIN;
            let items: Vec<String> = (0..4)
                .map(|k| {
                    format!(
                        r#"{{"item_id":"P{k}","position":{},"score":1.0,"propensity":1.0}}"#,
                        k + 1
                    )
                })
                .collect();
            writeln!(
                lines,
                r#"{{"v":2,"request_id":"u{i}r{r}","ts":{ts},"user_id":"U{i}","variant":"{variant}","model_version":"1","policy":"two-tower","items":[{}]}}"#,
                items.join(",")
            )
            .unwrap();
        }
        let t0 = 1_760_000_000_000 + (i as i64) * MIN;
        if i % 3 == 0 {
            let rid = if i % 2 == 0 { format!("u{i}r0") } else { String::new() };
            writeln!(events, "U{i},P0,click,{},,,,{rid}", t0 + MIN).unwrap();
        }
        if i % 5 == 0 {
            writeln!(events, "U{i},P0,purchase,{},s{i},25.5,2,", t0 + 2 * MIN).unwrap();
        }
        writeln!(events, "U{i},P1,view,{},,,,", t0 + 3 * MIN).unwrap();
        writeln!(pre, "U{i},P0,view,{},,,", t0 - 100 * 24 * 60 * MIN).unwrap();
        if i % 3 == 0 {
            writeln!(pre, "U{i},P0,click,{},,,", t0 - 100 * 24 * 60 * MIN + MIN).unwrap();
        }
    }
    std::fs::write(exp.join("exposures-2025-10-09.jsonl"), lines).unwrap();
    let ev = dir.join("events.csv");
    std::fs::write(&ev, events).unwrap();
    let pre_path = dir.join("pre.csv");
    std::fs::write(&pre_path, pre).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (s(&exp), s(&ev), s(&pre_path))
}

fn run_json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

fn is_interval(v: &Value) -> bool {
    v["value"].is_number()
        && v["ci95"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(Value::is_number))
}

#[test]
fn ab_report_prints_the_contract_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, ev, pre) = logs(tmp.path(), 60, 60);
    let v = run_json(&[
        "-q",
        "ab-report",
        "--exposures",
        &exp,
        "--events",
        &ev,
        "--window-minutes",
        "30",
        "--expected",
        "control=0.5,candidate=0.5",
        "--sequential",
        "--cuped-pre",
        &pre,
    ]);
    for name in ["control", "candidate"] {
        let x = &v["variants"][name];
        assert_eq!(x["users"], 60, "{x}");
        assert_eq!(x["exposures"], 120);
        assert_eq!(x["impressions"], 480);
        assert!(x["clicks"].as_u64().unwrap() > 0);
        for m in ["ctr", "conversion", "aov", "revenue_per_user"] {
            assert!(is_interval(&x[m]), "{name}.{m}: {}", x[m]);
            assert!(x["lift"][m]["value"].is_number(), "{name}.lift.{m}: {}", x["lift"]);
            assert!(x["lift"][m]["ci95"].is_array());
            assert!(x["lift"][m]["sequential"]["ci95"].is_array());
        }
        assert!(is_interval(&x["cuped"]["ctr"]), "{x}");
    }
    // Users 0, 3, 6, ... of 0..60 click P0 (20 users); users 5, 10, 20, ... (multiples of 5 but
    // not of 15: 8 users) buy it without a click, which counts as its click: 28 over 480.
    assert_eq!(v["variants"]["control"]["clicks"], 28);
    assert_eq!(v["variants"]["control"]["ctr"]["value"], 28.0 / 480.0);
    // Users 0, 5, ... buy: 12 of 60 → 20%; one order of 51.0 each.
    assert_eq!(v["variants"]["control"]["conversion"]["value"], 0.2);
    assert_eq!(v["variants"]["control"]["aov"]["value"], 51.0);
    assert!(v["attribution"]["clicks_by_request_id"].as_u64().unwrap() > 0);
    assert!(v["srm"]["p_value"].is_number());
    assert_eq!(v["srm"]["flagged"], false);
    assert_eq!(v["guardrails"]["pass"], true);
    assert_eq!(
        v["guardrails"]["variants"]["candidate"]["conversion"]["threshold"],
        0.03
    );
    assert!(v["sequential"]["tau"].is_number() && v["cuped"]["theta"]["ctr"].is_number());
}

#[test]
fn ab_report_flags_srm_and_keeps_the_old_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, ev, _) = logs(tmp.path(), 900, 100);
    // The old command line: a directory of events, no new flags.
    let evdir = tmp.path().join("events");
    std::fs::create_dir(&evdir).unwrap();
    std::fs::copy(&ev, evdir.join("events-2025-10-09.csv")).unwrap();
    let v = run_json(&[
        "-q",
        "ab-report",
        "--exposures",
        &exp,
        "--events",
        evdir.to_str().unwrap(),
    ]);
    assert_eq!(v["srm"]["flagged"], true, "{}", v["srm"]);
    assert!(v["variants"]["candidate"]["lift"]["ctr"]["sequential"].is_null());
    // The split the experiment was configured with is not a mismatch.
    let v = run_json(&[
        "-q",
        "ab-report",
        "--exposures",
        &exp,
        "--events",
        &ev,
        "--expected",
        "control=0.9,candidate=0.1",
    ]);
    assert_eq!(v["srm"]["flagged"], false, "{}", v["srm"]);
}

#[test]
fn ab_report_bad_input_exits_2_naming_file_row_column_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, ev, _) = logs(tmp.path(), 3, 3);
    let mut text = std::fs::read_to_string(&ev).unwrap();
    text.push_str("U1,P0,purchase,1760000000000,,twelve,1,\n");
    std::fs::write(&ev, &text).unwrap();
    let out = run(&["-q", "ab-report", "--exposures", &exp, "--events", &ev]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let rows = text.lines().count() - 1;
    assert!(
        err.contains("events.csv")
            && err.contains(&format!("row {rows}"))
            && err.contains("price")
            && err.contains("twelve"),
        "{err}"
    );
    let out = run(&[
        "-q",
        "ab-report",
        "--exposures",
        &exp,
        "--events",
        &ev,
        "--expected",
        "control=half",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--expected"));
}
