//! The canary end to end, in seconds: two `Recommender` replicas share one store (the fixture's
//! `file:` store, or the Redis server on 127.0.0.1:6379), a driver sends traffic through both and
//! posts clicks and purchases back with a planted rate per variant; the replicas' background
//! evaluations move the shared state. A better candidate reaches 100%, a worse one is rolled
//! back; both replicas end on the same state and no request fails on the way.
//!
//! The `simulated_*` tests drive the canary with the click simulator instead of planted rates:
//! two real model versions, a trained one and a planted bad one (trained with learning rates of
//! 1e-9, so its embeddings stay random), and the simulated users' clicks decide.

mod common;

use common::fixture;
use recsys_serve::canary::controller::{Action, Phase};
use recsys_serve::config::{CanaryConfig, CanaryStep, ServeConfig};
use recsys_serve::online::EventIn;
use recsys_serve::{RecQuery, Recommender, RecommenderOptions};
use std::time::{Duration, Instant};

/// A salt of its own per test and run: the state key includes it, and it reshuffles users.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t-{what}-{}-{nanos}", std::process::id())
}

fn canary_config(candidate: &str, salt: &str) -> ServeConfig {
    let mut canary = CanaryConfig::new(candidate);
    canary.salt = salt.to_string();
    canary.evaluate_every_seconds = 0.05;
    canary.steps = vec![
        CanaryStep {
            percent: 5.0,
            min_exposures: 40,
            min_duration_seconds: 0.2,
        },
        CanaryStep {
            percent: 25.0,
            min_exposures: 80,
            min_duration_seconds: 0.2,
        },
        CanaryStep {
            percent: 100.0,
            min_exposures: 0,
            min_duration_seconds: 0.0,
        },
    ];
    canary.guardrails.min_requests = 40;
    // Debug builds on a shared machine: latency is not what these tests are about.
    canary.guardrails.max_p99_ms = 60_000.0;
    ServeConfig {
        canary: Some(canary),
        ..ServeConfig::default()
    }
}

fn replicas(config: &ServeConfig, store: &str) -> [Recommender; 2] {
    let f = fixture();
    let open = || {
        Recommender::open(RecommenderOptions {
            registry: f.registry.clone(),
            data: Some(f.data.clone()),
            store: Some(store.to_string()),
            config: config.clone(),
            ..RecommenderOptions::new(&f.registry)
        })
        .unwrap()
    };
    [open(), open()]
}

/// A deterministic uniform draw in [0, 1) from a few integers.
fn draw(parts: &[u64]) -> f64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Click probability per shown item and purchase probability per response, by variant.
struct Planted {
    control: (f64, f64),
    candidate: (f64, f64),
}

/// Sends traffic through both replicas (users alternate between them) until the canary is
/// finished on both; returns the final phase. Every request must succeed.
fn drive(reps: &[Recommender; 2], planted: &Planted) -> Phase {
    let users = 1_500u64;
    let started = Instant::now();
    let mut round = 0u64;
    loop {
        for u in 0..users {
            let user = format!("U{u:07}");
            let rep = &reps[(u % 2) as usize];
            let out = rep
                .recommend(
                    &user,
                    &RecQuery {
                        k: Some(10),
                        ..RecQuery::default()
                    },
                )
                .unwrap_or_else(|e| panic!("a request failed during the canary: {e}"));
            let (p_click, p_buy) = if out.variant == "candidate" {
                planted.candidate
            } else {
                planted.control
            };
            let mut events = Vec::new();
            for (pos, item) in out.items.iter().enumerate() {
                if draw(&[round, u, pos as u64, 1]) < p_click {
                    events.push(event(&user, &item.item_id, "click"));
                }
            }
            if let Some(first) = out.items.first()
                && draw(&[round, u, 2]) < p_buy
            {
                events.push(event(&user, &first.item_id, "purchase"));
            }
            if !events.is_empty() {
                reps[((u + round) % 2) as usize].ingest(&events).unwrap();
            }
            if u % 100 == 99 {
                let phases: Vec<Phase> = reps
                    .iter()
                    .map(|r| r.canary().unwrap().report().unwrap().state.phase)
                    .collect();
                if phases.iter().all(|p| *p != Phase::Running) {
                    return phases[0];
                }
            }
        }
        round += 1;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the canary did not finish: {:?}",
            reps[0].canary().unwrap().report().unwrap()
        );
    }
}

fn event(user: &str, item: &str, kind: &str) -> EventIn {
    EventIn::new(user, item, kind)
}

