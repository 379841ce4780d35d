//! The model registry (publish, verify, promote, rollback, prune, concurrent readers) and the
//! validation gates.

use recsys_core::Error as CoreError;
use recsys_train::Error;
use recsys_train::gates::Gates;
use recsys_train::registry::{CURRENT, MANIFEST, Registry};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Fills a fresh staging directory with files whose content names `tag`.
fn stage(parent: &Path, tag: &str) -> PathBuf {
    let dir = parent.join(format!("staging-{tag}"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("model.bin"), format!("weights of {tag}").repeat(100)).unwrap();
    fs::write(dir.join("config.json"), format!("{{\"version\": \"{tag}\"}}")).unwrap();
    dir
}

fn metrics(auc: f64, ndcg: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([("auc".to_string(), auc), ("ndcg@20".to_string(), ndcg)])
}

/// A registry in a fresh temporary directory (the guard keeps it alive).
fn registry() -> (tempfile::TempDir, Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::open(tmp.path().join("reg")).unwrap();
    (tmp, reg)
}

/// Publishes `n` versions (1.0.0 ... 1.0.n-1) with automatic version numbers.
fn publish_n(tmp: &Path, reg: &Registry, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let staging = stage(tmp, &format!("m{i}"));
            reg.publish(
                &staging,
                None,
                &metrics(0.8 + i as f64 / 100.0, 0.7),
                serde_json::json!({"i": i}),
            )
            .unwrap()
        })
        .collect()
}

fn versions(reg: &Registry) -> Vec<String> {
    reg.list().unwrap().into_iter().map(|s| s.version).collect()
}

