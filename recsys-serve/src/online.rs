//! Real-time features: the offline feature engine, started from the feature snapshot published in
//! the store (or, with the `dataset` feature, warmed from a dataset directory) and kept current by
//! the events API, answering in the dataset's string ids.

use crate::{Error, Result};
use ahash::AHashMap;
use recsys_core::features::{FeatureEngine, FeatureEvent};
use recsys_core::schema::{DAY_MS, EventType};
use recsys_core::store::FeatureSnapshot;
use serde::{Deserialize, Serialize};

/// How far in the future (by the server's clock) a posted event's timestamp may be: one minute of
/// clock skew.
pub const MAX_EVENT_SKEW_MS: i64 = 60_000;

/// How old a posted event may be: 7 days. The online features decay popularity with a 7-day
/// half-life and count trending over the last hour, so an older event changes little online,
/// while a far-past (or far-future) timestamp would overflow the decay; older history belongs in
/// the dataset (`recsys-train import`).
pub const MAX_EVENT_AGE_MS: i64 = 7 * DAY_MS;

/// One event as clients post it (`POST /api/v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventIn {
    /// User id as imported.
    pub user_id: String,
    /// Item id as imported.
    pub item_id: String,
    /// `view | click | add_to_cart | purchase`.
    pub event_type: String,
    /// UTC milliseconds; the server's clock when absent. At most [`MAX_EVENT_SKEW_MS`] ahead of
    /// the server's clock and at most [`MAX_EVENT_AGE_MS`] behind it.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// Session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Unit price.
    #[serde(default)]
    pub price: Option<f64>,
    /// Quantity.
    #[serde(default)]
    pub quantity: Option<u32>,
    /// Rating.
    #[serde(default)]
    pub rating: Option<f32>,
    /// The `request_id` of the recommendation response this event came from (optional
    /// attribution; at most 64 bytes). Written to the event log as its last column.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl EventIn {
    /// An event of `event_type` (`view`, `click`, `add_to_cart`, `purchase`) by `user_id` on
    /// `item_id`, at the server's clock, with no other field set.
    pub fn new(user_id: impl Into<String>, item_id: impl Into<String>, event_type: impl Into<String>) -> Self {
        EventIn {
            user_id: user_id.into(),
            item_id: item_id.into(),
            event_type: event_type.into(),
            timestamp: None,
            session_id: None,
            price: None,
            quantity: None,
            rating: None,
            request_id: None,
        }
    }
}

/// A user's features with string ids (`GET /api/v1/features/users/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserFeaturesOut {
    /// User id.
    pub user_id: String,
    /// The cut-off the features were computed at (UTC ms).
    pub as_of: i64,
    /// Purchases in the last 30 days.
    pub total_purchases_30d: u32,
    /// Mean order value.
    pub avg_order_value: Option<f64>,
    /// Top categories.
    pub favorite_categories: Vec<String>,
    /// Events per day over the last 7 days.
    pub browsing_velocity: f64,
    /// Recent item ids, newest first.
    pub recent_items: Vec<String>,
}

/// An item's features with string ids (`GET /api/v1/features/items/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemFeaturesOut {
    /// Item id.
    pub item_id: String,
    /// The cut-off the features were computed at (UTC ms).
    pub as_of: i64,
    /// Decayed popularity.
    pub popularity_score: f64,
    /// Weighted interactions in the last hour.
    pub trending_score_1h: f64,
    /// Mean rating.
    pub avg_rating: Option<f64>,
    /// Price decile.
    pub price_bucket: Option<u8>,
    /// Category.
    pub category: Option<String>,
}

/// The online feature state of a whole population.
#[derive(Debug)]
pub struct OnlineFeatures {
    user_index: AHashMap<String, u32>,
    user_ids: Vec<String>,
    item_index: AHashMap<String, u32>,
    item_ids: Vec<String>,
    categories: Vec<String>,
    brand_codes: Vec<Option<u32>>,
    brands: Vec<String>,
    titles: Vec<Option<String>>,
    in_stock: Option<Vec<bool>>,
    user_age: Vec<Option<String>>,
    user_region: Vec<Option<String>>,
    engine: FeatureEngine,
    latest_ts: i64,
    /// Users of the snapshot (indices below it are never evicted).
    base_users: usize,
    /// Users first seen online, least recently active first.
    online_users: lru::LruCache<u32, (), ahash::RandomState>,
    max_online_users: usize,
}

/// Default bound on the users first seen online ([`OnlineFeatures::set_max_online_users`]).
pub const DEFAULT_MAX_ONLINE_USERS: usize = 1_000_000;