fn wait_same_state(reps: &[Recommender; 2]) {
    // The other replica reads the state at its next evaluation (every 50 ms).
    for _ in 0..200 {
        let a = reps[0].canary().unwrap().report().unwrap().state;
        let b = reps[1].canary().unwrap().report().unwrap().state;
        if a == b && reps[0].canary().unwrap().percent() == reps[1].canary().unwrap().percent() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the replicas disagree");
}

fn better_candidate_reaches_100(store: &str) {
    let f = fixture();
    let config = canary_config(&f.versions.0, &unique("better"));
    let reps = replicas(&config, store);
    assert_eq!(reps[0].canary().unwrap().percent(), 5.0);
    let phase = drive(
        &reps,
        &Planted {
            control: (0.03, 0.02),
            candidate: (0.08, 0.08),
        },
    );
    assert_eq!(phase, Phase::Promoted);
    wait_same_state(&reps);
    for r in &reps {
        let report = r.canary().unwrap().report().unwrap();
        let actions: Vec<Action> = report.state.history.iter().map(|d| d.action).collect();
        assert_eq!(actions, [Action::Advance, Action::Promote], "{report:?}");
        assert_eq!((report.state.step, report.state.percent), (2, 100.0));
        assert_eq!(r.status().unwrap().candidate_percent, 100.0);
        assert_eq!(r.variant_of("U0000001"), "candidate");
        let out = r.recommend("U0000003", &RecQuery::default()).unwrap();
        assert_eq!(out.model_version, f.versions.0);
        let metrics = r.metrics().encode();
        assert!(metrics.contains("recsys_canary_percent 100"), "{metrics}");
        assert!(metrics.contains("recsys_canary_step 2"), "{metrics}");
    }
    // The figures that decided are kept: the first step saw the candidate's higher CTR.
    let report = reps[1].canary().unwrap().report().unwrap();
    let first = &report.state.history[0].figures;
    assert!(first.candidate.counts.exposures >= 40);
    assert!(first.candidate.ctr.unwrap() > first.control.ctr.unwrap(), "{first:?}");
    let decided: f64 = ["advance", "promote"]
        .iter()
        .map(|a| reps.iter().map(|r| decisions(&r.metrics().encode(), a)).sum::<f64>())
        .sum();
    assert_eq!(decided, 2.0, "each decision is applied by exactly one replica");
}

fn decisions(metrics: &str, action: &str) -> f64 {
    let needle = format!("recsys_canary_decisions_total{{action=\"{action}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn worse_candidate_is_rolled_back(store: &str) {
    let f = fixture();
    let config = canary_config(&f.versions.0, &unique("worse"));
    let reps = replicas(&config, store);
    let phase = drive(
        &reps,
        &Planted {
            control: (0.06, 0.03),
            candidate: (0.005, 0.03),
        },
    );
    assert_eq!(phase, Phase::RolledBack);
    wait_same_state(&reps);
    for r in &reps {
        let report = r.canary().unwrap().report().unwrap();
        let last = report.state.history.last().unwrap();
        assert_eq!(last.action, Action::RollBack, "{report:?}");
        assert!(last.reason.contains("CTR"), "{}", last.reason);
        assert!(last.figures.ctr.as_ref().unwrap().worse);
        assert!(!report.state.history.iter().any(|d| d.action == Action::Promote));
        assert_eq!(report.state.percent, 0.0);
        assert_eq!(r.status().unwrap().candidate_percent, 0.0);
        // Everyone is back on control, and served.
        for u in 0..50 {
            let user = format!("U{u:07}");
            assert_eq!(r.variant_of(&user), "control");
            let out = r.recommend(&user, &RecQuery::default()).unwrap();
            assert_eq!(out.model_version, f.versions.1);
        }
        assert!(r.metrics().encode().contains("recsys_canary_percent 0"));
    }
}

#[test]
fn file_store_better_candidate_reaches_100_percent() {
    better_candidate_reaches_100(&fixture().store);
}

#[test]
fn file_store_worse_candidate_is_rolled_back() {
    worse_candidate_is_rolled_back(&fixture().store);
}

/// A copy of the fixture's registry with a planted bad version trained into it (learning rates
/// 1e-9: the towers stay at their random start, so it ranks at random); returns the registry
/// and the bad version. The bad version is `current` after training.
fn registry_with_bad_version(root: &std::path::Path) -> (std::path::PathBuf, String) {
    use recsys_train::evaluate::SplitOptions;
    use recsys_train::progress::Progress;
    use recsys_train::train::{BackendKind, ItemIndexKind, TrainOptions, train_and_register};
    let registry = common::copy_registry(root);
    let mut config = common::model_config(9);
    config.epochs = 1;
    config.learning_rate = 1e-9;
    config.sparse_learning_rate = 1e-9;
    let out = train_and_register(&TrainOptions {
        data: fixture().data.clone(),
        registry: registry.clone(),
        config,
        backend: BackendKind::Cpu,
        gates: None,
        split: SplitOptions::default(),
        item_index: ItemIndexKind::Auto,
        tune: None,
        progress: Progress::quiet(),
    })
    .unwrap();
    (registry, out.version)
}

/// Runs simulated traffic (1,500 requests per round, a new seed each round) until the canary
/// is no longer running; returns the final report of the canary.
fn simulate_canary(registry: &std::path::Path, candidate: &str, salt: &str) -> recsys_serve::canary::CanaryReport {
    use recsys_serve::simulate::{SimulateOptions, simulate};
    let mut config = canary_config(candidate, salt);
    let canary = config.canary.as_mut().unwrap();
    canary.steps[0].min_exposures = 300;
    canary.steps[1].min_exposures = 300;
    canary.guardrails.min_requests = 150;
    let started = Instant::now();
    for round in 1.. {
        let mut o = SimulateOptions::new(&fixture().data, registry);
        o.config = config.clone();
        o.requests = 1_500;
        o.seed = round;
        let report = simulate(&o).unwrap();
        let c = report.canary.expect("a run with a canary reports it");
        if c.state.phase != Phase::Running {
            return c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the canary did not finish: {c:?}"
        );
    }
    unreachable!()
}

#[test]
fn simulated_better_candidate_reaches_100_percent() {
    let tmp = tempfile::tempdir().unwrap();
    // The bad version is current; the trained one is the candidate.
    let (registry, bad) = registry_with_bad_version(tmp.path());
    let good = fixture().versions.1.clone();
    assert_eq!(
        recsys_train::registry::Registry::open(&registry)
            .unwrap()
            .current()
            .unwrap(),
        Some(bad)
    );
    let report = simulate_canary(&registry, &good, &unique("sim-better"));
    assert_eq!(report.state.phase, Phase::Promoted, "{report:?}");
    let actions: Vec<Action> = report.state.history.iter().map(|d| d.action).collect();
    assert_eq!(actions, [Action::Advance, Action::Promote], "{report:?}");
    // The simulated users clicked more on the trained model's recommendations.
    let first = &report.state.history[0].figures;
    assert!(first.candidate.ctr.unwrap() > first.control.ctr.unwrap(), "{first:?}");
}

#[test]
fn simulated_bad_candidate_is_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (registry, bad) = registry_with_bad_version(tmp.path());
    // The trained version is current again; the bad one is the candidate.
    let good = fixture().versions.1.clone();
    recsys_train::registry::Registry::open(&registry)
        .unwrap()
        .promote(&good)
        .unwrap();
    let report = simulate_canary(&registry, &bad, &unique("sim-bad"));
    assert_eq!(report.state.phase, Phase::RolledBack, "{report:?}");
    let last = report.state.history.last().unwrap();
    assert_eq!(last.action, Action::RollBack, "{report:?}");
    assert!(last.figures.ctr.as_ref().unwrap().worse, "{last:?}");
    assert!(!report.state.history.iter().any(|d| d.action == Action::Promote));
    assert_eq!(report.state.percent, 0.0);
}

/// The Redis variants: the canary's keys live under a namespace of their own, deleted at the end.
mod redis_store {
    use super::*;

    const SERVER: &str = "redis://127.0.0.1:6379";

    struct Namespace(String);

    impl Drop for Namespace {
        fn drop(&mut self) {
            let Ok(mut con) = redis::Client::open(SERVER).and_then(|c| c.get_connection()) else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query(&mut con)
                .unwrap_or_default();
            for k in keys {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(k).query(&mut con);
            }
        }
    }

    fn namespace(what: &str) -> (Namespace, String) {
        let ns = unique(what).replace('-', ".");
        let url = format!("{SERVER}#{ns}");
        (Namespace(ns), url)
    }

    #[test]
    fn redis_better_candidate_reaches_100_percent() {
        let (ns, url) = namespace("better");
        better_candidate_reaches_100(&url);
        let mut con = redis::Client::open(SERVER).unwrap().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:canary:*", ns.0))
            .query(&mut con)
            .unwrap();
        assert!(keys.iter().any(|k| k.ends_with(".state")), "{keys:?}");
    }

    #[test]
    fn redis_worse_candidate_is_rolled_back() {
        let (_ns, url) = namespace("worse");
        worse_candidate_is_rolled_back(&url);
    }
}

/// `GET /admin/canary`: the state, config and current evaluation; 404 without a canary; the
/// admin token is required.
#[tokio::test]
async fn admin_canary_route() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use recsys_serve::http::{AppState, router};
    use tower::ServiceExt;

    async fn get(rec: &Recommender, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let app = router(AppState::new(rec.clone(), Some("tok".into())));
        let mut req = Request::builder().uri("/admin/canary");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    let f = fixture();
    let [rec, _] = replicas(&canary_config(&f.versions.0, &unique("route")), &f.store);
    let (status, v) = get(&rec, Some("tok")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"]["phase"], "running");
    assert_eq!(v["state"]["percent"], 5.0);
    assert_eq!(v["config"]["candidate"], f.versions.0.as_str());
    assert_eq!(v["evaluation"]["action"], "hold", "{v}");
    assert!(v["shared"].as_str().unwrap().starts_with("files in"), "{v}");
    assert_eq!(get(&rec, None).await.0, StatusCode::UNAUTHORIZED);
    let plain = Recommender::open(RecommenderOptions {
        registry: f.registry.clone(),
        data: Some(f.data.clone()),
        store: Some(f.store.clone()),
        config: ServeConfig::default(),
        ..RecommenderOptions::new(&f.registry)
    })
    .unwrap();
    assert_eq!(get(&plain, Some("tok")).await.0, StatusCode::NOT_FOUND);
}
