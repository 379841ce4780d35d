//! Statistics for online experiments: pure functions from sufficient statistics to estimates and
//! intervals, shared by `recsys-train ab-report` and (later) the serving canary.
//!
//! - Distributions: [`normal_cdf`], [`normal_quantile`], [`chi2_sf`] (and [`ln_gamma`],
//!   [`gamma_p`], [`gamma_q`] beneath them), accurate to about 1e-14.
//! - Metrics with users as the randomised unit: [`RatioStats`] holds, per variant, the sums over
//!   users of a numerator `y` and a denominator `x` (clicks and impressions for CTR, revenue and
//!   orders for AOV, revenue and 1 for revenue per user) and their squares and cross product. Its
//!   [`RatioStats::estimate`] is `Σy / Σx` with the delta-method variance, which treats each user's
//!   `(y, x)` as one draw: clicks of one user are correlated, so the binomial variance over
//!   impressions is too small (Deng et al., "Applying the Delta Method in Metric Analytics", 2018).
//! - Comparisons of two independent groups: [`compare`] gives the difference and the relative lift
//!   (`b / a − 1`, delta-method variance) with a two-sided p-value; [`two_proportions`] does the
//!   same for counts of successes (conversion), with the pooled z-test p-value.
//! - [`srm_test`]: chi-square goodness of fit of observed unit counts to the expected split.
//! - [`always_valid`]: the normal-mixture sequential probability ratio test (mSPRT; Johari, Pekelis
//!   and Walsh, "Always Valid Inference", 2017; Robbins 1970): a confidence interval and p-value
//!   that stay valid however often one looks at the data.
//! - CUPED (Deng, Xu, Kohavi and Walker, 2013): [`CupedStats`] joins a metric with a pre-period
//!   covariate of the same users; [`cuped_theta`] pools `θ = cov / var` over the variants and
//!   [`CupedStats::adjusted`] gives the adjusted estimate `R − θ (C − center)`.
//!
//! Intervals are Wald intervals `value ± z · se` on the delta-method (normal) approximation: right
//! for the thousands of users of an experiment, not for a handful.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// `z` of a two-sided 95% interval (`normal_quantile(0.975)`).
pub const Z95: f64 = 1.959_963_984_540_054;

// ---------------------------------------------------------------------------------------------
// Distributions
// ---------------------------------------------------------------------------------------------

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, g = 7, 9 terms; relative error below 1e-14).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised lower incomplete gamma function `P(a, x) = γ(a, x) / Γ(a)` (`a > 0`, `x ≥ 0`).
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        gamma_series(a, x)
    } else {
        1.0 - gamma_continued_fraction(a, x)
    }
}

/// The regularised upper incomplete gamma function `Q(a, x) = 1 − P(a, x)`, computed directly in
/// the tail so that small values keep their relative precision.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        1.0 - gamma_series(a, x)
    } else {
        gamma_continued_fraction(a, x)
    }
}

/// `P(a, x)` by its power series (converges fast for `x < a + 1`).
fn gamma_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut del = 1.0 / a;
    let mut sum = del;
    for _ in 0..10_000 {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if del.abs() < sum.abs() * 1e-17 {
            break;
        }
    }
    sum * (-x + a * x.ln() - ln_gamma(a)).exp()
}

/// `Q(a, x)` by its continued fraction (modified Lentz; for `x ≥ a + 1`).
fn gamma_continued_fraction(a: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// The standard normal distribution function `Φ(z)`, via `erfc(|z|/√2) = Q(½, z²/2)` so that both
/// tails keep their relative precision.
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * gamma_q(0.5, 0.5 * z * z);
    if z < 0.0 { tail } else { 1.0 - tail }
}

/// The two-sided p-value of a standard normal statistic: `2 (1 − Φ(|z|))`.
pub fn normal_two_sided_p(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    gamma_q(0.5, 0.5 * z * z).min(1.0)
}

