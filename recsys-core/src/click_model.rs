//! The [`ClickModel`]: how a (synthetic) TechShop shopper reacts to an item shown to them. One
//! definition serves both `recsys-train generate`, which writes a history carrying this behaviour,
//! and the replay simulator (`recsys-train simulate`), which lets it decide what simulated users do
//! with the recommendations the real serving pipeline returns.
//!
//! The model is pure and deterministic: everything is a function of what a dataset knows (a user's
//! id, age bucket and region; an item's id, category, price and launch time `created_at`) plus the
//! [`ClickModelParams`]. The planted effects:
//!
//! * **Preferences from demographics.** Each age bucket has a fixed affinity per category name (and
//!   each region a milder one); a user's three favourite categories are drawn from their bucket's
//!   and region's affinities by hashing the user id, and their preferred price tier is the bucket's
//!   mean tier plus a hashed normal deviation ([`AGE_TIER_MEAN`]).
//! * **Price tiers.** An item's tier is its price quintile within its category (ties by id); its
//!   relative price is its price over its category's median.
//! * **Attractiveness** of item *i* to user *u*: category fit (1.0, 0.8, 0.6 for the first, second
//!   and third favourite category, 0.12 otherwise) × tier fit (1.0 on the user's tier, 0.6 one tier
//!   off, 0.3 further) × quality (0.5 + a hashed uniform of the item id) × price sensitivity ×
//!   novelty.
//! * **Price sensitivity by segment**: × relative price^−s with s = 0.45, 0.30, 0.15, 0.10, 0.25 for
//!   the age buckets 18-24 … 55+ (0.25 when unknown), clamped to [0.4, 2.5]; purchases use 2s.
//! * **Novelty**: an item cannot be clicked before its launch; in its first weeks it is more
//!   attractive, × (1 + 0.8·e^(−age/7 days)).
//! * **Position-based examination**: a slot at 0-based position p is looked at with probability
//!   1/(1+p)^0.7 (1.0, 0.62, 0.46, … 0.20 at the tenth slot).
//! * **Device**: clicks × 0.85 on mobile, 1.15 on desktop, 1.0 on tablets (and anything else);
//!   purchase given cart × 0.8, 1.2, 1.0.
//! * **Hour of day** (the user's local hour): clicks × (1 + 0.3·bump(21h) − 0.3·bump(4h)) with
//!   bump(c) = e^(−(h−c)²/8) on the circular hour distance: evenings click more, nights less.
//! * **Page**: how much attention the surface gets: 1.0 for browsing (what `generate` writes),
//!   recommendation widgets 0.6 (search), 0.5 (product), 0.45 (category), 0.35 (cart), 0.3 (home).
//! * **Funnel**: P(click) = min(0.95, 0.45 × examination × device × hour × page × attractiveness);
//!   P(add to cart | click) = 0.12 × quality; P(purchase | cart) = min(0.95, 0.22 × tier fit ×
//!   quality × purchase price sensitivity × purchase device factor).
//! * **Basket**: the quantity bought is 1, 2 or 3 (probabilities 0.85, 0.12, 0.03; items under $30
//!   twice as likely to be bought in multiples); the order value is price × quantity.
//!
//! ```
//! use recsys_core::click_model::{ClickContext, ClickModel, ClickModelParams, ItemSpec};
//! let items = [
//!     ItemSpec { id: "P1", category: Some("laptops"), price: Some(999.0), created_at_ms: None },
//!     ItemSpec { id: "P2", category: Some("cables"), price: Some(9.99), created_at_ms: None },
//! ];
//! let model = ClickModel::new(ClickModelParams::default(), &items);
//! let user = model.user("U1", Some("25-34"), Some("north"));
//! let top = ClickContext { position: 0, device: "desktop", hour: 20, page: Some("home"), now_ms: 0 };
//! let fifth = ClickContext { position: 4, ..top };
//! assert!(model.click_prob(&user, 0, &top) > model.click_prob(&user, 0, &fifth));
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The catalogue's categories and their typical price (the median of `generate`'s log-normal prices).
pub const CATEGORIES: [(&str, f64); 24] = [
    ("smartphones", 600.0),
    ("laptops", 1100.0),
    ("headphones", 120.0),
    ("chargers", 25.0),
    ("cables", 12.0),
    ("phone-cases", 20.0),
    ("tablets", 450.0),
    ("smartwatches", 280.0),
    ("monitors", 300.0),
    ("keyboards", 70.0),
    ("mice", 40.0),
    ("tvs", 800.0),
    ("speakers", 150.0),
    ("cameras", 700.0),
    ("storage", 90.0),
    ("routers", 130.0),
    ("printers", 200.0),
    ("gaming-consoles", 450.0),
    ("video-games", 55.0),
    ("smart-home", 80.0),
    ("drones", 500.0),
    ("e-readers", 140.0),
    ("projectors", 600.0),
    ("pc-components", 250.0),
];
/// Age buckets of the synthetic users.
pub const AGE_BUCKETS: [&str; 5] = ["18-24", "25-34", "35-44", "45-54", "55+"];
/// Share of users in each age bucket.
pub const AGE_WEIGHTS: [f64; 5] = [0.18, 0.32, 0.24, 0.16, 0.10];
/// Mean preferred price tier (0 = cheapest quintile, 4 = dearest) of each age bucket.
pub const AGE_TIER_MEAN: [f64; 5] = [1.0, 1.8, 2.4, 2.6, 2.2];
/// Price sensitivity exponent of each age bucket (clicks; purchases use twice it).
pub const AGE_PRICE_SENSITIVITY: [f64; 5] = [0.45, 0.30, 0.15, 0.10, 0.25];
/// Regions of the synthetic users.
pub const REGIONS: [&str; 8] = [
    "north", "south", "east", "west", "central", "coast", "mountain", "islands",
];
/// Devices and their share of sessions.
pub const DEVICES: [(&str, f64); 3] = [("mobile", 0.55), ("desktop", 0.35), ("tablet", 0.10)];
/// Pages of the synthetic sessions.
pub const PAGES: [&str; 5] = ["home", "search", "category", "product", "cart"];
/// Price tiers (quintiles within a category).
pub const TIERS: usize = 5;
const DAY_MS: f64 = 86_400_000.0;

