//! The two-tower retrieval model of the ADR ("Model Architecture").
//!
//! * Item tower: item-id embedding + category + brand + price bucket + numeric features
//!   (popularity, rating) → MLP → L2-normalised embedding.
//! * User tower: demographics (age bucket, region) + the user's recent history strictly before the
//!   prediction time, pooled twice (short term: event-type weights × recency decay; long term:
//!   event-type weights only, also pooling the history's categories and price buckets) + aggregate
//!   features of that history → MLP → L2-normalised embedding. With
//!   [`UserEncoder::Attention`], causal self-attention over the history (ids, positions, event
//!   types, time gaps), read at the newest event, takes the short-term pooling's place. There is no per-user id table: the user tower
//!   is a function of features and history, so it serves new users and live sessions alike.
//!
//! Training ([`trainer`]) is generic over the burn backend (CPU `NdArray` by default, CUDA behind
//! the `cuda` feature) with in-batch sampled softmax, logQ correction and a temperature; the id
//! table is updated sparsely ([`sparse`]). Inference ([`inference`]) runs on plain `f32` slices with
//! the same input construction ([`UserInputs::build`]) as training, so the two cannot skew.

#[cfg(feature = "training")]
mod batch;
pub mod inference;
#[cfg(feature = "training")]
pub mod net;
#[cfg(feature = "training")]
mod softmax;
pub mod sparse;
#[cfg(feature = "training")]
pub mod trainer;

use crate::schema::{DAY_MS, EventType};

/// Per-user static inputs (codes, 0 = unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserProfile {
    /// 1 + age bucket.
    pub age: u32,
    /// 1 + region.
    pub region: u32,
}

/// Everything training needs, indexed by dense ids (built by `recsys-train`'s feature
/// pipeline, read by the batcher and the trainer).
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Vocabulary sizes.
    pub vocab: Vocab,
    /// Item inputs.
    pub items: ItemSide,
    /// Per-user demographics.
    pub users: Vec<UserProfile>,
    /// Per-user training interactions in time order.
    pub histories: Vec<Vec<HistoryEvent>>,
}

