//! The click and purchase simulator (`recsys-train simulate`): simulated shoppers use the real
//! [`Recommender`], in process (the code path the HTTP service runs), and the
//! [`ClickModel`] decides what they do with what it shows them.
//!
//! A run plans its sessions first, from the seed alone: session *s* draws a user (uniformly among
//! the dataset's users), a device (55% mobile, 35% desktop, 10% tablet), a local hour (the diurnal
//! traffic curve of [`hour_weights`]) and a length (1 + a geometric number of further pages, mean
//! 2.5, at most 10), until the requested number of requests is reached; sessions are spread evenly
//! over a simulated window (`window_days`, default 7) that starts where the dataset ends, so that
//! items launching in the days after the data are launched during the run (novelty). Then each
//! user's sessions run in order, users in parallel (rayon). One page of a session:
//!
//! 1. the context: the first page is `home`; after a click the next page is that item's product
//!    page (`product:ID`), else the user's favourite category (`category:NAME`) or `home`;
//! 2. [`Recommender::recommend`] with `k` slots (default 10), the page, device and hour;
//! 3. for each slot the [`ClickModel`] gives P(click) (position, device, hour, page, the user's
//!    planted preferences, price sensitivity, novelty); a click may lead to an add to cart and a
//!    purchase (quantity from the basket model);
//! 4. the events are sent back with [`Recommender::ingest`] (click, add_to_cart, purchase, with the
//!    response's request id), so the user's live session, and the next page, evolve.
//!
//! Figures, each with a 95% interval: CTR (clicks / impressions), conversion (sessions with a
//! purchase / sessions), AOV (revenue / converting sessions: one session's purchases are one order)
//! and revenue per session. Users are the unit of analysis (a user's sessions are correlated):
//! every figure is a ratio of per-user sums and its variance comes from the delta method. `true_ctr`
//! is the expected CTR of what was shown: the mean of the click probabilities the simulator drew
//! from, which the measured CTR estimates.
//!
//! Deterministic per seed: every random draw comes from a generator seeded by (seed, session), the
//! requests carry seeded ids (`sim<seed>-<session>-<page>`, which also seed an exploration
//! policy's draw), and sessions are aggregated in session order, whatever the number of threads.
//! A canary in the configuration moves on wall-clock time: such a run is not deterministic. The recommender runs
//! with its background refresh of item features and trending lists switched off (they would
//! depend on wall-clock timing), so its answers depend on the events the simulator sends it and
//! the user's own sessions only. What remains is wall-clock time in the recency features (the
//! recommender's clock is the real one): it moves scores by parts in a billion, which could only
//! swap two items of equal score.
//!
//! What it does not do: users do not arrive by their activity (uniform draw), the item side of the
//! features (popularity, trending) does not move during a run, the click model is the planted one
//! (a model trained on the synthetic data is judged by the rules that made the data), and
//! recommendations are the only thing a simulated user sees (no organic browsing between pages).

use crate::online::EventIn;
use crate::{Error, RecQuery, Recommender, RecommenderOptions, Result, ServeConfig};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use recsys_core::click_model::{ClickContext, ClickModel, DEVICES, UserProfile, hour_weights, splitmix};
use recsys_train::dataset::Dataset;
use recsys_train::progress::Progress;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What serves the simulated traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimPolicy {
    /// The registry's current version (and the A/B candidate or exploration of the config).
    Current,
    /// One registry version.
    Version(String),
    /// The popularity fallback: trending and popular in the page's context, no personalisation.
    Popular,
}

impl SimPolicy {
    /// Parses `current`, `popular` or a version.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "" => Err(Error::bad(
                "policy",
                s,
                "expected current, popular or a registry version",
            )),
            "current" => Ok(SimPolicy::Current),
            "popular" => Ok(SimPolicy::Popular),
            v => Ok(SimPolicy::Version(v.to_string())),
        }
    }

    /// The name reported (`current`, `popular` or the version).
    pub fn name(&self) -> String {
        match self {
            SimPolicy::Current => "current".into(),
            SimPolicy::Popular => "popular".into(),
            SimPolicy::Version(v) => v.clone(),
        }
    }
}

