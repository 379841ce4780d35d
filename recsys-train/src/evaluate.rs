//! Offline evaluation: protocols, splits and ranking metrics.
//!
//! The flow is [`load_interactions`] → [`split`] → fit a model on [`Split::train`] →
//! [`evaluate`] it through the [`Scorer`] trait. Two protocols are supported:
//!
//! * [`Protocol::TimeSplit`]: everything before a cut-off `T` is training data; a user's test
//!   targets are the items first met at or after `T` (the production situation: predict what a
//!   user will engage with next, among items they have not touched yet).
//! * [`Protocol::LeaveOneOut`]: each user's last interaction is the test target and the one before
//!   it is held out for validation (the protocol of SASRec, BERT4Rec and S3-Rec, so published
//!   figures such as those in `shared/data/README.md` are comparable).
//!
//! Ranking is always over the full catalogue, minus the items of the user's history
//! ([`Split::context`]): recommending what the user already has is not counted as a success.

use crate::arrow;
use crate::dataset::Dataset;
use crate::{Error, Result};
use ahash::AHashSet;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int8Type, TimestampMillisecondType, UInt32Type};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use recsys_core::model::HistoryEvent;
use recsys_core::schema::{DAY_MS, EventType, columns as col};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One event reduced to what the evaluation protocols and the baselines need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    /// Dense user index.
    pub user: u32,
    /// Dense item index.
    pub item: u32,
    /// UTC milliseconds since the epoch.
    pub ts: i64,
    /// What the user did.
    pub event_type: EventType,
}

/// Per-user histories (time order) of a list of interactions: the model's view of a split.
pub fn histories(interactions: &[Interaction], num_users: usize) -> Vec<Vec<HistoryEvent>> {
    let mut h = vec![Vec::new(); num_users];
    for it in interactions {
        h[it.user as usize].push(HistoryEvent {
            item: it.item,
            event_type: it.event_type,
            ts: it.ts,
        });
    }
    h
}

/// Columns [`load_interactions`] reads.
pub const INTERACTION_COLUMNS: &[&str] = &[col::USER_IDX, col::ITEM_IDX, col::EVENT_TYPE, col::TIMESTAMP];

/// All live events of a dataset in time order (stable: ties keep partition and file order),
/// reading only [`INTERACTION_COLUMNS`].
pub fn load_interactions(ds: &Dataset) -> Result<Vec<Interaction>> {
    let mut out: Vec<Interaction> = Vec::with_capacity(ds.manifest.num_events as usize);
    scan_interactions(ds, |it| out.push(it))?;
    // Partitions are days in date order and each is sorted, so this is normally a no-op check.
    if !out.is_sorted_by_key(|x| x.ts) {
        out.sort_by_key(|x| x.ts);
    }
    Ok(out)
}

/// Streams the live events of a dataset as [`Interaction`]s, partition by partition (days in date
/// order, each sorted by time), without holding them all in memory.
pub fn scan_interactions(ds: &Dataset, mut f: impl FnMut(Interaction)) -> Result<()> {
    ds.scan_events(None, Some(INTERACTION_COLUMNS), |_, batch| {
        let need = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("event scan without column `{name}`")))
        };
        let users = need(col::USER_IDX)?.as_primitive::<UInt32Type>();
        let items = need(col::ITEM_IDX)?.as_primitive::<UInt32Type>();
        let ts = need(col::TIMESTAMP)?.as_primitive::<TimestampMillisecondType>();
        let types = need(col::EVENT_TYPE)?
            .as_dictionary_opt::<Int8Type>()
            .ok_or_else(|| Error::Internal("event_type is not dictionary-encoded".into()))?;
        let values = types.values().as_string::<i32>();
        let mut type_of = Vec::with_capacity(values.len());
        for v in values.iter() {
            let v = v.unwrap_or("");
            type_of.push(EventType::parse(v).ok_or_else(|| {
                Error::data(
                    ds.root().join("events"),
                    format!("unknown event type {v:?} in a partition"),
                )
            })?);
        }
        let keys = types.keys();
        for i in 0..batch.num_rows() {
            let code = keys.value(i);
            let event_type = usize::try_from(code)
                .ok()
                .and_then(|c| type_of.get(c).copied())
                .ok_or_else(|| Error::Internal(format!("event_type key {code} outside its dictionary")))?;
            f(Interaction {
                user: users.value(i),
                item: items.value(i),
                ts: ts.value(i),
                event_type,
            });
        }
        Ok(())
    })
}

