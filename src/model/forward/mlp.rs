//! The gated MLP's second half as one differentiable op: `(act(gate) ⊙ up) · W_downᵀ`.
//!
//! Composed, autograd would keep `act(gate)` and the product `act(gate) ⊙ up` (the input of the
//! down projection, which its backward never reads): two `[T, d_ff]` tensors per layer, the
//! largest activations of a small model. This op keeps only `gate` and `up` (alive anyway) and
//! recomputes both in its backward. A trained dense `W_down` (a full fine-tune) is the op's third
//! input, and its gradient `gradᵀ · (act(gate) ⊙ up)` is formed from the recomputed product:
//! 12 KB less held per row and layer for SmolLM2 in f32, 0.37 MB per row over its 30 layers.
//! CPU in f32/f64; the composition elsewhere (trained low-rank factors included).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::model::kernels::{blas, fused, ops};
use crate::model::weights::linear::Linear;

// At its old path too (`model::mlp::GluActivation`); it lives with the kernels it selects, so
// that `arch` can name it without importing the forward.
pub use crate::model::kernels::ops::GluActivation;

/// `(act(gate) ⊙ up) · W_downᵀ` for `gate, up: [T, d_ff]` → `[T, d_model]`.
pub fn glu_down(gate: &Tensor, up: &Tensor, act: GluActivation, down: &Linear) -> Result<Tensor> {
    let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == gate.dtype();
    // The fused op differentiates gate and up only; a trained down weight (or trained low-rank
    // factors of it) takes the composed path.
    fn frozen_on_cpu(l: &Linear, on_cpu: &dyn Fn(&Tensor) -> bool) -> bool {
        match l {
            Linear::Dense(w) => on_cpu(w),
            Linear::Quant(_) => true,
            Linear::LowRank(lr) => {
                on_cpu(&lr.a) && on_cpu(&lr.b) && frozen_on_cpu(&lr.base, on_cpu)
            }
        }
    }
    let dense_ok = !down.is_tracked() && frozen_on_cpu(down, &on_cpu);
    let inputs_ok = fused::supported(gate) && on_cpu(up) && gate.dims() == up.dims();
    if let Linear::Dense(w) = down {
        if inputs_ok && w.track_op() && on_cpu(w) && gate.rank() == 2 {
            return gate.contiguous()?.apply_op3(
                &up.contiguous()?,
                &w.contiguous()?,
                GluDownTrained { act },
            );
        }
    }
    if inputs_ok && dense_ok {
        let op = GluDown {
            act,
            down: down.clone(),
        };
        return gate.contiguous()?.apply_op2(&up.contiguous()?, op);
    }
    glu_down_composed(gate, up, act, down)
}

/// `glu_down` from primitive ops (any device and dtype).
pub fn glu_down_composed(
    gate: &Tensor,
    up: &Tensor,
    act: GluActivation,
    down: &Linear,
) -> Result<Tensor> {
    down.forward(&(act.apply(gate)? * up)?)
}

/// From `da`, the gradient at `act(gate) ⊙ up`: `dgate = (da ⊙ up) · act'(gate)`,
/// `dup = da ⊙ act(gate)`, and `act(gate)` itself.
pub(super) fn glu_grads(
    act: GluActivation,
    gate: &Tensor,
    up: &Tensor,
    da: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let a = act.apply(gate)?;
    let dgate = act.backward(&(da * up)?, gate)?;
    Ok((dgate, (da * &a)?, a))
}

struct GluDown {
    act: GluActivation,
    down: Linear,
}

impl CustomOp2 for GluDown {
    fn name(&self) -> &'static str {
        "fused-glu-down"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (gate, up) = (ops::cpu_tensor(s1, l1)?, ops::cpu_tensor(s2, l2)?);
        ops::into_cpu_storage(&glu_down_composed(&gate, &up, self.act, &self.down)?)
    }

    /// `da = grad · W_down`; `dup = da ⊙ act(gate)`; `dgate = (da ⊙ up) · act'(gate)`.
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let da = self.down.input_grad(&grad.detach())?;
        let (dgate, dup, _) = glu_grads(self.act, &gate.detach(), &up.detach(), &da)?;
        Ok((Some(dgate), Some(dup)))
    }
}

/// [`GluDown`] with the down projection's dense weight as a differentiated input.
struct GluDownTrained {
    act: GluActivation,
}

impl CustomOp3 for GluDownTrained {
    fn name(&self) -> &'static str {
        "fused-glu-down-trained"
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
        let (gate, up) = (ops::cpu_tensor(s1, l1)?, ops::cpu_tensor(s2, l2)?);
        let down = Linear::Dense(ops::cpu_tensor(s3, l3)?);
        ops::into_cpu_storage(&glu_down_composed(&gate, &up, self.act, &down)?)
    }

    /// As [`GluDown`]'s, and `dW = gradᵀ · (act(gate) ⊙ up)` (`[d_model, d_ff]`, W's shape).
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (up, grad) = (up.detach(), grad.detach());
        let da = Linear::Dense(w.detach()).input_grad(&grad)?;
        let (dgate, dup, act) = glu_grads(self.act, &gate.detach(), &up, &da)?;
        let a = (act * up)?;
        let dw = match blas::product(&grad, blas::Op::T, &a, blas::Op::N)? {
            Some(dw) => dw,
            None => grad.t()?.matmul(&a)?,
        };
        Ok((Some(dgate), Some(dup), Some(dw)))
    }
}