/// Settings of a simulation run.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Dataset directory: users (age bucket, region) and catalogue the click model is rebuilt from,
    /// and what the recommender serves from.
    pub data: PathBuf,
    /// Model registry.
    pub registry: PathBuf,
    /// What serves.
    pub policy: SimPolicy,
    /// Recommendation requests to simulate.
    pub requests: u64,
    /// Seed: same seed, same traffic.
    pub seed: u64,
    /// Slots per response (default 10).
    pub k: usize,
    /// Serving configuration (an A/B split, exploration, rules...). The background refresh
    /// intervals are overridden (off); `exposure_log` and `event_log` are taken from the fields
    /// below when they are set.
    pub config: ServeConfig,
    /// Candidate store URL (default: none, candidates from the model).
    pub store: Option<String>,
    /// Directory of the exposure log to write (for `ab-report` and `ope`).
    pub exposure_log: Option<PathBuf>,
    /// Directory of the event log to write.
    pub event_log: Option<PathBuf>,
    /// Length of the simulated window in days, starting at the dataset's last event (default 7).
    pub window_days: f64,
    /// Worker threads (default: rayon's, one per core).
    pub threads: Option<usize>,
    /// Record every request as logged bandit feedback, with a target policy's true value in its
    /// context ([`SimulateReport::trace`]); off by default (it holds every request in memory).
    pub trace: Option<TraceTarget>,
    /// Progress reporting.
    pub progress: Progress,
}

/// The target policy a trace records the true value of: `k` consecutive items of the
/// deterministic ranking the serving policy drew from, starting at `offset` (0: what the policy
/// shows without exploration; `k`: its "second page", a worse policy that only exploration's
/// random branch ever shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceTarget {
    /// First item of the ranking the target shows at slot 1.
    pub offset: usize,
}

/// One shown slot of a traced request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracedSlot {
    /// The item (index into the dataset's items).
    pub item: u32,
    /// The probability with which the serving policy showed it at this slot.
    pub propensity: f64,
    /// Whether the simulated user clicked it.
    pub clicked: bool,
}

/// One simulated request as logged bandit feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedRequest {
    /// The session (in plan order) and the page within it.
    pub session: u32,
    /// The page number within the session (0 first).
    pub page: u8,
    /// What was shown, slot by slot.
    pub shown: Vec<TracedSlot>,
    /// The target policy's list in this context (dataset item indices; may be shorter than
    /// `shown` when the ranking runs out).
    pub target: Vec<u32>,
    /// The target's expected clicks over the shown slots: `Σ_p P(click | target[p] at slot p)`
    /// under the click model in this request's context.
    pub target_clicks: f64,
}

/// Every request of a traced run, in session order (deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The requests.
    pub requests: Vec<TracedRequest>,
    /// Item ids (dataset order): `TracedSlot::item` and `target` index them.
    pub item_ids: Vec<String>,
}

impl Trace {
    /// The target policy's true CTR on the traced contexts: its expected clicks over the shown
    /// slots divided by the number of shown slots (impressions).
    pub fn target_ctr(&self) -> f64 {
        let clicks: f64 = self.requests.iter().map(|r| r.target_clicks).sum();
        let shown: usize = self.requests.iter().map(|r| r.shown.len()).sum();
        if shown == 0 { 0.0 } else { clicks / shown as f64 }
    }
}

impl SimulateOptions {
    /// Defaults: the current model, 10,000 requests, seed 1, 10 slots.
    pub fn new(data: impl Into<PathBuf>, registry: impl Into<PathBuf>) -> Self {
        SimulateOptions {
            data: data.into(),
            registry: registry.into(),
            policy: SimPolicy::Current,
            requests: 10_000,
            seed: 1,
            k: 10,
            config: ServeConfig::default(),
            store: None,
            exposure_log: None,
            event_log: None,
            window_days: 7.0,
            threads: None,
            trace: None,
            progress: Progress::quiet(),
        }
    }
}

/// A figure and its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// 95% interval (normal approximation, delta method for ratios).
    pub ci95: [f64; 2],
}