/// An offline evaluation protocol (`--protocol time-split|leave-one-out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Train on everything before a cut-off; test on the new items each user meets after it.
    TimeSplit,
    /// Per user: the last interaction is the test target, the one before it validation.
    LeaveOneOut,
}

/// Settings of [`split`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// The protocol.
    pub protocol: Protocol,
    /// Time split only: length of the test window in days; default
    /// `clamp(span_days / 7, 1, 14)`.
    pub test_days: Option<u32>,
    /// Time split only: the weakest event type that makes a test target (`click`: clicks,
    /// add-to-carts and purchases count, views do not). Ignored by leave-one-out, where the last
    /// interaction is the target whatever its type.
    pub min_target_event: EventType,
    /// Evaluate at most this many test cases (a seeded pseudo-random subset); `None`: all.
    pub max_users: Option<usize>,
    /// Seed of the test-case subset.
    pub seed: u64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            protocol: Protocol::TimeSplit,
            test_days: None,
            min_target_event: EventType::Click,
            max_users: Some(20_000),
            seed: 42,
        }
    }
}

/// One user to evaluate: rank the catalogue for `user` and look for `targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// Dense user index.
    pub user: u32,
    /// Relevant items, distinct, in order of first occurrence.
    pub targets: Vec<u32>,
    /// The time of the prediction (UTC ms): the cut-off (time split) or the test event's time
    /// (leave-one-out). Nothing at or after it is in the user's context.
    pub as_of: i64,
}

/// A train/test split of a dataset's interactions.
#[derive(Debug, Clone)]
pub struct Split {
    /// The protocol that made it.
    pub protocol: Protocol,
    /// Users in the id dictionary (user indices are below it).
    pub num_users: usize,
    /// Items in the catalogue (item indices are below it; rankings cover all of them).
    pub num_items: usize,
    /// Time split: the cut-off `T` (train is `ts < T`); leave-one-out: `None`.
    pub cutoff_ms: Option<i64>,
    /// What models may fit on, in time order.
    pub train: Vec<Interaction>,
    /// What models may use as a user's history when scoring a test case, in time order: every
    /// interaction except the test ones. The items of a user's context are excluded from their
    /// ranking.
    pub context: Vec<Interaction>,
    /// Leave-one-out: the second-to-last interaction, as `(user, item)`, of every user with at
    /// least 3 interactions (whether or not `max_users` kept their test case), in user order, for
    /// model selection; time split: empty.
    pub validation: Vec<(u32, u32)>,
    /// The test cases, sorted by user.
    pub test: Vec<TestCase>,
}

/// Distinct items per user, sorted (compressed rows).
#[derive(Debug, Clone, Default)]
pub(crate) struct UserItems {
    offsets: Vec<usize>,
    items: Vec<u32>,
}

