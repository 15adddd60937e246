//! The tuning objectives of METHOD.md §7, written once: GRPO (§7.1), DPO (§7.2), SFT (§7.3).
//! Each returns a scalar tensor to differentiate (already scaled by its share of the batch, so
//! the gradients of a batch's pieces add up to the gradient of the batch's loss) and the plain
//! numbers the log reports.

use candle_core::{Result, Tensor};

/// A tuning method: one table of names and descriptions for the verb, its help and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Grpo,
    Dpo,
    Sft,
}

impl Method {
    pub const ALL: [(Method, &'static str, &'static str); 3] = [
        (
            Method::Grpo,
            "grpo",
            "online RL: G sampled answers per question, group-normalised rewards, clipped ratio, k3 KL",
        ),
        (
            Method::Dpo,
            "dpo",
            "offline preference: chosen vs rejected answers against the frozen start",
        ),
        (
            Method::Sft,
            "sft",
            "supervised: mean token NLL of target answers",
        ),
    ];
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(m, _, _)| *m == self)
            .map_or("?", |(_, n, _)| n)
    }
    pub fn from_name(s: &str) -> Option<Method> {
        Self::ALL
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(m, _, _)| *m)
    }
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n, _)| *n).collect()
    }
}

/// How GRPO turns a group's rewards into advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdvantageNorm {
    /// `(R − mean) / (std + 1e-4)` (DeepSeekMath; the std as `group_advantages` says).
    Std,
    /// `R − mean` (Dr. GRPO).
    None,
}

impl AdvantageNorm {
    pub const NAMES: [&'static str; 2] = ["std", "none"];
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "std" => Some(Self::Std),
            "none" => Some(Self::None),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::None => "none",
        }
    }
}

/// Advantages of one group. The std is the sample standard deviation (divisor G − 1), as TRL's
/// `GRPOTrainer` computes it with `torch.std`; a group of equal rewards has zero advantages.
pub fn group_advantages(rewards: &[f64], norm: AdvantageNorm) -> Vec<f64> {
    let g = rewards.len() as f64;
    if rewards.is_empty() {
        return Vec::new();
    }
    let mean = rewards.iter().sum::<f64>() / g;
    let std = if rewards.len() > 1 {
        (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (g - 1.0)).sqrt()
    } else {
        0.0
    };
    rewards
        .iter()
        .map(|r| match norm {
            AdvantageNorm::Std => (r - mean) / (std + 1e-4),
            AdvantageNorm::None => r - mean,
        })
        .collect()
}

/// What one GRPO sequence contributes.
pub struct GrpoTerm {
    /// `−weight · Σ_t [min(r Â, clip(r) Â) − β k3_t]`, to differentiate.
    pub loss: Tensor,
    /// Σ_t k3_t (plain number, for the log).
    pub kl_sum: f64,
    /// Tokens where the clipped branch was taken.
    pub clipped: usize,
}

/// One answer's GRPO term (METHOD.md §7.1) from its per-token log-probabilities under the
/// policy (`lp`, differentiable), the policy that sampled it (`old`), and the frozen start
/// (`reference`; ignored when `beta` is 0). `weight` is 1/(B·G·|o|) for B questions per batch.
///
/// The clipped surrogate is written branch by branch so its gradient is exactly PPO's: for
/// Â ≥ 0 it is r·Â while r ≤ 1+ε and the constant (1+ε)·Â beyond; for Â < 0, r·Â while
/// r ≥ 1−ε and (1−ε)·Â below. At π_θ = π_old, r = 1 and every token takes the r·Â branch.
pub fn grpo_term(
    lp: &Tensor,
    old: &[f64],
    reference: Option<&[f64]>,
    advantage: f64,
    clip_eps: f64,
    beta: f64,
    weight: f64,
) -> Result<GrpoTerm> {
    let n = lp.dim(0)?;
    if old.len() != n || reference.is_some_and(|r| r.len() != n) {
        candle_core::bail!("grpo: log-probabilities of different lengths");
    }
    let dev = lp.device();
    let dtype = lp.dtype();
    let old_t = Tensor::new(old, dev)?.to_dtype(dtype)?;
    let ratio = (lp - &old_t)?.exp()?;
    let r_vals: Vec<f64> = ratio.to_dtype(candle_core::DType::F64)?.to_vec1()?;
    let (mut keep, mut konst) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut clipped = 0;
    for &r in &r_vals {
        let (inside, bound) = if advantage >= 0.0 {
            (r <= 1.0 + clip_eps, 1.0 + clip_eps)
        } else {
            (r >= 1.0 - clip_eps, 1.0 - clip_eps)
        };
        if inside {
            keep.push(1.0);
            konst.push(0.0);
        } else {
            clipped += 1;
            keep.push(0.0);
            konst.push(bound);
        }
    }
    let keep = Tensor::new(keep, dev)?.to_dtype(dtype)?;
    let konst = Tensor::new(konst, dev)?.to_dtype(dtype)?;
    let surrogate = ((ratio * keep)? + konst)?.affine(advantage, 0.0)?;
    let (objective, kl_sum) = match reference {
        Some(r) if beta != 0.0 => {
            let ref_t = Tensor::new(r, dev)?.to_dtype(dtype)?;
            // k3 = π_ref/π_θ − log(π_ref/π_θ) − 1, with d = log π_ref − log π_θ.
            let d = (ref_t - lp)?;
            let k3 = ((d.exp()? - &d)? - 1.0)?;
            let kl_sum = k3
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            ((surrogate - k3.affine(beta, 0.0)?)?, kl_sum)
        }
        Some(r) => {
            // β = 0: the KL is still measured for the log, never differentiated.
            let lpv: Vec<f64> = lp.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            let kl_sum = r
                .iter()
                .zip(&lpv)
                .map(|(r, l)| {
                    let d = r - l;
                    d.exp() - d - 1.0
                })
                .sum();
            (surrogate, kl_sum)
        }
        None => (surrogate, 0.0),
    };
    let loss = objective.sum_all()?.affine(-weight, 0.0)?;
    Ok(GrpoTerm {
        loss,
        kl_sum,
        clipped,
    })
}

