//! The canary's decision rule as a pure state machine: [`evaluate`] takes the configuration, the
//! shared [`CanaryState`], the counts of the current step per variant and the time, and returns a
//! [`Decision`] (hold, advance, promote, roll back) with the figures that decided it; [`apply`]
//! turns a non-hold decision into the next state. No I/O, no clock: the runtime around it
//! ([`super::Canary`]) gathers the counts and stores the state.

use crate::config::CanaryConfig;
use recsys_core::stats::normal_cdf;
use serde::{Deserialize, Serialize};

/// Upper bounds (milliseconds) of the latency buckets counted per variant; the last bucket is
/// unbounded. The P99 estimate is the upper bound of the bucket holding the 99th percentile.
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Number of latency buckets ([`LATENCY_BOUNDS_MS`] plus the unbounded one).
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The latency bucket of a duration in milliseconds.
pub fn latency_bucket(ms: f64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|&b| ms <= b)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// What one variant did during the current step (summed over every replica).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantCounts {
    /// Recommendation calls (answered or failed with a server error).
    pub requests: u64,
    /// Answered recommendation calls (responses served, cache hits included).
    pub exposures: u64,
    /// Items shown in those responses.
    pub impressions: u64,
    /// Click events of the variant's users.
    pub clicks: u64,
    /// Purchase events of the variant's users.
    pub conversions: u64,
    /// Calls that failed with a server error (client errors are not counted).
    pub errors: u64,
    /// Calls per latency bucket ([`LATENCY_BOUNDS_MS`]).
    pub latency: Vec<u64>,
}

impl VariantCounts {
    /// The counts as named fields (`requests`, ..., `lat.0` ...) for a shared hash of counters.
    pub fn fields(&self) -> Vec<(String, i64)> {
        let mut out = vec![
            ("requests".to_string(), self.requests as i64),
            ("exposures".to_string(), self.exposures as i64),
            ("impressions".to_string(), self.impressions as i64),
            ("clicks".to_string(), self.clicks as i64),
            ("conversions".to_string(), self.conversions as i64),
            ("errors".to_string(), self.errors as i64),
        ];
        for (i, &n) in self.latency.iter().enumerate() {
            if n > 0 {
                out.push((format!("lat.{i}"), n as i64));
            }
        }
        out.retain(|f| f.1 != 0);
        out
    }

    /// Adds one named field (the inverse of [`Self::fields`]); unknown names are ignored.
    pub fn add_field(&mut self, name: &str, value: i64) {
        let v = value.max(0) as u64;
        match name {
            "requests" => self.requests += v,
            "exposures" => self.exposures += v,
            "impressions" => self.impressions += v,
            "clicks" => self.clicks += v,
            "conversions" => self.conversions += v,
            "errors" => self.errors += v,
            other => {
                if let Some(i) = other.strip_prefix("lat.").and_then(|i| i.parse::<usize>().ok())
                    && i < LATENCY_BUCKETS
                {
                    if self.latency.len() < LATENCY_BUCKETS {
                        self.latency.resize(LATENCY_BUCKETS, 0);
                    }
                    self.latency[i] += v;
                }
            }
        }
    }

    /// Records one call's latency.
    pub fn observe_latency(&mut self, ms: f64) {
        if self.latency.len() < LATENCY_BUCKETS {
            self.latency.resize(LATENCY_BUCKETS, 0);
        }
        self.latency[latency_bucket(ms)] += 1;
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.fields().is_empty()
    }

    /// The P99 latency estimate in ms (upper bound of its bucket; `None` without calls;
    /// infinity when it falls in the unbounded bucket).
    pub fn p99_ms(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, &n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// Counts of both variants during the current step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    /// The variant serving the registry's `current` model.
    pub control: VariantCounts,
    /// The canary's candidate.
    pub candidate: VariantCounts,
}

/// Where a canary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Stepping through the configured percents.
    Running,
    /// Reached 100%: the candidate serves everyone (final).
    Promoted,
    /// A guardrail failed: the candidate serves no one (final).
    RolledBack,
}

/// What [`evaluate`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Stay at the current step (not enough evidence yet, or the canary is finished).
    Hold,
    /// Go to the next step.
    Advance,
    /// Serve the candidate to everyone.
    Promote,
    /// Serve the candidate to no one.
    RollBack,
}

