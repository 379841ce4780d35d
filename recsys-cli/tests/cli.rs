//! The `recsys-train` command line: its flags, exit codes and quiet JSON output.

mod common;

use common::*;
use std::path::Path;

const GENERATED_MAP: &str =
    "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page";

fn run(args: &[&str]) -> (i32, String, String) {
    let o = common::cli::run(args);
    (
        o.status.code().expect("exit code"),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn cli_help_names_the_contract_flags() {
    let contract: [(&str, &[&str]); 4] = [
        (
            "generate",
            &["--out", "--users", "--items", "--events-per-day", "--days", "--seed"],
        ),
        (
            "import",
            &[
                "--events",
                "--items",
                "--users",
                "--map",
                "--ts-format",
                "--event-type",
                "--on-error",
                "--out",
            ],
        ),
        ("features", &["--data", "--as-of", "--out"]),
        ("info", &["--data"]),
    ];
    for (cmd, flags) in contract {
        let (code, stdout, stderr) = run(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd} --help: {stderr}");
        for flag in flags {
            assert!(
                stdout
                    .split(|c: char| !(c.is_alphanumeric() || c == '-'))
                    .any(|w| w == *flag),
                "`{cmd} --help` does not name {flag}:\n{stdout}"
            );
        }
    }
    // An unknown subcommand is a usage error, not success.
    let (code, _, _) = run(&["frobnicate"]);
    assert_ne!(code, 0);
}

#[test]
fn cli_import_reports_bad_rows_and_skips_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = write_file(
        tmp.path(),
        "clicks.csv",
        "user,item,ts,event_type\n\
         u1,i1,2024-02-01T10:00:00Z,view\n\
         u2,i2,2024-02-01T10:05:00Z,wishlist\n\
         u1,i2,2024-02-01T10:06:00Z,click\n",
    );
    let out = tmp.path().join("data");
    let (csv_s, out_s) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let (code, stdout, stderr) = run(&[
        "import",
        "--events",
        csv_s,
        "--map",
        "user=user,item=item,ts=ts",
        "--out",
        out_s,
    ]);
    assert_eq!(code, 2, "a bad row is a user error (exit 2); stderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for needle in [csv_s, "row 2", "event_type", "wishlist"] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    assert!(!out.join("_manifest.json").exists());

    let (code, stdout, stderr) = run(&[
        "import",
        "--events",
        csv_s,
        "--map",
        "user=user,item=item,ts=ts",
        "--on-error",
        "skip",
        "--out",
        out_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["skipped"], serde_json::json!({"unknown_event_type": 1}));
    assert_eq!(v["rows_read"], 3);
    assert_eq!(v["rows_imported"], 2);
    assert_eq!(v["events"], 2);
    assert_consistent(&out);
}

/// Runs a quiet command and returns its stdout parsed as the one JSON object it must be.
fn run_quiet_json(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    assert!(stderr.is_empty(), "{args:?} printed on stderr under --quiet: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{args:?}: stdout is not one line: {stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {stdout}"));
    assert!(v.is_object(), "{args:?}: {v}");
    v
}

#[test]
fn cli_generate_import_features_pipeline_quiet_json() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (raw, data, feats) = (p("raw"), p("data"), p("features"));
    let g = run_quiet_json(&[
        "generate",
        "--quiet",
        "--out",
        &raw,
        "--users",
        "60",
        "--items",
        "40",
        "--events-per-day",
        "800",
        "--days",
        "2",
        "--seed",
        "5",
    ]);
    let events = g["events"].as_u64().unwrap();
    assert!(events >= 1600, "{g}");
    let i = run_quiet_json(&[
        "--quiet",
        "import",
        "--events",
        &format!("{raw}/events"),
        "--items",
        &format!("{raw}/items.parquet"),
        "--users",
        &format!("{raw}/users.parquet"),
        "--map",
        GENERATED_MAP,
        "--event-type",
        "event_type",
        "--out",
        &data,
    ]);
    assert_eq!(i["events"].as_u64(), Some(events), "{i}");
    assert_eq!(i["rows_imported"].as_u64(), Some(events));
    assert_eq!(i["users"], 60);
    assert_eq!(i["items"], 40);
    let f = run_quiet_json(&["features", "-q", "--data", &data, "--as-of", "end", "--out", &feats]);
    assert_eq!(
        f["events_used"].as_u64(),
        Some(events),
        "as_of end uses every event: {f}"
    );
    assert_eq!(f["users"], 60);
    assert!(Path::new(&feats).join("user_features.parquet").is_file());
    assert!(Path::new(&feats).join("item_features.parquet").is_file());
    let info = run_quiet_json(&["info", "--quiet", "--data", &data]);
    assert_eq!(info["num_events"].as_u64(), Some(events));
    assert_eq!(info["partitions"].as_object().map(|m| m.len()), Some(2));
}
