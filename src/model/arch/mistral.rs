//! Mistral: Llama's shape; its `config.json` also speaks of a sliding window, which rlq's
//! Mistral checkpoints do not use.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::Arch;
use crate::model::ModelConfig;

pub struct Mistral;

impl Arch for Mistral {
    fn name(&self) -> &'static str {
        "mistral"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["mistral"]
    }
    fn hf_architectures(&self) -> &'static [&'static str] {
        &["MistralForCausalLM"]
    }
    /// Converted as `LlamaModel`: q/k rows permuted.
    fn gguf_rope_rows_permuted(&self) -> bool {
        true
    }
    fn to_hf(&self, c: &ModelConfig, m: &mut BTreeMap<&'static str, Json>) {
        m.insert("attention_bias", json!(c.attention_bias));
        m.insert("mlp_bias", json!(false));
        m.insert("use_sliding_window", json!(false));
        m.insert("sliding_window", Json::Null);
    }
}
