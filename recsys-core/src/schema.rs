//! The canonical data model: event types, column names and the stable hashing used for keys.
//!
//! Every stage (import, features, training, serving) speaks this vocabulary, so a column called
//! `timestamp` means the same thing everywhere: UTC milliseconds since the Unix epoch.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// One millisecond-denominated day.
pub const DAY_MS: i64 = 86_400_000;
/// One millisecond-denominated hour.
pub const HOUR_MS: i64 = 3_600_000;

/// What a user did with an item, in funnel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum EventType {
    /// The item was shown on a page the user looked at.
    View = 0,
    /// The user clicked through to the item.
    Click = 1,
    /// The user put the item into the cart.
    AddToCart = 2,
    /// The user bought the item.
    Purchase = 3,
}

impl EventType {
    /// All event types in funnel order (index = `as u8`).
    pub const ALL: [EventType; 4] = [
        EventType::View,
        EventType::Click,
        EventType::AddToCart,
        EventType::Purchase,
    ];

    /// The canonical spelling (`view`, `click`, `add_to_cart`, `purchase`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::View => "view",
            EventType::Click => "click",
            EventType::AddToCart => "add_to_cart",
            EventType::Purchase => "purchase",
        }
    }

    /// The event type for a code produced by `as u8`.
    pub fn from_code(code: u8) -> Result<Self> {
        Self::ALL
            .get(code as usize)
            .copied()
            .ok_or_else(|| Error::invalid(columns::EVENT_TYPE, code, "event type code must be 0..=3"))
    }

    /// Parses the canonical spelling; a few common aliases (`cart`, `addtocart`, `transaction`,
    /// `buy`) are accepted, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        let eq = |a: &str| t.eq_ignore_ascii_case(a);
        if eq("view") || eq("impression") || eq("pageview") {
            Some(EventType::View)
        } else if eq("click") {
            Some(EventType::Click)
        } else if eq("add_to_cart") || eq("addtocart") || eq("cart") || eq("add-to-cart") {
            Some(EventType::AddToCart)
        } else if eq("purchase") || eq("transaction") || eq("buy") || eq("order") {
            Some(EventType::Purchase)
        } else {
            None
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| {
            Error::invalid(
                columns::EVENT_TYPE,
                s,
                "expected one of view, click, add_to_cart, purchase",
            )
        })
    }
}

/// Canonical column names of the dataset tables.
pub mod columns {
    /// String user id as imported.
    pub const USER_ID: &str = "user_id";
    /// Dense u32 user index from the dataset's id dictionary.
    pub const USER_IDX: &str = "user_idx";
    /// String item id as imported.
    pub const ITEM_ID: &str = "item_id";
    /// Dense u32 item index from the dataset's id dictionary.
    pub const ITEM_IDX: &str = "item_idx";
    /// `view | click | add_to_cart | purchase`.
    pub const EVENT_TYPE: &str = "event_type";
    /// UTC milliseconds since the epoch.
    pub const TIMESTAMP: &str = "timestamp";
    /// Optional session id.
    pub const SESSION_ID: &str = "session_id";
    /// Optional unit price paid or shown.
    pub const PRICE: &str = "price";
    /// Optional quantity (purchases, carts).
    pub const QUANTITY: &str = "quantity";
    /// Optional explicit rating given with the event.
    pub const RATING: &str = "rating";
    /// Optional context: device (mobile, desktop, ...).
    pub const DEVICE: &str = "device";
    /// Optional context: page (home, search, product, ...).
    pub const PAGE: &str = "page";
    /// Item category.
    pub const CATEGORY: &str = "category";
    /// Optional item brand.
    pub const BRAND: &str = "brand";
    /// Optional catalogue average rating.
    pub const AVG_RATING: &str = "avg_rating";
    /// Optional stock level.
    pub const INVENTORY: &str = "inventory";
    /// Optional item creation time (UTC ms).
    pub const CREATED_AT: &str = "created_at";
    /// Optional free-text title.
    pub const TITLE: &str = "title";
    /// Optional user age bucket.
    pub const AGE_BUCKET: &str = "age_bucket";
    /// Optional user region.
    pub const REGION: &str = "region";
    /// Optional user signup time (UTC ms).
    pub const SIGNUP_TS: &str = "signup_ts";
}

/// A stable 64-bit FNV-1a hash: identical on every platform and in every process, unlike the
/// std hasher, so offline and online code derive the same keys.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The key that groups purchase lines into one order: the session when there is one, else the
/// user's UTC day (a basket, as in the Ta-Feng data).
pub fn order_key(session: Option<&str>, timestamp_ms: i64) -> u64 {
    match session {
        Some(s) if !s.is_empty() => stable_hash(s.as_bytes()),
        _ => (timestamp_ms.div_euclid(DAY_MS) as u64) ^ 0x8000_0000_0000_0000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_round_trips_and_rejects_unknown() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(EventType::from_code(t as u8).unwrap(), t);
        }
        assert_eq!(EventType::parse(" Cart "), Some(EventType::AddToCart));
        let err = "wishlist".parse::<EventType>().unwrap_err();
        assert!(err.to_string().contains("wishlist"), "{err}");
        assert!(err.to_string().contains("event_type"), "{err}");
        assert!(EventType::from_code(4).is_err());
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(stable_hash(b""), 0xcbf29ce484222325);
        assert_eq!(stable_hash(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn order_key_groups_by_session_else_by_day() {
        assert_eq!(order_key(Some("s1"), 0), order_key(Some("s1"), 5 * DAY_MS));
        assert_ne!(order_key(Some("s1"), 0), order_key(Some("s2"), 0));
        assert_eq!(order_key(None, 10), order_key(Some(""), DAY_MS - 1));
        assert_ne!(order_key(None, 10), order_key(None, DAY_MS));
    }
}