impl UserItems {
    /// Rows for users `0..num_users` from `(user, item)` pairs (users outside are ignored).
    pub(crate) fn build(num_users: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Self {
        let mut counts = vec![0usize; num_users + 1];
        for (u, _) in pairs.clone() {
            if let Some(c) = counts.get_mut(u as usize + 1).filter(|_| (u as usize) < num_users) {
                *c += 1;
            }
        }
        for u in 0..num_users {
            counts[u + 1] += counts[u];
        }
        let mut fill = counts.clone();
        let mut items = vec![0u32; counts[num_users]];
        for (u, i) in pairs {
            if (u as usize) < num_users {
                items[fill[u as usize]] = i;
                fill[u as usize] += 1;
            }
        }
        // Sort and deduplicate each row, compacting as we go.
        let mut offsets = Vec::with_capacity(num_users + 1);
        offsets.push(0);
        let mut w = 0;
        for u in 0..num_users {
            let row = &mut items[counts[u]..counts[u + 1]];
            row.sort_unstable();
            let mut last = None;
            for k in counts[u]..counts[u + 1] {
                let v = items[k];
                if last != Some(v) {
                    items[w] = v;
                    w += 1;
                    last = Some(v);
                }
            }
            offsets.push(w);
        }
        items.truncate(w);
        UserItems { offsets, items }
    }

    /// The sorted distinct items of `user` (empty for an unknown user).
    pub(crate) fn get(&self, user: u32) -> &[u32] {
        let u = user as usize;
        if u + 1 >= self.offsets.len() {
            return &[];
        }
        &self.items[self.offsets[u]..self.offsets[u + 1]]
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator seeded by `(seed, user)`: the same user draws the same numbers in every run,
/// whatever the thread count or the other users.
fn user_rng(seed: u64, user: u32) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed ^ splitmix64(u64::from(user))))
}

/// Splits interactions (in time order; they are stably re-sorted by time if not) into training
/// data, per-user context and test cases according to `opts.protocol`.
///
/// * [`Protocol::TimeSplit`]: with `T = max_ts + 1 - test_days * DAY_MS`, `train = context =` the
///   interactions with `ts < T`. A user gets a test case when they have at least one training
///   interaction and at least one interaction at `ts >= T` of type `>= min_target_event` whose item
///   is not among their training items; the targets are those items, distinct, in order of first
///   occurrence, and `as_of = T`.
/// * [`Protocol::LeaveOneOut`]: for each user with at least 3 interactions (all event types, in
///   time order, ties keeping input order) the last one is the test target (`as_of` = its time) and
///   the second-to-last goes to `validation`; `train` holds all the others and `context` holds
///   train plus validation. A test item that also occurs earlier in the user's context stays a test
///   case but cannot be hit (context items are excluded from the ranking); re-consumption is not
///   rewarded. Users with fewer than 3 interactions contribute everything to train and context and
///   get no test case. `min_target_event` and `test_days` are ignored.
///
/// With more test cases than `max_users`, a seeded pseudo-random subset of that size is kept
/// (whether a user is kept depends only on the seed and the user index). Test interactions never
/// appear in `train` or `context`.
///
/// Fails on an empty input, on a user or item index outside `num_users`/`num_items`, and on
/// `test_days = 0` or `max_users = 0`.
pub fn split(interactions: &[Interaction], num_users: usize, num_items: usize, opts: &SplitOptions) -> Result<Split> {
    if interactions.is_empty() {
        return Err(Error::arg("interactions", 0, "nothing to split: there are no events"));
    }
    if let Some(x) = interactions
        .iter()
        .find(|x| x.user as usize >= num_users || x.item as usize >= num_items)
    {
        return Err(Error::arg(
            "interactions",
            format!("user {} item {}", x.user, x.item),
            format!("index outside the {num_users} users and {num_items} items of the dataset"),
        ));
    }
    if opts.max_users == Some(0) {
        return Err(Error::arg("max-users", 0, "must be at least 1"));
    }
    let sorted: std::borrow::Cow<[Interaction]> = if interactions.is_sorted_by_key(|x| x.ts) {
        std::borrow::Cow::Borrowed(interactions)
    } else {
        let mut v = interactions.to_vec();
        v.sort_by_key(|x| x.ts);
        std::borrow::Cow::Owned(v)
    };
    let mut s = match opts.protocol {
        Protocol::TimeSplit => time_split(&sorted, num_users, num_items, opts)?,
        Protocol::LeaveOneOut => leave_one_out(&sorted, num_users, num_items),
    };
    sample_cases(&mut s.test, opts.max_users.unwrap_or(usize::MAX), opts.seed);
    Ok(s)
}

