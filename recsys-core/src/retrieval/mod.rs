//! Item retrieval: the top-k items for a query embedding, exactly or approximately (HNSW).
//!
//! (Stub: the API precompute and serving code against; the implementation lands with issue 4.)

use crate::store::Scored;
use crate::{Error, Result};

/// Query-time restrictions on which items may be returned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Items never returned (e.g. already purchased), sorted ascending.
    pub exclude: &'a [u32],
    /// Only items of this category code (needs `categories`).
    pub category: Option<u32>,
    /// Category code of every item, indexed by item (`u32::MAX` = none).
    pub categories: Option<&'a [u32]>,
    /// In-stock flag of every item; `false` items are never returned.
    pub in_stock: Option<&'a [bool]>,
}

impl Filter<'_> {
    /// Whether `item` passes the filter.
    pub fn allows(&self, item: u32) -> bool {
        if self.exclude.binary_search(&item).is_ok() {
            return false;
        }
        if let Some(stock) = self.in_stock
            && !stock.get(item as usize).copied().unwrap_or(false)
        {
            return false;
        }
        if let (Some(c), Some(cats)) = (self.category, self.categories)
            && cats.get(item as usize).copied() != Some(c)
        {
            return false;
        }
        true
    }
}

/// An index over item embeddings answering inner-product top-k queries.
pub trait ItemIndex: Send + Sync {
    /// Embedding size.
    fn dim(&self) -> usize;
    /// Number of items.
    fn len(&self) -> usize;
    /// Whether the index holds no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `k` best items for `query` passing `filter`, best first.
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>>;
}

/// Exact top-k by a full inner-product scan.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    vectors: Vec<f32>,
    dim: usize,
}

impl ExactIndex {
    /// An index over `vectors` (row-major, `len × dim`).
    pub fn new(vectors: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(Error::invalid(
                "vectors",
                vectors.len(),
                format!("not a multiple of dim {dim}"),
            ));
        }
        Ok(ExactIndex { vectors, dim })
    }
}

impl ItemIndex for ExactIndex {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }
    fn search(&self, query: &[f32], k: usize, filter: &Filter<'_>) -> Result<Vec<Scored>> {
        if query.len() != self.dim {
            return Err(Error::invalid(
                "query",
                query.len(),
                format!("expected {} dimensions", self.dim),
            ));
        }
        let mut all: Vec<Scored> = self
            .vectors
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(i, _)| filter.allows(*i as u32))
            .map(|(i, v)| Scored {
                item: i as u32,
                score: v.iter().zip(query).map(|(a, b)| a * b).sum(),
            })
            .collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        all.truncate(k);
        Ok(all)
    }
}
