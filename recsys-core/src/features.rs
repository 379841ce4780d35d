//! The ADR's offline/online features, computed by one state machine.
//!
//! Offline (`recsys-train features`) and online (the server's session state) feed the *same*
//! [`FeatureEngine`] with [`FeatureEvent`]s and read [`UserFeatures`] / [`ItemFeatures`] snapshots
//! from it, so training and serving cannot skew: there is no second implementation to drift.
//!
//! Every snapshot is point-in-time: [`FeatureEngine::user_features`] at `as_of` refuses to answer
//! when an event at or after `as_of` has already been ingested, so a caller cannot leak the future
//! into a feature by accident. Windows are half-open, `[as_of - window, as_of)`.
//!
//! | feature | definition |
//! |---|---|
//! | `total_purchases_30d` | purchase events in the 30 days before `as_of` |
//! | `avg_order_value` | purchase value (unit price × quantity) over orders; an order is a run of purchases with the same session (else the same UTC day) |
//! | `favorite_categories` | top 3 categories by event-type-weighted count (ties: lower category index) |
//! | `browsing_velocity` | events per day over the 7 days before `as_of` |
//! | `recent_items` | the last 50 interactions, newest first |
//! | `popularity_score` | event-type-weighted count, exponentially decayed with a 7-day half-life to `as_of` |
//! | `trending_score_1h` | event-type-weighted count in the hour before `as_of` |
//! | `avg_rating` | mean of ratings carried by events, else the catalogue's `avg_rating` |
//! | `price_bucket` | catalogue price decile (boundaries from the catalogue) |

use crate::schema::{DAY_MS, EventType, HOUR_MS};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Parameters of the feature definitions; saved next to every feature set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Window of `total_purchases_30d`.
    pub purchase_window_ms: i64,
    /// Window of `browsing_velocity`.
    pub velocity_window_ms: i64,
    /// Window of `trending_score_1h`.
    pub trending_window_ms: i64,
    /// Half-life of the decayed `popularity_score`.
    pub popularity_half_life_ms: i64,
    /// Length of the recent-item history kept per user.
    pub history_len: usize,
    /// How many favourite categories to report.
    pub top_categories: usize,
    /// Weight of each event type (view, click, add_to_cart, purchase) in weighted counts.
    pub event_weights: [f64; 4],
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            purchase_window_ms: 30 * DAY_MS,
            velocity_window_ms: 7 * DAY_MS,
            trending_window_ms: HOUR_MS,
            popularity_half_life_ms: 7 * DAY_MS,
            history_len: 50,
            top_categories: 3,
            event_weights: [1.0, 2.0, 4.0, 8.0],
        }
    }
}

impl FeatureConfig {
    /// Checks that every window is positive and every weight finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("purchase_window_ms", self.purchase_window_ms),
            ("velocity_window_ms", self.velocity_window_ms),
            ("trending_window_ms", self.trending_window_ms),
            ("popularity_half_life_ms", self.popularity_half_life_ms),
        ] {
            if v <= 0 {
                return Err(Error::invalid(name, v, "must be positive"));
            }
        }
        if self.history_len == 0 {
            return Err(Error::invalid("history_len", 0, "must be positive"));
        }
        if let Some(w) = self.event_weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::invalid("event_weights", w, "must be finite and >= 0"));
        }
        Ok(())
    }

    fn weight(&self, t: EventType) -> f64 {
        self.event_weights[t as usize]
    }
}

/// Static item attributes the features need, indexed by dense item index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemCatalog {
    /// Category index per item (`None`: unknown).
    pub category: Vec<Option<u32>>,
    /// Catalogue unit price per item.
    pub price: Vec<Option<f64>>,
    /// Catalogue average rating per item.
    pub avg_rating: Vec<Option<f64>>,
    /// Ascending upper bounds of price buckets 0..n-1; prices above the last are bucket n.
    pub price_bounds: Vec<f64>,
}

