//! Qwen3: Llama's shape with a per-head RMSNorm on q and k before rope.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::{Arch, QkNorm};
use crate::model::ModelConfig;

pub struct Qwen3;

impl Arch for Qwen3 {
    fn name(&self) -> &'static str {
        "qwen3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["qwen3"]
    }
    fn hf_architectures(&self) -> &'static [&'static str] {
        &["Qwen3ForCausalLM"]
    }
    fn qk_norm(&self) -> QkNorm {
        QkNorm::PerHead
    }
    fn to_hf(&self, _c: &ModelConfig, m: &mut BTreeMap<&'static str, Json>) {
        m.insert("use_sliding_window", json!(false));
        m.insert("sliding_window", Json::Null);
    }
}