/// What a simulation measured (the JSON of `recsys-train simulate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulateReport {
    /// The policy served.
    pub policy: String,
    /// The model version(s) that answered (control first).
    pub model_versions: Vec<String>,
    /// Requests served.
    pub requests: u64,
    /// Sessions.
    pub sessions: u64,
    /// Distinct users.
    pub users: u64,
    /// Items shown.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Add-to-carts.
    pub add_to_carts: u64,
    /// Purchase events (items bought).
    pub purchases: u64,
    /// Sessions with a purchase (orders).
    pub orders: u64,
    /// Total order value.
    pub revenue: f64,
    /// Clicks / impressions.
    pub ctr: Estimate,
    /// Sessions with a purchase / sessions.
    pub conversion: Estimate,
    /// Revenue / orders.
    pub aov: Estimate,
    /// Revenue / sessions.
    pub revenue_per_session: Estimate,
    /// The expected CTR of what was shown (mean click probability).
    pub true_ctr: f64,
    /// The seed.
    pub seed: u64,
    /// Wall-clock seconds of the simulation (after opening the recommender).
    pub seconds: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// With a `canary` in the serving configuration: its state at the end of the run (after one
    /// last evaluation). The canary moves on wall-clock time, so a run with a canary is not
    /// deterministic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::canary::CanaryReport>,
    /// Every request, when [`SimulateOptions::trace`] asked for it (not part of the JSON).
    #[serde(skip)]
    pub trace: Option<Trace>,
}

/// One planned session.
#[derive(Debug, Clone, Copy)]
struct Plan {
    user: u32,
    device: u8,
    hour: u8,
    pages: u8,
    now_ms: i64,
}

/// What one session did.
#[derive(Debug, Clone, Copy, Default)]
struct SessionStats {
    impressions: u64,
    clicks: u64,
    carts: u64,
    purchases: u64,
    revenue: f64,
    true_clicks: f64,
}

fn session_rng(seed: u64, session: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ splitmix(session.wrapping_add(0x5eed))))
}

/// Plans sessions until `requests` pages.
fn plan(seed: u64, users: u32, requests: u64, start_ms: i64, window_ms: f64) -> Vec<Plan> {
    let hours = hour_weights();
    let total_h: f64 = hours.iter().sum();
    let mut out = Vec::new();
    let mut left = requests;
    let mut s = 0u64;
    while left > 0 {
        let mut rng = session_rng(seed, s);
        let user = rng.random_range(0..users);
        let x: f64 = rng.random();
        let device = if x < DEVICES[0].1 {
            0
        } else if x < DEVICES[0].1 + DEVICES[1].1 {
            1
        } else {
            2
        };
        let mut y = rng.random::<f64>() * total_h;
        let mut hour = 23u8;
        for (h, w) in hours.iter().enumerate() {
            if y < *w {
                hour = h as u8;
                break;
            }
            y -= w;
        }
        let mut pages = 1u64;
        while pages < 10 && rng.random::<f64>() < 0.6 {
            pages += 1;
        }
        let pages = pages.min(left);
        left -= pages;
        out.push(Plan {
            user,
            device,
            hour,
            pages: pages as u8,
            now_ms: 0,
        });
        s += 1;
    }
    let n = out.len().max(1) as f64;
    for (s, p) in out.iter_mut().enumerate() {
        p.now_ms = start_ms + (window_ms * s as f64 / n) as i64;
    }
    out
}

/// Everything a worker needs.
struct World {
    rec: Recommender,
    model: ClickModel,
    user_ids: Vec<String>,
    ages: Vec<Option<String>>,
    regions: Vec<Option<String>>,
    item_index: ahash::AHashMap<String, u32>,
    item_ids: Vec<String>,
    seed: u64,
    k: usize,
    trace: Option<TraceTarget>,
}

impl World {
    fn profile(&self, u: u32) -> UserProfile {
        let u = u as usize;
        self.model
            .user(&self.user_ids[u], self.ages[u].as_deref(), self.regions[u].as_deref())
    }

