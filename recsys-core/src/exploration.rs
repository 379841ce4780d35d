//! Randomised serving policies and their propensities: what the exposure log (format 2,
//! [`crate::exposure`]) records per shown item so that off-policy estimators can re-weight it.
//!
//! [`UniformExploration`] (ε-uniform over the top of a deterministic ranking): with probability
//! `epsilon` the answer is a uniformly random ordered draw of `k` items from the first `pool`
//! items of the deterministic ranking, otherwise the deterministic top-`k`. Its position-wise
//! propensity has a closed form ([`uniform_propensity`]):
//!
//! ```text
//! P(item at slot p) = (1 − ε) · 1{deterministic item at p = item} + ε / |free pool|
//! ```
//!
//! **Pinned items** (business rules forcing an item at a slot) keep their slot in both branches:
//! their propensity is 1.0, and the random draw fills the other slots from the pool without them
//! (the *free pool*: the pool's items less the pinned ones shown). A pinned item whose slot is past
//! `k` is an ordinary pool item.
//!
//! For randomised policies without a closed form, [`monte_carlo_propensities`] estimates the same
//! quantity by re-running the policy with a seeded generator (at least [`MIN_MONTE_CARLO_DRAWS`]
//! draws).
//!
//! The serving draw is reproducible: its generator is seeded by the request id
//! ([`request_seed`]), so an answer and its propensities can be recomputed from the log.

use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator the serving draws and the Monte-Carlo estimator use.
pub type PolicyRng = Xoshiro256PlusPlus;

/// Fewest draws [`monte_carlo_propensities`] accepts.
pub const MIN_MONTE_CARLO_DRAWS: usize = 1_000;

/// A 64-bit seed from a request id (FNV-1a): the same id gives the same draw.
pub fn request_seed(request_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in request_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The generator of a request's draw.
pub fn request_rng(request_id: &str) -> PolicyRng {
    PolicyRng::seed_from_u64(request_seed(request_id))
}

/// The exact position-wise propensity of ε-uniform exploration at an unpinned slot: `(1 − ε) ·
/// 1{the deterministic ranking has this item at this slot} + ε / free_pool`. `free_pool` is the
/// number of items the random branch draws from (the pool less the pinned items shown); pinned
/// slots have propensity 1.0 and do not use this function.
pub fn uniform_propensity(epsilon: f64, free_pool: usize, deterministic_here: bool) -> f64 {
    let explore = if free_pool == 0 {
        0.0
    } else {
        epsilon / free_pool as f64
    };
    let exploit = if deterministic_here { 1.0 - epsilon } else { 0.0 };
    exploit + explore
}

/// What one serving draw chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// Indices into the deterministic ranking, in slot order (slot 0 first).
    pub shown: Vec<usize>,
    /// Whether the random branch served (else the deterministic top-k).
    pub explored: bool,
}

/// ε-uniform exploration over the top `pool` of a deterministic ranking (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniformExploration {
    /// Probability of serving the random draw, in `[0, 1]`.
    pub epsilon: f64,
    /// How many of the deterministic ranking's first items the random draw chooses from (≥ 1).
    pub pool: usize,
}

impl UniformExploration {
    /// Validated parameters (the errors name `epsilon` and `pool`).
    pub fn new(epsilon: f64, pool: usize) -> Result<Self> {
        if !(epsilon.is_finite() && (0.0..=1.0).contains(&epsilon)) {
            return Err(Error::invalid("epsilon", epsilon, "must be in [0, 1]"));
        }
        if pool == 0 {
            return Err(Error::invalid("pool", pool, "must be at least 1"));
        }
        Ok(UniformExploration { epsilon, pool })
    }

    /// The policy's name in the exposure log: `BASE+explore(eps=E,pool=P)`.
    pub fn name(&self, base: &str) -> String {
        format!("{base}+explore(eps={},pool={})", self.epsilon, self.pool)
    }

