//! OLMo 2 (`allenai/OLMo-2-*`): post-norm (an RMSNorm on each sublayer's output, none on its
//! input) and an RMSNorm over the whole flattened q and k projections.
//!
//! HF `Olmo2ForCausalLM`; llama.cpp's `olmo2` architecture names the tensors `attn_q_norm`,
//! `attn_k_norm`, `post_attention_norm` and `post_ffw_norm` (no `attn_norm`, no `ffn_norm`) and
//! uses NEOX rope, so its converter does not permute q/k rows.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::{Arch, ConfigFields, NormPlacement, QkNorm};
use crate::model::config::bounds;
use crate::model::{ModelConfig, ModelError, Result};

pub struct Olmo2;

impl Arch for Olmo2 {
    fn name(&self) -> &'static str {
        "olmo2"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["olmo2"]
    }
    fn hf_architectures(&self) -> &'static [&'static str] {
        &["Olmo2ForCausalLM"]
    }
    /// llama.cpp also reads OLMo 3 as `olmo2`, with sliding-window layers rlq does not run:
    /// such a file is refused rather than run without its windows.
    fn read_gguf(&self, _c: &mut ModelConfig, m: &dyn ConfigFields) -> Result<()> {
        match m.count_opt("attention.sliding_window", (0, bounds::SLIDING_WINDOW.1))? {
            None | Some(0) => Ok(()),
            Some(w) => Err(ModelError::Config(format!(
                "{} is {w}: sliding-window olmo2 layers (OLMo 3) are not supported",
                m.field("attention.sliding_window")
            ))),
        }
    }
    fn to_hf(&self, c: &ModelConfig, m: &mut BTreeMap<&'static str, Json>) {
        m.insert("attention_bias", json!(c.attention_bias));
    }
    fn norms(&self) -> NormPlacement {
        NormPlacement::Post
    }
    fn qk_norm(&self) -> QkNorm {
        QkNorm::Flat
    }
}
