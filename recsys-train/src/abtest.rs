//! `recsys-train ab-report`: an A/B experiment's figures per variant, with intervals, lifts against
//! the control, the sample-ratio check and the ADR's conversion guardrail, from the serving logs:
//! the exposure log (format v2 or the first format, a file or a directory of daily files, or its
//! Parquet import in a dataset, read with [`crate::exposures::for_each_exposure`]) and the event
//! CSV files of the events API.
//!
//! Two halves, so that anything producing per-user outcomes (the click simulator, a test) gets
//! the same analysis:
//! - [`collect`] reads the logs and attributes events to exposures, giving one [`UserOutcome`] per
//!   (user, variant);
//! - [`analyze`] turns per-variant [`VariantAccumulator`]s (sufficient statistics of those
//!   outcomes) into the [`AbReport`], with [`recsys_core::stats`].
//!
//! Definitions (users are the randomised unit; every interval is over users):
//! - exposures: served responses; impressions: items shown (Σ items per response);
//! - a click is a `click`, `add_to_cart` or `purchase` event of a shown item, attributed to one
//!   exposure: the one its `request_id` names when the event has one and the log knows it (the item
//!   must be in that response and the event at most the click window after it), else the latest
//!   exposure of the same user that showed the item at most the window earlier. Each (exposure,
//!   item) counts at most once;
//! - `ctr` = clicks / impressions, delta-method variance over users;
//! - a purchase (any item) belongs to the variant of the exposure its `request_id` names, else of
//!   the user's latest exposure at most the purchase window earlier; purchases after no exposure
//!   are not counted;
//! - `conversion` = users with at least one such purchase / exposed users (Wilson interval);
//! - orders: priced purchases grouped by session, else by UTC day (as `import` does); revenue =
//!   Σ price × quantity; `aov` = revenue / orders (delta method); `revenue_per_user` = revenue /
//!   users;
//! - `lift` of each metric: `variant / control − 1`, 95% delta-method interval, p-value, and the
//!   absolute difference with its interval.

use crate::exposures::for_each_exposure;
use crate::progress::Progress;
use crate::{Error, Result};
use ahash::{AHashMap, AHashSet};
use recsys_core::schema::{EventType, order_key};
use recsys_core::stats::{self, CupedStats, Estimate, RatioStats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The SRM alarm level: a p-value below it flags the experiment.
pub const SRM_ALPHA: f64 = 0.001;

/// The ADR's conversion guardrail: conversion must not drop below 3.0%.
pub const DEFAULT_MIN_CONVERSION: f64 = 0.03;

/// The default mixing standard deviation of the sequential test, on the relative lift (10%).
pub const DEFAULT_SEQUENTIAL_TAU: f64 = 0.1;

/// How the report is computed.
#[derive(Debug, Clone, PartialEq)]
pub struct AbOptions {
    /// A click counts for an exposure at most this many minutes earlier.
    pub window_minutes: u64,
    /// A purchase counts for an exposure at most this many minutes earlier (default: the click
    /// window).
    pub purchase_window_minutes: Option<u64>,
    /// What the analysis does with the outcomes.
    pub analysis: AnalysisOptions,
    /// Events of a period before the experiment, for CUPED (a CSV file or a directory of them).
    pub cuped_pre: Option<PathBuf>,
    /// Progress on stderr.
    pub progress: Progress,
}

impl Default for AbOptions {
    fn default() -> Self {
        AbOptions {
            window_minutes: 30,
            purchase_window_minutes: None,
            analysis: AnalysisOptions::default(),
            cuped_pre: None,
            progress: Progress::quiet(),
        }
    }
}

/// The analysis half's options.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOptions {
    /// The variant the others are compared with.
    pub control: String,
    /// Expected share of users per variant (normalised); `None`: equal shares of the variants seen.
    pub expected: Option<Vec<(String, f64)>>,
    /// The conversion guardrail.
    pub min_conversion: f64,
    /// Always-valid intervals on the lifts, with this mixing standard deviation on the relative
    /// lift (`None`: off).
    pub sequential_tau: Option<f64>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            control: "control".into(),
            expected: None,
            min_conversion: DEFAULT_MIN_CONVERSION,
            sequential_tau: None,
        }
    }
}

/// Parses `--expected control=0.5,candidate=0.5` (shares, normalised later).
pub fn parse_expected(s: &str) -> Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, share) = part
            .split_once('=')
            .ok_or_else(|| Error::arg("--expected", s, format!("{part:?} is not VARIANT=SHARE")))?;
        let share: f64 = share
            .trim()
            .parse()
            .map_err(|_| Error::arg("--expected", s, format!("share {share:?} of {name:?} is not a number")))?;
        if !(share.is_finite() && share > 0.0) {
            return Err(Error::arg(
                "--expected",
                s,
                format!("share of {name:?} must be positive"),
            ));
        }
        if out.iter().any(|(n, _)| n == name.trim()) {
            return Err(Error::arg("--expected", s, format!("{name:?} given twice")));
        }
        out.push((name.trim().to_string(), share));
    }
    if out.len() < 2 {
        return Err(Error::arg("--expected", s, "needs at least two variants"));
    }
    Ok(out)
}

/// One user's figures within one variant: the unit of analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UserOutcome {
    /// Responses served to the user in this variant.
    pub exposures: u64,
    /// Items shown.
    pub impressions: u64,
    /// Attributed clicks.
    pub clicks: u64,
    /// Purchase lines after an exposure of this variant (within the purchase window).
    pub purchases: u64,
    /// Orders among them with a price.
    pub orders: u64,
    /// Σ price × quantity of those purchases.
    pub revenue: f64,
    /// The pre-period covariates (CUPED), when a pre-period was given.
    pub pre: Option<PrePeriod>,
}

