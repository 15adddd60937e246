//! Fused CPU kernels, with hand-written backward passes, for the differentiable building blocks
//! of `ops`: RMSNorm, softmax, log-softmax, SiLU, GELU (tanh) and rotary embeddings.
//!
//! Each op is one `CustomOp1` whose forward runs over raw f32/f64 slices and whose backward is a
//! second kernel (applied without a backward of its own, so the backward builds no graph).
//! Compared with the compositions in `ops` (kept there as `*_composed`, the reference for
//! `tests/ops_grad.rs`), autograd stores only the op's input or output instead of every
//! intermediate, and each op is one or two passes over memory instead of five to ten.
//!
//! Reductions are accumulated in f64 whatever the dtype; elementwise arithmetic is in the tensor's
//! dtype in the same order as the composition, so f64 results agree with it up to rounding.
//!
//! Callers (`ops`) only use these on CPU tensors of dtype f32 or f64, and fall back to the
//! compositions elsewhere.

use std::sync::Arc;

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape,
    Tensor, WithDType, D,
};

/// The float types the kernels run on (f32, f64).
pub(crate) trait Real: WithDType + std::ops::Neg<Output = Self> {
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

/// Whether the fused kernels can run on `x` (CPU, f32 or f64).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&T::cpu_storage_as_slice(s)?[a..b]),
        None => bail!("fused op: expected a contiguous input"),
    }
}

fn last_dim(shape: &Shape) -> Result<usize> {
    match shape.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!("fused op: expected a non-empty last dimension, got {shape:?}"),
    }
}

/// A one-input kernel: `x` (contiguous, row-major) of `shape` to an output of the same shape.
trait Kernel1: Sync {
    fn run<T: Real>(&self, x: &[T], shape: &Shape) -> Result<Vec<T>>;
    /// How many trailing dims make one independent unit (an output unit depends only on the
    /// same unit of the input): 0 for elementwise kernels, 1 for row-wise ones; `None` when
    /// the input must not be split.
    fn unit_dims(&self) -> Option<usize> {
        None
    }
}

/// A two-input kernel over two same-shaped contiguous tensors (a gradient and a saved tensor).
trait Kernel2: Sync {
    fn run<T: Real>(&self, a: &[T], b: &[T], shape: &Shape) -> Result<Vec<T>>;
    /// As [`Kernel1::unit_dims`], for both inputs.
    fn unit_dims(&self) -> Option<usize> {
        None
    }
}

/// Elements per task when a kernel's input is split over rayon's threads; inputs under twice
/// this run on the calling thread (a decode step's few rows gain nothing from a split). A
/// training step's norms, activations and rotations over ~1000 rows were single-threaded:
/// the second core idled through them.
const PAR_ELEMS: usize = 1 << 16;

/// How an input of `shape` splits for a kernel with `unit_dims`: the elements of one piece
/// (whole units, about [`PAR_ELEMS`]) and the unit's dims (the trailing ones, for
/// [`piece_shape`]); `None` when the input stays whole. Each unit's output is computed by the same arithmetic either
/// way, so a split result equals the whole one bit for bit, whatever the thread count.
fn split_of(shape: &Shape, unit_dims: Option<usize>) -> Option<(usize, Vec<usize>)> {
    let dims = shape.dims();
    let u = unit_dims.filter(|&u| u <= dims.len())?;
    let tail = dims[dims.len() - u..].to_vec();
    let unit: usize = tail.iter().product();
    let len = shape.elem_count();
    if unit == 0 || len < 2 * PAR_ELEMS || !len.is_multiple_of(unit) {
        return None;
    }
    Some(((PAR_ELEMS / unit).max(1) * unit, tail))
}

/// The shape of a piece of `n` elements: whole units of dims `tail` (never empty units:
/// [`split_of`] checked).
fn piece_shape(n: usize, tail: &[usize]) -> Shape {
    let unit: usize = tail.iter().product();
    let mut dims = vec![n / unit];
    dims.extend_from_slice(tail);
    Shape::from(dims)
}

/// `k` on `x`, in pieces of whole units on rayon's threads when [`split_of`] allows.
fn run1<K: Kernel1, T: Real>(k: &K, x: &[T], shape: &Shape) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let Some((per, tail)) = split_of(shape, k.unit_dims()) else {
        return k.run(x, shape);
    };
    let parts = x
        .par_chunks(per)
        .map(|c| k.run(c, &piece_shape(c.len(), &tail)))
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.concat())
}

