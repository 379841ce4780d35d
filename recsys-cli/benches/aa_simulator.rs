//! A/A tests on the click simulator's traffic: how often `ab-report` calls a difference between
//! two arms that serve the same policy (its false-positive rate, which should be 5% at the 95%
//! level), and how often its sample-ratio check raises a false alarm.
//!
//! The simulation (`recsys-train simulate`'s code, the real `Recommender`, in process) serves
//! `--requests` requests (default 200,000) with the registry's current model and writes the
//! exposure log and the events, as a deployment would. [`collect`] (what `ab-report` reads them
//! with) attributes clicks and purchases to each user. Then each of `--runs` A/A tests (default
//! 1,000) splits the users 50/50 with its own layer salt ([`Layer`], the serving assignment) and
//! runs [`analyze`] (what `ab-report` prints): a metric is a false positive when its lift's 95%
//! interval excludes 0. Re-randomising the same traffic is a randomisation test: every split is
//! an A/A test of this population, so the share of significant splits is the false-positive
//! rate, with binomial error `sqrt(0.05 · 0.95 / runs)` (0.7 points at 1,000 runs).
//!
//! With `--days D` (default 14) the traffic is D simulations of `requests / D` requests each
//! (one per "day", seeds of their own, the same users coming back), and every A/A test is looked
//! at after each day on the data so far: the share of tests whose CTR lift is called at any look,
//! with the fixed 95% interval (peeking) and with `ab-report --sequential`'s always-valid interval
//! (which should stay ≤ 5%). The fixed-horizon figures are those of the last look.
//!
//! Prints one JSON object on stdout.
//!
//! ```text
//! cargo bench --workspace --bench aa_simulator -- --data DIR --registry DIR \
//!     [--requests 200000] [--days 14] [--runs 1000] [--seed 1]
//! ```

mod common;

