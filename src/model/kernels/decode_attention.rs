//! Attention for decoding on CPU in f32: one new query row per sequence against that sequence's
//! cached keys and values, in one pass over plain buffers.
//!
//! Composed from tensor ops, a decoding step ran some twenty small ops per sequence per layer
//! (two cache concatenations — each a copy of the whole cache — a mask, per-group matmuls, a
//! softmax): for 8 sequences of SmolLM2 (30 layers) about 4,800 ops per token, a third of a
//! decoding step beside reading the weights. Here the cache grows in place ([`KvBuf`], spare
//! capacity, amortised doubling) and every (sequence, query head) pair is one task.
//!
//! Each score is a [`few_rows::dot`] (one fixed summation order on every vector unit), the
//! softmax and the weighted sum of values run over positions in order: a row's result does not
//! depend on how many sequences are decoded beside it, nor on the thread count.

use rayon::prelude::*;

use super::few_rows;

/// Keys or values of one sequence at one layer: `[heads, cap, dh]` with the first `len`
/// positions of every head filled.
#[derive(Clone, Debug)]
pub struct KvBuf {
    data: Vec<f32>,
    heads: usize,
    dh: usize,
    len: usize,
    cap: usize,
}

impl KvBuf {
    /// From `[heads, len, dh]` values (row-major), with room for `spare` more positions.
    pub fn from_rows(src: &[f32], heads: usize, len: usize, dh: usize, spare: usize) -> Self {
        assert_eq!(
            src.len(),
            heads * len * dh,
            "kv buffer: not [heads, len, dh]"
        );
        let mut buf = Self {
            data: Vec::new(),
            heads,
            dh,
            len: 0,
            cap: 0,
        };
        buf.grow_to(len + spare);
        for h in 0..heads {
            let from = &src[h * len * dh..(h + 1) * len * dh];
            buf.data[h * buf.cap * dh..h * buf.cap * dh + len * dh].copy_from_slice(from);
        }
        buf.len = len;
        buf
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    pub fn head_dim(&self) -> usize {
        self.dh
    }

    /// Re-lays the buffer out with room for `cap` positions per head.
    fn grow_to(&mut self, cap: usize) {
        if cap <= self.cap {
            return;
        }
        let dh = self.dh;
        let mut data = vec![0f32; self.heads * cap * dh];
        for h in 0..self.heads {
            let old = &self.data[h * self.cap * dh..h * self.cap * dh + self.len * dh];
            data[h * cap * dh..h * cap * dh + self.len * dh].copy_from_slice(old);
        }
        self.data = data;
        self.cap = cap;
    }

    /// Appends one position: `row(h)` gives head `h`'s `dh` values.
    pub fn push<'a>(&mut self, row: impl Fn(usize) -> &'a [f32]) {
        if self.len == self.cap {
            self.grow_to((self.cap * 2).max(self.len + 16));
        }
        let (dh, cap, len) = (self.dh, self.cap, self.len);
        for h in 0..self.heads {
            let src = row(h);
            assert_eq!(src.len(), dh, "kv buffer: a row of {} values", src.len());
            self.data[(h * cap + len) * dh..(h * cap + len + 1) * dh].copy_from_slice(src);
        }
        self.len += 1;
    }

    /// Head `h`'s filled positions, `[len, dh]`.
    fn head(&self, h: usize) -> &[f32] {
        &self.data[h * self.cap * self.dh..(h * self.cap + self.len) * self.dh]
    }

    /// The filled part as `[heads, len, dh]` (row-major).
    pub fn to_rows(&self) -> Vec<f32> {
        (0..self.heads)
            .flat_map(|h| self.head(h))
            .copied()
            .collect()
    }
}