/// Keeps a seeded pseudo-random subset of at most `max` cases (`max >= 1`), sorted by user.
fn sample_cases(cases: &mut Vec<TestCase>, max: usize, seed: u64) {
    if cases.len() > max {
        let mut keyed: Vec<(u64, TestCase)> = std::mem::take(cases)
            .into_iter()
            .map(|c| (splitmix64(seed ^ splitmix64(u64::from(c.user))), c))
            .collect();
        keyed.select_nth_unstable_by_key(max - 1, |(k, c)| (*k, c.user));
        keyed.truncate(max);
        *cases = keyed.into_iter().map(|(_, c)| c).collect();
        cases.sort_by_key(|c| c.user);
    }
}

/// The model-selection split inside `sp`'s training part, for early stopping: a [`Split`] whose
/// `train` is what to fit on while selecting and whose `test` holds the validation cases (at
/// most `max_users`, a seeded sample), so that nothing of `sp.test` is seen while selecting.
///
/// * Leave-one-out: fit on `sp.train` (which holds neither the validation nor the test
///   interactions); the cases are each user's second-to-last interaction ([`Split::validation`]),
///   predicted as of its time from the training interactions.
/// * Time split: the same time split applied to `sp.train`: the last `opts.test_days` (default:
///   by the same rule, on the training period's span) of the training period become the
///   validation window; fit on what precedes it.
pub fn validation_split(sp: &Split, opts: &SplitOptions, max_users: usize) -> Result<Split> {
    if max_users == 0 {
        return Err(Error::arg("validation_users", 0, "must be at least 1"));
    }
    let mut v = match sp.protocol {
        Protocol::TimeSplit => {
            if sp.train.is_empty() {
                return Err(Error::arg("interactions", 0, "no training interactions to validate on"));
            }
            time_split(&sp.train, sp.num_users, sp.num_items, opts)?
        }
        Protocol::LeaveOneOut => {
            // The validation interaction is each such user's last in `context` (train + validation).
            let mut last = vec![usize::MAX; sp.num_users];
            for (k, x) in sp.context.iter().enumerate() {
                last[x.user as usize] = k;
            }
            let test = sp
                .validation
                .iter()
                .filter_map(|&(user, item)| {
                    let x = sp.context.get(*last.get(user as usize)?)?;
                    (x.item == item).then(|| TestCase {
                        user,
                        targets: vec![item],
                        as_of: x.ts,
                    })
                })
                .collect();
            Split {
                protocol: Protocol::LeaveOneOut,
                num_users: sp.num_users,
                num_items: sp.num_items,
                cutoff_ms: None,
                train: sp.train.clone(),
                context: sp.train.clone(),
                validation: Vec::new(),
                test,
            }
        }
    };
    v.validation.clear();
    sample_cases(&mut v.test, max_users, opts.seed ^ 0x7661_6c69_6461_7465);
    Ok(v)
}

fn time_split(sorted: &[Interaction], num_users: usize, num_items: usize, opts: &SplitOptions) -> Result<Split> {
    let (min_ts, max_ts) = (sorted[0].ts, sorted[sorted.len() - 1].ts);
    let span_days = (max_ts - min_ts).saturating_add(DAY_MS) / DAY_MS;
    let test_days = match opts.test_days {
        Some(0) => return Err(Error::arg("test-days", 0, "must be at least 1")),
        Some(d) => i64::from(d),
        None => (span_days / 7).clamp(1, 14),
    };
    let cutoff = max_ts
        .saturating_add(1)
        .saturating_sub(test_days.saturating_mul(DAY_MS));
    let n_train = sorted.partition_point(|x| x.ts < cutoff);
    let train = sorted[..n_train].to_vec();
    let seen = UserItems::build(num_users, train.iter().map(|x| (x.user, x.item)));
    let mut targets: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut taken: AHashSet<(u32, u32)> = AHashSet::new();
    for x in &sorted[n_train..] {
        if x.event_type < opts.min_target_event {
            continue;
        }
        let known = seen.get(x.user);
        if known.is_empty() || known.binary_search(&x.item).is_ok() {
            continue;
        }
        if taken.insert((x.user, x.item)) {
            targets.entry(x.user).or_default().push(x.item);
        }
    }
    let test = targets
        .into_iter()
        .map(|(user, targets)| TestCase {
            user,
            targets,
            as_of: cutoff,
        })
        .collect();
    Ok(Split {
        protocol: Protocol::TimeSplit,
        num_users,
        num_items,
        cutoff_ms: Some(cutoff),
        context: train.clone(),
        train,
        validation: Vec::new(),
        test,
    })
}

