//! Item vectors as 8-bit codes with one scale per vector, for the per-request scoring of a few
//! hundred scattered items (the re-ranker's similarity feature, MMR diversity, reasons).
//!
//! A 256-d vector is 256 bytes instead of 1 KiB: four cache lines per candidate instead of sixteen,
//! which is what the library call's time went to (memory latency, not arithmetic). The codes are
//! symmetric (`x ≈ code · scale`, `scale = max |x| / 127`), so the inner product of a unit-length
//! query with a unit-length item is off by about 1e-3 at most; training computes the re-ranker's
//! similarity feature through this same type, so serving and training see identical values.

use super::check_vectors;
use crate::memory::LargeTable;
use crate::simd::CACHE_LINE as LINE;
use crate::{Error, Result};

/// Item-major 8-bit vectors with one `f32` scale per item.
///
/// Each row starts on a 64-byte cache line (rows of 64 or more bytes are padded to whole lines),
/// so a 256-d row is four lines, not the five that a row straddling line boundaries touches.
#[derive(Debug)]
pub struct QuantizedVectors {
    dim: usize,
    /// Bytes from one row to the next: `dim`, rounded up to whole lines from 64 bytes on.
    stride: usize,
    /// The rows, from `offset` on (a few spare bytes in front align the first row); 25 MB for
    /// 100k 256-d items, hence in huge pages (see [`crate::memory`]).
    buf: LargeTable<i8>,
    offset: usize,
    scales: Vec<f32>,
}

impl QuantizedVectors {
    /// Quantizes `vectors` (row-major, `len × dim`, finite). Refuses a length that is not a
    /// multiple of `dim` and non-finite values, naming them.
    pub fn new(vectors: &[f32], dim: usize) -> Result<Self> {
        let n = check_vectors(vectors, dim)?;
        let mut q = Self::zeroed(dim, n);
        for (i, row) in vectors.chunks_exact(dim).enumerate() {
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let scale = max / 127.0;
            q.scales[i] = scale;
            if scale > 0.0 {
                let start = q.start(i);
                for (c, x) in q.buf[start..start + dim].iter_mut().zip(row) {
                    *c = (x / scale).round().clamp(-127.0, 127.0) as i8;
                }
            }
        }
        Ok(q)
    }

    /// `n` zero rows of `dim` codes (scales 0), laid out aligned.
    fn zeroed(dim: usize, n: usize) -> Self {
        let stride = if dim >= LINE { dim.next_multiple_of(LINE) } else { dim };
        let buf = LargeTable::<i8>::zeroed(n * stride + LINE - 1);
        // The allocation does not move afterwards: the buffer is never resized.
        let offset = buf.as_ptr().align_offset(LINE).min(LINE - 1);
        QuantizedVectors {
            dim,
            stride,
            buf,
            offset,
            scales: vec![0.0; n],
        }
    }

    /// Where row `i`'s codes start in `buf`.
    fn start(&self, i: usize) -> usize {
        self.offset + i * self.stride
    }

    /// Floats per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// The codes and scale of `item` (`None` outside the table).
    pub fn row(&self, item: u32) -> Option<(&[i8], f32)> {
        let i = item as usize;
        let scale = *self.scales.get(i)?;
        let start = self.start(i);
        Some((&self.buf[start..start + self.dim], scale))
    }

    /// `query · item` (`None` for an item outside the table). `query` must have `dim` floats.
    pub fn dot(&self, item: u32, query: &[f32]) -> Result<Option<f32>> {
        if query.len() != self.dim {
            return Err(Error::invalid(
                "query",
                query.len(),
                format!("dimension must be the item vectors' {}", self.dim),
            ));
        }
        Ok(self
            .row(item)
            .map(|(codes, scale)| scale * crate::simd::dot_i8(query, codes)))
    }

    /// `a · b` between two items (`None` when either is outside the table).
    pub fn similarity(&self, a: u32, b: u32) -> Option<f32> {
        let ((ca, sa), (cb, sb)) = (self.row(a)?, self.row(b)?);
        Some(sa * sb * crate::simd::dot_i8_i8(ca, cb) as f32)
    }

    /// Starts loading `item`'s codes and scale into cache (see [`crate::simd::prefetch`]),
    /// without waiting for either.
    pub fn prefetch(&self, item: u32) {
        let i = item as usize;
        if let Some(scale) = self.scales.get(i) {
            let start = self.start(i);
            crate::simd::prefetch(&self.buf[start..start + self.dim]);
            crate::simd::prefetch(std::slice::from_ref(scale));
        }
    }
}

