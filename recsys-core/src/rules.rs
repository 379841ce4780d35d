//! Stage 3 and the end of the online pipeline: business rules on a ranked list, the final top-k and
//! a short reason per item.
//!
//! The rules come in three steps around diversification ([`crate::diversify`]):
//!
//! 1. [`filter_and_boost`]: drop every item the [`Eligibility`] refuses (out of stock, already
//!    purchased, in the cart, excluded by the request, outside the request's category or price
//!    range), multiply the scores of boosted items ([`Boost`]) and re-sort;
//! 2. diversify and cut (caps, MMR);
//! 3. [`finalize`]: place the pins ([`Pin`], only eligible items, at 0-based positions below `k`; pins
//!    override caps), cut to `k` and attach a [`Reason`] to every item.
//!
//! **Never empty**: filtering keeps every eligible item, diversification keeps at least one and pins
//! only add, so the answer is empty only when no input item is eligible. When fewer than `k` survive,
//! the answer is simply shorter ([`TopK::shortfall`] says by how much); [`fill_from`] tops it up from a
//! popularity list under the same exclusions.
//!
//! Exclusion lists (`purchased`, `in_cart`, popularity sets) must be sorted ascending: membership is a
//! binary search, and unsorted input is refused rather than silently leaking items.

use crate::diversify::{Similarity, category_of};
use crate::rerank::{Ranked, rank_order};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Static attributes the rules need, each indexed by item (shorter slices: unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ItemAttributes<'a> {
    /// Category per item ([`crate::features::ItemCatalog::category`]).
    pub category: &'a [Option<u32>],
    /// Brand code per item.
    pub brand: &'a [Option<u32>],
    /// Current price per item.
    pub price: &'a [Option<f64>],
    /// In-stock flag per item. `None`: stock is not tracked and every item counts as in stock;
    /// `Some`: an item without an entry counts as out of stock.
    pub in_stock: Option<&'a [bool]>,
}

impl ItemAttributes<'_> {
    /// Whether `item` is in stock.
    pub fn in_stock(&self, item: u32) -> bool {
        self.in_stock
            .is_none_or(|s| s.get(item as usize).copied().unwrap_or(false))
    }
}

/// The business rules of a deployment (a section of the serving config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Items to return (default 20); a request may ask for another `k` ([`RequestFilters::k`]).
    pub k: usize,
    /// Score multipliers; every matching boost applies.
    pub boosts: Vec<Boost>,
    /// Items forced at fixed positions when eligible.
    pub pins: Vec<Pin>,
    /// Similarity to a recently viewed item from which the reason is [`Reason::SimilarTo`] (default 0.5).
    pub similar_threshold: f32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            k: 20,
            boosts: Vec::new(),
            pins: Vec::new(),
            similar_threshold: 0.5,
        }
    }
}

/// Multiplies the score of every item matching `target` by `factor` (> 0; < 1 demotes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boost {
    /// Which items.
    pub target: BoostTarget,
    /// The multiplier.
    pub factor: f32,
}

/// The items a [`Boost`] applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoostTarget {
    /// Items of this category.
    Category(u32),
    /// Items of this brand.
    Brand(u32),
    /// These items.
    Items(Vec<u32>),
}

impl BoostTarget {
    fn matches(&self, item: u32, attrs: &ItemAttributes<'_>) -> bool {
        match self {
            BoostTarget::Category(c) => category_of(attrs.category, item) == Some(*c),
            BoostTarget::Brand(b) => attrs.brand.get(item as usize).copied().flatten() == Some(*b),
            BoostTarget::Items(items) => items.contains(&item),
        }
    }
}

/// Forces `item` at 0-based `position` when it is eligible (it need not be a candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The pinned item.
    pub item: u32,
    /// Its 0-based position; pins at or beyond `k` never show.
    pub position: usize,
}