/// The standard normal quantile `Φ⁻¹(p)` for `0 < p < 1` (±∞ at 0 and 1, NaN outside): Acklam's
/// rational approximation refined by one Halley step on [`normal_cdf`] (about 1e-15).
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let mut x = if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // One Halley step on Φ(x) − p (work in the smaller tail for precision).
    let e = if x < 0.0 {
        normal_cdf(x) - p
    } else {
        (1.0 - p) - normal_cdf(-x)
    };
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
    x -= u / (1.0 + 0.5 * x * u);
    x
}

/// The chi-square survival function `P(X ≥ x)` with `df` degrees of freedom (`Q(df/2, x/2)`).
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    gamma_q(0.5 * df, 0.5 * x.max(0.0))
}

/// `z` of a two-sided interval of confidence `level` (0.95 → 1.96).
pub fn z_of(level: f64) -> f64 {
    normal_quantile(0.5 + 0.5 * level)
}

// ---------------------------------------------------------------------------------------------
// Estimates and ratio metrics
// ---------------------------------------------------------------------------------------------

/// A point estimate with its (approximate) sampling variance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its variance (NaN when it cannot be estimated, e.g. fewer than two units).
    pub variance: f64,
}

impl Estimate {
    /// The standard error `√variance`.
    pub fn se(&self) -> f64 {
        self.variance.max(0.0).sqrt()
    }

    /// The two-sided Wald interval `value ± z · se` of confidence `level`.
    pub fn ci(&self, level: f64) -> [f64; 2] {
        let h = z_of(level) * self.se();
        [self.value - h, self.value + h]
    }

    /// The 95% Wald interval.
    pub fn ci95(&self) -> [f64; 2] {
        let h = Z95 * self.se();
        [self.value - h, self.value + h]
    }

    /// The two-sided p-value of `value = null`.
    pub fn p_value(&self, null: f64) -> f64 {
        let se = self.se();
        if se > 0.0 {
            normal_two_sided_p((self.value - null) / se)
        } else if self.value == null {
            1.0
        } else {
            f64::NAN
        }
    }
}

/// Sufficient statistics of a ratio metric `Σy / Σx` over independent units (users): the count of
/// units and the sums of `y`, `x`, `y²`, `x²` and `xy`. A mean metric is the ratio with `x = 1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioStats {
    /// Units (users).
    pub n: f64,
    /// `Σ y`.
    pub sum_y: f64,
    /// `Σ x`.
    pub sum_x: f64,
    /// `Σ y²`.
    pub sum_yy: f64,
    /// `Σ x²`.
    pub sum_xx: f64,
    /// `Σ x y`.
    pub sum_xy: f64,
}

impl RatioStats {
    /// Adds one unit's numerator `y` and denominator `x`.
    pub fn push(&mut self, y: f64, x: f64) {
        self.n += 1.0;
        self.sum_y += y;
        self.sum_x += x;
        self.sum_yy += y * y;
        self.sum_xx += x * x;
        self.sum_xy += x * y;
    }

    /// Adds another group's units.
    pub fn merge(&mut self, o: &RatioStats) {
        self.n += o.n;
        self.sum_y += o.sum_y;
        self.sum_x += o.sum_x;
        self.sum_yy += o.sum_yy;
        self.sum_xx += o.sum_xx;
        self.sum_xy += o.sum_xy;
    }

    /// `Σy / Σx` (NaN when `Σx = 0`).
    pub fn ratio(&self) -> f64 {
        if self.sum_x == 0.0 {
            f64::NAN
        } else {
            self.sum_y / self.sum_x
        }
    }

    /// Sample variance of `y` over units (divisor `n − 1`).
    pub fn var_y(&self) -> f64 {
        sample_cov(self.n, self.sum_yy, self.sum_y, self.sum_y)
    }

    /// Sample variance of `x`.
    pub fn var_x(&self) -> f64 {
        sample_cov(self.n, self.sum_xx, self.sum_x, self.sum_x)
    }