impl Clone for QuantizedVectors {
    /// A copy with its own aligned buffer (a plain copy of the bytes would lose the alignment).
    fn clone(&self) -> Self {
        let mut q = Self::zeroed(self.dim, self.len());
        q.scales.copy_from_slice(&self.scales);
        for i in 0..self.len() {
            let (from, to) = (self.start(i), q.start(i));
            q.buf[to..to + self.dim].copy_from_slice(&self.buf[from..from + self.dim]);
        }
        q
    }
}

impl PartialEq for QuantizedVectors {
    /// Same dimension, scales and codes (the padding and alignment do not count).
    fn eq(&self, other: &Self) -> bool {
        self.dim == other.dim
            && self.scales == other.scales
            && (0..self.len() as u32).all(|i| self.row(i).map(|r| r.0) == other.row(i).map(|r| r.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        for row in v.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    fn exact(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn inner_products_stay_within_a_thousandth_of_the_f32_ones() {
        let dim = 256;
        let items = unit_vectors(300, dim, 1);
        let queries = unit_vectors(20, dim, 2);
        let q = QuantizedVectors::new(&items, dim).unwrap();
        assert_eq!((q.len(), q.dim()), (300, dim));
        let mut worst = 0.0f32;
        for query in queries.chunks_exact(dim) {
            for (i, item) in items.chunks_exact(dim).enumerate() {
                let got = q.dot(i as u32, query).unwrap().unwrap();
                worst = worst.max((got - exact(query, item)).abs());
            }
        }
        assert!(worst < 1e-3, "worst error {worst}");
        for (a, b) in [(0u32, 1u32), (5, 200), (7, 7)] {
            let want = exact(&items[a as usize * dim..][..dim], &items[b as usize * dim..][..dim]);
            let got = q.similarity(a, b).unwrap();
            assert!((got - want).abs() < 1e-3, "{a}·{b}: {got} vs {want}");
            assert_eq!(got, q.similarity(b, a).unwrap());
        }
        // An item with itself: about 1 for unit vectors.
        assert!((q.similarity(3, 3).unwrap() - 1.0).abs() < 2e-3);
    }

    #[test]
    fn rows_start_on_cache_lines_and_copies_keep_the_codes() {
        for dim in [64, 100, 256] {
            let items = unit_vectors(7, dim, 3);
            let q = QuantizedVectors::new(&items, dim).unwrap();
            let copy = q.clone();
            assert_eq!(copy, q);
            for table in [&q, &copy] {
                for i in 0..7u32 {
                    let (codes, scale) = table.row(i).unwrap();
                    assert_eq!(codes.as_ptr() as usize % LINE, 0, "dim {dim}, row {i}");
                    assert_eq!(codes.len(), dim);
                    let row = &items[i as usize * dim..][..dim];
                    let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    assert_eq!(scale, max / 127.0);
                    assert_eq!(codes[0], (row[0] / scale).round() as i8);
                    table.prefetch(i);
                }
            }
            assert_eq!(q.row(7), None);
            assert_eq!(q.row(u32::MAX), None);
            q.prefetch(u32::MAX);
        }
    }

    #[test]
    fn zero_vectors_outside_items_and_bad_input() {
        let q = QuantizedVectors::new(&[0.0, 0.0, 0.5, -1.0], 2).unwrap();
        assert_eq!(q.dot(0, &[1.0, 1.0]).unwrap(), Some(0.0));
        // 0.5 on the scale 1/127 is code 64 (rounded half away from zero): 64/127.
        assert_eq!(q.dot(1, &[1.0, 0.0]).unwrap(), Some(64.0 / 127.0));
        assert_eq!(q.row(1).unwrap().0, &[64, -127]);
        assert_eq!(q.dot(2, &[1.0, 0.0]).unwrap(), None);
        assert_eq!(q.similarity(0, 9), None);
        let e = q.dot(0, &[1.0]).unwrap_err();
        assert!(e.to_string().contains("query"), "{e}");
        let e = QuantizedVectors::new(&[1.0, 2.0, 3.0], 2).unwrap_err();
        assert!(e.to_string().contains("vectors"), "{e}");
        let e = QuantizedVectors::new(&[1.0, f32::NAN], 2).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        assert!(QuantizedVectors::new(&[], 4).unwrap().is_empty());
    }
}
