//! Prometheus metrics of the service (`GET /metrics`): latency histograms per pipeline stage and
//! end to end, request and error counts, cache hits, store fallbacks, the served model versions,
//! the A/B variant counts and the exposure log's written and dropped records.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Label: the pipeline stage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `session`, `candidates`, `rerank`, `total`.
    pub stage: &'static str,
}

/// Labels: HTTP route and status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    /// The route pattern.
    pub route: &'static str,
    /// `2xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

/// Label: the route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route pattern.
    pub route: &'static str,
}

/// Label: a cache result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Label: why a fallback was taken.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabel {
    /// `store_error`, `store_miss`, `session_error`, `store_skipped` (circuit open), `popular`.
    pub reason: &'static str,
}

/// Label: the A/B variant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabel {
    /// `control` or `candidate`.
    pub variant: &'static str,
}

/// Label: a canary decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `advance`, `promote` or `roll_back`.
    pub action: &'static str,
}

/// Labels of the model-info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    /// Registry version.
    pub version: String,
    /// The variant it serves.
    pub variant: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 20 µs .. ~1.3 s.
    Histogram::new(exponential_buckets(20e-6, 2.0, 17))
}

/// Every metric of the service, registered in one [`Registry`].
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status class.
    pub requests: Family<RequestLabel, Counter>,
    /// HTTP end-to-end latency per route.
    pub http_latency: HistogramFamily<RouteLabel>,
    /// Library latency per pipeline stage (`total` = the whole library call).
    pub stages: HistogramFamily<StageLabel>,
    /// Response-cache look-ups.
    pub cache: Family<CacheLabel, Counter>,
    /// Fallbacks taken.
    pub fallbacks: Family<FallbackLabel, Counter>,
    /// Recommendations per A/B variant.
    pub variants: Family<VariantLabel, Counter>,
    /// 1 for each served model version and its variant.
    pub model_info: Family<ModelLabel, Gauge>,
    /// Events accepted.
    pub events: Counter,
    /// Successful and failed reloads.
    pub reloads: Family<CacheLabel, Counter>,
    /// Exposure records written (flushed) to the exposure log.
    pub exposure_written: Counter,
    /// Exposure records dropped: the writer's queue was full, or a write failed.
    pub exposure_dropped: Counter,
    /// Share of users on the canary's candidate, percent (as this replica last read the state).
    pub canary_percent: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The canary's step index.
    pub canary_step: Gauge,
    /// The canary's transition count (steps, promotion, rollback).
    pub canary_epoch: Gauge,
    /// Canary decisions this replica applied, by action.
    pub canary_decisions: Family<ActionLabel, Counter>,
    /// HTTP handlers that panicked (answered with a 500), by route: a bug, always worth an alert.
    pub panics: Family<RouteLabel, Counter>,
    /// Open HTTP connections.
    pub connections: Gauge,
    /// HTTP connections closed at once because `http.max_connections` were open.
    pub connections_refused: Counter,
    /// Requests that did not complete within `http.request_timeout_ms` (answered 503), by route.
    pub request_timeouts: Family<RouteLabel, Counter>,
    /// API requests shed (answered 503 at once) because `http.max_in_flight` were running or the
    /// queueing delay was over `http.max_queue_ms`, by route.
    pub shed: Family<RouteLabel, Counter>,
    /// How late the server's async runtime last ran a task that became ready, in seconds.
    pub queue_delay: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (prefix `recsys_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("recsys");
        let m = Metrics {
            requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            stages: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            cache: Family::default(),
            fallbacks: Family::default(),
            variants: Family::default(),
            model_info: Family::default(),
            events: Counter::default(),
            reloads: Family::default(),
            exposure_written: Counter::default(),
            exposure_dropped: Counter::default(),
            canary_percent: Gauge::default(),
            canary_step: Gauge::default(),
            canary_epoch: Gauge::default(),
            canary_decisions: Family::default(),
            panics: Family::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            request_timeouts: Family::default(),
            shed: Family::default(),
            queue_delay: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route and status class",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP end-to-end latency by route",
            m.http_latency.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "Recommendation pipeline latency by stage (total: the whole library call)",
            m.stages.clone(),
        );
        registry.register("cache_requests", "Response cache look-ups by result", m.cache.clone());
        registry.register("fallbacks", "Fallbacks taken, by reason", m.fallbacks.clone());
        registry.register(
            "variant_requests",
            "Recommendations served per A/B variant",
            m.variants.clone(),
        );
        registry.register("model_info", "Served model versions (value 1)", m.model_info.clone());
        registry.register("events", "Events accepted by the events API", m.events.clone());
        registry.register(
            "reloads",
            "Admin reloads by result (hit: ok, miss: failed)",
            m.reloads.clone(),
        );
        registry.register(
            "exposure_log_written",
            "Exposure records written to the exposure log",
            m.exposure_written.clone(),
        );
        registry.register(
            "exposure_log_dropped",
            "Exposure records dropped (the writer's queue was full, or a write failed)",
            m.exposure_dropped.clone(),
        );
        registry.register(
            "canary_percent",
            "Share of users on the canary's candidate, percent",
            m.canary_percent.clone(),
        );
        registry.register("canary_step", "The canary's step index", m.canary_step.clone());
        registry.register(
            "canary_epoch",
            "The canary's transitions so far (steps, promotion, rollback)",
            m.canary_epoch.clone(),
        );
        registry.register(
            "canary_decisions",
            "Canary decisions applied by this replica, by action",
            m.canary_decisions.clone(),
        );
        registry.register(
            "http_panics",
            "HTTP handlers that panicked (answered 500), by route",
            m.panics.clone(),
        );
        registry.register("http_connections", "Open HTTP connections", m.connections.clone());
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once because http.max_connections were open",
            m.connections_refused.clone(),
        );
        registry.register(
            "http_request_timeouts",
            "Requests over http.request_timeout_ms (answered 503), by route",
            m.request_timeouts.clone(),
        );
        registry.register(
            "http_shed",
            "API requests shed (503) because http.max_in_flight were running or the queueing delay was over http.max_queue_ms, by route",
            m.shed.clone(),
        );
        registry.register(
            "http_queue_delay_seconds",
            "How late the server's async runtime last ran a task that became ready (measured every 5 ms)",
            m.queue_delay.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records the time of one stage.
    pub fn stage(&self, stage: &'static str, d: Duration) {
        self.stages
            .get_or_create(&StageLabel { stage })
            .observe(d.as_secs_f64());
    }

    /// Counts one canary decision this replica applied.
    pub fn canary_decision(&self, action: &'static str) {
        self.canary_decisions.get_or_create(&ActionLabel { action }).inc();
    }

    /// Counts one fallback.
    pub fn fallback(&self, reason: &'static str) {
        self.fallbacks.get_or_create(&FallbackLabel { reason }).inc();
    }

    /// Records one HTTP request.
    pub fn http(&self, route: &'static str, status: u16, d: Duration) {
        let status = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.get_or_create(&RequestLabel { route, status }).inc();
        self.http_latency
            .get_or_create(&RouteLabel { route })
            .observe(d.as_secs_f64());
    }

    /// Replaces the model-info gauge with the given (version, variant) pairs.
    pub fn set_models(&self, models: &[(String, &'static str)]) {
        self.model_info.clear();
        for (version, variant) in models {
            self.model_info
                .get_or_create(&ModelLabel {
                    version: version.clone(),
                    variant,
                })
                .set(1);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