impl Action {
    /// The name used in logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Hold => "hold",
            Action::Advance => "advance",
            Action::Promote => "promote",
            Action::RollBack => "roll_back",
        }
    }
}

/// A one-sided "candidate worse than control" test of two proportions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Control successes / trials.
    pub control: f64,
    /// Candidate successes / trials.
    pub candidate: f64,
    /// Candidate minus control.
    pub difference: f64,
    /// z statistic of the difference (pooled standard error).
    pub z: f64,
    /// P(Z ≤ z): small when the candidate is worse.
    pub p_value: f64,
    /// `p_value < alpha`.
    pub worse: bool,
}

/// Figures of one variant, derived from its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantFigures {
    /// The raw counts.
    pub counts: VariantCounts,
    /// clicks / impressions.
    pub ctr: Option<f64>,
    /// conversions (purchases) / exposures.
    pub conversion: Option<f64>,
    /// errors / requests.
    pub error_rate: Option<f64>,
    /// P99 latency estimate, ms (`null` in JSON when above the last bucket bound).
    pub p99_ms: Option<f64>,
}

impl VariantFigures {
    fn of(c: &VariantCounts) -> Self {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        VariantFigures {
            counts: c.clone(),
            ctr: ratio(c.clicks, c.impressions),
            conversion: ratio(c.conversions, c.exposures),
            error_rate: ratio(c.errors, c.requests),
            p99_ms: c.p99_ms(),
        }
    }
}

/// The figures a decision was made on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Seconds since the step started.
    pub step_seconds: f64,
    /// Control during the step.
    pub control: VariantFigures,
    /// Candidate during the step.
    pub candidate: VariantFigures,
    /// CTR test (when both variants have impressions).
    pub ctr: Option<Comparison>,
    /// Conversion test (when both variants have exposures).
    pub conversion: Option<Comparison>,
}

/// One evaluation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// When (UTC ms).
    pub at_ms: i64,
    /// Step index before the decision.
    pub from_step: usize,
    /// Candidate percent before.
    pub from_percent: f64,
    /// Candidate percent after.
    pub to_percent: f64,
    /// Why, in words (the failing guardrail, or what is still missing).
    pub reason: String,
    /// The figures it was made on.
    pub figures: Figures,
}

/// The state every replica shares (stored as JSON; see [`super`] for where).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryState {
    /// The candidate version this canary is about.
    pub candidate: String,
    /// Running, promoted or rolled back.
    pub phase: Phase,
    /// Index into the configured steps.
    pub step: usize,
    /// Share of users on the candidate now, percent.
    pub percent: f64,
    /// Incremented at every transition; the step's counters are keyed by it, so each step is
    /// judged on its own traffic.
    pub epoch: u64,
    /// When the canary started (UTC ms).
    pub started_ms: i64,
    /// When the current step started (UTC ms).
    pub step_started_ms: i64,
    /// Every non-hold decision, oldest first.
    pub history: Vec<Decision>,
}

impl CanaryState {
    /// A canary at its first step.
    pub fn start(config: &CanaryConfig, now_ms: i64) -> Self {
        CanaryState {
            candidate: config.candidate.clone(),
            phase: Phase::Running,
            step: 0,
            percent: config.steps.first().map_or(0.0, |s| s.percent),
            epoch: 0,
            started_ms: now_ms,
            step_started_ms: now_ms,
            history: Vec::new(),
        }
    }
}

/// One-sided two-proportion z-test of "candidate lower than control" (pooled standard error).
/// `None` when either side has no trials.
pub fn worse_than(control: (u64, u64), candidate: (u64, u64), alpha: f64) -> Option<Comparison> {
    let (x0, n0) = control;
    let (x1, n1) = candidate;
    if n0 == 0 || n1 == 0 {
        return None;
    }
    let (p0, p1) = (x0 as f64 / n0 as f64, x1 as f64 / n1 as f64);
    let pooled = (x0 + x1) as f64 / (n0 + n1) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n0 as f64 + 1.0 / n1 as f64)).sqrt();
    let diff = p1 - p0;
    let (z, p_value) = if se > 0.0 {
        let z = diff / se;
        (z, normal_cdf(z))
    } else {
        (0.0, 1.0)
    };
    Some(Comparison {
        control: p0,
        candidate: p1,
        difference: diff,
        z,
        p_value,
        worse: p_value < alpha,
    })
}

