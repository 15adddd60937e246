//! A weight matrix as the forward uses it: `y = x · Wᵀ`, with `W` either a dense tensor or a
//! quantized [`QMatrix`] dequantized block by block inside the matmul, or a frozen weight of
//! either kind with a low-rank update ([`LowRank`], LoRA) applied as two thin matmuls.
//!
//! The quantized path is a custom op whose backward returns only the input gradient, like
//! [`ops::matmul_const`]: attribution never differentiates a weight. Neither direction keeps an
//! f32 copy of `W` alive past the op, so a quantized model's memory is its quantized size plus
//! activations.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::qmatrix::QMatrix;
use crate::model::kernels::{blas, few_rows, ops};

/// Up to this many input rows, the quantized matmul dequantizes small row blocks in parallel and
/// takes dot products against them while they sit in cache (decoding: one row per token).
const SMALL_BATCH: usize = 8;
/// Rows per block on the small-batch path.
const SMALL_BLOCK_ROWS: usize = 32;
/// Elements of `W` dequantized at a time on the large-batch path (4 MiB of f32): large enough
/// for an efficient gemm, small enough that a 49k-row unembedding never exists in f32 at once.
const LARGE_BLOCK_ELEMS: usize = 1 << 20;

/// A weight `W` of shape `[out, in]`.
#[derive(Clone, Debug)]
pub enum Linear {
    Dense(Tensor),
    Quant(QView),
    LowRank(Box<LowRank>),
}

/// `W = W₀ + s·B·A` with `W₀` frozen (`[out, in]`, dense or quantized), `A: [r, in]`,
/// `B: [out, r]`: LoRA's adapted weight. The forward is `x·W₀ᵀ + ((x·Aᵀ)·s)·Bᵀ`, so `W` never
/// exists in dense form and `W₀` stays shared with whoever else reads it (the frozen reference
/// model); when `A` and `B` are tracked (`Var`s), candle's matmul backward gives their
/// gradients, and `W₀` gets none.
#[derive(Clone, Debug)]
pub struct LowRank {
    pub base: Linear,
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

/// Rows `r0..r0+nr` and columns `c0..c0+nc` of a shared quantized matrix.
#[derive(Clone, Debug)]
pub struct QView {
    m: Arc<QMatrix>,
    r0: usize,
    nr: usize,
    c0: usize,
    nc: usize,
}

impl Linear {
    pub fn quantized(m: Arc<QMatrix>) -> Self {
        let (nr, nc) = (m.rows(), m.cols());
        Linear::Quant(QView {
            m,
            r0: 0,
            nr,
            c0: 0,
            nc,
        })
    }

    /// `base + scale·B·A` (see [`LowRank`]); `a: [r, in]` and `b: [out, r]` must fit `base`.
    pub fn low_rank(base: Linear, a: Tensor, b: Tensor, scale: f64) -> Result<Self> {
        let (out, inp) = base.dims()?;
        let ((ra, ia), (ob, rb)) = (a.dims2()?, b.dims2()?);
        if ia != inp || ob != out || ra != rb {
            candle_core::bail!(
                "low-rank factors A {:?} and B {:?} do not fit a weight of shape [{out}, {inp}]",
                a.dims(),
                b.dims()
            );
        }
        Ok(Linear::LowRank(Box::new(LowRank { base, a, b, scale })))
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Linear::Quant(_))
    }

    /// Whether a forward through this weight records a graph to the weight itself (a trained
    /// dense weight or trained low-rank factors).
    pub fn is_tracked(&self) -> bool {
        match self {
            Linear::Dense(w) => w.track_op(),
            Linear::Quant(_) => false,
            Linear::LowRank(l) => l.a.track_op() || l.b.track_op() || l.base.is_tracked(),
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Linear::Dense(w) => w.dims2(),
            Linear::Quant(v) => Ok((v.nr, v.nc)),
            Linear::LowRank(l) => l.base.dims(),
        }
    }

