//! `recsys-train generate`: a synthetic TechShop with planted structure.
//!
//! The output imitates a warehouse export (string ids, one Parquet file of events per day plus
//! `items.parquet` and `users.parquet`) that `recsys-train import` then reads like any other source.
//!
//! Planted structure, so that a personalised model measurably beats popularity (the preferences, the
//! funnel's probabilities and the launches are [`recsys_core::click_model`]'s, shared with the
//! simulator):
//! * items belong to one of 24 categories, have a log-normal price and a price tier (quintile within
//!   the category), a Zipf-distributed popularity and a quality that drives ratings and conversion;
//! * users have an age bucket and region; the age bucket shifts which 3 categories they favour and
//!   which price tier they prefer; activity follows a Pareto law;
//! * a session focuses on one of the user's categories and mostly the user's price tier, and walks
//!   the funnel view → click → add_to_cart → purchase, with conversion higher for items that fit the
//!   user's tier and are of high quality (about 0.5% of events are purchases, as in the ADR:
//!   10M events/day ≈ 50K purchases/day).
//!
//! Output is a pure function of the configuration: chunks of sessions are drawn from generators
//! seeded by `(seed, day, chunk)`, independent of the number of threads.

use crate::arrow;
use crate::dataset::write_parquet;
use crate::progress::Progress;
use crate::{Error, Result};
use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use recsys_core::schema::{DAY_MS, EventType};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub use recsys_core::click_model::CATEGORIES;
use recsys_core::click_model::{
    AGE_BUCKETS, AGE_WEIGHTS, ClickContext, ClickModel, ClickModelParams, DEVICES, ItemSpec, PAGES, REGIONS, TIERS,
    UserProfile,
};
const BRANDS: [&str; 16] = [
    "Aurora", "Bolt", "Cobalt", "Dynamo", "Ember", "Flux", "Granite", "Helix", "Ion", "Juniper", "Krypton", "Lumen",
    "Matrix", "Nimbus", "Orbit", "Pulse",
];
const CHUNKS_PER_DAY: u64 = 64;

/// Generator settings (`recsys-train generate` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateConfig {
    /// Number of users.
    pub users: u32,
    /// Number of items.
    pub items: u32,
    /// Target events per day (the result is within one session per chunk of it).
    pub events_per_day: u64,
    /// Number of days.
    pub days: u32,
    /// Seed: same seed and settings, same files.
    pub seed: u64,
    /// First day, as days since the Unix epoch.
    pub start_day: i64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            users: 5_000,
            items: 1_000,
            events_per_day: 40_000,
            days: 14,
            seed: 42,
            // 2025-10-01
            start_day: 20_362,
        }
    }
}

impl GenerateConfig {
    /// The first generated day (days since the epoch) of a `YYYY-MM-DD` date (`--start`).
    pub fn start_day_of(date: &str) -> Result<i64> {
        let ms = crate::import::parse_time_text(date, &crate::import::TsFormat::Rfc3339)
            .ok_or_else(|| Error::arg("start", date, "expected YYYY-MM-DD"))?;
        Ok(ms.div_euclid(DAY_MS))
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.users == 0 {
            return Err(Error::arg("users", self.users, "must be at least 1"));
        }
        if self.items < TIERS as u32 {
            return Err(Error::arg("items", self.items, "must be at least 5"));
        }
        if self.days == 0 {
            return Err(Error::arg("days", self.days, "must be at least 1"));
        }
        if self.events_per_day == 0 {
            return Err(Error::arg("events-per-day", self.events_per_day, "must be at least 1"));
        }
        Ok(())
    }
}

/// Walker's alias table: O(1) draws from a discrete distribution.
#[derive(Debug, Clone)]
pub struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
    values: Vec<u32>,
}

impl Alias {
    /// A table over `values` with (unnormalised, non-negative) `weights`; `None` when empty.
    pub fn new(values: Vec<u32>, weights: &[f64]) -> Option<Self> {
        let n = values.len();
        let total: f64 = weights.iter().sum();
        if n == 0 || total <= 0.0 {
            return None;
        }
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        Some(Alias { prob, alias, values })
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let i = rng.random_range(0..self.prob.len());
        let k = if rng.random::<f64>() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        };
        self.values[k]
    }
}

