//! Step 1 of a request: what the user did, from the feature engine's recent events and the live
//! session, as the later steps need it (the user tower's input, the exclusions, the reasons).

use recsys_core::model::HistoryEvent;
use recsys_core::schema::EventType;

/// One past event: item index, event type, UTC milliseconds.
pub(crate) type Event = (u32, EventType, i64);

/// A request's view of the user's past.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserHistory {
    /// Newest first, without duplicates, at most the kept length.
    pub recent: Vec<Event>,
    /// Oldest first, only items the model knows: the user tower's input.
    pub events: Vec<HistoryEvent>,
    /// Purchased items, ascending, unique (excluded from candidates and answers).
    pub purchased: Vec<u32>,
    /// Items added to the cart and not purchased, ascending, unique (excluded from answers).
    pub in_cart: Vec<u32>,
}

impl UserHistory {
    /// Merges `offline` (the feature engine's recent events, newest first) with `session` (the
    /// live session's events; an event in both counts once), keeps the newest `keep`, and derives
    /// the model's input (items below `known_items`) and the exclusions.
    pub(crate) fn build(
        offline: &[Event],
        session: impl IntoIterator<Item = Event>,
        keep: usize,
        known_items: u32,
    ) -> Self {
        let mut recent: Vec<Event> = offline.to_vec();
        for ev in session {
            if !recent.contains(&ev) {
                recent.push(ev);
            }
        }
        recent.sort_by_key(|e| std::cmp::Reverse(e.2));
        recent.truncate(keep);
        let events = recent
            .iter()
            .rev()
            .filter(|e| e.0 < known_items)
            .map(|&(item, event_type, ts)| HistoryEvent { item, event_type, ts })
            .collect();
        let mut purchased: Vec<u32> = recent
            .iter()
            .filter(|e| e.1 == EventType::Purchase)
            .map(|e| e.0)
            .collect();
        purchased.sort_unstable();
        purchased.dedup();
        let mut in_cart: Vec<u32> = recent
            .iter()
            .filter(|e| e.1 == EventType::AddToCart && !purchased.contains(&e.0))
            .map(|e| e.0)
            .collect();
        in_cart.sort_unstable();
        in_cart.dedup();
        UserHistory {
            recent,
            events,
            purchased,
            in_cart,
        }
    }

    /// The newest `n` viewed or clicked items (the "similar to X you viewed" reasons' anchors).
    pub(crate) fn recently_viewed(&self, n: usize) -> Vec<u32> {
        self.recent
            .iter()
            .filter(|e| matches!(e.1, EventType::View | EventType::Click))
            .map(|e| e.0)
            .take(n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    #[test]
    fn session_events_merge_once_newest_first_and_feed_the_exclusions() {
        let offline = [(5, View, 300), (3, Purchase, 200), (4, AddToCart, 100)];
        // The session repeats one offline event and adds two newer ones.
        let session = [(3, Purchase, 200), (7, Click, 500), (4, Purchase, 400)];
        let h = UserHistory::build(&offline, session, 10, 6);
        assert_eq!(
            h.recent,
            [
                (7, Click, 500),
                (4, Purchase, 400),
                (5, View, 300),
                (3, Purchase, 200),
                (4, AddToCart, 100)
            ]
        );
        // Oldest first, and item 7 is unknown to a 6-item model.
        let items: Vec<u32> = h.events.iter().map(|e| e.item).collect();
        assert_eq!(items, [4, 3, 5, 4]);
        assert_eq!(h.purchased, [3, 4]);
        // Item 4 went to the cart and was bought later: not "in the cart".
        assert!(h.in_cart.is_empty());
        assert_eq!(h.recently_viewed(10), [7, 5]);
        assert_eq!(h.recently_viewed(1), [7]);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let offline: Vec<Event> = (0..20).map(|i| (i, AddToCart, 1_000 - i64::from(i))).collect();
        let h = UserHistory::build(&offline, [], 5, 100);
        assert_eq!(h.recent.len(), 5);
        assert_eq!(h.recent[0].0, 0);
        assert_eq!(h.in_cart, [0, 1, 2, 3, 4]);
        assert!(h.purchased.is_empty());
        assert_eq!(h.events.first().map(|e| e.item), Some(4));
    }
}
