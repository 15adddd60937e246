//! Model layer: loading checkpoints (hf-hub, safetensors folders, GGUF), tokenizers and chat
//! templates, and the hooked forward that attribution differentiates through.
//! Knows nothing about the rlq language.

// The parts, bottom to top (ARCHITECTURE.md draws the arrows): `error`, `files`, `config`;
// `kernels`; `weights`, `text`, `arch`; `Model` (here) and its text methods (`prompt`);
// `forward`; `loading`. No part imports one above it.
pub mod arch;
pub mod config;
mod error;
pub mod files;
pub mod forward;
pub mod kernels;
pub mod loading;
pub mod prompt;
pub mod text;
pub mod weights;

// The modules' paths from before the sub-folders (`rlq::model::hooked::HookedTransformer`,
// `rlq::model::load::expected_weights`, ...), which tests, examples, benches and the other
// layers use.
pub use forward::{attention, generate, hooked, hooks, mlp, packing};
pub use kernels::{fused, ops};
#[cfg(any(test, feature = "test-support"))]
pub use loading::synthetic;
pub use loading::{deferred, gguf, gguf_header, hub, load, safetensors_dir, save};
pub use text::{chat, tokenizer};
pub use weights::{linear, qmatrix};

pub use config::{Family, GemmaExtras, ModelConfig, RopeScaling};
pub use error::{ModelError, Result};
pub use loading::checkpoint::Checkpoint;
pub use loading::load::{
    device_from_str, dtype_from_str, load, validate_weights, LoadOptions, ModelInfo,
};
pub use text::chat::ChatTemplate;
pub use text::tokenizer::TextTokenizer;
pub use weights::Weights;

use candle_core::{DType, Device};

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