    /// Sample covariance of `x` and `y`.
    pub fn cov_xy(&self) -> f64 {
        sample_cov(self.n, self.sum_xy, self.sum_x, self.sum_y)
    }

    /// The ratio with its delta-method variance
    /// `(1/n) (s_y² − 2R s_xy + R² s_x²) / x̄²`, where `R = ȳ / x̄` and `s` are the sample
    /// (co)variances over units: the variance of the linearised unit values `(y − R x) / x̄`.
    pub fn estimate(&self) -> Estimate {
        let r = self.ratio();
        if self.n < 2.0 || self.sum_x == 0.0 {
            return Estimate {
                value: r,
                variance: f64::NAN,
            };
        }
        let mx = self.sum_x / self.n;
        let v = (self.var_y() - 2.0 * r * self.cov_xy() + r * r * self.var_x()) / (mx * mx) / self.n;
        Estimate {
            value: r,
            variance: v.max(0.0),
        }
    }

    /// The same ratio with the naive binomial variance `R (1 − R) / Σx`, as if every unit of `x`
    /// (impression) were independent. Only for comparison: with users as the randomised unit it
    /// understates the variance when users differ.
    pub fn naive_binomial(&self) -> Estimate {
        let r = self.ratio();
        Estimate {
            value: r,
            variance: r * (1.0 - r) / self.sum_x,
        }
    }
}

/// Sample covariance from `n`, `Σab`, `Σa`, `Σb` (divisor `n − 1`; NaN below two units).
fn sample_cov(n: f64, sum_ab: f64, sum_a: f64, sum_b: f64) -> f64 {
    if n < 2.0 {
        return f64::NAN;
    }
    (sum_ab - sum_a * sum_b / n) / (n - 1.0)
}

/// A single proportion `x / n` with variance `p (1 − p) / n`.
pub fn proportion(successes: f64, n: f64) -> Estimate {
    if n <= 0.0 {
        return Estimate {
            value: f64::NAN,
            variance: f64::NAN,
        };
    }
    let p = successes / n;
    Estimate {
        value: p,
        variance: p * (1.0 - p) / n,
    }
}

/// The Wilson score interval of a proportion (better than Wald near 0 and 1 and for small `n`).
pub fn wilson_interval(successes: f64, n: f64, level: f64) -> [f64; 2] {
    if n <= 0.0 {
        return [f64::NAN, f64::NAN];
    }
    let z = z_of(level);
    let p = successes / n;
    let z2 = z * z;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    [(center - half).max(0.0), (center + half).min(1.0)]
}

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------

/// A treatment `b` against a control `a`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `b − a`, variance `Var a + Var b`.
    pub diff: Estimate,
    /// `b / a − 1`, delta-method variance `Var b / a² + b² Var a / a⁴`.
    pub relative: Estimate,
    /// Two-sided p-value of `b = a`.
    pub p_value: f64,
}

/// Compares two estimates from independent groups (`b` against the control `a`).
pub fn compare(a: Estimate, b: Estimate) -> Comparison {
    let diff = Estimate {
        value: b.value - a.value,
        variance: a.variance + b.variance,
    };
    let relative = Estimate {
        value: b.value / a.value - 1.0,
        variance: b.variance / (a.value * a.value) + b.value * b.value * a.variance / a.value.powi(4),
    };
    Comparison {
        diff,
        relative,
        p_value: diff.p_value(0.0),
    }
}

/// Compares two proportions `xb / nb` against `xa / na` (independent groups): unpooled variances
/// for the interval of the difference and the relative lift, the pooled z-test for the p-value.
pub fn two_proportions(xa: f64, na: f64, xb: f64, nb: f64) -> Comparison {
    let mut c = compare(proportion(xa, na), proportion(xb, nb));
    let pooled = (xa + xb) / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    c.p_value = if se > 0.0 {
        normal_two_sided_p(c.diff.value / se)
    } else if c.diff.value == 0.0 {
        1.0
    } else {
        f64::NAN
    };
    c
}

