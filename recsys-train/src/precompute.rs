//! `recsys-train precompute`: the batch half of serving (ADR "Inference Strategy"). For every user
//! of a shard: the user embedding from demographics and history as of the end of the data, then the
//! top-N items (already purchased ones excluded) from the model version's item index; for every
//! item of the shard: its nearest items ("similar products", the cold-start path). Both go to a
//! candidate store ([`recsys_core::store`]) under the model version, which becomes active when the
//! last shard completes.
//!
//! ```no_run
//! use recsys_train::precompute::{precompute, PrecomputeOptions};
//!
//! let report = precompute(&PrecomputeOptions::new("out/data", "out/registry", "file:out/store"))?;
//! println!("{} users in {:.1}s, active: {}", report.users, report.seconds, report.activated);
//! # Ok::<(), recsys_train::Error>(())
//! ```

use crate::dataset::Dataset;
use crate::evaluate::scan_interactions;
use crate::progress::Progress;
use crate::registry::Registry;
use crate::train::{Vocabularies, load_model};
use crate::{Error, Result};
use rayon::prelude::*;
use recsys_core::features::FeatureConfig;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::{HistoryEvent, UserContext, UserInputs};
use recsys_core::retrieval::{EXACT_MAX_ITEMS, ExactIndex, Filter, IvfConfig, IvfIndex};
use recsys_core::schema::EventType;
use recsys_core::store::Scored;
use recsys_core::store::{CandidateStore, Shard, WritePlan, open_store};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Which index answers the pre-computation's top-N queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecomputeIndex {
    /// The inverted file for catalogues of at least [`EXACT_MAX_ITEMS`] items, the exact scan
    /// below.
    #[default]
    Auto,
    /// The batched exact scan ([`ExactIndex::search_batch`]): every list exact.
    Exact,
    /// The inverted file ([`IvfIndex::search_batch`], tuned by [`PrecomputeOptions::ivf`]):
    /// several times the exact scan's queries/s at the ADR's scale for a small loss of recall@500
    /// (figures in `benches/README.md`).
    Ivf,
}

/// Options of [`precompute`].
#[derive(Debug, Clone)]
pub struct PrecomputeOptions {
    /// Dataset directory (histories, purchases, id dictionaries).
    pub data: PathBuf,
    /// Model registry.
    pub registry: PathBuf,
    /// Store URL: `file:DIR`, `redis://HOST:PORT[/DB]` or `redis+cluster://HOST:PORT,...`.
    pub store: String,
    /// Model version, or `current` (default).
    pub model: String,
    /// Candidates per user (default 500).
    pub top: u32,
    /// Similar items per item (default 50).
    pub similar: u32,
    /// Which users and items this worker handles (default: all).
    pub shard: Shard,
    /// The index answering the top-N queries (default: by catalogue size).
    pub index: PrecomputeIndex,
    /// The inverted file's settings when it answers.
    pub ivf: IvfConfig,
    /// History cut-off (UTC ms, exclusive); default: just after the dataset's last event.
    pub as_of: Option<i64>,
    /// Redis key time to live in seconds (default 7 days).
    pub ttl_seconds: u64,
    /// Whether shard 0 publishes the online feature snapshot with the version (default true:
    /// serving reads its features from the store).
    pub features: bool,
    /// Progress reporting.
    pub progress: Progress,
}

impl PrecomputeOptions {
    /// Options with the defaults: the current model, top 500, 50 similar items, one shard.
    pub fn new(data: impl Into<PathBuf>, registry: impl Into<PathBuf>, store: impl Into<String>) -> Self {
        PrecomputeOptions {
            data: data.into(),
            registry: registry.into(),
            store: store.into(),
            model: "current".into(),
            top: 500,
            similar: 50,
            shard: Shard::ALL,
            index: PrecomputeIndex::Auto,
            ivf: IvfConfig::default(),
            as_of: None,
            ttl_seconds: 7 * 24 * 3600,
            features: true,
            progress: Progress::quiet(),
        }
    }
}