/// Session traffic by local hour: quiet at night, peaks at lunch and in the evening.
pub fn hour_weights() -> [f64; 24] {
    std::array::from_fn(|h| {
        let h = h as f64;
        0.2 + (-(h - 13.0).powi(2) / 8.0).exp() + 1.4 * (-(h - 20.5).powi(2) / 6.0).exp()
    })
}

/// The tunable constants of the [`ClickModel`] (defaults: the planted effects of the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickModelParams {
    /// Salt of every hash (user preferences, item quality): another salt, another world.
    pub salt: u64,
    /// Click probability of a perfectly attractive item in the first slot while browsing.
    pub base_click: f64,
    /// Examination at position p is 1/(1+p)^position_decay.
    pub position_decay: f64,
    /// Half-life-like decay (days) of the novelty boost of a newly launched item.
    pub novelty_days: f64,
    /// Size of the novelty boost at launch (× 1 + this).
    pub novelty_boost: f64,
}

impl Default for ClickModelParams {
    fn default() -> Self {
        ClickModelParams {
            salt: 0x7ec4_5409,
            base_click: 0.45,
            position_decay: 0.7,
            novelty_days: 7.0,
            novelty_boost: 0.8,
        }
    }
}

/// An item as a dataset describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemSpec<'a> {
    /// Item id.
    pub id: &'a str,
    /// Category name.
    pub category: Option<&'a str>,
    /// Unit price.
    pub price: Option<f64>,
    /// Launch time (UTC ms); `None`: always on sale.
    pub created_at_ms: Option<i64>,
}

/// What the model derives for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemProfile {
    /// Category code (index into [`ClickModel::categories`]).
    pub category: Option<u32>,
    /// Price quintile within the category (0 = cheapest).
    pub tier: u8,
    /// Unit price (0 when unknown).
    pub price: f64,
    /// Price over the category's median price (1 when unknown).
    pub rel_price: f64,
    /// Quality in [0, 1): a hash of the id.
    pub quality: f64,
    /// Launch time (UTC ms).
    pub launch_ms: Option<i64>,
}