/// A user's activity in the pre-period (before the experiment), the CUPED covariates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PrePeriod {
    /// `click`, `add_to_cart` and `purchase` events.
    pub clicks: f64,
    /// All events.
    pub events: f64,
    /// Σ price × quantity of purchases.
    pub revenue: f64,
}

/// Sufficient statistics of one variant's users.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VariantAccumulator {
    /// Users.
    pub users: u64,
    /// Σ exposures.
    pub exposures: u64,
    /// Σ impressions.
    pub impressions: u64,
    /// Σ clicks.
    pub clicks: u64,
    /// Users with a purchase.
    pub converted: u64,
    /// Σ purchase lines.
    pub purchases: u64,
    /// Σ orders.
    pub orders: u64,
    /// Σ revenue.
    pub revenue: f64,
    /// Users with pre-period activity.
    pub pre_users: u64,
    /// (clicks, impressions) per user.
    pub ctr: RatioStats,
    /// (revenue, orders) per user.
    pub aov: RatioStats,
    /// (revenue, 1) per user.
    pub revenue_per_user: RatioStats,
    /// CTR with the pre-period covariate (pre clicks / pre events), when given.
    pub ctr_cuped: CupedStats,
    /// Revenue per user with the pre-period revenue as covariate, when given.
    pub revenue_cuped: CupedStats,
}

impl VariantAccumulator {
    /// Adds one user.
    pub fn push(&mut self, u: &UserOutcome) {
        self.users += 1;
        self.exposures += u.exposures;
        self.impressions += u.impressions;
        self.clicks += u.clicks;
        self.converted += u64::from(u.purchases > 0);
        self.purchases += u.purchases;
        self.orders += u.orders;
        self.revenue += u.revenue;
        let (c, i, o, r) = (u.clicks as f64, u.impressions as f64, u.orders as f64, u.revenue);
        self.ctr.push(c, i);
        self.aov.push(r, o);
        self.revenue_per_user.push(r, 1.0);
        if let Some(p) = u.pre {
            self.pre_users += u64::from(p.events > 0.0);
            self.ctr_cuped.push(c, i, p.clicks, p.events);
            self.revenue_cuped.push(r, 1.0, p.revenue, 1.0);
        }
    }
}

/// A figure with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The estimate.
    pub value: f64,
    /// 95% interval.
    pub ci95: [f64; 2],
    /// Standard error.
    pub se: f64,
}

impl From<Estimate> for Interval {
    fn from(e: Estimate) -> Self {
        Interval {
            value: e.value,
            ci95: e.ci95(),
            se: e.se(),
        }
    }
}

/// An always-valid interval (sequential testing).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SequentialInterval {
    /// Valid at every look at once.
    pub ci95: [f64; 2],
    /// Always-valid p-value of "no lift" at this look.
    pub p_value: f64,
}

/// A metric's lift against the control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lift {
    /// `variant / control − 1`.
    pub value: f64,
    /// Its 95% interval (delta method).
    pub ci95: [f64; 2],
    /// Two-sided p-value of no difference.
    pub p_value: f64,
    /// `variant − control` with its interval.
    pub diff: Interval,
    /// The always-valid interval of the relative lift (with `--sequential`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialInterval>,
}

impl Lift {
    fn of(c: stats::Comparison, tau: Option<f64>) -> Lift {
        Lift {
            value: c.relative.value,
            ci95: c.relative.ci95(),
            p_value: c.p_value,
            diff: c.diff.into(),
            sequential: tau.map(|t| {
                let av = stats::always_valid(c.relative, 0.0, t * t, 0.05);
                SequentialInterval {
                    ci95: av.ci,
                    p_value: av.p_value,
                }
            }),
        }
    }

    /// The control against itself: zero, by definition.
    fn zero(sequential: bool) -> Lift {
        let zero = Interval {
            value: 0.0,
            ci95: [0.0, 0.0],
            se: 0.0,
        };
        Lift {
            value: 0.0,
            ci95: [0.0, 0.0],
            p_value: 1.0,
            diff: zero,
            sequential: sequential.then_some(SequentialInterval {
                ci95: [0.0, 0.0],
                p_value: 1.0,
            }),
        }
    }
}

/// CUPED-adjusted figures of one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CupedVariant {
    /// Adjusted CTR.
    pub ctr: Interval,
    /// Adjusted revenue per user.
    pub revenue_per_user: Interval,
    /// Lifts of the adjusted metrics against the adjusted control.
    pub lift: BTreeMap<String, Lift>,
}

/// One variant's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantReport {
    /// Distinct users exposed.
    pub users: u64,
    /// Responses served.
    pub exposures: u64,
    /// Items shown.
    pub impressions: u64,
    /// Attributed clicks.
    pub clicks: u64,
    /// Purchase lines after an exposure.
    pub purchases: u64,
    /// Users with a purchase.
    pub converted_users: u64,
    /// Priced orders.
    pub orders: u64,
    /// Σ price × quantity.
    pub revenue: f64,
    /// clicks / impressions.
    pub ctr: Interval,
    /// converted users / users (Wilson interval; `se` is the binomial one).
    pub conversion: Interval,
    /// revenue / orders.
    pub aov: Interval,
    /// revenue / users.
    pub revenue_per_user: Interval,
    /// Each metric's lift against the control (zero for the control itself).
    pub lift: BTreeMap<String, Lift>,
    /// CUPED-adjusted figures (with a pre-period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedVariant>,
}