impl OnlineFeatures {
    /// Starts from a published feature snapshot ([`FeatureSnapshot`], the store's online features).
    pub fn from_snapshot(snap: FeatureSnapshot) -> Result<Self> {
        snap.validate()?;
        let index = |ids: &[String]| ids.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        Ok(OnlineFeatures {
            user_index: index(&snap.user_ids),
            item_index: index(&snap.item_ids),
            item_ids: snap.item_ids,
            categories: snap.categories,
            brand_codes: snap.brand_codes,
            brands: snap.brands,
            titles: snap.titles,
            in_stock: snap.in_stock,
            user_age: snap.user_age,
            user_region: snap.user_region,
            base_users: snap.user_ids.len(),
            user_ids: snap.user_ids,
            engine: snap.engine,
            latest_ts: snap.as_of_ms - 1,
            online_users: lru::LruCache::unbounded_with_hasher(ahash::RandomState::new()),
            max_online_users: DEFAULT_MAX_ONLINE_USERS,
        })
    }

    /// Bounds the users first seen online (events for user ids the snapshot does not know) to
    /// `max` (at least 1): past it, the least recently active of them is forgotten (its features
    /// and index go to the new user), so memory stays bounded however many new ids are posted.
    /// The snapshot's users are never evicted.
    pub fn set_max_online_users(&mut self, max: usize) {
        self.max_online_users = max.max(1);
    }

    /// Loads a dataset and folds all its events, exactly as `recsys-train features` and the
    /// snapshot pre-computation publishes do (the `dataset` feature).
    #[cfg(feature = "dataset")]
    pub fn from_dataset(dir: &std::path::Path, config: recsys_core::features::FeatureConfig) -> Result<Self> {
        let ds = recsys_train::dataset::Dataset::open(dir)?;
        let snap = recsys_train::features::feature_snapshot(&ds, config, recsys_train::progress::Progress::quiet())?;
        Self::from_snapshot(snap)
    }

    /// Number of known users (including users first seen online).
    pub fn num_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of catalogue items.
    pub fn num_items(&self) -> usize {
        self.item_ids.len()
    }

    /// The dense index of a user id.
    pub fn user_index(&self, user_id: &str) -> Option<u32> {
        self.user_index.get(user_id).copied()
    }

    /// The dense index of an item id.
    pub fn item_index(&self, item_id: &str) -> Option<u32> {
        self.item_index.get(item_id).copied()
    }

    /// Item ids by dense index.
    pub fn item_ids(&self) -> &[String] {
        &self.item_ids
    }

    /// Category names by code.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// The code of a category name.
    pub fn category_code(&self, name: &str) -> Option<u32> {
        self.categories.iter().position(|c| c == name).map(|i| i as u32)
    }

    /// Brand names by code.
    pub fn brands(&self) -> &[String] {
        &self.brands
    }

    /// Category code per item.
    pub fn item_categories(&self) -> &[Option<u32>] {
        &self.engine.catalog().category
    }

    /// Brand code per item.
    pub fn item_brands(&self) -> &[Option<u32>] {
        &self.brand_codes
    }

    /// Current price per item.
    pub fn item_prices(&self) -> &[Option<f64>] {
        &self.engine.catalog().price
    }

    /// In-stock flag per item (`None`: the catalogue has no stock figures).
    pub fn in_stock(&self) -> Option<&[bool]> {
        self.in_stock.as_deref()
    }

    /// The item's title, else its id.
    pub fn item_label(&self, item: u32) -> Option<String> {
        let i = item as usize;
        self.titles
            .get(i)
            .cloned()
            .flatten()
            .or_else(|| self.item_ids.get(i).cloned())
    }

    /// Age bucket and region of a known user (as imported).
    pub fn demographics(&self, user: u32) -> (Option<&str>, Option<&str>) {
        let u = user as usize;
        (
            self.user_age.get(u).and_then(|v| v.as_deref()),
            self.user_region.get(u).and_then(|v| v.as_deref()),
        )
    }

    /// The feature engine (read access).
    pub fn engine(&self) -> &FeatureEngine {
        &self.engine
    }