/// What one DPO pair contributes.
pub struct DpoTerm {
    pub loss: Tensor,
    /// β·[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]: the implicit reward
    /// margin (TRL's `rewards/margins`).
    pub margin: f64,
}

/// `−weight · log σ(β·[(Σ lp_w − ref_w) − (Σ lp_l − ref_l)])` (METHOD.md §7.2), from the
/// per-token log-probabilities of the chosen and rejected answers and the reference's summed
/// log-probabilities of each.
pub fn dpo_term(
    lp_chosen: &Tensor,
    lp_rejected: &Tensor,
    ref_chosen: f64,
    ref_rejected: f64,
    beta: f64,
    weight: f64,
) -> Result<DpoTerm> {
    let z = ((lp_chosen.sum_all()? - lp_rejected.sum_all()?)? - (ref_chosen - ref_rejected))?
        .affine(beta, 0.0)?;
    let margin = z.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    // −log σ(z) = softplus(−z) = log(1 + e^{−z}), written stably for either sign of z.
    let neg = z.neg()?;
    let softplus = (neg.relu()? + (neg.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(DpoTerm {
        loss: softplus.affine(weight, 0.0)?,
        margin,
    })
}

/// [`dpo_term`] split at the two answers' summed log-probabilities: the loss depends on each
/// answer only through its sum, so its weight gradient is `∂L/∂Σlp_w · ∇Σlp_w + ∂L/∂Σlp_l ·
/// ∇Σlp_l`, and each answer's forward can be backpropagated on its own (a layer at a time) from
/// `Σlp · ∂L/∂Σlp`. Returns the term (its loss on detached sums: no graph to the weights) and
/// the two partial derivatives, taken through the same ops on leaves holding the sums, so they
/// are the values (in the sums' dtype) a backward through both forwards carries there.
pub fn dpo_term_at_sums(
    sum_chosen: &Tensor,
    sum_rejected: &Tensor,
    ref_chosen: f64,
    ref_rejected: f64,
    beta: f64,
    weight: f64,
) -> Result<(DpoTerm, f64, f64)> {
    let leaf_w = candle_core::Var::from_tensor(&sum_chosen.detach())?;
    let leaf_l = candle_core::Var::from_tensor(&sum_rejected.detach())?;
    let term = dpo_term(
        leaf_w.as_tensor(),
        leaf_l.as_tensor(),
        ref_chosen,
        ref_rejected,
        beta,
        weight,
    )?;
    let grads = term.loss.backward()?;
    let partial = |leaf: &candle_core::Var| -> Result<f64> {
        match grads.get(leaf.as_tensor()) {
            Some(g) => g.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>(),
            None => Ok(0.0),
        }
    };
    let (gw, gl) = (partial(&leaf_w)?, partial(&leaf_l)?);
    Ok((
        DpoTerm {
            loss: term.loss.detach(),
            margin: term.margin,
        },
        gw,
        gl,
    ))
}

/// `−weight · Σ_t lp_t` (METHOD.md §7.3); `weight` = 1 / (tokens in the batch) makes the batch
/// loss the mean token NLL.
pub fn sft_term(lp: &Tensor, weight: f64) -> Result<Tensor> {
    lp.sum_all()?.affine(-weight, 0.0)
}