// ---------------------------------------------------------------------------------------------
// Sample-ratio mismatch
// ---------------------------------------------------------------------------------------------

/// The outcome of [`srm_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SrmResult {
    /// Pearson's `Σ (O − E)² / E`.
    pub chi2: f64,
    /// Degrees of freedom (`k − 1`).
    pub df: f64,
    /// `P(χ²_df ≥ chi2)`.
    pub p_value: f64,
}

/// Sample-ratio mismatch: Pearson's chi-square test of the observed unit counts per variant
/// against the expected shares (normalised to sum to 1). A tiny p-value (the usual alarm is
/// p < 0.001) means the assignment or the logging is broken and the experiment's figures cannot be
/// trusted. Errors when the lengths differ, fewer than two variants are given, a share is not
/// positive and finite, or no unit was observed.
pub fn srm_test(observed: &[u64], expected_shares: &[f64]) -> Result<SrmResult> {
    if observed.len() != expected_shares.len() || observed.len() < 2 {
        return Err(Error::invalid(
            "expected",
            format!("{expected_shares:?}"),
            format!("needs one share per variant, at least two (observed {observed:?})"),
        ));
    }
    if let Some(s) = expected_shares.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::invalid("expected", s, "a share must be positive and finite"));
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if total == 0.0 {
        return Err(Error::invalid("observed", "0", "no units observed"));
    }
    let share_sum: f64 = expected_shares.iter().sum();
    let chi2 = observed
        .iter()
        .zip(expected_shares)
        .map(|(&o, &s)| {
            let e = total * s / share_sum;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let df = (observed.len() - 1) as f64;
    Ok(SrmResult {
        chi2,
        df,
        p_value: chi2_sf(chi2, df),
    })
}

/// Pearson's chi-square test of independence of a contingency table (rows × columns of counts):
/// `(chi2, df, p_value)`. Used to check that two assignment layers are independent.
pub fn chi2_independence(table: &[Vec<u64>]) -> SrmResult {
    let rows: Vec<f64> = table.iter().map(|r| r.iter().map(|&c| c as f64).sum()).collect();
    let ncol = table.first().map_or(0, |r| r.len());
    let cols: Vec<f64> = (0..ncol).map(|j| table.iter().map(|r| r[j] as f64).sum()).collect();
    let n: f64 = rows.iter().sum();
    let mut chi2 = 0.0;
    for (i, r) in table.iter().enumerate() {
        for (j, &c) in r.iter().enumerate() {
            let e = rows[i] * cols[j] / n;
            if e > 0.0 {
                chi2 += (c as f64 - e).powi(2) / e;
            }
        }
    }
    let df = ((rows.len().max(1) - 1) * (ncol.max(1) - 1)) as f64;
    SrmResult {
        chi2,
        df,
        p_value: chi2_sf(chi2, df),
    }
}

// ---------------------------------------------------------------------------------------------
// Always-valid inference
// ---------------------------------------------------------------------------------------------

/// An always-valid (anytime) interval and p-value from [`always_valid`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlwaysValid {
    /// The confidence sequence at this look: contains the true value at every look at once with
    /// probability ≥ `1 − alpha`.
    pub ci: [f64; 2],
    /// `min(1, 1 / Λ)` for the null value; the running minimum over looks is the always-valid
    /// p-value (a single look's value is already valid on its own).
    pub p_value: f64,
}