struct World {
    model: ClickModel,
    /// Category code of each item in `model`'s categories.
    #[cfg_attr(not(test), allow(dead_code))]
    item_cat: Vec<u32>,
    by_cat_tier: Vec<Vec<Option<Alias>>>,
    by_cat: Vec<Option<Alias>>,
    all_items: Alias,
    profiles: Vec<UserProfile>,
    users: Alias,
    hours: Alias,
}

fn normal(rng: &mut impl Rng) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn exp(rng: &mut impl Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

fn rng_for(seed: u64, a: u64, b: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
    )
}

/// The [`ClickModel`] of a dataset: what `generate` planted, rebuilt from the catalogue (item ids,
/// categories, prices, launch times) with the default parameters. User profiles come from
/// [`ClickModel::user`] with the dataset's age buckets and regions.
pub fn click_model_of(ds: &crate::dataset::Dataset) -> ClickModel {
    let items = &ds.items;
    let specs: Vec<ItemSpec> = (0..items.len())
        .map(|i| ItemSpec {
            id: items.ids.id(i as u32).unwrap_or(""),
            category: items.category[i].as_deref(),
            price: items.price[i],
            created_at_ms: items.created_at[i],
        })
        .collect();
    ClickModel::new(ClickModelParams::default(), &specs)
}