    /// `x · Wᵀ`: `[..., in]` → `[..., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out, inp) = self.dims()?;
        let dims = x.dims().to_vec();
        let Some((&last, lead)) = dims.split_last() else {
            candle_core::bail!("linear: input must have at least one dimension");
        };
        if last != inp {
            candle_core::bail!("linear: input has {last} features, the weight expects {inp}");
        }
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, inp))?;
        let y = match self {
            Linear::Dense(w) => {
                // Decoding's few untracked rows stream the weight ([`ops::matmul_const_t`]);
                // other products go to a CBLAS when one is loaded (`RLQ_BLAS`).
                let few = rows <= few_rows::MAX_ROWS && !x2.track_op() && !w.track_op();
                match if few { None } else { blas::linear_t(&x2, w)? } {
                    Some(y) => y,
                    // A trained weight (tuning) needs its own gradient: candle's matmul gives
                    // both. (Not as `(W·xᵀ)ᵀ`: that form's backward held gigabytes more in a
                    // GRPO step.)
                    None if w.track_op() => x2.matmul(&w.t()?)?,
                    None => ops::matmul_const_t(&x2, w)?,
                }
            }
            Linear::Quant(v) => {
                if !x.device().is_cpu() || x.dtype() != DType::F32 {
                    candle_core::bail!("quantized weights need f32 inputs on the CPU");
                }
                let x2 = x2.contiguous()?;
                if x2.track_op() {
                    x2.apply_op1(QLinearOp { view: v.clone() })?
                } else {
                    v.matmul_t(&x2)?
                }
            }
            Linear::LowRank(l) => {
                // The scale is applied to the thin `[rows, r]` product, so no extra `[rows, out]`
                // tensor is kept for the backward.
                let xa = (matmul_maybe_const(&x2, &l.a.t()?)? * l.scale)?;
                (l.base.forward(&x2)? + matmul_maybe_const(&xa, &l.b.t()?)?)?
            }
        };
        let mut out_dims = lead.to_vec();
        out_dims.push(out);
        y.reshape(out_dims)
    }

    /// `g · W`: the gradient of `x · Wᵀ` with respect to `x`, for `g: [n, out]` (no graph).
    pub fn input_grad(&self, g: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Dense(w) => match blas::product(g, blas::Op::N, w, blas::Op::N)? {
                Some(d) => Ok(d),
                None => g.detach().matmul(&w.detach()),
            },
            Linear::Quant(v) => v.matmul(&g.detach()),
            Linear::LowRank(l) => {
                let gb = (g.detach().matmul(&l.b.detach())? * l.scale)?;
                l.base.input_grad(g)? + gb.matmul(&l.a.detach())?
            }
        }
    }

    /// Rows `r0..r0+n` of `W` (outputs), e.g. one head's share of a projection.
    pub fn rows(&self, r0: usize, n: usize) -> Result<Linear> {
        match self {
            Linear::Dense(w) => Ok(Linear::Dense(w.narrow(0, r0, n)?)),
            Linear::Quant(v) => {
                if r0 + n > v.nr {
                    candle_core::bail!("linear: rows {r0}..{} out of {}", r0 + n, v.nr);
                }
                Ok(Linear::Quant(QView {
                    r0: v.r0 + r0,
                    nr: n,
                    ..v.clone()
                }))
            }
            Linear::LowRank(l) => Linear::low_rank(
                l.base.rows(r0, n)?,
                l.a.clone(),
                l.b.narrow(0, r0, n)?,
                l.scale,
            ),
        }
    }

    /// Columns `c0..c0+n` of `W` (inputs), e.g. the part of o_proj that reads one head.
    pub fn cols(&self, c0: usize, n: usize) -> Result<Linear> {
        match self {
            Linear::Dense(w) => Ok(Linear::Dense(w.narrow(1, c0, n)?)),
            Linear::Quant(v) => {
                if c0 + n > v.nc {
                    candle_core::bail!("linear: columns {c0}..{} out of {}", c0 + n, v.nc);
                }
                Ok(Linear::Quant(QView {
                    c0: v.c0 + c0,
                    nc: n,
                    ..v.clone()
                }))
            }
            Linear::LowRank(l) => Linear::low_rank(
                l.base.cols(c0, n)?,
                l.a.narrow(1, c0, n)?,
                l.b.clone(),
                l.scale,
            ),
        }
    }

    /// Rows of `W` picked by index: an embedding lookup, `[ids.len(), in]`.
    pub fn gather_rows(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Linear::Dense(w) => w.index_select(&Tensor::new(ids, device)?, 0),
            Linear::Quant(v) => {
                if let Some(bad) = ids.iter().find(|&&i| i as usize >= v.nr) {
                    candle_core::bail!("index {bad} out of range for {} rows", v.nr);
                }
                let ids: Vec<u32> = ids.iter().map(|&i| i + v.r0 as u32).collect();
                let rows = v.m.gather_rows(&ids)?;
                let rows = if v.c0 == 0 && v.nc == v.m.cols() {
                    rows
                } else {
                    rows.narrow(1, v.c0, v.nc)?.contiguous()?
                };
                rows.to_device(device)
            }
            Linear::LowRank(l) => {
                let b = l.b.index_select(&Tensor::new(ids, l.b.device())?, 0)?;
                l.base.gather_rows(ids, device)? + (b.matmul(&l.a)? * l.scale)?.to_device(device)?
            }
        }
    }

    /// `W` as a dense tensor (the model's dtype for dense weights, f32 for quantized ones; a
    /// low-rank weight merged, `W₀ + (B·A)·s`, without a graph).
    pub fn to_dense(&self) -> Result<Tensor> {
        match self {
            Linear::Dense(w) => Ok(w.clone()),
            Linear::Quant(v) => v.dense_block(0, v.nr),
            Linear::LowRank(l) => {
                l.base.to_dense()?.detach() + (l.b.detach().matmul(&l.a.detach())? * l.scale)?
            }
        }
    }

    /// The same weight for another compute dtype: quantized weights stay quantized for f32 and
    /// are dequantized into dense tensors for any other dtype (e.g. f64 checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Linear> {
        match self {
            Linear::Dense(w) => Ok(Linear::Dense(w.to_dtype(dtype)?)),
            Linear::Quant(_) if dtype == DType::F32 => Ok(self.clone()),
            Linear::Quant(_) => Ok(Linear::Dense(self.to_dense()?.to_dtype(dtype)?)),
            Linear::LowRank(l) => Linear::low_rank(
                l.base.to_dtype(dtype)?,
                l.a.to_dtype(dtype)?,
                l.b.to_dtype(dtype)?,
                l.scale,
            ),
        }
    }
}

