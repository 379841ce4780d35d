//! The item side of the re-ranking features for every item (serving keeps a
//! [`recsys_core::rerank::RerankItem`] per item: decayed popularity and trending count as
//! logarithms, price, category; a price change shows at the next tick, as an event does), as one
//! snapshot that requests read instead of recomputing 500 candidates' windows each.
//!
//! A background thread keeps it fresh ([`Refresher::tick`], every `item_features_refresh_ms`)
//! without recomputing the whole catalogue each time: a full pass over 100k items, once a second,
//! took tens of milliseconds of the core the requests share with it; a tick is a small fraction of
//! that (benches/README.md, serving section, has both figures). A tick recomputes
//!
//! - the items that received events since the last tick ([`ItemSnapshot::touch`], called by
//!   ingestion), so a new event shows at the next tick as before, and
//! - the next slice of a sweep over all items, sized so that the sweep covers the catalogue every
//!   `item_features_sweep_seconds`: what changes without events (the popularity's decay, events
//!   leaving the trending window) is at most that old.
//!
//! Two buffers alternate: the tick writes into the snapshot published two ticks ago once no request
//! holds it any more (bringing it up to date with the previous tick's changes first), so a tick
//! copies and allocates nothing in the steady state.

use crate::{Error, Result};
use std::sync::{Arc, Mutex, RwLock};

/// The published snapshot and the items changed since the last refresh.
#[derive(Debug)]
pub(crate) struct ItemSnapshot<T> {
    published: RwLock<Arc<Vec<T>>>,
    dirty: Mutex<Vec<u32>>,
}

impl<T> ItemSnapshot<T> {
    /// A snapshot holding `items` (indexed by item).
    pub(crate) fn new(items: Vec<T>) -> Self {
        ItemSnapshot {
            published: RwLock::new(Arc::new(items)),
            dirty: Mutex::new(Vec::new()),
        }
    }

    /// The current snapshot (cheap: one reference count).
    pub(crate) fn current(&self) -> Arc<Vec<T>> {
        self.published
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|_| Arc::new(Vec::new()))
    }

    /// Marks items whose events changed their features; the next tick recomputes them. Call it
    /// while still holding the write lock under which the events were applied (see
    /// [`Refresher::tick`]).
    pub(crate) fn touch(&self, items: impl IntoIterator<Item = u32>) {
        if let Ok(mut d) = self.dirty.lock() {
            d.extend(items);
        }
    }

    fn publish(&self, next: Arc<Vec<T>>) -> Result<Arc<Vec<T>>> {
        let mut w = self
            .published
            .write()
            .map_err(|_| Error::Internal("item snapshot lock poisoned".into()))?;
        Ok(std::mem::replace(&mut *w, next))
    }
}

/// Items per tick for a sweep of `items` items every `sweep_ms` with one tick every `tick_ms`.
pub(crate) fn per_tick(items: usize, tick_ms: u64, sweep_ms: u64) -> usize {
    let ticks = (sweep_ms / tick_ms.max(1)).max(1) as usize;
    items.div_ceil(ticks)
}

/// The refreshing side: the spare buffer, the previous tick's changes and the sweep's position.
#[derive(Debug)]
pub(crate) struct Refresher<T> {
    /// The snapshot published before the current one, and the items the current one changed.
    spare: Option<(Arc<Vec<T>>, Vec<u32>)>,
    cursor: usize,
    per_tick: usize,
}

impl<T: Clone> Refresher<T> {
    /// A refresher whose sweep recomputes `per_tick` items a tick (at least one).
    pub(crate) fn new(per_tick: usize) -> Self {
        Refresher {
            spare: None,
            cursor: 0,
            per_tick: per_tick.max(1),
        }
    }