/// What `recsys-train precompute` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PrecomputeReport {
    /// Model version written (the store version).
    pub version: String,
    /// Store URL.
    pub store: String,
    /// `I/N`.
    pub shard: String,
    /// Users given candidates.
    pub users: u64,
    /// Items given similar items.
    pub items: u64,
    /// Candidates per user asked for.
    pub top: u32,
    /// History cut-off used (UTC ms).
    pub as_of_ms: i64,
    /// Which index answered: `exact` or `ivf`.
    pub index: String,
    /// Wall time of the whole job.
    pub seconds: f64,
    /// Users per second (candidates step only).
    pub users_per_second: f64,
    /// Bytes written to the store by this shard.
    pub bytes: u64,
    /// `bytes / users` (similar lists included).
    pub bytes_per_user: f64,
    /// Whether this run activated the version (the last shard to complete).
    pub activated: bool,
    /// Bytes of the online feature snapshot published with the version (0: not by this shard).
    pub features_bytes: u64,
}

/// The last `keep` interactions of each selected user (time order) and every user's purchases.
struct Histories {
    recent: Vec<Vec<HistoryEvent>>,
    purchased: Vec<Vec<u32>>,
    last_ts: Option<i64>,
}

/// One pass over the event log. Items the model does not know (added after training) are skipped.
fn collect_histories(ds: &Dataset, selected: &[bool], keep: usize, known_items: usize) -> Result<Histories> {
    let n = selected.len();
    let mut h = Histories {
        recent: vec![Vec::new(); n],
        purchased: vec![Vec::new(); n],
        last_ts: None,
    };
    scan_interactions(ds, |it| {
        h.last_ts = Some(h.last_ts.map_or(it.ts, |t: i64| t.max(it.ts)));
        let u = it.user as usize;
        if u >= n || !selected[u] || it.item as usize >= known_items {
            return;
        }
        let r = &mut h.recent[u];
        r.push(HistoryEvent {
            item: it.item,
            event_type: it.event_type,
            ts: it.ts,
        });
        if r.len() >= 2 * keep.max(1) {
            r.drain(..r.len() - keep);
        }
        if it.event_type == EventType::Purchase {
            h.purchased[u].push(it.item);
        }
    })?;
    for (r, p) in h.recent.iter_mut().zip(&mut h.purchased) {
        if r.len() > keep {
            r.drain(..r.len() - keep);
        }
        p.sort_unstable();
        p.dedup();
    }
    Ok(h)
}

/// Model codes (1 + index in the trained vocabulary, 0 unknown) of optional strings.
pub(crate) fn codes_in(values: &[Option<String>], vocab: &[String]) -> Vec<u32> {
    let pos: ahash::AHashMap<&str, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32 + 1))
        .collect();
    values
        .iter()
        .map(|v| v.as_deref().and_then(|s| pos.get(s).copied()).unwrap_or(0))
        .collect()
}