/// What the model derives for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserProfile {
    /// Age bucket index into [`AGE_BUCKETS`] (`None`: unknown bucket).
    pub segment: Option<usize>,
    /// The three favourite category codes, most favoured first.
    pub favorites: [Option<u32>; 3],
    /// Preferred price tier.
    pub tier: u8,
}

/// The circumstances of one impression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClickContext<'a> {
    /// 0-based slot.
    pub position: usize,
    /// `mobile`, `desktop`, `tablet` (others count as tablet).
    pub device: &'a str,
    /// The user's local hour, 0–23.
    pub hour: u8,
    /// The page of a recommendation widget (`home`, `search`, `category`, `product`, `cart`, a
    /// `kind:detail` form counts by its kind); `None`: organic browsing.
    pub page: Option<&'a str>,
    /// When (UTC ms), for launches and novelty.
    pub now_ms: i64,
}

/// The click and purchase model (see the module docs).
#[derive(Debug, Clone)]
pub struct ClickModel {
    params: ClickModelParams,
    categories: Vec<String>,
    items: Vec<ItemProfile>,
}

/// FNV-1a over the parts, then a SplitMix64 finaliser: stable across platforms and releases.
pub fn stable_hash(salt: u64, parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(h)
}

/// The SplitMix64 finaliser.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal from two hashes (Box–Muller).
fn normal_of(h1: u64, h2: u64) -> f64 {
    let u1 = unit(h1).max(1e-12);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * unit(h2)).cos()
}

