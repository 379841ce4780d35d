//! Step 3 of a request: the re-ranking features of every candidate, from the user's side
//! (prepared once per request) and each item's snapshot record.

use crate::Result;
use recsys_core::rerank::{PreparedUser, RerankFeatures, RerankItem};
use recsys_core::retrieval::QuantizedVectors;
use recsys_core::store::Scored;

/// Candidates' rows requested ahead of their turn: memory latency, not arithmetic, was most of
/// this loop's time (tables of 100k items, scattered reads).
const PREFETCH_AHEAD: usize = 8;

/// One [`RerankFeatures`] per candidate: the similarity from the 8-bit item codes (as the
/// re-ranker was trained; 256 bytes per candidate instead of 1 KiB), the rest from the item's
/// 16-byte record in `snapshot`, or from `compute` for an item the snapshot does not cover yet.
pub(crate) fn rerank_features(
    candidates: &[Scored],
    codes: &QuantizedVectors,
    snapshot: &[RerankItem],
    embedding: &[f32],
    user: &PreparedUser,
    compute: impl Fn(u32) -> Result<RerankItem>,
) -> Result<Vec<RerankFeatures>> {
    let prefetch = |item: u32| {
        codes.prefetch(item);
        if let Some(x) = snapshot.get(item as usize) {
            recsys_core::simd::prefetch(std::slice::from_ref(x));
        }
    };
    for c in candidates.iter().take(PREFETCH_AHEAD) {
        prefetch(c.item);
    }
    let mut feats = Vec::with_capacity(candidates.len());
    for (n, c) in candidates.iter().enumerate() {
        if let Some(ahead) = candidates.get(n + PREFETCH_AHEAD) {
            prefetch(ahead.item);
        }
        let computed;
        let item = match snapshot.get(c.item as usize) {
            Some(record) => record,
            None => {
                computed = compute(c.item)?;
                &computed
            }
        };
        let similarity = codes.dot(c.item, embedding)?.unwrap_or(0.0);
        feats.push(RerankFeatures::from_parts(*c, similarity, item, user));
    }
    Ok(feats)
}
