//! Who may post events to `POST /api/v1/events`, and how far one client can move what every
//! visitor sees (global popularity and trending).
//!
//! Two modes, decided by whether the server has an events token (`--events-token-file` or
//! `RECSYS_EVENTS_TOKEN`):
//!
//! - **With a token**, only its holders may post (a wrong or missing token is a 401). They are
//!   trusted, typically the storefront's backend posting for the users it authenticated, and no
//!   per-client limit applies to them.
//! - **Without a token** (the default), anyone who reaches the port may post, and each client
//!   (`http.events.client`: the peer's IP address, or the first address of a header such as
//!   `X-Forwarded-For` set by a trusted proxy) is held to two limits, over which a batch is
//!   refused whole with a 429 and `Retry-After`, naming the limit:
//!   - a token bucket of `per_second` events per second with bursts of `burst` events;
//!   - at most `per_item_per_hour` events on one item per clock hour: what bounds how far one
//!     client can push an item up the popularity and trending lists.
//!
//! Refused events are neither logged nor applied, so the offline pipeline sees exactly the events
//! the online features saw (no training-serving skew). Memory is bounded: at most `max_clients`
//! buckets (the least recently seen client is forgotten first) and a fixed count-min sketch of
//! (client, item) counts, 2 MiB, emptied every hour; the sketch can only over-count, by about
//! the hour's total events divided by its 262,144 columns.

use crate::config::EventLimitsConfig;
use crate::online::EventIn;
use crate::{Error, Result};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// Rows and columns of the (client, item) count-min sketch.
const SKETCH_ROWS: usize = 4;
const SKETCH_COLUMNS: usize = 1 << 18;
const HOUR_MS: i64 = 3_600_000;

/// The per-client limits of a server without an events token.
#[derive(Debug)]
pub struct EventLimits {
    config: EventLimitsConfig,
    state: Mutex<State>,
    hasher: RandomState,
}

#[derive(Debug)]
struct State {
    /// Token buckets by client: (tokens, last refill in ms).
    buckets: lru::LruCache<String, (f64, i64)>,
    /// (client, item) event counts of the current hour, `SKETCH_ROWS` rows of `SKETCH_COLUMNS`.
    sketch: Vec<u16>,
    /// The clock hour the sketch counts (ms since the epoch / one hour).
    hour: i64,
}