/// [`run1`] for a two-input kernel.
fn run2<K: Kernel2, T: Real>(k: &K, a: &[T], b: &[T], shape: &Shape) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let Some((per, tail)) = split_of(shape, k.unit_dims()) else {
        return k.run(a, b, shape);
    };
    if a.len() != b.len() {
        bail!("fused op: inputs of {} and {} values", a.len(), b.len());
    }
    let parts = a
        .par_chunks(per)
        .zip(b.par_chunks(per))
        .map(|(ca, cb)| k.run(ca, cb, &piece_shape(ca.len(), &tail)))
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.concat())
}

fn fwd1<K: Kernel1>(k: &K, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let shape = l.shape().clone();
    let out = match s {
        CpuStorage::F32(_) => f32::to_cpu_storage_owned(run1::<K, f32>(k, slice(s, l)?, &shape)?),
        CpuStorage::F64(_) => f64::to_cpu_storage_owned(run1::<K, f64>(k, slice(s, l)?, &shape)?),
        _ => bail!("fused op: unsupported dtype {:?}", s.dtype()),
    };
    Ok((out, shape))
}

fn fwd2<K: Kernel2>(
    k: &K,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let shape = l1.shape().clone();
    if l2.shape() != &shape {
        bail!("fused op: shapes {:?} and {:?} differ", shape, l2.shape());
    }
    let out = match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => {
            f32::to_cpu_storage_owned(run2::<K, f32>(k, slice(s1, l1)?, slice(s2, l2)?, &shape)?)
        }
        (CpuStorage::F64(_), CpuStorage::F64(_)) => {
            f64::to_cpu_storage_owned(run2::<K, f64>(k, slice(s1, l1)?, slice(s2, l2)?, &shape)?)
        }
        _ => bail!(
            "fused op: unsupported dtypes {:?}, {:?}",
            s1.dtype(),
            s2.dtype()
        ),
    };
    Ok((out, shape))
}

/// Apply a backward kernel to `(grad, saved)`; the result carries no graph.
fn bwd2<C: CustomOp2>(grad: &Tensor, saved: &Tensor, c: &C) -> Result<Option<Tensor>> {
    let g = grad.contiguous()?;
    let s = saved.contiguous()?;
    Ok(Some(g.apply_op2_no_bwd(&s, c)?))
}

macro_rules! custom_op1 {
    ($ty:ty, $name:literal, |$self_:ident, $arg:ident, $res:ident, $grad:ident| $bwd:expr) => {
        impl CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
                fwd1(self, s, l)
            }
            fn bwd(&self, $arg: &Tensor, $res: &Tensor, $grad: &Tensor) -> Result<Option<Tensor>> {
                let $self_ = self;
                $bwd
            }
        }
    };
}

macro_rules! custom_op2_no_bwd {
    ($ty:ty, $name:literal) => {
        impl CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                s1: &CpuStorage,
                l1: &Layout,
                s2: &CpuStorage,
                l2: &Layout,
            ) -> Result<(CpuStorage, Shape)> {
                fwd2(self, s1, l1, s2, l2)
            }
        }
    };
}

/// A small constant tensor (weight, rope table) as exact f64 values, converted back to the
/// kernel's dtype without loss.
fn const_f64(t: &Tensor) -> Result<Arc<Vec<f64>>> {
    Ok(Arc::new(
        t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
    ))
}

fn to_t<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// RMSNorm with a constant weight: `y = x · inv · w`, `inv = (mean(x²) + eps)^(-1/2)` per row.
/// `w` already includes the offset. Only `x` is differentiated.
struct RmsNorm {
    w: Arc<Vec<f64>>,
    eps: f64,
}

/// Backward of `RmsNorm` on `(grad, x)`:
/// `dx_j = inv · g_j · w_j − x_j · inv³ · Σ_i g_i w_i x_i / n`.
struct RmsNormBwd {
    w: Arc<Vec<f64>>,
    eps: f64,
}

fn row_inv<T: Real>(row: &[T], eps: f64) -> f64 {
    let ss: f64 = row
        .iter()
        .map(|&v| {
            let v = v.to_f64();
            v * v
        })
        .sum();
    1.0 / (ss / row.len() as f64 + eps).sqrt()
}

