//! A decoder layer's forward that keeps a tape — the few tensors its backward reads — and that
//! backward written by hand, for tuning's layer-by-layer backward ([`super::hooked::Pieces`]).
//!
//! Through candle's autograd every intermediate of a layer is a graph node whose gradient starts
//! as a zeroed tensor to which each contribution is added: in a GRPO step of SmolLM2 about half
//! of the backward's samples outside the matrix products were that bookkeeping (fresh pages
//! cleared, zeros written, adds). Here each gradient is formed once, by the products and the
//! fused kernels' own backward passes (RMSNorm, rope, packed attention, the gated MLP), and the
//! tape holds the layer's input, the q/k/v projections, the attention output, the residual
//! midpoint and the MLP's gate and up; norms, rope and the GLU product are recomputed
//! (elementwise, cheap).
//!
//! It covers layers whose projections are dense weights on the CPU in f32/f64, with any norm
//! placement, a per-head q/k norm or none, and no score softcap ([`fits`]); the forward takes
//! the autograd pieces otherwise (LoRA's low-rank weights, quantized or GPU weights). Its
//! gradients equal autograd's up to rounding in f64, and finite differences (tests/tuning.rs).

use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor};

use super::attention;
use super::hooked::LayerWeights;
use super::mlp::{glu_down, glu_grads};
use super::packing::Packing;
use crate::model::kernels::{blas, fused, ops, ops::GluActivation};
use crate::model::weights::linear::Linear;

/// The model-wide numbers a layer's forward and backward need.
#[derive(Clone, Copy, Debug)]
pub(super) struct LayerShape {
    pub hq: usize,
    pub hk: usize,
    pub dh: usize,
    pub eps: f64,
    pub norm_offset: f64,
    pub activation: GluActivation,
    pub attn_scale: f64,
}

/// One layer's forward state for its backward.
pub struct LayerTape {
    weights: LayerWeights,
    shape: LayerShape,
    packing: Arc<Packing>,
    cos: Tensor,
    sin: Tensor,
    /// The layer's input `[R, d]`.
    input: Tensor,
    /// q, k, v projections (bias added), `[heads, R, dh]`, before the q/k norm and rope.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// The attention's output, heads side by side: `[R, hq·dh]` (o_proj's input).
    z: Tensor,
    /// o_proj's output, kept only under a post-attention norm (its input).
    attn_raw: Option<Tensor>,
    /// `input + attention`, the MLP's residual input `[R, d]`.
    mid: Tensor,
    gate: Tensor,
    up: Tensor,
    /// The MLP's output before its post norm, kept only under one.
    mlp_raw: Option<Tensor>,
}

fn dense(l: &Linear) -> Result<&Tensor> {
    match l {
        Linear::Dense(w) => Ok(w),
        _ => candle_core::bail!("taped layer: a projection is not a dense weight"),
    }
}

/// The same dense weight with no graph (shares storage).
fn frozen(l: &Linear) -> Result<Linear> {
    Ok(Linear::Dense(dense(l)?.detach()))
}

/// Whether a layer's weights can take the taped path: its seven projections dense on the CPU in
/// the dtype of its norms, f32 or f64.
pub(super) fn fits(lw: &LayerWeights, dtype: DType) -> bool {
    let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == dtype;
    matches!(dtype, DType::F32 | DType::F64)
        && [
            &lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down,
        ]
        .iter()
        .all(|l| matches!(l, Linear::Dense(w) if ok(w)))
}

/// `aᵀ·b` for `a: [R, m]`, `b: [R, n]`: a weight's gradient from its output's gradient and its
/// input, no graph; through the loaded BLAS when there is one.
fn weight_grad(g: &Tensor, x: &Tensor) -> Result<Tensor> {
    match blas::product(g, blas::Op::T, x, blas::Op::N)? {
        Some(p) => Ok(p),
        None => g.detach().t()?.matmul(&x.detach()),
    }
}

impl LayerShape {
    /// `rms_norm(x)` with weight `w` (plus the family's offset), or `x` without a norm.
    fn norm(&self, x: &Tensor, w: Option<&Tensor>) -> Result<Tensor> {
        match w {
            Some(w) => ops::rms_norm(x, &w.detach(), self.eps, self.norm_offset),
            None => Ok(x.clone()),
        }
    }