/// The normal-mixture SPRT (Johari, Pekelis & Walsh 2017) for a statistic that is approximately
/// `N(θ, V)` and accumulates like a random walk as data arrive (a difference or lift of means over
/// users, with `V` its current variance). With a `N(null, τ²)` mixing distribution over `θ`, the
/// mixture likelihood ratio against `θ = null` is
///
/// `Λ = √(V / (V + τ²)) · exp(τ² (θ̂ − null)² / (2 V (V + τ²)))`,
///
/// and `{θ : Λ(θ) < 1/α}` is a confidence sequence:
/// `θ̂ ± √( V (V + τ²) / τ² · (2 ln(1/α) + ln((V + τ²) / V)) )`.
///
/// `tau2` (the mixing variance τ²) is on the scale of the statistic: set it to the square of the
/// effect size one cares about (`ab-report` uses τ = 0.1 on the relative lift: the ADR's goals are
/// +10% and +15%). Any τ > 0 keeps the guarantee; τ only moves where the test is most powerful.
pub fn always_valid(est: Estimate, null: f64, tau2: f64, alpha: f64) -> AlwaysValid {
    let v = est.variance;
    if !(v > 0.0 && tau2 > 0.0 && alpha > 0.0 && alpha < 1.0 && est.value.is_finite()) {
        return AlwaysValid {
            ci: [f64::NAN, f64::NAN],
            p_value: f64::NAN,
        };
    }
    let half = (v * (v + tau2) / tau2 * (2.0 * (1.0 / alpha).ln() + ((v + tau2) / v).ln())).sqrt();
    let d = est.value - null;
    let ln_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * d * d / (2.0 * v * (v + tau2));
    AlwaysValid {
        ci: [est.value - half, est.value + half],
        p_value: (-ln_lambda).exp().min(1.0),
    }
}

// ---------------------------------------------------------------------------------------------
// CUPED
// ---------------------------------------------------------------------------------------------

/// A ratio metric `R = Σy / Σx` and a ratio covariate `C = Σa / Σb` from a period before the
/// experiment, over the same units (a mean covariate has `b = 1`; a unit without pre-period data
/// has `a = b = 0` when the covariate is a ratio, or `a = 0, b = 1` when it is a mean).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CupedStats {
    /// The metric's `(y, x)`.
    pub metric: RatioStats,
    /// The covariate's `(a, b)` (its `y` is `a`, its `x` is `b`).
    pub covariate: RatioStats,
    /// `Σ y a`.
    pub sum_ya: f64,
    /// `Σ y b`.
    pub sum_yb: f64,
    /// `Σ x a`.
    pub sum_xa: f64,
    /// `Σ x b`.
    pub sum_xb: f64,
}

impl CupedStats {
    /// Adds one unit: metric `(y, x)`, covariate `(a, b)`.
    pub fn push(&mut self, y: f64, x: f64, a: f64, b: f64) {
        self.metric.push(y, x);
        self.covariate.push(a, b);
        self.sum_ya += y * a;
        self.sum_yb += y * b;
        self.sum_xa += x * a;
        self.sum_xb += x * b;
    }

    /// The delta-method covariance of `R` and `C`: the sample covariance of the linearised unit
    /// values `(y − R x) / x̄` and `(a − C b) / b̄`, over `n`.
    pub fn cov_metric_covariate(&self) -> f64 {
        let (m, c) = (&self.metric, &self.covariate);
        let n = m.n;
        if n < 2.0 || m.sum_x == 0.0 || c.sum_x == 0.0 {
            return f64::NAN;
        }
        let (r, cr) = (m.ratio(), c.ratio());
        let cov = |sab: f64, sa: f64, sb: f64| sample_cov(n, sab, sa, sb);
        let s = cov(self.sum_ya, m.sum_y, c.sum_y)
            - cr * cov(self.sum_yb, m.sum_y, c.sum_x)
            - r * cov(self.sum_xa, m.sum_x, c.sum_y)
            + r * cr * cov(self.sum_xb, m.sum_x, c.sum_x);
        s / ((m.sum_x / n) * (c.sum_x / n)) / n
    }