use common::arg;
use recsys_core::ab::Layer;
use recsys_serve::simulate::{SimulateOptions, simulate};
use recsys_train::abtest::{
    AbOptions, AnalysisOptions, DEFAULT_SEQUENTIAL_TAU, UserOutcome, VariantAccumulator, analyze, collect,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;

/// The metrics whose lifts are tested.
const METRICS: [&str; 4] = ["ctr", "conversion", "aov", "revenue_per_user"];

/// Links (or copies) every file of `from` into `to` under a name prefixed with `tag`.
fn gather(from: &std::path::Path, to: &std::path::Path, tag: &str) {
    std::fs::create_dir_all(to).expect("look directory");
    let Ok(entries) = std::fs::read_dir(from) else { return };
    for e in entries.flatten() {
        let dest = to.join(format!("{tag}-{}", e.file_name().to_string_lossy()));
        if std::fs::hard_link(e.path(), &dest).is_err() {
            std::fs::copy(e.path(), &dest).expect("copy a log file");
        }
    }
}

fn main() {
    let data: String = arg("--data", String::new());
    let registry: String = arg("--registry", String::new());
    assert!(
        !data.is_empty() && !registry.is_empty(),
        "usage: aa_simulator --data DIR --registry DIR [--requests N] [--days D] [--runs N] [--seed S]"
    );
    let requests: u64 = arg("--requests", 200_000);
    let days: u64 = arg("--days", 14).max(1);
    let runs: u64 = arg("--runs", 1_000);
    let seed: u64 = arg("--seed", 1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let started = Instant::now();
    let mut clicks = 0u64;
    let mut impressions = 0u64;
    for day in 0..days {
        let mut o = SimulateOptions::new(&data, &registry);
        o.requests = requests / days;
        o.seed = seed * 1_000 + day;
        o.exposure_log = Some(dir.path().join(format!("day{day:02}/exposures")));
        o.event_log = Some(dir.path().join(format!("day{day:02}/events")));
        let sim = simulate(&o).expect("simulate");
        clicks += sim.clicks;
        impressions += sim.impressions;
    }
    let sim_seconds = started.elapsed().as_secs_f64();
    // Look d sees days 0..=d.
    let mut looks: Vec<Vec<(String, UserOutcome)>> = Vec::new();
    let mut last_attribution = None;
    for look in 0..days {
        let at = dir.path().join(format!("look{look:02}"));
        for day in 0..=look {
            let from = dir.path().join(format!("day{day:02}"));
            gather(&from.join("exposures"), &at.join("exposures"), &format!("d{day:02}"));
            gather(&from.join("events"), &at.join("events"), &format!("d{day:02}"));
        }
        let c = collect(&at.join("exposures"), &at.join("events"), &AbOptions::default()).expect("collect");
        let mut users = Vec::new();
        for (variant, outcomes) in &c.outcomes {
            users.extend(c.user_ids[variant].iter().cloned().zip(outcomes.iter().copied()));
        }
        looks.push(users);
        last_attribution = Some(c.attribution);
    }
    let attribution = last_attribution.expect("at least one look");
    let last = looks.last().expect("at least one look");

    let started = Instant::now();
    let mut flagged: BTreeMap<&str, u64> = METRICS.iter().map(|m| (*m, 0)).collect();
    let mut srm_flagged = 0u64;
    let mut peeking = 0u64;
    let mut sequential = 0u64;
    let opts = AnalysisOptions {
        sequential_tau: Some(DEFAULT_SEQUENTIAL_TAU),
        ..AnalysisOptions::default()
    };
    let excludes_zero = |ci: [f64; 2]| ci[0] > 0.0 || ci[1] < 0.0;
    for run in 0..runs {
        let layer = Layer::new(format!("aa-{seed}-{run}"), &[("control", 0.5), ("candidate", 0.5)]).expect("layer");
        let mut peeked = false;
        let mut seq = false;
        for (i, users) in looks.iter().enumerate() {
            let mut acc: BTreeMap<String, VariantAccumulator> = BTreeMap::new();
            for (id, u) in users {
                let v = layer.assign(id).expect("every user is in a 50/50 layer");
                acc.entry(v.to_string()).or_default().push(u);
            }
            if acc.len() < 2 {
                continue;
            }
            let report = analyze(&acc, &opts).expect("analyze");
            let lifts = &report.variants["candidate"].lift;
            peeked |= excludes_zero(lifts["ctr"].ci95);
            seq |= lifts["ctr"].sequential.is_some_and(|s| excludes_zero(s.ci95));
            if i + 1 == looks.len() {
                for m in METRICS {
                    if excludes_zero(lifts[m].ci95) {
                        *flagged.get_mut(m).expect("metric") += 1;
                    }
                }
                srm_flagged += u64::from(report.srm.flagged);
            }
        }
        peeking += u64::from(peeked);
        sequential += u64::from(seq);
    }
    let rate = |n: u64| n as f64 / runs as f64;
    let se = (0.05f64 * 0.95 / runs as f64).sqrt();
    let rates: serde_json::Map<String, serde_json::Value> = flagged
        .iter()
        .map(|(m, n)| (m.to_string(), json!({"false_positive_rate": rate(*n), "flagged": n})))
        .collect();
    println!(
        "{}",
        json!({
            "figure": "aa_on_simulator",
            "data": data,
            "requests": requests,
            "days": days,
            "users": last.len(),
            "exposure_records": attribution.exposure_records,
            "clicks_by_request_id": attribution.clicks_by_request_id,
            "simulated_ctr": clicks as f64 / impressions.max(1) as f64,
            "runs": runs,
            "metrics": rates,
            "expected": {"rate": 0.05, "binomial_se": se},
            "srm_false_alarm_rate": rate(srm_flagged),
            "ctr_any_look_fixed_interval": rate(peeking),
            "ctr_any_look_sequential": rate(sequential),
            "simulate_seconds": sim_seconds,
            "analysis_seconds": started.elapsed().as_secs_f64(),
        })
    );
}