    /// Runs session `s` of plan `p`.
    fn session(&self, s: u64, p: &Plan, profile: &UserProfile) -> Result<(SessionStats, Vec<TracedRequest>)> {
        let mut rng = session_rng(self.seed ^ 0xc1c4, s);
        let user_id = &self.user_ids[p.user as usize];
        let device = DEVICES[p.device as usize].0;
        let session_id = format!("sim-{s:x}");
        let favourite = profile.favorites[0].map(|c| self.model.categories()[c as usize].clone());
        let mut stats = SessionStats::default();
        let mut traced = Vec::new();
        let mut last_click: Option<u32> = None;
        for page_no in 0..p.pages {
            let now_ms = p.now_ms + i64::from(page_no) * 60_000;
            let page = match (page_no, last_click, &favourite) {
                (0, _, _) => "home".to_string(),
                (_, Some(i), _) => format!("product:{}", self.item_ids[i as usize]),
                (_, None, Some(c)) if rng.random::<bool>() => format!("category:{c}"),
                _ => "home".to_string(),
            };
            let query = RecQuery {
                k: Some(self.k),
                context: Some(page.clone()),
                device: Some(device.to_string()),
                hour: Some(p.hour),
                // Seeded ids: an exploration draw (seeded by the id) is the same in every run.
                request_id: Some(format!("sim{:x}-{s:x}-{page_no}", self.seed)),
                ..Default::default()
            };
            let served = self.rec.recommend_served(user_id, &query)?;
            let answer = &served.recs;
            let mut events = Vec::new();
            last_click = None;
            let ctx_at = |position| ClickContext {
                position,
                device,
                hour: p.hour,
                page: Some(&page),
                now_ms,
            };
            let mut shown = Vec::new();
            for (position, item) in answer.items.iter().enumerate() {
                stats.impressions += 1;
                let Some(&i) = self.item_index.get(&item.item_id) else {
                    continue;
                };
                let p_click = self.model.click_prob(profile, i as usize, &ctx_at(position));
                stats.true_clicks += p_click;
                let clicked = rng.random::<f64>() < p_click;
                if self.trace.is_some() {
                    shown.push(TracedSlot {
                        item: i,
                        propensity: served.propensities.as_ref().map_or(1.0, |q| q[position]),
                        clicked,
                    });
                }
                if !clicked {
                    continue;
                }
                stats.clicks += 1;
                last_click.get_or_insert(i);
                let price = self.model.item(i as usize).price;
                let event = |kind: &str, quantity: Option<u32>| EventIn {
                    user_id: user_id.clone(),
                    item_id: item.item_id.clone(),
                    event_type: kind.to_string(),
                    timestamp: None,
                    session_id: Some(session_id.clone()),
                    price: Some(price),
                    quantity,
                    rating: None,
                    request_id: Some(answer.request_id.clone()),
                };
                events.push(event("click", None));
                if rng.random::<f64>() < self.model.cart_prob(profile, i as usize) {
                    stats.carts += 1;
                    let q = self.model.quantity(i as usize, rng.random());
                    events.push(event("add_to_cart", Some(q)));
                    if rng.random::<f64>() < self.model.purchase_prob(profile, i as usize, device) {
                        stats.purchases += 1;
                        stats.revenue += self.model.order_value(i as usize, q);
                        events.push(event("purchase", Some(q)));
                    }
                }
            }
            if let Some(t) = self.trace {
                let ranking = &served.ranked.recs.items;
                let target: Vec<u32> = ranking
                    .iter()
                    .skip(t.offset)
                    .take(shown.len())
                    .filter_map(|it| self.item_index.get(&it.item_id).copied())
                    .collect();
                let target_clicks = target
                    .iter()
                    .enumerate()
                    .map(|(pos, &i)| self.model.click_prob(profile, i as usize, &ctx_at(pos)))
                    .sum();
                traced.push(TracedRequest {
                    session: s as u32,
                    page: page_no,
                    shown,
                    target,
                    target_clicks,
                });
            }
            if !events.is_empty() {
                self.rec.ingest(&events)?;
            }
        }
        Ok((stats, traced))
    }
}

/// Sums over the units of one ratio Σy / Σx, with its delta-method 95% interval.
fn ratio(units: &[(f64, f64)]) -> Estimate {
    let n = units.len() as f64;
    let (sy, sx): (f64, f64) = units.iter().fold((0.0, 0.0), |a, u| (a.0 + u.0, a.1 + u.1));
    if n < 2.0 || sx <= 0.0 {
        let v = if sx > 0.0 { sy / sx } else { 0.0 };
        return Estimate { value: v, ci95: [v, v] };
    }
    let r = sy / sx;
    let (my, mx) = (sy / n, sx / n);
    let (mut vy, mut vx, mut cxy) = (0.0, 0.0, 0.0);
    for &(y, x) in units {
        vy += (y - my) * (y - my);
        vx += (x - mx) * (x - mx);
        cxy += (y - my) * (x - mx);
    }
    let d = n - 1.0;
    let var = ((vy / d) - 2.0 * r * (cxy / d) + r * r * (vx / d)).max(0.0) / (n * mx * mx);
    let half = 1.96 * var.sqrt();
    Estimate {
        value: r,
        ci95: [r - half, r + half],
    }
}