impl ItemCatalog {
    /// Builds a catalogue and derives decile price-bucket bounds from the known prices.
    pub fn new(category: Vec<Option<u32>>, price: Vec<Option<f64>>, avg_rating: Vec<Option<f64>>) -> Self {
        let price_bounds = quantile_bounds(&price, 10);
        ItemCatalog {
            category,
            price,
            avg_rating,
            price_bounds,
        }
    }

    /// Number of items the catalogue knows.
    pub fn len(&self) -> usize {
        self.category.len()
    }

    /// True when the catalogue has no items.
    pub fn is_empty(&self) -> bool {
        self.category.is_empty()
    }

    /// The price bucket of a price (0 = cheapest decile).
    pub fn price_bucket_of(&self, price: f64) -> u8 {
        self.price_bounds.partition_point(|&b| b < price) as u8
    }

    fn category_of(&self, item: u32) -> Option<u32> {
        self.category.get(item as usize).copied().flatten()
    }

    fn price_of(&self, item: u32) -> Option<f64> {
        self.price.get(item as usize).copied().flatten()
    }
}

/// Upper bounds of `buckets` equal-count buckets over the known values (at most `buckets - 1`
/// distinct bounds).
pub fn quantile_bounds(values: &[Option<f64>], buckets: usize) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() || buckets < 2 {
        return Vec::new();
    }
    v.sort_by(f64::total_cmp);
    let mut bounds: Vec<f64> = (1..buckets)
        .map(|q| v[(q * v.len() / buckets).min(v.len() - 1)])
        .collect();
    bounds.dedup();
    bounds
}

/// One interaction, as the feature engine sees it (dense indices, canonical units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureEvent {
    /// Dense user index.
    pub user: u32,
    /// Dense item index.
    pub item: u32,
    /// What happened.
    pub event_type: EventType,
    /// UTC milliseconds.
    pub timestamp_ms: i64,
    /// Unit price paid/shown, if the event carried one.
    pub price: Option<f64>,
    /// Quantity, if the event carried one (1 otherwise).
    pub quantity: Option<u32>,
    /// Order grouping key ([`crate::schema::order_key`]).
    pub order_key: u64,
    /// Explicit rating carried by the event.
    pub rating: Option<f32>,
}

impl FeatureEvent {
    /// Builds an event from canonical fields; the order key comes from the session (else the day),
    /// exactly as [`crate::schema::order_key`] defines it, offline and online alike.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        user: u32,
        item: u32,
        event_type: EventType,
        timestamp_ms: i64,
        price: Option<f64>,
        quantity: Option<u32>,
        session: Option<&str>,
        rating: Option<f32>,
    ) -> Self {
        FeatureEvent {
            user,
            item,
            event_type,
            timestamp_ms,
            price,
            quantity,
            order_key: crate::schema::order_key(session, timestamp_ms),
            rating,
        }
    }
}

/// A user's features at one point in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserFeatures {
    /// Dense user index.
    pub user: u32,
    /// Purchase events in the purchase window before `as_of`.
    pub total_purchases_30d: u32,
    /// Mean order value (`None` before the first order).
    pub avg_order_value: Option<f64>,
    /// Up to `top_categories` category indices, strongest first.
    pub favorite_categories: Vec<u32>,
    /// Events per day over the velocity window.
    pub browsing_velocity: f64,
    /// Recent interactions, newest first: (item, event type, timestamp).
    pub recent: Vec<(u32, EventType, i64)>,
}

/// An item's features at one point in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemFeatures {
    /// Dense item index.
    pub item: u32,
    /// Decayed weighted interaction count at `as_of`.
    pub popularity_score: f64,
    /// Mean event rating, else catalogue rating.
    pub avg_rating: Option<f64>,
    /// Catalogue price decile.
    pub price_bucket: Option<u8>,
    /// Weighted interactions in the trending window before `as_of`.
    pub trending_score_1h: f64,
    /// Category index.
    pub category: Option<u32>,
}

/// Per-user running state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    last_ts: Option<i64>,
    purchases: VecDeque<i64>,
    events: VecDeque<i64>,
    order_value_sum: f64,
    order_count: u32,
    last_order_key: Option<u64>,
    categories: Vec<(u32, f64)>,
    recent: VecDeque<(u32, EventType, i64)>,
}