#[test]
fn publish_list_verify() {
    let (tmp, reg) = registry();
    assert_eq!(reg.next_version().unwrap(), "1.0.0");
    assert!(reg.list().unwrap().is_empty());
    assert_eq!(reg.current().unwrap(), None);

    let staging = stage(tmp.path(), "a");
    let info = serde_json::json!({"model": "two-tower", "dataset": "synthetic"});
    let v = reg.publish(&staging, None, &metrics(0.85, 0.7), info.clone()).unwrap();
    assert_eq!(v, "1.0.0");
    // The staging directory is left as it was.
    assert!(staging.join("model.bin").is_file());

    let dir = reg.path_of(&v).unwrap();
    assert_eq!(dir, reg.root().join("1.0.0"));
    assert_eq!(
        fs::read_to_string(dir.join("model.bin")).unwrap(),
        "weights of a".repeat(100)
    );
    assert!(dir.join(MANIFEST).is_file());

    let m = reg.verify(&v).unwrap();
    assert_eq!(m, reg.manifest(&v).unwrap());
    assert_eq!(m.version, "1.0.0");
    assert_eq!(m.files.keys().collect::<Vec<_>>(), ["config.json", "model.bin"]);
    assert_eq!(m.files["model.bin"].bytes, 1200);
    assert_eq!(m.files["model.bin"].sha256.len(), 64);
    assert_eq!(m.metrics, metrics(0.85, 0.7));
    assert_eq!(m.info, info);
    assert!(m.created_at_ms > 1_600_000_000_000);

    let list = reg.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].version, "1.0.0");
    assert_eq!(list[0].metrics, metrics(0.85, 0.7));
    assert!(!list[0].current);

    // Unknown versions are argument errors naming the version; non-versions are refused.
    match reg.manifest("9.9.9") {
        Err(e @ CoreError::InvalidInput { .. }) => assert!(e.to_string().contains("9.9.9"), "{e}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(matches!(reg.verify("../x"), Err(CoreError::InvalidInput { .. })));
}

#[test]
fn next_version_bumps_patch_and_versions_sort_semantically() {
    let (tmp, reg) = registry();
    assert_eq!(publish_n(tmp.path(), &reg, 3), ["1.0.0", "1.0.1", "1.0.2"]);
    assert_eq!(reg.next_version().unwrap(), "1.0.3");

    // Explicit versions; a `v` prefix is accepted and canonicalised.
    let v = reg.publish(
        &stage(tmp.path(), "x"),
        Some("v1.0.10"),
        &metrics(0.9, 0.7),
        serde_json::Value::Null,
    );
    assert_eq!(v.unwrap(), "1.0.10");
    assert_eq!(reg.next_version().unwrap(), "1.0.11");
    reg.publish(
        &stage(tmp.path(), "y"),
        Some("1.0.9"),
        &BTreeMap::new(),
        serde_json::Value::Null,
    )
    .unwrap();
    // Semver order, not text order (1.0.10 after 1.0.9).
    assert_eq!(versions(&reg), ["1.0.0", "1.0.1", "1.0.2", "1.0.9", "1.0.10"]);
    assert_eq!(reg.next_version().unwrap(), "1.0.11");
    reg.publish(
        &stage(tmp.path(), "z"),
        Some("2.0.0"),
        &BTreeMap::new(),
        serde_json::Value::Null,
    )
    .unwrap();
    assert_eq!(reg.next_version().unwrap(), "2.0.1");
}

#[test]
fn publish_refuses_existing_and_bad_versions() {
    let (tmp, reg) = registry();
    let v = reg.publish(
        &stage(tmp.path(), "a"),
        Some("1.2.3"),
        &metrics(0.9, 0.7),
        serde_json::Value::Null,
    );
    assert_eq!(v.unwrap(), "1.2.3");
    let before = fs::read(reg.path_of("1.2.3").unwrap().join("model.bin")).unwrap();

    let again = reg.publish(
        &stage(tmp.path(), "b"),
        Some("1.2.3"),
        &metrics(0.9, 0.7),
        serde_json::Value::Null,
    );
    match again {
        Err(e @ CoreError::InvalidInput { .. }) => assert!(e.to_string().contains("1.2.3"), "{e}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    // The published version is untouched and no temporary directory is left behind.
    assert_eq!(
        fs::read(reg.path_of("1.2.3").unwrap().join("model.bin")).unwrap(),
        before
    );
    reg.verify("1.2.3").unwrap();
    let names: Vec<_> = fs::read_dir(reg.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["1.2.3"]);

    for bad in ["../x", "latest", "1.2", "/tmp/x"] {
        let r = reg.publish(
            &stage(tmp.path(), "c"),
            Some(bad),
            &BTreeMap::new(),
            serde_json::Value::Null,
        );
        assert!(matches!(r, Err(CoreError::InvalidInput { .. })), "{bad}: {r:?}");
    }
    assert!(!tmp.path().join("x").exists());

    // Non-finite metrics, nested directories and a reserved file name are refused.
    let nan = BTreeMap::from([("auc".to_string(), f64::NAN)]);
    assert!(
        reg.publish(&stage(tmp.path(), "d"), None, &nan, serde_json::Value::Null)
            .is_err()
    );
    let nested = stage(tmp.path(), "e");
    fs::create_dir(nested.join("sub")).unwrap();
    assert!(
        reg.publish(&nested, None, &BTreeMap::new(), serde_json::Value::Null)
            .is_err()
    );
    let reserved = stage(tmp.path(), "f");
    fs::write(reserved.join(MANIFEST), "{}").unwrap();
    assert!(
        reg.publish(&reserved, None, &BTreeMap::new(), serde_json::Value::Null)
            .is_err()
    );
    assert_eq!(versions(&reg), ["1.2.3"]);
}

#[test]
fn promote_and_rollback() {
    let (tmp, reg) = registry();
    let v = publish_n(tmp.path(), &reg, 3);

    reg.promote(&v[0]).unwrap();
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.0"));
    reg.promote(&v[1]).unwrap();
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.1"));
    reg.promote(&v[2]).unwrap();
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.2"));
    let state = reg.current_state().unwrap().unwrap();
    assert_eq!(state.history, ["1.0.0", "1.0.1"]);
    let flags: Vec<bool> = reg.list().unwrap().iter().map(|s| s.current).collect();
    assert_eq!(flags, [false, false, true]);

    // CURRENT.json is the documented JSON.
    let raw: serde_json::Value = serde_json::from_slice(&fs::read(reg.root().join(CURRENT)).unwrap()).unwrap();
    assert_eq!(raw["version"], "1.0.2");
    assert_eq!(raw["history"], serde_json::json!(["1.0.0", "1.0.1"]));
    assert!(raw["promoted_at_ms"].as_i64().unwrap() > 0);

    // Promoting the current version again changes nothing.
    reg.promote("1.0.2").unwrap();
    assert_eq!(reg.current_state().unwrap().unwrap().history, ["1.0.0", "1.0.1"]);

    assert_eq!(reg.rollback().unwrap(), "1.0.1");
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.1"));
    assert_eq!(reg.rollback().unwrap(), "1.0.0");
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.0"));
    // Nothing left to roll back to: an error, current unchanged.
    assert!(reg.rollback().is_err());
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.0"));

    // Promoting an unknown version is refused.
    assert!(matches!(reg.promote("7.7.7"), Err(CoreError::InvalidInput { .. })));
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.0"));
}

#[test]
fn rollback_without_promotion_is_an_error() {
    let (tmp, reg) = registry();
    publish_n(tmp.path(), &reg, 1);
    assert!(reg.rollback().is_err());
    assert_eq!(reg.current().unwrap(), None);
}

#[test]
fn rollback_skips_corrupt_history_entries() {
    let (tmp, reg) = registry();
    let v = publish_n(tmp.path(), &reg, 3);
    for x in &v {
        reg.promote(x).unwrap();
    }
    // 1.0.1, the newest history entry, is corrupt: rollback goes to 1.0.0.
    fs::write(reg.path_of(&v[1]).unwrap().join("model.bin"), "garbage").unwrap();
    assert_eq!(reg.rollback().unwrap(), "1.0.0");
    assert_eq!(reg.current_state().unwrap().unwrap().history, Vec::<String>::new());
}

/// Asserts that promoting `version` fails naming `file` and `what`, and that CURRENT.json is unchanged.
fn assert_promote_refused(reg: &Registry, version: &str, file: &str, what: &str) {
    let current_path = reg.root().join(CURRENT);
    let before = fs::read(&current_path).unwrap();
    let err = reg.promote(version).unwrap_err();
    assert!(matches!(err, CoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(file) && msg.contains(what), "{msg}");
    assert!(reg.verify(version).is_err());
    assert_eq!(fs::read(&current_path).unwrap(), before, "CURRENT.json changed");
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.0"));
}

#[test]
fn promote_refuses_corrupt_artifacts() {
    let (tmp, reg) = registry();
    let v = publish_n(tmp.path(), &reg, 4);
    reg.promote(&v[0]).unwrap();

    // One flipped byte, same size.
    let path = reg.path_of(&v[1]).unwrap().join("model.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[17] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    assert_promote_refused(&reg, &v[1], "model.bin", "checksum mismatch");

    // A deleted file.
    fs::remove_file(reg.path_of(&v[2]).unwrap().join("config.json")).unwrap();
    assert_promote_refused(&reg, &v[2], "config.json", "missing");

    // A file the manifest does not list.
    fs::write(reg.path_of(&v[3]).unwrap().join("extra.bin"), "sneaky").unwrap();
    assert_promote_refused(&reg, &v[3], "extra.bin", "not listed");

    // The intact current version still verifies and a good one still promotes.
    reg.verify(&v[0]).unwrap();
    fs::remove_file(reg.path_of(&v[3]).unwrap().join("extra.bin")).unwrap();
    reg.promote(&v[3]).unwrap();
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.3"));
}

#[test]
fn prune_keeps_newest_plus_current() {
    let (tmp, reg) = registry();
    let v = publish_n(tmp.path(), &reg, 6);
    reg.promote(&v[0]).unwrap();
    reg.promote(&v[1]).unwrap();
    reg.promote(&v[2]).unwrap();
    reg.promote(&v[1]).unwrap(); // current 1.0.1, history [1.0.0, 1.0.2]
    assert_eq!(reg.current_state().unwrap().unwrap().history, ["1.0.0", "1.0.2"]);

    // Nothing to do when everything fits.
    assert!(reg.prune(10).unwrap().is_empty());
    assert_eq!(versions(&reg).len(), 6);

    let deleted = reg.prune(2).unwrap();
    assert_eq!(deleted, ["1.0.0", "1.0.2", "1.0.3"]);
    assert_eq!(versions(&reg), ["1.0.1", "1.0.4", "1.0.5"]);
    for d in &deleted {
        assert!(!reg.path_of(d).unwrap().exists());
    }
    let state = reg.current_state().unwrap().unwrap();
    assert_eq!(state.version, "1.0.1");
    assert!(state.history.is_empty(), "{:?}", state.history);
    for s in versions(&reg) {
        reg.verify(&s).unwrap();
    }

    // The current version is the newest: exactly `keep` remain.
    reg.promote("1.0.5").unwrap();
    assert_eq!(reg.prune(1).unwrap(), ["1.0.1", "1.0.4"]);
    assert_eq!(versions(&reg), ["1.0.5"]);
    // keep = 0 still never deletes the current version.
    assert!(reg.prune(0).unwrap().is_empty());
    assert_eq!(versions(&reg), ["1.0.5"]);
    assert_eq!(reg.current().unwrap().as_deref(), Some("1.0.5"));
}

#[test]
fn interrupted_publish_is_invisible_and_pruned() {
    let (tmp, reg) = registry();
    publish_n(tmp.path(), &reg, 1);
    // What a publish killed before its rename leaves: a complete-looking version in a .tmp-* directory.
    let leftover = reg.root().join(".tmp-deadbeef");
    fs::create_dir(&leftover).unwrap();
    fs::write(leftover.join("model.bin"), "half").unwrap();
    fs::write(leftover.join(MANIFEST), "{\"version\": \"1.0.1\"").unwrap();
    // And a half-written CURRENT.json temporary.
    let stale_current = reg.root().join(format!(".{CURRENT}.tmp-1-abc"));
    fs::write(&stale_current, "{").unwrap();

    assert_eq!(versions(&reg), ["1.0.0"]);
    assert_eq!(reg.next_version().unwrap(), "1.0.1");
    assert_eq!(reg.current().unwrap(), None);

    assert!(reg.prune(10).unwrap().is_empty());
    assert!(!leftover.exists());
    assert!(!stale_current.exists());
    assert_eq!(versions(&reg), ["1.0.0"]);
    reg.verify("1.0.0").unwrap();
}

#[test]
fn readers_never_see_partial_versions() {
    const ITERATIONS: usize = 200;
    let (tmp, reg) = registry();
    let staging_root = tmp.path().join("staging");
    let done = AtomicBool::new(false);

    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for i in 0..ITERATIONS {
                    let version = format!("1.0.{i}");
                    let dir = staging_root.join(&version);
                    fs::create_dir_all(&dir).unwrap();
                    // Several files, one of them large enough to take several writes.
                    fs::write(dir.join("a.txt"), &version).unwrap();
                    fs::write(dir.join("b.txt"), format!("{version}\n").repeat(20_000)).unwrap();
                    fs::write(dir.join("c.txt"), &version).unwrap();
                    let v = reg
                        .publish(&dir, None, &metrics(0.9, 0.7), serde_json::Value::Null)
                        .unwrap();
                    assert_eq!(v, version);
                    reg.promote(&v).unwrap();
                }
            }));
            done.store(true, Ordering::SeqCst);
            if let Err(p) = result {
                std::panic::resume_unwind(p);
            }
        });

        let reader = s.spawn(|| {
            let mut seen = 0usize;
            let mut distinct = std::collections::BTreeSet::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                if let Some(v) = reg.current().unwrap() {
                    let dir = reg.path_of(&v).unwrap();
                    for name in ["a.txt", "c.txt"] {
                        let content = fs::read_to_string(dir.join(name))
                            .unwrap_or_else(|e| panic!("current {v}: {name} unreadable: {e}"));
                        assert_eq!(content, v, "current {v}: {name} names another version");
                    }
                    let big = fs::read_to_string(dir.join("b.txt")).unwrap();
                    assert_eq!(big.len(), (v.len() + 1) * 20_000, "current {v}: b.txt is partial");
                    assert!(big.lines().all(|l| l == v), "current {v}: b.txt names another version");
                    let m = reg.manifest(&v).unwrap();
                    assert_eq!(m.version, v);
                    assert_eq!(m.files.len(), 3);
                    reg.verify(&v)
                        .unwrap_or_else(|e| panic!("current {v} does not verify: {e}"));
                    seen += 1;
                    distinct.insert(v);
                }
                // A listed version is complete even before it is promoted.
                let list = reg.list().unwrap_or_else(|e| panic!("list failed: {e}"));
                if let Some(newest) = list.last() {
                    let content = fs::read_to_string(reg.path_of(&newest.version).unwrap().join("c.txt"))
                        .unwrap_or_else(|e| panic!("listed {}: c.txt unreadable: {e}", newest.version));
                    assert_eq!(content, newest.version);
                }
                if finished {
                    break;
                }
            }
            (seen, distinct.len())
        });

        writer.join().unwrap();
        let (seen, distinct) = reader.join().unwrap();
        assert!(seen > 0 && distinct > 0);
    });

    assert_eq!(reg.current().unwrap(), Some(format!("1.0.{}", ITERATIONS - 1)));
    assert_eq!(reg.list().unwrap().len(), ITERATIONS);
    let names: Vec<_> = fs::read_dir(reg.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left behind: {names:?}");
}

