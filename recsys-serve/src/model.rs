//! One registry version loaded for serving: the two-tower model, its item embeddings (exact
//! index, plus the HNSW graph when the version has one), the fitted re-ranker, the demographic
//! vocabularies and the candidate-store version written for it.

use crate::{Error, Result};
use ahash::AHashMap;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::{HistoryEvent, UserContext, UserInputs};
use recsys_core::registry::{Vocabularies, files, load_model};
use recsys_core::rerank::Reranker;
use recsys_core::retrieval::{ExactIndex, Filter, HnswConfig, HnswIndex, ItemIndex, QuantizedVectors};
use recsys_core::store::{CandidateStore, Scored, Snapshot};
use std::path::Path;
use std::sync::Arc;

/// File of a version directory holding the fitted re-ranker (`recsys-train train` writes it).
pub const RERANKER_FILE: &str = files::RERANKER;
/// File of a version directory holding the HNSW graph of the item embeddings (`recsys-train train`
/// writes it for catalogues of 20,000 items or more, or as `--item-index` says).
pub const HNSW_FILE: &str = files::HNSW;

/// A model version ready to answer requests.
pub struct LoadedModel {
    /// Registry version.
    pub version: String,
    model: TwoTowerModel,
    exact: ExactIndex,
    /// The item embeddings as 8-bit codes, for per-request scoring of candidates.
    quantized: QuantizedVectors,
    hnsw: Option<HnswIndex>,
    reranker: Reranker,
    /// Whether [`RERANKER_FILE`] was present (else the documented fallback weights).
    pub reranker_fitted: bool,
    ages: AHashMap<String, u32>,
    regions: AHashMap<String, u32>,
    snapshot: Option<Arc<dyn Snapshot>>,
    /// Maps a store item index to the catalogue's (`None`: identical dictionaries).
    store_items: Option<Vec<Option<u32>>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("version", &self.version)
            .field("items", &self.model.num_items())
            .field("hnsw", &self.hnsw.is_some())
            .field("store_version", &self.store_version())
            .finish()
    }
}

/// The store version serving model `version` reads: the one written for it, else (the store has no
/// such version) the store's active one; `None` when nothing was activated yet.
pub(crate) fn store_version_for(store: &dyn CandidateStore, version: &str) -> Result<Option<Arc<dyn Snapshot>>> {
    match store.open_version(version) {
        Ok(snap) => Ok(Some(snap)),
        Err(recsys_core::Error::NotFound { .. }) => Ok(store.open_active()?),
        Err(e) => Err(e.into()),
    }
}

fn codes(vocab: &[String]) -> AHashMap<String, u32> {
    vocab
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32 + 1))
        .collect()
}

