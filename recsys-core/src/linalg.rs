//! Dense `f32` matrix products on the host through the `gemm` crate (AVX-512, AVX2/FMA or SSE
//! kernels chosen at run time), behind a checked, safe interface.
//!
//! Used by the exact retrieval scan (query blocks × item blocks) and by the CPU path of the
//! training loss (logits and their gradients).

use crate::{Error, Result};
use rayon::prelude::*;

/// The number of `d`-wide rows in `floats`, or an internal error naming `what` when `d` is 0 or
/// does not divide its length.
pub(crate) fn row_count(floats: &[f32], d: usize, what: &str) -> Result<usize> {
    if d == 0 || !floats.len().is_multiple_of(d) {
        return Err(Error::Internal(format!(
            "{what}: {} floats are not a whole number of rows of dim {d}",
            floats.len()
        )));
    }
    Ok(floats.len() / d)
}

/// A read-only matrix stored in a slice with arbitrary row and column strides, so that a
/// row-major matrix and its transpose are both views of the same data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `data` as a row-major `rows × cols` matrix.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of `data` read as a row-major `rows × cols` matrix: a `cols × rows` view.
    pub(crate) fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Rows `start..end` of this view.
    #[cfg_attr(not(feature = "training"), allow(dead_code))]
    fn rows(self, start: usize, end: usize) -> Self {
        let from = (start * self.row_stride).min(self.data.len());
        MatRef {
            data: &self.data[from..],
            rows: end - start,
            ..self
        }
    }

    /// Whether every element the strides address lies inside the slice.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1).checked_mul(self.row_stride).and_then(|r| {
            (self.cols - 1)
                .checked_mul(self.col_stride)
                .and_then(|c| r.checked_add(c))
        });
        matches!(last, Some(last) if last < self.data.len() && isize::try_from(last).is_ok())
    }
}

/// `out = lhs · rhs`, with `out` row-major (`lhs.rows × rhs.cols`) and overwritten, computed on
/// the calling thread.
#[allow(unsafe_code)]
pub(crate) fn matmul(lhs: MatRef<'_>, rhs: MatRef<'_>, out: &mut [f32]) -> Result<()> {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if rhs.rows != k {
        return Err(Error::Internal(format!(
            "matmul: {m} × {k} times {} × {n}: inner dimensions differ",
            rhs.rows
        )));
    }
    if out.len() != m * n {
        return Err(Error::Internal(format!(
            "matmul: output holds {} floats, {m} × {n} needed",
            out.len()
        )));
    }
    if !lhs.in_bounds() || !rhs.in_bounds() || isize::try_from(n).is_err() {
        return Err(Error::Internal("matmul: a view's strides reach past its slice".into()));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    // SAFETY: the three pointers come from live slices borrowed for the whole call (`out`
    // mutably, so it aliases neither input). `in_bounds` checked that the largest offset either
    // input view addresses, (rows − 1)·row_stride + (cols − 1)·col_stride, lies inside its slice
    // and fits an isize; `out` is written at (m − 1)·n + n − 1 < out.len() = m·n at most (checked
    // above). `read_dst` is false, so `out`'s previous contents are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// [`matmul`] split into blocks of `block_rows` output rows computed in parallel on the rayon pool
/// (the training loss's products).
#[cfg_attr(not(feature = "training"), allow(dead_code))]
pub(crate) fn par_matmul(lhs: MatRef<'_>, rhs: MatRef<'_>, out: &mut [f32], block_rows: usize) -> Result<()> {
    let n = rhs.cols;
    if out.len() != lhs.rows * n {
        return Err(Error::Internal(format!(
            "matmul: output holds {} floats, {} × {n} needed",
            out.len(),
            lhs.rows
        )));
    }
    if n == 0 {
        return Ok(());
    }
    // At least one block per thread, so that each packs the right-hand side once.
    let block_rows = block_rows.max(1);
    out.par_chunks_mut(block_rows * n)
        .enumerate()
        .try_for_each(|(i, block)| {
            let start = i * block_rows;
            matmul(lhs.rows(start, start + block.len() / n), rhs, block)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            }
        }
        out
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
    }

    #[test]
    fn products_of_views_match_the_naive_product() {
        let (m, k, n) = (37, 19, 23);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
        let want = naive(&a, &b, m, k, n);
        let mut out = vec![f32::NAN; m * n];
        matmul(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut out).unwrap();
        assert!(close(&out, &want));
        // bᵀ stored row-major (n × k), read back through a transposed view.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut out = vec![f32::NAN; m * n];
        par_matmul(MatRef::row_major(&a, m, k), MatRef::transposed(&bt, n, k), &mut out, 8).unwrap();
        assert!(close(&out, &want));
        // aᵀ stored row-major (k × m) as the left side, blocks that do not divide the rows.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let mut out = vec![f32::NAN; m * n];
        par_matmul(MatRef::transposed(&at, k, m), MatRef::row_major(&b, k, n), &mut out, 5).unwrap();
        assert!(close(&out, &want));
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let a = vec![1f32; 6];
        let mut out = vec![0f32; 4];
        assert!(matmul(MatRef::row_major(&a, 2, 3), MatRef::row_major(&a, 2, 3), &mut out).is_err());
        assert!(matmul(MatRef::row_major(&a, 2, 3), MatRef::row_major(&a, 3, 2), &mut out[..3]).is_err());
        // A view claiming more rows than its slice holds.
        assert!(matmul(MatRef::row_major(&a, 4, 3), MatRef::row_major(&a, 3, 2), &mut [0f32; 8]).is_err());
        let mut out = vec![f32::NAN; 4];
        matmul(MatRef::row_major(&a, 2, 0), MatRef::row_major(&a, 0, 2), &mut out).unwrap();
        assert_eq!(out, [0.0; 4]);
    }
}