/// Item and user tables plus the sampling structures of the world.
fn build_world(cfg: &GenerateConfig) -> (World, RecordBatch, RecordBatch) {
    let nc = CATEGORIES.len();
    let mut rng = rng_for(cfg.seed, 1, 0);
    let start_ms = cfg.start_day * DAY_MS;
    let end_ms = start_ms + i64::from(cfg.days) * DAY_MS;
    // Items.
    let cat_alias = Alias::new(
        (0..nc as u32).collect(),
        &(0..nc).map(|c| 1.0 / (c as f64 + 2.0).powf(0.6)).collect::<Vec<_>>(),
    )
    .expect("non-empty");
    let n = cfg.items as usize;
    let mut item_cat = Vec::with_capacity(n);
    let mut item_price = Vec::with_capacity(n);
    let mut brand = Vec::with_capacity(n);
    let mut inventory = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut title = Vec::with_capacity(n);
    for i in 0..n {
        let c = if i < nc { i } else { cat_alias.sample(&mut rng) as usize };
        let price = (CATEGORIES[c].1 * (0.6 * normal(&mut rng)).exp()).max(1.0).floor() + 0.99;
        let b = BRANDS[(c * 5 + rng.random_range(0..6)) % BRANDS.len()];
        item_cat.push(c);
        item_price.push(price);
        brand.push(b);
        inventory.push(if rng.random::<f64>() < 0.04 {
            0
        } else {
            1 + exp(&mut rng, 40.0) as i64
        });
        // 3% of the items launch during the generated window and 2% in the week after it (the
        // window a simulation of the following days runs in); the rest were on sale before.
        let x: f64 = rng.random();
        let y: f64 = rng.random();
        created.push(if i < nc || x >= 0.05 {
            start_ms - (y * 720.0 * DAY_MS as f64) as i64
        } else if x < 0.03 {
            start_ms + (y * (end_ms - start_ms) as f64) as i64
        } else {
            end_ms + (y * 7.0 * DAY_MS as f64) as i64
        });
        title.push(format!(
            "{b} {} {}{}",
            CATEGORIES[c].0,
            (b'A' + (i % 26) as u8) as char,
            100 + i % 900
        ));
    }
    let ids: Vec<String> = (0..n).map(item_id).collect();
    let specs: Vec<ItemSpec> = (0..n)
        .map(|i| ItemSpec {
            id: &ids[i],
            category: Some(CATEGORIES[item_cat[i]].0),
            price: Some(item_price[i]),
            created_at_ms: Some(created[i]),
        })
        .collect();
    let model = ClickModel::new(ClickModelParams::default(), &specs);
    let item_code: Vec<u32> = (0..n).map(|i| model.item(i).category.expect("named")).collect();
    let ncodes = model.categories().len();
    // Ratings follow the planted quality.
    let rating: Vec<f64> = (0..n)
        .map(|i| {
            let q = model.item(i).quality;
            ((3.0 + 2.0 * q.sqrt() + 0.2 * normal(&mut rng)).clamp(1.0, 5.0) * 10.0).round() / 10.0
        })
        .collect();
    // Zipf popularity over a random permutation.
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    let mut pop = vec![0.0; n];
    for (rank, &i) in perm.iter().enumerate() {
        pop[i] = 1.0 / (rank as f64 + 1.0).powf(1.05);
    }
    let mut by_cat_tier: Vec<Vec<Option<Alias>>> = Vec::with_capacity(ncodes);
    let mut by_cat = Vec::with_capacity(ncodes);
    for c in 0..ncodes as u32 {
        let mut tiers = Vec::with_capacity(TIERS);
        for t in 0..TIERS as u8 {
            let members: Vec<u32> = (0..n as u32)
                .filter(|&i| item_code[i as usize] == c && model.item(i as usize).tier == t)
                .collect();
            let w: Vec<f64> = members.iter().map(|&i| pop[i as usize]).collect();
            tiers.push(Alias::new(members, &w));
        }
        by_cat_tier.push(tiers);
        let members: Vec<u32> = (0..n as u32).filter(|&i| item_code[i as usize] == c).collect();
        let w: Vec<f64> = members.iter().map(|&i| pop[i as usize]).collect();
        by_cat.push(Alias::new(members, &w));
    }
    let all_items = Alias::new((0..n as u32).collect(), &pop).expect("items > 0");

    // Users: demographics shift category affinity and price tier (the click model's rules).
    let age_alias = Alias::new((0..AGE_BUCKETS.len() as u32).collect(), &AGE_WEIGHTS).expect("non-empty");
    let u = cfg.users as usize;
    let mut profiles = Vec::with_capacity(u);
    let mut activity = Vec::with_capacity(u);
    let mut age = Vec::with_capacity(u);
    let mut region = Vec::with_capacity(u);
    let mut signup = Vec::with_capacity(u);
    let mut urng = rng_for(cfg.seed, 3, 0);
    for k in 0..u {
        let a = AGE_BUCKETS[age_alias.sample(&mut urng) as usize];
        let r = REGIONS[urng.random_range(0..REGIONS.len())];
        profiles.push(model.user(&user_id(k), Some(a), Some(r)));
        activity.push(urng.random::<f64>().max(1e-9).powf(-1.0 / 1.5).min(60.0));
        age.push(a);
        region.push(r);
        signup.push(start_ms - (urng.random::<f64>() * 1000.0 * DAY_MS as f64) as i64);
    }
    let users = Alias::new((0..u as u32).collect(), &activity).expect("users > 0");
    let hours = Alias::new((0..24).collect(), &recsys_core::click_model::hour_weights()).expect("non-empty");

    let items_batch = RecordBatch::try_new(
        raw_items_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(ids.iter())) as ArrayRef,
            Arc::new(StringArray::from_iter_values(item_cat.iter().map(|&c| CATEGORIES[c].0))),
            Arc::new(Float64Array::from(item_price.clone())),
            Arc::new(StringArray::from_iter_values(brand)),
            Arc::new(Float64Array::from(rating)),
            Arc::new(Int64Array::from(inventory)),
            Arc::new(TimestampMillisecondArray::from(created).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(title)),
        ],
    )
    .expect("schema matches");
    let users_batch = RecordBatch::try_new(
        raw_users_schema(),
        vec![
            Arc::new(StringArray::from_iter_values((0..u).map(user_id))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(age)),
            Arc::new(StringArray::from_iter_values(region)),
            Arc::new(TimestampMillisecondArray::from(signup).with_timezone("UTC")),
        ],
    )
    .expect("schema matches");
    let world = World {
        model,
        item_cat: item_code,
        by_cat_tier,
        by_cat,
        all_items,
        profiles,
        users,
        hours,
    };
    (world, items_batch, users_batch)
}

/// The string id of a generated user.
pub fn user_id(u: usize) -> String {
    format!("U{u:07}")
}

/// The string id of a generated item.
pub fn item_id(i: usize) -> String {
    format!("P{i:06}")
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Schema of the generated `items.parquet` (the import's `--items` input).
pub fn raw_items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("avg_rating", DataType::Float64, false),
        Field::new("inventory", DataType::Int64, false),
        Field::new("created_at", utc_ms(), false),
        Field::new("title", DataType::Utf8, false),
    ]))
}

/// Schema of the generated `users.parquet`.
pub fn raw_users_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("age_bucket", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("signup_ts", utc_ms(), false),
    ]))
}

/// Schema of the generated daily event files.
pub fn raw_events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("timestamp", utc_ms(), false),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("quantity", DataType::UInt32, true),
        Field::new("device", DataType::Utf8, false),
        Field::new("page", DataType::Utf8, false),
    ]))
}

