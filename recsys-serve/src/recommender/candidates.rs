//! Step 2 of a request: the candidates. The user's pre-computed list from the store; else the
//! user tower's embedding searched in the item index (purchases excluded); else, for an anonymous
//! visitor, the neighbours of the page's product, or what is trending and then popular in the
//! request's context. A failing store is a counted fallback, never an error.

use super::{Inner, Source, Trends, now_ms};
use crate::Result;
use crate::model::LoadedModel;
use recsys_core::retrieval::Filter;
use recsys_core::store::Scored;

/// What the candidate step needs from the earlier steps of a request.
pub(super) struct CandidateInputs<'a> {
    /// No history and no demographics: no personal candidates.
    pub anonymous: bool,
    /// The store is in its back-off window after a failure.
    pub skip_store: bool,
    /// The user tower's embedding (`None` when anonymous).
    pub embedding: Option<&'a [f32]>,
    /// Purchased items (excluded from the model's search).
    pub purchased: &'a [u32],
    /// The product page's item, when the context names one.
    pub anchor: Option<u32>,
    /// The context's category code.
    pub context_category: Option<u32>,
    /// The trending and popular lists.
    pub trends: &'a Trends,
}

impl Inner {
    /// The request's candidates and where they came from.
    pub(super) fn candidates(
        &self,
        model: &LoadedModel,
        user_id: &str,
        inputs: CandidateInputs<'_>,
    ) -> Result<(Vec<Scored>, Source)> {
        let mut source = Source::Store;
        let mut candidates: Option<Vec<Scored>> = None;
        if !inputs.anonymous && self.store.is_some() && !inputs.skip_store {
            match model.stored_candidates(user_id) {
                Ok(Some(list)) => candidates = Some(list),
                Ok(None) => self.metrics.fallback("store_miss"),
                Err(e) => {
                    tracing::warn!("candidate store failed, answering from the model: {e}");
                    self.metrics.fallback("store_error");
                    self.store_failed(now_ms());
                }
            }
        }
        let candidates = match (candidates, inputs.embedding) {
            (Some(c), _) => c,
            (None, Some(emb)) => {
                source = Source::Model;
                model.search(
                    emb,
                    self.options.config.candidates,
                    &Filter {
                        exclude: inputs.purchased,
                        ..Default::default()
                    },
                )?
            }
            (None, None) => {
                source = Source::Popular;
                self.metrics.fallback("popular");
                // A product page: the product's neighbours, without the product itself.
                let anchor_list = inputs.anchor.and_then(|a| {
                    let v = model.item_vector(a)?;
                    Some(model.search(
                        v,
                        self.options.config.candidates,
                        &Filter {
                            exclude: &[a],
                            ..Default::default()
                        },
                    ))
                });
                match anchor_list {
                    Some(list) => list?,
                    None => popular_candidates(
                        &inputs.trends.trending,
                        inputs.trends.popular_in(inputs.context_category),
                        self.options.config.candidates,
                    ),
                }
            }
        };
        Ok((candidates, source))
    }
}

/// The first `n` distinct items of `trending` then `popular`, scored by rank (1, 1/2, 1/3, ...).
pub(crate) fn popular_candidates(trending: &[u32], popular: &[u32], n: usize) -> Vec<Scored> {
    let mut seen = ahash::AHashSet::new();
    trending
        .iter()
        .chain(popular)
        .copied()
        .filter(|i| seen.insert(*i))
        .take(n)
        .enumerate()
        .map(|(rank, item)| Scored {
            item,
            score: 1.0 / (1.0 + rank as f32),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trending_first_then_popular_without_repeats() {
        let out = popular_candidates(&[5, 2], &[2, 9, 5, 1], 4);
        let items: Vec<u32> = out.iter().map(|s| s.item).collect();
        assert_eq!(items, [5, 2, 9, 1]);
        assert_eq!(out[0].score, 1.0);
        assert_eq!(out[3].score, 0.25);
        assert_eq!(popular_candidates(&[5, 2], &[2, 9], 1).len(), 1);
        assert!(popular_candidates(&[], &[], 10).is_empty());
    }
}