/// Per-item running state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemState {
    last_ts: Option<i64>,
    popularity: f64,
    popularity_ts: i64,
    trending: VecDeque<(i64, f64)>,
    rating_sum: f64,
    rating_count: u32,
}

/// Inserts `v` keeping the deque sorted (events normally arrive in order: O(1) push).
/// At most this many events are kept in a user's purchase and velocity windows (8 bytes each):
/// `browsing_velocity` and `total_purchases_30d` saturate there (a rate no person reaches: 14,000
/// events a day for a week), and a client posting events for one user id cannot grow its state
/// without bound.
pub const MAX_USER_WINDOW_EVENTS: usize = 100_000;

fn insert_sorted<T: Copy>(q: &mut VecDeque<T>, v: T, key: impl Fn(&T) -> i64) {
    let k = key(&v);
    if q.back().is_none_or(|b| key(b) <= k) {
        q.push_back(v);
    } else {
        let pos = q.partition_point(|x| key(x) <= k);
        q.insert(pos, v);
    }
}

/// Drops entries older than `cutoff` from the front of a sorted deque.
fn evict_before<T>(q: &mut VecDeque<T>, cutoff: i64, key: impl Fn(&T) -> i64) {
    while q.front().is_some_and(|x| key(x) < cutoff) {
        q.pop_front();
    }
}

fn check_as_of(last_ts: Option<i64>, as_of: i64, what: &str) -> Result<()> {
    match last_ts {
        Some(t) if t >= as_of => Err(Error::invalid(
            "as_of",
            as_of,
            format!(
                "an event at {t} ms was already ingested for this {what}; features must only see events strictly before as_of"
            ),
        )),
        _ => Ok(()),
    }
}

impl UserState {
    /// Applies one event of this user.
    pub fn ingest(&mut self, cfg: &FeatureConfig, catalog: &ItemCatalog, ev: &FeatureEvent) {
        let t = ev.timestamp_ms;
        let newest = self.last_ts.map_or(t, |l| l.max(t));
        self.last_ts = Some(newest);
        if ev.event_type == EventType::Purchase {
            insert_sorted(&mut self.purchases, t, |x| *x);
            let price = ev.price.or_else(|| catalog.price_of(ev.item)).unwrap_or(0.0);
            self.order_value_sum += price * f64::from(ev.quantity.unwrap_or(1));
            if self.last_order_key != Some(ev.order_key) {
                self.order_count += 1;
                self.last_order_key = Some(ev.order_key);
            }
        }
        insert_sorted(&mut self.events, t, |x| *x);
        // Keep only what any snapshot at or after the newest event can still need.
        evict_before(&mut self.purchases, newest - cfg.purchase_window_ms, |x| *x);
        evict_before(&mut self.events, newest - cfg.velocity_window_ms, |x| *x);
        // A bounded window per user, whatever one client posts: beyond the cap the oldest go.
        for q in [&mut self.purchases, &mut self.events] {
            while q.len() > MAX_USER_WINDOW_EVENTS {
                q.pop_front();
            }
        }
        if let Some(c) = catalog.category_of(ev.item) {
            let w = cfg.weight(ev.event_type);
            match self.categories.iter_mut().find(|(k, _)| *k == c) {
                Some((_, s)) => *s += w,
                None => self.categories.push((c, w)),
            }
        }
        insert_sorted(&mut self.recent, (ev.item, ev.event_type, t), |x| x.2);
        while self.recent.len() > cfg.history_len {
            self.recent.pop_front();
        }
    }