#[derive(Default)]
struct Chunk {
    user: Vec<u32>,
    item: Vec<u32>,
    kind: Vec<u8>,
    ts: Vec<i64>,
    session: Vec<u64>,
    qty: Vec<u32>,
    device: Vec<u8>,
    page: Vec<u8>,
}

impl Chunk {
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, u: u32, i: u32, k: EventType, ts: i64, s: u64, q: u32, d: u8, p: u8) {
        self.user.push(u);
        self.item.push(i);
        self.kind.push(k as u8);
        self.ts.push(ts);
        self.session.push(s);
        self.qty.push(q);
        self.device.push(d);
        self.page.push(p);
    }
}

fn pick_category(w: &World, u: usize, rng: &mut impl Rng) -> usize {
    let x: f64 = rng.random();
    let fav = w.profiles[u].favorites;
    let k = if x < 0.5 {
        0
    } else if x < 0.75 {
        1
    } else if x < 0.9 {
        2
    } else {
        3
    };
    match fav.get(k).copied().flatten() {
        Some(c) => c as usize,
        None => rng.random_range(0..w.by_cat.len()),
    }
}

/// A session walks the funnel: views (organic browsing, at a listing position), and for each the
/// [`ClickModel`] decides click, add to cart and purchase given the user, the device, the hour and
/// the time (launches and novelty).
fn generate_chunk(w: &World, cfg: &GenerateConfig, day: i64, chunk: u64, target: u64) -> Chunk {
    let mut rng = rng_for(cfg.seed, 1000 + day as u64, chunk);
    let mut c = Chunk::default();
    let day_ms = day * DAY_MS;
    let mut n_session = 0u64;
    let m = &w.model;
    while (c.user.len() as u64) < target {
        let session = ((day as u64) << 32) | (chunk << 24) | n_session;
        n_session += 1;
        let u = w.users.sample(&mut rng) as usize;
        let profile = &w.profiles[u];
        let x: f64 = rng.random();
        let device = if x < DEVICES[0].1 {
            0
        } else if x < DEVICES[0].1 + DEVICES[1].1 {
            1
        } else {
            2
        };
        let hour = w.hours.sample(&mut rng) as i64;
        let mut t = day_ms + hour * 3_600_000 + rng.random_range(0..3_600_000);
        let mut focus = pick_category(w, u, &mut rng);
        let views = 1 + exp(&mut rng, 3.5) as u32;
        let utier = i64::from(profile.tier);
        for v in 0..views {
            if v > 0 && rng.random::<f64>() < 0.15 {
                focus = pick_category(w, u, &mut rng);
            }
            let tier = if rng.random::<f64>() < 0.6 {
                utier
            } else {
                (utier + if rng.random::<bool>() { 1 } else { -1 }).clamp(0, TIERS as i64 - 1)
            } as usize;
            let draw = |rng: &mut Xoshiro256PlusPlus| match (&w.by_cat_tier[focus][tier], &w.by_cat[focus]) {
                (Some(a), _) => a.sample(rng),
                (None, Some(a)) => a.sample(rng),
                (None, None) => w.all_items.sample(rng),
            };
            let mut item = draw(&mut rng);
            if !m.launched(item as usize, t) {
                // Not on sale yet: one more look, else the view does not happen.
                item = draw(&mut rng);
                if !m.launched(item as usize, t) {
                    t += 5_000 + exp(&mut rng, 40_000.0) as i64;
                    continue;
                }
            }
            let ii = item as usize;
            let page = if v == 0 { rng.random_range(0..3u8) } else { 3 };
            c.push(u as u32, item, EventType::View, t, session, 0, device, page);
            let ctx = ClickContext {
                position: exp(&mut rng, 1.5) as usize,
                device: DEVICES[device as usize].0,
                hour: hour as u8,
                page: None,
                now_ms: t,
            };
            if rng.random::<f64>() < m.click_prob(profile, ii, &ctx) {
                let tc = t + rng.random_range(2_000..10_000);
                c.push(u as u32, item, EventType::Click, tc, session, 0, device, 3);
                if rng.random::<f64>() < m.cart_prob(profile, ii) {
                    let tk = tc + rng.random_range(5_000..60_000);
                    let q = m.quantity(ii, rng.random());
                    c.push(u as u32, item, EventType::AddToCart, tk, session, q, device, 3);
                    if rng.random::<f64>() < m.purchase_prob(profile, ii, ctx.device) {
                        let tp = tk + rng.random_range(30_000..600_000);
                        c.push(u as u32, item, EventType::Purchase, tp, session, q, device, 4);
                    }
                }
            }
            t += 5_000 + exp(&mut rng, 40_000.0) as i64;
        }
    }
    c
}