/// Defines [`TwoTowerConfig`] from one list of fields, each with its documentation, type, default
/// and builder method: the struct (serde, field names as JSON keys), `Default`, `new()` and the
/// `with_*` setters, with no dependency on burn (serving reads configs without the training stack).
macro_rules! two_tower_config {
    ($($(#[doc = $doc:expr])* $field:ident, $with:ident: $ty:ty = $default:expr;)*) => {
        /// Hyper-parameters of the two-tower model; saved with every trained model.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct TwoTowerConfig {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl Default for TwoTowerConfig {
            fn default() -> Self {
                TwoTowerConfig { $($field: $default,)* }
            }
        }

        impl TwoTowerConfig {
            /// The defaults (every field has one).
            pub fn new() -> Self {
                Self::default()
            }

            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $with(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

two_tower_config! {
    /// Output embedding size of both towers (the ADR's 256).
    embedding_dim, with_embedding_dim: usize = 256;
    /// Size of the item-id embedding (the sparse table).
    id_dim, with_id_dim: usize = 64;
    /// Size of the category, brand, price-bucket, age and region embeddings.
    side_dim, with_side_dim: usize = 16;
    /// Hidden layer width of both towers.
    hidden_dim, with_hidden_dim: usize = 256;
    /// History length the user tower sees.
    history_len, with_history_len: usize = 100;
    /// How the user tower reads the history's item ids: [`UserEncoder::Pooled`] (weighted
    /// averages, the default) or [`UserEncoder::Attention`] (causal self-attention over the
    /// recent history, whose output at the newest event replaces the short-term pooling).
    user_encoder, with_user_encoder: UserEncoder = UserEncoder::Pooled;
    /// Self-attention blocks of [`UserEncoder::Attention`] (1 or 2).
    attention_layers, with_attention_layers: usize = 1;
    /// Dropout probability of [`UserEncoder::Attention`]'s inputs and of each block's attention
    /// and feed-forward outputs, while training only. Strong by default, as sequential
    /// recommenders on sparse data need (benches/README.md, "The self-attention user encoder").
    /// Its masks come from the burn backend's generator, which training seeds with `seed`: a run
    /// is reproducible, as long as no other training draws from that generator in the same
    /// process at the same time.
    attention_dropout, with_attention_dropout: f32 = 0.5;
    /// Recency half-life in events of the short-term pooling (the newest event has weight 1).
    /// The default is long: on next-days targets (time split) recency-weighted pooling trained
    /// on next-event examples overfits the current session (figures in benches/README.md).
    recency_half_life_events, with_recency_half_life_events: f32 = 1000.0;
    /// Recency half-life in days of age before the prediction time (short-term pooling).
    recency_half_life_days, with_recency_half_life_days: f32 = 30.0;
    /// Pooling weight of each event type (view, click, add_to_cart, purchase).
    event_weights, with_event_weights: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
    /// Softmax temperature.
    temperature, with_temperature: f32 = 0.05;
    /// Subtract log(expected in-batch count) from each logit (sampling-bias correction).
    logq_correction, with_logq_correction: bool = true;
    /// Extra uniformly sampled negatives per batch (0: in-batch negatives only).
    uniform_negatives, with_uniform_negatives: usize = 0;
    /// Id dropout while training: the probability that an item's id embedding is left out of
    /// one use of it (a column of the loss, or one history slot of the user tower, whose other
    /// slots are then scaled by `1 / (1 - p)`), so that both towers also learn from the item's
    /// side features (category, brand, price, popularity). 0 (the default): none. Inference
    /// always uses every id row.
    id_dropout, with_id_dropout: f32 = 0.0;
    /// Examples per batch.
    batch_size, with_batch_size: usize = 1024;
    /// Passes over the training examples.
    epochs, with_epochs: usize = 5;
    /// Adam learning rate of the dense layers.
    learning_rate, with_learning_rate: f64 = 0.002;
    /// Lazy-Adam learning rate of the id table.
    sparse_learning_rate, with_sparse_learning_rate: f32 = 0.01;
    /// Lowest event type that makes a training target (lower ones only form history).
    min_target_event, with_min_target_event: EventType = EventType::Click;
    /// Leave the target item's own earlier events out of the history that a training example's
    /// user tower sees, so that the model learns to predict items new to the user, as served
    /// lists (which exclude what the user already interacted with) need, instead of the item the
    /// user just viewed or buys again (a view before a click or a purchase of the same item, a
    /// repeat purchase). No effect on data without repeats (the Amazon 5-core sets); inference
    /// always sees the whole history.
    history_without_target, with_history_without_target: bool = false;
    /// Most training examples per epoch (sampled without replacement; 0 = all).
    max_examples_per_epoch, with_max_examples_per_epoch: usize = 0;
    /// Seed of initialisation and shuffling.
    seed, with_seed: u64 = 42;
    /// Early stopping: epochs in a row without a better validation score after which training
    /// stops; 0 (the default) trains all `epochs`. When positive, `recsys-train train` holds out a
    /// validation split of the training data (leave-one-out: each user's second-to-last
    /// interaction; time split: the last window of the training period, as long as the test
    /// window), scores [`TwoTowerConfig::validation_metric`] after every epoch and keeps the best
    /// epoch: its weights (leave-one-out, whose validation interactions are not trained on), or
    /// its epoch count for a refit on the whole training period (time split).
    early_stopping_patience, with_early_stopping_patience: usize = 0;
    /// The metric early stopping maximises: `recall@K`, `ndcg@K` or `hr@K` for K in 10, 20, 100
    /// or 500, or `auc`.
    validation_metric, with_validation_metric: String = String::from("recall@20");
    /// Most validation users scored after each epoch (a seeded sample).
    validation_users, with_validation_users: usize = 5000;
}

/// How the user tower reads the item ids of the history ([`TwoTowerConfig::user_encoder`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserEncoder {
    /// Two weighted averages of the history's id rows: short term (event type × recency decay)
    /// and long term (event type only).
    #[default]
    Pooled,
    /// Causal self-attention over the history (newest first; each event's input is its id row
    /// plus embeddings of its position, event type and time gap to the prediction time), read
    /// at the newest event: it replaces the short-term pooling; the long-term pooling stays.
    Attention,
}

impl UserEncoder {
    /// The name used in configurations: `pooled` or `attention`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserEncoder::Pooled => "pooled",
            UserEncoder::Attention => "attention",
        }
    }
}

/// The most self-attention blocks [`TwoTowerConfig::attention_layers`] accepts.
pub const MAX_ATTENTION_LAYERS: usize = 2;

/// Time-gap buckets of [`UserEncoder::Attention`]'s inputs: bucket `b` holds events whose age
/// before the prediction time is in `[2^(b-1), 2^b)` hours (bucket 0: under one hour; the last
/// bucket takes everything older).
pub const GAP_BUCKETS: usize = 16;

/// The time-gap bucket ([`GAP_BUCKETS`]) of an event `age_ms` before the prediction time.
pub fn gap_bucket(age_ms: i64) -> u32 {
    let hours = (age_ms.max(0) / 3_600_000) as u64;
    // 0 h → 0, 1 h → 1, 2–3 h → 2, 4–7 h → 3, …
    let b = 64 - hours.leading_zeros();
    b.min(GAP_BUCKETS as u32 - 1)
}

/// The metrics [`TwoTowerConfig::validation_metric`] accepts.
pub const VALIDATION_METRICS: [&str; 13] = [
    "recall@10",
    "recall@20",
    "recall@100",
    "recall@500",
    "ndcg@10",
    "ndcg@20",
    "ndcg@100",
    "ndcg@500",
    "hr@10",
    "hr@20",
    "hr@100",
    "hr@500",
    "auc",
];

impl TwoTowerConfig {
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        let positive = [
            ("embedding_dim", self.embedding_dim),
            ("id_dim", self.id_dim),
            ("side_dim", self.side_dim),
            ("hidden_dim", self.hidden_dim),
            ("history_len", self.history_len),
            ("batch_size", self.batch_size),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(crate::Error::invalid(name, v, "must be positive"));
            }
        }
        if !(1..=MAX_ATTENTION_LAYERS).contains(&self.attention_layers) {
            return Err(crate::Error::invalid(
                "attention_layers",
                self.attention_layers,
                format!("must be 1 to {MAX_ATTENTION_LAYERS}"),
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(crate::Error::invalid(
                "temperature",
                self.temperature,
                "must be positive",
            ));
        }
        if !(self.learning_rate > 0.0 && self.sparse_learning_rate > 0.0) {
            return Err(crate::Error::invalid(
                "learning_rate",
                self.learning_rate,
                "must be positive",
            ));
        }
        if !(0.0..1.0).contains(&self.attention_dropout) {
            return Err(crate::Error::invalid(
                "attention_dropout",
                self.attention_dropout,
                "must be at least 0 and below 1",
            ));
        }
        if !(0.0..1.0).contains(&self.id_dropout) {
            return Err(crate::Error::invalid(
                "id_dropout",
                self.id_dropout,
                "must be at least 0 and below 1",
            ));
        }
        if self.event_weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(crate::Error::invalid(
                "event_weights",
                format!("{:?}", self.event_weights),
                "must be >= 0",
            ));
        }
        if !VALIDATION_METRICS.contains(&self.validation_metric.as_str()) {
            return Err(crate::Error::invalid(
                "validation_metric",
                &self.validation_metric,
                format!("expected one of {}", VALIDATION_METRICS.join(", ")),
            ));
        }
        if self.early_stopping_patience > 0 && self.validation_users == 0 {
            return Err(crate::Error::invalid(
                "validation_users",
                0,
                "must be positive when early_stopping_patience is set",
            ));
        }
        Ok(())
    }

    /// A configuration from a JSON object of its fields, as a config file or a saved model holds
    /// it: missing fields take their defaults (so models saved before a field existed still
    /// load), unknown fields and invalid values are refused, naming the field.
    pub fn from_json(given: &serde_json::Value) -> crate::Result<Self> {
        let defaults =
            serde_json::to_value(TwoTowerConfig::new()).map_err(|e| crate::Error::Internal(e.to_string()))?;
        let mut merged = defaults.clone();
        let (Some(given), Some(target)) = (given.as_object(), merged.as_object_mut()) else {
            return Err(crate::Error::invalid(
                "config",
                given,
                "expected a JSON object of TwoTowerConfig fields",
            ));
        };
        for (k, v) in given {
            if !target.contains_key(k) {
                return Err(crate::Error::invalid("config", k, "unknown TwoTowerConfig field"));
            }
            target.insert(k.clone(), v.clone());
        }
        let cfg: TwoTowerConfig = match serde_json::from_value(merged) {
            Ok(cfg) => cfg,
            Err(e) => {
                // serde names the type, not the field: find the field by trying each alone.
                let bad = given.iter().find_map(|(k, v)| {
                    let mut one = defaults.clone();
                    one.as_object_mut()?.insert(k.clone(), v.clone());
                    let err = serde_json::from_value::<TwoTowerConfig>(one).err()?;
                    Some(crate::Error::invalid(k, v, err.to_string()))
                });
                let all = serde_json::Value::Object(given.clone());
                return Err(bad.unwrap_or_else(|| crate::Error::invalid("config", all, e.to_string())));
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The layer norms' epsilon (burn's default, which training uses), which the plain inference repeats.
pub const LAYER_NORM_EPSILON: f64 = 1e-5;

/// Width of the item tower's input.
pub fn item_input_dim(cfg: &TwoTowerConfig) -> usize {
    cfg.id_dim + 3 * cfg.side_dim + ITEM_NUMERIC
}

/// Width of the user tower's input.
pub fn user_input_dim(cfg: &TwoTowerConfig) -> usize {
    2 * cfg.id_dim + 4 * cfg.side_dim + USER_NUMERIC
}

/// Number of numeric item features.
pub const ITEM_NUMERIC: usize = 2;
/// Number of numeric user features.
pub const USER_NUMERIC: usize = 4;

/// Vocabulary sizes of the side embeddings (index 0 of each is "unknown").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vocab {
    /// Items (rows of the id table).
    pub items: usize,
    /// Categories + 1.
    pub categories: usize,
    /// Brands + 1.
    pub brands: usize,
    /// Price buckets + 1.
    pub price_buckets: usize,
    /// Age buckets + 1.
    pub ages: usize,
    /// Regions + 1.
    pub regions: usize,
}

/// Static item-tower inputs, indexed by dense item index; categorical codes are 0 for unknown.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemSide {
    /// 1 + category index.
    pub category: Vec<u32>,
    /// 1 + brand index.
    pub brand: Vec<u32>,
    /// 1 + price bucket.
    pub price_bucket: Vec<u32>,
    /// `[popularity, rating]`: log1p(interactions) / log1p(max interactions), and
    /// (avg_rating − 3) / 2 (0 when unknown).
    pub numeric: Vec<[f32; ITEM_NUMERIC]>,
}

impl ItemSide {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.category.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.category.is_empty()
    }

    /// Checks that every column has one entry per item and codes fit the vocabulary.
    pub fn validate(&self, vocab: &Vocab) -> crate::Result<()> {
        let n = self.category.len();
        if self.brand.len() != n || self.price_bucket.len() != n || self.numeric.len() != n || n != vocab.items {
            return Err(crate::Error::invalid(
                "item_side",
                n,
                "columns must have one entry per item",
            ));
        }
        let check = |name: &str, v: &[u32], size: usize| match v.iter().find(|&&c| c as usize >= size) {
            Some(c) => Err(crate::Error::invalid(
                name,
                c,
                format!("code outside the vocabulary of {size}"),
            )),
            None => Ok(()),
        };
        check("category", &self.category, vocab.categories)?;
        check("brand", &self.brand, vocab.brands)?;
        check("price_bucket", &self.price_bucket, vocab.price_buckets)
    }
}

/// One past interaction of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEvent {
    /// Dense item index.
    pub item: u32,
    /// What happened.
    pub event_type: EventType,
    /// UTC milliseconds.
    pub ts: i64,
}

