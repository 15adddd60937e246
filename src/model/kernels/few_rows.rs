//! `x · Wᵀ` for a few rows of `x` (decoding: one row per sequence being sampled) against a
//! dense f32 weight `W: [out, in]`, as one pass over `W`.
//!
//! With a handful of rows the product is bound by reading `W`, and the gemm crate's blocked
//! kernels are built for the opposite case: on SmolLM2's 49k × 576 unembedding one row took
//! 13.9 ms (8 GB/s) where the machine streams the weight at ~40 GB/s. Here each thread reads a
//! block of `W`'s rows once and forms every input row's dot product with each of them while
//! it is in cache.
//!
//! Each dot product is summed in a fixed order — fused multiply-adds in 4 chains of 16 lanes
//! over the columns, chains and lanes added pairwise, the remainder after — whatever the CPU's vector width,
//! so AVX-512, AVX2 and the portable path give the same bits (FMA rounds once everywhere).

use rayon::prelude::*;

/// Row counts up to this go through [`matmul_t`]; more rows make the product compute bound,
/// where gemm's blocking pays.
pub const MAX_ROWS: usize = 16;

const LANES: usize = 16;
/// Independent multiply-add chains per dot product.
const CHAINS: usize = 4;
/// Rows of `W` per parallel task (a few hundred KB of weights).
const BLOCK: usize = 64;

/// `x · Wᵀ` for `x: [rows, inp]` and `w: [out, inp]` (row-major slices): `[rows, out]`.
pub fn matmul_t(x: &[f32], rows: usize, w: &[f32], out: usize, inp: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * inp, "few_rows: x is not [rows, in]");
    assert_eq!(w.len(), out * inp, "few_rows: w is not [out, in]");
    // Computed as [out, rows] (each weight row's results together), then transposed.
    let mut yt = vec![0f32; out * rows];
    if rows == 0 || out == 0 {
        return yt;
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

/// One block of weight rows, with the widest vector unit the CPU has.
fn block(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has avx512f and fma (checked just above), the only requirement of
            // a `target_feature` function; the body is safe code.
            return unsafe { block_avx512(x, rows, wb, inp, y) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for avx2 and fma.
            return unsafe { block_avx2(x, rows, wb, inp, y) };
        }
    }
    block_portable(x, rows, wb, inp, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block_avx512(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    block_portable(x, rows, wb, inp, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    block_portable(x, rows, wb, inp, y)
}

/// Inlined into each `target_feature` variant, so the lanes compile to that unit's vectors.
#[inline(always)]
fn block_portable(x: &[f32], rows: usize, wb: &[f32], inp: usize, y: &mut [f32]) {
    for (wrow, yo) in wb.chunks_exact(inp).zip(y.chunks_exact_mut(rows)) {
        for (out, xrow) in yo.iter_mut().zip(x.chunks_exact(inp)) {
            *out = dot(wrow, xrow);
        }
    }
}

/// `Σ a_i·b_i` over 16 lanes in 4 independent chains (chunk `c` of 16 columns goes to chain
/// `c mod 4`: one chain would wait on each multiply-add's latency), chains then lanes added
/// pairwise, the columns after the last whole chunk added last in order.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0f32; LANES]; CHAINS];
    let group = LANES * CHAINS;
    let whole = a.len() / group * group;
    let (ag, arest) = a.split_at(whole);
    let (bg, brest) = b.split_at(whole);
    for (ac, bc) in ag.chunks_exact(group).zip(bg.chunks_exact(group)) {
        for (c, chain) in acc.iter_mut().enumerate() {
            let (ai, bi) = (
                &ac[c * LANES..(c + 1) * LANES],
                &bc[c * LANES..(c + 1) * LANES],
            );
            for l in 0..LANES {
                chain[l] = ai[l].mul_add(bi[l], chain[l]);
            }
        }
    }
    let chunks = arest.len() / LANES * LANES;
    for (chain, (ai, bi)) in acc.iter_mut().zip(
        arest[..chunks]
            .chunks_exact(LANES)
            .zip(brest[..chunks].chunks_exact(LANES)),
    ) {
        for l in 0..LANES {
            chain[l] = ai[l].mul_add(bi[l], chain[l]);
        }
    }
    let [c0, c1, c2, c3] = acc;
    let mut lanes = [0f32; LANES];
    for l in 0..LANES {
        lanes[l] = (c0[l] + c1[l]) + (c2[l] + c3[l]);
    }
    let mut s = pairwise(lanes);
    for (x, y) in arest[chunks..].iter().zip(&brest[chunks..]) {
        s = x.mul_add(*y, s);
    }
    s
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 product: f32 dot products of 576 terms in [-1, 1] agree to 1e-5 of the
    /// row's scale (rounding of 36 lane sums); shapes with a remainder column count and a
    /// partial last block included.
    #[test]
    fn matches_an_f64_product() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        };
        for (rows, out, inp) in [(1, 130, 576), (8, 64, 37), (3, 200, 1536), (16, 5, 16)] {
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

    /// Every vector path gives the portable path's bits.
    #[test]
    fn vector_paths_give_the_portable_bits() {
        let (rows, out, inp) = (5, 70, 600);
        let x: Vec<f32> = (0..rows * inp)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 31.0)
            .collect();
        let w: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 29.0)
            .collect();
        let mut want = vec![0f32; out * rows];
        block_portable(&x, rows, &w, inp, &mut want);
        let mut got = vec![0f32; out * rows];
        block(&x, rows, &w, inp, &mut got);
        assert_eq!(
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
