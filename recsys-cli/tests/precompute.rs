//! `recsys-train precompute` and `recsys-train store` end to end: a trained model's candidates in
//! the embedded store, sharded, checked against brute-force scoring, and the failure modes.

mod common;

use common::cli::{dataset, json, run, small_config};
use recsys_core::model::{UserContext, UserInputs};
use recsys_core::schema::EventType;
use recsys_core::store::open_store;
use recsys_train::dataset::Dataset;
use recsys_train::evaluate::{histories, load_interactions};
use recsys_train::train::{Vocabularies, load_model};
use std::collections::BTreeSet;
use std::path::Path;

/// A dataset and a registry with a promoted small model.
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

/// `recsys-train -q precompute --data DATA --registry REG --store STORE EXTRA...`.
fn precompute(data: &str, reg: &str, store: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-q", "precompute", "--data", data, "--registry", reg, "--store", store];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn sharded_precompute_fills_the_file_store_with_the_models_exact_top_items() {
    let dir = tempfile::tempdir().unwrap();
    let (data, reg) = trained(dir.path());
    let url = format!("file:{}", dir.path().join("store").display());

    // Two workers: the first leaves the version inactive, the second completes and activates it.
    let mut reports = Vec::new();
    for shard in ["0/2", "1/2"] {
        let out = precompute(&data, &reg, &url, &["--top", "40", "--similar", "10", "--shard", shard]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        reports.push(json(&out));
    }
    assert_eq!(reports[0]["activated"], false);
    assert_eq!(reports[1]["activated"], true);
    assert_eq!(reports[0]["version"], "1.0.0");
    let ds = Dataset::open(&data).unwrap();
    let users: u64 = reports.iter().map(|r| r["users"].as_u64().unwrap()).sum();
    assert_eq!(users as usize, ds.users.len(), "every user in exactly one shard");
    let items: u64 = reports.iter().map(|r| r["items"].as_u64().unwrap()).sum();
    assert_eq!(items as usize, ds.items.len());

    // Recompute a few users by brute force with the library: same top items, purchases excluded.
    let (model, _, vdir) = load_model("current", Some(Path::new(&reg))).unwrap();
    let vocab: Vocabularies = serde_json::from_slice(&std::fs::read(vdir.join("vocab.json")).unwrap()).unwrap();
    let interactions = load_interactions(&ds).unwrap();
    let as_of = interactions.last().unwrap().ts + 1;
    let hist = histories(&interactions, ds.users.len());
    let item_emb = model.item_embeddings();
    let store = open_store(&url).unwrap();
    let snap = store.open_active().unwrap().unwrap();
    let code = |v: &Option<String>, names: &[String]| {
        v.as_ref()
            .and_then(|s| names.iter().position(|n| n == s))
            .map_or(0, |p| p as u32 + 1)
    };
    let mut checked_purchasers = 0;
    for u in (0..ds.users.len()).step_by(97) {
        let ctx = UserContext {
            history: &hist[u],
            as_of,
            age: code(&ds.users.age_bucket[u], &vocab.ages),
            region: code(&ds.users.region[u], &vocab.regions),
        };
        let mut ue = vec![0.0; model.dim()];
        model
            .user_embedding(&UserInputs::build(&ctx, &model.config), &mut ue)
            .unwrap();
        let purchased: BTreeSet<u32> = hist[u]
            .iter()
            .filter(|e| e.event_type == EventType::Purchase)
            .map(|e| e.item)
            .collect();
        checked_purchasers += usize::from(!purchased.is_empty());
        let mut scored: Vec<(f32, u32)> = item_emb
            .chunks_exact(model.dim())
            .enumerate()
            .filter(|(i, _)| !purchased.contains(&(*i as u32)))
            .map(|(i, e)| (ue.iter().zip(e).map(|(a, b)| a * b).sum(), i as u32))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let got = snap.candidates(ds.users.ids.id(u as u32).unwrap()).unwrap().unwrap();
        assert_eq!(got.len(), 40);
        let got_items: Vec<u32> = got.iter().map(|s| s.item).collect();
        let want: Vec<u32> = scored.iter().take(40).map(|s| s.1).collect();
        assert_eq!(got_items[..10], want[..10], "user {u}");
        assert!(
            got_items.iter().all(|i| !purchased.contains(i)),
            "user {u} got a purchased item"
        );
        assert!((got[0].score - scored[0].0).abs() < 1e-4);
    }
    assert!(checked_purchasers > 0, "the sample should include users with purchases");

    // `store get` prints the lists with the imported ids; similar items never contain the item.
    let uid = ds.users.ids.id(5).unwrap();
    let out = run(&["store", "--store", &url, "get", "--user", uid, "--k", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    assert!(ds.items.ids.get(v["items"][0]["item_id"].as_str().unwrap()).is_some());
    let iid = ds.items.ids.id(3).unwrap();
    let sim = snap.similar(iid).unwrap().unwrap();
    assert_eq!(sim.len(), 10);
    assert!(sim.iter().all(|s| s.item != 3));
    let out = run(&["store", "--store", &url, "get", "--user", "no-such-user"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user"));
    let out = run(&["store", "--store", &url, "versions"]);
    assert_eq!(json(&out)["active"], "1.0.0");

    // The same job into the real Redis (127.0.0.1:6379, started by .ci/run) gives the same lists.
    let redis = format!("redis://127.0.0.1:6379/0#tsr-test-precompute-{}", std::process::id());
    let out = precompute(&data, &reg, &redis, &["--top", "40", "--similar", "10", "--ttl", "600"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["activated"], true);
    let rsnap = open_store(&redis).unwrap().open_active().unwrap().unwrap();
    assert_eq!(rsnap.meta().items, snap.meta().items);
    for u in (0..ds.users.len()).step_by(131) {
        let id = ds.users.ids.id(u as u32).unwrap();
        assert_eq!(rsnap.candidates(id).unwrap(), snap.candidates(id).unwrap(), "user {id}");
    }
    assert_eq!(rsnap.similar(iid).unwrap(), snap.similar(iid).unwrap());

    // A small catalogue is scanned exactly by default; `--index ivf` asks the inverted file
    // (69 lists for 300 items), here scanning 8 lists per user: approximate lists, same rules.
    assert!(reports.iter().all(|r| r["index"] == "exact"), "{reports:?}");
    let ivf_url = format!("file:{}", dir.path().join("store-ivf").display());
    let ivf = ["--top", "40", "--similar", "10", "--index", "ivf", "--ivf-probes", "8"];
    let out = precompute(&data, &reg, &ivf_url, &ivf);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["index"], "ivf");
    let isnap = open_store(&ivf_url).unwrap().open_active().unwrap().unwrap();
    let (mut hits, mut total, mut same_first) = (0usize, 0usize, 0usize);
    for (u, events) in hist.iter().enumerate() {
        let id = ds.users.ids.id(u as u32).unwrap();
        let (exact, approx) = (
            snap.candidates(id).unwrap().unwrap(),
            isnap.candidates(id).unwrap().unwrap(),
        );
        assert_eq!(approx.len(), 40, "user {id}: k results while k items pass");
        let purchased: BTreeSet<u32> = events
            .iter()
            .filter(|e| e.event_type == EventType::Purchase)
            .map(|e| e.item)
            .collect();
        assert!(approx.iter().all(|s| !purchased.contains(&s.item)), "user {id}");
        assert!(approx.windows(2).all(|w| w[0].score >= w[1].score), "user {id}");
        hits += approx.iter().filter(|s| exact.iter().any(|e| e.item == s.item)).count();
        total += exact.len();
        same_first += usize::from(approx[0].item == exact[0].item);
    }
    let recall = hits as f64 / total as f64;
    assert!(
        recall > 0.6 && recall < 1.0,
        "ivf recall@40 {recall}: approximate, and close"
    );
    assert!(
        same_first * 10 > ds.users.len() * 9,
        "best item kept for {same_first} users"
    );
    assert_eq!(isnap.similar(iid).unwrap().unwrap().len(), 10);
    let out = precompute(&data, &reg, &ivf_url, &["--index", "hnsw"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--index"));
}

#[test]
fn bad_arguments_and_an_unreachable_store_fail_clearly_and_keep_the_active_version() {
    let dir = tempfile::tempdir().unwrap();
    let (data, reg) = trained(dir.path());
    let url = format!("file:{}", dir.path().join("store").display());
    let ok = precompute(&data, &reg, &url, &["--top", "20"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    for (store, args, code, needle) in [
        ("ftp://x", &[][..], 2, "ftp://x"),
        (url.as_str(), &["--shard", "2/2"], 2, "2/2"),
        (url.as_str(), &["--top", "0"], 2, "top"),
        (url.as_str(), &["--model", "9.9.9"], 2, "9.9.9"),
        ("redis://127.0.0.1:1", &[], 1, "redis"),
    ] {
        let out = precompute(&data, &reg, store, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The store still serves the version written before the failures.
    let store = open_store(&url).unwrap();
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    assert_eq!(store.versions().unwrap(), ["1.0.0"]);

    // A registry without a current model is a user error.
    let empty = dir.path().join("empty-reg");
    std::fs::create_dir_all(&empty).unwrap();
    let out = precompute(&data, empty.to_str().unwrap(), &url, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
