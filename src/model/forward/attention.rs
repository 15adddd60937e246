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
        let q = ops::cpu_tensor(s1, l1)?;
        let k = ops::cpu_tensor(s2, l2)?;
        let v = ops::cpu_tensor(s3, l3)?;
        ops::into_cpu_storage(&self.forward(&q, &k, &v)?)
    }

    /// With `P` recomputed: `dv = Pᵀ·dz`, `dP = dz·vᵀ`, `dS = softmax'(dP)·scale`,
    /// `dq = dS·k`, `dk = dSᵀ·q`, each summed over the query heads sharing a kv head.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
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
            Some(Tensor::cat(&dq, 0)?),
            Some(Tensor::stack(&dk, 0)?),
            Some(Tensor::stack(&dv, 0)?),
        ))
    }
}