    /// Recomputes the touched items and the sweep's next slice with `compute` and publishes the
    /// result; returns the published snapshot. Call it under the same read lock of the feature
    /// state that `compute` reads: events applied under the write lock before it are computed now,
    /// events applied after it are touched for the next tick.
    pub(crate) fn tick(
        &mut self,
        snapshot: &ItemSnapshot<T>,
        compute: impl Fn(u32) -> Result<T>,
    ) -> Result<Arc<Vec<T>>> {
        let current = snapshot.current();
        let n = current.len();
        let mut changed = std::mem::take(
            &mut *snapshot
                .dirty
                .lock()
                .map_err(|_| Error::Internal("item snapshot lock poisoned".into()))?,
        );
        changed.retain(|&i| (i as usize) < n);
        for _ in 0..self.per_tick.min(n) {
            changed.push(self.cursor as u32);
            self.cursor = (self.cursor + 1) % n;
        }
        changed.sort_unstable();
        changed.dedup();
        // Reuse the spare buffer when no request holds it any more; else copy the current one.
        let mut reused = None;
        if let Some((mut spare, behind)) = self.spare.take()
            && spare.len() == n
            && let Some(buf) = Arc::get_mut(&mut spare)
        {
            for &i in &behind {
                buf[i as usize] = current[i as usize].clone();
            }
            reused = Some(spare);
        }
        let mut next = reused.unwrap_or_else(|| Arc::new(current.as_ref().clone()));
        let buf = Arc::get_mut(&mut next).expect("a buffer no one else holds");
        for &i in &changed {
            match compute(i) {
                Ok(f) => buf[i as usize] = f,
                Err(e) => {
                    // Nothing is published; the touched items wait for the next tick.
                    snapshot.touch(changed);
                    return Err(e);
                }
            }
        }
        let published = Arc::clone(&next);
        let previous = snapshot.publish(next)?;
        drop(current);
        self.spare = Some((previous, changed));
        Ok(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recsys_core::features::ItemFeatures;
    use std::cell::Cell;

    fn feature(item: u32, popularity: f64) -> ItemFeatures {
        ItemFeatures {
            item,
            popularity_score: popularity,
            avg_rating: None,
            price_bucket: None,
            trending_score_1h: 0.0,
            category: None,
        }
    }

    /// A "feature state": item i's popularity is `state[i]`.
    fn snapshot_of(state: &[f64]) -> Vec<ItemFeatures> {
        state.iter().enumerate().map(|(i, &p)| feature(i as u32, p)).collect()
    }

    #[test]
    fn per_tick_covers_the_catalogue_within_the_sweep() {
        assert_eq!(per_tick(100_000, 1000, 60_000), 1667);
        assert_eq!(per_tick(10, 1000, 60_000), 1);
        // A sweep shorter than a tick recomputes everything every tick.
        assert_eq!(per_tick(10, 1000, 10), 10);
        assert_eq!(per_tick(0, 1000, 60_000), 0);
    }

    #[test]
    fn touched_items_show_at_the_next_tick_and_the_sweep_reaches_every_item() {
        let mut state = vec![1.0; 10];
        let snap = ItemSnapshot::new(snapshot_of(&state));
        let mut r = Refresher::new(3);
        let computed = Cell::new(0);
        let compute = |state: &[f64], i: u32| {
            computed.set(computed.get() + 1);
            Ok(feature(i, state[i as usize]))
        };
        // Events on item 7: at the next tick, with the sweep's first slice (0, 1, 2).
        state[7] = 5.0;
        snap.touch([7, 7]);
        let s = r.tick(&snap, |i| compute(&state, i)).unwrap();
        assert_eq!(s[7].popularity_score, 5.0);
        assert_eq!(computed.get(), 4, "the touched item once plus the slice");
        assert!(Arc::ptr_eq(&s, &snap.current()));
        // A change without events (decay): reached by the sweep within ceil(10 / 3) = 4 ticks.
        for p in state.iter_mut() {
            *p *= 0.5;
        }
        let mut last = s;
        for _ in 0..4 {
            last = r.tick(&snap, |i| compute(&state, i)).unwrap();
        }
        assert_eq!(*last, snapshot_of(&state));
        // Out-of-range touches (not in the snapshot) are ignored, not a panic.
        snap.touch([10, u32::MAX]);
        r.tick(&snap, |i| compute(&state, i)).unwrap();
    }

    #[test]
    fn buffers_alternate_and_stay_exact_even_when_a_reader_holds_one() {
        let mut state: Vec<f64> = (0..8).map(f64::from).collect();
        let snap = ItemSnapshot::new(snapshot_of(&state));
        let mut r = Refresher::new(1);
        let compute = |state: &[f64], i: u32| Ok(feature(i, state[i as usize]));
        let first = r.tick(&snap, |i| compute(&state, i)).unwrap();
        let first_ptr = Arc::as_ptr(&first);
        drop(first);
        state[5] = 50.0;
        snap.touch([5]);
        let second = r.tick(&snap, |i| compute(&state, i)).unwrap();
        assert_eq!(second[5].popularity_score, 50.0);
        drop(second);
        // Third tick writes into the first tick's buffer, catching up with the second's change.
        state[6] = 60.0;
        snap.touch([6]);
        let third = r.tick(&snap, |i| compute(&state, i)).unwrap();
        assert_eq!(Arc::as_ptr(&third), first_ptr, "the spare buffer is reused");
        assert_eq!(*third, snapshot_of(&state));
        // A request still holding the spare: the tick copies the current snapshot instead.
        let held = Arc::clone(&third);
        state[1] = 10.0;
        snap.touch([1]);
        let fourth = r.tick(&snap, |i| compute(&state, i)).unwrap();
        state[2] = 20.0;
        snap.touch([2]);
        let fifth = r.tick(&snap, |i| compute(&state, i)).unwrap();
        assert!(!Arc::ptr_eq(&fifth, &held));
        assert_eq!(*fifth, snapshot_of(&state));
        assert_eq!(fourth[2].popularity_score, 2.0, "a published snapshot never changes");
        assert_eq!(held[1].popularity_score, 1.0);
    }

    #[test]
    fn a_failing_computation_keeps_the_published_snapshot() {
        let snap = ItemSnapshot::new(snapshot_of(&[1.0, 2.0]));
        let mut r = Refresher::new(2);
        let e = r.tick(&snap, |_| Err(Error::Internal("broken".into()))).unwrap_err();
        assert!(e.to_string().contains("broken"));
        assert_eq!(*snap.current(), snapshot_of(&[1.0, 2.0]));
        assert_eq!(
            *snap.dirty.lock().unwrap(),
            vec![0, 1],
            "the items wait for the next tick"
        );
        // And the next tick works again.
        let s = r.tick(&snap, |i| Ok(feature(i, 3.0))).unwrap();
        assert_eq!(*s, snapshot_of(&[3.0, 3.0]));
    }
}