    /// The user's features at `as_of` (all ingested events must be strictly before it).
    pub fn snapshot(&self, cfg: &FeatureConfig, user: u32, as_of: i64) -> Result<UserFeatures> {
        check_as_of(self.last_ts, as_of, "user")?;
        let in_window = |q: &VecDeque<i64>, w: i64| q.len() - q.partition_point(|&x| x < as_of - w);
        let mut cats = self.categories.clone();
        cats.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(UserFeatures {
            user,
            total_purchases_30d: in_window(&self.purchases, cfg.purchase_window_ms) as u32,
            avg_order_value: (self.order_count > 0).then(|| self.order_value_sum / f64::from(self.order_count)),
            favorite_categories: cats.iter().take(cfg.top_categories).map(|c| c.0).collect(),
            browsing_velocity: in_window(&self.events, cfg.velocity_window_ms) as f64 * DAY_MS as f64
                / cfg.velocity_window_ms as f64,
            recent: self.recent.iter().rev().copied().collect(),
        })
    }
}

impl ItemState {
    /// Applies one event on this item.
    pub fn ingest(&mut self, cfg: &FeatureConfig, ev: &FeatureEvent) {
        let t = ev.timestamp_ms;
        let w = cfg.weight(ev.event_type);
        let h = cfg.popularity_half_life_ms as f64;
        match self.last_ts {
            None => {
                self.popularity = w;
                self.popularity_ts = t;
            }
            Some(_) if t >= self.popularity_ts => {
                self.popularity = self.popularity * (-((t - self.popularity_ts) as f64) / h).exp2() + w;
                self.popularity_ts = t;
            }
            Some(_) => self.popularity += w * (-((self.popularity_ts - t) as f64) / h).exp2(),
        }
        let newest = self.last_ts.map_or(t, |l| l.max(t));
        self.last_ts = Some(newest);
        // Events of one millisecond share one entry: the window's sums are the same, and a burst
        // of events on one item (a flood of posts stamped with the server's clock) costs one entry
        // per millisecond instead of one per event.
        match self.trending.back_mut() {
            Some(back) if back.0 == t => back.1 += w,
            _ => insert_sorted(&mut self.trending, (t, w), |x| x.0),
        }
        evict_before(&mut self.trending, newest - cfg.trending_window_ms, |x| x.0);
        if let Some(r) = ev.rating {
            self.rating_sum += f64::from(r);
            self.rating_count += 1;
        }
    }

    /// The item's features at `as_of` (all ingested events must be strictly before it).
    pub fn snapshot(&self, cfg: &FeatureConfig, catalog: &ItemCatalog, item: u32, as_of: i64) -> Result<ItemFeatures> {
        check_as_of(self.last_ts, as_of, "item")?;
        let popularity_score = match self.last_ts {
            None => 0.0,
            Some(_) => {
                self.popularity * (-((as_of - self.popularity_ts) as f64) / cfg.popularity_half_life_ms as f64).exp2()
            }
        };
        let start = self.trending.partition_point(|x| x.0 < as_of - cfg.trending_window_ms);
        let trending_score_1h = self.trending.range(start..).map(|x| x.1).sum();
        let avg_rating = if self.rating_count > 0 {
            Some(self.rating_sum / f64::from(self.rating_count))
        } else {
            catalog.avg_rating.get(item as usize).copied().flatten()
        };
        Ok(ItemFeatures {
            item,
            popularity_score,
            avg_rating,
            price_bucket: catalog.price_of(item).map(|p| catalog.price_bucket_of(p)),
            trending_score_1h,
            category: catalog.category_of(item),
        })
    }
}

/// The feature state of a whole population: one [`UserState`] per user and one [`ItemState`] per
/// item, grown on demand as unseen indices arrive. It serialises whole (the online feature snapshot
/// that pre-computation publishes into the store, [`crate::store::FeatureSnapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEngine {
    config: FeatureConfig,
    catalog: ItemCatalog,
    users: Vec<UserState>,
    items: Vec<ItemState>,
}

impl FeatureEngine {
    /// An empty engine over a catalogue.
    pub fn new(config: FeatureConfig, catalog: ItemCatalog) -> Result<Self> {
        config.validate()?;
        let items = vec![ItemState::default(); catalog.len()];
        Ok(FeatureEngine {
            config,
            catalog,
            users: Vec::new(),
            items,
        })
    }