/// `z[h, i] = softmax_j(q[h, i]·k_i[g(h), j]·scale)·v_i[g(h), j]` for query rows
/// `q: [hq, n, dh]` (row `i` is sequence `i`'s newest position, `len_i − 1`, already in its
/// cache), kv head `g(h) = h / (hq / hk)`; with a sliding `window`, only the last `window`
/// positions are seen. Returns `z: [hq, n, dh]`.
pub fn attend_rows(
    q: &[f32],
    hq: usize,
    keys: &[&KvBuf],
    values: &[&KvBuf],
    window: Option<usize>,
    scale: f32,
) -> Vec<f32> {
    let n = keys.len();
    assert_eq!(
        values.len(),
        n,
        "decode attention: keys and values per sequence"
    );
    let Some(first) = keys.first() else {
        return Vec::new();
    };
    let (hk, dh) = (first.heads, first.dh);
    assert!(
        hk > 0 && hq.is_multiple_of(hk),
        "decode attention: {hq} query heads over {hk} kv heads"
    );
    assert_eq!(
        q.len(),
        hq * n * dh,
        "decode attention: q is not [hq, n, dh]"
    );
    for (k, v) in keys.iter().zip(values) {
        assert!(
            k.heads == hk && v.heads == hk && k.dh == dh && v.dh == dh && k.len == v.len,
            "decode attention: caches of different shapes"
        );
    }
    let n_rep = hq / hk;
    let mut z = vec![0f32; hq * n * dh];
    z.par_chunks_mut(dh).enumerate().for_each(|(task, out)| {
        let (h, i) = (task / n, task % n);
        let g = h / n_rep;
        let row = Row {
            q: &q[(h * n + i) * dh..(h * n + i + 1) * dh],
            k: keys[i].head(g),
            v: values[i].head(g),
            from: window.map_or(0, |w| keys[i].len.saturating_sub(w)),
            scale,
        };
        row.attend(out);
    });
    z
}

/// One (sequence, query head) pair: its query, its kv head's filled positions, the first
/// position it sees.
struct Row<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    from: usize,
    scale: f32,
}