    /// `R − θ (C − center)` with variance `Var R − 2θ Cov(R, C) + θ² Var C` (θ and the center
    /// taken as known, as CUPED does: both come from all variants pooled, so they cancel out of
    /// the comparison's bias).
    pub fn adjusted(&self, theta: f64, center: f64) -> Estimate {
        let r = self.metric.estimate();
        let c = self.covariate.estimate();
        if !theta.is_finite() || !c.value.is_finite() {
            return r;
        }
        Estimate {
            value: r.value - theta * (c.value - center),
            variance: (r.variance - 2.0 * theta * self.cov_metric_covariate() + theta * theta * c.variance).max(0.0),
        }
    }
}

/// CUPED's `θ = Cov(R, C) / Var(C)`, pooled over the groups (weighted by their units); NaN when
/// the covariate does not vary.
pub fn cuped_theta(groups: &[CupedStats]) -> f64 {
    let (mut cov, mut var) = (0.0, 0.0);
    for g in groups {
        let n = g.metric.n;
        let c = g.cov_metric_covariate();
        let v = g.covariate.estimate().variance;
        if c.is_finite() && v.is_finite() {
            cov += c * n * n;
            var += v * n * n;
        }
    }
    if var > 0.0 { cov / var } else { f64::NAN }
}

/// The covariate's value over all groups pooled: the `center` of [`CupedStats::adjusted`].
pub fn cuped_center(groups: &[CupedStats]) -> f64 {
    let mut all = RatioStats::default();
    for g in groups {
        all.merge(&g.covariate);
    }
    all.ratio()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn normal_cdf_and_quantile_match_the_tables() {
        // Values from standard normal tables (and R's pnorm/qnorm, to the digits shown).
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-1.959_963_984_540_054, 0.025),
            (2.575_829_303_548_901, 0.995),
            (-3.0, 0.001_349_898_031_630_094_6),
            (-8.0, 6.220_960_574_271_785e-16),
        ] {
            assert!(close(normal_cdf(z), p, 1e-12), "Φ({z}) = {} want {p}", normal_cdf(z));
        }
        for (p, z) in [
            (0.975, 1.959_963_984_540_054),
            (0.995, 2.575_829_303_548_901),
            (0.5, 0.0),
            (0.001, -3.090_232_306_167_813),
            (1e-10, -6.361_340_902_404_056),
            (0.9, 1.281_551_565_544_600_5),
        ] {
            let q = normal_quantile(p);
            assert!((q - z).abs() < 1e-12, "Φ⁻¹({p}) = {q} want {z}");
        }
        assert!((z_of(0.95) - Z95).abs() < 1e-14);
        assert!(normal_quantile(1.5).is_nan());
        assert!(close(normal_two_sided_p(Z95), 0.05, 1e-12));
    }

    #[test]
    fn chi_square_matches_the_tables() {
        // Critical values at 5% and 0.1% (tables), and closed forms: df 2 is exp(−x/2).
        for (x, df, p) in [
            (3.841_458_820_694_124, 1.0, 0.05),
            (5.991_464_547_107_979, 2.0, 0.05),
            (18.307_038_053_275_146, 10.0, 0.05),
            (10.827_566_170_662_733, 1.0, 0.001),
            (7.0, 2.0, (-3.5f64).exp()),
            (0.0, 3.0, 1.0),
        ] {
            assert!(
                close(chi2_sf(x, df), p, 1e-10),
                "sf({x}, {df}) = {} want {p}",
                chi2_sf(x, df)
            );
        }
        // df 1: P(χ² ≥ z²) = 2 (1 − Φ(z)); at z = 10: 1.523970604832105e-23.
        assert!(close(chi2_sf(100.0, 1.0), 1.523_970_604_832_105e-23, 1e-9));
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-14));
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-14));
        assert!(close(gamma_p(3.0, 2.0) + gamma_q(3.0, 2.0), 1.0, 1e-15));
    }

    /// Three users: (clicks, impressions) = (1, 2), (0, 4), (3, 6).
    /// Σy = 4, Σx = 12, R = 1/3; x̄ = 4.
    /// s_y² = ((1 + 0 + 9) − 16/3) / 2 = 7/3; s_x² = ((4 + 16 + 36) − 48) / 2 = 4;
    /// s_xy = ((2 + 0 + 18) − 16) / 2 = 2.
    /// Var R = (7/3 − 2·(1/3)·2 + (1/9)·4) / 16 / 3 = (21/9 − 12/9 + 4/9) / 48 = 13/432.
    #[test]
    fn delta_method_ratio_by_hand() {
        let mut s = RatioStats::default();
        for (y, x) in [(1.0, 2.0), (0.0, 4.0), (3.0, 6.0)] {
            s.push(y, x);
        }
        let e = s.estimate();
        assert!(close(e.value, 1.0 / 3.0, 1e-15));
        assert!(close(e.variance, 13.0 / 432.0, 1e-13), "{}", e.variance);
        // The naive binomial variance treats the 12 impressions as independent: (1/3)(2/3)/12.
        assert!(close(s.naive_binomial().variance, 2.0 / 108.0, 1e-13));
        let ci = e.ci95();
        assert!(close(ci[1] - ci[0], 2.0 * Z95 * (13.0f64 / 432.0).sqrt(), 1e-12));
        // A mean metric is the ratio with x = 1: the sample variance over n.
        let mut m = RatioStats::default();
        for y in [2.0, 4.0, 9.0] {
            m.push(y, 1.0);
        }
        // mean 5, s² = ((4 + 16 + 81) − 75) / 2 = 13, Var = 13/3.
        assert!(close(m.estimate().variance, 13.0 / 3.0, 1e-13));
    }

    /// a = 0.10 (var 0.0001), b = 0.12 (var 0.0004): diff 0.02, var 0.0005;
    /// relative 0.2, var 0.0004/0.01 + 0.0144·0.0001/0.0001 = 0.04 + 0.0144 = 0.0544.
    #[test]
    fn comparisons_by_hand() {
        let a = Estimate {
            value: 0.10,
            variance: 0.0001,
        };
        let b = Estimate {
            value: 0.12,
            variance: 0.0004,
        };
        let c = compare(a, b);
        assert!(close(c.diff.value, 0.02, 1e-12) && close(c.diff.variance, 0.0005, 1e-12));
        assert!(close(c.relative.value, 0.2, 1e-12) && close(c.relative.variance, 0.0544, 1e-12));
        // z = 0.02 / √0.0005 = 0.894427; p = 0.371093.
        assert!(close(c.p_value, 0.371_093_369_522_697_7, 1e-9), "{}", c.p_value);
        // 30/1000 against 45/1000: pooled 0.0375, se √(0.0375·0.9625·0.002) = 0.0084963;
        // z = 0.015 / 0.0084963 = 1.765470, p = 0.0774849.
        let t = two_proportions(30.0, 1000.0, 45.0, 1000.0);
        assert!(close(t.diff.value, 0.015, 1e-12));
        assert!(close(t.p_value, 0.077_484_865_132_644_7, 1e-9), "{}", t.p_value);
        assert!(close(t.relative.value, 0.5, 1e-12));
        // Wilson interval of 30/1000 at 95%: center (0.03 + 1.9208/1000) / 1.0038415 = 0.0317987,
        // half 1.952464 · √(0.0000291 + 0.00000096) = 0.0107048: [0.021094, 0.042503].
        let w = wilson_interval(30.0, 1000.0, 0.95);
        assert!(
            (w[0] - 0.021_094).abs() < 1e-6 && (w[1] - 0.042_503).abs() < 1e-6,
            "{w:?}"
        );
    }

    #[test]
    fn srm_flags_a_50_5_to_49_5_split_among_a_million_users() {
        // χ² = 2 · 5000² / 500000 = 100, p = 1.52e-23.
        let r = srm_test(&[505_000, 495_000], &[0.5, 0.5]).unwrap();
        assert!(close(r.chi2, 100.0, 1e-12));
        // Far below the 0.001 alarm, and computed in the tail (not 1 − CDF, which would give 0).
        assert!(r.p_value > 1e-26 && r.p_value < 1e-20, "{}", r.p_value);
        // A fair split is not flagged: 500,400 / 499,600 gives χ² = 0.64, p = 0.4237.
        let ok = srm_test(&[500_400, 499_600], &[1.0, 1.0]).unwrap();
        assert!(close(ok.p_value, 0.423_710_797_166_793_4, 1e-9), "{}", ok.p_value);
        // Three variants at 90/5/5: 9000/540/460 of 10000 → χ² = 0 + 40²/500 + 40²/500 = 6.4, df 2, p = e^−3.2.
        let three = srm_test(&[9000, 540, 460], &[0.9, 0.05, 0.05]).unwrap();
        assert!(close(three.chi2, 6.4, 1e-12) && three.df == 2.0);
        assert!(close(three.p_value, (-3.2f64).exp(), 1e-10));
        assert!(srm_test(&[1, 2], &[0.5]).is_err());
        assert!(srm_test(&[1, 2], &[0.5, 0.0]).is_err());
    }

    #[test]
    fn always_valid_interval_is_wider_than_the_fixed_one_and_consistent_with_its_p_value() {
        // V = 1e-4, τ² = 1e-2, α = 0.05: half = √(1e-4 · 1.01 · (2 ln 20 + ln 101)) = 0.10 · √(1.01 · 10.608679) ≈ 0.032734.
        let e = Estimate {
            value: 0.05,
            variance: 1e-4,
        };
        let av = always_valid(e, 0.0, 1e-2, 0.05);
        let half = (1e-4f64 * 1.01 * (2.0 * 20f64.ln() + 101f64.ln())).sqrt();
        assert!(close(av.ci[1] - 0.05, half, 1e-12));
        assert!(half > Z95 * 0.01);
        // The null sits outside the interval exactly when the p-value is below α.
        assert!(av.ci[0] > 0.0 && av.p_value < 0.05);
        let at_edge = always_valid(
            Estimate {
                value: half,
                variance: 1e-4,
            },
            0.0,
            1e-2,
            0.05,
        );
        assert!(close(at_edge.p_value, 0.05, 1e-9), "{}", at_edge.p_value);
    }

    /// Metric y with x = 1 (a mean), covariate a with b = 1, four units:
    /// y = [1, 2, 3, 6], a = [1, 2, 2, 3]. ȳ = 3, ā = 2.
    /// s_ya = ((1 + 4 + 6 + 18) − 4·3·2) / 3 = 5/3; s_a² = ((1 + 4 + 4 + 9) − 16) / 3 = 2/3.
    /// θ = (5/3) / (2/3) = 2.5. s_y² = ((1 + 4 + 9 + 36) − 36) / 3 = 14/3.
    /// Var adjusted = (14/3 − 2·2.5·5/3 + 6.25·2/3) / 4 = (14 − 25 + 12.5) / 12 = 1/8.
    #[test]
    fn cuped_by_hand() {
        let mut g = CupedStats::default();
        for (y, a) in [(1.0, 1.0), (2.0, 2.0), (3.0, 2.0), (6.0, 3.0)] {
            g.push(y, 1.0, a, 1.0);
        }
        assert!(close(g.cov_metric_covariate(), 5.0 / 12.0, 1e-12));
        let theta = cuped_theta(&[g]);
        assert!(close(theta, 2.5, 1e-12), "{theta}");
        let adj = g.adjusted(theta, 2.5);
        // 3 − 2.5 · (2 − 2.5) = 4.25.
        assert!(close(adj.value, 4.25, 1e-12));
        assert!(close(adj.variance, 0.125, 1e-12), "{}", adj.variance);
        assert!(adj.variance < g.metric.estimate().variance);
        assert!(close(cuped_center(&[g]), 2.0, 1e-15));
    }
}
