//! Writing a model as a Hugging Face folder: `config.json`, `model.safetensors`, `tokenizer.json`
//! and `tokenizer_config.json` (with the chat template). The inverse of
//! [`super::safetensors_dir::load_dir`]: weights are stored under the HF names and in the HF
//! layout rlq keeps in memory (q/k rows in HF order, Gemma norms as `w − 1`), so both rlq's
//! `load` and transformers' `AutoModelForCausalLM.from_pretrained` read the folder back.
//!
//! Output is deterministic: safetensors orders tensors by dtype and name, JSON objects are
//! written with sorted keys, so the same weights give byte-identical files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{json, Value as Json};

use super::checkpoint::{check_manifest, PresentTensor};
use super::deferred::{self, Deferred};
use crate::model::config::{ModelConfig, RopeScaling};
use crate::model::error::{ModelError, Result};
use crate::model::Model;

/// Files [`write_hf_folder`] writes, in the order it writes them.
pub const HF_FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// HF `config.json` for a config. Fails for what HF cannot express (per-frequency rope factors
/// from a GGUF's `rope_freqs`).
pub fn hf_config_json(c: &ModelConfig, dtype: DType) -> Result<Json> {
    let a = c.family.arch();
    let (arch, model_type, act) = (
        a.hf_architectures()[0],
        a.hf_model_types()[0],
        a.hf_activation(),
    );
    let torch_dtype = match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        other => {
            return Err(ModelError::Format(format!(
                "cannot save weights of dtype {other:?}"
            )))
        }
    };
    let mut m: BTreeMap<&'static str, Json> = BTreeMap::new();
    m.insert("architectures", json!([arch]));
    m.insert("model_type", json!(model_type));
    m.insert("hidden_size", json!(c.d_model));
    m.insert("intermediate_size", json!(c.d_ff));
    m.insert("num_hidden_layers", json!(c.n_layers));
    m.insert("num_attention_heads", json!(c.n_heads));
    m.insert("num_key_value_heads", json!(c.n_kv_heads));
    m.insert("head_dim", json!(c.head_dim));
    m.insert("vocab_size", json!(c.vocab_size));
    m.insert("rms_norm_eps", json!(c.rms_norm_eps));
    m.insert("rope_theta", json!(c.rope_theta));
    m.insert("max_position_embeddings", json!(c.max_position));
    m.insert("tie_word_embeddings", json!(c.tie_embeddings));
    m.insert("hidden_act", json!(act));
    m.insert("torch_dtype", json!(torch_dtype));
    if let Some(b) = c.bos_token_id {
        m.insert("bos_token_id", json!(b));
    }
    match c.eos_token_ids.as_slice() {
        [] => {}
        [one] => {
            m.insert("eos_token_id", json!(one));
        }
        many => {
            m.insert("eos_token_id", json!(many));
        }
    }
    match &c.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            m.insert(
                "rope_scaling",
                json!({"rope_type": "linear", "factor": factor}),
            );
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position,
        } => {
            m.insert(
                "rope_scaling",
                json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position,
                }),
            );
        }
        RopeScaling::Factors(_) => {
            return Err(ModelError::Format(
                "this model's rope uses per-frequency factors (a GGUF `rope_freqs`), which an HF \
                 config.json cannot express"
                    .into(),
            ))
        }
    }
    a.to_hf(c, &mut m);
    serde_json::to_value(m).map_err(|e| ModelError::Format(e.to_string()))
}

/// Write `model` (weights from `weights`, HF names → tensors of one dtype) into the existing,
/// empty folder `dir`. The caller makes it atomic (write into a temporary folder, then rename).
/// `weights` must be the architecture's manifest exactly (checked first, as a load would), so a
/// folder is never written that rlq or transformers could not read back.
pub fn write_hf_folder(model: &Model, weights: &HashMap<String, Tensor>, dir: &Path) -> Result<()> {
    let list: Vec<Deferred> = weights
        .iter()
        .map(|(n, t)| Deferred::of(n.clone(), t))
        .collect();
    write_hf_folder_deferred(model, &list, dir)
}

/// [`write_hf_folder`] with weights made one at a time while `model.safetensors` is written
/// (LoRA's merged weights): the folder never needs a second copy of the model in memory.
pub fn write_hf_folder_deferred(model: &Model, weights: &[Deferred<'_>], dir: &Path) -> Result<()> {
    let present: Vec<PresentTensor> = weights
        .iter()
        .map(|d| PresentTensor {
            hf_name: Some(d.name.clone()),
            file_name: d.name.clone(),
            shape: d.shape.clone(),
        })
        .collect();
    check_manifest(&model.config, &present)?;
    let io = |what: &str, e: &dyn std::fmt::Display| {
        ModelError::Io(format!("cannot write {what} in `{}`: {e}", dir.display()))
    };
    let dtype = weights.first().map(|d| d.dtype).unwrap_or(model.dtype);
    if let Some(d) = weights.iter().find(|d| d.dtype != dtype) {
        return Err(ModelError::Format(format!(
            "weights of one dtype expected; `{}` is {:?}, others {dtype:?}",
            d.name, d.dtype
        )));
    }
    let config = hf_config_json(&model.config, dtype)?;
    write_json(&dir.join("config.json"), &config).map_err(|e| io("config.json", &e))?;
    deferred::save(weights, &dir.join("model.safetensors"))
        .map_err(|e| io("model.safetensors", &e))?;
    if let Some(tok) = model.tokenizer.inner() {
        let text = tok.to_string(false).map_err(|e| io("tokenizer.json", &e))?;
        std::fs::write(dir.join("tokenizer.json"), text).map_err(|e| io("tokenizer.json", &e))?;
    }
    let mut tc: BTreeMap<&str, Json> = BTreeMap::new();
    if let Some(t) = &model.chat_template {
        tc.insert("chat_template", json!(t));
    }
    let piece = |id: Option<u32>| id.and_then(|i| model.tokenizer.id_to_piece(i));
    if let Some(b) = piece(model.tokenizer.bos_id) {
        tc.insert("bos_token", json!(b));
    }
    if let Some(e) = piece(model.config.eos_token_ids.first().copied()) {
        tc.insert("eos_token", json!(e));
    }
    tc.insert("tokenizer_class", json!("PreTrainedTokenizerFast"));
    // rlq's own tokenizer never adds BOS itself (templates write it); say so for transformers.
    tc.insert("add_bos_token", json!(false));
    let tc = serde_json::to_value(tc).map_err(|e| io("tokenizer_config.json", &e))?;
    write_json(&dir.join("tokenizer_config.json"), &tc)
        .map_err(|e| io("tokenizer_config.json", &e))?;
    Ok(())
}

/// Pretty JSON with a trailing newline (serde_json's maps are sorted: deterministic bytes).
pub fn write_json(path: &Path, value: &Json) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text)
}