// ---- gates ----

fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn gate_failure(r: recsys_train::Result<()>) -> (String, f64, f64, String) {
    match r {
        Err(Error::GateFailed {
            metric,
            value,
            threshold,
            reason,
        }) => (metric, value, threshold, reason),
        other => panic!("expected GateFailed, got {other:?}"),
    }
}

#[test]
fn gates_minimums() {
    let g = Gates::default();
    assert_eq!(g.min, m(&[("auc", 0.80), ("ndcg@20", 0.65)]));
    g.check(None, &m(&[("auc", 0.85), ("ndcg@20", 0.70)]), None).unwrap();
    g.check(None, &m(&[("auc", 0.80), ("ndcg@20", 0.65)]), None).unwrap();

    let err = g
        .check(None, &m(&[("auc", 0.85), ("ndcg@20", 0.41)]), None)
        .unwrap_err();
    assert!(err.is_user_error());
    assert_eq!(
        err.to_string(),
        "validation gate failed: ndcg@20 = 0.4100 < 0.6500 (minimum)"
    );
    let (metric, value, threshold, reason) = gate_failure(Err(err));
    assert_eq!(
        (metric.as_str(), value, threshold, reason.as_str()),
        ("ndcg@20", 0.41, 0.65, "minimum")
    );

    let (metric, ..) = gate_failure(g.check(None, &m(&[("auc", 0.79), ("ndcg@20", 0.70)]), None));
    assert_eq!(metric, "auc");

    // Missing metric.
    let (metric, _, threshold, reason) = gate_failure(g.check(None, &m(&[("auc", 0.9)]), None));
    assert_eq!(
        (metric.as_str(), threshold, reason.as_str()),
        ("ndcg@20", 0.65, "missing")
    );
}