fn leave_one_out(sorted: &[Interaction], num_users: usize, num_items: usize) -> Split {
    const NONE: usize = usize::MAX;
    let mut count = vec![0u32; num_users];
    let mut last = vec![NONE; num_users];
    let mut prev = vec![NONE; num_users];
    for (k, x) in sorted.iter().enumerate() {
        let u = x.user as usize;
        count[u] += 1;
        prev[u] = last[u];
        last[u] = k;
    }
    // 0: train, 1: validation, 2: test.
    let mut role = vec![0u8; sorted.len()];
    let mut validation = Vec::new();
    let mut test = Vec::new();
    for u in 0..num_users {
        if count[u] >= 3 {
            role[last[u]] = 2;
            role[prev[u]] = 1;
            let (t, v) = (&sorted[last[u]], &sorted[prev[u]]);
            validation.push((v.user, v.item));
            test.push(TestCase {
                user: t.user,
                targets: vec![t.item],
                as_of: t.ts,
            });
        }
    }
    let pick = |keep: fn(u8) -> bool| -> Vec<Interaction> {
        sorted
            .iter()
            .zip(&role)
            .filter(|&(_, &r)| keep(r))
            .map(|(x, _)| *x)
            .collect()
    };
    Split {
        protocol: Protocol::LeaveOneOut,
        num_users,
        num_items,
        cutoff_ms: None,
        train: pick(|r| r == 0),
        context: pick(|r| r < 2),
        validation,
        test,
    }
}

/// A model under evaluation.
pub trait Scorer: Sync {
    /// Fills `out[item]` for every item (`out.len()` is the number of items); higher is better.
    /// The evaluation itself removes the user's context items from the ranking.
    fn score(&self, case: &TestCase, out: &mut [f32]);

    /// [`Scorer::score`] for several cases at once: `out` holds one row of `out.len() /
    /// cases.len()` scores per case, in order. Scorers with a matrix-product form (the two-tower
    /// model) override it; the default scores case by case.
    fn score_batch(&self, cases: &[TestCase], out: &mut [f32]) {
        if cases.is_empty() {
            return;
        }
        let n = out.len() / cases.len();
        for (k, case) in cases.iter().enumerate() {
            self.score(case, &mut out[k * n..(k + 1) * n]);
        }
    }
}

/// Test cases scored together by [`evaluate`] ([`Scorer::score_batch`]): enough rows for a matrix
/// product to reuse each item row from cache, few enough that the block's scores (`cases ×
/// items` floats: 12.8 MB at 100,000 items) stay small per thread.
pub const SCORE_BLOCK: usize = 32;

/// Settings of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Cut-offs of `recall@K`, `hr@K` and `ndcg@K`.
    pub ks: Vec<usize>,
    /// Negatives sampled per test case for the sampled AUC (0: no `auc`).
    pub auc_negatives: usize,
    /// Seed of the negative sampling.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            ks: vec![10, 20, 100, 500],
            auc_negatives: 100,
            seed: 7,
        }
    }
}

/// Metric name → value (`recall@10`, `ndcg@10`, `auc`, `users`, ...), in name order.
pub type Metrics = BTreeMap<String, f64>;

