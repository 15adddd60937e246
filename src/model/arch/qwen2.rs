//! Qwen2 / Qwen2.5: Llama's shape with biases on q, k and v (always: HF's Qwen2 has no switch).

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::{Arch, ConfigFields};
use crate::model::{ModelConfig, Result};

pub struct Qwen2;

impl Arch for Qwen2 {
    fn name(&self) -> &'static str {
        "qwen2"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen2"]
    }
    fn hf_architectures(&self) -> &'static [&'static str] {
        &["Qwen2ForCausalLM"]
    }
    fn read_hf(&self, c: &mut ModelConfig, _f: &dyn ConfigFields) -> Result<()> {
        c.attention_bias = true;
        Ok(())
    }
    fn to_hf(&self, _c: &ModelConfig, m: &mut BTreeMap<&'static str, Json>) {
        m.insert("use_sliding_window", json!(false));
        m.insert("sliding_window", Json::Null);
    }
    fn tiny(&self, c: &mut ModelConfig) {
        c.attention_bias = true;
    }
}