impl EventLimits {
    /// The limits of `config` (already validated).
    pub fn new(config: EventLimitsConfig) -> Self {
        let clients = NonZeroUsize::new(config.max_clients).unwrap_or(NonZeroUsize::MIN);
        EventLimits {
            config,
            state: Mutex::new(State {
                buckets: lru::LruCache::new(clients),
                sketch: Vec::new(),
                hour: i64::MIN,
            }),
            hasher: RandomState::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EventLimitsConfig {
        &self.config
    }

    fn cells(&self, client: &str, item: &str) -> [usize; SKETCH_ROWS] {
        std::array::from_fn(|row| {
            let h = self.hasher.hash_one((row, client, item)) as usize;
            row * SKETCH_COLUMNS + h % SKETCH_COLUMNS
        })
    }

    /// Admits `events` from `client` at `now_ms`, counting them, or refuses the whole batch with
    /// [`Error::RateLimited`] naming the limit, counting nothing.
    pub fn admit(&self, client: &str, events: &[EventIn], now_ms: i64) -> Result<()> {
        let c = &self.config;
        let mut st = self
            .state
            .lock()
            .map_err(|_| Error::Internal("event limits lock poisoned".into()))?;
        let n = events.len() as f64;
        // The token bucket.
        let mut tokens = None;
        if c.per_second > 0.0 {
            let burst = f64::from(c.burst);
            if n > burst {
                return Err(Error::RateLimited {
                    limit: "http.events.burst".into(),
                    field: "body".into(),
                    value: events.len().to_string(),
                    reason: format!(
                        "a batch of {} events is larger than the burst of {}",
                        events.len(),
                        c.burst
                    ),
                    retry_after_s: 1,
                });
            }
            let (have, last) = st.buckets.get(client).copied().unwrap_or((burst, now_ms));
            let have = (have + (now_ms - last).max(0) as f64 / 1000.0 * c.per_second).min(burst);
            if have < n {
                let wait = ((n - have) / c.per_second).ceil().max(1.0) as u64;
                return Err(Error::RateLimited {
                    limit: "http.events.per_second".into(),
                    field: "body".into(),
                    value: events.len().to_string(),
                    reason: format!(
                        "over {} events per second from this client (bursts of {})",
                        c.per_second, c.burst
                    ),
                    retry_after_s: wait,
                });
            }
            tokens = Some(have - n);
        }
        // Events per item and hour.
        let mut cells = Vec::new();
        if c.per_item_per_hour > 0 {
            let hour = now_ms.div_euclid(HOUR_MS);
            if st.hour != hour {
                st.sketch.clear();
                st.sketch.resize(SKETCH_ROWS * SKETCH_COLUMNS, 0);
                st.hour = hour;
            }
            let mut in_batch: HashMap<&str, (usize, u32)> = HashMap::new();
            for (i, e) in events.iter().enumerate() {
                in_batch.entry(e.item_id.as_str()).or_insert((i, 0)).1 += 1;
            }
            for (item, (first, count)) in in_batch {
                let at = self.cells(client, item);
                let seen = at.iter().map(|&x| u32::from(st.sketch[x])).min().unwrap_or(0);
                if seen + count > c.per_item_per_hour {
                    return Err(Error::RateLimited {
                        limit: "http.events.per_item_per_hour".into(),
                        field: format!("[{first}].item_id"),
                        value: item.to_string(),
                        reason: format!(
                            "over {} events on one item per hour from this client",
                            c.per_item_per_hour
                        ),
                        retry_after_s: ((hour + 1) * HOUR_MS - now_ms).div_euclid(1000).max(1) as u64,
                    });
                }
                cells.push((at, count));
            }
        }
        // Admitted: count.
        if let Some(t) = tokens {
            st.buckets.put(client.to_string(), (t, now_ms));
        }
        for (at, count) in cells {
            for x in at {
                st.sketch[x] = st.sketch[x].saturating_add(count.min(u32::from(u16::MAX)) as u16);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(item: &str) -> EventIn {
        EventIn::new("u", item, "click")
    }

    fn limit_of(e: Error) -> (String, String, u64) {
        match e {
            Error::RateLimited {
                limit,
                field,
                retry_after_s,
                ..
            } => (limit, field, retry_after_s),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_token_bucket_refills_at_its_rate_and_a_refused_batch_costs_nothing() {
        let limits = EventLimits::new(EventLimitsConfig {
            per_second: 10.0,
            burst: 20,
            per_item_per_hour: 0,
            ..EventLimitsConfig::default()
        });
        let t0 = 1_700_000_000_000;
        let batch = |n: usize| (0..n).map(|i| ev(&format!("P{i}"))).collect::<Vec<_>>();
        limits.admit("a", &batch(15), t0).unwrap();
        let (limit, field, wait) = limit_of(limits.admit("a", &batch(10), t0).unwrap_err());
        assert_eq!(
            (limit.as_str(), field.as_str(), wait),
            ("http.events.per_second", "body", 1)
        );
        // Another client has its own bucket.
        limits.admit("b", &batch(20), t0).unwrap();
        // Half a second later five more tokens: ten fit now, the refused batch took none.
        limits.admit("a", &batch(10), t0 + 500).unwrap();
        assert!(limits.admit("a", &batch(1), t0 + 500).is_err());
        // Never more than the burst, however long the client was quiet.
        limits.admit("a", &batch(20), t0 + 3_600_000).unwrap();
        let (limit, _, _) = limit_of(limits.admit("a", &batch(21), t0 + 7_200_000).unwrap_err());
        assert_eq!(limit, "http.events.burst");
    }

    #[test]
    fn one_client_moves_one_item_by_at_most_the_hourly_cap() {
        let limits = EventLimits::new(EventLimitsConfig {
            per_second: 0.0,
            per_item_per_hour: 5,
            ..EventLimitsConfig::default()
        });
        let hour = 472_222 * HOUR_MS; // the start of a clock hour
        limits.admit("a", &[ev("P1"), ev("P1"), ev("P2")], hour).unwrap();
        limits.admit("a", &[ev("P1"), ev("P1"), ev("P1")], hour + 1).unwrap();
        let (limit, field, wait) = limit_of(limits.admit("a", &[ev("P2"), ev("P1")], hour + 1_000).unwrap_err());
        assert_eq!(
            (limit.as_str(), field.as_str()),
            ("http.events.per_item_per_hour", "[1].item_id")
        );
        assert_eq!(wait, 3_599, "until the next hour");
        // Other items, and other clients on the same item, are not affected.
        limits.admit("a", &vec![ev("P2"); 4], hour + 2_000).unwrap();
        limits.admit("b", &vec![ev("P1"); 5], hour + 2_000).unwrap();
        // The next hour starts afresh.
        limits.admit("a", &vec![ev("P1"); 5], hour + HOUR_MS).unwrap();
    }

    #[test]
    fn clients_beyond_max_clients_are_forgotten_least_recent_first() {
        let limits = EventLimits::new(EventLimitsConfig {
            per_second: 1.0,
            burst: 1,
            per_item_per_hour: 0,
            max_clients: 2,
            ..EventLimitsConfig::default()
        });
        let t = 1_700_000_000_000;
        for c in ["a", "b", "c"] {
            limits.admit(c, &[ev("P1")], t).unwrap();
        }
        assert!(limits.admit("c", &[ev("P1")], t).is_err(), "c is remembered");
        // a was forgotten: it starts with a full bucket again (memory stays bounded).
        limits.admit("a", &[ev("P1")], t).unwrap();
        assert_eq!(limits.state.lock().unwrap().buckets.len(), 2);
    }
}
