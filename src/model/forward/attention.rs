//! Causal self-attention as one differentiable op: `z = softmax(q·kᵀ·scale + mask)·v`, with
//! grouped-query heads.
//!
//! Composed from primitive ops, autograd would keep the scores, the scaled and the masked scores,
//! the probabilities and the kv heads repeated for every query head: `O(heads·T²)` per layer,
//! the largest part of the activations held for the backward. This op keeps only q, k and v
//! (alive anyway) and recomputes the probabilities in its backward, one kv group at a time, as
//! flash attention does. CPU in f32/f64; the composition (`attention_composed`, also the test
//! reference) runs elsewhere.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::packing::{Packing, Segment};
use crate::model::kernels::{fused, ops};

/// `q: [hq, T, dh]`, `k, v: [hk, S, dh]` (hq a multiple of hk; query head `h` reads kv head
/// `h / (hq/hk)`), additive `mask: [T, S]` → `z: [hq, T, dh]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let same = |t: &Tensor| t.dtype() == q.dtype() && t.device().is_cpu();
    if fused::supported(q) && same(k) && same(v) && same(mask) {
        let op = Attention {
            mask: mask.detach(),
            scale,
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    attention_composed(q, k, v, mask, scale)
}

/// [`attention`] over a packed forward (`q: [hq, N, dh]`, `k, v: [hk, N, dh]` for the packing's
/// `N` rows): each segment's queries attend causally to its keys (the prefix's rows, when it
/// sees the prefix, then its own), with an optional sliding `window`. On CPU in f32/f64 one op
/// whose backward recomputes each segment's probabilities and sums the prefix's key and value
/// gradients over the segments that read it (no `narrow`/`cat` in the graph: each would pad its
/// gradient to the whole `[h, N, dh]`); elsewhere the composition per segment.
pub fn attention_packed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    packing: &Packing,
    window: Option<usize>,
    scale: f64,
) -> Result<Tensor> {
    let rows = packing.rows();
    for t in [q, k, v] {
        if t.dim(1)? != rows {
            candle_core::bail!(
                "packed attention: {:?} for a packing of {rows} rows",
                t.dims()
            );
        }
    }
    let same = |t: &Tensor| t.dtype() == q.dtype() && t.device().is_cpu();
    if fused::supported(q) && same(k) && same(v) {
        let op = PackedAttention {
            packing: packing.clone(),
            window,
            scale,
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    per_segment(q, k, v, packing, window, &|qs, ks, vs, mask| {
        attention_composed(qs, ks, vs, mask, scale)
    })
}

/// `attend(q_s, k_s, v_s, mask_s)` on each segment of a packed forward (its queries, its keys
/// and values with the prefix's first, its causal mask), outputs joined in row order: the
/// composition off the fused path, and the forward's own attention variants (softcapped scores).
pub fn per_segment(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    packing: &Packing,
    window: Option<usize>,
    attend: &dyn Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let parts = packing
        .segments()
        .into_iter()
        .map(|seg| {
            let (qs, ks, vs) = segment_inputs(q, k, v, packing, &seg)?;
            attend(&qs, &ks, &vs, &segment_mask(packing, &seg, window, q)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// A three-input custom op's CPU inputs as tensors.
fn cpu_qkv(s: [(&CpuStorage, &Layout); 3]) -> Result<(Tensor, Tensor, Tensor)> {
    let [(s1, l1), (s2, l2), (s3, l3)] = s;
    Ok((
        ops::cpu_tensor(s1, l1)?,
        ops::cpu_tensor(s2, l2)?,
        ops::cpu_tensor(s3, l3)?,
    ))
}

/// A segment's queries and keys/values (the prefix's rows first when it sees the prefix).
fn segment_inputs(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    packing: &Packing,
    seg: &Segment,
) -> Result<(Tensor, Tensor, Tensor)> {
    let qs = q.narrow(1, seg.start, seg.len)?;
    let own = |t: &Tensor| -> Result<Tensor> {
        let mine = t.narrow(1, seg.start, seg.len)?;
        if seg.sees_prefix {
            Tensor::cat(&[&t.narrow(1, 0, packing.prefix())?, &mine], 1)
        } else {
            Ok(mine)
        }
    };
    Ok((qs, own(k)?, own(v)?))
}

/// The segment's causal mask: its query `i` sits at key position `key_offset + i`.
fn segment_mask(
    packing: &Packing,
    seg: &Segment,
    window: Option<usize>,
    like: &Tensor,
) -> Result<Tensor> {
    let off = seg.key_offset(packing.prefix());
    ops::causal_mask(
        seg.len,
        off + seg.len,
        off,
        window,
        like.dtype(),
        like.device(),
    )
}

/// `attention` from primitive ops (any device and dtype).
pub fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let n_rep = group_size(q, k)?;
    let k = ops::repeat_kv(k, n_rep)?;
    let v = ops::repeat_kv(v, n_rep)?;
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let probs = ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
    probs.matmul(&v)
}

fn group_size(q: &Tensor, k: &Tensor) -> Result<usize> {
    let (hq, _, dq) = q.dims3()?;
    let (hk, _, dk) = k.dims3()?;
    if hk == 0 || hq % hk != 0 || dq != dk {
        candle_core::bail!("attention: q {:?} does not fit k {:?}", q.dims(), k.dims());
    }
    Ok(hq / hk)
}

struct Attention {
    mask: Tensor,
    scale: f64,
}

impl Attention {
    /// Probabilities of kv group `g`: `[n_rep·T, S]`, and the group's queries `[n_rep·T, dh]`.
    fn group_probs(
        &self,
        q: &Tensor,
        k: &Tensor,
        g: usize,
        n_rep: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (_, t, dh) = q.dims3()?;
        let s = k.dim(1)?;
        let qg = q.narrow(0, g * n_rep, n_rep)?.reshape((n_rep * t, dh))?;
        let kg = k.get(g)?;
        let scores = (qg.matmul(&kg.t()?)? * self.scale)?;
        let masked = scores
            .reshape((n_rep, t, s))?
            .broadcast_add(&self.mask)?
            .reshape((n_rep * t, s))?;
        Ok((fused::softmax_last_dim(&masked)?, qg))
    }

    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let n_rep = group_size(q, k)?;
        let (_, t, dh) = q.dims3()?;
        let parts = (0..k.dim(0)?)
            .map(|g| {
                let (p, _) = self.group_probs(q, k, g, n_rep)?;
                p.matmul(&v.get(g)?)?.reshape((n_rep, t, dh))
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// `dv = Pᵀ·dz`, `dP = dz·vᵀ`, `dS = softmax'(dP)·scale`, `dq = dS·k`, `dk = dSᵀ·q`, each
    /// summed over the query heads sharing a kv head, with `P` recomputed.
    fn grads(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        // Detached: the backward builds no graph of its own.
        let (q, k, v, grad) = (q.detach(), k.detach(), v.detach(), grad.detach());
        let n_rep = group_size(&q, &k)?;
        let (_, t, dh) = q.dims3()?;
        let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
        for g in 0..k.dim(0)? {
            let (p, qg) = self.group_probs(&q, &k, g, n_rep)?;
            let dz = grad
                .narrow(0, g * n_rep, n_rep)?
                .contiguous()?
                .reshape((n_rep * t, dh))?;
            let (kg, vg) = (k.get(g)?, v.get(g)?);
            dv.push(p.t()?.matmul(&dz)?);
            let dp = dz.matmul(&vg.t()?)?;
            let ds = (fused::softmax_backward(&dp, &p)? * self.scale)?;
            dq.push(ds.matmul(&kg)?.reshape((n_rep, t, dh))?);
            dk.push(ds.t()?.matmul(&qg)?);
        }
        Ok((
            Tensor::cat(&dq, 0)?,
            Tensor::stack(&dk, 0)?,
            Tensor::stack(&dv, 0)?,
        ))
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = cpu_qkv([(s1, l1), (s2, l2), (s3, l3)])?;
        ops::into_cpu_storage(&self.forward(&q, &k, &v)?)
    }

    /// With `P` recomputed (see [`Attention::grads`]).
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = self.grads(q, k, v, grad)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

struct PackedAttention {
    packing: Packing,
    window: Option<usize>,
    scale: f64,
}

impl PackedAttention {
    fn segment_op(&self, seg: &Segment, like: &Tensor) -> Result<Attention> {
        Ok(Attention {
            mask: segment_mask(&self.packing, seg, self.window, like)?,
            scale: self.scale,
        })
    }
}

impl CustomOp3 for PackedAttention {
    fn name(&self) -> &'static str {
        "fused-packed-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = cpu_qkv([(s1, l1), (s2, l2), (s3, l3)])?;
        // On rayon's threads, as the backward (`grads`).
        let parts = self
            .packing
            .segments()
            .par_iter()
            .map(|seg| {
                let (qs, ks, vs) = segment_inputs(&q, &k, &v, &self.packing, seg)?;
                self.segment_op(seg, &q)?.forward(
                    &qs.contiguous()?,
                    &ks.contiguous()?,
                    &vs.contiguous()?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        ops::into_cpu_storage(&Tensor::cat(&parts, 1)?)
    }

    /// As [`packed_attention_grads`].
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = self.grads(q, k, v, grad)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// The gradients at `q`, `k`, `v` of [`attention_packed`] (CPU, f32/f64) from the gradient
/// `grad` at its output, with no graph: the fused op's backward, and a hand-written layer
/// backward's (`forward::tape`).
pub(crate) fn packed_attention_grads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    packing: &Packing,
    window: Option<usize>,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    PackedAttention {
        packing: packing.clone(),
        window,
        scale,
    }
    .grads(q, k, v, grad)
}

impl PackedAttention {
    /// Per segment as [`Attention`]'s backward; a key or value row's gradient is the sum over
    /// the segments that read it (the prefix's own segment first, then the tails in order).
    fn grads(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v, grad) = (q.detach(), k.detach(), v.detach(), grad.detach());
        let prefix = self.packing.prefix();
        let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
        // The prefix rows' key/value gradients, summed over the segments that read them.
        let (mut dk_prefix, mut dv_prefix): (Option<Tensor>, Option<Tensor>) = (None, None);
        let add = |acc: &mut Option<Tensor>, g: Tensor| -> Result<()> {
            *acc = Some(match acc.take() {
                Some(a) => (a + g)?,
                None => g,
            });
            Ok(())
        };
        // Segments are independent (a G-answer group has G + 1 of a few dozen rows each, whose
        // small products leave a core idle one at a time): on rayon's threads, collected in
        // segment order, so the sums below run in the same order whatever the thread count.
        let segments = self.packing.segments();
        let per_segment = segments
            .par_iter()
            .map(|seg| {
                let (qs, ks, vs) = segment_inputs(&q, &k, &v, &self.packing, seg)?;
                let gs = grad.narrow(1, seg.start, seg.len)?;
                self.segment_op(seg, &q)?.grads(
                    &qs.contiguous()?,
                    &ks.contiguous()?,
                    &vs.contiguous()?,
                    &gs.contiguous()?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        for (seg, (dqs, dks, dvs)) in segments.into_iter().zip(per_segment) {
            dq.push(dqs);
            let off = seg.key_offset(prefix);
            if seg.start == 0 && prefix > 0 {
                // The prefix's own segment: all its keys are prefix rows.
                add(&mut dk_prefix, dks)?;
                add(&mut dv_prefix, dvs)?;
                continue;
            }
            if off > 0 {
                add(&mut dk_prefix, dks.narrow(1, 0, off)?)?;
                add(&mut dv_prefix, dvs.narrow(1, 0, off)?)?;
            }
            dk.push(dks.narrow(1, off, seg.len)?);
            dv.push(dvs.narrow(1, off, seg.len)?);
        }
        if let (Some(a), Some(b)) = (dk_prefix, dv_prefix) {
            dk.insert(0, a);
            dv.insert(0, b);
        }
        Ok((
            Tensor::cat(&dq, 1)?,
            Tensor::cat(&dk, 1)?,
            Tensor::cat(&dv, 1)?,
        ))
    }
}