impl Kernel1 for RmsNorm {
    fn run<T: Real>(&self, x: &[T], shape: &Shape) -> Result<Vec<T>> {
        let n = last_dim(shape)?;
        if self.w.len() != n {
            bail!(
                "rms_norm: weight has {} elements, last dim is {n}",
                self.w.len()
            );
        }
        let w: Vec<T> = to_t(&self.w);
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(n) {
            let inv = T::from_f64(row_inv(row, self.eps));
            out.extend(row.iter().zip(&w).map(|(&v, &wi)| v * inv * wi));
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(1)
    }
}

impl Kernel2 for RmsNormBwd {
    fn run<T: Real>(&self, g: &[T], x: &[T], shape: &Shape) -> Result<Vec<T>> {
        let n = last_dim(shape)?;
        let w = &self.w[..];
        let mut out = Vec::with_capacity(x.len());
        for (gr, xr) in g.chunks_exact(n).zip(x.chunks_exact(n)) {
            let inv = row_inv(xr, self.eps);
            let s: f64 = gr
                .iter()
                .zip(xr)
                .zip(w)
                .map(|((&gi, &xi), &wi)| gi.to_f64() * wi * xi.to_f64())
                .sum();
            let k = inv * inv * inv * s / n as f64;
            out.extend(
                gr.iter()
                    .zip(xr)
                    .zip(w)
                    .map(|((&gi, &xi), &wi)| T::from_f64(inv * gi.to_f64() * wi - xi.to_f64() * k)),
            );
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(1)
    }
}

custom_op1!(RmsNorm, "fused-rms-norm", |s, arg, _res, grad| bwd2(
    grad,
    arg,
    &RmsNormBwd {
        w: s.w.clone(),
        eps: s.eps
    }
));
custom_op2_no_bwd!(RmsNormBwd, "fused-rms-norm-bwd");

/// `x / sqrt(mean(x²) + eps) * (w + offset)` over the last dim; `weight` is treated as a
/// constant (no gradient).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, offset: f64) -> Result<Tensor> {
    let w = if offset != 0.0 {
        (weight + offset)?
    } else {
        weight.clone()
    };
    if w.dtype() != x.dtype() {
        bail!(
            "rms_norm: weight dtype {:?} differs from input dtype {:?}",
            w.dtype(),
            x.dtype()
        );
    }
    x.contiguous()?.apply_op1(RmsNorm {
        w: const_f64(&w)?,
        eps,
    })
}

/// RMSNorm's backward on its own, for a hand-written layer backward (`forward::tape`): the
/// gradients at `x` and at the weight of `y = x · inv · (w + offset)` (`w_eff` = `w + offset`,
/// `[n]`), from the gradient `grad` at `y` (both `[..., n]`, contiguous CPU f32/f64). The
/// weight's, `Σ_rows g · x · inv`, is accumulated in f64 over the rows.
pub(crate) fn rms_norm_backward(
    grad: &Tensor,
    x: &Tensor,
    w_eff: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let bw = RmsNormBwd {
        w: const_f64(w_eff)?,
        eps,
    };
    let dx = some(bwd2(grad, x, &bw)?)?;
    let n = last_dim(x.shape())?;
    let (g, xc) = (grad.contiguous()?, x.contiguous()?);
    let mut dw = vec![0f64; n];
    /// Partial sums over fixed blocks of rows on rayon's threads, added in block order: the
    /// same bits whatever the thread count.
    fn acc<T: Real>(g: &[T], x: &[T], n: usize, eps: f64, dw: &mut [f64]) {
        use rayon::prelude::*;
        let per = (PAR_ELEMS / n).max(1) * n;
        let partials: Vec<Vec<f64>> = g
            .par_chunks(per)
            .zip(x.par_chunks(per))
            .map(|(gb, xb)| {
                let mut part = vec![0f64; n];
                for (gr, xr) in gb.chunks_exact(n).zip(xb.chunks_exact(n)) {
                    let inv = row_inv(xr, eps);
                    for ((d, &gi), &xi) in part.iter_mut().zip(gr).zip(xr) {
                        *d += gi.to_f64() * xi.to_f64() * inv;
                    }
                }
                part
            })
            .collect();
        for part in partials {
            for (d, p) in dw.iter_mut().zip(part) {
                *d += p;
            }
        }
    }
    match x.dtype() {
        DType::F32 => acc(
            &g.flatten_all()?.to_vec1::<f32>()?,
            &xc.flatten_all()?.to_vec1::<f32>()?,
            n,
            eps,
            &mut dw,
        ),
        DType::F64 => acc(
            &g.flatten_all()?.to_vec1::<f64>()?,
            &xc.flatten_all()?.to_vec1::<f64>()?,
            n,
            eps,
            &mut dw,
        ),
        other => bail!("rms_norm_backward: unsupported dtype {other:?}"),
    }
    let dw = Tensor::from_vec(dw, n, x.device())?.to_dtype(x.dtype())?;
    Ok((dx, dw))
}

/// RMSNorm of `h + off` where `h: [1, T, d]` is broadcast over `off: [n, T, d]`: a residual
/// copy with its destination offset, normalised. The sum is recomputed in the backward instead
/// of being stored (it is never needed otherwise): one `[n, T, d]` tensor less per destination.
struct RmsNormOfSum {
    w: Arc<Vec<f64>>,
    eps: f64,
}

impl CustomOp2 for RmsNormOfSum {
    fn name(&self) -> &'static str {
        "fused-rms-norm-of-sum"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn sum<T: Real>(h: &[T], off: &[T]) -> Vec<T> {
            let mut x = off.to_vec();
            for chunk in x.chunks_exact_mut(h.len()) {
                for (a, &b) in chunk.iter_mut().zip(h) {
                    *a += b;
                }
            }
            x
        }
        let shape = l2.shape().clone();
        if l1.shape().elem_count() == 0
            || !shape.elem_count().is_multiple_of(l1.shape().elem_count())
        {
            bail!(
                "rms_norm_of_sum: {:?} does not broadcast to {shape:?}",
                l1.shape()
            );
        }
        let norm = RmsNorm {
            w: self.w.clone(),
            eps: self.eps,
        };
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let x = sum::<f32>(slice(s1, l1)?, slice(s2, l2)?);
                f32::to_cpu_storage_owned(run1(&norm, &x, &shape)?)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let x = sum::<f64>(slice(s1, l1)?, slice(s2, l2)?);
                f64::to_cpu_storage_owned(run1(&norm, &x, &shape)?)
            }
            _ => bail!("rms_norm_of_sum: unsupported dtypes"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        h: &Tensor,
        off: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let x = h.detach().broadcast_add(&off.detach())?;
        let bw = RmsNormBwd {
            w: self.w.clone(),
            eps: self.eps,
        };
        let dx = some(bwd2(grad, &x, &bw)?)?;
        let dh = dx.sum_keepdim(0)?.reshape(h.shape())?;
        Ok((Some(dh), Some(dx)))
    }
}