    /// The gradient at the input of `norm(x)` from `g` at its output; the weight's gradient goes
    /// to `grads` (when the weight is trained).
    fn norm_back(
        &self,
        g: &Tensor,
        x: &Tensor,
        w: Option<&Tensor>,
        grads: &mut GradStore,
    ) -> Result<Tensor> {
        let Some(w) = w else {
            return Ok(g.clone());
        };
        let w_eff = if self.norm_offset != 0.0 {
            (w.detach() + self.norm_offset)?
        } else {
            w.detach()
        };
        let (dx, dw) = fused::rms_norm_backward(g, x, &w_eff, self.eps)?;
        put(grads, w, dw);
        Ok(dx)
    }

    /// A projection `[R, heads·dh]` as `[heads, R, dh]`.
    fn heads(&self, y: &Tensor, heads: usize) -> Result<Tensor> {
        let rows = y.dim(0)?;
        y.reshape((rows, heads, self.dh))?
            .transpose(0, 1)?
            .contiguous()
    }

    /// `[heads, R, dh]` back to `[R, heads·dh]`.
    fn flat(&self, y: &Tensor) -> Result<Tensor> {
        let (heads, rows, dh) = y.dims3()?;
        y.transpose(0, 1)?.contiguous()?.reshape((rows, heads * dh))
    }
}

/// Records a trained weight's gradient (a frozen weight gets none).
fn put(grads: &mut GradStore, w: &Tensor, g: Tensor) {
    if w.track_op() {
        grads.insert(w, g);
    }
}

/// The q/k norm (per head) and rope of a `[heads, R, dh]` projection: what attention reads.
fn qk_in(
    s: &LayerShape,
    x: &Tensor,
    norm: Option<&Tensor>,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    ops::rope(&s.norm(x, norm)?, cos, sin)
}

/// The layer's forward over `h` (`[R, d]`, rows laid out by `packing`), with no graph: its
/// output and its tape. `cos`/`sin` are the rows' rope tables.
pub(super) fn forward(
    lw: &LayerWeights,
    shape: LayerShape,
    packing: Arc<Packing>,
    cos: Tensor,
    sin: Tensor,
    h: &Tensor,
) -> Result<(Tensor, LayerTape)> {
    let s = &shape;
    let input = h.detach();
    let xn = s.norm(&input, lw.input_norm.as_ref())?;
    let proj = |w: &Linear, b: &Option<Tensor>, heads: usize| -> Result<Tensor> {
        let y = frozen(w)?.forward(&xn)?;
        let y = match b {
            Some(b) => y.broadcast_add(&b.detach())?,
            None => y,
        };
        s.heads(&y, heads)
    };
    let q = proj(&lw.wq, &lw.bq, s.hq)?;
    let k = proj(&lw.wk, &lw.bk, s.hk)?;
    let v = proj(&lw.wv, &lw.bv, s.hk)?;
    drop(xn);
    let qr = qk_in(s, &q, lw.q_norm.as_ref(), &cos, &sin)?;
    let kr = qk_in(s, &k, lw.k_norm.as_ref(), &cos, &sin)?;
    let z = attention::attention_packed(&qr, &kr, &v, &packing, lw.window, s.attn_scale)?;
    drop((qr, kr));
    let z = s.flat(&z)?;
    let attn_raw = frozen(&lw.wo)?.forward(&z)?;
    let (attn, attn_raw) = match &lw.post_attn_norm {
        Some(n) => (s.norm(&attn_raw, Some(n))?, Some(attn_raw)),
        None => (attn_raw, None),
    };
    let mid = (&input + &attn)?;
    drop(attn);
    let xm = s.norm(&mid, lw.mlp_norm.as_ref())?;
    let gate = frozen(&lw.w_gate)?.forward(&xm)?;
    let up = frozen(&lw.w_up)?.forward(&xm)?;
    drop(xm);
    let mlp = glu_down(&gate, &up, s.activation, &frozen(&lw.w_down)?)?;
    let (mlp, mlp_raw) = match &lw.post_mlp_norm {
        Some(n) => (s.norm(&mlp, Some(n))?, Some(mlp)),
        None => (mlp, None),
    };
    let out = (&mid + &mlp)?;
    let tape = LayerTape {
        weights: lw.clone(),
        shape,
        packing,
        cos,
        sin,
        input,
        q,
        k,
        v,
        z,
        attn_raw,
        mid,
        gate,
        up,
        mlp_raw,
    };
    Ok((out, tape))
}