/// Runs the simulation (see the module docs).
pub fn simulate(opts: &SimulateOptions) -> Result<SimulateReport> {
    if opts.requests == 0 {
        return Err(Error::bad("requests", 0, "must be at least 1"));
    }
    if opts.k == 0 || opts.k > crate::config::MAX_K {
        return Err(Error::bad(
            "k",
            opts.k,
            format!("must be in 1..={}", crate::config::MAX_K),
        ));
    }
    if !(opts.window_days.is_finite() && opts.window_days >= 0.0) {
        return Err(Error::bad("window_days", opts.window_days, "must be finite and >= 0"));
    }
    let ds = Dataset::open(&opts.data)?;
    if ds.users.is_empty() || ds.items.is_empty() {
        return Err(Error::bad(
            "data",
            opts.data.display(),
            "the dataset has no users or no items",
        ));
    }
    let model = recsys_train::generate::click_model_of(&ds);
    let start_ms = ds.manifest.partitions.values().map(|p| p.max_ts).max().unwrap_or(0);
    let mut config = opts.config.clone();
    // Off: the refresh would make answers depend on wall-clock timing.
    config.trending_refresh_seconds = u64::MAX / 4_000;
    config.item_features_refresh_ms = u64::MAX / 4;
    if opts.exposure_log.is_some() {
        config.exposure_log = opts.exposure_log.clone();
    }
    if opts.event_log.is_some() {
        config.event_log = opts.event_log.clone();
    }
    let mut ro = RecommenderOptions::new(&opts.registry);
    ro.data = Some(opts.data.clone());
    ro.store = opts.store.clone();
    ro.config = config;
    match &opts.policy {
        SimPolicy::Current => {}
        SimPolicy::Version(v) => ro.model = Some(v.clone()),
        SimPolicy::Popular => ro.popular_only = true,
    }
    let rec = Recommender::open(ro)?;
    let status = rec.status()?;
    let mut model_versions = vec![status.model_version.clone()];
    model_versions.extend(status.candidate_version.clone());

    let n_users = ds.users.len() as u32;
    let plans = plan(
        opts.seed,
        n_users,
        opts.requests,
        start_ms,
        opts.window_days * 86_400_000.0,
    );
    let mut by_user: Vec<Vec<u32>> = vec![Vec::new(); n_users as usize];
    for (s, p) in plans.iter().enumerate() {
        by_user[p.user as usize].push(s as u32);
    }
    let active: Vec<(u32, Vec<u32>)> = by_user
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(u, v)| (u as u32, v))
        .collect();
    let item_ids: Vec<String> = ds.items.ids.ids().to_vec();
    let world = Arc::new(World {
        rec,
        model,
        user_ids: ds.users.ids.ids().to_vec(),
        ages: ds.users.age_bucket.clone(),
        regions: ds.users.region.clone(),
        item_index: item_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect(),
        item_ids,
        seed: opts.seed,
        k: opts.k,
        trace: opts.trace,
    });
    drop(ds);
    let bar = opts.progress.bar(opts.requests, "simulate");
    let started = Instant::now();
    type UserRun = Vec<(u32, SessionStats, Vec<TracedRequest>)>;
    let run = || -> Result<Vec<UserRun>> {
        active
            .par_iter()
            .map(|(u, sessions)| {
                let profile = world.profile(*u);
                let mut out = Vec::with_capacity(sessions.len());
                for &s in sessions {
                    let p = &plans[s as usize];
                    let (stats, traced) = world.session(u64::from(s), p, &profile)?;
                    out.push((s, stats, traced));
                    bar.inc(u64::from(p.pages));
                }
                Ok(out)
            })
            .collect()
    };
    let mut per_user = match opts.threads {
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build()
            .map_err(|e| Error::Internal(format!("thread pool: {e}")))?
            .install(run)?,
        None => run()?,
    };
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Per-user sums, in user order (deterministic).
    let mut units_ctr = Vec::with_capacity(per_user.len());
    let mut units_conv = Vec::with_capacity(per_user.len());
    let mut units_aov = Vec::with_capacity(per_user.len());
    let mut units_rps = Vec::with_capacity(per_user.len());
    let mut total = SessionStats::default();
    let mut orders = 0u64;
    let mut true_clicks = 0.0;
    for sessions in &per_user {
        let (mut imp, mut clk, mut conv, mut rev) = (0.0, 0.0, 0.0, 0.0);
        for (_, st, _) in sessions {
            imp += st.impressions as f64;
            clk += st.clicks as f64;
            let converted = st.purchases > 0;
            conv += f64::from(u8::from(converted));
            rev += st.revenue;
            orders += u64::from(converted);
            total.impressions += st.impressions;
            total.clicks += st.clicks;
            total.carts += st.carts;
            total.purchases += st.purchases;
            total.revenue += st.revenue;
            true_clicks += st.true_clicks;
        }
        let n = sessions.len() as f64;
        units_ctr.push((clk, imp));
        units_conv.push((conv, n));
        units_aov.push((rev, conv));
        units_rps.push((rev, n));
    }
    let trace = opts.trace.map(|_| {
        let mut all: Vec<(u32, Vec<TracedRequest>)> = per_user
            .iter_mut()
            .flat_map(|v| v.iter_mut().map(|(s, _, t)| (*s, std::mem::take(t))))
            .collect();
        all.sort_unstable_by_key(|(s, _)| *s);
        Trace {
            requests: all.into_iter().flat_map(|(_, t)| t).collect(),
            item_ids: world.item_ids.clone(),
        }
    });
    let canary = match world.rec.canary() {
        Some(c) => {
            c.evaluate_now()?;
            Some(c.report()?)
        }
        None => None,
    };
    let report = SimulateReport {
        policy: opts.policy.name(),
        model_versions,
        requests: opts.requests,
        sessions: plans.len() as u64,
        users: per_user.len() as u64,
        impressions: total.impressions,
        clicks: total.clicks,
        add_to_carts: total.carts,
        purchases: total.purchases,
        orders,
        revenue: total.revenue,
        ctr: ratio(&units_ctr),
        conversion: ratio(&units_conv),
        aov: ratio(&units_aov),
        revenue_per_session: ratio(&units_rps),
        true_ctr: if total.impressions > 0 {
            true_clicks / total.impressions as f64
        } else {
            0.0
        },
        seed: opts.seed,
        seconds,
        requests_per_second: opts.requests as f64 / seconds.max(1e-9),
        canary,
        trace,
    };
    opts.progress.summary(format!(
        "simulated {} requests in {:.1}s ({:.0}/s): ctr {:.4} (true {:.4}), conversion {:.4}, aov {:.2}",
        report.requests,
        seconds,
        report.requests_per_second,
        report.ctr.value,
        report.true_ctr,
        report.conversion.value,
        report.aov.value
    ));
    Ok(report)
}