/// Runs the pre-computation for one shard (see the module docs). Nothing becomes visible to
/// readers until the last shard of the version finishes; a failure leaves the previous version active.
pub fn precompute(opts: &PrecomputeOptions) -> Result<PrecomputeReport> {
    let started = Instant::now();
    let progress = opts.progress;
    for (name, v) in [("top", opts.top), ("similar", opts.similar)] {
        if v == 0 || v > 65_535 {
            return Err(Error::arg(name, v, "must be in 1..=65535"));
        }
    }
    let reg = Registry::open(&opts.registry)?;
    let version = if opts.model == "current" {
        reg.current()?.ok_or_else(|| {
            Error::arg(
                "model",
                "current",
                "the registry has no current version; train one first",
            )
        })?
    } else {
        opts.model.clone()
    };
    let (model, _info, dir) = load_model(&version, Some(&opts.registry))?;
    let ds = Dataset::open(&opts.data)?;
    let n_items = model.num_items();
    if n_items > ds.items.len() {
        return Err(Error::arg(
            "data",
            opts.data.display(),
            format!(
                "model {version} knows {n_items} items, the dataset only {} (a different dataset?)",
                ds.items.len()
            ),
        ));
    }
    let vocab = Vocabularies::read(&dir)?;
    let ages = codes_in(&ds.users.age_bucket, &vocab.ages);
    let regions = codes_in(&ds.users.region, &vocab.regions);

    // Open the store before the long work: an unreachable Redis fails in milliseconds.
    let store = open_store(&opts.store)?;
    let item_ids: Vec<String> = ds.items.ids.ids()[..n_items].to_vec();
    let mut plan = WritePlan::new(&version, item_ids);
    plan.shard = opts.shard;
    plan.top_candidates = opts.top;
    plan.top_similar = opts.similar;
    plan.ttl_seconds = opts.ttl_seconds;
    plan.validate()?;

    let user_ids = ds.users.ids.ids();
    let selected: Vec<bool> = user_ids.iter().map(|id| opts.shard.owns(id)).collect();
    let hist = collect_histories(&ds, &selected, model.config.history_len, n_items)?;
    let as_of = opts.as_of.unwrap_or_else(|| hist.last_ts.map_or(0, |t| t + 1));

    let dim = model.dim();
    // The batched exact scan or the inverted file, not HNSW: at the ADR's scale (100k items,
    // 256-d, top-500; `benches/ann_vs_faiss.sh`, figures in benches/README.md) HNSW needs a very
    // large efSearch to reach recall@500 0.95 and is then slower than the exact scan, while the
    // inverted file, batched through the same matrix products, is faster. HNSW serves small-k
    // online queries.
    let index = BatchIndex::build(model.item_embeddings(), dim, opts, n_items)?;
    let embeddings = index.vectors();
    let mut writer = store.writer(&plan)?;

    let users: Vec<u32> = (0..user_ids.len() as u32).filter(|&u| selected[u as usize]).collect();
    let bar = progress.bar(users.len() as u64, "candidates");
    let users_started = Instant::now();
    for chunk in users.chunks(2048) {
        let queries: Vec<Result<Vec<f32>>> = chunk
            .par_iter()
            .map(|&u| user_embedding(&model, &hist, u, ages[u as usize], regions[u as usize], as_of))
            .collect();
        let queries: Vec<f32> = queries.into_iter().collect::<Result<Vec<_>>>()?.concat();
        let filters: Vec<Filter<'_>> = chunk
            .iter()
            .map(|&u| Filter {
                exclude: &hist.purchased[u as usize],
                ..Default::default()
            })
            .collect();
        let lists = index.search_batch(&queries, opts.top as usize, &filters)?;
        for (&u, list) in chunk.iter().zip(lists) {
            writer.put_candidates(&user_ids[u as usize], &list)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let users_seconds = users_started.elapsed().as_secs_f64();

    let items: Vec<u32> = (0..n_items as u32)
        .filter(|&i| opts.shard.owns(&ds.items.ids.ids()[i as usize]))
        .collect();
    let bar = progress.bar(items.len() as u64, "similar");
    for chunk in items.chunks(2048) {
        let queries: Vec<f32> = chunk
            .iter()
            .flat_map(|&i| &embeddings[i as usize * dim..(i as usize + 1) * dim])
            .copied()
            .collect();
        let excludes: Vec<[u32; 1]> = chunk.iter().map(|&i| [i]).collect();
        let filters: Vec<Filter<'_>> = excludes
            .iter()
            .map(|e| Filter {
                exclude: e,
                ..Default::default()
            })
            .collect();
        let lists = index.search_batch(&queries, opts.similar as usize, &filters)?;
        for (&i, list) in chunk.iter().zip(lists) {
            writer.put_similar(&ds.items.ids.ids()[i as usize], &list)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    // Shard 0 publishes the online feature snapshot of the whole population with the version, so
    // that serving reads a model version and the store, never the dataset.
    let features_bytes = if opts.shard.index == 0 && opts.features {
        let snapshot = crate::features::feature_snapshot(&ds, FeatureConfig::default(), progress)?;
        writer.put_features(&snapshot)?
    } else {
        0
    };
    let fin = writer.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    progress.summary(format!(
        "precomputed {} users and {} items of shard {}/{} for model {version} in {seconds:.1}s{}",
        fin.users,
        fin.items,
        opts.shard.index,
        opts.shard.count,
        if fin.activated {
            "; version activated"
        } else {
            "; waiting for the other shards"
        }
    ));
    Ok(PrecomputeReport {
        version,
        store: store.url(),
        shard: format!("{}/{}", opts.shard.index, opts.shard.count),
        users: fin.users,
        items: fin.items,
        top: opts.top,
        as_of_ms: as_of,
        index: index.name().to_string(),
        seconds,
        users_per_second: if users_seconds > 0.0 {
            fin.users as f64 / users_seconds
        } else {
            0.0
        },
        bytes: fin.bytes,
        bytes_per_user: if fin.users > 0 {
            fin.bytes as f64 / fin.users as f64
        } else {
            0.0
        },
        activated: fin.activated,
        features_bytes,
    })
}

/// The index of a pre-computation run. The exact index owns the item embeddings (the
/// similar-items step reads them back from it); the inverted file keeps its own reordered copy.
enum BatchIndex {
    Exact(ExactIndex),
    Ivf(IvfIndex, Vec<f32>),
}

impl BatchIndex {
    fn build(embeddings: Vec<f32>, dim: usize, opts: &PrecomputeOptions, n_items: usize) -> Result<Self> {
        let ivf = match opts.index {
            PrecomputeIndex::Auto => n_items >= EXACT_MAX_ITEMS,
            PrecomputeIndex::Exact => false,
            PrecomputeIndex::Ivf => true,
        };
        Ok(if ivf {
            BatchIndex::Ivf(IvfIndex::build(&embeddings, dim, &opts.ivf)?, embeddings)
        } else {
            BatchIndex::Exact(ExactIndex::new(embeddings, dim)?)
        })
    }

    fn name(&self) -> &'static str {
        match self {
            BatchIndex::Exact(_) => "exact",
            BatchIndex::Ivf(..) => "ivf",
        }
    }

    fn vectors(&self) -> &[f32] {
        match self {
            BatchIndex::Exact(i) => i.vectors(),
            BatchIndex::Ivf(_, v) => v,
        }
    }

    fn search_batch(&self, queries: &[f32], k: usize, filters: &[Filter<'_>]) -> Result<Vec<Vec<Scored>>> {
        Ok(match self {
            BatchIndex::Exact(i) => i.search_batch(queries, k, filters)?,
            BatchIndex::Ivf(i, _) => i.search_batch(queries, k, filters)?,
        })
    }
}

/// One user's embedding from demographics and history before `as_of`.
fn user_embedding(
    model: &TwoTowerModel,
    hist: &Histories,
    u: u32,
    age: u32,
    region: u32,
    as_of: i64,
) -> Result<Vec<f32>> {
    let ctx = UserContext {
        history: &hist.recent[u as usize],
        as_of,
        age,
        region,
    };
    let inputs = UserInputs::build(&ctx, &model.config);
    let mut emb = vec![0.0; model.dim()];
    model.user_embedding(&inputs, &mut emb)?;
    Ok(emb)
}

/// Which list [`store_get`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKey<'a> {
    /// A user's candidates.
    User(&'a str),
    /// An item's neighbours.
    Item(&'a str),
}

/// `recsys-train store get`: the first `k` entries of a user's candidates or an item's neighbours in
/// the store's active version, as `{"version", "user_id"|"item_id", "items": [{"item_id", "score"}]}`.
pub fn store_get(store: &dyn CandidateStore, key: StoreKey<'_>, k: usize) -> Result<serde_json::Value> {
    let snap = store
        .open_active()?
        .ok_or_else(|| Error::arg("store", store.url(), "no active version; run precompute first"))?;
    let (field, id, list) = match key {
        StoreKey::User(u) => ("user_id", u, snap.candidates(u)?),
        StoreKey::Item(i) => ("item_id", i, snap.similar(i)?),
    };
    let list = list.ok_or_else(|| recsys_core::Error::NotFound {
        kind: if field == "user_id" { "user" } else { "item" },
        id: id.to_string(),
    })?;
    let items: Vec<_> = list
        .iter()
        .take(k)
        .map(|s| serde_json::json!({"item_id": snap.meta().items[s.item as usize], "score": s.score}))
        .collect();
    Ok(serde_json::json!({
        "version": snap.meta().version,
        field: id,
        "items": items,
    }))
}

/// `recsys-train store versions`: `{"active": VERSION|null, "versions": [...]}`.
pub fn store_versions(store: &dyn CandidateStore) -> Result<serde_json::Value> {
    Ok(serde_json::json!({
        "active": store.active_version()?,
        "versions": store.versions()?,
    }))
}
