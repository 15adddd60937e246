//! Everything that changes a tuning run's result, in one value: saved in every checkpoint and
//! compared field by field when a run is resumed, so a resume can never mix settings.

use serde::{Deserialize, Serialize};

use super::lora::LoraConfig;
use super::objective::{AdvantageNorm, Method};
use super::optim::AdamWConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneSettings {
    pub method: Method,
    /// Optimiser steps (batches).
    pub steps: usize,
    /// Questions (GRPO), pairs (DPO) or targets (SFT) per step.
    pub batch: usize,
    /// Answers sampled per question (GRPO's G; also how many the start model samples per
    /// question when DPO pairs or SFT targets are built from its own answers).
    pub group: usize,
    pub lr: f64,
    /// GRPO's KL coefficient, or DPO's β.
    pub beta: f64,
    /// GRPO's ε.
    pub clip: f64,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: usize,
    /// Answers are not stopped before this many tokens (absent in checkpoints made before it:
    /// 0).
    #[serde(default)]
    pub min_tokens: usize,
    /// Fraction of steps with linear warmup.
    pub warmup: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    pub seed: u64,
    /// GRPO: optimiser updates per sampled batch.
    pub inner: usize,
    pub advantage: AdvantageNorm,
    /// Added to the reward of an answer that stops by itself and holds a number.
    pub format_reward: f64,
    pub adamw: AdamWConfig,
    /// Compute dtype of the trained weights (`f32`, or `f64` for exact checks).
    pub dtype: String,
    /// LoRA adapters instead of a full fine-tune (absent in checkpoints made before LoRA).
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

impl TuneSettings {
    /// The defaults for a method: the paper's Appendix B where it names them (AdamW β 0.9/0.99,
    /// weight decay 0.1, warmup 0.1, cosine, grad-norm clip 0.1, 8 generations), METHOD.md §7
    /// for β and ε; lr 1e-5 (the paper's 5e-6 is for billion-parameter models; small models
    /// need more — the log shows the choice).
    pub fn defaults(method: Method) -> Self {
        Self {
            method,
            steps: 20,
            batch: 2,
            group: 8,
            lr: 1e-5,
            beta: match method {
                Method::Dpo => 0.1,
                _ => 0.04,
            },
            clip: 0.2,
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 128,
            min_tokens: 0,
            warmup: 0.1,
            grad_clip: 0.1,
            seed: 0,
            inner: 1,
            advantage: AdvantageNorm::Std,
            format_reward: 0.0,
            adamw: AdamWConfig::default(),
            dtype: "f32".into(),
            lora: None,
        }
    }

    /// Refuse settings that cannot run, naming the field; called before any work starts.
    pub fn validate(&self) -> Result<(), String> {
        let whole = |name: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(format!(
                    "{name} must be a whole number in {lo}..={hi}, not {v}"
                ))
            } else {
                Ok(())
            }
        };
        whole("steps", self.steps, 1, 1_000_000)?;
        whole("batch", self.batch, 1, 4096)?;
        whole("max_tokens", self.max_tokens, 1, 1 << 16)?;
        whole("inner", self.inner, 1, 64)?;
        whole("min_tokens", self.min_tokens, 0, self.max_tokens)?;
        if self.method == Method::Grpo && self.group < 2 {
            return Err(format!(
                "group must be at least 2 for grpo (advantages compare answers within a group), not {}",
                self.group
            ));
        }
        whole("group", self.group, 1, 1024)?;
        let finite = |name: &str, v: f64, ok: bool, what: &str| {
            if !v.is_finite() || !ok {
                Err(format!("{name} must be a finite number {what}, not {v}"))
            } else {
                Ok(())
            }
        };
        finite("lr", self.lr, self.lr > 0.0 && self.lr <= 1.0, "in (0, 1]")?;
        finite("beta", self.beta, self.beta >= 0.0, "≥ 0")?;
        if self.method == Method::Dpo && self.beta == 0.0 {
            return Err("beta must be > 0 for dpo (it scales the preference margin)".into());
        }
        finite(
            "clip",
            self.clip,
            self.clip > 0.0 && self.clip < 1.0,
            "in (0, 1)",
        )?;
        finite(
            "temperature",
            self.temperature,
            self.temperature >= 0.0 && self.temperature <= 100.0,
            "in [0, 100]",
        )?;
        if self.method == Method::Grpo && self.temperature == 0.0 {
            return Err(
                "temperature 0 makes every answer of a group the same: grpo needs sampling (> 0)"
                    .into(),
            );
        }
        finite(
            "top_p",
            self.top_p,
            self.top_p > 0.0 && self.top_p <= 1.0,
            "in (0, 1]",
        )?;
        finite(
            "warmup",
            self.warmup,
            (0.0..1.0).contains(&self.warmup),
            "in [0, 1)",
        )?;
        finite(
            "grad_clip",
            self.grad_clip,
            self.grad_clip >= 0.0,
            "≥ 0 (0: no clipping)",
        )?;
        finite("format_reward", self.format_reward, true, "")?;
        if let Some(l) = &self.lora {
            whole("lora", l.rank, 1, 4096)?;
            finite("lora_alpha", l.alpha, l.alpha > 0.0, "> 0")?;
        }
        if !matches!(self.dtype.as_str(), "f32" | "f64") {
            return Err(format!(
                "dtype must be f32 or f64 for tuning, not {}",
                self.dtype
            ));
        }
        Ok(())
    }

    /// Fields that differ from `other`, as `name: ours vs theirs` (for resume refusals).
    pub fn differences(&self, other: &TuneSettings) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["settings could not be compared".into()];
        };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| {
                format!(
                    "{k}: {v} now vs {} in the checkpoint",
                    b.get(k).cloned().unwrap_or_default()
                )
            })
            .collect()
    }
}