/// [`rms_norm`] of `h + off`, `h: [1, T, d]` broadcast over `off: [n, T, d]`.
pub fn rms_norm_of_sum(
    h: &Tensor,
    off: &Tensor,
    weight: &Tensor,
    eps: f64,
    offset: f64,
) -> Result<Tensor> {
    let w = if offset != 0.0 {
        (weight + offset)?
    } else {
        weight.clone()
    };
    let (n, t, d) = off.dims3()?;
    if h.dims() != [1, t, d] || w.dims() != [d] || w.dtype() != h.dtype() || n == 0 {
        bail!(
            "rms_norm_of_sum: shapes {:?} + {:?} with weight {:?}",
            h.dims(),
            off.dims(),
            w.dims()
        );
    }
    h.contiguous()?.apply_op2(
        &off.contiguous()?,
        RmsNormOfSum {
            w: const_f64(&w)?,
            eps,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Softmax and log-softmax

/// Softmax over the last dim (max subtracted).
struct Softmax;
/// Backward on `(grad, y)`: `dx = y · (g − Σ g·y)`.
struct SoftmaxBwd;

fn row_max<T: Real>(row: &[T]) -> T {
    let mut m = row[0];
    for &v in &row[1..] {
        if v > m {
            m = v;
        }
    }
    m
}

impl Kernel1 for Softmax {
    fn run<T: Real>(&self, x: &[T], shape: &Shape) -> Result<Vec<T>> {
        let n = last_dim(shape)?;
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(n) {
            let m = row_max(row);
            let start = out.len();
            let mut s = 0f64;
            for &v in row {
                let e = (v - m).exp();
                s += e.to_f64();
                out.push(e);
            }
            let s = T::from_f64(s);
            for o in &mut out[start..] {
                *o /= s;
            }
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(1)
    }
}

impl Kernel2 for SoftmaxBwd {
    fn run<T: Real>(&self, g: &[T], y: &[T], shape: &Shape) -> Result<Vec<T>> {
        let n = last_dim(shape)?;
        let mut out = Vec::with_capacity(y.len());
        for (gr, yr) in g.chunks_exact(n).zip(y.chunks_exact(n)) {
            let dot: f64 = gr
                .iter()
                .zip(yr)
                .map(|(&a, &b)| a.to_f64() * b.to_f64())
                .sum();
            let dot = T::from_f64(dot);
            out.extend(gr.iter().zip(yr).map(|(&gi, &yi)| yi * (gi - dot)));
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(1)
    }
}

custom_op1!(Softmax, "fused-softmax", |_s, _arg, res, grad| bwd2(
    grad,
    res,
    &SoftmaxBwd
));
custom_op2_no_bwd!(SoftmaxBwd, "fused-softmax-bwd");

pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// The softmax backward on its own, `dx = y · (g − Σ g·y)` for output `y` and gradient `g`
/// (for ops that recompute the softmax in their backward instead of storing it).
pub(crate) fn softmax_backward(grad: &Tensor, y: &Tensor) -> Result<Tensor> {
    some(bwd2(grad, y, &SoftmaxBwd)?)
}

/// Log-softmax over the last dim: `y = (x − m) − ln Σ exp(x − m)`.
struct LogSoftmax;
/// Backward on `(grad, y)`: `dx = g − exp(y) · Σ g`.
struct LogSoftmaxBwd;

impl Kernel1 for LogSoftmax {
    fn run<T: Real>(&self, x: &[T], shape: &Shape) -> Result<Vec<T>> {
        let n = last_dim(shape)?;
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(n) {
            let m = row_max(row);
            let s: f64 = row.iter().map(|&v| (v - m).exp().to_f64()).sum();
            let lse = T::from_f64(s.ln());
            out.extend(row.iter().map(|&v| (v - m) - lse));
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(1)
    }
}

impl Kernel2 for LogSoftmaxBwd {
    fn run<T: Real>(&self, g: &[T], y: &[T], shape: &Shape) -> Result<Vec<T>> {
        let n = last_dim(shape)?;
        let mut out = Vec::with_capacity(y.len());
        for (gr, yr) in g.chunks_exact(n).zip(y.chunks_exact(n)) {
            let sg = T::from_f64(gr.iter().map(|&v| v.to_f64()).sum::<f64>());
            out.extend(gr.iter().zip(yr).map(|(&gi, &yi)| gi - yi.exp() * sg));
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(1)
    }
}

custom_op1!(LogSoftmax, "fused-log-softmax", |_s, _arg, res, grad| bwd2(
    grad,
    res,
    &LogSoftmaxBwd
));
custom_op2_no_bwd!(LogSoftmaxBwd, "fused-log-softmax-bwd");

pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(LogSoftmax)
}

/// The log-probability of one chosen token per row: `y_r = log_softmax(x_r)[id_r]`, `[R, V] → [R]`.
/// Autograd keeps only the logits (the op's input); the backward recomputes each row's
/// softmax: `dx_r = g_r · (onehot(id_r) − softmax(x_r))`. A log-softmax followed by a gather
/// holds the `[R, V]` log-probabilities and builds two more `[R, V]` tensors in its backward
/// (the gather's scatter and the log-softmax's gradient); for a tuning step's hundreds of
/// answer tokens over a 49k vocabulary those were a few hundred MB. The values and gradients
/// are those of `log_softmax_last_dim` then `gather`, bit for bit: each element is computed by
/// the same arithmetic in the same order. Rows run in parallel.
struct LogSoftmaxPick {
    ids: Arc<Vec<u32>>,
}
/// Backward on `(grad [R], x [R, V])`.
struct LogSoftmaxPickBwd {
    ids: Arc<Vec<u32>>,
}

/// Rows of `[R, V]` `x` with one id per row, checked.
fn pick_rows(ids: &[u32], shape: &Shape) -> Result<(usize, usize)> {
    let (r, v) = match shape.dims() {
        [r, v] if *v > 0 => (*r, *v),
        d => bail!("log_softmax_pick: expected [rows, vocab] logits, got {d:?}"),
    };
    if ids.len() != r {
        bail!("log_softmax_pick: {} ids for {r} rows", ids.len());
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
        bail!("log_softmax_pick: id {bad} outside the {v} columns");
    }
    Ok((r, v))
}

/// `(m, lse)` of a row, as the log-softmax kernel forms them: `y_i = (x_i − m) − lse`.
fn row_lse<T: Real>(row: &[T]) -> (T, T) {
    let m = row_max(row);
    let s: f64 = row.iter().map(|&v| (v - m).exp().to_f64()).sum();
    (m, T::from_f64(s.ln()))
}

impl LogSoftmaxPick {
    fn run<T: Real>(&self, x: &[T], shape: &Shape) -> Result<Vec<T>> {
        use rayon::prelude::*;
        let (_, v) = pick_rows(&self.ids, shape)?;
        Ok(x.par_chunks_exact(v)
            .zip(self.ids.par_iter())
            .map(|(row, &id)| {
                let (m, lse) = row_lse(row);
                (row[id as usize] - m) - lse
            })
            .collect())
    }
}

impl LogSoftmaxPickBwd {
    fn run<T: Real>(&self, g: &[T], x: &[T], shape: &Shape) -> Result<Vec<T>> {
        use rayon::prelude::*;
        let (_, v) = pick_rows(&self.ids, shape)?;
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_exact_mut(v)
            .zip(x.par_chunks_exact(v))
            .zip(g.par_iter().zip(self.ids.par_iter()))
            .for_each(|((o, row), (&gr, &id))| {
                let (m, lse) = row_lse(row);
                // The log-softmax backward's `g_i − exp(y_i)·Σg` with g zero but at `id`.
                for (oi, &xi) in o.iter_mut().zip(row) {
                    *oi = T::zero() - ((xi - m) - lse).exp() * gr;
                }
                o[id as usize] = gr - ((row[id as usize] - m) - lse).exp() * gr;
            });
        Ok(out)
    }
}

impl CustomOp1 for LogSoftmaxPick {
    fn name(&self) -> &'static str {
        "fused-log-softmax-pick"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = l.shape().clone();
        let out = match s {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(self.run::<f32>(slice(s, l)?, &shape)?),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(self.run::<f64>(slice(s, l)?, &shape)?),
            _ => bail!("fused op: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, Shape::from(self.ids.len())))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = LogSoftmaxPickBwd {
            ids: self.ids.clone(),
        };
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&arg.contiguous()?, &op)?,
        ))
    }
}

impl CustomOp2 for LogSoftmaxPickBwd {
    fn name(&self) -> &'static str {
        "fused-log-softmax-pick-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = l2.shape().clone();
        if l1.shape().dims() != [self.ids.len()] {
            bail!(
                "log_softmax_pick backward: gradient of shape {:?}",
                l1.shape()
            );
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => f32::to_cpu_storage_owned(
                self.run::<f32>(slice(s1, l1)?, slice(s2, l2)?, &shape)?,
            ),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => f64::to_cpu_storage_owned(
                self.run::<f64>(slice(s1, l1)?, slice(s2, l2)?, &shape)?,
            ),
            _ => bail!(
                "fused op: unsupported dtypes {:?}, {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((out, shape))
    }
}

/// [`log_softmax_pick`]'s backward on its own: the gradient at the logits `x` (`[R, V]`) from
/// the gradient `grad` (`[R]`) at the picked log-probabilities, no graph.
pub(crate) fn log_softmax_pick_backward(grad: &Tensor, x: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let op = LogSoftmaxPickBwd {
        ids: Arc::new(ids.to_vec()),
    };
    grad.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &op)
}

/// `log_softmax(x)[r, ids[r]]` for each row of `[R, V]` logits: `[R]`.
pub fn log_softmax_pick(x: &Tensor, ids: &[u32]) -> Result<Tensor> {
    x.contiguous()?.apply_op1(LogSoftmaxPick {
        ids: Arc::new(ids.to_vec()),
    })
}

// ---------------------------------------------------------------------------------------------
// Activations

/// SiLU `x · σ(x)`, `σ(x) = 1 / (1 + exp(−x))`.
struct Silu;
/// Backward on `(grad, x)`: `dx = g · σ · (1 + x · (1 − σ))`.
struct SiluBwd;

impl Kernel1 for Silu {
    fn run<T: Real>(&self, x: &[T], _shape: &Shape) -> Result<Vec<T>> {
        let one = T::one();
        Ok(x.iter().map(|&v| v * (one / ((-v).exp() + one))).collect())
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(0)
    }
}

impl Kernel2 for SiluBwd {
    fn run<T: Real>(&self, g: &[T], x: &[T], _shape: &Shape) -> Result<Vec<T>> {
        let one = T::one();
        Ok(g.iter()
            .zip(x)
            .map(|(&gi, &v)| {
                let sig = one / ((-v).exp() + one);
                gi * sig * (one + v * (one - sig))
            })
            .collect())
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(0)
    }
}

custom_op1!(Silu, "fused-silu", |_s, arg, _res, grad| bwd2(
    grad, arg, &SiluBwd
));
custom_op2_no_bwd!(SiluBwd, "fused-silu-bwd");

pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Silu)
}

/// `grad · silu'(x)`, for ops that fold SiLU into a larger op.
pub(crate) fn silu_backward(grad: &Tensor, x: &Tensor) -> Result<Tensor> {
    some(bwd2(grad, x, &SiluBwd)?)
}

fn some(t: Option<Tensor>) -> Result<Tensor> {
    match t {
        Some(t) => Ok(t),
        None => bail!("fused backward produced no gradient"),
    }
}

const GELU_A: f64 = 0.044715;

fn gelu_c() -> f64 {
    (2.0f64 / std::f64::consts::PI).sqrt()
}

/// GELU, tanh approximation: `0.5·x·(1 + tanh(c·(x + a·x³)))`.
struct GeluTanh;
/// Backward on `(grad, x)`: `dx = g · (0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3a·x²))`.
struct GeluTanhBwd;

impl Kernel1 for GeluTanh {
    fn run<T: Real>(&self, x: &[T], _shape: &Shape) -> Result<Vec<T>> {
        let (a, c, half, one) = (
            T::from_f64(GELU_A),
            T::from_f64(gelu_c()),
            T::from_f64(0.5),
            T::one(),
        );
        Ok(x.iter()
            .map(|&v| {
                let inner = (v + v * v * v * a) * c;
                (v * half) * (inner.tanh() + one)
            })
            .collect())
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(0)
    }
}

impl Kernel2 for GeluTanhBwd {
    fn run<T: Real>(&self, g: &[T], x: &[T], _shape: &Shape) -> Result<Vec<T>> {
        let (a, c, half, one, three_a) = (
            T::from_f64(GELU_A),
            T::from_f64(gelu_c()),
            T::from_f64(0.5),
            T::one(),
            T::from_f64(3.0 * GELU_A),
        );
        Ok(g.iter()
            .zip(x)
            .map(|(&gi, &v)| {
                let t = ((v + v * v * v * a) * c).tanh();
                let d = half * (one + t) + half * v * (one - t * t) * c * (one + three_a * v * v);
                gi * d
            })
            .collect())
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(0)
    }
}

custom_op1!(GeluTanh, "fused-gelu-tanh", |_s, arg, _res, grad| bwd2(
    grad,
    arg,
    &GeluTanhBwd
));
custom_op2_no_bwd!(GeluTanhBwd, "fused-gelu-tanh-bwd");

pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluTanh)
}

