//! Checks `ab-report`'s statistics by simulation: A/A false-positive rates (fixed horizon, peeking
//! every day with fixed intervals, and with the always-valid intervals of `--sequential`), power
//! against the ADR's +15% CTR, CUPED's variance reduction, and the sample-ratio check's false
//! alarms and its detection of a 50.5/49.5 split among 1M users.
//!
//! ```text
//! cargo bench -p recsys-train --bench ab_stats [-- --runs 1000 --users 10000 --seed 1]
//! ```
//!
//! Every analysis goes through [`recsys_train::abtest::analyze`], the code `ab-report` runs. The
//! traffic comes from [`synthetic_traffic`]: users with different click propensities (log-normal
//! around the ADR's 2.5% CTR), different activity (daily visit probability from 2% to 60%,
//! log-uniform; 1–4 responses of 10 items per visit), purchase propensities around 1.5% per
//! visit and log-normal order values around $65, each day for 14 days, plus a 14-day pre-period
//! of the same users for CUPED. It returns per-user, per-day [`UserOutcome`]s: the click
//! simulator's output can replace it as is.
//!
//! Prints one JSON object per figure on stdout.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use recsys_core::ab::Layer;
use recsys_core::stats;
use recsys_train::abtest::{AnalysisOptions, PrePeriod, UserOutcome, VariantAccumulator, analyze};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;

/// Days of the experiment (looks of the sequential check).
const DAYS: usize = 14;

