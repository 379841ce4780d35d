//! Accuracy and interval coverage of the off-policy estimators (`recsys_train::ope`) on logged
//! data with a known truth, from a [`BanditSource`]:
//!
//! - `--source simulator` (what `benches/ope_accuracy.sh` runs): the click simulator of
//!   `recsys-train simulate` ([`SimulatorBandit`]) serving a trained model through the real
//!   `Recommender` with ε-uniform exploration (`--epsilon`, default 0.3, over the top `--pool`,
//!   default 20), every request logged with its exact propensities; the target is `--offset`
//!   (default 0: the model's deterministic top-k, the policy without exploration; 10: its second
//!   page, shown only by exploration's random branch), and the truth is the target's expected CTR
//!   under the click model on the logged contexts. Needs `--data DIR --registry DIR`.
//! - `--source synthetic`: the synthetic position-based model ([`SyntheticBandit`]).
//!
//! Two figures, one JSON object each on stdout:
//! - `accuracy`: one draw of `--requests` logged requests (default 1,000,000); per estimator the
//!   estimate, `|estimate − truth| / truth` and the interval.
//! - `coverage`: `--replications` draws (default 100) of `--rep-requests` requests (default
//!   20,000), each with a `--bootstrap` (default 200) percentile interval; per estimator the share
//!   of intervals containing the truth, and the mean relative error.
//!
//! ```text
//! cargo bench --workspace --bench ope_accuracy -- [--source simulator --data DIR --registry DIR] \
//!     [--epsilon 0.3 --pool 20 --offset 0] [--requests 1000000] [--replications 100] \
//!     [--rep-requests 20000] [--bootstrap 200] [--seed 1]
//! ```

mod common;

use common::arg;
use recsys_serve::ServeConfig;
use recsys_serve::config::ExplorationConfig;
use recsys_serve::simulate::{SimulateOptions, SimulatorBandit, TraceTarget};
use recsys_train::ope::{BanditSource, ESTIMATORS, OpeOptions, SyntheticBandit, evaluate};
use std::time::Instant;

fn main() {
    let requests: usize = arg("--requests", 1_000_000);
    let replications: u64 = arg("--replications", 100);
    let rep_requests: usize = arg("--rep-requests", 20_000);
    let bootstrap: u32 = arg("--bootstrap", 200);
    let seed: u64 = arg("--seed", 1);
    match arg("--source", "synthetic".to_string()).as_str() {
        "synthetic" => {
            let source = SyntheticBandit::new(20, 100, 5, 7);
            run(&source, requests, replications, rep_requests, bootstrap, seed);
        }
        "simulator" => {
            let data: String = arg("--data", String::new());
            let registry: String = arg("--registry", String::new());
            assert!(
                !data.is_empty() && !registry.is_empty(),
                "--source simulator needs --data DIR --registry DIR"
            );
            let mut options = SimulateOptions::new(data, registry);
            options.config = ServeConfig {
                exploration: Some(ExplorationConfig {
                    epsilon: arg("--epsilon", 0.3),
                    pool: arg("--pool", 20),
                }),
                ..ServeConfig::default()
            };
            options.trace = Some(TraceTarget {
                offset: arg("--offset", 0),
            });
            let source = SimulatorBandit { options };
            run(&source, requests, replications, rep_requests, bootstrap, seed);
        }
        other => panic!("--source: expected synthetic or simulator, got {other}"),
    }
}

fn run(source: &dyn BanditSource, requests: usize, replications: u64, rep_requests: usize, bootstrap: u32, seed: u64) {
    let opts = OpeOptions {
        bootstrap,
        seed,
        ..Default::default()
    };
    if requests > 0 {
        let started = Instant::now();
        let draw = source.draw(requests, seed).expect("draw");
        let drawn = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let r = evaluate(&draw.data, draw.policy.as_ref(), &opts).expect("evaluate");
        let seconds = started.elapsed().as_secs_f64();
        let estimators: serde_json::Map<String, serde_json::Value> = ESTIMATORS
            .iter()
            .map(|e| {
                let est = &r.estimators[*e];
                let v = est.value.unwrap_or(f64::NAN);
                (
                    e.to_string(),
                    serde_json::json!({
                        "value": v,
                        "relative_error": (v - draw.truth).abs() / draw.truth,
                        "ci95": est.ci95,
                    }),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "figure": "accuracy",
                "source": source.name(),
                "requests": requests,
                "rows": r.rows,
                "truth": draw.truth,
                "logged_ctr": r.logged_ctr,
                "ess": r.ess,
                "estimators": estimators,
                "bootstrap": bootstrap,
                "draw_seconds": drawn,
                "evaluate_seconds": seconds,
            })
        );
    }
    if replications > 0 {
        let started = Instant::now();
        let mut covered = [0u64; ESTIMATORS.len()];
        let mut defined = [0u64; ESTIMATORS.len()];
        let mut rel_err = [0f64; ESTIMATORS.len()];
        let mut truth = 0.0;
        for rep in 0..replications {
            let draw = source
                .draw(rep_requests, seed.wrapping_mul(1_000_003).wrapping_add(rep + 1))
                .expect("draw");
            truth = draw.truth;
            let o = OpeOptions {
                seed: seed + rep,
                ..opts.clone()
            };
            let r = evaluate(&draw.data, draw.policy.as_ref(), &o).expect("evaluate");
            for (i, e) in ESTIMATORS.iter().enumerate() {
                let est = &r.estimators[*e];
                if let (Some(v), Some([lo, hi])) = (est.value, est.ci95) {
                    defined[i] += 1;
                    covered[i] += u64::from(lo <= draw.truth && draw.truth <= hi);
                    rel_err[i] += (v - draw.truth).abs() / draw.truth;
                }
            }
        }
        let estimators: serde_json::Map<String, serde_json::Value> = ESTIMATORS
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    e.to_string(),
                    serde_json::json!({
                        "coverage": covered[i] as f64 / defined[i].max(1) as f64,
                        "mean_relative_error": rel_err[i] / defined[i].max(1) as f64,
                        "replications": defined[i],
                    }),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "figure": "coverage",
                "source": source.name(),
                "requests_per_replication": rep_requests,
                "replications": replications,
                "bootstrap": bootstrap,
                "truth": truth,
                "estimators": estimators,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    }
}