fn day_batch(
    w: &World,
    cfg: &GenerateConfig,
    day: i64,
    user_ids: &[String],
    item_ids: &[String],
) -> Result<RecordBatch> {
    let chunks: Vec<Chunk> = (0..CHUNKS_PER_DAY)
        .into_par_iter()
        .map(|k| {
            let target = cfg.events_per_day / CHUNKS_PER_DAY + u64::from(k < cfg.events_per_day % CHUNKS_PER_DAY);
            generate_chunk(w, cfg, day, k, target)
        })
        .collect();
    // A day's file holds that day only: sessions running past midnight are cut there, so that
    // re-importing one day's file never touches the next day's partition.
    let day_end = (day + 1) * DAY_MS;
    let n: usize = chunks
        .iter()
        .map(|c| c.ts.iter().filter(|&&t| t < day_end).count())
        .sum();
    // Global time order, stable across chunks (so equal timestamps keep chunk order).
    let mut keys: Vec<(i64, u32, u32)> = Vec::with_capacity(n);
    for (k, c) in chunks.iter().enumerate() {
        keys.extend(
            c.ts.iter()
                .enumerate()
                .filter(|(_, t)| **t < day_end)
                .map(|(j, &t)| (t, k as u32, j as u32)),
        );
    }
    keys.par_sort_unstable();
    let pick = |f: fn(&Chunk, usize) -> u64| -> Vec<u64> {
        keys.iter()
            .map(|&(_, k, j)| f(&chunks[k as usize], j as usize))
            .collect()
    };
    let users = pick(|c, j| u64::from(c.user[j]));
    let items = pick(|c, j| u64::from(c.item[j]));
    let kinds = pick(|c, j| u64::from(c.kind[j]));
    let sessions = pick(|c, j| c.session[j]);
    let qty = pick(|c, j| u64::from(c.qty[j]));
    let dev = pick(|c, j| u64::from(c.device[j]));
    let page = pick(|c, j| u64::from(c.page[j]));
    let ts: Vec<i64> = keys.iter().map(|k| k.0).collect();
    drop(chunks);
    let strings = |v: &[u64], names: &[String]| -> StringArray {
        StringArray::from_iter_values(v.iter().map(|&x| names[x as usize].as_str()))
    };
    let mut sess = StringBuilder::with_capacity(n, n * 12);
    for s in &sessions {
        sess.append_value(format!("{s:x}"));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(strings(&users, user_ids)),
        Arc::new(strings(&items, item_ids)),
        Arc::new(StringArray::from_iter_values(
            kinds.iter().map(|&k| EventType::ALL[k as usize].as_str()),
        )),
        Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
        Arc::new(sess.finish()),
        Arc::new(Float64Array::from_iter_values(
            items.iter().map(|&i| w.model.item(i as usize).price),
        )),
        Arc::new(UInt32Array::from(
            qty.iter().map(|&q| (q > 0).then_some(q as u32)).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter_values(
            dev.iter().map(|&d| DEVICES[d as usize].0),
        )),
        Arc::new(StringArray::from_iter_values(page.iter().map(|&p| PAGES[p as usize]))),
    ];
    Ok(RecordBatch::try_new(raw_events_schema(), cols)?)
}

/// What `generate` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    /// The settings used.
    pub config: GenerateConfig,
    /// Events written per day file.
    pub events: u64,
    /// Purchase events among them.
    pub purchases: u64,
    /// Files written, relative to the output directory.
    pub files: Vec<String>,
}