/// Length of the lists behind `coverage@20`, `entropy@20` and `novelty@20`.
pub const DIVERSITY_K: usize = 20;

/// The number of `targets` among the first `k` items of `ranking`.
fn hits(ranking: &[u32], targets: &[u32], k: usize) -> usize {
    ranking.iter().take(k).filter(|i| targets.contains(i)).count()
}

/// Recall@k with binary relevance: targets among the first `k` of `ranking`, divided by the
/// number of (distinct) targets; 0 without targets.
pub fn recall_at_k(ranking: &[u32], targets: &[u32], k: usize) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    hits(ranking, targets, k) as f64 / targets.len() as f64
}

/// Hit rate@k: 1 when any target is among the first `k` of `ranking`, else 0.
pub fn hit_at_k(ranking: &[u32], targets: &[u32], k: usize) -> f64 {
    if ranking.iter().take(k).any(|i| targets.contains(i)) {
        1.0
    } else {
        0.0
    }
}

/// NDCG@k with binary relevance: `DCG = Σ 1/log2(rank + 1)` over the targets among the first `k`
/// of `ranking` (rank 1-based), divided by the ideal DCG over `min(|targets|, k)` positions;
/// 0 without targets.
pub fn ndcg_at_k(ranking: &[u32], targets: &[u32], k: usize) -> f64 {
    let discount = |rank: usize| 1.0 / ((rank + 1) as f64).log2();
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, i)| targets.contains(i))
        .map(|(r, _)| discount(r + 1))
        .sum();
    let idcg: f64 = (1..=targets.len().min(k)).map(discount).sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// AUC over all (positive, negative) pairs: the mean of `[p > n] + 0.5 [p == n]`; `None` when
/// either side is empty.
pub fn auc_pairs(positives: &[f32], negatives: &[f32]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut sum = 0.0f64;
    for &p in positives {
        for &n in negatives {
            if p > n {
                sum += 1.0;
            } else if p == n {
                sum += 0.5;
            }
        }
    }
    Some(sum / (positives.len() * negatives.len()) as f64)
}

/// Shannon entropy in bits of the distribution proportional to `counts` (zeros ignored; 0 for
/// an all-zero input).
pub fn entropy_bits(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// Popularity rank of every item among `interactions` (1 = most frequent, ties by lower item
/// index); items that never occur get the number of distinct occurring items + 1.
pub fn popularity_ranks(interactions: &[Interaction], num_items: usize) -> Vec<u32> {
    let mut counts = vec![0u64; num_items];
    for x in interactions {
        if let Some(c) = counts.get_mut(x.item as usize) {
            *c += 1;
        }
    }
    let mut seen: Vec<u32> = (0..num_items as u32).filter(|&i| counts[i as usize] > 0).collect();
    seen.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let mut rank = vec![seen.len() as u32 + 1; num_items];
    for (r, &i) in seen.iter().enumerate() {
        rank[i as usize] = r as u32 + 1;
    }
    rank
}

/// A key whose descending order is "higher score first, then lower item index" (NaN must be
/// removed first; `-0.0` ranks as `0.0`).
fn rank_key(score: f32, item: u32) -> u64 {
    let score = if score == 0.0 { 0.0f32 } else { score };
    let bits = score.to_bits();
    let ordered = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(ordered) << 32) | u64::from(!item)
}

/// Keeps in `candidates` the best `k` of them by `scores`, best first (ties: lower item index).
/// `keys` is scratch.
fn top_k_in_place(scores: &[f32], candidates: &mut Vec<u32>, k: usize, keys: &mut Vec<u64>) {
    let k = k.min(candidates.len());
    keys.clear();
    keys.extend(candidates.iter().map(|&i| rank_key(scores[i as usize], i)));
    let desc = |a: &u64, b: &u64| b.cmp(a);
    if k > 0 && k < keys.len() {
        keys.select_nth_unstable_by(k - 1, desc);
    }
    keys.truncate(k);
    keys.sort_unstable_by(desc);
    candidates.clear();
    candidates.extend(keys.iter().map(|&key| !(key as u32)));
}