#[test]
fn gates_dataset_overrides() {
    let mut g = Gates::default();
    g.overrides
        .insert("retailrocket".into(), m(&[("ndcg@20", 0.05), ("recall@20", 0.10)]));
    let weak = m(&[("auc", 0.85), ("ndcg@20", 0.08), ("recall@20", 0.2)]);

    // The synthetic thresholds apply without a dataset and to other datasets...
    assert_eq!(gate_failure(g.check(None, &weak, None)).0, "ndcg@20");
    assert_eq!(gate_failure(g.check(Some("synthetic"), &weak, None)).0, "ndcg@20");
    // ...the override replaces ndcg@20 and adds recall@20, leaving auc's default.
    g.check(Some("retailrocket"), &weak, None).unwrap();
    let (metric, _, threshold, _) = gate_failure(g.check(
        Some("retailrocket"),
        &m(&[("auc", 0.85), ("ndcg@20", 0.08), ("recall@20", 0.05)]),
        None,
    ));
    assert_eq!((metric.as_str(), threshold), ("recall@20", 0.10));
    assert_eq!(
        gate_failure(g.check(
            Some("retailrocket"),
            &m(&[("auc", 0.5), ("ndcg@20", 0.08), ("recall@20", 0.2)]),
            None
        ))
        .0,
        "auc"
    );
}