/// What the user tower knows about a user at prediction time.
#[derive(Debug, Clone, Copy)]
pub struct UserContext<'a> {
    /// The user's interactions in time order (oldest first); only those strictly before `as_of`
    /// are used.
    pub history: &'a [HistoryEvent],
    /// Prediction time (UTC ms).
    pub as_of: i64,
    /// 1 + age-bucket index (0: unknown).
    pub age: u32,
    /// 1 + region index (0: unknown).
    pub region: u32,
}

/// The user tower's inputs: pooled history items with their weights (summing to 1, newest first)
/// and numeric aggregates of that history.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInputs {
    /// History items, newest first (at most `history_len`).
    pub items: Vec<u32>,
    /// Short-term pooling weight per history item (event type × recency decay; sums to 1).
    pub weights: Vec<f32>,
    /// Long-term pooling weight per history item (event type only; sums to 1).
    pub long_weights: Vec<f32>,
    /// Event type code ([`EventType`] as `u32`) per history item.
    pub event_types: Vec<u32>,
    /// Time-gap bucket ([`gap_bucket`]) per history item.
    pub gaps: Vec<u32>,
    /// Age code.
    pub age: u32,
    /// Region code.
    pub region: u32,
    /// `[log1p(len)/log1p(history_len), share of clicks, share of carts, share of purchases]`.
    pub numeric: [f32; USER_NUMERIC],
}

