//! Losses on logits that attribution differentiates (METHOD.md section 3).

use candle_core::{IndexOp, Result, Tensor};

use crate::model::ops::{log_softmax_last_dim, softmax_last_dim};

/// Which loss to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Cross-entropy of the model on its own greedy answer, truncated to T_cut tokens.
    SelfEntropy,
    /// Cross-entropy on a given target answer.
    Nll,
    /// `logit[wrong] − logit[target]` at the last prompt position (lower is better, like a loss).
    LogitDiff,
    /// KL(clean ‖ current) of the next-token distributions over the answer positions.
    Kl,
}

impl LossKind {
    pub const NAMES: [&'static str; 4] = ["self_entropy", "nll", "logit_diff", "kl"];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "self_entropy" => LossKind::SelfEntropy,
            "nll" => LossKind::Nll,
            "logit_diff" => LossKind::LogitDiff,
            "kl" => LossKind::Kl,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            LossKind::SelfEntropy => "self_entropy",
            LossKind::Nll => "nll",
            LossKind::LogitDiff => "logit_diff",
            LossKind::Kl => "kl",
        }
    }
}

/// Everything a loss needs besides the logits.
#[derive(Debug, Clone)]
pub enum LossTarget {
    /// Mean negative log-likelihood of `targets[t]` predicted at position `start + t`.
    Tokens { start: usize, targets: Vec<u32> },
    /// Mean negative log-likelihood of `targets[i]` predicted at `positions[i]`.
    Picked {
        positions: Vec<usize>,
        targets: Vec<u32>,
    },
    /// `logit[wrong] − logit[target]` at `position`.
    LogitDiff {
        position: usize,
        target: u32,
        wrong: u32,
    },
    /// Mean KL(clean ‖ current) over positions `start..start+len`; `clean` holds the clean
    /// run's probabilities at those positions, `[len, vocab]`.
    Kl {
        start: usize,
        len: usize,
        clean: Tensor,
    },
}

impl LossTarget {
    /// The first position whose logits the loss reads.
    pub fn first_position(&self) -> usize {
        match self {
            LossTarget::Tokens { start, .. } | LossTarget::Kl { start, .. } => *start,
            LossTarget::LogitDiff { position, .. } => *position,
            LossTarget::Picked { positions, .. } => positions.first().copied().unwrap_or(0),
        }
    }

    /// The same loss on logits that start at position `by` (see `Hooks::logits_from`).
    pub fn shifted(&self, by: usize) -> LossTarget {
        let mut t = self.clone();
        match &mut t {
            LossTarget::Tokens { start, .. } | LossTarget::Kl { start, .. } => *start -= by,
            LossTarget::LogitDiff { position, .. } => *position -= by,
            LossTarget::Picked { positions, .. } => {
                for p in positions.iter_mut() {
                    *p -= by;
                }
            }
        }
        t
    }
}

/// The scalar loss for `logits` `[seq, vocab]`.
pub fn loss(logits: &Tensor, target: &LossTarget) -> Result<Tensor> {
    match target {
        LossTarget::Tokens { start, targets } => {
            let n = targets.len();
            if n == 0 {
                candle_core::bail!("the loss needs at least one answer token");
            }
            let lp = log_softmax_last_dim(&logits.narrow(0, *start, n)?)?;
            let idx = Tensor::new(targets.as_slice(), logits.device())?.unsqueeze(1)?;
            let picked = lp.gather(&idx, 1)?; // [n, 1]
            (picked.sum_all()? * (-1.0 / n as f64))?.reshape(())
        }
        LossTarget::Picked { positions, targets } => {
            let n = targets.len();
            if n == 0 || positions.len() != n {
                candle_core::bail!("the loss needs one position per answer token, at least one");
            }
            // The rows the loss reads, then exactly the computation of `Tokens`: on contiguous
            // positions the two give the same bits.
            let rows: Vec<u32> = positions
                .iter()
                .map(|&p| u32::try_from(p))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| candle_core::Error::Msg("loss position out of range".into()))?;
            let rows = Tensor::new(rows.as_slice(), logits.device())?;
            let lp = log_softmax_last_dim(&logits.index_select(&rows, 0)?)?;
            let idx = Tensor::new(targets.as_slice(), logits.device())?.unsqueeze(1)?;
            let picked = lp.gather(&idx, 1)?; // [n, 1]
            (picked.sum_all()? * (-1.0 / n as f64))?.reshape(())
        }
        LossTarget::LogitDiff {
            position,
            target,
            wrong,
        } => {
            let row = logits.i(*position)?;
            (row.i(*wrong as usize)? - row.i(*target as usize)?)?.reshape(())
        }
        LossTarget::Kl { start, len, clean } => {
            let lp = log_softmax_last_dim(&logits.narrow(0, *start, *len)?)?;
            // Σ p_clean (log p_clean − log p); 0·log 0 terms are dropped by clamping.
            let log_clean = clean.clamp(1e-30, 1.0)?.log()?;
            let kl = (clean * (log_clean - lp)?)?.sum_all()?;
            (kl * (1.0 / *len as f64))?.reshape(())
        }
    }
}

/// Next-token probabilities at `start..start+len` (the clean reference for the KL loss).
pub fn probs_at(logits: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    softmax_last_dim(&logits.narrow(0, start, len)?)?
        .detach()
        .contiguous()
}
