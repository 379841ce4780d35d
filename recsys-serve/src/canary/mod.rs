//! The canary on evidence: the candidate version serves a growing share of users (the config's
//! `canary.steps`, 5% → 25% → 100% by default), moved by the server itself, in every replica
//! alike.
//!
//! - [`controller`]: the decision rule, a pure state machine (hold, advance, promote, roll back
//!   with the figures that decided it).
//! - [`shared`]: where the state and the counters live — Redis when Redis is the store, files
//!   under the `file:` store's directory (or the registry's, without a store), or memory.
//! - [`Canary`] (this module): each replica counts its calls (requests, exposures, impressions,
//!   server errors, a latency histogram) and the clicks and purchases posted back, per variant,
//!   in memory; every `canary.evaluate_every_seconds` it adds those counts to the shared counters
//!   of the current step, reads the shared state, evaluates, and when the decision is not a hold,
//!   writes the next state with a compare-and-set (one replica wins, the others see its state at
//!   their next evaluation). Routing reads the cached state's percent: a rollback sets it to 0
//!   (everyone on control), a promotion to 100. No request waits for the shared state.
//!
//! Events are attributed to the variant the user is assigned at the time of the event (the
//! assignment is stable while the percent grows; users only ever move from control to candidate).

pub mod controller;
pub mod shared;

use crate::config::CanaryConfig;
use crate::metrics::Metrics;
use crate::recommender::Variant;
use crate::{Error, Result};
use controller::{Action, CanaryState, Decision, Phase, StepCounts, VariantCounts};
use serde::{Deserialize, Serialize};
use shared::SharedState;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What `GET /admin/canary` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// The configuration it runs with.
    pub config: CanaryConfig,
    /// Where the shared state lives.
    pub shared: String,
    /// The shared state as this replica last read it (phase, step, percent, history).
    pub state: CanaryState,
    /// The evaluation of the current step's figures now (usually a hold saying what is missing).
    pub evaluation: Option<Decision>,
}

/// One replica's side of a canary (see the module docs).
pub struct Canary {
    config: CanaryConfig,
    shared: Box<dyn SharedState>,
    registry: PathBuf,
    metrics: Arc<Metrics>,
    /// `f64` bits of the candidate percent routing uses.
    percent: AtomicU64,
    /// Whether calls and events are still counted (the canary is running).
    counting: AtomicBool,
    /// The shared state as last read, with its raw JSON (the compare-and-set's expected value).
    state: RwLock<Option<(String, CanaryState)>>,
    /// Counts not yet added to the shared counters.
    pending: Mutex<StepCounts>,
    /// The latest evaluation.
    last: Mutex<Option<Decision>>,
    /// Serialises [`Self::evaluate_now`] within this replica.
    evaluating: Mutex<()>,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary")
            .field("candidate", &self.config.candidate)
            .field("shared", &self.shared.describe())
            .finish()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Canary {
    /// A canary over `shared`; the state is read (or created) at once, so the first requests are
    /// already routed by it. `registry` is where a promotion is written when
    /// `promote_in_registry` is set.
    pub fn new(
        config: CanaryConfig,
        shared: Box<dyn SharedState>,
        registry: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        config.validate()?;
        let c = Canary {
            percent: AtomicU64::new(0f64.to_bits()),
            counting: AtomicBool::new(false),
            config,
            shared,
            registry,
            metrics,
            state: RwLock::new(None),
            pending: Mutex::new(StepCounts::default()),
            last: Mutex::new(None),
            evaluating: Mutex::new(()),
        };
        c.read_state(now_ms())?;
        Ok(c)
    }

    /// The configuration.
    pub fn config(&self) -> &CanaryConfig {
        &self.config
    }

    /// How often [`Self::evaluate_now`] runs in the background.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.config.evaluate_every_seconds)
    }

    /// Share of users on the candidate now, percent.
    pub fn percent(&self) -> f64 {
        f64::from_bits(self.percent.load(Ordering::Relaxed))
    }

    fn state_key(&self) -> String {
        format!("{}.{}.state", self.config.candidate, self.config.salt)
    }