impl UserInputs {
    /// Builds the inputs from a context: only events strictly before `as_of` count (point in time).
    pub fn build(ctx: &UserContext<'_>, cfg: &TwoTowerConfig) -> Self {
        let end = ctx.history.partition_point(|e| e.ts < ctx.as_of);
        let start = end.saturating_sub(cfg.history_len);
        let window = &ctx.history[start..end];
        let mut items = Vec::with_capacity(window.len());
        let mut weights = Vec::with_capacity(window.len());
        let mut long_weights = Vec::with_capacity(window.len());
        let mut event_types = Vec::with_capacity(window.len());
        let mut gaps = Vec::with_capacity(window.len());
        let mut counts = [0f32; 4];
        let day = DAY_MS as f32;
        for (rank, e) in window.iter().rev().enumerate() {
            let age_days = (ctx.as_of - e.ts).max(0) as f32 / day;
            let tw = cfg.event_weights[e.event_type as usize];
            let w = tw
                * (-(rank as f32) / cfg.recency_half_life_events).exp2()
                * (-age_days / cfg.recency_half_life_days).exp2();
            items.push(e.item);
            weights.push(w);
            long_weights.push(tw);
            event_types.push(e.event_type as u32);
            gaps.push(gap_bucket(ctx.as_of - e.ts));
            counts[e.event_type as usize] += 1.0;
        }
        normalize_weights(&mut weights);
        normalize_weights(&mut long_weights);
        let n = window.len().max(1) as f32;
        UserInputs {
            items,
            weights,
            long_weights,
            event_types,
            gaps,
            age: ctx.age,
            region: ctx.region,
            numeric: [
                (1.0 + window.len() as f32).ln() / (1.0 + cfg.history_len as f32).ln(),
                counts[1] / n,
                counts[2] / n,
                counts[3] / n,
            ],
        }
    }
}