    /// The slots (`< min(k, ranking_len)`) whose items are pinned; `pinned[i]` says whether the
    /// ranking's item `i` is pinned at slot `i` (shorter slices: not pinned).
    fn pinned_slots(pinned: &[bool], shown: usize) -> impl Iterator<Item = usize> + '_ {
        (0..shown).filter(move |&i| pinned.get(i).copied().unwrap_or(false))
    }

    /// The free pool: indices of the ranking (cut to the pool) the random branch draws from.
    fn free_pool(&self, ranking_len: usize, pinned: &[bool], k: usize) -> Vec<usize> {
        let n = ranking_len.min(self.pool.max(k));
        let shown = k.min(n);
        (0..n)
            .filter(|&i| !(i < shown && pinned.get(i).copied().unwrap_or(false)))
            .collect()
    }

    /// One serving draw of `min(k, len)` slots from a deterministic ranking of `ranking_len`
    /// items (of which the first `max(pool, k)` form the pool; a `k` above `pool` widens the pool
    /// to `k`). `pinned[i]`: the ranking's item `i` is pinned at slot `i`.
    pub fn draw(&self, ranking_len: usize, pinned: &[bool], k: usize, rng: &mut impl Rng) -> Draw {
        let n = ranking_len.min(self.pool.max(k));
        let shown = k.min(n);
        let coin: f64 = rng.random();
        if coin >= self.epsilon {
            return Draw {
                shown: (0..shown).collect(),
                explored: false,
            };
        }
        let mut free = self.free_pool(ranking_len, pinned, k);
        let mut out: Vec<usize> = (0..shown).collect();
        let mut next = 0;
        for (slot, item) in out.iter_mut().enumerate() {
            if pinned.get(slot).copied().unwrap_or(false) {
                continue;
            }
            // Partial Fisher-Yates: a uniform ordered sample without replacement.
            let j = rng.random_range(next..free.len());
            free.swap(next, j);
            *item = free[next];
            next += 1;
        }
        Draw {
            shown: out,
            explored: true,
        }
    }

    /// The exact propensity of each slot of `shown` (indices into the ranking, as [`Self::draw`]
    /// returns them): 1.0 at pinned slots, else [`uniform_propensity`].
    pub fn propensities(&self, ranking_len: usize, pinned: &[bool], k: usize, shown: &[usize]) -> Vec<f64> {
        let free = self.free_pool(ranking_len, pinned, k).len();
        let pinned_shown: Vec<usize> = Self::pinned_slots(pinned, shown.len()).collect();
        shown
            .iter()
            .enumerate()
            .map(|(slot, &item)| {
                if pinned_shown.binary_search(&slot).is_ok() {
                    1.0
                } else {
                    uniform_propensity(self.epsilon, free, item == slot)
                }
            })
            .collect()
    }
}

