//! Model layer: loading checkpoints (hf-hub, safetensors folders, GGUF), tokenizers and chat
//! templates, and the hooked forward that attribution differentiates through.
//! Knows nothing about the rlq language.

pub mod arch;
pub mod attention;
pub mod chat;
pub mod config;
pub mod files;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod gguf_header;
pub mod hooked;
pub mod hooks;
pub mod hub;
pub mod linear;
pub mod load;
pub mod mlp;
pub mod ops;
pub mod prompt;
pub mod qmatrix;
pub mod safetensors_dir;
pub mod save;
pub mod synthetic;
pub mod tokenizer;
pub mod weights;

pub use chat::ChatTemplate;
pub use config::{Family, GemmaExtras, ModelConfig, RopeScaling};
pub use load::{
    device_from_str, dtype_from_str, load, validate_weights, Checkpoint, LoadOptions, ModelInfo,
};
pub use tokenizer::TextTokenizer;
pub use weights::Weights;

use candle_core::{DType, Device};

/// Errors of the model layer. Messages are written for the person who typed the `load`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Io(String),
    #[error(
        "unsupported architecture `{arch}`; supported: {}",
        crate::model::arch::supported_names()
    )]
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
    /// `config.json` (or GGUF metadata) is missing a field or has a wrong type.
    #[error("bad model config: {0}")]
    Config(String),
    /// Device or dtype string that cannot be used in this build.
    #[error("{0}")]
    Device(String),
    /// hf-hub resolution or download failed.
    #[error("hugging face hub: {0}")]
    Hub(String),
    /// Chat template missing, invalid, or failing to render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// A loaded checkpoint: shapes, weights under HF names, tokenizer and chat template.
pub struct Model {
    pub config: ModelConfig,
    pub weights: Weights,
    pub source: String,
    pub device: Device,
    pub dtype: DType,
    pub tokenizer: TextTokenizer,
    /// The checkpoint's own Jinja chat template (GGUF `tokenizer.chat_template` or
    /// `tokenizer_config.json`), if it ships one.
    pub chat_template: Option<String>,
}