/// Scales weights to sum 1 (uniform when they sum to 0).
fn normalize_weights(w: &mut [f32]) {
    let total: f32 = w.iter().sum();
    if total > 0.0 {
        w.iter_mut().for_each(|x| *x /= total);
    } else if !w.is_empty() {
        let u = 1.0 / w.len() as f32;
        w.iter_mut().for_each(|x| *x = u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_json_takes_defaults_and_names_bad_fields() {
        let cfg = TwoTowerConfig::from_json(&serde_json::json!({"epochs": 2, "validation_metric": "ndcg@20"})).unwrap();
        assert_eq!(
            cfg,
            TwoTowerConfig::new()
                .with_epochs(2)
                .with_validation_metric("ndcg@20".into())
        );
        // A full round trip keeps every field.
        let full = serde_json::to_value(&cfg).unwrap();
        assert_eq!(TwoTowerConfig::from_json(&full).unwrap(), cfg);
        let err = |v: serde_json::Value| TwoTowerConfig::from_json(&v).unwrap_err().to_string();
        let e = err(serde_json::json!({"epochs": 2, "epoch": 3}));
        assert!(e.contains("epoch") && e.contains("unknown"), "{e}");
        let e = err(serde_json::json!({"batch_size": "big"}));
        assert!(e.contains("`batch_size`") && e.contains("big"), "{e}");
        let e = err(serde_json::json!({"validation_metric": "precision@20"}));
        assert!(e.contains("`validation_metric`") && e.contains("precision@20"), "{e}");
        let e = err(serde_json::json!({"early_stopping_patience": 2, "validation_users": 0}));
        assert!(e.contains("`validation_users`"), "{e}");
        let e = err(serde_json::json!([1, 2]));
        assert!(e.contains("JSON object"), "{e}");
    }

    fn ev(item: u32, t: EventType, ts: i64) -> HistoryEvent {
        HistoryEvent {
            item,
            event_type: t,
            ts,
        }
    }

    #[test]
    fn inputs_are_point_in_time_and_weighted() {
        let cfg = TwoTowerConfig::new();
        let h = [
            ev(1, EventType::View, 0),
            ev(2, EventType::Purchase, 1_000),
            ev(3, EventType::Click, 2_000),
        ];
        let ctx = UserContext {
            history: &h,
            as_of: 2_000,
            age: 1,
            region: 0,
        };
        let u = UserInputs::build(&ctx, &cfg);
        // The event at exactly as_of is not history.
        assert_eq!(u.items, vec![2, 1]);
        assert!((u.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((u.long_weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Long-term weights ignore recency: purchase 4 vs view 1.
        assert!((u.long_weights[0] - 0.8).abs() < 1e-6);
        // A purchase outweighs an older view.
        assert!(u.weights[0] > u.weights[1]);
        assert_eq!(u.numeric[3], 0.5);
        assert_eq!(u.event_types, vec![EventType::Purchase as u32, EventType::View as u32]);
        // 1 s and 2 s old: both under an hour.
        assert_eq!(u.gaps, vec![0, 0]);
        let empty = UserInputs::build(
            &UserContext {
                history: &h,
                as_of: 0,
                age: 0,
                region: 0,
            },
            &cfg,
        );
        assert!(empty.items.is_empty() && empty.weights.is_empty());
        assert_eq!(empty.numeric, [0.0; 4]);
    }

    #[test]
    fn gap_buckets_double_in_hours_and_cap() {
        let h = 3_600_000;
        let got: Vec<u32> = [-5, 0, h - 1, h, 2 * h, 3 * h, 4 * h, 1 << 60]
            .iter()
            .map(|&ms| gap_bucket(ms))
            .collect();
        assert_eq!(got, [0, 0, 0, 1, 2, 2, 3, GAP_BUCKETS as u32 - 1]);
    }

    #[test]
    fn encoder_names_and_layers_are_checked() {
        let cfg = TwoTowerConfig::from_json(&serde_json::json!({"user_encoder": "attention"})).unwrap();
        assert_eq!(cfg.user_encoder, UserEncoder::Attention);
        assert_eq!(cfg.user_encoder.as_str(), "attention");
        let e = TwoTowerConfig::from_json(&serde_json::json!({"user_encoder": "lstm"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`user_encoder`") && e.contains("lstm"), "{e}");
        let e = TwoTowerConfig::from_json(&serde_json::json!({"attention_layers": 3}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`attention_layers`"), "{e}");
    }

    #[test]
    fn history_is_truncated_to_the_newest() {
        let cfg = TwoTowerConfig::new().with_history_len(2);
        let h: Vec<_> = (0..5).map(|i| ev(i, EventType::View, i as i64)).collect();
        let u = UserInputs::build(
            &UserContext {
                history: &h,
                as_of: 100,
                age: 0,
                region: 0,
            },
            &cfg,
        );
        assert_eq!(u.items, vec![4, 3]);
    }

    #[test]
    fn config_validates_and_round_trips() {
        let cfg = TwoTowerConfig::new().with_temperature(0.0);
        assert!(cfg.validate().unwrap_err().to_string().contains("temperature"));
        let cfg = TwoTowerConfig::new();
        let json = serde_json::to_string(&cfg).unwrap();
        let back: TwoTowerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg, back);
    }
}
