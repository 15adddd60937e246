//! `x · Wᵀ` for a few rows of `x` (decoding: one row per sequence being sampled) against a
//! dense f32 weight `W: [out, in]`, as one pass over `W`.
//!
//! With a handful of rows the product is bound by reading `W`, and the gemm crate's blocked
//! kernels are built for the opposite case: on SmolLM2's 49k × 576 unembedding one row took
//! 13.9 ms (8 GB/s) where the machine streams the weight at ~40 GB/s. Here each thread reads a
//! block of `W`'s rows once and, on AVX-512, forms the dot products of a tile of 4 weight rows
//! with 4 input rows at once in registers (16 accumulators: each loaded vector feeds 4
//! multiply-adds, where one dot product at a time loaded two vectors per multiply-add and was
//! bound by the loads), prefetching the next tile's weight rows as it goes.
//!
//! Every dot product is summed in one fixed order, [`dot`]'s — lane `l` of 16 adds the
//! columns `16c + l` in order by fused multiply-adds (a last partial chunk adds nothing to the
//! lanes it lacks), then the 16 lanes are added pairwise — whatever the vector unit and the
//! tiling, so AVX-512, AVX2 and the portable path give the same bits (FMA rounds once
//! everywhere), and a row's result does not depend on the rows beside it.

use rayon::prelude::*;

/// Row counts up to this go through [`matmul_t`]; more rows make the product compute bound,
/// where gemm's blocking pays.
pub const MAX_ROWS: usize = 16;

const LANES: usize = 16;
/// Input rows per register tile.
const TILE_ROWS: usize = 4;
/// Weight rows per register tile: 4 × 4 accumulators, 4 weight vectors and an input vector
/// take 21 of AVX-512's 32 registers (8 × 3 and 4 × 6 tiles measured slower here).
const TILE_OUT: usize = 4;
/// Rows of `W` per parallel task (a few hundred KB of weights; a multiple of [`TILE_OUT`]).
const BLOCK: usize = 48;

/// `x · Wᵀ` for `x: [rows, inp]` and `w: [out, inp]` (row-major slices): `[rows, out]`.
pub fn matmul_t(x: &[f32], rows: usize, w: &[f32], out: usize, inp: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * inp, "few_rows: x is not [rows, in]");
    assert_eq!(w.len(), out * inp, "few_rows: w is not [out, in]");
    // Computed as [out, rows] (each weight row's results together), then transposed.
    let mut yt = vec![0f32; out * rows];
    if rows == 0 || out == 0 {
        return yt;
    }
    if inp == 0 {
        return vec![0f32; rows * out];
    }
    yt.par_chunks_mut(BLOCK * rows)
        .zip(w.par_chunks(BLOCK * inp))
        .for_each(|(y, wb)| block(x, rows, wb, inp, y));
    let mut y = vec![0f32; rows * out];
    for (o, vals) in yt.chunks_exact(rows).enumerate() {
        for (r, v) in vals.iter().enumerate() {
            y[r * out + o] = *v;
        }
    }
    y
}

/// One block of weight rows (`y`: `[block rows, rows]`), with the widest vector unit the CPU has.
fn block(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has avx512f and fma (checked just above), the only requirement of
            // a `target_feature` function; the slices' shapes are checked inside.
            return unsafe { avx512::block(x, rows, wb, inp, y) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for avx2 and fma; the body is safe code.
            return unsafe { block_avx2(x, rows, wb, inp, y) };
        }
    }
    block_portable(x, rows, wb, inp, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    block_portable(x, rows, wb, inp, y)
}

/// Inlined into each `target_feature` variant, so the lanes compile to that unit's vectors.
/// Four input rows at a time against each weight row: four independent accumulators.
#[inline(always)]
fn block_portable(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    const GROUP: usize = 4;
    for (wrow, yo) in wb.chunks_exact(inp).zip(y.chunks_exact_mut(rows)) {
        for (xs, ys) in x.chunks(GROUP * inp).zip(yo.chunks_mut(GROUP)) {
            let mut acc = [[0f32; LANES]; GROUP];
            for (c, wc) in wrow.chunks(LANES).enumerate() {
                for (r, a) in acc.iter_mut().enumerate().take(ys.len()) {
                    let xc = &xs[r * inp + c * LANES..r * inp + c * LANES + wc.len()];
                    for l in 0..wc.len() {
                        a[l] = wc[l].mul_add(xc[l], a[l]);
                    }
                }
            }
            for (out, a) in ys.iter_mut().zip(acc) {
                *out = pairwise(a);
            }
        }
    }
}

/// `Σ a_i·b_i` in the kernel's one order: lane `l` of 16 accumulates the columns `16c + l`
/// by fused multiply-adds, in order (one chain per lane: the callers have many dot products
/// in flight), then the lanes are added pairwise.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (ac, bc) in a.chunks(LANES).zip(b.chunks(LANES)) {
        for l in 0..ac.len().min(bc.len()) {
            acc[l] = ac[l].mul_add(bc[l], acc[l]);
        }
    }
    pairwise(acc)
}

