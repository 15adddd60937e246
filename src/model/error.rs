//! The model layer's error type: the bottom of `model`, imported by every part of it.

/// Errors of the model layer. Messages are written for the person who typed the `load`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Io(String),
    /// `supported` lists the families (`arch::supported_names`), filled where the error is made
    /// so that this module stays below `arch`.
    #[error("unsupported architecture `{arch}`; supported: {supported}")]
    UnsupportedArch { arch: String, supported: String },
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
