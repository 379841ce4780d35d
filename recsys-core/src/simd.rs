//! The two vector kernels on serving's hot path: the inner product (re-ranking similarity, MMR
//! diversity) and `acc += w · x` (the towers' dense layers).
//!
//! Both are plain Rust written for the auto-vectoriser (many independent accumulators, fixed-size
//! chunks). On x86-64 the same code is also compiled for AVX2 + FMA and chosen at run time when
//! the CPU has them (portable builds stay at SSE2 otherwise): 8-wide instead of 4-wide lanes, which
//! the library call's profile showed worth it (the inner product was its largest item).

/// Defines `pub fn $name`: `$avx2` compiled for AVX2 + FMA when the CPU has them (x86-64 only),
/// `$plain` compiled for the target's baseline otherwise. The one place the kernels leave safe code.
macro_rules! dispatched {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?; avx2: $avx2:expr; plain: $plain:expr;) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn with_avx2($($arg: $ty),*) $(-> $ret)? {
                    $avx2
                }
                if avx2() {
                    // SAFETY: `with_avx2` only needs the CPU to support AVX2 and FMA, checked
                    // by `avx2()` just above.
                    #[allow(unsafe_code)]
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $plain
        }
    };
}

dispatched! {
    /// Inner product of the common prefix of `a` and `b`.
    pub fn dot(a: &[f32], b: &[f32]) -> f32;
    avx2: dot_lanes::<64>(a, b);
    plain: dot_lanes::<16>(a, b);
}

dispatched! {
    /// `Σ a[i] · q[i]` over the common prefix: a float query against 8-bit codes (scale not applied).
    pub fn dot_i8(a: &[f32], q: &[i8]) -> f32;
    avx2: dot_i8_avx2(a, q);
    plain: dot_i8_lanes::<16>(a, q);
}

dispatched! {
    /// `Σ a[i] · b[i]` over the common prefix of two 8-bit code vectors, exactly (integer sums).
    pub fn dot_i8_i8(a: &[i8], b: &[i8]) -> i32;
    avx2: dot_i8_i8_lanes::<32>(a, b);
    plain: dot_i8_i8_lanes::<16>(a, b);
}

dispatched! {
    /// `acc[i] += w * x[i]` over the common prefix of `acc` and `x`.
    pub fn axpy(acc: &mut [f32], w: f32, x: &[f32]);
    avx2: axpy_plain(acc, w, x);
    plain: axpy_plain(acc, w, x);
}

dispatched! {
    /// `v[i] += add[i]` over the common prefix, returning the largest resulting `v[i]` (−∞ when
    /// empty; NaNs are skipped).
    pub fn add_max(v: &mut [f32], add: &[f32]) -> f32;
    avx2: add_max_lanes::<16>(v, add);
    plain: add_max_lanes::<8>(v, add);
}

dispatched! {
    /// `v[i] = exp(v[i] − shift)` for every element, returning their sum: the inner pass of a
    /// softmax. Relative error below 3e-7 for arguments in [−87, 88]; below −87 the result is a
    /// tiny positive number (≤ 2e-38) instead of 0.
    pub fn exp_shifted(v: &mut [f32], shift: f32) -> f32;
    avx2: exp_lanes::<16>(v, shift);
    plain: exp_lanes::<8>(v, shift);
}

#[inline(always)]
fn add_max_lanes<const L: usize>(v: &mut [f32], add: &[f32]) -> f32 {
    let n = v.len().min(add.len());
    let (v, add) = (&mut v[..n], &add[..n]);
    let mut best = [f32::NEG_INFINITY; L];
    let mut cv = v.chunks_exact_mut(L);
    let mut ca = add.chunks_exact(L);
    for (x, a) in (&mut cv).zip(&mut ca) {
        for ((s, &o), m) in x.iter_mut().zip(a).zip(best.iter_mut()) {
            *s += o;
            *m = if *s > *m { *s } else { *m };
        }
    }
    let mut max = best.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for (s, &o) in cv.into_remainder().iter_mut().zip(ca.remainder()) {
        *s += o;
        max = if *s > max { *s } else { max };
    }
    max
}

/// `e^x` for x in [−87, 88] to within 3e-7 relative, written for the auto-vectoriser (no branch,
/// no `floor`): `x = n·ln 2 + r` with `n` the nearest integer to `x·log2(e)` (rounded by adding and
/// subtracting 1.5·2^23), `r` taken off in two parts of ln 2 so that it stays exact for every `n`
/// (Cody and Waite), `e^r`, |r| ≤ ln 2 / 2, from its degree-7 Taylor polynomial (error < 1e-8),
/// and `2^n` built from its exponent bits.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375: few mantissa bits, so n · LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * (0.001_388_888_9 + r * 1.984_127e-4))))));
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

