//! The last step of a request: the pipeline's answer (item indices and reasons) in the
//! catalogue's ids and words, and which slots hold pinned items (kept there by exploration).

use super::RecItem;
use recsys_core::rules::{Pin, Recommendation};

/// `pinned[slot]`: the item at `slot` is a configured pin at that position.
pub(crate) fn pinned_slots(items: &[Recommendation], pins: &[Pin]) -> Vec<bool> {
    items
        .iter()
        .enumerate()
        .map(|(slot, rec)| pins.iter().any(|p| p.item == rec.item && p.position == slot))
        .collect()
}

/// The answer's items with ids, scores and reasons rendered from the lookups (`label`: an item's
/// title or id; `categories`: names by code).
pub(crate) fn render_items(
    items: &[Recommendation],
    ids: &[String],
    label: impl Fn(u32) -> Option<String>,
    categories: &[String],
) -> Vec<RecItem> {
    items
        .iter()
        .map(|rec| RecItem {
            item_id: ids[rec.item as usize].clone(),
            score: rec.score,
            reason: rec.reason.render(&label, |c| categories.get(c as usize).cloned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use recsys_core::rules::Reason;

    fn rec(item: u32, reason: Reason) -> Recommendation {
        Recommendation {
            item,
            score: 0.5,
            reason,
        }
    }

    #[test]
    fn pins_count_only_at_their_own_slot() {
        let items = [
            rec(4, Reason::Personal),
            rec(9, Reason::Pinned),
            rec(2, Reason::Popular),
        ];
        let pins = [Pin { item: 9, position: 1 }, Pin { item: 2, position: 0 }];
        assert_eq!(pinned_slots(&items, &pins), [false, true, false]);
        assert_eq!(pinned_slots(&items, &[]), [false, false, false]);
    }

    #[test]
    fn reasons_name_items_and_categories() {
        let ids: Vec<String> = (0..5).map(|i| format!("P{i}")).collect();
        let cats = vec!["tv".to_string()];
        let items = [
            rec(1, Reason::SimilarTo { item: 3 }),
            rec(2, Reason::PopularIn { category: 0 }),
            rec(4, Reason::PopularIn { category: 7 }),
        ];
        let label = |i: u32| (i == 3).then(|| "A Lamp".to_string());
        let out = render_items(&items, &ids, label, &cats);
        assert_eq!(out[0].item_id, "P1");
        assert_eq!(out[0].reason, "Similar to A Lamp you viewed");
        assert_eq!(out[1].reason, "Popular in tv");
        assert_eq!(out[2].reason, "Popular in this category");
        assert_eq!(out[2].score, 0.5);
    }
}