impl LayerTape {
    /// From the gradient `g` at the layer's output: the gradient at its input and those of its
    /// trained weights (keyed by the weight tensors, as autograd's).
    pub fn backward(self, g: &Tensor) -> Result<(Tensor, GradStore)> {
        let LayerTape {
            weights: lw,
            shape,
            packing,
            cos,
            sin,
            input,
            q,
            k,
            v,
            z,
            attn_raw,
            mid,
            gate,
            up,
            mlp_raw,
        } = self;
        let s = &shape;
        let g = g.detach();
        let mut grads = GradStore::default();

        // MLP: out = mid + post_mlp_norm(down(act(gate) ⊙ up)).
        let g_mlp = match &mlp_raw {
            Some(raw) => s.norm_back(&g, raw, lw.post_mlp_norm.as_ref(), &mut grads)?,
            None => g.clone(),
        };
        drop(mlp_raw);
        let (wg, wu, wd) = (dense(&lw.w_gate)?, dense(&lw.w_up)?, dense(&lw.w_down)?);
        let da = frozen(&lw.w_down)?.input_grad(&g_mlp)?;
        let (dgate, dup, act) = glu_grads(s.activation, &gate, &up, &da)?;
        drop(da);
        put(&mut grads, wd, weight_grad(&g_mlp, &(act * &up)?)?);
        drop((g_mlp, gate, up));
        let xm = s.norm(&mid, lw.mlp_norm.as_ref())?;
        put(&mut grads, wg, weight_grad(&dgate, &xm)?);
        put(&mut grads, wu, weight_grad(&dup, &xm)?);
        drop(xm);
        let dxm =
            (frozen(&lw.w_gate)?.input_grad(&dgate)? + frozen(&lw.w_up)?.input_grad(&dup)?)?;
        drop((dgate, dup));
        let g_mid = (&g + s.norm_back(&dxm, &mid, lw.mlp_norm.as_ref(), &mut grads)?)?;
        drop((g, dxm, mid));

        // Attention: mid = input + post_attn_norm(o_proj(z)).
        let g_attn = match &attn_raw {
            Some(raw) => s.norm_back(&g_mid, raw, lw.post_attn_norm.as_ref(), &mut grads)?,
            None => g_mid.clone(),
        };
        drop(attn_raw);
        put(&mut grads, dense(&lw.wo)?, weight_grad(&g_attn, &z)?);
        drop(z);
        let dz = s.heads(&frozen(&lw.wo)?.input_grad(&g_attn)?, s.hq)?;
        drop(g_attn);
        let qr = qk_in(s, &q, lw.q_norm.as_ref(), &cos, &sin)?;
        let kr = qk_in(s, &k, lw.k_norm.as_ref(), &cos, &sin)?;
        let (dqr, dkr, dv) = attention::packed_attention_grads(
            &qr,
            &kr,
            &v,
            &dz,
            &packing,
            lw.window,
            s.attn_scale,
        )?;
        drop((qr, kr, v, dz));
        // Through rope, then the q/k norm (its input is the saved projection).
        let mut back_qk = |d: &Tensor, x: &Tensor, norm: Option<&Tensor>| -> Result<Tensor> {
            let d = fused::rope_backward(d, &cos, &sin)?;
            let d = match norm {
                Some(_) => s.norm_back(&d, x, norm, &mut grads)?,
                None => d,
            };
            s.flat(&d)
        };
        let dq = back_qk(&dqr, &q, lw.q_norm.as_ref())?;
        let dk = back_qk(&dkr, &k, lw.k_norm.as_ref())?;
        drop((dqr, dkr, q, k));
        let dv = s.flat(&dv)?;
        let xn = s.norm(&input, lw.input_norm.as_ref())?;
        let mut dxn: Option<Tensor> = None;
        for (d, w, b) in [
            (&dq, &lw.wq, &lw.bq),
            (&dk, &lw.wk, &lw.bk),
            (&dv, &lw.wv, &lw.bv),
        ] {
            put(&mut grads, dense(w)?, weight_grad(d, &xn)?);
            if let Some(b) = b {
                put(&mut grads, b, d.sum(0)?);
            }
            let dx = frozen(w)?.input_grad(d)?;
            dxn = Some(match dxn {
                Some(acc) => (acc + dx)?,
                None => dx,
            });
        }
        drop((dq, dk, dv, xn));
        let dxn = dxn.expect("three projections");
        let g_in = (&g_mid + s.norm_back(&dxn, &input, lw.input_norm.as_ref(), &mut grads)?)?;
        Ok((g_in, grads))
    }
}

