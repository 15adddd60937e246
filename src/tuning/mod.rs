//! Tuning: make a base → tuned pair from one start model (METHOD.md §7) — GRPO, DPO and SFT
//! with AdamW and a cosine schedule, checkpoints HF can read, and exact resume. Knows nothing
//! about the rlq language; the `tune` verb is a thin layer over [`Tuner`].
//!
//! Weight gradients flow through rlq's own forward: trained weights are `Var`s, and the model
//! layer's ops take their differentiable path for a weight that tracks a graph (dense matmul,
//! RMSNorm as a fused unit-weight norm times the weight, the MLP's down projection composed).
//! `tests/tuning.rs` checks every objective's weight gradients against finite differences in f64.
//! `lora r` trains adapters instead ([`lora`]): each frozen projection's output gets
//! `s·(x·Aᵀ)·Bᵀ` added, the frozen weights are held once (shared with the KL reference), and
//! checkpoints hold the merged weights.

pub mod checkpoint;
pub mod log;
pub mod lora;
pub mod objective;
pub mod optim;
pub mod policy;
pub mod settings;
pub mod trainer;

pub use log::LogRow;
pub use lora::LoraConfig;
pub use objective::{AdvantageNorm, Method};
pub use policy::{
    answer_logprobs, answer_logprobs_pieces, runs_within, weights_hash, PackedAnswers, Policy,
};
pub use settings::TuneSettings;
pub use trainer::{Scored, TuneHost, TuneItem, TuneOutcome, Tuner};

/// Errors of a tuning run, each worded for the person who started it.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A setting or the data cannot be used (found before any work starts).
    #[error("{0}")]
    Settings(String),
    /// A resume whose settings, start model or data differ from the checkpoint's.
    #[error("cannot resume: the checkpoint was made differently:\n  {}", .0.join("\n  "))]
    ResumeMismatch(Vec<String>),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("model: {0}")]
    Model(String),
    #[error("{0}")]
    Compute(String),
    /// A tensor operation failed: candle's error, kept whole as the source.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