/// The simulator as the `ctr_sim` gate's [`recsys_train::train::CtrSimulator`]: a version's CTR
/// is [`simulate`]'s with that version serving (default configuration, no store, 10 slots).
#[derive(Debug, Clone, Default)]
pub struct GateSimulator {
    /// Serving configuration the versions run with.
    pub config: ServeConfig,
    /// Progress reporting.
    pub progress: Progress,
}

impl recsys_train::train::CtrSimulator for GateSimulator {
    fn simulated_ctr(
        &self,
        data: &std::path::Path,
        registry: &std::path::Path,
        version: &str,
        requests: u64,
        seed: u64,
    ) -> recsys_train::Result<f64> {
        let mut o = SimulateOptions::new(data, registry);
        o.policy = SimPolicy::Version(version.to_string());
        o.requests = requests;
        o.seed = seed;
        o.config = self.config.clone();
        o.progress = self.progress;
        simulate(&o).map(|r| r.ctr.value).map_err(into_train_error)
    }
}

/// The simulator as a source of logged bandit feedback where the truth is known
/// ([`recsys_train::ope::BanditSource`]), for the accuracy and interval coverage of the
/// off-policy estimators: a draw runs [`simulate`] with `options` (which should configure an
/// exploration policy, else only the deterministic target has support), traces every request,
/// and returns its impressions as logged rows (context = request, reward = click, the serving
/// policy's propensity), the target of `options.trace` (default: offset 0, the policy without
/// exploration) as a [`recsys_train::ope::RankingPolicy`], and as truth the target's expected
/// CTR under the click model on the drawn contexts ([`Trace::target_ctr`]).
#[derive(Debug, Clone)]
pub struct SimulatorBandit {
    /// The simulation; `requests`, `seed` and `trace` are set per draw.
    pub options: SimulateOptions,
}