#[inline(always)]
fn exp_lanes<const L: usize>(v: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; L];
    let mut chunks = v.chunks_exact_mut(L);
    for c in &mut chunks {
        for (s, a) in c.iter_mut().zip(acc.iter_mut()) {
            *s = exp_approx(*s - shift);
            *a += *s;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for s in chunks.into_remainder() {
        *s = exp_approx(*s - shift);
        sum += *s;
    }
    sum
}

/// Asks the CPU to start loading `v` into cache (a hint: no effect on results, never faults).
///
/// For loops over vectors scattered in a large table (500 candidates' item embeddings out of
/// 100 MB): prefetching a few candidates ahead overlaps their memory latency with the current
/// candidate's arithmetic, which the profile showed was otherwise the larger part of the time.
/// Every cache line the slice touches is requested: a 256-byte row that does not start on a
/// line boundary spans five lines, not four.
pub fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = v.as_ptr().cast::<i8>();
        for offset in line_offsets(start as usize, std::mem::size_of_val(v)) {
            // SAFETY: `_mm_prefetch` needs SSE, part of every x86-64 CPU (the target's
            // baseline); it is a hint that neither reads into the program nor faults, and every
            // address lies inside the live slice `v` (`wrapping_add` itself is safe).
            #[allow(unsafe_code)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.wrapping_add(offset));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Bytes per cache line (x86-64 and most ARM cores), the unit of [`prefetch`] and of the
/// alignment of [`crate::retrieval::QuantizedVectors`]' rows.
pub(crate) const CACHE_LINE: usize = 64;

/// The offsets within `bytes` bytes at address `addr` of one byte per cache line they touch: the
/// first byte, then the first byte of each further line (none when `bytes` is 0).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn line_offsets(addr: usize, bytes: usize) -> impl Iterator<Item = usize> {
    let next_line = CACHE_LINE - addr % CACHE_LINE;
    std::iter::once(0)
        .filter(move |_| bytes > 0)
        .chain((next_line..bytes).step_by(CACHE_LINE))
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    // Cached by std after the first call (an atomic load).
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[inline(always)]
fn dot_i8_lanes<const L: usize>(a: &[f32], q: &[i8]) -> f32 {
    let n = a.len().min(q.len());
    let (a, q) = (&a[..n], &q[..n]);
    let mut acc = [0.0f32; L];
    let (ca, cq) = (a.chunks_exact(L), q.chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cq.remainder())
        .map(|(x, &c)| x * f32::from(c))
        .sum();
    for (x, c) in ca.zip(cq) {
        for ((s, &p), &k) in acc.iter_mut().zip(x).zip(c) {
            *s += p * f32::from(k);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`dot_i8`] with AVX2 and FMA written out: four 8-lane running sums added pairwise at the end.
/// (The auto-vectorised [`dot_i8_lanes`] ended in a chain of 31 dependent scalar additions, a
/// fifth of a 256-d product's time, and rewriting its reduction made the compiler drop to 128-bit
/// vectors.) The caller must have checked that the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_i8_avx2(a: &[f32], q: &[i8]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(q.len());
    let blocks = n / 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    for block in 0..blocks {
        for (j, sum) in acc.iter_mut().enumerate() {
            let at = block * 32 + j * 8;
            // SAFETY: `at + 8 <= blocks * 32 <= n`, which is at most both lengths: both loads
            // (8 bytes of `q`, 8 floats of `a`) read inside the slices; neither needs alignment.
            #[allow(unsafe_code)]
            let (codes, floats) = unsafe {
                (
                    _mm_loadl_epi64(q.as_ptr().add(at).cast::<__m128i>()),
                    _mm256_loadu_ps(a.as_ptr().add(at)),
                )
            };
            let codes = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
            *sum = _mm256_fmadd_ps(floats, codes, *sum);
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_movehdup_ps(h));
    let tail: f32 = a[blocks * 32..n]
        .iter()
        .zip(&q[blocks * 32..n])
        .map(|(x, &c)| x * f32::from(c))
        .sum();
    _mm_cvtss_f32(h) + tail
}

#[inline(always)]
fn dot_i8_i8_lanes<const L: usize>(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0i32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += i32::from(p) * i32::from(q);
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// `L` running sums (a multiple of the vector width), reduced pairwise at the end.
#[inline(always)]
fn dot_lanes<const L: usize>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    let mut width = L;
    while width > 1 {
        width /= 2;
        let (low, high) = acc.split_at_mut(width);
        for (s, &h) in low.iter_mut().zip(&high[..width]) {
            *s += h;
        }
    }
    acc[0] + tail
}

#[inline(always)]
fn axpy_plain(acc: &mut [f32], w: f32, x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += w * v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn prefetch_requests_every_line_a_slice_touches() {
        let lines = |addr: usize, bytes: usize| line_offsets(addr, bytes).collect::<Vec<_>>();
        // A 256-byte row on a line boundary: four lines; 16 bytes in, it spans five.
        assert_eq!(lines(4096, 256), vec![0, 64, 128, 192]);
        assert_eq!(lines(4096 + 16, 256), vec![0, 48, 112, 176, 240]);
        // A 16-byte record never straddles when aligned; 8 bytes before a boundary it does.
        assert_eq!(lines(4096 + 48, 16), vec![0]);
        assert_eq!(lines(4096 + 56, 16), vec![0, 8]);
        assert_eq!(lines(4096 + 7, 0), Vec::<usize>::new());
        // Every byte's line is requested, on any alignment and length.
        for addr in 0..128usize {
            for bytes in 1..300usize {
                let got: Vec<usize> = lines(addr, bytes).iter().map(|o| (addr + o) / 64).collect();
                let want: Vec<usize> = (addr / 64..=(addr + bytes - 1) / 64).collect();
                assert_eq!(got, want, "addr {addr}, {bytes} bytes");
            }
        }
        prefetch(&[1u8; 3][..0]);
        prefetch(&[0.5f32; 100]);
    }

    #[test]
    fn exp_shifted_matches_std_exp() {
        // Every 1/64 step over the accurate range, both dispatch paths, odd lengths (remainders).
        // (Up to 80: the sum of every 1/64 step up to 88 would overflow f32.)
        let xs: Vec<f32> = (-87 * 64..=80 * 64).map(|i| i as f32 / 64.0).collect();
        for (shift, len) in [(0.0f32, xs.len()), (3.5, 1001), (-2.0, 7)] {
            let mut v: Vec<f32> = xs[..len].iter().map(|x| x + shift).collect();
            let (mut plain, mut want_sum) = (v.clone(), 0f64);
            let sum = exp_shifted(&mut v, shift);
            let plain_sum = exp_lanes::<8>(&mut plain, shift);
            for (i, (&got, &p)) in v.iter().zip(&plain).enumerate() {
                let want = f64::from(xs[i]).exp();
                want_sum += f64::from((xs[i]).exp());
                for g in [got, p] {
                    assert!(
                        (f64::from(g) - want).abs() <= 3e-7 * want,
                        "exp({}) = {g}, want {want}",
                        xs[i]
                    );
                }
            }
            for got in [sum, plain_sum] {
                assert!(
                    (f64::from(got) - want_sum).abs() <= 1e-5 * want_sum,
                    "sum {got} vs {want_sum}"
                );
            }
        }
        let mut top = [88.0f32];
        exp_shifted(&mut top, 0.0);
        assert!((f64::from(top[0]) - 88f64.exp()).abs() <= 3e-7 * 88f64.exp());
        // Far below the range: tiny, positive, finite; never NaN or infinite.
        let mut v = vec![-1e9f32, -1e30, f32::NEG_INFINITY];
        exp_shifted(&mut v, 0.0);
        assert!(v.iter().all(|&e| (0.0..=2e-38).contains(&e)), "{v:?}");
    }

    #[test]
    fn add_max_adds_and_finds_the_largest() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        for len in [0usize, 1, 5, 16, 37, 1000] {
            let v: Vec<f32> = (0..len).map(|_| rng.random_range(-50.0..50.0)).collect();
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-50.0..50.0)).collect();
            let want: Vec<f32> = v.iter().zip(&a).map(|(x, y)| x + y).collect();
            let want_max = want.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            for lanes in [false, true] {
                let mut got = v.clone();
                let max = if lanes {
                    add_max_lanes::<8>(&mut got, &a)
                } else {
                    add_max(&mut got, &a)
                };
                assert_eq!(got, want);
                assert_eq!(max, want_max);
            }
        }
    }

    #[test]
    fn every_path_matches_the_sequential_sum_for_every_length() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for n in [0, 1, 15, 16, 17, 63, 64, 65, 129, 256, 257] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            for got in [dot(&a, &b), dot_lanes::<16>(&a, &b), dot_lanes::<64>(&a, &b)] {
                assert!((f64::from(got) - want).abs() < 1e-4, "n = {n}: {got} vs {want}");
            }
            let mut acc: Vec<f32> = (0..n).map(|i| i as f32).collect();
            axpy(&mut acc, 0.5, &a);
            for (i, (s, x)) in acc.iter().zip(&a).enumerate() {
                assert_eq!(*s, i as f32 + 0.5 * x);
            }
        }
        // Different lengths: the common prefix.
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
        for n in [0usize, 1, 31, 32, 33, 256, 300] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let q: Vec<i8> = (0..n).map(|_| rng.random_range(-127..=127)).collect();
            let r: Vec<i8> = (0..n).map(|_| rng.random_range(-127..=127)).collect();
            let want: f64 = a.iter().zip(&q).map(|(x, &c)| f64::from(*x) * f64::from(c)).sum();
            for got in [dot_i8(&a, &q), dot_i8_lanes::<16>(&a, &q), dot_i8_lanes::<32>(&a, &q)] {
                assert!((f64::from(got) - want).abs() < 1e-2, "n = {n}: {got} vs {want}");
            }
            let want: i32 = q.iter().zip(&r).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
            assert_eq!(dot_i8_i8(&q, &r), want);
            assert_eq!(dot_i8_i8_lanes::<16>(&q, &r), want);
        }
        assert_eq!(dot(&[2.0; 100], &[0.5; 100]), 100.0);
        let mut acc = [1.0; 3];
        axpy(&mut acc, 2.0, &[1.0; 5]);
        assert_eq!(acc, [3.0; 3]);
    }
}
