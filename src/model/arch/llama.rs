//! Llama (and SmolLM2, Llama 3.x): the reference shape every trait default describes.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::Arch;
use crate::model::ModelConfig;

pub struct Llama;

impl Arch for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["llama"]
    }
    fn hf_architectures(&self) -> &'static [&'static str] {
        &["LlamaForCausalLM"]
    }
    /// `convert_hf_to_gguf.py` (`LlamaModel`) permutes q/k rows for llama.cpp's NORM rope.
    fn gguf_rope_rows_permuted(&self) -> bool {
        true
    }
    fn to_hf(&self, c: &ModelConfig, m: &mut BTreeMap<&'static str, Json>) {
        m.insert("attention_bias", json!(c.attention_bias));
        m.insert("mlp_bias", json!(false));
    }
}