/// `v[i] += v[i + n]` for n = 8, 4, 2, 1: the AVX-512 path's halving reduction.
#[inline(always)]
fn pairwise(a: [f32; LANES]) -> f32 {
    let mut v = a;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            v[i] += v[i + n];
        }
    }
    v[0]
}

/// The register-tiled AVX-512 kernel.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LANES, TILE_OUT, TILE_ROWS};
    use std::arch::x86_64::*;

    /// [`super::block_portable`]'s results, a tile of `TILE_OUT` weight rows by up to
    /// `TILE_ROWS` input rows at a time (a last tile short of weight rows repeats its last one
    /// and drops those results).
    ///
    /// # Safety
    /// The CPU must have avx512f and fma.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn block(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
        assert!(
            inp > 0 && x.len() == rows * inp,
            "few_rows: x is not [rows, in]"
        );
        assert!(
            wb.len().is_multiple_of(inp),
            "few_rows: block is not [n, in]"
        );
        let outs = wb.len() / inp;
        assert_eq!(y.len(), outs * rows, "few_rows: y is not [n, rows]");
        for o in (0..outs).step_by(TILE_OUT) {
            // Weight row `j`, or the block's last row past its end.
            let row = |j: usize| {
                let r = j.min(outs - 1);
                &wb[r * inp..(r + 1) * inp]
            };
            let w: [&[f32]; TILE_OUT] = std::array::from_fn(|j| row(o + j));
            let next: [&[f32]; TILE_OUT] = std::array::from_fn(|j| row(o + TILE_OUT + j));
            let valid = (outs - o).min(TILE_OUT);
            for r0 in (0..rows).step_by(TILE_ROWS) {
                let n = (rows - r0).min(TILE_ROWS);
                let xs = &x[r0 * inp..(r0 + n) * inp];
                let mut sums = [[0f32; TILE_OUT]; TILE_ROWS];
                // SAFETY: (each arm) the caller guarantees avx512f and fma; `xs` holds `n`
                // rows of `inp` and each `w` row `inp` values (checked above).
                unsafe {
                    match n {
                        1 => tile::<1>(xs, inp, w, next, &mut sums),
                        2 => tile::<2>(xs, inp, w, next, &mut sums),
                        3 => tile::<3>(xs, inp, w, next, &mut sums),
                        _ => tile::<4>(xs, inp, w, next, &mut sums),
                    }
                }
                for (j, out) in (o..o + valid).enumerate() {
                    for (r, s) in sums.iter().take(n).enumerate() {
                        y[out * rows + r0 + r] = s[j];
                    }
                }
            }
        }
    }

    /// `R` input rows (`xs`: `[R, inp]`) against `TILE_OUT` weight rows, each dot product in
    /// [`super::dot`]'s order, while the weight rows of the next tile (`next`) are prefetched
    /// a cache line per chunk: the weights stream from memory, and on 2 AMD EPYC cores the
    /// hardware prefetcher alone read a decode step's 540 MB at ~15 GB/s, ~21–25 with this
    /// (SmolLM2's 30 layers and unembedding at 8 rows: 33–37 → 21–23 ms per step).
    ///
    /// # Safety
    /// The CPU must have avx512f and fma; `xs.len() == R * inp`, every `w[j].len() == inp`
    /// and every `next[j].len() == inp`.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn tile<const R: usize>(
        xs: &[f32],
        inp: usize,
        w: [&[f32]; TILE_OUT],
        next: [&[f32]; TILE_OUT],
        sums: &mut [[f32; TILE_OUT]; TILE_ROWS],
    ) {
        debug_assert!(xs.len() == R * inp && w.iter().all(|r| r.len() == inp));
        debug_assert!(next.iter().all(|r| r.len() == inp));
        let mut acc = [[_mm512_setzero_ps(); TILE_OUT]; R];
        // Whole chunks as `[f32; 16]` arrays, read by a plain copy: `_mm512_loadu_ps` goes
        // through `ptr::read_unaligned`, whose debug-build precondition check (this crate's
        // dev profile keeps debug assertions) sent every loaded vector through the stack.
        // Loops, not `array::from_fn`: a closure is compiled without this function's target
        // features, so intrinsics in it become calls.
        let mut wc: [&[[f32; LANES]]; TILE_OUT] = [&[]; TILE_OUT];
        let mut wt: [&[f32]; TILE_OUT] = [&[]; TILE_OUT];
        for j in 0..TILE_OUT {
            (wc[j], wt[j]) = w[j].as_chunks::<LANES>();
        }
        let mut xc: [&[[f32; LANES]]; R] = [&[]; R];
        let mut xt: [&[f32]; R] = [&[]; R];
        for (r, row) in xs.chunks_exact(inp).enumerate().take(R) {
            (xc[r], xt[r]) = row.as_chunks::<LANES>();
        }
        let chunks = inp / LANES;
        for c in 0..chunks {
            for row in &next {
                // A hint only: prefetching never faults, and `c * LANES < inp` keeps the
                // address inside the row.
                _mm_prefetch::<_MM_HINT_T0>(row[c * LANES..].as_ptr().cast::<i8>());
            }
            let mut wv = [_mm512_setzero_ps(); TILE_OUT];
            for j in 0..TILE_OUT {
                wv[j] = vector(&wc[j][c]);
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = vector(&xc[r][c]);
                for j in 0..TILE_OUT {
                    a[j] = _mm512_fmadd_ps(wv[j], xv, a[j]);
                }
            }
        }
        let rest = inp - chunks * LANES;
        if rest > 0 {
            // The last partial chunk: lanes past the row's end neither load nor change.
            let mask: __mmask16 = (1u16 << rest) - 1;
            // SAFETY: each tail slice holds `rest` values; the masked loads read only those.
            unsafe {
                let mut wv = [_mm512_setzero_ps(); TILE_OUT];
                for j in 0..TILE_OUT {
                    wv[j] = _mm512_maskz_loadu_ps(mask, wt[j].as_ptr());
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = _mm512_maskz_loadu_ps(mask, xt[r].as_ptr());
                    for j in 0..TILE_OUT {
                        a[j] = _mm512_mask3_fmadd_ps(wv[j], xv, a[j], mask);
                    }
                }
            }
        }
        for (s, a) in sums.iter_mut().zip(&acc) {
            for j in 0..TILE_OUT {
                s[j] = reduce(a[j]);
            }
        }
    }

    /// 16 values as one vector.
    #[inline(always)]
    fn vector(a: &[f32; LANES]) -> __m512 {
        // SAFETY: `[f32; 16]` and `__m512` are both 64 bytes of plain f32 lanes.
        unsafe { std::mem::transmute::<[f32; LANES], __m512>(*a) }
    }

    /// The 16 lanes added as [`super::pairwise`] does: halves, then quarters, pairs, the last two.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn reduce(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        }
    }

    /// Against an f64 product: f32 dot products of up to 1536 terms in [-1, 1] agree to
    /// 1e-5·√in (rounding of 16 lane sums of ≤ 96 terms each); shapes with a remainder column
    /// count, a partial last tile and block, and more rows than a tile included.
    #[test]
    fn matches_an_f64_product() {
        let mut next = lcg(7);
        for (rows, out, inp) in [
            (1, 130, 576),
            (8, 64, 37),
            (3, 200, 1536),
            (16, 5, 16),
            (11, 49, 7),
        ] {
            let x: Vec<f32> = (0..rows * inp).map(|_| next() as f32).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| next() as f32).collect();
            let y = matmul_t(&x, rows, &w, out, inp);
            for r in 0..rows {
                for o in 0..out {
                    let want: f64 = (0..inp)
                        .map(|k| x[r * inp + k] as f64 * w[o * inp + k] as f64)
                        .sum();
                    let got = y[r * out + o] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (inp as f64).sqrt(),
                        "rows {rows} out {out} in {inp}: [{r},{o}] {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Every vector path, and every row's place in a tile, gives [`dot`]'s bits: the product
    /// of one row alone equals that row's among 16.
    #[test]
    fn every_path_gives_the_dot_products_bits() {
        let mut next = lcg(11);
        for (rows, out, inp) in [(5, 70, 600), (16, 7, 16), (9, 50, 37), (8, 96, 576)] {
            let x: Vec<f32> = (0..rows * inp).map(|_| next() as f32).collect();
            let w: Vec<f32> = (0..out * inp).map(|_| next() as f32).collect();
            let want: Vec<u32> = (0..out)
                .flat_map(|o| {
                    let (x, w) = (&x, &w);
                    (0..rows).map(move |r| {
                        dot(&w[o * inp..(o + 1) * inp], &x[r * inp..(r + 1) * inp]).to_bits()
                    })
                })
                .collect();
            let mut portable = vec![0f32; out * rows];
            block_portable(&x, rows, &w, inp, &mut portable);
            let mut fastest = vec![0f32; out * rows];
            block(&x, rows, &w, inp, &mut fastest);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&portable), want, "portable, {rows}x{out}x{inp}");
            assert_eq!(bits(&fastest), want, "fastest unit, {rows}x{out}x{inp}");
            let alone = matmul_t(&x[inp..2 * inp], 1, &w, out, inp);
            let among = matmul_t(&x, rows, &w, out, inp);
            assert_eq!(bits(&alone), bits(&among[out..2 * out]), "row 1 alone");
        }
    }
}