/// Monte-Carlo position-wise propensities of a randomised policy without a closed form.
///
/// `policy` is run `draws` times (at least [`MIN_MONTE_CARLO_DRAWS`]) with one generator seeded
/// by `seed`, each run returning a ranking; the estimate for slot `p` is the share of runs that put
/// `shown[p]` at slot `p`, counting the served ranking itself as one of the runs:
/// `(1 + hits_p) / (1 + draws)`. That keeps every estimate in `(0, 1]` (an item that was shown has a
/// positive propensity) at a bias of at most `1 / (1 + draws)`; the standard error is about
/// `sqrt(p (1 − p) / draws)` (0.016 at p = 0.5 and 1,000 draws: use more draws for rare slots).
pub fn monte_carlo_propensities<T: PartialEq>(
    shown: &[T],
    draws: usize,
    seed: u64,
    mut policy: impl FnMut(&mut PolicyRng) -> Vec<T>,
) -> Result<Vec<f64>> {
    if draws < MIN_MONTE_CARLO_DRAWS {
        return Err(Error::invalid(
            "draws",
            draws,
            format!("at least {MIN_MONTE_CARLO_DRAWS} Monte-Carlo draws"),
        ));
    }
    let mut rng = PolicyRng::seed_from_u64(seed);
    let mut hits = vec![0u64; shown.len()];
    for _ in 0..draws {
        let ranking = policy(&mut rng);
        for (p, item) in shown.iter().enumerate() {
            if ranking.get(p) == Some(item) {
                hits[p] += 1;
            }
        }
    }
    Ok(hits.into_iter().map(|h| (1 + h) as f64 / (1 + draws) as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_form() {
        assert_eq!(uniform_propensity(0.0, 50, true), 1.0);
        assert_eq!(uniform_propensity(0.0, 50, false), 0.0);
        assert!((uniform_propensity(0.1, 50, true) - (0.9 + 0.002)).abs() < 1e-15);
        assert!((uniform_propensity(0.1, 50, false) - 0.002).abs() < 1e-15);
        assert_eq!(uniform_propensity(1.0, 4, true), 0.25);
        // Every slot's propensities over the free pool sum to one.
        let x = UniformExploration::new(0.3, 10).unwrap();
        let pinned = [false, true, false];
        for slot in [0usize, 2] {
            let total: f64 = (0..10)
                .filter(|&i| i != 1)
                .map(|i| {
                    let mut shown = vec![0usize, 1, 2];
                    shown[slot] = i;
                    x.propensities(20, &pinned, 3, &shown)[slot]
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-12, "slot {slot}: {total}");
        }
        assert_eq!(x.propensities(20, &pinned, 3, &[5, 1, 7])[1], 1.0);
        assert_eq!(x.name("two-tower"), "two-tower+explore(eps=0.3,pool=10)");
        assert!(UniformExploration::new(1.5, 10).is_err());
        assert!(UniformExploration::new(0.1, 0).is_err());
    }

    #[test]
    fn draws_are_reproducible_per_request_and_keep_pins() {
        let x = UniformExploration::new(1.0, 8).unwrap();
        let pinned = [true, false, false, true];
        let a = x.draw(30, &pinned, 4, &mut request_rng("req-1"));
        assert_eq!(a, x.draw(30, &pinned, 4, &mut request_rng("req-1")));
        assert!(a.explored);
        assert_eq!((a.shown[0], a.shown[3]), (0, 3), "pins stay: {a:?}");
        let mut seen = std::collections::BTreeSet::new();
        for r in 0..200 {
            let d = x.draw(30, &pinned, 4, &mut request_rng(&format!("r{r}")));
            assert!(d.shown.iter().all(|&i| i < 8), "from the pool only: {d:?}");
            let mut u = d.shown.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), 4, "no repeats: {d:?}");
            seen.extend(d.shown[1..3].iter().copied());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 4, 5, 6, 7]);
        let off = UniformExploration::new(0.0, 8).unwrap();
        assert_eq!(off.draw(30, &[], 4, &mut request_rng("x")).shown, vec![0, 1, 2, 3]);
        // A short ranking: as many slots as items.
        assert_eq!(x.draw(2, &[], 4, &mut request_rng("y")).shown.len(), 2);
    }

    #[test]
    fn monte_carlo_matches_the_exact_uniform_formula_within_sampling_error() {
        let x = UniformExploration::new(0.3, 10).unwrap();
        let pinned = [false, false, true, false, false];
        let k = 5;
        // A served ranking with deterministic items (slots 0, 2) and explored ones (1, 3, 4).
        let shown = vec![0usize, 7, 2, 1, 9];
        let exact = x.propensities(40, &pinned, k, &shown);
        let draws = 20_000;
        let mc = monte_carlo_propensities(&shown, draws, 7, |rng| x.draw(40, &pinned, k, rng).shown).unwrap();
        for (p, (e, m)) in exact.iter().zip(&mc).enumerate() {
            let se = (e * (1.0 - e) / draws as f64).sqrt();
            let tolerance = 4.5 * se + 1.0 / (1.0 + draws as f64) + 1e-12;
            assert!(
                (e - m).abs() <= tolerance,
                "slot {p}: exact {e}, Monte-Carlo {m} (±{tolerance})"
            );
        }
        assert_eq!(exact[2], 1.0);
        assert!((exact[0] - (0.7 + 0.3 / 9.0)).abs() < 1e-12);
        assert!((exact[1] - 0.3 / 9.0).abs() < 1e-12);
        assert!(monte_carlo_propensities(&shown, 999, 7, |_| vec![]).is_err());
    }
}