/// The figures of a step's counts.
pub fn figures(config: &CanaryConfig, state: &CanaryState, counts: &StepCounts, now_ms: i64) -> Figures {
    let alpha = config.guardrails.alpha;
    let (c, k) = (&counts.control, &counts.candidate);
    Figures {
        step_seconds: (now_ms - state.step_started_ms).max(0) as f64 / 1000.0,
        control: VariantFigures::of(c),
        candidate: VariantFigures::of(k),
        ctr: worse_than((c.clicks, c.impressions), (k.clicks, k.impressions), alpha),
        conversion: worse_than((c.conversions, c.exposures), (k.conversions, k.exposures), alpha),
    }
}

/// The decision for the current step: roll back when a guardrail fails (judged once the candidate
/// has `guardrails.min_requests` calls in the step), else advance (or promote, when the next step
/// is 100%) once the step's minimum exposures and duration are reached, else hold.
pub fn evaluate(config: &CanaryConfig, state: &CanaryState, counts: &StepCounts, now_ms: i64) -> Decision {
    let figures = figures(config, state, counts, now_ms);
    let g = &config.guardrails;
    let decision = |action: Action, to_percent: f64, reason: String, figures: Figures| Decision {
        action,
        at_ms: now_ms,
        from_step: state.step,
        from_percent: state.percent,
        to_percent,
        reason,
        figures,
    };
    if state.phase != Phase::Running {
        let why = format!("canary {:?}", state.phase).to_lowercase();
        return decision(Action::Hold, state.percent, why, figures);
    }
    let k = &figures.candidate;
    if k.counts.requests >= g.min_requests {
        let mut failed = Vec::new();
        if let Some(rate) = k.error_rate
            && rate > g.max_error_rate
        {
            failed.push(format!("error rate {rate:.4} > max {}", g.max_error_rate));
        }
        if let Some(p99) = k.p99_ms
            && p99 > g.max_p99_ms
        {
            failed.push(format!("P99 latency ≤{p99} ms > max {} ms", g.max_p99_ms));
        }
        if g.ctr
            && let Some(t) = &figures.ctr
            && t.worse
        {
            failed.push(format!(
                "CTR {:.4} worse than control {:.4} (one-sided p = {:.2e} < alpha {})",
                t.candidate, t.control, t.p_value, g.alpha
            ));
        }
        if g.conversion
            && let Some(t) = &figures.conversion
            && t.worse
        {
            failed.push(format!(
                "conversion {:.4} worse than control {:.4} (one-sided p = {:.2e} < alpha {})",
                t.candidate, t.control, t.p_value, g.alpha
            ));
        }
        if !failed.is_empty() {
            return decision(Action::RollBack, 0.0, failed.join("; "), figures);
        }
    }
    let Some(step) = config.steps.get(state.step) else {
        return decision(Action::Promote, 100.0, "past the last step".into(), figures);
    };
    let mut missing = Vec::new();
    if k.counts.exposures < step.min_exposures {
        missing.push(format!("{} of {} exposures", k.counts.exposures, step.min_exposures));
    }
    if figures.step_seconds < step.min_duration_seconds {
        missing.push(format!(
            "{:.1} of {} s",
            figures.step_seconds, step.min_duration_seconds
        ));
    }
    if k.counts.requests < g.min_requests {
        missing.push(format!(
            "{} of {} requests for the guardrails",
            k.counts.requests, g.min_requests
        ));
    }
    if !missing.is_empty() {
        return decision(
            Action::Hold,
            state.percent,
            format!("waiting: {}", missing.join(", ")),
            figures,
        );
    }
    match config.steps.get(state.step + 1) {
        Some(next) if next.percent < 100.0 => decision(
            Action::Advance,
            next.percent,
            format!("step {} passed its guardrails", state.step),
            figures,
        ),
        _ => decision(
            Action::Promote,
            100.0,
            format!("step {} passed its guardrails; the next is 100%", state.step),
            figures,
        ),
    }
}