impl RulesConfig {
    /// Refuses `k == 0`, non-finite or non-positive boost factors, duplicate pin items or positions
    /// and a non-finite `similar_threshold`, naming the field and value.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::invalid("k", 0, "must be at least 1"));
        }
        for (i, b) in self.boosts.iter().enumerate() {
            if !b.factor.is_finite() || b.factor <= 0.0 {
                return Err(Error::invalid(
                    format!("boosts[{i}].factor"),
                    b.factor,
                    "must be finite and > 0",
                ));
            }
        }
        for (i, p) in self.pins.iter().enumerate() {
            if self.pins[..i].iter().any(|q| q.item == p.item) {
                return Err(Error::invalid(
                    format!("pins[{i}].item"),
                    p.item,
                    "item is pinned twice",
                ));
            }
            if self.pins[..i].iter().any(|q| q.position == p.position) {
                return Err(Error::invalid(
                    format!("pins[{i}].position"),
                    p.position,
                    "two pins at one position",
                ));
            }
        }
        if !self.similar_threshold.is_finite() {
            return Err(Error::invalid(
                "similar_threshold",
                self.similar_threshold,
                "must be finite",
            ));
        }
        Ok(())
    }

    /// Parses and validates a JSON config.
    pub fn from_json(json: &str) -> Result<Self> {
        let c: RulesConfig =
            serde_json::from_str(json).map_err(|e| Error::invalid("rules config", json, e.to_string()))?;
        c.validate()?;
        Ok(c)
    }
}

/// What one request asks for on top of the deployment's rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestFilters {
    /// Items to return (`None`: [`RulesConfig::k`]).
    pub k: Option<usize>,
    /// Only items of this category.
    pub category: Option<u32>,
    /// Only items priced at least this (items of unknown price are dropped when a bound is set).
    pub min_price: Option<f64>,
    /// Only items priced at most this.
    pub max_price: Option<f64>,
    /// Items never to return in this answer (e.g. the product on the page).
    pub exclude: Vec<u32>,
}

impl RequestFilters {
    /// Refuses `k == 0`, negative or non-finite prices and `min_price > max_price`.
    pub fn validate(&self) -> Result<()> {
        if self.k == Some(0) {
            return Err(Error::invalid("k", 0, "must be at least 1"));
        }
        for (name, v) in [("min_price", self.min_price), ("max_price", self.max_price)] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                return Err(Error::invalid(name, v, "must be finite and >= 0"));
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_price, self.max_price)
            && lo > hi
        {
            return Err(Error::invalid(
                "min_price",
                lo,
                format!("must not exceed max_price ({hi})"),
            ));
        }
        Ok(())
    }

    /// The `k` of this request.
    pub fn k_or(&self, config: &RulesConfig) -> usize {
        self.k.unwrap_or(config.k)
    }
}

/// The user's state the exclusions need.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UserExclusions<'a> {
    /// Items the user already bought, sorted ascending.
    pub purchased: &'a [u32],
    /// Items in the user's cart, sorted ascending.
    pub in_cart: &'a [u32],
}

/// Which items may be recommended in one request: in stock, not purchased, not in the cart, not
/// excluded by the request and inside its category and price filters.
#[derive(Debug, Clone)]
pub struct Eligibility<'a> {
    attrs: ItemAttributes<'a>,
    user: UserExclusions<'a>,
    exclude: Vec<u32>,
    category: Option<u32>,
    min_price: Option<f64>,
    max_price: Option<f64>,
}

fn check_sorted(field: &str, v: &[u32]) -> Result<()> {
    match v.windows(2).position(|w| w[0] > w[1]) {
        Some(i) => Err(Error::invalid(
            field,
            format!("{} before {} at index {i}", v[i], v[i + 1]),
            "must be sorted ascending",
        )),
        None => Ok(()),
    }
}

impl<'a> Eligibility<'a> {
    /// Combines the exclusions; refuses invalid filters and unsorted exclusion lists.
    pub fn new(attrs: ItemAttributes<'a>, user: UserExclusions<'a>, filters: &RequestFilters) -> Result<Self> {
        filters.validate()?;
        check_sorted("purchased", user.purchased)?;
        check_sorted("in_cart", user.in_cart)?;
        let mut exclude = filters.exclude.clone();
        exclude.sort_unstable();
        exclude.dedup();
        Ok(Eligibility {
            attrs,
            user,
            exclude,
            category: filters.category,
            min_price: filters.min_price,
            max_price: filters.max_price,
        })
    }