#[test]
fn gates_regression_against_current() {
    let g = Gates::default();
    let current = m(&[("auc", 0.9), ("ndcg@20", 0.75), ("recall@20", 0.40)]);

    // Within the margin (0.01): passes, also on the boundary.
    g.check(
        None,
        &m(&[("auc", 0.9), ("ndcg@20", 0.745), ("recall@20", 0.395)]),
        Some(&current),
    )
    .unwrap();
    g.check(
        None,
        &m(&[("auc", 0.9), ("ndcg@20", 0.74), ("recall@20", 0.39)]),
        Some(&current),
    )
    .unwrap();
    // Better: passes.
    g.check(
        None,
        &m(&[("auc", 0.95), ("ndcg@20", 0.8), ("recall@20", 0.5)]),
        Some(&current),
    )
    .unwrap();

    // recall@20 drops by 0.02: fails, naming recall@20 (checked before ndcg@20).
    let (metric, value, threshold, reason) = gate_failure(g.check(
        None,
        &m(&[("auc", 0.9), ("ndcg@20", 0.70), ("recall@20", 0.38)]),
        Some(&current),
    ));
    assert_eq!((metric.as_str(), value), ("recall@20", 0.38));
    assert!((threshold - 0.39).abs() < 1e-9);
    assert!(reason.contains("regression"), "{reason}");
    // Without a current model the same metrics pass.
    g.check(None, &m(&[("auc", 0.9), ("ndcg@20", 0.70), ("recall@20", 0.38)]), None)
        .unwrap();

    // ndcg@20 drops by 0.02 (still above its minimum): fails.
    let (metric, ..) = gate_failure(g.check(
        None,
        &m(&[("auc", 0.9), ("ndcg@20", 0.73), ("recall@20", 0.40)]),
        Some(&current),
    ));
    assert_eq!(metric, "ndcg@20");

    // Minimums come before regressions.
    let (metric, _, _, reason) = gate_failure(g.check(
        None,
        &m(&[("auc", 0.5), ("ndcg@20", 0.1), ("recall@20", 0.1)]),
        Some(&current),
    ));
    assert_eq!((metric.as_str(), reason.as_str()), ("auc", "minimum"));

    // A regression metric the new model lacks fails as missing; one the current model lacks is skipped.
    let (metric, _, _, reason) = gate_failure(g.check(None, &m(&[("auc", 0.9), ("ndcg@20", 0.75)]), Some(&current)));
    assert_eq!((metric.as_str(), reason.as_str()), ("recall@20", "missing"));
    g.check(
        None,
        &m(&[("auc", 0.9), ("ndcg@20", 0.75)]),
        Some(&m(&[("ndcg@20", 0.75)])),
    )
    .unwrap();

    // A wider margin lets the 0.02 drop through.
    let wide = Gates {
        max_regression: 0.05,
        ..Gates::default()
    };
    wide.check(
        None,
        &m(&[("auc", 0.9), ("ndcg@20", 0.73), ("recall@20", 0.38)]),
        Some(&current),
    )
    .unwrap();
}

