//! LoRA (Hu et al., arXiv 2106.09685) as PEFT builds it: for each target matrix `W [out, in]`
//! two trained factors `A [r, in]` and `B [out, r]`, and the forward reads
//! `W_eff = W + (α / r) · B·A` with `W` frozen. Targets: the attention projections q/k/v/o and
//! the MLP's gate/up/down (`target_modules` "all-linear" minus the unembedding, as the issue
//! asks). Initialisation is PEFT's default: `A` uniform in ±1/√in (kaiming-uniform with
//! a = √5), `B` zero, so the adapted model starts as the start model exactly. α defaults to
//! PEFT's `lora_alpha` of 8.
//!
//! The adapted weight is never formed for the forward: each target is read as
//! `x·Wᵀ + ((x·Aᵀ)·s)·Bᵀ` ([`crate::model::linear::Linear::LowRank`]) over the frozen `W` as
//! the start holds it, so candle's matmul backward gives `dL/dA` and `dL/dB` from thin
//! `[tokens, r]` products and `W` (quantized for a GGUF) stays shared with the frozen reference.
//! Only `A` and `B` are `Var`s: the optimiser keeps moments for them alone. [`merge`] forms
//! `W + s·B·A` for a checkpoint, whose model file holds the merged weights.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Rank and scale of the adapters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    /// PEFT's `lora_alpha`; the update is scaled by `alpha / rank`.
    pub alpha: f64,
}

/// PEFT's default `lora_alpha`.
pub const DEFAULT_ALPHA: f64 = 8.0;

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// Suffixes of the adapted matrices (HF names).
const TARGETS: [&str; 7] = [
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
];

/// Whether the weight `name` gets an adapter.
pub fn is_target(name: &str) -> bool {
    name.starts_with("model.layers.") && TARGETS.iter().any(|t| name.ends_with(t))
}

/// The factors' names for target `name` (`….q_proj.weight` → `….q_proj.lora_A.weight`, PEFT's
/// naming without its `base_model.model.` prefix).
pub fn factor_names(name: &str) -> (String, String) {
    let stem = name.strip_suffix(".weight").unwrap_or(name);
    (
        format!("{stem}.lora_A.weight"),
        format!("{stem}.lora_B.weight"),
    )
}

/// PEFT's initial factors for a target of shape `[out, in]`: `A` uniform in ±1/√in from a
/// generator seeded with `seed`, `B` zero.
pub fn init_factors(
    out: usize,
    inp: usize,
    rank: usize,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<(Var, Var)> {
    let bound = 1.0 / (inp as f64).sqrt();
    let mut rng = StdRng::seed_from_u64(seed);
    let a: Vec<f64> = (0..rank * inp)
        .map(|_| rng.gen_range(-bound..bound))
        .collect();
    let a = Tensor::from_vec(a, (rank, inp), device)?.to_dtype(dtype)?;
    let b = Tensor::zeros((out, rank), dtype, device)?;
    Ok((Var::from_tensor(&a)?, Var::from_tensor(&b)?))
}

/// `W + (B·A)·s` without a graph: the merged weight a checkpoint saves.
pub fn merge(w: &Tensor, a: &Tensor, b: &Tensor, scaling: f64) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if a.dims2()?.1 != inp || b.dims2()?.0 != out || a.dims2()?.0 != b.dims2()?.1 {
        candle_core::bail!(
            "lora factors A {:?} and B {:?} do not fit a weight of shape [{out}, {inp}]",
            a.dims(),
            b.dims()
        );
    }
    w.detach() + (b.detach().matmul(&a.detach())? * scaling)?
}