    /// The item attributes the eligibility was built on.
    pub fn attributes(&self) -> &ItemAttributes<'a> {
        &self.attrs
    }

    /// Whether `item` may be recommended.
    pub fn allows(&self, item: u32) -> bool {
        if !self.attrs.in_stock(item)
            || self.user.purchased.binary_search(&item).is_ok()
            || self.user.in_cart.binary_search(&item).is_ok()
            || self.exclude.binary_search(&item).is_ok()
        {
            return false;
        }
        if let Some(c) = self.category
            && category_of(self.attrs.category, item) != Some(c)
        {
            return false;
        }
        if self.min_price.is_some() || self.max_price.is_some() {
            let Some(p) = self.attrs.price.get(item as usize).copied().flatten() else {
                return false;
            };
            if self.min_price.is_some_and(|lo| p < lo) || self.max_price.is_some_and(|hi| p > hi) {
                return false;
            }
        }
        true
    }
}

/// Keeps the eligible items of `ranked`, applies the boosts and re-sorts by [`rank_order`].
pub fn filter_and_boost(ranked: &[Ranked], config: &RulesConfig, eligible: &Eligibility<'_>) -> Vec<Ranked> {
    let mut out: Vec<Ranked> = ranked
        .iter()
        .filter(|r| eligible.allows(r.item))
        .map(|r| {
            let factor: f32 = config
                .boosts
                .iter()
                .filter(|b| b.target.matches(r.item, &eligible.attrs))
                .map(|b| b.factor)
                .product();
            Ranked {
                score: r.score * factor,
                ..*r
            }
        })
        .collect();
    if !config.boosts.is_empty() {
        out.sort_unstable_by(rank_order);
    }
    out
}

/// Why an item is recommended, shown to the user as a short text ([`Reason::render`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Close to an item the user viewed recently: "Similar to X you viewed".
    SimilarTo {
        /// The viewed item.
        item: u32,
    },
    /// Among the most popular of its category: "Popular in C".
    PopularIn {
        /// The category.
        category: u32,
    },
    /// Popular overall (fallback items without a known category): "Popular right now".
    Popular,
    /// Trending now: "Trending now".
    Trending,
    /// The personal model's pick: "Recommended for you".
    Personal,
    /// A business pin: "Featured".
    Pinned,
}

impl Reason {
    /// The text shown to the user, with item and category names from the lookups (a generic text
    /// when a name is unknown).
    pub fn render(
        &self,
        item_name: impl Fn(u32) -> Option<String>,
        category_name: impl Fn(u32) -> Option<String>,
    ) -> String {
        match *self {
            Reason::SimilarTo { item } => match item_name(item) {
                Some(n) => format!("Similar to {n} you viewed"),
                None => "Similar to an item you viewed".to_string(),
            },
            Reason::PopularIn { category } => match category_name(category) {
                Some(c) => format!("Popular in {c}"),
                None => "Popular in this category".to_string(),
            },
            Reason::Popular => "Popular right now".to_string(),
            Reason::Trending => "Trending now".to_string(),
            Reason::Personal => "Recommended for you".to_string(),
            Reason::Pinned => "Featured".to_string(),
        }
    }
}

/// What [`finalize`] needs to explain items. Priority: pinned, similar to a recently viewed item,
/// trending, popular in its category, personal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReasonInputs<'a> {
    /// Items the user viewed recently, newest first.
    pub recently_viewed: &'a [u32],
    /// Item-item similarity for [`Reason::SimilarTo`] (`None`: never "similar to").
    pub similarity: Option<Similarity<'a>>,
    /// Items trending now, sorted ascending.
    pub trending: &'a [u32],
    /// Items among the most popular of their category, sorted ascending.
    pub popular: &'a [u32],
}