/// Writes a synthetic TechShop export into `out`: `items.parquet`, `users.parquet`,
/// `events/events-YYYY-MM-DD.parquet` and `generate.json` (the settings).
pub fn generate(out: &Path, cfg: &GenerateConfig, progress: Progress) -> Result<GenerateReport> {
    cfg.validate()?;
    let (world, items, users) = build_world(cfg);
    write_parquet(&out.join("items.parquet"), raw_items_schema(), &[items])?;
    write_parquet(&out.join("users.parquet"), raw_users_schema(), &[users])?;
    let user_ids: Vec<String> = (0..cfg.users as usize).map(user_id).collect();
    let item_ids: Vec<String> = (0..cfg.items as usize).map(item_id).collect();
    let mut report = GenerateReport {
        config: cfg.clone(),
        events: 0,
        purchases: 0,
        files: vec!["items.parquet".into(), "users.parquet".into()],
    };
    let bar = progress.bar(u64::from(cfg.days), "generate");
    let mut pending: Option<(String, RecordBatch)> = None;
    for d in 0..=i64::from(cfg.days) {
        // Generate day d while day d-1 is written.
        let (next, written) = rayon::join(
            || {
                (d < i64::from(cfg.days))
                    .then(|| day_batch(&world, cfg, cfg.start_day + d, &user_ids, &item_ids))
                    .transpose()
            },
            || match pending.take() {
                Some((rel, b)) => write_parquet(&out.join(&rel), raw_events_schema(), &[b]).map(|()| Some(rel)),
                None => Ok(None),
            },
        );
        if let Some(rel) = written? {
            report.files.push(rel);
            bar.inc(1);
        }
        if let Some(b) = next? {
            report.events += b.num_rows() as u64;
            let kinds = b.column(2).as_any().downcast_ref::<StringArray>().expect("utf8");
            report.purchases += kinds.iter().filter(|k| *k == Some("purchase")).count() as u64;
            let date = crate::dataset::day_to_date(cfg.start_day + d);
            pending = Some((format!("events/events-{date}.parquet"), b));
        }
    }
    bar.finish_and_clear();
    let text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    recsys_core::atomic::write_atomic(&out.join("generate.json"), |f| {
        use std::io::Write;
        f.write_all(text.as_bytes())
            .map_err(Error::io(out.join("generate.json")))
    })?;
    progress.summary(format!(
        "generated {} events ({} purchases, {:.2}%) over {} days for {} users and {} items",
        report.events,
        report.purchases,
        100.0 * report.purchases as f64 / report.events.max(1) as f64,
        cfg.days,
        cfg.users,
        cfg.items
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_matches_weights() {
        let a = Alias::new(vec![0, 1, 2], &[1.0, 2.0, 7.0]).unwrap();
        let mut rng = rng_for(1, 2, 3);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[a.sample(&mut rng) as usize] += 1;
        }
        let f: Vec<f64> = counts.iter().map(|&c| c as f64 / 100_000.0).collect();
        assert!(
            (f[0] - 0.1).abs() < 0.01 && (f[1] - 0.2).abs() < 0.01 && (f[2] - 0.7).abs() < 0.01,
            "{f:?}"
        );
        assert!(Alias::new(vec![], &[]).is_none());
    }

    #[test]
    fn chunks_are_deterministic_and_funnel_is_realistic() {
        let cfg = GenerateConfig {
            users: 2000,
            items: 500,
            events_per_day: 64_000,
            days: 1,
            ..Default::default()
        };
        let (w, _, _) = build_world(&cfg);
        let a = generate_chunk(&w, &cfg, cfg.start_day, 3, 20_000);
        let b = generate_chunk(&w, &cfg, cfg.start_day, 3, 20_000);
        assert_eq!(a.item, b.item);
        assert_eq!(a.ts, b.ts);
        let count = |k: EventType| a.kind.iter().filter(|&&x| x == k as u8).count() as f64;
        let n = a.kind.len() as f64;
        let purchase_share = count(EventType::Purchase) / n;
        assert!(
            (0.002..0.01).contains(&purchase_share),
            "purchase share {purchase_share}"
        );
        assert!(count(EventType::View) > count(EventType::Click));
        assert!(count(EventType::Click) > count(EventType::AddToCart));
        assert!(count(EventType::AddToCart) > count(EventType::Purchase));
    }

    #[test]
    fn users_favour_their_categories() {
        let cfg = GenerateConfig {
            users: 500,
            items: 2000,
            ..Default::default()
        };
        let (w, _, _) = build_world(&cfg);
        let c = generate_chunk(&w, &cfg, cfg.start_day, 0, 50_000);
        let in_fav = (0..c.user.len())
            .filter(|&j| {
                w.profiles[c.user[j] as usize]
                    .favorites
                    .contains(&Some(w.item_cat[c.item[j] as usize]))
            })
            .count() as f64
            / c.user.len() as f64;
        // 3 of 24 categories would give ~12% by chance.
        assert!(in_fav > 0.8, "share of events in favourite categories {in_fav}");
    }
}