    /// Checks an event against the rules of [`OnlineFeatures::ingest`] without applying it;
    /// returns the item index, event type and timestamp it would use.
    pub fn check(&self, ev: &EventIn, now_ms: i64) -> Result<(u32, EventType, i64)> {
        if ev.user_id.trim().is_empty() {
            return Err(Error::bad("user_id", &ev.user_id, "must not be empty"));
        }
        let item = *self
            .item_index
            .get(&ev.item_id)
            .ok_or_else(|| Error::bad("item_id", &ev.item_id, "not in the catalogue"))?;
        let event_type = EventType::parse(&ev.event_type).ok_or_else(|| {
            Error::bad(
                "event_type",
                &ev.event_type,
                "expected view, click, add_to_cart or purchase",
            )
        })?;
        if let Some(p) = ev.price
            && (!p.is_finite() || p < 0.0)
        {
            return Err(Error::bad("price", p, "must be a finite, non-negative number"));
        }
        if ev.quantity == Some(0) {
            return Err(Error::bad("quantity", 0, "must be at least 1"));
        }
        if let Some(r) = ev.rating
            && !r.is_finite()
        {
            return Err(Error::bad("rating", r, "must be finite"));
        }
        if let Some(id) = &ev.request_id
            && id.len() > 64
        {
            return Err(Error::bad("request_id", id, "longer than 64 bytes"));
        }
        let ts = ev.timestamp.unwrap_or(now_ms);
        if ts > now_ms.saturating_add(MAX_EVENT_SKEW_MS) {
            return Err(Error::bad("timestamp", ts, "more than a minute in the future"));
        }
        if ts < now_ms.saturating_sub(MAX_EVENT_AGE_MS) {
            return Err(Error::bad(
                "timestamp",
                ts,
                format!(
                    "more than {} days in the past (import older events with `recsys-train import`)",
                    MAX_EVENT_AGE_MS / DAY_MS
                ),
            ));
        }
        Ok((item, event_type, ts))
    }

    /// Validates and applies one event; returns the item's index. Unknown users are added;
    /// unknown items are refused (the catalogue changes with a reload, not through events).
    pub fn ingest(&mut self, ev: &EventIn, now_ms: i64) -> Result<u32> {
        let (item, event_type, ts) = self.check(ev, now_ms)?;
        let user = match self.user_index.get(&ev.user_id) {
            Some(&u) => {
                if u as usize >= self.base_users {
                    self.online_users.promote(&u);
                }
                u
            }
            None => {
                // Full: the least recently active online user's index goes to this one.
                let evict = if self.online_users.len() >= self.max_online_users {
                    self.online_users.pop_lru().map(|(old, ())| old)
                } else {
                    None
                };
                let u = match evict {
                    Some(old) => {
                        let old_id = std::mem::replace(&mut self.user_ids[old as usize], ev.user_id.clone());
                        self.user_index.remove(&old_id);
                        self.engine.forget_user(old);
                        old
                    }
                    None => {
                        self.user_ids.push(ev.user_id.clone());
                        (self.user_ids.len() - 1) as u32
                    }
                };
                self.user_index.insert(ev.user_id.clone(), u);
                self.online_users.put(u, ());
                u
            }
        };
        self.engine.ingest(&FeatureEvent::new(
            user,
            item,
            event_type,
            ts,
            ev.price,
            ev.quantity,
            ev.session_id.as_deref(),
            ev.rating,
        ));
        self.latest_ts = self.latest_ts.max(ts);
        Ok(item)
    }

    /// The cut-off for "now": after every ingested event.
    pub fn as_of(&self, now_ms: i64) -> i64 {
        now_ms.max(self.latest_ts + 1)
    }

    /// A user's features now.
    pub fn user_features(&self, user_id: &str, now_ms: i64) -> Result<UserFeaturesOut> {
        let &u = self.user_index.get(user_id).ok_or_else(|| Error::NotFound {
            kind: "user",
            id: user_id.to_string(),
        })?;
        let as_of = self.as_of(now_ms);
        let f = self.engine.user_features(u, as_of)?;
        Ok(UserFeaturesOut {
            user_id: user_id.to_string(),
            as_of,
            total_purchases_30d: f.total_purchases_30d,
            avg_order_value: f.avg_order_value,
            favorite_categories: f
                .favorite_categories
                .iter()
                .map(|&c| self.categories[c as usize].clone())
                .collect(),
            browsing_velocity: f.browsing_velocity,
            recent_items: f.recent.iter().map(|r| self.item_ids[r.0 as usize].clone()).collect(),
        })
    }

    /// An item's features now.
    pub fn item_features(&self, item_id: &str, now_ms: i64) -> Result<ItemFeaturesOut> {
        let &i = self.item_index.get(item_id).ok_or_else(|| Error::NotFound {
            kind: "item",
            id: item_id.to_string(),
        })?;
        let as_of = self.as_of(now_ms);
        let f = self.engine.item_features(i, as_of)?;
        Ok(ItemFeaturesOut {
            item_id: item_id.to_string(),
            as_of,
            popularity_score: f.popularity_score,
            trending_score_1h: f.trending_score_1h,
            avg_rating: f.avg_rating,
            price_bucket: f.price_bucket,
            category: f.category.map(|c| self.categories[c as usize].clone()),
        })
    }
}