impl ReasonInputs<'_> {
    /// The reason of a (non-pinned) item: the most similar recently viewed item above `threshold`
    /// (ties: the newest), else trending, else popular in its category, else personal.
    pub fn reason(&self, item: u32, threshold: f32, categories: &[Option<u32>]) -> Reason {
        if let Some(sim) = self.similarity {
            let mut best: Option<(u32, f32)> = None;
            for &v in self.recently_viewed.iter().filter(|&&v| v != item) {
                let s = sim.between(item, v, categories);
                if s >= threshold && best.is_none_or(|(_, b)| s > b) {
                    best = Some((v, s));
                }
            }
            if let Some((v, _)) = best {
                return Reason::SimilarTo { item: v };
            }
        }
        if self.trending.binary_search(&item).is_ok() {
            return Reason::Trending;
        }
        if self.popular.binary_search(&item).is_ok()
            && let Some(category) = category_of(categories, item)
        {
            return Reason::PopularIn { category };
        }
        Reason::Personal
    }
}

/// One item of the final answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Item index.
    pub item: u32,
    /// Final score (0 for pinned and fallback items that were not candidates).
    pub score: f32,
    /// Why it is recommended.
    pub reason: Reason,
}

/// The final answer: at most `requested` items, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    /// The items.
    pub items: Vec<Recommendation>,
    /// The `k` that was asked for.
    pub requested: usize,
}

impl TopK {
    /// How many items short of `requested` the answer is (0: complete).
    pub fn shortfall(&self) -> usize {
        self.requested.saturating_sub(self.items.len())
    }
}

/// Places the pins, cuts `list` (already filtered, boosted and diversified, best first) to `k` and
/// attaches reasons. Pins of ineligible items and pins at positions `>= k` are skipped; a pin past
/// the end of a short list goes last; a pinned item that was already in the list moves.
pub fn finalize(
    list: &[Ranked],
    k: usize,
    config: &RulesConfig,
    eligible: &Eligibility<'_>,
    reasons: &ReasonInputs<'_>,
) -> Result<TopK> {
    config.validate()?;
    check_sorted("trending", reasons.trending)?;
    check_sorted("popular", reasons.popular)?;
    let categories = eligible.attrs.category;
    let live = |p: &&Pin| p.position < k && eligible.allows(p.item);
    let mut items: Vec<Recommendation> = Vec::with_capacity(k.min(list.len() + config.pins.len()));
    for r in list {
        if items.len() == k {
            break;
        }
        if config.pins.iter().filter(live).any(|p| p.item == r.item) || items.iter().any(|x| x.item == r.item) {
            continue;
        }
        items.push(Recommendation {
            item: r.item,
            score: r.score,
            reason: reasons.reason(r.item, config.similar_threshold, categories),
        });
    }
    let mut pins: Vec<&Pin> = config.pins.iter().filter(live).collect();
    pins.sort_by_key(|p| p.position);
    for p in pins {
        let score = list.iter().find(|r| r.item == p.item).map_or(0.0, |r| r.score);
        let at = p.position.min(items.len());
        items.insert(
            at,
            Recommendation {
                item: p.item,
                score,
                reason: Reason::Pinned,
            },
        );
    }
    items.truncate(k);
    Ok(TopK { items, requested: k })
}

