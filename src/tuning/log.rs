//! The training log: one row per optimiser step, the same columns for every method (a column a
//! method has no value for is empty). The column list is written once, here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// 1-based.
    pub step: usize,
    /// GRPO: mean reward of the batch's answers; DPO: mean implicit reward margin.
    pub reward_mean: Option<f64>,
    /// GRPO: mean over groups of the group's reward std (as TRL logs it); DPO: std of margins.
    pub reward_std: Option<f64>,
    /// GRPO: share of answers graded correct; DPO: share of pairs with a positive margin.
    pub accuracy: Option<f64>,
    /// GRPO: mean k3 KL to the start per answer token.
    pub kl: Option<f64>,
    /// The batch's loss (METHOD.md §7), before the update.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
    /// GRPO: groups whose rewards were all equal (zero advantage: only their KL term acts).
    pub zero_adv_groups: Option<usize>,
    /// GRPO: share of answer tokens where the clipped branch was taken.
    pub clip_frac: Option<f64>,
    /// Mean answer length in tokens (sampled answers for GRPO; trained answers otherwise).
    pub answer_len: f64,
    /// Answer tokens trained on per second of the step (sampling included). Timing: not in
    /// `trainer_state.json`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tokens_per_s: Option<f64>,
    /// Wall-clock seconds of the step. Timing: not in `trainer_state.json`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seconds: Option<f64>,
    /// GRPO: seconds of the step spent sampling the answers (the rest of `seconds` scores them,
    /// differentiates and updates). Timing: not in `trainer_state.json`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sample_s: Option<f64>,
}

/// Column names in table order (the `tune` verb's table follows it).
pub const COLUMNS: [&str; 14] = [
    "step",
    "reward_mean",
    "reward_std",
    "accuracy",
    "kl",
    "loss",
    "grad_norm",
    "lr",
    "zero_adv_groups",
    "clip_frac",
    "answer_len",
    "tokens_per_s",
    "seconds",
    "sample_s",
];

impl LogRow {
    /// The row without its timings (what checkpoints store).
    pub fn without_timing(&self) -> LogRow {
        LogRow {
            tokens_per_s: None,
            seconds: None,
            sample_s: None,
            ..self.clone()
        }
    }
}