/// The sample-ratio check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SrmReport {
    /// P-value of the chi-square test (null when fewer than two variants).
    pub p_value: Option<f64>,
    /// `p_value < threshold`.
    pub flagged: bool,
    /// The alarm level (0.001).
    pub threshold: f64,
    /// Pearson's statistic.
    pub chi2: Option<f64>,
    /// Degrees of freedom.
    pub df: Option<f64>,
    /// Expected shares (normalised).
    pub expected: BTreeMap<String, f64>,
    /// Users per variant.
    pub observed: BTreeMap<String, u64>,
}

/// A guardrail's verdict for one variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GuardrailVerdict {
    /// The metric's value.
    pub value: f64,
    /// The threshold it must reach.
    pub threshold: f64,
    /// `value ≥ threshold`.
    pub pass: bool,
    /// The lower end of the 95% interval reaches the threshold too.
    pub confident: bool,
}

/// The guardrails.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guardrails {
    /// The conversion threshold (ADR: 3.0%).
    pub min_conversion: f64,
    /// Every variant passes.
    pub pass: bool,
    /// Per variant: `{"conversion": verdict}`.
    pub variants: BTreeMap<String, BTreeMap<String, GuardrailVerdict>>,
}

/// How events were attributed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Attribution {
    /// Exposure records read.
    pub exposure_records: u64,
    /// Event rows read.
    pub events: u64,
    /// Clicks attributed through the event's `request_id`.
    pub clicks_by_request_id: u64,
    /// Clicks attributed by user, item and window.
    pub clicks_by_window: u64,
    /// Events whose `request_id` is not in the exposure log (attributed by the window rule).
    pub unknown_request_ids: u64,
    /// Purchases after no exposure within the purchase window (not counted).
    pub purchases_unattributed: u64,
    /// Purchases without a price (counted for conversion, not for revenue or AOV).
    pub purchases_without_price: u64,
    /// Users seen in more than one variant (each counted in each).
    pub users_in_several_variants: u64,
}

/// The sequential settings used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SequentialReport {
    /// Mixing standard deviation on the relative lift.
    pub tau: f64,
    /// Error level of the confidence sequence.
    pub alpha: f64,
}

/// The CUPED summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CupedReport {
    /// Exposed users with pre-period events.
    pub users_with_pre_period: u64,
    /// θ per metric (pooled over variants).
    pub theta: BTreeMap<String, f64>,
    /// `1 − Σ Var(adjusted) / Σ Var(unadjusted)` over the variants, per metric.
    pub variance_reduction: BTreeMap<String, f64>,
}

/// What `recsys-train ab-report` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbReport {
    /// Click attribution window in minutes.
    pub window_minutes: u64,
    /// Purchase attribution window in minutes.
    pub purchase_window_minutes: u64,
    /// The control variant.
    pub control: String,
    /// Per variant.
    pub variants: BTreeMap<String, VariantReport>,
    /// Sample-ratio mismatch.
    pub srm: SrmReport,
    /// Guardrails.
    pub guardrails: Guardrails,
    /// Attribution counts.
    pub attribution: Attribution,
    /// With `--sequential`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialReport>,
    /// With `--cuped-pre`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedReport>,
}