/// `x · w`, differentiable in `w` only when `w` is tracked (a trained factor); otherwise through
/// [`ops::matmul_const`], so no gradient is formed for a frozen `w`.
fn matmul_maybe_const(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if w.track_op() {
        x.matmul(w)
    } else {
        ops::matmul_const(x, w)
    }
}

impl QView {
    /// Rows `r..r+n` of the view as a contiguous f32 tensor `[n, nc]`.
    fn dense_block(&self, r: usize, n: usize) -> Result<Tensor> {
        let block = self.m.dequantize_rows(self.r0 + r, n)?;
        if self.c0 == 0 && self.nc == self.m.cols() {
            Ok(block)
        } else {
            block.narrow(1, self.c0, self.nc)?.contiguous()
        }
    }

    /// Row blocks `(start, len)` covering the view, `rows_per_block` at a time.
    fn blocks(&self, rows_per_block: usize) -> Vec<(usize, usize)> {
        let step = rows_per_block.max(1);
        (0..self.nr)
            .step_by(step)
            .map(|r| (r, step.min(self.nr - r)))
            .collect()
    }

    fn large_block_rows(&self) -> usize {
        (LARGE_BLOCK_ELEMS / self.m.cols().max(1)).max(1)
    }

    /// `x · Wᵀ` for contiguous f32 `x: [n, nc]` → `[n, nr]`.
    fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        let (n, k) = x.dims2()?;
        if k != self.nc {
            candle_core::bail!(
                "linear: input has {k} features, the weight expects {}",
                self.nc
            );
        }
        if n <= SMALL_BATCH {
            return self.matmul_t_small(x);
        }
        let parts = self
            .blocks(self.large_block_rows())
            .into_iter()
            .map(|(r, len)| x.matmul(&self.dense_block(r, len)?.t()?))
            .collect::<Result<Vec<_>>>()?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        Tensor::cat(&parts, 1)
    }

    /// Few input rows: dot products against small dequantized row blocks, blocks in parallel.
    fn matmul_t_small(&self, x: &Tensor) -> Result<Tensor> {
        let (n, k) = x.dims2()?;
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let blocks = self.blocks(SMALL_BLOCK_ROWS);
        let parts = blocks
            .par_iter()
            .map(|&(r, len)| -> Result<Vec<f32>> {
                // Whole rows decoded straight into a buffer; the view's columns are a slice of
                // each row, so no tensor and no column copy is made on this hot path.
                let cols = self.m.cols();
                let mut w = vec![0f32; len * cols];
                self.m.dequantize_rows_into(self.r0 + r, len, &mut w)?;
                let mut out = vec![0f32; n * len];
                for i in 0..n {
                    let xi = &xs[i * k..(i + 1) * k];
                    for j in 0..len {
                        let row = j * cols + self.c0;
                        out[i * len + j] = dot(xi, &w[row..row + k]);
                    }
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut y = vec![0f32; n * self.nr];
        for (&(r, len), part) in blocks.iter().zip(&parts) {
            for i in 0..n {
                y[i * self.nr + r..i * self.nr + r + len]
                    .copy_from_slice(&part[i * len..(i + 1) * len]);
            }
        }
        Tensor::from_vec(y, (n, self.nr), &Device::Cpu)
    }

    /// `g · W` for `g: [n, nr]` → `[n, nc]` (the input gradient of `x · Wᵀ`).
    fn matmul(&self, g: &Tensor) -> Result<Tensor> {
        let g = g.contiguous()?;
        let mut acc: Option<Tensor> = None;
        for (r, len) in self.blocks(self.large_block_rows()) {
            let part = g.narrow(1, r, len)?.matmul(&self.dense_block(r, len)?)?;
            acc = Some(match acc {
                None => part,
                Some(a) => (a + part)?,
            });
        }
        match acc {
            Some(a) => Ok(a),
            None => Tensor::zeros((g.dim(0)?, self.nc), g.dtype(), g.device()),
        }
    }
}

/// f32 dot product with eight independent partial sums, so the compiler can vectorize it; with
/// AVX2 where the CPU has it. Both versions do the same additions in the same order (Rust never
/// contracts into FMA), so the result does not depend on which one ran.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// The differentiable quantized matmul: forward `x · Wᵀ`, backward `g · W` for `x` only.
struct QLinearOp {
    view: QView,
}

impl CustomOp1 for QLinearOp {
    fn name(&self) -> &'static str {
        "qlinear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = ops::cpu_tensor(storage, layout)?;
        let y = self.view.matmul_t(&x)?;
        ops::into_cpu_storage(&y)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.view.matmul(grad)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Var;

    fn quant(rows: usize, cols: usize) -> (Linear, Linear) {
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let t = Tensor::from_vec(vals, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q4_1).unwrap();
        let dense = Linear::Dense(q.dequantize(&Device::Cpu).unwrap());
        (Linear::quantized(Arc::new(QMatrix::new(q).unwrap())), dense)
    }

    fn input(n: usize, k: usize) -> Tensor {
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.4)
            .collect();
        Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap()
    }

    fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        let d = d.max(0).unwrap().to_scalar::<f32>().unwrap();
        let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        d / s.to_scalar::<f32>().unwrap()
    }

    // Quantized and dense weights hold the same f32 values; only the summation order of the
    // products differs, so results agree to f32 rounding over a 64..256-term sum (1e-5 relative).
    #[test]
    fn quantized_matmul_matches_dense_forward_and_backward() {
        let (q, d) = quant(40, 256);
        for n in [1, 3, 8, 9, 50] {
            for (qv, dv) in [
                (q.clone(), d.clone()),
                (q.rows(8, 24).unwrap(), d.rows(8, 24).unwrap()),
                (q.cols(64, 64).unwrap(), d.cols(64, 64).unwrap()),
            ] {
                let (_, k) = qv.dims().unwrap();
                let x = Var::from_tensor(&input(n, k)).unwrap();
                let yq = qv.forward(x.as_tensor()).unwrap();
                let yd = dv.forward(x.as_tensor()).unwrap();
                assert!(rel_diff(&yq, &yd) < 1e-5, "forward n={n}");
                let w = input(n, qv.dims().unwrap().0);
                let gq = (yq * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let gd = (yd * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let (gq, gd) = (gq.get(&x).unwrap(), gd.get(&x).unwrap());
                assert!(rel_diff(gq, gd) < 1e-5, "backward n={n}");
            }
        }
    }

    #[test]
    fn large_matrices_are_processed_in_row_blocks() {
        // 4100 rows × 512 columns is more than one large block: the split must be seamless.
        let (q, d) = quant(4100, 512);
        let x = Var::from_tensor(&input(12, 512)).unwrap();
        let yq = q.forward(x.as_tensor()).unwrap();
        let yd = d.forward(x.as_tensor()).unwrap();
        assert!(rel_diff(&yq, &yd) < 1e-5);
        let w = input(12, 4100);
        let gq = (yq * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gd = (yd * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(rel_diff(gq.get(&x).unwrap(), gd.get(&x).unwrap()) < 1e-5);
    }

    #[test]
    fn views_and_lookups_check_their_bounds() {
        let (q, d) = quant(8, 64);
        assert!(q.rows(4, 5).is_err());
        assert!(q.cols(32, 64).is_err());
        assert!(q.forward(&input(2, 32)).is_err());
        let ids = [3u32, 0, 7];
        let a = q.gather_rows(&ids, &Device::Cpu).unwrap();
        let b = d.gather_rows(&ids, &Device::Cpu).unwrap();
        assert_eq!(rel_diff(&a, &b), 0.0);
        assert!(q.gather_rows(&[8], &Device::Cpu).is_err());
        let f64w = q.to_dtype(DType::F64).unwrap();
        assert!(!f64w.is_quantized());
        assert_eq!(f64w.to_dense().unwrap().dtype(), DType::F64);
    }
}