#[test]
fn gates_load() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.json");
    fs::write(&empty, "{}").unwrap();
    assert_eq!(Gates::load(&empty).unwrap(), Gates::default());

    let partial = tmp.path().join("partial.json");
    fs::write(
        &partial,
        r#"{"overrides": {"retailrocket": {"ndcg@20": 0.05}}, "max_regression": 0.02}"#,
    )
    .unwrap();
    let g = Gates::load(&partial).unwrap();
    assert_eq!(g.min, Gates::default().min);
    assert_eq!(g.regression_metrics, ["recall@20", "ndcg@20"]);
    assert_eq!(g.max_regression, 0.02);
    assert_eq!(g.overrides["retailrocket"]["ndcg@20"], 0.05);

    // Round trip.
    let full = tmp.path().join("full.json");
    fs::write(&full, serde_json::to_string(&g).unwrap()).unwrap();
    assert_eq!(Gates::load(&full).unwrap(), g);

    let unknown = tmp.path().join("unknown.json");
    fs::write(&unknown, r#"{"min": {"auc": 0.7}, "max_regresion": 0.02}"#).unwrap();
    let err = Gates::load(&unknown).unwrap_err();
    assert!(matches!(err, Error::InvalidData { .. }), "{err:?}");
    assert!(err.to_string().contains("max_regresion"), "{err}");

    let negative = tmp.path().join("negative.json");
    fs::write(&negative, r#"{"max_regression": -0.1}"#).unwrap();
    assert!(Gates::load(&negative).is_err());
    assert!(Gates::load(&tmp.path().join("absent.json")).is_err());
}

#[test]
fn gates_from_json_follow_the_file_rules_and_name_the_argument() {
    assert_eq!(Gates::from_json(serde_json::json!({})).unwrap(), Gates::default());
    let g = Gates::from_json(serde_json::json!({"min": {"auc": 0.7}, "max_regression": 0.02})).unwrap();
    assert_eq!(g.min, m(&[("auc", 0.7)]));
    assert_eq!(g.regression_metrics, Gates::default().regression_metrics);

    for bad in [
        serde_json::json!({"max_regresion": 0.02}),
        serde_json::json!({"max_regression": -0.1}),
        serde_json::json!([1, 2]),
    ] {
        let err = Gates::from_json(bad.clone()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { name, .. } if name == "gates"),
            "{bad}: {err:?}"
        );
    }
}

/// Sets the modification time of `path` (a file or a directory) to `hours` ago.
fn age(path: &Path, hours: u64) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(hours * 3_600);
    fs::File::open(path).unwrap().set_modified(then).unwrap();
}

#[test]
fn a_publish_sweeps_what_killed_trainers_left() {
    let (tmp, reg) = registry();
    let root = tmp.path().join("reg");
    // A killed trainer's staging directory and a killed publish, two hours old, and a concurrent
    // trainer's staging directory being filled right now.
    for name in [".staging-dead", ".tmp-dead", ".staging-busy"] {
        fs::create_dir_all(root.join(name)).unwrap();
        fs::write(root.join(name).join("model.bin"), vec![7u8; 4096]).unwrap();
    }
    age(&root.join(".staging-dead"), 2);
    age(&root.join(".tmp-dead"), 2);
    publish_n(tmp.path(), &reg, 1);
    let mut left: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    left.sort();
    assert_eq!(left, [".staging-busy"]);
    assert_eq!(versions(&reg), ["1.0.0"]);
}