/// The report's statistics from per-variant accumulators (see the module docs for the metrics).
/// Errors when `control` is not among the variants, or `expected` misses a variant seen.
pub fn analyze(variants: &BTreeMap<String, VariantAccumulator>, opts: &AnalysisOptions) -> Result<AbReport> {
    let control = variants.get(&opts.control).ok_or_else(|| {
        Error::arg(
            "--control",
            &opts.control,
            format!(
                "no such variant in the log (variants: {})",
                variants.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let tau = opts.sequential_tau;
    let cuped_on = variants.values().any(|v| v.ctr_cuped.metric.n > 0.0);
    let ctr_groups: Vec<CupedStats> = variants.values().map(|v| v.ctr_cuped).collect();
    let rev_groups: Vec<CupedStats> = variants.values().map(|v| v.revenue_cuped).collect();
    let (theta_ctr, center_ctr) = (stats::cuped_theta(&ctr_groups), stats::cuped_center(&ctr_groups));
    let (theta_rev, center_rev) = (stats::cuped_theta(&rev_groups), stats::cuped_center(&rev_groups));
    let adjusted = |v: &VariantAccumulator| {
        (
            v.ctr_cuped.adjusted(theta_ctr, center_ctr),
            v.revenue_cuped.adjusted(theta_rev, center_rev),
        )
    };
    let (c_ctr_adj, c_rev_adj) = adjusted(control);
    let mut out = BTreeMap::new();
    for (name, v) in variants {
        let is_control = *name == opts.control;
        let ctr = v.ctr.estimate();
        let conv = stats::proportion(v.converted as f64, v.users as f64);
        let aov = v.aov.estimate();
        let rpu = v.revenue_per_user.estimate();
        let mut lift = BTreeMap::new();
        if is_control {
            for m in ["ctr", "conversion", "aov", "revenue_per_user"] {
                lift.insert(m.to_string(), Lift::zero(tau.is_some()));
            }
        } else {
            lift.insert("ctr".into(), Lift::of(stats::compare(control.ctr.estimate(), ctr), tau));
            lift.insert(
                "conversion".into(),
                Lift::of(
                    stats::two_proportions(
                        control.converted as f64,
                        control.users as f64,
                        v.converted as f64,
                        v.users as f64,
                    ),
                    tau,
                ),
            );
            lift.insert("aov".into(), Lift::of(stats::compare(control.aov.estimate(), aov), tau));
            lift.insert(
                "revenue_per_user".into(),
                Lift::of(stats::compare(control.revenue_per_user.estimate(), rpu), tau),
            );
        }
        let cuped = cuped_on.then(|| {
            let (a_ctr, a_rev) = adjusted(v);
            let mut lift = BTreeMap::new();
            if is_control {
                lift.insert("ctr".to_string(), Lift::zero(tau.is_some()));
                lift.insert("revenue_per_user".to_string(), Lift::zero(tau.is_some()));
            } else {
                lift.insert("ctr".to_string(), Lift::of(stats::compare(c_ctr_adj, a_ctr), tau));
                lift.insert(
                    "revenue_per_user".to_string(),
                    Lift::of(stats::compare(c_rev_adj, a_rev), tau),
                );
            }
            CupedVariant {
                ctr: a_ctr.into(),
                revenue_per_user: a_rev.into(),
                lift,
            }
        });
        let mut conversion: Interval = conv.into();
        conversion.ci95 = stats::wilson_interval(v.converted as f64, v.users as f64, 0.95);
        out.insert(
            name.clone(),
            VariantReport {
                users: v.users,
                exposures: v.exposures,
                impressions: v.impressions,
                clicks: v.clicks,
                purchases: v.purchases,
                converted_users: v.converted,
                orders: v.orders,
                revenue: v.revenue,
                ctr: ctr.into(),
                conversion,
                aov: aov.into(),
                revenue_per_user: rpu.into(),
                lift,
                cuped,
            },
        );
    }
    let srm = srm_report(variants, opts.expected.as_deref())?;
    let mut guard = BTreeMap::new();
    let mut all_pass = true;
    for (name, v) in &out {
        let t = opts.min_conversion;
        let verdict = GuardrailVerdict {
            value: v.conversion.value,
            threshold: t,
            pass: v.conversion.value >= t,
            confident: v.conversion.ci95[0] >= t,
        };
        all_pass &= verdict.pass;
        guard.insert(name.clone(), BTreeMap::from([("conversion".to_string(), verdict)]));
    }
    let cuped = cuped_on.then(|| {
        let reduction = |f: &dyn Fn(&VariantAccumulator) -> (Estimate, Estimate)| {
            let (mut adj, mut raw) = (0.0, 0.0);
            for v in variants.values() {
                let (a, r) = f(v);
                if a.variance.is_finite() && r.variance.is_finite() {
                    adj += a.variance;
                    raw += r.variance;
                }
            }
            if raw > 0.0 { 1.0 - adj / raw } else { f64::NAN }
        };
        CupedReport {
            users_with_pre_period: variants.values().map(|v| v.pre_users).sum(),
            theta: BTreeMap::from([("ctr".into(), theta_ctr), ("revenue_per_user".into(), theta_rev)]),
            variance_reduction: BTreeMap::from([
                (
                    "ctr".into(),
                    reduction(&|v| (adjusted(v).0, v.ctr_cuped.metric.estimate())),
                ),
                (
                    "revenue_per_user".into(),
                    reduction(&|v| (adjusted(v).1, v.revenue_cuped.metric.estimate())),
                ),
            ]),
        }
    });
    Ok(AbReport {
        window_minutes: 0,
        purchase_window_minutes: 0,
        control: opts.control.clone(),
        variants: out,
        srm,
        guardrails: Guardrails {
            min_conversion: opts.min_conversion,
            pass: all_pass,
            variants: guard,
        },
        attribution: Attribution::default(),
        sequential: tau.map(|tau| SequentialReport { tau, alpha: 0.05 }),
        cuped,
    })
}

/// The SRM check of users per variant against the expected split.
fn srm_report(
    variants: &BTreeMap<String, VariantAccumulator>,
    expected: Option<&[(String, f64)]>,
) -> Result<SrmReport> {
    let shares: Vec<(String, f64)> = match expected {
        Some(e) => {
            if let Some(missing) = variants.keys().find(|k| !e.iter().any(|(n, _)| n == *k)) {
                return Err(Error::arg(
                    "--expected",
                    e.iter().map(|(n, s)| format!("{n}={s}")).collect::<Vec<_>>().join(","),
                    format!("variant {missing:?} is in the log but has no expected share"),
                ));
            }
            e.to_vec()
        }
        None => variants.keys().map(|k| (k.clone(), 1.0)).collect(),
    };
    let total: f64 = shares.iter().map(|(_, s)| s).sum();
    let observed: Vec<u64> = shares
        .iter()
        .map(|(n, _)| variants.get(n).map_or(0, |v| v.users))
        .collect();
    let weights: Vec<f64> = shares.iter().map(|(_, s)| s / total).collect();
    let r = if shares.len() >= 2 {
        stats::srm_test(&observed, &weights).ok()
    } else {
        None
    };
    Ok(SrmReport {
        p_value: r.map(|r| r.p_value),
        flagged: r.is_some_and(|r| r.p_value < SRM_ALPHA),
        threshold: SRM_ALPHA,
        chi2: r.map(|r| r.chi2),
        df: r.map(|r| r.df),
        expected: shares.iter().map(|(n, _)| n.clone()).zip(weights).collect(),
        observed: shares.iter().map(|(n, _)| n.clone()).zip(observed).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading the logs
// ---------------------------------------------------------------------------------------------

/// One event row.
struct EventRow<'a> {
    user: &'a str,
    item: &'a str,
    kind: EventType,
    ts: i64,
    session: Option<&'a str>,
    price: Option<f64>,
    quantity: u32,
    request_id: Option<&'a str>,
}

/// Reads every row of the event CSV files under `path` (columns by header name: `user_id`,
/// `item_id`, `event_type`, `timestamp` (UTC ms) required; `session_id`, `price`, `quantity`,
/// `request_id` optional). Bad values are [`Error::BadRow`]s naming file, row, column and value.
fn for_each_event(path: &Path, mut f: impl FnMut(EventRow) -> Result<()>) -> Result<u64> {
    let mut n = 0;
    for file in crate::read::serving_event_files(path)? {
        let name = file.display().to_string();
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&file)
            .map_err(|e| Error::data(&file, e.to_string()))?;
        let headers = rdr.headers().map_err(|e| Error::data(&file, e.to_string()))?.clone();
        let col = |c: &str| headers.iter().position(|h| h.trim() == c);
        let need = |c: &str| col(c).ok_or_else(|| Error::data(&file, format!("no column {c:?} in the header")));
        let (cu, ci, ct, cts) = (
            need("user_id")?,
            need("item_id")?,
            need("event_type")?,
            need("timestamp")?,
        );
        let (cs, cp, cq, cr) = (col("session_id"), col("price"), col("quantity"), col("request_id"));
        let mut rec = csv::StringRecord::new();
        let mut row = 0u64;
        loop {
            match rdr.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(Error::data(&file, format!("row {}: {e}", row + 1))),
            }
            row += 1;
            let bad = |column: &str, value: &str, reason: &str| Error::BadRow {
                file: name.clone(),
                row,
                column: column.into(),
                value: value.into(),
                reason: reason.into(),
            };
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim).filter(|s| !s.is_empty());
            let user = get(Some(cu)).ok_or_else(|| bad("user_id", "", "missing user id"))?;
            let item = get(Some(ci)).ok_or_else(|| bad("item_id", "", "missing item id"))?;
            let kind_s = get(Some(ct)).unwrap_or("");
            let kind = EventType::parse(kind_s)
                .ok_or_else(|| bad("event_type", kind_s, "not view, click, add_to_cart or purchase"))?;
            let ts_s = get(Some(cts)).unwrap_or("");
            let ts: i64 = ts_s
                .parse()
                .map_err(|_| bad("timestamp", ts_s, "not an integer (UTC milliseconds)"))?;
            let price = match get(cp) {
                None => None,
                Some(p) => match p.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
                    _ => return Err(bad("price", p, "not a finite, non-negative number")),
                },
            };
            let quantity = match get(cq) {
                None => 1,
                Some(q) => match q.parse::<u32>() {
                    Ok(v) if v >= 1 => v,
                    _ => return Err(bad("quantity", q, "not a whole number ≥ 1")),
                },
            };
            f(EventRow {
                user,
                item,
                kind,
                ts,
                session: get(cs),
                price,
                quantity,
                request_id: get(cr),
            })?;
            n += 1;
        }
    }
    Ok(n)
}

/// One exposure kept in memory (items interned).
struct Shown {
    user: u32,
    ts: i64,
    variant: u16,
    start: u32,
    len: u32,
}

/// What [`collect`] read: per-variant, per-user outcomes and the attribution counts.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Variant name → its users' outcomes.
    pub outcomes: BTreeMap<String, Vec<UserOutcome>>,
    /// Variant name → its users' ids, in the order of `outcomes`.
    pub user_ids: BTreeMap<String, Vec<String>>,
    /// Attribution counts.
    pub attribution: Attribution,
}

impl Collected {
    /// The accumulators [`analyze`] takes.
    pub fn accumulators(&self) -> BTreeMap<String, VariantAccumulator> {
        self.outcomes
            .iter()
            .map(|(name, users)| {
                let mut acc = VariantAccumulator::default();
                for u in users {
                    acc.push(u);
                }
                (name.clone(), acc)
            })
            .collect()
    }
}

/// Reads the exposure log and the events and attributes clicks and purchases (module docs).
pub fn collect(exposures: &Path, events: &Path, opts: &AbOptions) -> Result<Collected> {
    let window = opts.window_minutes as i64 * 60_000;
    let pwindow = opts.purchase_window_minutes.unwrap_or(opts.window_minutes) as i64 * 60_000;
    let mut users: AHashMap<String, u32> = AHashMap::new();
    let mut items: AHashMap<String, u32> = AHashMap::new();
    let mut variant_names: Vec<String> = Vec::new();
    let mut shown: Vec<Shown> = Vec::new();
    let mut flat: Vec<u32> = Vec::new();
    let mut by_request: AHashMap<String, u32> = AHashMap::new();
    let mut outcomes: AHashMap<(u32, u16), UserOutcome> = AHashMap::new();
    let mut att = Attribution::default();
    let bar = opts.progress.counter("exposures");
    att.exposure_records = for_each_exposure(exposures, |r| {
        let n = users.len() as u32;
        let user = *users.entry(r.user_id).or_insert(n);
        let variant = match variant_names.iter().position(|v| *v == r.variant) {
            Some(i) => i as u16,
            None => {
                if variant_names.len() >= u16::MAX as usize {
                    return Err(recsys_core::Error::invalid("variant", &r.variant, "too many variants"));
                }
                variant_names.push(r.variant);
                (variant_names.len() - 1) as u16
            }
        };
        let start = flat.len() as u32;
        for it in &r.items {
            let n = items.len() as u32;
            flat.push(*items.entry(it.item_id.clone()).or_insert(n));
        }
        if r.v >= 2 {
            by_request.entry(r.request_id).or_insert(shown.len() as u32);
        }
        let o = outcomes.entry((user, variant)).or_default();
        o.exposures += 1;
        o.impressions += r.items.len() as u64;
        shown.push(Shown {
            user,
            ts: r.ts,
            variant,
            start,
            len: r.items.len() as u32,
        });
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    let mut clicked = vec![false; flat.len()];
    // Each user's exposures in time order.
    let mut by_user: Vec<Vec<u32>> = vec![Vec::new(); users.len()];
    for (i, s) in shown.iter().enumerate() {
        by_user[s.user as usize].push(i as u32);
    }
    for list in &mut by_user {
        list.sort_by_key(|&i| shown[i as usize].ts);
    }
    // The latest exposure of `user` at or before `ts` within `w` satisfying `ok`.
    let latest = |user: u32, ts: i64, w: i64, ok: &dyn Fn(&Shown) -> bool| -> Option<u32> {
        let list = &by_user[user as usize];
        let end = list.partition_point(|&i| shown[i as usize].ts <= ts);
        list[..end]
            .iter()
            .rev()
            .take_while(|&&i| ts - shown[i as usize].ts <= w)
            .find(|&&i| ok(&shown[i as usize]))
            .copied()
    };
    let position = |s: &Shown, item: u32| {
        flat[s.start as usize..(s.start + s.len) as usize]
            .iter()
            .position(|&i| i == item)
    };
    let mut orders: AHashSet<(u32, u16, u64)> = AHashSet::new();
    let bar = opts.progress.counter("events");
    att.events = for_each_event(events, |e| {
        bar.inc(1);
        let Some(&user) = users.get(e.user) else {
            return Ok(());
        };
        // The exposure the event's request id names, when the log has it.
        let named = match e.request_id {
            Some(id) => match by_request.get(id) {
                Some(&i) if shown[i as usize].user == user => Some(i),
                Some(_) => None,
                None => {
                    att.unknown_request_ids += 1;
                    None
                }
            },
            None => None,
        };
        let by_id = e.request_id.is_some() && named.is_some();
        if matches!(e.kind, EventType::Click | EventType::AddToCart | EventType::Purchase) {
            let item = items.get(e.item).copied();
            let hit = match (item, by_id) {
                (None, _) => None,
                (Some(item), true) => {
                    let i = named.unwrap_or_default();
                    let s = &shown[i as usize];
                    (e.ts - s.ts <= window)
                        .then_some(())
                        .and(position(s, item))
                        .map(|p| (i, p))
                }
                (Some(item), false) => latest(user, e.ts, window, &|s| position(s, item).is_some())
                    .and_then(|i| position(&shown[i as usize], item).map(|p| (i, p))),
            };
            if let Some((i, p)) = hit {
                let s = &shown[i as usize];
                let slot = &mut clicked[s.start as usize + p];
                if !*slot {
                    *slot = true;
                    outcomes.entry((user, s.variant)).or_default().clicks += 1;
                    if by_id {
                        att.clicks_by_request_id += 1;
                    } else {
                        att.clicks_by_window += 1;
                    }
                }
            }
        }
        if e.kind == EventType::Purchase {
            let exp = match named {
                Some(i) if e.ts - shown[i as usize].ts <= pwindow => Some(i),
                Some(_) => None,
                None => latest(user, e.ts, pwindow, &|_| true),
            };
            let Some(i) = exp else {
                att.purchases_unattributed += 1;
                return Ok(());
            };
            let variant = shown[i as usize].variant;
            let o = outcomes.entry((user, variant)).or_default();
            o.purchases += 1;
            match e.price {
                Some(p) => {
                    o.revenue += p * e.quantity as f64;
                    if orders.insert((user, variant, order_key(e.session, e.ts))) {
                        o.orders += 1;
                    }
                }
                None => att.purchases_without_price += 1,
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    if let Some(pre_path) = &opts.cuped_pre {
        let mut pre: AHashMap<u32, PrePeriod> = AHashMap::new();
        for_each_event(pre_path, |e| {
            if let Some(&user) = users.get(e.user) {
                let p = pre.entry(user).or_default();
                p.events += 1.0;
                if e.kind != EventType::View {
                    p.clicks += 1.0;
                }
                if e.kind == EventType::Purchase {
                    p.revenue += e.price.unwrap_or(0.0) * e.quantity as f64;
                }
            }
            Ok(())
        })?;
        for ((user, _), o) in outcomes.iter_mut() {
            o.pre = Some(pre.get(user).copied().unwrap_or_default());
        }
    }
    let mut names = vec![String::new(); users.len()];
    for (name, i) in users {
        names[i as usize] = name;
    }
    let mut per_user_variants: AHashMap<u32, u32> = AHashMap::new();
    let mut out: BTreeMap<String, Vec<UserOutcome>> = BTreeMap::new();
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut keys: Vec<&(u32, u16)> = outcomes.keys().collect();
    keys.sort_unstable();
    for k in keys {
        *per_user_variants.entry(k.0).or_default() += 1;
        let variant = &variant_names[k.1 as usize];
        out.entry(variant.clone()).or_default().push(outcomes[k]);
        ids.entry(variant.clone())
            .or_default()
            .push(names[k.0 as usize].clone());
    }
    att.users_in_several_variants = per_user_variants.values().filter(|&&n| n > 1).count() as u64;
    Ok(Collected {
        outcomes: out,
        user_ids: ids,
        attribution: att,
    })
}

/// Computes the report from the logs ([`collect`] then [`analyze`]).
pub fn ab_report(exposures: &Path, events: &Path, opts: &AbOptions) -> Result<AbReport> {
    let c = collect(exposures, events, opts)?;
    let mut r = analyze(&c.accumulators(), &opts.analysis)?;
    r.window_minutes = opts.window_minutes;
    r.purchase_window_minutes = opts.purchase_window_minutes.unwrap_or(opts.window_minutes);
    r.attribution = c.attribution;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> AbOptions {
        AbOptions::default()
    }

    #[test]
    fn clicks_are_attributed_to_the_variant_that_showed_the_item() {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tmp.path().join("exp.jsonl");
        std::fs::write(
            &exp,
            [
                r#"{"ts": 1000, "user_id": "a", "variant": "control", "model_version": "v1", "items": ["P1", "P2"]}"#,
                r#"{"ts": 1000, "user_id": "b", "variant": "candidate", "model_version": "v2", "items": ["P1", "P3"]}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let ev = tmp.path().join("events");
        std::fs::create_dir(&ev).unwrap();
        std::fs::write(
            ev.join("events-1970-01-01.csv"),
            "user_id,item_id,event_type,timestamp,session_id,price,quantity\n\
             a,P1,click,2000,,,\n\
             a,P1,purchase,3000,,,\n\
             a,P2,view,2000,,,\n\
             b,P3,click,500,,,\n\
             b,P3,click,999999999,,,\n\
             b,P1,add_to_cart,1500,,,\n",
        )
        .unwrap();
        let r = ab_report(&exp, &ev, &opts()).unwrap();
        let c = &r.variants["control"];
        assert_eq!((c.exposures, c.impressions, c.users, c.clicks), (1, 2, 1, 1));
        assert_eq!(c.ctr.value, 0.5);
        let k = &r.variants["candidate"];
        // P3 clicked before the exposure and far after the window: not counted; P1 counted.
        assert_eq!(k.clicks, 1);
        std::fs::write(&exp, "{oops").unwrap();
        let e = ab_report(&exp, &ev, &opts()).unwrap_err().to_string();
        assert!(e.contains("exp.jsonl:1"), "{e}");
    }

    /// The hand-computed fixture (times in minutes; the click and purchase windows are 30).
    ///
    /// control: users a, b, c; candidate: users d, e (v2 records with request ids).
    ///
    /// | user | exposures (t: items)            | events                                              |
    /// |------|---------------------------------|-----------------------------------------------------|
    /// | a    | r1 t0: P1 P2                    | click P1 t5; purchase P1 t10 price 20 qty 2 (s1)     |
    /// | b    | r2 t0: P1 P2; r3 t60: P3 P4     | click P3 t61 (request r3); click P4 t200 (too late)  |
    /// | c    | r4 t0: P1 P2                    | none                                                |
    /// | d    | r5 t0: P1 P2 P3                 | click P2 t1 (request r5); click P3 t2; purchase P2  |
    /// |      |                                 | t20 price 50 (s2); purchase P3 t25 price 10 (s2)    |
    /// | e    | r6 t0: P1 P2 P3                 | click P1 t3 with request r5 (another user's: window |
    /// |      |                                 | rule, P1 in r6 → counted); purchase P9 t100 (late)  |
    ///
    /// control, per user (clicks, impressions): a (1, 2) (its purchase of P1 is the same
    /// (exposure, item) as its click: counted once), b (1, 4) (P3 through request r3; P4 at t200
    /// is 140 minutes after r3), c (0, 2).
    /// Σ clicks 2, Σ impressions 8: CTR 0.25. n = 3, x̄ = 8/3; s_y² = (1 + 1 + 0 − 4/3)/2 = 1/3;
    /// s_x² = (4 + 16 + 4 − 64/3)/2 = 4/3; s_xy = (2 + 4 + 0 − 16/3)/2 = 1/3.
    /// Var = (1/3 − 2·0.25·1/3 + 0.0625·4/3) / (64/9) / 3 = (1/3 − 1/6 + 1/12)·9/192 = 0.25·9/192
    ///     = 0.01171875.
    /// conversion: a bought → 1/3. revenue: a 40 (20 × 2), one order: AOV 40; revenue per user
    /// 40/3.
    ///
    /// candidate: d (2, 3) (P2 through r5, P3 by the window; its purchase of P2 is the same slot),
    /// e (1, 3) (r5 is d's request, so the window rule finds P1 in r6). CTR 3/6 = 0.5;
    /// conversion 1/2 (d); d's two purchases share session s2: one order of 60; AOV 60; revenue
    /// per user 30. e's purchase at t100 is after the 30-minute window: unattributed. The row of
    /// user zz (never exposed) is read and ignored.
    ///
    /// lift ctr = 0.5 / 0.25 − 1 = 1; clicks by request id 2 (b's P3, d's P2), by window 3.
    #[test]
    fn hand_computed_fixture() {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tmp.path().join("exposures");
        std::fs::create_dir(&exp).unwrap();
        let m = 60_000i64;
        let rec = |id: &str, t: i64, user: &str, variant: &str, items: &[&str]| {
            let items: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(n, i)| {
                    format!(
                        r#"{{"item_id":"{i}","position":{},"score":0.5,"propensity":1.0}}"#,
                        n + 1
                    )
                })
                .collect();
            format!(
                r#"{{"v":2,"request_id":"{id}","ts":{},"user_id":"{user}","variant":"{variant}","model_version":"1","policy":"p","items":[{}]}}"#,
                t * m,
                items.join(",")
            )
        };
        std::fs::write(
            exp.join("exposures-1970-01-01.jsonl"),
            [
                rec("r1", 0, "a", "control", &["P1", "P2"]),
                rec("r2", 0, "b", "control", &["P1", "P2"]),
                rec("r3", 60, "b", "control", &["P3", "P4"]),
                rec("r4", 0, "c", "control", &["P1", "P2"]),
            ]
            .join("\n"),
        )
        .unwrap();
        std::fs::write(
            exp.join("exposures-1970-01-02.jsonl"),
            [
                rec("r5", 0, "d", "candidate", &["P1", "P2", "P3"]),
                rec("r6", 0, "e", "candidate", &["P1", "P2", "P3"]),
            ]
            .join("\n"),
        )
        .unwrap();
        let ev = tmp.path().join("events.csv");
        let rows = [
            format!("a,P1,click,{},,,,", 5 * m),
            format!("a,P1,purchase,{},s1,20,2,", 10 * m),
            format!("b,P3,click,{},,,,r3", 61 * m),
            format!("b,P4,click,{},,,,", 200 * m),
            format!("d,P2,click,{},,,,r5", m),
            format!("d,P3,click,{},,,,", 2 * m),
            format!("d,P2,purchase,{},s2,50,,r5", 20 * m),
            format!("d,P3,purchase,{},s2,10,1,", 25 * m),
            format!("e,P1,click,{},,,,r5", 3 * m),
            format!("e,P9,purchase,{},s3,99,1,", 100 * m),
            format!("zz,P1,click,{},,,,", 3 * m),
        ];
        std::fs::write(
            &ev,
            format!(
                "user_id,item_id,event_type,timestamp,session_id,price,quantity,request_id\n{}\n",
                rows.join("\n")
            ),
        )
        .unwrap();
        let r = ab_report(&exp, &ev, &opts()).unwrap();
        let c = &r.variants["control"];
        assert_eq!(
            (
                c.users,
                c.exposures,
                c.impressions,
                c.clicks,
                c.converted_users,
                c.orders
            ),
            (3, 4, 8, 2, 1, 1)
        );
        assert!((c.ctr.value - 0.25).abs() < 1e-12);
        assert!((c.ctr.se.powi(2) - 0.011_718_75).abs() < 1e-12, "{}", c.ctr.se.powi(2));
        assert!((c.conversion.value - 1.0 / 3.0).abs() < 1e-12);
        assert!((c.revenue - 40.0).abs() < 1e-12 && (c.aov.value - 40.0).abs() < 1e-12);
        assert!((c.revenue_per_user.value - 40.0 / 3.0).abs() < 1e-12);
        let k = &r.variants["candidate"];
        assert_eq!(
            (k.users, k.impressions, k.clicks, k.converted_users, k.orders),
            (2, 6, 3, 1, 1)
        );
        assert!((k.ctr.value - 0.5).abs() < 1e-12);
        assert!((k.aov.value - 60.0).abs() < 1e-12 && (k.revenue_per_user.value - 30.0).abs() < 1e-12);
        assert!((k.lift["ctr"].value - 1.0).abs() < 1e-12);
        assert_eq!(c.lift["ctr"].value, 0.0);
        assert_eq!(r.attribution.clicks_by_request_id, 2);
        assert_eq!(r.attribution.clicks_by_window, 3);
        assert_eq!(r.attribution.purchases_unattributed, 1);
        assert_eq!(r.attribution.events, 11);
        // Equal expected split of 3 and 2 users: χ² = 0.2, not flagged.
        assert!((r.srm.chi2.unwrap() - 0.2).abs() < 1e-12 && !r.srm.flagged);
        // Conversion 1/3 and 1/2 are above 3%.
        assert!(r.guardrails.pass);
        let strict = AbOptions {
            analysis: AnalysisOptions {
                min_conversion: 0.4,
                ..AnalysisOptions::default()
            },
            ..opts()
        };
        let r = ab_report(&exp, &ev, &strict).unwrap();
        assert!(!r.guardrails.pass);
        assert!(!r.guardrails.variants["control"]["conversion"].pass);
        assert!(r.guardrails.variants["candidate"]["conversion"].pass);
    }

    #[test]
    fn bad_event_rows_name_file_row_column_and_value() {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tmp.path().join("e.jsonl");
        std::fs::write(
            &exp,
            r#"{"ts": 0, "user_id": "a", "variant": "control", "model_version": "v1", "items": ["P1"]}"#,
        )
        .unwrap();
        let ev = tmp.path().join("ev.csv");
        for (row, col, val) in [
            ("a,P1,click,soon,,,", "timestamp", "soon"),
            ("a,P1,purchase,5,,-3,", "price", "-3"),
            ("a,P1,purchase,5,,3,0", "quantity", "0"),
            ("a,P1,clck,5,,,", "event_type", "clck"),
        ] {
            std::fs::write(
                &ev,
                format!("user_id,item_id,event_type,timestamp,session_id,price,quantity\na,P1,view,1,,,\n{row}\n"),
            )
            .unwrap();
            let e = ab_report(&exp, &ev, &opts()).unwrap_err();
            let s = e.to_string();
            assert!(e.is_user_error(), "{s}");
            assert!(
                s.contains("ev.csv") && s.contains("row 2") && s.contains(col) && s.contains(val),
                "{s}"
            );
        }
        std::fs::write(&ev, "user_id,item_id,timestamp\n").unwrap();
        let s = ab_report(&exp, &ev, &opts()).unwrap_err().to_string();
        assert!(s.contains("event_type"), "{s}");
    }

    #[test]
    fn expected_split_is_parsed_and_checked() {
        assert_eq!(
            parse_expected("control=0.95, candidate=0.05").unwrap(),
            vec![("control".to_string(), 0.95), ("candidate".to_string(), 0.05)]
        );
        for bad in ["control", "control=x,candidate=1", "control=1", "a=1,a=1", "a=1,b=-1"] {
            let e = parse_expected(bad).unwrap_err().to_string();
            assert!(e.contains("--expected"), "{e}");
        }
        let mut v = BTreeMap::new();
        let mut acc = VariantAccumulator::default();
        acc.push(&UserOutcome::default());
        v.insert("control".to_string(), acc);
        v.insert("candidate".to_string(), acc);
        let opts = AnalysisOptions {
            expected: Some(vec![("control".into(), 0.5), ("other".into(), 0.5)]),
            ..AnalysisOptions::default()
        };
        assert!(analyze(&v, &opts).unwrap_err().to_string().contains("candidate"));
        let opts = AnalysisOptions {
            control: "nope".into(),
            ..AnalysisOptions::default()
        };
        assert!(analyze(&v, &opts).unwrap_err().to_string().contains("--control"));
    }
}