/// The head's forward state (final norm, unembedding, optional logit cap, log-softmax at the
/// targets) for its hand-written backward: the picked rows of the last layer's output and the
/// logits. Through autograd the head's backward zeroed and added a `[rows, vocab]` and a
/// `[vocab, d]` gradient per pack besides its products.
pub struct HeadTape {
    shape: LayerShape,
    /// The final norm's and the unembedding's weights (as the transformer holds them: trained
    /// ones track their gradient).
    norm: Tensor,
    head_w: Tensor,
    softcap: Option<f64>,
    /// Rows of the last layer's output read, in target order (a row may repeat).
    rows: Tensor,
    /// Rows of the last layer's output in all.
    n_rows: usize,
    /// The picked rows `[N, d]`.
    x: Tensor,
    /// Logits after the cap, `[N, vocab]`.
    logits: Tensor,
    targets: Vec<u32>,
}

/// The head over rows `rows` of the last layer's output `top` with no graph: the log-probability
/// of each target, `[N]`, and the tape.
pub(super) fn head_forward(
    shape: LayerShape,
    top: &Tensor,
    rows: &[u32],
    targets: &[u32],
    (norm, lm_head, softcap): (&Tensor, &Linear, Option<f64>),
) -> Result<(Tensor, HeadTape)> {
    if rows.len() != targets.len() {
        candle_core::bail!("head: {} rows for {} targets", rows.len(), targets.len());
    }
    let top = top.detach();
    let n_rows = top.dim(0)?;
    if let Some(bad) = rows.iter().find(|&&r| r as usize >= n_rows) {
        candle_core::bail!("unembed: row {bad} of {n_rows}");
    }
    let rows = Tensor::new(rows, top.device())?;
    let x = top.index_select(&rows, 0)?;
    let head_w = dense(lm_head)?.clone();
    let logits = frozen(lm_head)?.forward(&shape.norm(&x, Some(norm))?)?;
    let logits = match softcap {
        Some(cap) => ((logits / cap)?.tanh()? * cap)?,
        None => logits,
    };
    let lp = ops::log_softmax_pick(&logits, targets)?;
    let tape = HeadTape {
        shape,
        norm: norm.clone(),
        head_w,
        softcap,
        rows,
        n_rows,
        x,
        logits,
        targets: targets.to_vec(),
    };
    Ok((lp, tape))
}

impl HeadTape {
    /// From the gradient at the log-probabilities: the gradient at the last layer's output
    /// (`[n_rows, d]`, a repeated row's summed); the final norm's and the unembedding's
    /// gradients go to `grads`.
    pub fn backward(self, dlp: &Tensor, grads: &mut GradStore) -> Result<Tensor> {
        let s = &self.shape;
        let mut dlogits =
            fused::log_softmax_pick_backward(&dlp.detach(), &self.logits, &self.targets)?;
        if let Some(cap) = self.softcap {
            // d(cap·tanh(u/cap))/du = 1 − tanh², tanh = logits / cap.
            let t = (&self.logits / cap)?;
            dlogits = (dlogits * (1.0 - t.sqr()?)?)?;
        }
        drop(self.logits);
        let xn = s.norm(&self.x, Some(&self.norm))?;
        put(grads, &self.head_w, weight_grad(&dlogits, &xn)?);
        drop(xn);
        let dxn = Linear::Dense(self.head_w.detach()).input_grad(&dlogits)?;
        drop(dlogits);
        let dx = s.norm_back(&dxn, &self.x, Some(&self.norm), grads)?;
        let d = dx.dim(1)?;
        Tensor::zeros((self.n_rows, d), dx.dtype(), dx.device())?.index_add(&self.rows, &dx, 0)
    }
}
