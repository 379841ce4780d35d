//! The pure library call behind one online recommendation request:
//! candidates (with their re-ranking features) → [`crate::rerank`] → [`crate::rules`] (exclusions,
//! filters, boosts) → [`crate::diversify`] → pins, top-k and reasons → popularity fill-up.
//!
//! No I/O: the serving layer fetches the candidates, computes the fresh user embedding and the
//! [`RerankFeatures`] of every candidate ([`RerankFeatures::compute`]) and looks up the user's purchases
//! and cart, then calls [`recommend`].
//!
//! Exclusions are applied to *all* candidates before the re-ranked list is cut to
//! [`Context::rerank_keep`], so an excluded item never costs a place.

use crate::Result;
use crate::diversify::{DiversityConfig, Similarity, diversify};
use crate::rerank::{RerankFeatures, Reranker, top_in_place};
use crate::rules::{
    Eligibility, ItemAttributes, ReasonInputs, RequestFilters, RulesConfig, TopK, UserExclusions, fill_from,
    filter_and_boost, finalize,
};
use crate::store::Scored;

/// Everything one request brings.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Retrieval candidates, best first (e.g. the stored top-500).
    pub candidates: &'a [Scored],
    /// One feature row per candidate.
    pub features: &'a [RerankFeatures],
    /// The request's own filters and `k`.
    pub filters: &'a RequestFilters,
    /// The user's purchases and cart.
    pub user: UserExclusions<'a>,
    /// Recently viewed, trending and popular items for the reasons.
    pub reasons: ReasonInputs<'a>,
    /// Fallback popularity list (best first) used when fewer than `k` candidates survive.
    pub popular: &'a [u32],
}

/// What the service holds between requests: models, configs and item attributes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The fitted re-ranker.
    pub reranker: &'a Reranker,
    /// Business rules.
    pub rules: &'a RulesConfig,
    /// Diversification.
    pub diversity: &'a DiversityConfig,
    /// Category, brand, price and stock per item.
    pub items: ItemAttributes<'a>,
    /// Item-item similarity for MMR (when enabled).
    pub similarity: Similarity<'a>,
    /// How many re-ranked candidates go on to diversification (the 100).
    pub rerank_keep: usize,
}

/// The answer: the top-k with reasons ([`TopK::shortfall`] > 0 when even the fallback ran dry).
pub type Response = TopK;

/// Runs the whole pure pipeline for one request (see the module docs for the order of the stages).
pub fn recommend(request: &Request<'_>, ctx: &Context<'_>) -> Result<Response> {
    let k = request.filters.k_or(ctx.rules);
    let eligible = Eligibility::new(ctx.items, request.user, request.filters)?;
    // Score everything, drop the ineligible, boost, then select the best `rerank_keep` (a partial
    // selection and a sort of the kept, not a sort of all 500).
    let scored = ctx.reranker.score_all(request.candidates, request.features)?;
    let mut kept = filter_and_boost(&scored, ctx.rules, &eligible);
    top_in_place(&mut kept, ctx.rerank_keep.max(k));
    let diverse = diversify(&kept, k, ctx.diversity, ctx.items.category, ctx.similarity)?;
    let mut top = finalize(&diverse, k, ctx.rules, &eligible, &request.reasons)?;
    fill_from(&mut top, request.popular, &eligible);
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Pin, Reason};

    #[test]
    fn end_to_end_order_with_exclusions_caps_pins_and_fill() {
        // 8 candidates, categories i % 2, item 3 out of stock, item 0 purchased.
        let category: Vec<Option<u32>> = (0..10).map(|i| Some(i % 2)).collect();
        let stock: Vec<bool> = (0..10).map(|i| i != 3).collect();
        let items = ItemAttributes {
            category: &category,
            brand: &[],
            price: &[],
            in_stock: Some(&stock),
        };
        let candidates: Vec<Scored> = (0..8).map(|i| Scored { item: i, score: 0.0 }).collect();
        // Similarity decreasing with the item index: re-ranked order 0, 1, ..., 7.
        let features: Vec<RerankFeatures> = (0..8)
            .map(|i| RerankFeatures {
                similarity: 1.0 - i as f32 / 10.0,
                ..Default::default()
            })
            .collect();
        let rules = RulesConfig {
            k: 5,
            pins: vec![Pin { item: 9, position: 1 }],
            ..Default::default()
        };
        let diversity = DiversityConfig {
            max_per_category: Some(2),
            ..Default::default()
        };
        let reranker = Reranker::default();
        let ctx = Context {
            reranker: &reranker,
            rules: &rules,
            diversity: &diversity,
            items,
            similarity: Similarity::Category,
            rerank_keep: 100,
        };
        let filters = RequestFilters::default();
        let request = Request {
            candidates: &candidates,
            features: &features,
            filters: &filters,
            user: UserExclusions {
                purchased: &[0],
                in_cart: &[],
            },
            reasons: ReasonInputs::default(),
            popular: &[0, 8, 3],
        };
        let top = recommend(&request, &ctx).unwrap();
        // Eligible ranked: 1 2 4 5 6 7; caps 2 per category → 1 2 4 5; pin 9 at 1 → 1 9 2 4 5.
        let got: Vec<u32> = top.items.iter().map(|r| r.item).collect();
        assert_eq!(got, vec![1, 9, 2, 4, 5]);
        assert_eq!(top.items[1].reason, Reason::Pinned);
        assert_eq!(top.shortfall(), 0);

        // k = 8: caps leave 4 (+ the pin) = 5; the popular fill-up adds 8 (0 is purchased, 3 out of stock).
        let filters = RequestFilters {
            k: Some(8),
            ..Default::default()
        };
        let top = recommend(
            &Request {
                filters: &filters,
                ..request
            },
            &ctx,
        )
        .unwrap();
        let got: Vec<u32> = top.items.iter().map(|r| r.item).collect();
        assert_eq!(got, vec![1, 9, 2, 4, 5, 8]);
        assert_eq!(top.items[5].reason, Reason::PopularIn { category: 0 });
        assert_eq!(top.shortfall(), 2);
    }
}