/// Tops `top` up to its requested size from `popular` (best first), skipping ineligible items and
/// items already in the answer; the added items get [`Reason::PopularIn`] (or [`Reason::Popular`]
/// when their category is unknown) and score 0. Returns how many were added.
pub fn fill_from(top: &mut TopK, popular: &[u32], eligible: &Eligibility<'_>) -> usize {
    let before = top.items.len();
    for &item in popular {
        if top.items.len() >= top.requested {
            break;
        }
        if !eligible.allows(item) || top.items.iter().any(|r| r.item == item) {
            continue;
        }
        let reason = match category_of(eligible.attrs.category, item) {
            Some(category) => Reason::PopularIn { category },
            None => Reason::Popular,
        };
        top.items.push(Recommendation {
            item,
            score: 0.0,
            reason,
        });
    }
    top.items.len() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    // Items 0..10: category i % 3 (item 9 unknown), brand i % 2, price 10·(i+1), item 4 out of stock.
    struct World {
        category: Vec<Option<u32>>,
        brand: Vec<Option<u32>>,
        price: Vec<Option<f64>>,
        stock: Vec<bool>,
    }

    fn world() -> World {
        World {
            category: (0..10).map(|i| if i == 9 { None } else { Some(i % 3) }).collect(),
            brand: (0..10).map(|i| Some(i % 2)).collect(),
            price: (0..10).map(|i| Some(10.0 * f64::from(i + 1))).collect(),
            stock: (0..10).map(|i| i != 4).collect(),
        }
    }

    impl World {
        fn attrs(&self) -> ItemAttributes<'_> {
            ItemAttributes {
                category: &self.category,
                brand: &self.brand,
                price: &self.price,
                in_stock: Some(&self.stock),
            }
        }
    }

    /// Items 0..10 with descending scores 1.0, 0.9, ...
    fn ranked_all() -> Vec<Ranked> {
        (0..10u32)
            .map(|i| Ranked {
                item: i,
                score: 1.0 - i as f32 / 10.0,
                candidate: i,
            })
            .collect()
    }

    fn items_of(v: &[Ranked]) -> Vec<u32> {
        v.iter().map(|r| r.item).collect()
    }

    fn top_items(t: &TopK) -> Vec<u32> {
        t.items.iter().map(|r| r.item).collect()
    }

    const USER: UserExclusions<'static> = UserExclusions {
        purchased: &[1, 7],
        in_cart: &[2],
    };

    #[test]
    fn exclusions_never_leak() {
        let w = world();
        let filters = RequestFilters {
            exclude: vec![8, 0],
            ..Default::default()
        };
        let el = Eligibility::new(w.attrs(), USER, &filters).unwrap();
        let out = filter_and_boost(&ranked_all(), &RulesConfig::default(), &el);
        assert_eq!(items_of(&out), vec![3, 5, 6, 9]);
        // Pins and fill-ups go through the same gate.
        let cfg = RulesConfig {
            pins: vec![Pin { item: 4, position: 0 }, Pin { item: 7, position: 1 }],
            ..Default::default()
        };
        let mut top = finalize(&out, 6, &cfg, &el, &ReasonInputs::default()).unwrap();
        assert_eq!(top_items(&top), vec![3, 5, 6, 9]);
        assert_eq!(top.shortfall(), 2);
        assert_eq!(fill_from(&mut top, &[0, 1, 2, 4, 7, 8, 3, 5], &el), 0);
        for bad in [0, 1, 2, 4, 7, 8] {
            assert!(!el.allows(bad));
        }
    }

    #[test]
    fn request_filters_by_category_and_price() {
        let w = world();
        let filters = RequestFilters {
            category: Some(0),
            min_price: Some(20.0),
            max_price: Some(70.0),
            ..Default::default()
        };
        let el = Eligibility::new(w.attrs(), UserExclusions::default(), &filters).unwrap();
        // Category 0: 0 (10), 3 (40), 6 (70), 9 unknown → 3, 6.
        assert_eq!(
            items_of(&filter_and_boost(&ranked_all(), &RulesConfig::default(), &el)),
            vec![3, 6]
        );
    }

    #[test]
    fn boosts_multiply_and_reorder() {
        let w = world();
        let el = Eligibility::new(w.attrs(), UserExclusions::default(), &RequestFilters::default()).unwrap();
        let cfg = RulesConfig {
            boosts: vec![
                Boost {
                    target: BoostTarget::Category(2),
                    factor: 2.0,
                },
                Boost {
                    target: BoostTarget::Items(vec![0]),
                    factor: 0.5,
                },
                Boost {
                    target: BoostTarget::Brand(1),
                    factor: 1.5,
                },
            ],
            ..Default::default()
        };
        let out = filter_and_boost(&ranked_all(), &cfg, &el);
        // Scores: 0: 1.0·0.5=0.5; 1: 0.9·1.5=1.35; 2: 0.8·2=1.6; 3: 0.7·1.5=1.05; 5: 0.5·2·1.5=1.5;
        // 6: 0.4; 7: 0.3·1.5=0.45; 8: 0.2·2=0.4; 9: 0.1·1.5=0.15 (4 out of stock).
        assert_eq!(items_of(&out), vec![2, 5, 1, 3, 0, 7, 6, 8, 9]);
        assert!((out[0].score - 1.6).abs() < 1e-6);
    }

    #[test]
    fn pins_land_at_their_position() {
        let w = world();
        let el = Eligibility::new(w.attrs(), UserExclusions::default(), &RequestFilters::default()).unwrap();
        let list: Vec<Ranked> = ranked_all().into_iter().filter(|r| r.item != 4).collect();
        let cfg = RulesConfig {
            pins: vec![
                Pin { item: 8, position: 0 },
                Pin { item: 1, position: 3 },
                Pin { item: 4, position: 1 },  // out of stock: skipped
                Pin { item: 9, position: 10 }, // beyond k: skipped
            ],
            ..Default::default()
        };
        let top = finalize(&list, 5, &cfg, &el, &ReasonInputs::default()).unwrap();
        assert_eq!(top_items(&top), vec![8, 0, 2, 1, 3]);
        assert_eq!(top.items[0].reason, Reason::Pinned);
        assert_eq!(top.items[3].reason, Reason::Pinned);
        assert_eq!(top.items[1].reason, Reason::Personal);
        assert!((top.items[3].score - 0.9).abs() < 1e-6);
        // A pin past the end of a short list goes last.
        let cfg = RulesConfig {
            pins: vec![Pin { item: 9, position: 4 }],
            ..Default::default()
        };
        let top = finalize(&list[..2], 5, &cfg, &el, &ReasonInputs::default()).unwrap();
        assert_eq!(top_items(&top), vec![0, 1, 9]);
        assert_eq!(top.items[2].score, 0.0);
    }

    #[test]
    fn reasons_follow_the_priority() {
        let w = world();
        let el = Eligibility::new(w.attrs(), UserExclusions::default(), &RequestFilters::default()).unwrap();
        // 2-d embeddings: item 0 ≈ item 5 (viewed), item 3 orthogonal.
        let mut emb = vec![0.0f32; 20];
        emb[0] = 1.0; // item 0 = (1, 0)
        emb[10] = 0.9; // item 5 = (0.9, 0.1)
        emb[11] = 0.1;
        emb[7] = 1.0; // item 3 = (0, 1)
        let inputs = ReasonInputs {
            recently_viewed: &[5],
            similarity: Some(Similarity::Embeddings { vectors: &emb, dim: 2 }),
            trending: &[0, 3],
            popular: &[6, 9],
        };
        let list: Vec<Ranked> = [0u32, 3, 6, 9, 2]
            .iter()
            .enumerate()
            .map(|(i, &item)| Ranked {
                item,
                score: 1.0 - i as f32 / 10.0,
                candidate: i as u32,
            })
            .collect();
        let top = finalize(&list, 5, &RulesConfig::default(), &el, &inputs).unwrap();
        let reasons: Vec<Reason> = top.items.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Reason::SimilarTo { item: 5 },
                Reason::Trending,
                Reason::PopularIn { category: 0 },
                Reason::Personal, // popular but no category
                Reason::Personal,
            ]
        );
        let names = ["tv", "cable", "remote", "hdmi", "-", "soundbar"];
        let item_name = |i: u32| names.get(i as usize).map(|s| s.to_string());
        let cat_name = |c: u32| (c == 0).then(|| "TVs".to_string());
        assert_eq!(reasons[0].render(item_name, cat_name), "Similar to soundbar you viewed");
        assert_eq!(reasons[2].render(item_name, cat_name), "Popular in TVs");
        assert_eq!(
            Reason::PopularIn { category: 7 }.render(item_name, cat_name),
            "Popular in this category"
        );
        assert_eq!(
            Reason::SimilarTo { item: 99 }.render(item_name, cat_name),
            "Similar to an item you viewed"
        );
        assert_eq!(Reason::Pinned.render(item_name, cat_name), "Featured");
    }

    #[test]
    fn never_empty_and_fill_from_popular() {
        let w = world();
        let el = Eligibility::new(w.attrs(), USER, &RequestFilters::default()).unwrap();
        // Only ineligible candidates plus one eligible one.
        let list: Vec<Ranked> = [1u32, 2, 4, 7, 5]
            .iter()
            .enumerate()
            .map(|(i, &item)| Ranked {
                item,
                score: 1.0,
                candidate: i as u32,
            })
            .collect();
        let kept = filter_and_boost(&list, &RulesConfig::default(), &el);
        let mut top = finalize(&kept, 4, &RulesConfig::default(), &el, &ReasonInputs::default()).unwrap();
        assert_eq!(top_items(&top), vec![5]);
        assert_eq!(top.shortfall(), 3);
        let added = fill_from(&mut top, &[5, 1, 9, 4, 0, 3, 6], &el);
        assert_eq!(added, 3);
        assert_eq!(top_items(&top), vec![5, 9, 0, 3]);
        assert_eq!(top.items[1].reason, Reason::Popular);
        assert_eq!(top.items[2].reason, Reason::PopularIn { category: 0 });
        assert_eq!(top.shortfall(), 0);
    }

    #[test]
    fn bad_values_are_refused_naming_field_and_value() {
        let w = world();
        let f = RequestFilters {
            min_price: Some(200.0),
            max_price: Some(100.0),
            ..Default::default()
        };
        let err = Eligibility::new(w.attrs(), UserExclusions::default(), &f).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, value, reason } if field == "min_price" && value == "200" && reason.contains("100")),
            "{err}"
        );
        let f = RequestFilters {
            max_price: Some(f64::NAN),
            ..Default::default()
        };
        assert!(f.validate().unwrap_err().to_string().contains("max_price"));
        let unsorted = UserExclusions {
            purchased: &[3, 1],
            in_cart: &[],
        };
        let err = Eligibility::new(w.attrs(), unsorted, &RequestFilters::default()).unwrap_err();
        assert!(err.to_string().contains("purchased"), "{err}");
        let err = RulesConfig::from_json(r#"{"boosts": [{"target": {"category": 1}, "factor": -2}]}"#).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, value, .. } if field == "boosts[0].factor" && value == "-2"),
            "{err}"
        );
        let err = RulesConfig::from_json(r#"{"k": 0}"#).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "k"));
        let err = RulesConfig::from_json(r#"{"pins": [{"item": 1, "position": 0}, {"item": 2, "position": 0}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("pins[1].position"), "{err}");
        assert!(RulesConfig::from_json(r#"{"pinz": []}"#).is_err());
    }

    #[test]
    fn config_serde_round_trip() {
        let cfg = RulesConfig::from_json(
            r#"{"k": 10, "boosts": [{"target": {"brand": 3}, "factor": 1.2}, {"target": {"items": [4, 5]}, "factor": 0.5}],
                "pins": [{"item": 7, "position": 2}]}"#,
        )
        .unwrap();
        assert_eq!(cfg.k, 10);
        assert_eq!(cfg.similar_threshold, 0.5);
        assert_eq!(cfg.boosts[1].target, BoostTarget::Items(vec![4, 5]));
        assert_eq!(
            RulesConfig::from_json(&serde_json::to_string(&cfg).unwrap()).unwrap(),
            cfg
        );
        let top = TopK {
            items: vec![Recommendation {
                item: 1,
                score: 0.5,
                reason: Reason::SimilarTo { item: 2 },
            }],
            requested: 3,
        };
        let json = serde_json::to_string(&top).unwrap();
        assert!(json.contains(r#""reason":{"kind":"similar_to","item":2}"#), "{json}");
        assert_eq!(serde_json::from_str::<TopK>(&json).unwrap(), top);
    }
}