/// `grad · gelu_tanh'(x)`, for ops that fold GELU into a larger op.
pub(crate) fn gelu_tanh_backward(grad: &Tensor, x: &Tensor) -> Result<Tensor> {
    some(bwd2(grad, x, &GeluTanhBwd)?)
}

// ---------------------------------------------------------------------------------------------
// Rotary embeddings

/// Half-split rotary embedding on `[..., seq, dh]` with tables `[seq, dh/2]`:
/// `y1 = x1·cos − x2·sin`, `y2 = x2·cos + x1·sin`. A rotation per pair, so its backward is the
/// same op with `−sin`.
struct Rope {
    cos: Arc<Vec<f64>>,
    sin: Arc<Vec<f64>>,
    /// Rotate by −angle (the backward).
    inverse: bool,
}

impl Kernel1 for Rope {
    fn run<T: Real>(&self, x: &[T], shape: &Shape) -> Result<Vec<T>> {
        let dims = shape.dims();
        if dims.len() < 2 {
            bail!("rope: expected [..., seq, head_dim], got {shape:?}");
        }
        let dh = dims[dims.len() - 1];
        let seq = dims[dims.len() - 2];
        let half = dh / 2;
        if !dh.is_multiple_of(2) || self.cos.len() != seq * half || self.sin.len() != seq * half {
            bail!("rope: tables do not match {shape:?}");
        }
        let cos: Vec<T> = to_t(&self.cos);
        let sin: Vec<T> = if self.inverse {
            self.sin.iter().map(|&v| T::from_f64(-v)).collect()
        } else {
            to_t(&self.sin)
        };
        let mut out = vec![T::zero(); x.len()];
        for (r, (row, o)) in x.chunks_exact(dh).zip(out.chunks_exact_mut(dh)).enumerate() {
            let t = r % seq;
            let (c, s) = (
                &cos[t * half..(t + 1) * half],
                &sin[t * half..(t + 1) * half],
            );
            let (x1, x2) = row.split_at(half);
            let (o1, o2) = o.split_at_mut(half);
            for j in 0..half {
                o1[j] = x1[j] * c[j] - x2[j] * s[j];
                o2[j] = x2[j] * c[j] + x1[j] * s[j];
            }
        }
        Ok(out)
    }
    fn unit_dims(&self) -> Option<usize> {
        Some(2)
    }
}