/// One simulated user: their variant (0 control, 1 candidate), their outcome of each day and
/// their pre-period.
struct SimUser {
    variant: usize,
    days: [UserOutcome; DAYS],
    pre: PrePeriod,
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(1e-300);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A Binomial(n, p) draw by inversion (n small, p small: a few steps).
fn binomial(rng: &mut impl Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    let q = 1.0 - p;
    let mut f = q.powi(n as i32);
    let mut cdf = f;
    let u: f64 = rng.random();
    let mut k = 0;
    while u > cdf && k < n {
        f *= (n - k) as f64 / (k + 1) as f64 * p / q;
        k += 1;
        cdf += f;
    }
    k
}

/// One day (or period) of a user's traffic: (exposures, impressions, clicks, purchases, orders,
/// revenue).
fn day(rng: &mut impl Rng, visit: f64, ctr: f64, buy: f64) -> UserOutcome {
    let mut o = UserOutcome::default();
    if rng.random::<f64>() >= visit {
        return o;
    }
    let responses = rng.random_range(1..=4u64);
    o.exposures = responses;
    o.impressions = responses * 10;
    o.clicks = binomial(rng, o.impressions, ctr);
    if rng.random::<f64>() < buy {
        o.purchases = rng.random_range(1..=3u64);
        o.orders = 1;
        // Log-normal order value, mean $65: exp(μ + σ²/2) = 65 with σ = 0.6.
        o.revenue = (65f64.ln() - 0.18 + 0.6 * normal(rng)).exp();
    }
    o
}

/// Simulated traffic of `users` users split 50/50, the candidate's CTR multiplied by
/// `1 + ctr_lift` (0 for an A/A test).
fn synthetic_traffic(rng: &mut impl Rng, users: usize, ctr_lift: f64) -> Vec<SimUser> {
    (0..users)
        .map(|_| {
            let variant = usize::from(rng.random::<bool>());
            // Heterogeneous users: click propensity log-normal around 2.5% (σ = 0.8), activity
            // log-uniform on [0.02, 0.6], purchase propensity log-normal around 1.5% per visit.
            let ctr = (0.025 * (0.8 * normal(rng) - 0.32).exp()).min(0.5);
            let visit = (0.02f64.ln() + rng.random::<f64>() * (0.6f64 / 0.02).ln()).exp();
            let buy = (0.015 * (0.7 * normal(rng) - 0.245).exp()).min(0.5);
            let mut pre = PrePeriod::default();
            for _ in 0..DAYS {
                let d = day(rng, visit, ctr, buy);
                pre.clicks += d.clicks as f64;
                pre.events += d.impressions as f64;
                pre.revenue += d.revenue;
            }
            let treated_ctr = if variant == 1 { ctr * (1.0 + ctr_lift) } else { ctr };
            let days = std::array::from_fn(|_| day(rng, visit, treated_ctr, buy));
            SimUser { variant, days, pre }
        })
        .collect()
}

/// The accumulators after `looks` days (users with at least one exposure by then).
fn accumulate(users: &[SimUser], looks: usize, cuped: bool) -> BTreeMap<String, VariantAccumulator> {
    let mut acc = [VariantAccumulator::default(), VariantAccumulator::default()];
    for u in users {
        let mut t = UserOutcome::default();
        for d in &u.days[..looks] {
            t.exposures += d.exposures;
            t.impressions += d.impressions;
            t.clicks += d.clicks;
            t.purchases += d.purchases;
            t.orders += d.orders;
            t.revenue += d.revenue;
        }
        if t.exposures == 0 {
            continue;
        }
        t.pre = cuped.then_some(u.pre);
        acc[u.variant].push(&t);
    }
    let [c, k] = acc;
    BTreeMap::from([("control".to_string(), c), ("candidate".to_string(), k)])
}

fn excludes_zero(ci: [f64; 2]) -> bool {
    ci[0] > 0.0 || ci[1] < 0.0
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = arg(&args, "--runs", 1000) as usize;
    let users = arg(&args, "--users", 10_000) as usize;
    let seed = arg(&args, "--seed", 1);
    let opts = AnalysisOptions {
        sequential_tau: Some(recsys_train::abtest::DEFAULT_SEQUENTIAL_TAU),
        ..AnalysisOptions::default()
    };
    let metrics = ["ctr", "conversion", "aov", "revenue_per_user"];

    // A/A: fixed horizon, peeking, sequential, naive binomial CTR, CUPED.
    let t = Instant::now();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut fixed: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut naive, mut peek, mut seq, mut seq_any, mut cuped_fp) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut var_raw, mut var_cuped, mut srm_alarms) = (0.0, 0.0, 0u64);
    let mut mean = [0.0f64; 4];
    for _ in 0..runs {
        let sim = synthetic_traffic(&mut rng, users, 0.0);
        let (mut peeked, mut seq_hit, mut seq_any_hit) = (false, false, false);
        for look in 1..=DAYS {
            let acc = accumulate(&sim, look, look == DAYS);
            let r = analyze(&acc, &opts).expect("analysis");
            let k = &r.variants["candidate"];
            peeked |= excludes_zero(k.lift["ctr"].ci95);
            let s = k.lift["ctr"].sequential.expect("sequential");
            seq_hit |= excludes_zero(s.ci95);
            seq_any_hit |= metrics
                .iter()
                .any(|m| k.lift[*m].sequential.is_some_and(|s| excludes_zero(s.ci95)));
            if look == DAYS {
                for m in metrics {
                    *fixed.entry(m).or_default() += u64::from(excludes_zero(k.lift[m].ci95));
                }
                let c = &r.variants["control"];
                for (i, m) in [c.ctr.value, c.conversion.value, c.aov.value, c.revenue_per_user.value]
                    .iter()
                    .enumerate()
                {
                    mean[i] += m / runs as f64;
                }
                let naive_cmp = stats::compare(
                    acc["control"].ctr.naive_binomial(),
                    acc["candidate"].ctr.naive_binomial(),
                );
                naive += u64::from(excludes_zero(naive_cmp.diff.ci95()));
                let cu = k.cuped.as_ref().expect("cuped");
                cuped_fp += u64::from(excludes_zero(cu.lift["ctr"].ci95));
                var_raw += k.ctr.se.powi(2);
                var_cuped += cu.ctr.se.powi(2);
                srm_alarms += u64::from(r.srm.flagged);
            }
        }
        peek += u64::from(peeked);
        seq += u64::from(seq_hit);
        seq_any += u64::from(seq_any_hit);
    }
    let rate = |n: u64| n as f64 / runs as f64;
    println!(
        "{}",
        json!({
            "figure": "a/a false-positive rate, 95% intervals",
            "runs": runs, "users": users, "days": DAYS,
            "control_means": {"ctr": mean[0], "conversion": mean[1], "aov": mean[2], "revenue_per_user": mean[3]},
            "fixed_horizon": fixed.iter().map(|(m, n)| (m.to_string(), rate(*n))).collect::<BTreeMap<_, _>>(),
            "ctr_naive_binomial": rate(naive),
            "ctr_cuped": rate(cuped_fp),
            "ctr_peeking_14_looks_fixed_intervals": rate(peek),
            "ctr_sequential_14_looks": rate(seq),
            "any_metric_sequential_14_looks": rate(seq_any),
            "srm_false_alarms": rate(srm_alarms),
            "cuped_ctr_variance_reduction": 1.0 - var_cuped / var_raw,
            "seconds": t.elapsed().as_secs_f64(),
        })
    );

    // Power against the ADR's goal (+15% CTR), fixed and sequential.
    let t = Instant::now();
    let power_runs = (runs / 5).max(20);
    let (mut hit_fixed, mut hit_seq, mut hit_cuped) = (0u64, 0u64, 0u64);
    let mut lift_sum = 0.0;
    for _ in 0..power_runs {
        let sim = synthetic_traffic(&mut rng, users, 0.15);
        let mut seq_hit = false;
        for look in 1..=DAYS {
            let r = analyze(&accumulate(&sim, look, look == DAYS), &opts).expect("analysis");
            let k = &r.variants["candidate"];
            seq_hit |= k.lift["ctr"].sequential.is_some_and(|s| s.ci95[0] > 0.0);
            if look == DAYS {
                hit_fixed += u64::from(k.lift["ctr"].ci95[0] > 0.0);
                hit_cuped += u64::from(k.cuped.as_ref().is_some_and(|c| c.lift["ctr"].ci95[0] > 0.0));
                lift_sum += k.lift["ctr"].value;
            }
        }
        hit_seq += u64::from(seq_hit);
    }
    let prate = |n: u64| n as f64 / power_runs as f64;
    println!(
        "{}",
        json!({
            "figure": "power, candidate ctr +15%",
            "runs": power_runs, "users": users,
            "mean_ctr_lift": lift_sum / power_runs as f64,
            "fixed_horizon": prate(hit_fixed),
            "cuped": prate(hit_cuped),
            "sequential_14_looks": prate(hit_seq),
            "seconds": t.elapsed().as_secs_f64(),
        })
    );

    // SRM: 1M users assigned by a layer at 50.5/49.5, tested against the expected 50/50.
    let t = Instant::now();
    let layer = Layer::new("srm-bench", &[("control", 0.505), ("candidate", 0.495)]).expect("layer");
    let mut counts = [0u64; 2];
    for i in 0..1_000_000u32 {
        counts[usize::from(layer.assign(&format!("U{i:07}")) == Some("candidate"))] += 1;
    }
    let hashed = stats::srm_test(&counts, &[0.5, 0.5]).expect("srm");
    // And over many runs, binomial counts (normal approximation, exact enough at n = 1M): the
    // alarm rate of a 50/50 split and of a 50.5/49.5 one.
    let (mut alarms_fair, mut alarms_skewed) = (0u64, 0u64);
    for _ in 0..runs {
        for (p, alarms) in [(0.5, &mut alarms_fair), (0.505, &mut alarms_skewed)] {
            let n = 1_000_000f64;
            let c = (n * p + (n * p * (1.0 - p)).sqrt() * normal(&mut rng)).round() as u64;
            let r = stats::srm_test(&[c, 1_000_000 - c], &[0.5, 0.5]).expect("srm");
            *alarms += u64::from(r.p_value < recsys_train::abtest::SRM_ALPHA);
        }
    }
    println!(
        "{}",
        json!({
            "figure": "srm, 1M users",
            "hashed_50_5_split": {"control": counts[0], "candidate": counts[1], "chi2": hashed.chi2, "p_value": hashed.p_value, "flagged": hashed.p_value < recsys_train::abtest::SRM_ALPHA},
            "runs": runs,
            "alarm_rate_50_50": rate(alarms_fair),
            "detection_rate_50_5_49_5": rate(alarms_skewed),
            "seconds": t.elapsed().as_secs_f64(),
        })
    );
}