    /// The feature definitions in use.
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// The catalogue in use.
    pub fn catalog(&self) -> &ItemCatalog {
        &self.catalog
    }

    /// Number of user slots (highest user index seen + 1).
    pub fn num_users(&self) -> usize {
        self.users.len()
    }

    /// Number of item slots.
    pub fn num_items(&self) -> usize {
        self.items.len()
    }

    /// Forgets everything about `user` (its state becomes that of a user without events), so that
    /// its index can be given to another user; a no-op for an index beyond the known users.
    pub fn forget_user(&mut self, user: u32) {
        if let Some(state) = self.users.get_mut(user as usize) {
            *state = UserState::default();
        }
    }

    /// Applies one event to its user's and its item's state.
    pub fn ingest(&mut self, ev: &FeatureEvent) {
        let u = ev.user as usize;
        if u >= self.users.len() {
            self.users.resize_with(u + 1, UserState::default);
        }
        let i = ev.item as usize;
        if i >= self.items.len() {
            self.items.resize_with(i + 1, ItemState::default);
        }
        self.users[u].ingest(&self.config, &self.catalog, ev);
        self.items[i].ingest(&self.config, ev);
    }

    /// Applies a batch of events. Users and items are updated on two threads (the same per-entity functions as [`FeatureEngine::ingest`], in the same order).
    pub fn ingest_all(&mut self, events: &[FeatureEvent]) {
        if let Some(max_u) = events.iter().map(|e| e.user).max()
            && max_u as usize >= self.users.len()
        {
            self.users.resize_with(max_u as usize + 1, UserState::default);
        }
        if let Some(max_i) = events.iter().map(|e| e.item).max()
            && max_i as usize >= self.items.len()
        {
            self.items.resize_with(max_i as usize + 1, ItemState::default);
        }
        let (cfg, catalog) = (&self.config, &self.catalog);
        let (users, items) = (&mut self.users, &mut self.items);
        std::thread::scope(|s| {
            s.spawn(|| {
                for ev in events {
                    users[ev.user as usize].ingest(cfg, catalog, ev);
                }
            });
            for ev in events {
                items[ev.item as usize].ingest(cfg, ev);
            }
        });
    }

    /// The user's features at `as_of`; a never-seen user gets empty features.
    pub fn user_features(&self, user: u32, as_of: i64) -> Result<UserFeatures> {
        match self.users.get(user as usize) {
            Some(s) => s.snapshot(&self.config, user, as_of),
            None => UserState::default().snapshot(&self.config, user, as_of),
        }
    }

