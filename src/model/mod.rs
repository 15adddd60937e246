//! Model layer: loading checkpoints (hf-hub, safetensors folders, GGUF), tokenizers and chat
//! templates, and the hooked forward that attribution differentiates through.
//! Knows nothing about the rlq language.

pub mod config;
pub mod generate;
pub mod hooked;
pub mod hooks;
pub mod ops;
pub mod synthetic;
pub mod weights;

pub use config::{Family, GemmaExtras, ModelConfig};
pub use weights::Weights;

use candle_core::{DType, Device};

/// Errors of the model layer. Messages are written for the person who typed the `load`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Io(String),
    #[error("unsupported architecture `{arch}`; supported: llama, mistral, qwen2, qwen3, gemma3")]
    UnsupportedArch { arch: String },
    #[error("missing weight `{0}`")]
    MissingWeight(String),
    #[error("weight `{name}` has shape {got:?}, expected {expected:?}")]
    BadShape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("bad model file: {0}")]
    Format(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// A loaded checkpoint: shapes, weights under HF names, tokenizer and chat template.
pub struct Model {
    pub config: ModelConfig,
    pub weights: Weights,
    pub source: String,
    pub device: Device,
    pub dtype: DType,
}
