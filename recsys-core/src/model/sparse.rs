//! A row-sparse embedding table with lazy Adam: only the rows a batch touches are read, and only
//! their moments are updated. Dense Adam over a 100k-row table would cost more than the whole
//! forward pass.

use rand::Rng;
use rayon::prelude::*;

/// An `rows × dim` table of `f32` with per-row Adam state.
#[derive(Debug, Clone)]
pub struct SparseTable {
    rows: usize,
    dim: usize,
    /// Row-major values.
    pub values: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

impl SparseTable {
    /// A table initialised uniformly in `[-scale, scale]`.
    pub fn new(rows: usize, dim: usize, scale: f32, rng: &mut impl Rng) -> Self {
        let values = (0..rows * dim)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        SparseTable {
            rows,
            dim,
            values,
            m: vec![0.0; rows * dim],
            v: vec![0.0; rows * dim],
            step: 0,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// One row.
    pub fn row(&self, r: u32) -> &[f32] {
        let s = r as usize * self.dim;
        &self.values[s..s + self.dim]
    }

    /// Copies `rows` (in order) into a new row-major buffer, followed by `extra_zero_rows` zero rows.
    pub fn gather(&self, rows: &[u32], extra_zero_rows: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity((rows.len() + extra_zero_rows) * self.dim);
        for &r in rows {
            out.extend_from_slice(self.row(r));
        }
        out.resize((rows.len() + extra_zero_rows) * self.dim, 0.0);
        out
    }

    /// Applies one lazy-Adam step to `rows` with their gradients (`grads` row-major, one row per
    /// entry of `rows`; rows must be distinct).
    pub fn adam_step(&mut self, rows: &[u32], grads: &[f32], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - B1.powi(t);
        let c2 = 1.0 - B2.powi(t);
        let d = self.dim;
        // Which gradient row each table row takes (most rows: none); the rows update in parallel.
        let mut slot = vec![u32::MAX; self.rows];
        for (k, &r) in rows.iter().enumerate() {
            slot[r as usize] = k as u32;
        }
        self.values
            .par_chunks_mut(d)
            .zip(self.m.par_chunks_mut(d))
            .zip(self.v.par_chunks_mut(d))
            .zip(slot.par_iter())
            .for_each(|(((x, m), v), &k)| {
                if k == u32::MAX {
                    return;
                }
                let g = &grads[k as usize * d..(k as usize + 1) * d];
                for j in 0..d {
                    m[j] = B1 * m[j] + (1.0 - B1) * g[j];
                    v[j] = B2 * v[j] + (1.0 - B2) * g[j] * g[j];
                    let (mh, vh) = (m[j] / c1, v[j] / c2);
                    x[j] -= lr * mh / (vh.sqrt() + EPS);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn only_touched_rows_change_and_step_descends() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let mut t = SparseTable::new(4, 3, 0.1, &mut rng);
        let before = t.values.clone();
        t.adam_step(&[2], &[1.0, -1.0, 0.0], 0.01);
        assert_eq!(&t.values[0..6], &before[0..6]);
        assert_eq!(&t.values[9..12], &before[9..12]);
        // Adam's first step moves each coordinate by lr against the gradient's sign.
        assert!((t.values[6] - (before[6] - 0.01)).abs() < 1e-6);
        assert!((t.values[7] - (before[7] + 0.01)).abs() < 1e-6);
        assert_eq!(t.values[8], before[8]);
        let g = t.gather(&[2, 0], 1);
        assert_eq!(g.len(), 9);
        assert_eq!(&g[0..3], t.row(2));
        assert_eq!(&g[6..9], &[0.0; 3]);
    }
}