    fn counts_key(&self, epoch: u64, variant: &str) -> String {
        format!("{}.{}.e{epoch}.{variant}", self.config.candidate, self.config.salt)
    }

    fn with_pending(&self, variant: Variant, f: impl FnOnce(&mut VariantCounts)) {
        if !self.counting.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            match variant {
                Variant::Candidate => f(&mut p.candidate),
                Variant::Control => f(&mut p.control),
            }
        }
    }

    /// Counts one recommendation call of `variant`: `Ok(items shown)`, or `Err(server_error)`
    /// (client errors are not counted at all).
    pub fn record_call(&self, variant: Variant, outcome: std::result::Result<usize, bool>, latency: Duration) {
        if matches!(outcome, Err(false)) {
            return;
        }
        self.with_pending(variant, |c| {
            c.requests += 1;
            match outcome {
                Ok(items) => {
                    c.exposures += 1;
                    c.impressions += items as u64;
                }
                Err(_) => c.errors += 1,
            }
            c.observe_latency(latency.as_secs_f64() * 1000.0);
        });
    }

    /// Counts clicks and purchases of a user of `variant`.
    pub fn record_events(&self, variant: Variant, clicks: u64, conversions: u64) {
        if clicks + conversions == 0 {
            return;
        }
        self.with_pending(variant, |c| {
            c.clicks += clicks;
            c.conversions += conversions;
        });
    }

    /// Reads the shared state (creating it at the first step when absent) into the local cache.
    fn read_state(&self, now: i64) -> Result<(String, CanaryState)> {
        let key = self.state_key();
        let raw = match self.shared.get(&key)? {
            Some(raw) => raw,
            None => {
                let fresh = CanaryState::start(&self.config, now);
                let json = serde_json::to_string(&fresh).map_err(|e| Error::Internal(e.to_string()))?;
                if self.shared.compare_and_set(&key, None, &json)? {
                    tracing::info!(candidate = %self.config.candidate, percent = fresh.percent, "canary started");
                }
                self.shared
                    .get(&key)?
                    .ok_or_else(|| Error::Internal(format!("canary state {key} vanished")))?
            }
        };
        let state: CanaryState =
            serde_json::from_str(&raw).map_err(|e| Error::Internal(format!("canary state {key} unreadable: {e}")))?;
        self.cache(&raw, &state);
        Ok((raw, state))
    }

    fn cache(&self, raw: &str, state: &CanaryState) {
        self.percent.store(state.percent.to_bits(), Ordering::Relaxed);
        self.counting.store(state.phase == Phase::Running, Ordering::Relaxed);
        self.metrics.canary_percent.set(state.percent);
        self.metrics.canary_step.set(state.step as i64);
        self.metrics.canary_epoch.set(state.epoch as i64);
        if let Ok(mut s) = self.state.write() {
            *s = Some((raw.to_string(), state.clone()));
        }
    }

    /// Adds this replica's pending counts to the shared counters of the step it counted them in;
    /// on failure they stay pending (merged with newer ones), never dropped.
    fn flush(&self) -> Result<()> {
        let epoch = match self.state.read() {
            Ok(s) => s.as_ref().map(|s| s.1.epoch),
            Err(_) => None,
        };
        let Some(epoch) = epoch else { return Ok(()) };
        let taken = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Err(Error::Internal("canary counts lock poisoned".into())),
        };
        let mut done = [false, false];
        let mut result = Ok(());
        for (i, (variant, counts)) in [("control", &taken.control), ("candidate", &taken.candidate)]
            .into_iter()
            .enumerate()
        {
            let fields = counts.fields();
            if fields.is_empty() {
                done[i] = true;
                continue;
            }
            match self.shared.add(&self.counts_key(epoch, variant), &fields) {
                Ok(()) => done[i] = true,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if (!done[0] || !done[1])
            && let Ok(mut guard) = self.pending.lock()
        {
            let p = &mut *guard;
            for (i, (mine, back)) in [(&mut p.control, &taken.control), (&mut p.candidate, &taken.candidate)]
                .into_iter()
                .enumerate()
            {
                if !done[i] {
                    for (f, v) in back.fields() {
                        mine.add_field(&f, v);
                    }
                }
            }
        }
        result
    }

    /// The current step's counts, summed over every replica.
    fn step_counts(&self, epoch: u64) -> Result<StepCounts> {
        let mut out = StepCounts::default();
        for (variant, counts) in [("control", &mut out.control), ("candidate", &mut out.candidate)] {
            for (f, v) in self.shared.totals(&self.counts_key(epoch, variant))? {
                counts.add_field(&f, v);
            }
        }
        Ok(out)
    }

    /// One evaluation: publish this replica's counts, read the shared state and the step's
    /// figures, decide, and apply a non-hold decision with a compare-and-set. Returns the decision
    /// this replica applied (`None`: a hold, or another replica moved the state first).
    pub fn evaluate_now(&self) -> Result<Option<Decision>> {
        let _one = self
            .evaluating
            .lock()
            .map_err(|_| Error::Internal("canary lock poisoned".into()))?;
        let now = now_ms();
        let flushed = self.flush();
        let (raw, state) = self.read_state(now)?;
        flushed?;
        if state.phase != Phase::Running {
            return Ok(None);
        }
        let counts = self.step_counts(state.epoch)?;
        let decision = controller::evaluate(&self.config, &state, &counts, now);
        if let Ok(mut l) = self.last.lock() {
            *l = Some(decision.clone());
        }
        if decision.action == Action::Hold {
            tracing::debug!(reason = %decision.reason, "canary holds");
            return Ok(None);
        }
        let next = controller::apply(&self.config, &state, &decision);
        let json = serde_json::to_string(&next).map_err(|e| Error::Internal(e.to_string()))?;
        if !self.shared.compare_and_set(&self.state_key(), Some(&raw), &json)? {
            self.read_state(now)?;
            return Ok(None);
        }
        self.cache(&json, &next);
        let f = &decision.figures;
        tracing::info!(
            action = decision.action.as_str(),
            candidate = %self.config.candidate,
            from_percent = decision.from_percent,
            to_percent = decision.to_percent,
            reason = %decision.reason,
            candidate_exposures = f.candidate.counts.exposures,
            control_exposures = f.control.counts.exposures,
            candidate_ctr = ?f.candidate.ctr,
            control_ctr = ?f.control.ctr,
            candidate_conversion = ?f.candidate.conversion,
            control_conversion = ?f.control.conversion,
            candidate_error_rate = ?f.candidate.error_rate,
            candidate_p99_ms = ?f.candidate.p99_ms,
            ctr_p_value = ?f.ctr.as_ref().map(|t| t.p_value),
            conversion_p_value = ?f.conversion.as_ref().map(|t| t.p_value),
            "canary decision"
        );
        self.metrics.canary_decision(decision.action.as_str());
        if decision.action == Action::Promote && self.config.promote_in_registry {
            match recsys_core::registry::Registry::open(&self.registry).and_then(|r| r.promote(&self.config.candidate))
            {
                Ok(()) => {
                    tracing::info!(version = %self.config.candidate, "canary promoted the candidate in the registry")
                }
                Err(e) => tracing::error!(
                    "canary could not promote {} in the registry: {e}",
                    self.config.candidate
                ),
            }
        }
        Ok(Some(decision))
    }

    /// The state, configuration and current figures (`GET /admin/canary`). Reads the shared
    /// state and counters afresh (best effort: the cached state when the store fails).
    pub fn report(&self) -> Result<CanaryReport> {
        let now = now_ms();
        let state = match self.read_state(now) {
            Ok((_, s)) => s,
            Err(e) => {
                tracing::warn!("canary state unreadable, reporting the cached one: {e}");
                self.state
                    .read()
                    .ok()
                    .and_then(|s| s.as_ref().map(|s| s.1.clone()))
                    .ok_or(e)?
            }
        };
        let evaluation = match self.step_counts(state.epoch) {
            Ok(counts) => Some(controller::evaluate(&self.config, &state, &counts, now)),
            Err(_) => self.last.lock().ok().and_then(|l| l.clone()),
        };
        Ok(CanaryReport {
            config: self.config.clone(),
            shared: self.shared.describe(),
            state,
            evaluation,
        })
    }
}