/// The `k` best items by `scores` (higher first, ties by lower index, NaN last), leaving out the
/// items of `exclude`.
pub fn top_k(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<u32> {
    let clean: Vec<f32> = scores
        .iter()
        .map(|&s| if s.is_nan() { f32::NEG_INFINITY } else { s })
        .collect();
    let excluded: AHashSet<u32> = exclude.iter().copied().collect();
    let mut candidates: Vec<u32> = (0..scores.len() as u32).filter(|i| !excluded.contains(i)).collect();
    top_k_in_place(&clean, &mut candidates, k, &mut Vec::new());
    candidates
}

/// What one test case contributes.
struct CaseResult {
    recall: Vec<f64>,
    hr: Vec<f64>,
    ndcg: Vec<f64>,
    auc: Option<f64>,
    top: Vec<u32>,
}

struct Scratch {
    candidates: Vec<u32>,
    negatives: Vec<f32>,
    eligible: Vec<u32>,
    keys: Vec<u64>,
}

/// Scores every test case of `split` with `scorer` and averages the metrics over the cases.
///
/// For each case every item is scored, the user's context items are removed (as if scored
/// `-inf`, and never listed), and the top `max(ks ∪ {20})` items are taken (ties: lower item index
/// first, so results are deterministic). Metrics, binary relevance, averaged over test cases:
/// `recall@K`, `hr@K`, `ndcg@K` for every `K` in `ks` (see [`recall_at_k`], [`hit_at_k`],
/// [`ndcg_at_k`]); `auc`: sampled AUC against `auc_negatives` items drawn uniformly (with
/// replacement, seeded per user) among the items neither targets nor in the context, over the
/// cases that have both targets and such items (see [`auc_pairs`]; a target in the context scores
/// `-inf`); `coverage@20`: distinct items in all top-20 lists / catalogue size; `entropy@20`:
/// [`entropy_bits`] of how often each item appears in those lists; `novelty@20`: the mean
/// [`popularity_ranks`] (among train interactions) of the recommended items; `users`: number of
/// test cases. Cases run in parallel; the result does not depend on the thread count.
pub fn evaluate(split: &Split, scorer: &dyn Scorer, opts: &EvalOptions) -> Metrics {
    let n = split.num_items;
    let context = UserItems::build(split.num_users, split.context.iter().map(|x| (x.user, x.item)));
    let list_len = opts.ks.iter().copied().max().unwrap_or(0).max(DIVERSITY_K);
    let results: Vec<CaseResult> = split
        .test
        .par_chunks(SCORE_BLOCK)
        .flat_map_iter(|block| {
            let mut scores = vec![0f32; block.len() * n];
            scorer.score_batch(block, &mut scores);
            let mut s = Scratch {
                candidates: Vec::with_capacity(n),
                negatives: Vec::new(),
                eligible: Vec::new(),
                keys: Vec::with_capacity(n),
            };
            let mut rows = scores.chunks_mut(n.max(1));
            block
                .iter()
                .map(|case| {
                    let row = if n == 0 {
                        &mut [][..]
                    } else {
                        rows.next().unwrap_or_default()
                    };
                    evaluate_case(case, context.get(case.user), row, opts, list_len, &mut s)
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let mut m = Metrics::new();
    let cases = results.len();
    let mean = |sum: f64| if cases > 0 { sum / cases as f64 } else { 0.0 };
    for (j, k) in opts.ks.iter().enumerate() {
        let sum = |f: fn(&CaseResult) -> &Vec<f64>| results.iter().map(|r| f(r)[j]).sum::<f64>();
        m.insert(format!("recall@{k}"), mean(sum(|r| &r.recall)));
        m.insert(format!("hr@{k}"), mean(sum(|r| &r.hr)));
        m.insert(format!("ndcg@{k}"), mean(sum(|r| &r.ndcg)));
    }
    if opts.auc_negatives > 0 {
        let aucs: Vec<f64> = results.iter().filter_map(|r| r.auc).collect();
        let auc = if aucs.is_empty() {
            0.0
        } else {
            aucs.iter().sum::<f64>() / aucs.len() as f64
        };
        m.insert("auc".into(), auc);
    }
    let pop_rank = popularity_ranks(&split.train, n);
    let mut counts = vec![0u64; n];
    let (mut slots, mut rank_sum) = (0u64, 0f64);
    for r in &results {
        for &i in &r.top {
            counts[i as usize] += 1;
            slots += 1;
            rank_sum += f64::from(pop_rank[i as usize]);
        }
    }
    let distinct = counts.iter().filter(|&&c| c > 0).count();
    let key = |name: &str| format!("{name}@{DIVERSITY_K}");
    m.insert(key("coverage"), if n > 0 { distinct as f64 / n as f64 } else { 0.0 });
    m.insert(key("entropy"), entropy_bits(&counts));
    m.insert(key("novelty"), if slots > 0 { rank_sum / slots as f64 } else { 0.0 });
    m.insert("users".into(), cases as f64);
    m
}

fn evaluate_case(
    case: &TestCase,
    context: &[u32],
    scores: &mut [f32],
    opts: &EvalOptions,
    list_len: usize,
    s: &mut Scratch,
) -> CaseResult {
    let n = scores.len();
    for v in scores.iter_mut() {
        if v.is_nan() {
            *v = f32::NEG_INFINITY;
        }
    }
    for &i in context {
        scores[i as usize] = f32::NEG_INFINITY;
    }
    // Candidates: every item not in the (sorted) context.
    s.candidates.clear();
    let mut ctx = context.iter().peekable();
    for i in 0..n as u32 {
        if ctx.peek() == Some(&&i) {
            ctx.next();
        } else {
            s.candidates.push(i);
        }
    }

    let auc = if opts.auc_negatives > 0 && !case.targets.is_empty() {
        let positives: Vec<f32> = case
            .targets
            .iter()
            .filter(|&&t| (t as usize) < n)
            .map(|&t| scores[t as usize])
            .collect();
        let open_targets = case
            .targets
            .iter()
            .filter(|&&t| (t as usize) < n && context.binary_search(&t).is_err())
            .count();
        let eligible = s.candidates.len() - open_targets;
        s.negatives.clear();
        if eligible > 0 {
            let mut rng = user_rng(opts.seed, case.user);
            let pool = s.candidates.len();
            if eligible * 2 >= pool {
                // Rejection sampling over the candidates: at most half are rejected on average.
                while s.negatives.len() < opts.auc_negatives {
                    let i = s.candidates[rng.random_range(0..pool)];
                    if !case.targets.contains(&i) {
                        s.negatives.push(scores[i as usize]);
                    }
                }
            } else {
                s.eligible.clear();
                s.eligible
                    .extend(s.candidates.iter().copied().filter(|i| !case.targets.contains(i)));
                for _ in 0..opts.auc_negatives {
                    let i = s.eligible[rng.random_range(0..s.eligible.len())];
                    s.negatives.push(scores[i as usize]);
                }
            }
        }
        auc_pairs(&positives, &s.negatives)
    } else {
        None
    };

    top_k_in_place(scores, &mut s.candidates, list_len, &mut s.keys);
    let ranking = &s.candidates;
    let t = &case.targets;
    CaseResult {
        recall: opts.ks.iter().map(|&k| recall_at_k(ranking, t, k)).collect(),
        hr: opts.ks.iter().map(|&k| hit_at_k(ranking, t, k)).collect(),
        ndcg: opts.ks.iter().map(|&k| ndcg_at_k(ranking, t, k)).collect(),
        auc,
        top: ranking.iter().take(DIVERSITY_K).copied().collect(),
    }
}