impl LoadedModel {
    /// Loads `version` (`current` for the promoted one) of `registry`, verifying its checksums, and
    /// opens its candidate-store version (or, when the store has none for it, the store's active
    /// one). `catalog_ids` are the serving catalogue's item ids by dense index.
    pub fn load(
        registry: &Path,
        version: &str,
        store: Option<&Arc<dyn CandidateStore>>,
        catalog_ids: &[String],
    ) -> Result<Self> {
        let (model, dir) = load_model(version, Some(registry))?;
        let version = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| version.to_string());
        if model.num_items() > catalog_ids.len() {
            return Err(Error::bad(
                "data",
                catalog_ids.len(),
                format!(
                    "model {version} knows {} items, the serving catalogue only {} (a different dataset?)",
                    model.num_items(),
                    catalog_ids.len()
                ),
            ));
        }
        let vocab = Vocabularies::read(&dir)?;
        let rpath = dir.join(RERANKER_FILE);
        let (reranker, reranker_fitted) = if rpath.is_file() {
            (Reranker::load(&rpath)?, true)
        } else {
            (Reranker::default(), false)
        };
        let exact = ExactIndex::new(model.item_embeddings(), model.dim())?;
        let quantized = QuantizedVectors::new(exact.vectors(), model.dim())?;
        let hpath = dir.join(HNSW_FILE);
        let hnsw = if hpath.is_file() {
            // `load_model` has just checked every file of the version against its manifest.
            Some(HnswIndex::open_verified_elsewhere(&hpath, &HnswConfig::default())?)
        } else {
            None
        };
        let snapshot = match store {
            None => None,
            Some(s) => store_version_for(s.as_ref(), &version)?,
        };
        let store_items = match &snapshot {
            Some(snap)
                if snap.meta().items.as_slice() != &catalog_ids[..snap.meta().items.len().min(catalog_ids.len())] =>
            {
                let pos: AHashMap<&str, u32> = catalog_ids
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.as_str(), i as u32))
                    .collect();
                Some(
                    snap.meta()
                        .items
                        .iter()
                        .map(|id| pos.get(id.as_str()).copied())
                        .collect(),
                )
            }
            _ => None,
        };
        Ok(LoadedModel {
            version,
            ages: codes(&vocab.ages),
            regions: codes(&vocab.regions),
            model,
            exact,
            quantized,
            hnsw,
            reranker,
            reranker_fitted,
            snapshot,
            store_items,
        })
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// Items the model knows (a prefix of the catalogue).
    pub fn num_items(&self) -> usize {
        self.model.num_items()
    }

    /// How many history events the user tower reads.
    pub fn history_len(&self) -> usize {
        self.model.config.history_len
    }

    /// The store version the candidates come from, if any.
    pub fn store_version(&self) -> Option<&str> {
        self.snapshot.as_ref().map(|s| s.meta().version.as_str())
    }

    /// The fitted re-ranker.
    pub fn reranker(&self) -> &Reranker {
        &self.reranker
    }

    /// The item embeddings as 8-bit codes: the re-ranker's similarity feature and MMR diversity
    /// read these (as the re-ranker's training did).
    pub fn quantized(&self) -> &QuantizedVectors {
        &self.quantized
    }

    /// The L2-normalised item embeddings, item-major.
    pub fn item_vectors(&self) -> &[f32] {
        self.exact.vectors()
    }

    /// One item's embedding (`None` for an item the model does not know).
    pub fn item_vector(&self, item: u32) -> Option<&[f32]> {
        let d = self.dim();
        let start = item as usize * d;
        self.exact.vectors().get(start..start + d)
    }

    /// The user embedding from demographics and history (oldest first) before `as_of`.
    pub fn user_embedding(
        &self,
        history: &[HistoryEvent],
        age: Option<&str>,
        region: Option<&str>,
        as_of: i64,
    ) -> Result<Vec<f32>> {
        let ctx = UserContext {
            history,
            as_of,
            age: age.and_then(|a| self.ages.get(a).copied()).unwrap_or(0),
            region: region.and_then(|r| self.regions.get(r).copied()).unwrap_or(0),
        };
        let inputs = UserInputs::build(&ctx, &self.model.config);
        let mut out = vec![0.0; self.dim()];
        self.model.user_embedding(&inputs, &mut out)?;
        Ok(out)
    }

    /// The `k` nearest items to `query` passing `filter` (HNSW when the version has a graph).
    pub fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        Ok(match &self.hnsw {
            Some(h) => h.search(query, k, filter)?,
            None => self.exact.search(query, k, filter)?,
        })
    }

    fn map_store(&self, list: Vec<Scored>) -> Vec<Scored> {
        match &self.store_items {
            None => list,
            Some(map) => list
                .into_iter()
                .filter_map(|s| {
                    map.get(s.item as usize)
                        .copied()
                        .flatten()
                        .map(|item| Scored { item, score: s.score })
                })
                .collect(),
        }
    }

    /// The user's pre-computed candidates (`Ok(None)`: no store, or none for this user).
    pub fn stored_candidates(&self, user_id: &str) -> Result<Option<Vec<Scored>>> {
        match &self.snapshot {
            None => Ok(None),
            Some(s) => Ok(s.candidates(user_id)?.map(|l| self.map_store(l))),
        }
    }

    /// The item's pre-computed neighbours (`Ok(None)`: no store, or none for this item).
    pub fn stored_similar(&self, item_id: &str) -> Result<Option<Vec<Scored>>> {
        match &self.snapshot {
            None => Ok(None),
            Some(s) => Ok(s.similar(item_id)?.map(|l| self.map_store(l))),
        }
    }
}