impl recsys_train::ope::BanditSource for SimulatorBandit {
    fn name(&self) -> String {
        let x = self
            .options
            .config
            .exploration
            .as_ref()
            .map_or("no exploration".to_string(), |x| {
                format!("epsilon {} over the top {}", x.epsilon, x.pool)
            });
        format!(
            "click simulator ({}, {x}, target: the ranking from position {})",
            self.options.data.display(),
            self.options.trace.map_or(0, |t| t.offset) + 1
        )
    }

    fn draw(&self, requests: usize, seed: u64) -> recsys_train::Result<recsys_train::ope::Draw> {
        use recsys_train::ope::{Draw, LoggedData, LoggedRow, RankingPolicy};
        let mut o = self.options.clone();
        o.requests = requests as u64;
        o.seed = seed;
        o.trace = Some(o.trace.unwrap_or(TraceTarget { offset: 0 }));
        let report = simulate(&o).map_err(into_train_error)?;
        let trace = report
            .trace
            .ok_or_else(|| recsys_train::Error::Internal("the simulation returned no trace".into()))?;
        let truth = trace.target_ctr();
        let contexts = trace.requests.len();
        let mut rows = Vec::with_capacity(contexts * o.k);
        let mut lists = Vec::with_capacity(trace.requests.len());
        for (c, req) in trace.requests.into_iter().enumerate() {
            for (p, slot) in req.shown.iter().enumerate() {
                rows.push(LoggedRow {
                    context: c as u32,
                    position: p as u32 + 1,
                    action: slot.item,
                    reward: f64::from(u8::from(slot.clicked)),
                    propensity: slot.propensity,
                });
            }
            lists.push(req.target);
        }
        let mut data = LoggedData::new(rows, trace.item_ids, self.name())?;
        // Requests that showed nothing still count.
        data.contexts = contexts;
        Ok(Draw {
            data,
            policy: Box::new(RankingPolicy {
                name: format!("ranking from position {}", o.trace.map_or(0, |t| t.offset) + 1),
                lists,
            }),
            truth,
        })
    }
}

/// A serving error as recsys-train's (for commands and hooks that report recsys-train errors): the
/// user's errors stay user errors, naming the same field.
pub fn into_train_error(e: Error) -> recsys_train::Error {
    match e {
        Error::Core(e) => recsys_train::Error::Core(e),
        Error::BadRequest { field, value, reason } => recsys_train::Error::arg(field, value, reason),
        Error::NotFound { kind, id } => recsys_train::Error::arg(kind, id, "not found"),
        other => recsys_train::Error::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_and_sum_to_the_requests() {
        let a = plan(7, 100, 1_000, 0, 86_400_000.0);
        let b = plan(7, 100, 1_000, 0, 86_400_000.0);
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.user == y.user && x.hour == y.hour && x.pages == y.pages)
        );
        assert_eq!(a.iter().map(|p| u64::from(p.pages)).sum::<u64>(), 1_000);
        let mean = 1_000.0 / a.len() as f64;
        assert!((2.0..3.0).contains(&mean), "{mean}");
        assert!(a.windows(2).all(|w| w[0].now_ms <= w[1].now_ms));
        let c = plan(8, 100, 1_000, 0, 86_400_000.0);
        assert!(a.iter().zip(&c).any(|(x, y)| x.user != y.user));
    }

    #[test]
    fn ratio_interval_matches_a_hand_computation() {
        // y = (1, 2, 3), x = (2, 2, 2): R = 1, the ratio of means, var = s_y^2 / (n x̄^2) = 1 / 12.
        let e = ratio(&[(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]);
        assert!((e.value - 1.0).abs() < 1e-12);
        let half = 1.96 * (1.0f64 / 12.0).sqrt();
        assert!((e.ci95[1] - 1.0 - half).abs() < 1e-12, "{e:?}");
        // A single unit: no interval.
        assert_eq!(ratio(&[(1.0, 4.0)]).ci95, [0.25, 0.25]);
        assert_eq!(ratio(&[]).value, 0.0);
    }

    #[test]
    fn policies_parse() {
        assert_eq!(SimPolicy::parse("current").unwrap(), SimPolicy::Current);
        assert_eq!(SimPolicy::parse("popular").unwrap(), SimPolicy::Popular);
        assert_eq!(SimPolicy::parse("1.0.2").unwrap(), SimPolicy::Version("1.0.2".into()));
        assert!(SimPolicy::parse(" ").is_err());
    }
}
