//! The click and purchase simulator on the shared synthetic fixture: determinism, intervals, the
//! personalised model against popularity, the true CTR against the measured one, the logs.

mod common;

use common::fixture;
use recsys_serve::simulate::{SimPolicy, SimulateOptions, SimulateReport, simulate};

fn options(requests: u64, seed: u64) -> SimulateOptions {
    let f = fixture();
    let mut o = SimulateOptions::new(&f.data, &f.registry);
    o.requests = requests;
    o.seed = seed;
    o
}

/// The report without its timings.
fn figures(r: &SimulateReport) -> SimulateReport {
    SimulateReport {
        seconds: 0.0,
        requests_per_second: 0.0,
        ..r.clone()
    }
}

#[test]
fn same_seed_same_figures_whatever_the_threads() {
    let mut a = options(1_500, 11);
    a.threads = Some(2);
    let mut b = options(1_500, 11);
    b.threads = Some(1);
    let (ra, rb) = (simulate(&a).unwrap(), simulate(&b).unwrap());
    assert_eq!(figures(&ra), figures(&rb));
    assert_eq!(ra.requests, 1_500);
    assert_eq!(ra.impressions, 15_000, "10 slots per response");
    assert!(ra.clicks > 0, "{ra:?}");
    let rc = simulate(&options(1_500, 12)).unwrap();
    assert_ne!(figures(&ra), figures(&rc), "another seed, other traffic");
}

#[test]
fn intervals_contain_their_estimate_and_narrow_with_traffic() {
    let small = simulate(&options(1_000, 5)).unwrap();
    let large = simulate(&options(8_000, 5)).unwrap();
    for r in [&small, &large] {
        for e in [&r.ctr, &r.conversion, &r.revenue_per_session] {
            assert!(e.ci95[0] <= e.value && e.value <= e.ci95[1], "{r:?}");
            assert!(e.ci95[1] > e.ci95[0], "{r:?}");
        }
        assert!(r.aov.ci95[0] <= r.aov.value && r.aov.value <= r.aov.ci95[1]);
        assert!((r.ctr.value - r.clicks as f64 / r.impressions as f64).abs() < 1e-12);
        assert!((r.conversion.value - r.orders as f64 / r.sessions as f64).abs() < 1e-12);
        if r.orders > 0 {
            assert!((r.aov.value - r.revenue / r.orders as f64).abs() < 1e-9);
        }
    }
    let width = |r: &SimulateReport| r.ctr.ci95[1] - r.ctr.ci95[0];
    // 8x the traffic: about 1/sqrt(8) = 0.35 of the width.
    let ratio = width(&large) / width(&small);
    assert!((0.2..0.55).contains(&ratio), "width ratio {ratio}");
}

#[test]
fn the_personalised_model_beats_popularity_and_the_true_ctr_is_covered() {
    let model = simulate(&options(6_000, 21)).unwrap();
    let mut p = options(6_000, 21);
    p.policy = SimPolicy::Popular;
    let popular = simulate(&p).unwrap();
    assert_eq!(popular.policy, "popular");
    assert!(
        model.ctr.ci95[0] > popular.ctr.ci95[1],
        "model {:?} vs popular {:?}",
        model.ctr,
        popular.ctr
    );
    assert!(model.true_ctr > popular.true_ctr);
    for r in [&model, &popular] {
        assert!(
            r.ctr.ci95[0] <= r.true_ctr && r.true_ctr <= r.ctr.ci95[1],
            "true ctr {} outside {:?}",
            r.true_ctr,
            r.ctr
        );
    }
}

#[test]
fn a_version_serves_and_logs_are_written() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(400, 3);
    o.policy = SimPolicy::Version(f.versions.0.clone());
    o.exposure_log = Some(tmp.path().join("exposures"));
    o.event_log = Some(tmp.path().join("events"));
    let r = simulate(&o).unwrap();
    assert_eq!(r.model_versions, vec![f.versions.0.clone()]);
    let mut records = 0;
    recsys_core::exposure::for_each_exposure(&tmp.path().join("exposures"), |e| {
        assert_eq!(e.model_version, f.versions.0);
        assert_eq!(e.items.len(), 10);
        records += 1;
        Ok(())
    })
    .unwrap();
    // One record per response computed (the exposure log v2 will log response-cache hits too,
    // then this is exactly 400).
    assert!((1..=400).contains(&records), "{records} records");
    if r.clicks > 0 {
        assert!(std::fs::read_dir(tmp.path().join("events")).unwrap().count() > 0);
    }
    o.policy = SimPolicy::Version("9.9.9".into());
    assert!(simulate(&o).unwrap_err().is_user_error());
    let mut bad = options(0, 1);
    bad.k = 10;
    assert!(simulate(&bad).unwrap_err().is_user_error());
}