impl Row<'_> {
    /// With the widest vector unit the CPU has (the same bits on each: see the module docs).
    fn attend(&self, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has avx512f and fma (checked just above), the only
                // requirement of a `target_feature` function; the body is safe code.
                return unsafe { self.attend_avx512(out) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above, for avx2 and fma.
                return unsafe { self.attend_avx2(out) };
            }
        }
        self.attend_portable(out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn attend_avx512(&self, out: &mut [f32]) {
        self.attend_portable(out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn attend_avx2(&self, out: &mut [f32]) {
        self.attend_portable(out)
    }

    /// Inlined into each `target_feature` variant (multiply-adds compile to FMA there).
    #[inline(always)]
    fn attend_portable(&self, out: &mut [f32]) {
        let dh = self.q.len();
        let len = self.k.len() / dh.max(1);
        // A loop, not an iterator's closure: a closure is compiled without this function's
        // target features, and `dot`'s multiply-adds there became calls to a software `fmaf`
        // (a third of decoding's attention time, measured).
        let mut scores = Vec::with_capacity(len.saturating_sub(self.from));
        for j in self.from..len {
            scores.push(few_rows::dot(self.q, &self.k[j * dh..(j + 1) * dh]) * self.scale);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        for (j, w) in (self.from..len).zip(&weights) {
            let p = w / total;
            for (o, x) in out.iter_mut().zip(&self.v[j * dh..(j + 1) * dh]) {
                *o = p.mul_add(*x, *o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + salt * 11) % 101) as f32 - 50.0) / 40.0)
            .collect()
    }

    /// Against softmax attention in f64 over the same rows (GQA 6 query heads over 2 kv heads,
    /// sequences of different lengths, with and without a window): f32 sums of ≤ 40 terms of
    /// O(1) agree to 1e-5.
    #[test]
    fn matches_softmax_attention_in_f64() {
        let (hq, hk, dh) = (6, 2, 20);
        let lens = [1usize, 7, 40];
        for window in [None, Some(5)] {
            let ks: Vec<KvBuf> = lens
                .iter()
                .enumerate()
                .map(|(s, &l)| KvBuf::from_rows(&values(hk * l * dh, s), hk, l, dh, 3))
                .collect();
            let vs: Vec<KvBuf> = lens
                .iter()
                .enumerate()
                .map(|(s, &l)| KvBuf::from_rows(&values(hk * l * dh, s + 9), hk, l, dh, 0))
                .collect();
            let n = lens.len();
            let q = values(hq * n * dh, 4);
            let scale = 0.3f32;
            let z = attend_rows(
                &q,
                hq,
                &ks.iter().collect::<Vec<_>>(),
                &vs.iter().collect::<Vec<_>>(),
                window,
                scale,
            );
            for h in 0..hq {
                for (i, &len) in lens.iter().enumerate() {
                    let g = h / (hq / hk);
                    let (kr, vr) = (ks[i].to_rows(), vs[i].to_rows());
                    let from = window.map_or(0, |w| len.saturating_sub(w));
                    let s: Vec<f64> = (from..len)
                        .map(|j| {
                            (0..dh)
                                .map(|d| {
                                    q[(h * n + i) * dh + d] as f64
                                        * kr[(g * len + j) * dh + d] as f64
                                })
                                .sum::<f64>()
                                * scale as f64
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let t: f64 = e.iter().sum();
                    for d in 0..dh {
                        let want: f64 = (from..len)
                            .zip(&e)
                            .map(|(j, w)| w / t * vr[(g * len + j) * dh + d] as f64)
                            .sum();
                        let got = z[(h * n + i) * dh + d] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "window {window:?} head {h} seq {i} dim {d}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Pushing past the capacity keeps every earlier position; `to_rows` gives them in order.
    #[test]
    fn buffers_grow_in_place_keeping_their_rows() {
        let (heads, dh) = (3, 4);
        let start = values(heads * 2 * dh, 1);
        let mut b = KvBuf::from_rows(&start, heads, 2, dh, 0);
        let mut want: Vec<Vec<f32>> = (0..heads)
            .map(|h| start[h * 2 * dh..(h + 1) * 2 * dh].to_vec())
            .collect();
        for t in 0..40 {
            let rows: Vec<Vec<f32>> = (0..heads).map(|h| values(dh, t * 3 + h)).collect();
            b.push(|h| &rows[h]);
            for h in 0..heads {
                want[h].extend(&rows[h]);
            }
        }
        assert_eq!(b.len(), 42);
        assert_eq!(b.to_rows(), want.concat());
    }

    /// A row's result is the same whether it is decoded alone or beside others.
    #[test]
    fn rows_do_not_depend_on_their_neighbours() {
        let (hq, hk, dh, len) = (4, 2, 64, 30);
        let bufs: Vec<(KvBuf, KvBuf)> = (0..3)
            .map(|s| {
                (
                    KvBuf::from_rows(&values(hk * len * dh, s), hk, len, dh, 0),
                    KvBuf::from_rows(&values(hk * len * dh, s + 5), hk, len, dh, 0),
                )
            })
            .collect();
        let q = values(hq * 3 * dh, 2);
        let all = attend_rows(
            &q,
            hq,
            &bufs.iter().map(|b| &b.0).collect::<Vec<_>>(),
            &bufs.iter().map(|b| &b.1).collect::<Vec<_>>(),
            None,
            0.125,
        );
        for i in 0..3 {
            let qi: Vec<f32> = (0..hq)
                .flat_map(|h| q[(h * 3 + i) * dh..(h * 3 + i + 1) * dh].to_vec())
                .collect();
            let one = attend_rows(&qi, hq, &[&bufs[i].0], &[&bufs[i].1], None, 0.125);
            for h in 0..hq {
                assert_eq!(
                    one[h * dh..(h + 1) * dh],
                    all[(h * 3 + i) * dh..(h * 3 + i + 1) * dh]
                );
            }
        }
    }
}
