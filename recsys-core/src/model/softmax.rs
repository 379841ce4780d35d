//! The training loss, in-batch sampled softmax, with its gradients computed on the host in one
//! fused pass: the CPU path of [`super::trainer`].
//!
//! With `S = U Iᵀ + offset` (`b × cols`: the batch's user embeddings already divided by the
//! temperature, the target items in the first `b` columns followed by the extra negatives, and
//! the logQ and accidental-hit offsets), the loss is `−mean_i log softmax(S_i)_i` and its
//! gradient with respect to `S` is `G = (softmax(S) − [j = i]) / b`. So `dL/dU = G I` and
//! `dL/dI = Gᵀ U`, three matrix products and one pass over the logits that computes each row's
//! maximum, log-sum-exp and softmax in place. Through burn's element-wise operations the same
//! loss takes about five passes over the `b × cols` logits forward and as many backward, with the
//! exponential on one thread; at batch 4096 they dominated the whole step. The trainer hands the
//! two gradients back to burn's autodiff as the surrogate `sum(U ⊙ dU) + sum(I ⊙ dI)`, whose
//! gradients are exactly `dU` and `dI`, so the towers below back-propagate as before.

use crate::linalg::{MatRef, par_matmul, row_count};
use crate::{Error, Result};
use rayon::prelude::*;

/// Output rows of each block of the parallel products (each block packs the right-hand side
/// again, so larger blocks pack less often; benches/README.md, "Build time", has the figure).
const BLOCK_ROWS: usize = 256;

/// The loss of a batch and its gradients with respect to both towers' outputs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SoftmaxLoss {
    /// `−mean_i log softmax(S_i)_i`.
    pub(crate) loss: f32,
    /// `dL/dU`, `b × d` row-major.
    pub(crate) d_users: Vec<f32>,
    /// `dL/dI`, `cols × d` row-major.
    pub(crate) d_items: Vec<f32>,
}

/// The sampled-softmax loss of `b` users (`users`, `b × d`, already scaled by 1/temperature)
/// against `cols ≥ b` items (`items`, `cols × d`; row `i < b` is user `i`'s target), with
/// `offset` (`b × cols`) added to the logits, and its gradients. `scratch` holds the logits (kept
/// by the caller across steps, so that the `b × cols` buffer is allocated and faulted in once).
pub(crate) fn sampled_softmax(
    users: &[f32],
    items: &[f32],
    offset: &[f32],
    d: usize,
    scratch: &mut Vec<f32>,
) -> Result<SoftmaxLoss> {
    let b = row_count(users, d, "sampled_softmax: users")?;
    let cols = row_count(items, d, "sampled_softmax: items")?;
    if b == 0 || cols < b || offset.len() != b * cols {
        return Err(Error::Internal(format!(
            "sampled_softmax: {b} users, {cols} items and {} offsets (b ≥ 1, cols ≥ b, b × cols offsets needed)",
            offset.len()
        )));
    }
    scratch.resize(b * cols, 0.0);
    let g = &mut scratch[..];
    par_matmul(
        MatRef::row_major(users, b, d),
        MatRef::transposed(items, cols, d),
        g,
        BLOCK_ROWS,
    )?;
    let inv_b = 1.0 / b as f32;
    // Logits → G in place, one row per task; each row's loss is returned for the mean.
    let row_losses: Vec<f64> = g
        .par_chunks_mut(cols)
        .zip(offset.par_chunks(cols))
        .enumerate()
        .map(|(i, (row, off))| {
            let max = crate::simd::add_max(row, off);
            let positive = row[i];
            let sum = crate::simd::exp_shifted(row, max);
            let scale = inv_b / sum;
            for s in row.iter_mut() {
                *s *= scale;
            }
            row[i] -= inv_b;
            f64::from(max + sum.ln() - positive)
        })
        .collect();
    let loss = (row_losses.iter().sum::<f64>() / b as f64) as f32;
    let mut d_users = vec![0f32; b * d];
    par_matmul(
        MatRef::row_major(g, b, cols),
        MatRef::row_major(items, cols, d),
        &mut d_users,
        BLOCK_ROWS,
    )?;
    let mut d_items = vec![0f32; cols * d];
    par_matmul(
        MatRef::transposed(g, b, cols),
        MatRef::row_major(users, b, d),
        &mut d_items,
        BLOCK_ROWS,
    )?;
    Ok(SoftmaxLoss { loss, d_users, d_items })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss computed the long way, in f64.
    fn reference_loss(u: &[f32], it: &[f32], off: &[f32], d: usize) -> f64 {
        let (b, cols) = (u.len() / d, it.len() / d);
        let mut total = 0f64;
        for i in 0..b {
            let s: Vec<f64> = (0..cols)
                .map(|j| {
                    (0..d)
                        .map(|k| f64::from(u[i * d + k]) * f64::from(it[j * d + k]))
                        .sum::<f64>()
                        + f64::from(off[i * cols + j])
                })
                .collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + s.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            total += lse - s[i];
        }
        total / b as f64
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(seed) >> 40;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn loss_and_gradients_match_finite_differences() {
        let (b, cols, d) = (5, 9, 4);
        let u = data(b * d, 1);
        let it = data(cols * d, 2);
        let mut off = data(b * cols, 3);
        off[cols + 4] = -1e9; // an accidental hit masked out
        let got = sampled_softmax(&u, &it, &off, d, &mut Vec::new()).unwrap();
        let want = reference_loss(&u, &it, &off, d);
        assert!((f64::from(got.loss) - want).abs() < 1e-5, "{} vs {want}", got.loss);
        let h = 1e-3f32;
        for (which, grad) in [(0, &got.d_users), (1, &got.d_items)] {
            for p in 0..grad.len() {
                let (mut up, mut down) = ([u.clone(), it.clone()], [u.clone(), it.clone()]);
                up[which][p] += h;
                down[which][p] -= h;
                let step = f64::from(up[which][p]) - f64::from(down[which][p]);
                let numeric =
                    (reference_loss(&up[0], &up[1], &off, d) - reference_loss(&down[0], &down[1], &off, d)) / step;
                assert!(
                    (f64::from(grad[p]) - numeric).abs() < 1e-4,
                    "tower {which}, element {p}: {} vs {numeric}",
                    grad[p]
                );
            }
        }
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let (b, cols, d) = (3, 4, 2);
        let u: Vec<f32> = data(b * d, 4).iter().map(|x| x * 300.0).collect();
        let it: Vec<f32> = data(cols * d, 5).iter().map(|x| x * 300.0).collect();
        let got = sampled_softmax(&u, &it, &vec![0.0; b * cols], d, &mut vec![f32::NAN; 3]).unwrap();
        assert!(got.loss.is_finite());
        assert!(got.d_users.iter().chain(&got.d_items).all(|g| g.is_finite()));
        assert!((f64::from(got.loss) - reference_loss(&u, &it, &vec![0.0; b * cols], d)).abs() < 1e-2);
    }

    #[test]
    fn inconsistent_shapes_are_errors() {
        assert!(sampled_softmax(&[1.0; 4], &[1.0; 2], &[0.0; 2], 2, &mut Vec::new()).is_err());
        assert!(sampled_softmax(&[1.0; 4], &[1.0; 6], &[0.0; 5], 2, &mut Vec::new()).is_err());
        assert!(sampled_softmax(&[1.0; 3], &[1.0; 6], &[0.0; 3], 2, &mut Vec::new()).is_err());
    }
}