impl ClickModel {
    /// The model of a catalogue: tiers, relative prices and qualities of `items` (in this order;
    /// item `i` of the other methods is `items[i]`).
    pub fn new(params: ClickModelParams, items: &[ItemSpec<'_>]) -> Self {
        let mut names: Vec<String> = items.iter().filter_map(|i| i.category.map(str::to_string)).collect();
        names.sort();
        names.dedup();
        let code = |c: &str| names.binary_search_by(|n| n.as_str().cmp(c)).ok().map(|x| x as u32);
        let mut by_cat: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut profiles: Vec<ItemProfile> = items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let category = it.category.and_then(code);
                if let (Some(c), Some(_)) = (category, it.price) {
                    by_cat.entry(c).or_default().push(i);
                }
                ItemProfile {
                    category,
                    tier: (TIERS / 2) as u8,
                    price: it.price.filter(|p| p.is_finite() && *p >= 0.0).unwrap_or(0.0),
                    rel_price: 1.0,
                    quality: unit(stable_hash(params.salt, &[b"quality", it.id.as_bytes()])),
                    launch_ms: it.created_at_ms,
                }
            })
            .collect();
        for members in by_cat.values_mut() {
            members.sort_by(|&a, &b| {
                profiles[a]
                    .price
                    .total_cmp(&profiles[b].price)
                    .then_with(|| items[a].id.cmp(items[b].id))
            });
            let m = members.len();
            let median = profiles[members[m / 2]].price.max(0.01);
            for (rank, &i) in members.iter().enumerate() {
                profiles[i].tier = (rank * TIERS / m) as u8;
                profiles[i].rel_price = (profiles[i].price / median).max(0.01);
            }
        }
        ClickModel {
            params,
            categories: names,
            items: profiles,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &ClickModelParams {
        &self.params
    }

    /// Category names, sorted (category codes index this).
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// The code of a category name.
    pub fn category_code(&self, name: &str) -> Option<u32> {
        self.categories
            .binary_search_by(|n| n.as_str().cmp(name))
            .ok()
            .map(|x| x as u32)
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.items.len()
    }

    /// Item `i`'s profile.
    pub fn item(&self, i: usize) -> &ItemProfile {
        &self.items[i]
    }

    /// Affinity of an age bucket (`None`: the mean over buckets) and region for a category name.
    pub fn category_affinity(&self, segment: Option<usize>, region: Option<&str>, category: &str) -> f64 {
        let salt = self.params.salt;
        let age = |a: &str| {
            let h = |k: &[u8]| stable_hash(salt, &[b"affinity", a.as_bytes(), category.as_bytes(), k]);
            (1.2 * normal_of(h(b"1"), h(b"2"))).exp()
        };
        let a = match segment {
            Some(s) => age(AGE_BUCKETS[s]),
            None => AGE_BUCKETS.iter().map(|b| age(b)).sum::<f64>() / AGE_BUCKETS.len() as f64,
        };
        let r = region.map_or(1.0, |r| {
            let h = |k: &[u8]| stable_hash(salt, &[b"region", r.as_bytes(), category.as_bytes(), k]);
            (0.4 * normal_of(h(b"1"), h(b"2"))).exp()
        });
        a * r
    }

    /// A user's planted preferences, from their id, age bucket and region.
    pub fn user(&self, user_id: &str, age_bucket: Option<&str>, region: Option<&str>) -> UserProfile {
        let salt = self.params.salt;
        let segment = age_bucket.and_then(|a| AGE_BUCKETS.iter().position(|b| *b == a));
        let mut w: Vec<f64> = self
            .categories
            .iter()
            .map(|c| self.category_affinity(segment, region, c))
            .collect();
        let mut favorites = [None; 3];
        for (k, f) in favorites.iter_mut().enumerate() {
            let total: f64 = w.iter().sum();
            if total <= 0.0 {
                break;
            }
            let mut x = unit(stable_hash(salt, &[b"favorite", user_id.as_bytes(), &[k as u8]])) * total;
            let mut pick = w.iter().rposition(|&v| v > 0.0).unwrap_or(0);
            for (c, &wc) in w.iter().enumerate() {
                if wc > 0.0 && x < wc {
                    pick = c;
                    break;
                }
                x -= wc;
            }
            *f = Some(pick as u32);
            w[pick] = 0.0;
        }
        let h = |k: &[u8]| stable_hash(salt, &[b"tier", user_id.as_bytes(), k]);
        let mean = segment.map_or(2.0, |s| AGE_TIER_MEAN[s]);
        let tier = (mean + normal_of(h(b"1"), h(b"2")))
            .round()
            .clamp(0.0, (TIERS - 1) as f64) as u8;
        UserProfile {
            segment,
            favorites,
            tier,
        }
    }

    /// How well item `i`'s tier fits the user's: 1.0, 0.6 one tier off, 0.3 further.
    pub fn tier_fit(&self, user: &UserProfile, i: usize) -> f64 {
        match (i64::from(self.items[i].tier) - i64::from(user.tier)).abs() {
            0 => 1.0,
            1 => 0.6,
            _ => 0.3,
        }
    }

    /// How well item `i`'s category fits: 1.0, 0.8, 0.6 for the favourites, 0.12 otherwise.
    pub fn category_fit(&self, user: &UserProfile, i: usize) -> f64 {
        let c = self.items[i].category;
        match user.favorites.iter().position(|f| f.is_some() && *f == c) {
            Some(0) => 1.0,
            Some(1) => 0.8,
            Some(2) => 0.6,
            _ => 0.12,
        }
    }

    fn sensitivity(user: &UserProfile) -> f64 {
        user.segment.map_or(0.25, |s| AGE_PRICE_SENSITIVITY[s])
    }

    /// Price factor of item `i` for the user: relative price^−(s·scale), clamped to [0.4, 2.5].
    fn price_factor(&self, user: &UserProfile, i: usize, scale: f64) -> f64 {
        self.items[i]
            .rel_price
            .powf(-Self::sensitivity(user) * scale)
            .clamp(0.4, 2.5)
    }

    /// Novelty at `now_ms`: 0 before launch, then 1 + boost·e^(−age/novelty_days).
    pub fn novelty(&self, i: usize, now_ms: i64) -> f64 {
        match self.items[i].launch_ms {
            Some(l) if now_ms < l => 0.0,
            Some(l) => {
                let age_days = (now_ms - l) as f64 / DAY_MS;
                1.0 + self.params.novelty_boost * (-age_days / self.params.novelty_days.max(1e-9)).exp()
            }
            None => 1.0,
        }
    }

    /// Whether item `i` is on sale at `now_ms`.
    pub fn launched(&self, i: usize, now_ms: i64) -> bool {
        self.items[i].launch_ms.is_none_or(|l| now_ms >= l)
    }

    /// Attractiveness of item `i` to the user at `now_ms` (see the module docs).
    pub fn attractiveness(&self, user: &UserProfile, i: usize, now_ms: i64) -> f64 {
        self.category_fit(user, i)
            * self.tier_fit(user, i)
            * (0.5 + self.items[i].quality)
            * self.price_factor(user, i, 1.0)
            * self.novelty(i, now_ms)
    }

    /// Probability that a slot at `position` (0-based) is looked at.
    pub fn examination(&self, position: usize) -> f64 {
        (1.0 + position as f64).powf(-self.params.position_decay)
    }

    /// Click factor of a device.
    pub fn device_factor(device: &str) -> f64 {
        match device {
            "mobile" => 0.85,
            "desktop" => 1.15,
            _ => 1.0,
        }
    }

    /// Purchase-given-cart factor of a device.
    pub fn device_purchase_factor(device: &str) -> f64 {
        match device {
            "mobile" => 0.8,
            "desktop" => 1.2,
            _ => 1.0,
        }
    }

    /// Click factor of the local hour.
    pub fn hour_factor(hour: u8) -> f64 {
        let h = f64::from(hour % 24);
        let bump = |c: f64| {
            let d = (h - c).abs();
            let d = d.min(24.0 - d);
            (-(d * d) / 8.0).exp()
        };
        1.0 + 0.3 * bump(21.0) - 0.3 * bump(4.0)
    }

    /// Attention factor of a page (`None`: organic browsing, 1.0).
    pub fn page_factor(page: Option<&str>) -> f64 {
        let Some(p) = page else { return 1.0 };
        match p.split(':').next().unwrap_or(p) {
            "home" => 0.3,
            "search" => 0.6,
            "category" => 0.45,
            "product" => 0.5,
            "cart" => 0.35,
            _ => 1.0,
        }
    }

    /// P(click) of item `i` shown to the user in `ctx`.
    pub fn click_prob(&self, user: &UserProfile, i: usize, ctx: &ClickContext<'_>) -> f64 {
        (self.params.base_click
            * self.examination(ctx.position)
            * Self::device_factor(ctx.device)
            * Self::hour_factor(ctx.hour)
            * Self::page_factor(ctx.page)
            * self.attractiveness(user, i, ctx.now_ms))
        .clamp(0.0, 0.95)
    }

    /// P(add to cart | click).
    pub fn cart_prob(&self, _user: &UserProfile, i: usize) -> f64 {
        0.12 * (0.5 + self.items[i].quality)
    }

    /// P(purchase | add to cart) on `device`.
    pub fn purchase_prob(&self, user: &UserProfile, i: usize, device: &str) -> f64 {
        (0.22
            * self.tier_fit(user, i)
            * (0.5 + self.items[i].quality)
            * self.price_factor(user, i, 2.0)
            * Self::device_purchase_factor(device))
        .clamp(0.0, 0.95)
    }

    /// Quantity bought of item `i` given a uniform draw `u` in [0, 1): 1, 2 or 3.
    pub fn quantity(&self, i: usize, u: f64) -> u32 {
        let cheap = if self.items[i].price < 30.0 { 2.0 } else { 1.0 };
        if u < 0.03 * cheap {
            3
        } else if u < 0.15 * cheap {
            2
        } else {
            1
        }
    }

    /// The value of an order of `quantity` of item `i`.
    pub fn order_value(&self, i: usize, quantity: u32) -> f64 {
        self.items[i].price * f64::from(quantity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Vec<(String, String, f64)> {
        (0..240)
            .map(|i| {
                let (c, p) = CATEGORIES[i % 24];
                (format!("P{i:04}"), c.to_string(), p * (0.5 + (i / 24) as f64 * 0.12))
            })
            .collect()
    }

    fn model() -> ClickModel {
        let cat = catalogue();
        let specs: Vec<ItemSpec> = cat
            .iter()
            .map(|(id, c, p)| ItemSpec {
                id,
                category: Some(c),
                price: Some(*p),
                created_at_ms: None,
            })
            .collect();
        ClickModel::new(ClickModelParams::default(), &specs)
    }

    #[test]
    fn tiers_are_quintiles_and_order_free() {
        let m = model();
        let cat = catalogue();
        let mut rev: Vec<_> = cat.iter().rev().cloned().collect();
        rev.swap(3, 100);
        let specs: Vec<ItemSpec> = rev
            .iter()
            .map(|(id, c, p)| ItemSpec {
                id,
                category: Some(c),
                price: Some(*p),
                created_at_ms: None,
            })
            .collect();
        let m2 = ClickModel::new(ClickModelParams::default(), &specs);
        for (j, (id, _, _)) in rev.iter().enumerate() {
            let i = cat.iter().position(|x| &x.0 == id).unwrap();
            assert_eq!(m.item(i).tier, m2.item(j).tier);
            assert_eq!(m.item(i).quality, m2.item(j).quality);
        }
        // Ten items per category: two per tier.
        let tiers: Vec<u8> = (0..10).map(|k| m.item(k * 24).tier).collect();
        assert_eq!(tiers, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn users_are_deterministic_and_demographics_shift_preferences() {
        let m = model();
        assert_eq!(
            m.user("U1", Some("18-24"), Some("north")),
            m.user("U1", Some("18-24"), Some("north"))
        );
        let mean_tier = |age: &str| {
            (0..2000)
                .map(|u| f64::from(m.user(&format!("U{u}"), Some(age), None).tier))
                .sum::<f64>()
                / 2000.0
        };
        assert!(mean_tier("18-24") + 0.8 < mean_tier("45-54"));
        let top = |age: &str| {
            let mut counts = vec![0u32; m.categories().len()];
            for u in 0..2000 {
                counts[m.user(&format!("U{u}"), Some(age), None).favorites[0].unwrap() as usize] += 1;
            }
            counts.iter().enumerate().max_by_key(|c| c.1).unwrap().0
        };
        // Age buckets favour different categories (fixed by the salt).
        let tops: std::collections::BTreeSet<usize> = AGE_BUCKETS.iter().map(|a| top(a)).collect();
        assert!(tops.len() >= 3, "{tops:?}");
    }

    #[test]
    fn planted_effects_have_their_direction() {
        let m = model();
        let u = m.user("U7", Some("25-34"), Some("coast"));
        let fav = u.favorites[0].unwrap();
        let i = (0..m.num_items())
            .find(|&i| m.item(i).category == Some(fav) && m.item(i).tier == u.tier)
            .unwrap();
        let other = (0..m.num_items())
            .find(|&i| !u.favorites.contains(&m.item(i).category) && m.item(i).tier == u.tier)
            .unwrap();
        let ctx = ClickContext {
            position: 0,
            device: "desktop",
            hour: 21,
            page: Some("home"),
            now_ms: 0,
        };
        let p = |c: ClickContext| m.click_prob(&u, i, &c);
        assert!(p(ctx) > p(ClickContext { position: 5, ..ctx }));
        assert!(
            p(ctx)
                > p(ClickContext {
                    device: "mobile",
                    ..ctx
                })
        );
        assert!(p(ctx) > p(ClickContext { hour: 4, ..ctx }));
        assert!(p(ctx) > m.click_prob(&u, other, &ctx));
        assert!(p(ClickContext { page: None, ..ctx }) > p(ctx));
        // Launch and novelty.
        let specs = [ItemSpec {
            id: "N",
            category: Some("laptops"),
            price: Some(900.0),
            created_at_ms: Some(10 * DAY_MS as i64),
        }];
        let n = ClickModel::new(ClickModelParams::default(), &specs);
        assert_eq!(n.novelty(0, 9 * DAY_MS as i64), 0.0);
        assert!(n.novelty(0, 10 * DAY_MS as i64) > n.novelty(0, 30 * DAY_MS as i64));
        assert!(!n.launched(0, 0) && n.launched(0, 11 * DAY_MS as i64));
        // Price sensitivity: the young react more to a dear item.
        let dear = (0..m.num_items()).find(|&i| m.item(i).rel_price > 1.3).unwrap();
        let young = UserProfile {
            segment: Some(0),
            ..u.clone()
        };
        let older = UserProfile {
            segment: Some(3),
            ..u.clone()
        };
        assert!(m.attractiveness(&young, dear, 0) < m.attractiveness(&older, dear, 0));
        assert!(m.quantity(0, 0.01) == 3 && m.quantity(0, 0.99) == 1);
        for h in 0..24 {
            assert!((0.6..1.4).contains(&ClickModel::hour_factor(h)));
        }
    }
}