    /// The item's features at `as_of`; an item without events still gets its catalogue features.
    pub fn item_features(&self, item: u32, as_of: i64) -> Result<ItemFeatures> {
        match self.items.get(item as usize) {
            Some(s) => s.snapshot(&self.config, &self.catalog, item, as_of),
            None => ItemState::default().snapshot(&self.config, &self.catalog, item, as_of),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::order_key;

    fn ev(user: u32, item: u32, t: EventType, ts: i64) -> FeatureEvent {
        FeatureEvent {
            user,
            item,
            event_type: t,
            timestamp_ms: ts,
            price: None,
            quantity: None,
            order_key: order_key(None, ts),
            rating: None,
        }
    }

    fn catalog() -> ItemCatalog {
        ItemCatalog::new(
            vec![Some(0), Some(1), Some(1), None],
            vec![Some(10.0), Some(20.0), Some(30.0), None],
            vec![Some(4.5), None, None, None],
        )
    }

    #[test]
    fn user_windows_are_half_open_and_exact() {
        let cfg = FeatureConfig::default();
        let mut e = FeatureEngine::new(cfg.clone(), catalog()).unwrap();
        let t0 = 100 * DAY_MS;
        e.ingest(&ev(0, 0, EventType::Purchase, t0)); // exactly 30 days before as_of: inside
        e.ingest(&ev(0, 1, EventType::Purchase, t0 + DAY_MS));
        e.ingest(&ev(0, 1, EventType::View, t0 + 29 * DAY_MS));
        let as_of = t0 + 30 * DAY_MS;
        let f = e.user_features(0, as_of).unwrap();
        assert_eq!(f.total_purchases_30d, 2);
        // One millisecond later the first purchase has left the window.
        assert_eq!(e.user_features(0, as_of + 1).unwrap().total_purchases_30d, 1);
        // Two orders on two days: (10 + 20) / 2.
        assert_eq!(f.avg_order_value, Some(15.0));
        // Category 1: purchase 8 + view 1 = 9 beats category 0: 8.
        assert_eq!(f.favorite_categories, vec![1, 0]);
        // One event (the view) within the 7 days before as_of: 1/7 per day.
        assert!((f.browsing_velocity - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(f.recent[0], (1, EventType::View, t0 + 29 * DAY_MS));
        assert_eq!(f.recent.len(), 3);
    }

    #[test]
    fn snapshot_refuses_to_see_the_future() {
        let mut e = FeatureEngine::new(FeatureConfig::default(), catalog()).unwrap();
        e.ingest(&ev(0, 0, EventType::View, 1000));
        assert!(e.user_features(0, 1001).is_ok());
        let err = e.user_features(0, 1000).unwrap_err();
        assert!(err.to_string().contains("as_of"), "{err}");
        assert!(e.item_features(0, 1000).is_err());
    }

    #[test]
    fn orders_group_by_session_and_use_quantity() {
        let mut e = FeatureEngine::new(FeatureConfig::default(), catalog()).unwrap();
        let mut a = ev(0, 0, EventType::Purchase, 10);
        a.order_key = order_key(Some("s"), 10);
        a.quantity = Some(3);
        let mut b = ev(0, 1, EventType::Purchase, 20);
        b.order_key = a.order_key;
        b.price = Some(5.0);
        e.ingest(&a);
        e.ingest(&b);
        // One order: 3 x 10 + 1 x 5.
        assert_eq!(e.user_features(0, 30).unwrap().avg_order_value, Some(35.0));
    }

    #[test]
    fn one_users_windows_are_bounded() {
        let mut e = FeatureEngine::new(FeatureConfig::default(), catalog()).unwrap();
        let t = 50 * DAY_MS;
        for k in 0..(MAX_USER_WINDOW_EVENTS as i64 + 500) {
            e.ingest(&ev(0, 1, EventType::Purchase, t + k));
        }
        assert_eq!(e.users[0].events.len(), MAX_USER_WINDOW_EVENTS);
        assert_eq!(e.users[0].purchases.len(), MAX_USER_WINDOW_EVENTS);
        let f = e.user_features(0, t + DAY_MS).unwrap();
        assert_eq!(f.total_purchases_30d as usize, MAX_USER_WINDOW_EVENTS);
    }

    #[test]
    fn a_burst_in_one_millisecond_costs_one_trending_entry() {
        let mut e = FeatureEngine::new(FeatureConfig::default(), catalog()).unwrap();
        let t = 50 * DAY_MS;
        for u in 0..10_000 {
            e.ingest(&ev(u % 7, 1, EventType::View, t));
        }
        e.ingest(&ev(0, 1, EventType::Click, t + 1));
        e.ingest(&ev(0, 1, EventType::View, t + 1));
        e.ingest(&ev(0, 1, EventType::View, t - 5));
        assert_eq!(e.items[1].trending.len(), 3, "{:?}", e.items[1].trending);
        let f = e.item_features(1, t + 2).unwrap();
        assert_eq!(f.trending_score_1h, 10_000.0 + 2.0 + 1.0 + 1.0);
    }

    #[test]
    fn item_features_decay_trend_and_rate() {
        let cfg = FeatureConfig::default();
        let mut e = FeatureEngine::new(cfg.clone(), catalog()).unwrap();
        let t = 50 * DAY_MS;
        e.ingest(&ev(0, 1, EventType::Purchase, t));
        e.ingest(&ev(1, 1, EventType::View, t + 30 * 60_000));
        let mut r = ev(2, 1, EventType::Click, t + 59 * 60_000);
        r.rating = Some(3.0);
        e.ingest(&r);
        let f = e.item_features(1, t + HOUR_MS).unwrap();
        // The purchase is exactly one hour old: outside [as_of - 1h, as_of)? No: inside (half-open).
        assert_eq!(f.trending_score_1h, 8.0 + 1.0 + 2.0);
        let g = e.item_features(1, t + HOUR_MS + 1).unwrap();
        assert_eq!(g.trending_score_1h, 3.0);
        assert_eq!(f.avg_rating, Some(3.0));
        assert_eq!(f.category, Some(1));
        // One half-life later the score halves.
        let p0 = e.item_features(1, t + HOUR_MS).unwrap().popularity_score;
        let p1 = e
            .item_features(1, t + HOUR_MS + cfg.popularity_half_life_ms)
            .unwrap()
            .popularity_score;
        assert!((p1 - p0 / 2.0).abs() < 1e-9, "{p0} {p1}");
        // Catalogue fallbacks for an item without events.
        let z = e.item_features(0, t + HOUR_MS).unwrap();
        assert_eq!((z.popularity_score, z.avg_rating), (0.0, Some(4.5)));
        assert_eq!(e.item_features(3, 1).unwrap().price_bucket, None);
    }

    #[test]
    fn out_of_order_events_give_the_same_windows() {
        let cfg = FeatureConfig::default();
        let events: Vec<_> = (0..20)
            .map(|k| ev(0, (k % 3) as u32, EventType::ALL[k % 4], 1_000 * k as i64))
            .collect();
        let mut a = FeatureEngine::new(cfg.clone(), catalog()).unwrap();
        events.iter().for_each(|x| a.ingest(x));
        let mut b = FeatureEngine::new(cfg, catalog()).unwrap();
        events.iter().rev().for_each(|x| b.ingest(x));
        let (fa, fb) = (a.user_features(0, 50_000).unwrap(), b.user_features(0, 50_000).unwrap());
        assert_eq!(fa.total_purchases_30d, fb.total_purchases_30d);
        assert_eq!(fa.favorite_categories, fb.favorite_categories);
        assert_eq!(fa.recent, fb.recent);
        let (ia, ib) = (a.item_features(1, 50_000).unwrap(), b.item_features(1, 50_000).unwrap());
        assert!((ia.popularity_score - ib.popularity_score).abs() < 1e-9);
        assert_eq!(ia.trending_score_1h, ib.trending_score_1h);
    }

    #[test]
    fn batch_ingest_equals_event_by_event() {
        let cfg = FeatureConfig::default();
        let events: Vec<_> = (0..200)
            .map(|k| ev((k % 7) as u32, (k % 4) as u32, EventType::ALL[k % 4], 997 * k as i64))
            .collect();
        let mut a = FeatureEngine::new(cfg.clone(), catalog()).unwrap();
        events.iter().for_each(|x| a.ingest(x));
        let mut b = FeatureEngine::new(cfg, catalog()).unwrap();
        b.ingest_all(&events);
        for u in 0..7 {
            assert_eq!(
                a.user_features(u, 1 << 40).unwrap(),
                b.user_features(u, 1 << 40).unwrap()
            );
        }
        for i in 0..4 {
            assert_eq!(
                a.item_features(i, 1 << 40).unwrap(),
                b.item_features(i, 1 << 40).unwrap()
            );
        }
    }

    #[test]
    fn config_and_buckets_validate() {
        let cfg = FeatureConfig {
            velocity_window_ms: 0,
            ..Default::default()
        };
        let err = FeatureEngine::new(cfg, ItemCatalog::default()).unwrap_err();
        assert!(err.to_string().contains("velocity_window_ms"));
        let prices: Vec<Option<f64>> = (1..=100).map(|p| Some(p as f64)).collect();
        let c = ItemCatalog::new(vec![None; 100], prices, vec![None; 100]);
        assert_eq!(c.price_bounds.len(), 9);
        assert_eq!(c.price_bucket_of(1.0), 0);
        assert_eq!(c.price_bucket_of(100.0), 9);
    }
}