/// Decisions kept in [`CanaryState::history`] (the oldest are dropped).
pub const HISTORY_KEEP: usize = 100;

/// The state after a decision (a hold changes nothing).
pub fn apply(config: &CanaryConfig, state: &CanaryState, decision: &Decision) -> CanaryState {
    let mut next = state.clone();
    match decision.action {
        Action::Hold => return next,
        Action::Advance => {
            next.step += 1;
            next.percent = decision.to_percent;
        }
        Action::Promote => {
            next.phase = Phase::Promoted;
            next.step = config.steps.len().saturating_sub(1).max(next.step);
            next.percent = 100.0;
        }
        Action::RollBack => {
            next.phase = Phase::RolledBack;
            next.percent = 0.0;
        }
    }
    next.epoch += 1;
    next.step_started_ms = decision.at_ms;
    next.history.push(decision.clone());
    if next.history.len() > HISTORY_KEEP {
        let drop = next.history.len() - HISTORY_KEEP;
        next.history.drain(..drop);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CanaryStep;

    fn config() -> CanaryConfig {
        let mut c = CanaryConfig::new("2.0.0");
        c.steps = [5.0, 25.0, 100.0]
            .into_iter()
            .map(|percent| CanaryStep {
                percent,
                min_exposures: 1_000,
                min_duration_seconds: 60.0,
            })
            .collect();
        c
    }

    /// `n` fast calls of 10 items each, with `ctr` clicks per impression and `conv` purchases per call.
    fn counts(n: u64, ctr: f64, conv: f64, errors: u64, slow: u64) -> VariantCounts {
        let mut c = VariantCounts {
            requests: n,
            exposures: n - errors,
            impressions: (n - errors) * 10,
            clicks: ((n - errors) as f64 * 10.0 * ctr).round() as u64,
            conversions: ((n - errors) as f64 * conv).round() as u64,
            errors,
            latency: Vec::new(),
        };
        for i in 0..n {
            c.observe_latency(if i < slow { 400.0 } else { 8.0 });
        }
        c
    }

    fn good(n: u64) -> VariantCounts {
        counts(n, 0.05, 0.03, 0, 0)
    }

    const MIN: i64 = 60_000;

    #[test]
    fn holds_until_exposures_and_duration_are_reached() {
        let c = config();
        let s = CanaryState::start(&c, 0);
        let few = StepCounts {
            control: good(20_000),
            candidate: good(999),
        };
        let d = evaluate(&c, &s, &few, 2 * MIN);
        assert_eq!(d.action, Action::Hold, "{}", d.reason);
        assert!(d.reason.contains("999 of 1000 exposures"), "{}", d.reason);
        let enough = StepCounts {
            control: good(20_000),
            candidate: good(1_000),
        };
        let d = evaluate(&c, &s, &enough, MIN - 1);
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("of 60 s"), "{}", d.reason);
        let d = evaluate(&c, &s, &enough, MIN);
        assert_eq!(d.action, Action::Advance, "{}", d.reason);
        assert_eq!((d.from_percent, d.to_percent), (5.0, 25.0));
    }

    #[test]
    fn walks_through_the_steps_to_promotion_and_stays_there() {
        let c = config();
        let mut s = CanaryState::start(&c, 0);
        let fine = StepCounts {
            control: good(5_000),
            candidate: good(5_000),
        };
        let d = evaluate(&c, &s, &fine, MIN);
        assert_eq!(d.action, Action::Advance);
        s = apply(&c, &s, &d);
        assert_eq!((s.step, s.percent, s.epoch, s.step_started_ms), (1, 25.0, 1, MIN));
        // The duration counts from the step's start.
        assert_eq!(evaluate(&c, &s, &fine, MIN + 1).action, Action::Hold);
        let d = evaluate(&c, &s, &fine, 2 * MIN);
        assert_eq!(d.action, Action::Promote, "{}", d.reason);
        s = apply(&c, &s, &d);
        assert_eq!((s.phase, s.step, s.percent, s.epoch), (Phase::Promoted, 2, 100.0, 2));
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.history[1].figures.candidate.counts.exposures, 5_000);
        // Final: nothing moves it any more, even a failing guardrail.
        let bad = StepCounts {
            control: good(5_000),
            candidate: counts(5_000, 0.01, 0.0, 2_000, 0),
        };
        let d = evaluate(&c, &s, &bad, 10 * MIN);
        assert_eq!(d.action, Action::Hold);
        assert_eq!(apply(&c, &s, &d), s);
    }

    #[test]
    fn a_failing_guardrail_rolls_back_with_its_figures() {
        let c = config();
        let s = CanaryState::start(&c, 0);
        let cases = [
            (counts(500, 0.05, 0.03, 10, 0), "error rate"),
            (counts(500, 0.05, 0.03, 0, 20), "P99 latency"),
            (counts(2_000, 0.035, 0.03, 0, 0), "CTR"),
            (counts(2_000, 0.05, 0.015, 0, 0), "conversion"),
        ];
        for (candidate, what) in cases {
            let step = StepCounts {
                control: good(20_000),
                candidate,
            };
            // Even before the step's minimum exposures and duration.
            let d = evaluate(&c, &s, &step, 1_000);
            assert_eq!(d.action, Action::RollBack, "{what}: {}", d.reason);
            assert!(d.reason.contains(what), "{what}: {}", d.reason);
            let next = apply(&c, &s, &d);
            assert_eq!((next.phase, next.percent, next.epoch), (Phase::RolledBack, 0.0, 1));
            assert_eq!(next.history.last(), Some(&d));
        }
    }

    #[test]
    fn guardrails_wait_for_min_requests_and_ignore_noise() {
        let c = config();
        let s = CanaryState::start(&c, 0);
        // 50% errors, but only 20 calls: not judged yet.
        let early = StepCounts {
            control: good(1_000),
            candidate: counts(20, 0.05, 0.03, 10, 0),
        };
        assert_eq!(evaluate(&c, &s, &early, 1_000).action, Action::Hold);
        // A CTR a little lower, not significantly: no rollback.
        let close = StepCounts {
            control: good(20_000),
            candidate: counts(1_000, 0.048, 0.03, 0, 0),
        };
        let d = evaluate(&c, &s, &close, MIN);
        assert_eq!(d.action, Action::Advance, "{}", d.reason);
        let t = d.figures.ctr.unwrap();
        assert!(t.difference < 0.0 && t.p_value > 0.05 && !t.worse, "{t:?}");
        // Turned off, the CTR guardrail does not fire.
        let mut off = config();
        off.guardrails.ctr = false;
        let worse = StepCounts {
            control: good(20_000),
            candidate: counts(2_000, 0.035, 0.03, 0, 0),
        };
        assert_eq!(evaluate(&off, &s, &worse, 1_000).action, Action::Hold);
    }

    #[test]
    fn normal_cdf_and_the_test_match_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (-1.959_963_985, 0.025),
            (1.644_853_627, 0.95),
            (-3.0, 0.001_349_898),
        ] {
            assert!((normal_cdf(z) - p).abs() < 2e-7, "Φ({z}) = {} ≠ {p}", normal_cdf(z));
        }
        // 50/1000 vs 30/1000: pooled p = 0.04, se = sqrt(0.04·0.96·2/1000) = 0.0087636, z = -2.2822.
        let t = worse_than((50, 1_000), (30, 1_000), 0.05).unwrap();
        assert!((t.z + 2.282_177).abs() < 1e-5, "{t:?}");
        assert!((t.p_value - 0.011_239).abs() < 1e-5, "{t:?}");
        assert!(t.worse);
        assert!(worse_than((0, 0), (1, 10), 0.05).is_none());
        assert!(!worse_than((0, 100), (0, 100), 0.05).unwrap().worse);
    }

    #[test]
    fn counts_round_trip_through_named_fields() {
        let c = counts(300, 0.05, 0.03, 3, 4);
        let mut back = VariantCounts::default();
        for (f, v) in c.fields() {
            back.add_field(&f, v);
        }
        assert_eq!(back, c);
        assert_eq!(c.p99_ms(), Some(500.0));
        assert_eq!(good(1_000).p99_ms(), Some(10.0));
        assert_eq!(VariantCounts::default().p99_ms(), None);
    }
}