custom_op1!(Rope, "fused-rope", |s, _arg, _res, grad| {
    let inv = Rope {
        cos: s.cos.clone(),
        sin: s.sin.clone(),
        inverse: !s.inverse,
    };
    Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inv)?))
});

/// Whether `rope` can run fused for these arguments (tables exactly `[seq, dh/2]`, same dtype).
pub fn rope_supported(x: &Tensor, cos: &Tensor, sin: &Tensor) -> bool {
    let dims = x.dims();
    if !supported(x) || dims.len() < 2 {
        return false;
    }
    let (seq, dh) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    dh.is_multiple_of(2)
        && cos.dims() == [seq, dh / 2]
        && sin.dims() == [seq, dh / 2]
        && cos.dtype() == x.dtype()
        && sin.dtype() == x.dtype()
}

pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let _ = x.dim(D::Minus1)?;
    x.contiguous()?.apply_op1(Rope {
        cos: const_f64(cos)?,
        sin: const_f64(sin)?,
        inverse: false,
    })
}

/// The transpose of [`rope`] (rotation by the opposite angles): the gradient at rope's input
/// from the gradient at its output, for a hand-written backward.
pub(crate) fn rope_backward(grad: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    grad.contiguous()?.apply_op1_no_bwd(&Rope {
        cos: const_f64(cos)?,
        sin: const_f64(sin)?,
        inverse: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<T: Real>(n: usize, seed: u64) -> Vec<T> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                T::from_f64(((s >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0)
            })
            .collect()
    }

    /// A kernel applied to an input of a shape.
    type Applied<'a, T> = &'a dyn Fn(&[T], &Shape) -> Result<Vec<T>>;

    fn bits<T: Real>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.to_f64().to_bits()).collect()
    }

    /// Split into pieces on rayon's threads, every kernel gives the whole input's bits (each
    /// unit's arithmetic is the same), for shapes over the split threshold with a short last
    /// piece; and the shapes below it are not split.
    fn split_equals_whole<T: Real>() {
        // [rows, n] for the row-wise kernels (rows·n > 2·PAR_ELEMS, not a multiple of a piece);
        // [heads, seq, dh] for rope.
        let (rows, n) = (301, 577);
        let shape = Shape::from((rows, n));
        let (a, b) = (values::<T>(rows * n, 1), values::<T>(rows * n, 2));
        assert!(
            split_of(&shape, Some(1)).is_some(),
            "the test shape must split"
        );
        assert!(split_of(&Shape::from((8, 576)), Some(1)).is_none());
        let w = Arc::new(values::<f64>(n, 3));
        let one = |k: Applied<T>, whole: Applied<T>, name: &str| {
            assert_eq!(
                bits(&k(&a, &shape).unwrap()),
                bits(&whole(&a, &shape).unwrap()),
                "{name}"
            );
        };
        macro_rules! check1 {
            ($k:expr, $name:literal) => {
                one(&|x, s| run1(&$k, x, s), &|x, s| $k.run(x, s), $name)
            };
        }
        macro_rules! check2 {
            ($k:expr, $name:literal) => {
                one(&|x, s| run2(&$k, x, &b, s), &|x, s| $k.run(x, &b, s), $name)
            };
        }
        let norm = RmsNorm {
            w: w.clone(),
            eps: 1e-5,
        };
        let norm_bwd = RmsNormBwd { w, eps: 1e-5 };
        check1!(norm, "rms_norm");
        check2!(norm_bwd, "rms_norm backward");
        check1!(Softmax, "softmax");
        check2!(SoftmaxBwd, "softmax backward");
        check1!(LogSoftmax, "log_softmax");
        check2!(LogSoftmaxBwd, "log_softmax backward");
        check1!(Silu, "silu");
        check2!(SiluBwd, "silu backward");
        check1!(GeluTanh, "gelu");
        check2!(GeluTanhBwd, "gelu backward");
        let (heads, seq, dh) = (9, 300, 64);
        let shape = Shape::from((heads, seq, dh));
        let x = values::<T>(heads * seq * dh, 4);
        let rope = Rope {
            cos: Arc::new(values::<f64>(seq * dh / 2, 5)),
            sin: Arc::new(values::<f64>(seq * dh / 2, 6)),
            inverse: false,
        };
        assert!(split_of(&shape, rope.unit_dims()).is_some());
        assert_eq!(
            bits(&run1(&rope, &x, &shape).unwrap()),
            bits(&rope.run(&x, &shape).unwrap()),
            "rope"
        );
    }

    #[test]
    fn split_kernels_equal_the_whole_f32() {
        split_equals_whole::<f32>();
    }

    #[test]
    fn split_kernels_equal_the_whole_f64() {
        split_equals_whole::<f64>();
    }

    /// The weight gradient's blocked partial sums agree with one sequential f64 sum (to f64
    /// rounding over 301 rows: 1e-12 relative).
    #[test]
    fn rms_norm_weight_gradient_blocks_match_a_sequential_sum() {
        let (rows, n) = (301, 577);
        let g = values::<f64>(rows * n, 7);
        let x = values::<f64>(rows * n, 8);
        let dev = candle_core::Device::Cpu;
        let gt = Tensor::from_vec(g.clone(), (rows, n), &dev).unwrap();
        let xt = Tensor::from_vec(x.clone(), (rows, n), &dev).unwrap();
        let w = Tensor::ones(n, DType::F64, &dev).unwrap();
        let (_, dw) = rms_norm_backward(&gt, &xt, &w, 1e-6).unwrap();
        let dw = dw.to_vec1::<f64>().unwrap();
        let mut want = vec![0f64; n];
        for r in 0..rows {
            let xr = &x[r * n..(r + 1) * n];
            let inv = row_inv(xr, 1e-6);
            for j in 0..n {
                want[j] += g[r * n + j] * xr[j] * inv;
            }
        }
        for (j, (a, b)) in dw.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "dw[{j}] {a} vs {b}"
            );
        }
    }
}
