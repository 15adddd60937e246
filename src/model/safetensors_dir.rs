//! A Hugging Face checkpoint folder: `config.json`, `*.safetensors` (single or sharded),
//! `tokenizer.json`, `tokenizer_config.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;

use super::{
    Checkpoint, Family, GemmaExtras, ModelConfig, ModelError, Result, TextTokenizer, Weights,
};

/// Reads a checkpoint folder; weights converted to `dtype` on `device`.
pub fn load_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Checkpoint> {
    super::load::check_float_dtype(dtype)?;
    let config_json = read_json(&dir.join("config.json"))?;
    let config = config_from_hf_json(&config_json)?;
    let weights = load_weights(dir, device, dtype)?;
    let tok_config = match dir.join("tokenizer_config.json") {
        p if p.is_file() => Some(read_json(&p)?),
        _ => None,
    };
    let tokenizer = load_tokenizer(dir, &config, tok_config.as_ref())?;
    let chat_template = match &tok_config {
        Some(tc) => chat_template_from(tc, dir)?,
        None => chat_template_file(dir),
    };
    Ok(Checkpoint {
        config,
        weights,
        tokenizer,
        chat_template,
    })
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ModelError::Io(format!("cannot read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Format(format!("`{}` is not valid JSON: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// config.json → ModelConfig

/// Typed access to config.json fields with messages naming the field.
struct Fields<'a>(&'a serde_json::Map<String, Json>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Json> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                ModelError::Config(format!(
                    "config.json `{key}` should be a non-negative integer, got {v}"
                ))
            }),
        }
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| ModelError::Config(format!("config.json has no `{key}`")))
    }
    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                ModelError::Config(format!("config.json `{key}` should be a number, got {v}"))
            }),
        }
    }
    fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                ModelError::Config(format!("config.json `{key}` should be true/false, got {v}"))
            }),
        }
    }
}

fn family_of(model_type: Option<&str>, architectures: &[&str]) -> Result<Family> {
    let by_type = |t: &str| match t {
        "llama" => Some(Family::Llama),
        "mistral" => Some(Family::Mistral),
        "qwen2" => Some(Family::Qwen2),
        "qwen3" => Some(Family::Qwen3),
        "gemma3" | "gemma3_text" => Some(Family::Gemma3),
        _ => None,
    };
    let by_arch = |a: &str| match a {
        "LlamaForCausalLM" => Some(Family::Llama),
        "MistralForCausalLM" => Some(Family::Mistral),
        "Qwen2ForCausalLM" => Some(Family::Qwen2),
        "Qwen3ForCausalLM" => Some(Family::Qwen3),
        "Gemma3ForCausalLM" | "Gemma3ForConditionalGeneration" => Some(Family::Gemma3),
        _ => None,
    };
    if let Some(f) = model_type.and_then(by_type) {
        return Ok(f);
    }
    if let Some(f) = architectures.iter().find_map(|a| by_arch(a)) {
        return Ok(f);
    }
    let arch = model_type
        .map(str::to_string)
        .or_else(|| architectures.first().map(|s| s.to_string()))
        .unwrap_or_else(|| "<none given: config.json has no model_type/architectures>".into());
    Err(ModelError::UnsupportedArch { arch })
}

fn token_ids(v: Option<&Json>, key: &str) -> Result<Vec<u32>> {
    match v {
        None | Some(Json::Null) => Ok(vec![]),
        Some(Json::Number(n)) => n
            .as_u64()
            .map(|x| vec![x as u32])
            .ok_or_else(|| ModelError::Config(format!("config.json `{key}` is not a token id"))),
        Some(Json::Array(xs)) => xs
            .iter()
            .map(|x| {
                x.as_u64().map(|x| x as u32).ok_or_else(|| {
                    ModelError::Config(format!("config.json `{key}` holds a non-id {x}"))
                })
            })
            .collect(),
        Some(other) => Err(ModelError::Config(format!(
            "config.json `{key}` should be an id or a list of ids, got {other}"
        ))),
    }
}

/// Maps an HF `config.json` onto [`ModelConfig`] (nested `text_config` of multimodal Gemma 3 too).
pub fn config_from_hf_json(json: &Json) -> Result<ModelConfig> {
    let outer = json
        .as_object()
        .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
    let architectures: Vec<&str> = outer
        .get("architectures")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let model_type = outer.get("model_type").and_then(Json::as_str);
    // Multimodal wrappers keep the language model's fields in `text_config`.
    let inner = outer.get("text_config").and_then(Json::as_object);
    let inner_type = inner
        .and_then(|t| t.get("model_type"))
        .and_then(Json::as_str);
    let family = family_of(inner_type.or(model_type), &architectures)?;
    let f = Fields(inner.unwrap_or(outer));
    let top = Fields(outer);
    let gemma = family == Family::Gemma3;

    let n_layers = f.usize("num_hidden_layers")?;
    let d_model = f.usize("hidden_size")?;
    let n_heads = f
        .usize_opt("num_attention_heads")?
        .unwrap_or(if gemma { 8 } else { 0 });
    let n_kv_heads = f.usize_opt("num_key_value_heads")?.unwrap_or(n_heads);
    if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(ModelError::Config(format!(
            "config.json head counts are inconsistent: num_attention_heads={n_heads}, \
             num_key_value_heads={n_kv_heads}"
        )));
    }
    let head_dim = match f.usize_opt("head_dim")? {
        Some(h) => h,
        None if gemma => 256,
        None => d_model / n_heads,
    };
    let vocab_size = match f.usize_opt("vocab_size")? {
        Some(v) => v,
        None if gemma => 262_208,
        None => return Err(ModelError::Config("config.json has no `vocab_size`".into())),
    };
    let rms_norm_eps = f.f64_opt("rms_norm_eps")?.unwrap_or(1e-6);
    let rope_theta = match f.f64_opt("rope_theta")? {
        Some(t) => t,
        None => rope_theta_from_parameters(&f)?.unwrap_or(if gemma { 1e6 } else { 1e4 }),
    };
    let tie_embeddings = match f.bool_opt("tie_word_embeddings")? {
        Some(t) => t,
        None => top.bool_opt("tie_word_embeddings")?.unwrap_or(gemma),
    };
    let attention_bias = match family {
        Family::Qwen2 => true,
        _ => f.bool_opt("attention_bias")?.unwrap_or(false),
    };
    let gemma_extras = if gemma {
        let pattern = match f.usize_opt("sliding_window_pattern")? {
            Some(p) => p,
            None => layer_types_pattern(&f).unwrap_or(6),
        };
        Some(GemmaExtras {
            query_pre_attn_scalar: f
                .f64_opt("query_pre_attn_scalar")?
                .unwrap_or(head_dim as f64),
            sliding_window: f.usize_opt("sliding_window")?.unwrap_or(4096),
            sliding_window_pattern: pattern,
            rope_local_base_freq: f.f64_opt("rope_local_base_freq")?.unwrap_or(10_000.0),
            final_logit_softcapping: f.f64_opt("final_logit_softcapping")?,
            attn_logit_softcapping: f.f64_opt("attn_logit_softcapping")?,
        })
    } else {
        None
    };
    let bos = token_ids(
        f.get("bos_token_id").or(top.get("bos_token_id")),
        "bos_token_id",
    )?;
    let eos = token_ids(
        f.get("eos_token_id").or(top.get("eos_token_id")),
        "eos_token_id",
    )?;
    Ok(ModelConfig {
        family,
        n_layers,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        d_ff: f.usize("intermediate_size")?,
        vocab_size,
        rms_norm_eps,
        rope_theta,
        max_position: f.usize_opt("max_position_embeddings")?.unwrap_or(4096),
        tie_embeddings,
        attention_bias,
        qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
        gemma: gemma_extras,
        bos_token_id: bos.first().copied(),
        eos_token_ids: eos,
        rope_scaling: rope_scaling(&f)?,
    })
}

/// `rope_scaling` of config.json: llama3 and linear are applied; any other scheme is refused
/// rather than silently ignored.
fn rope_scaling(f: &Fields) -> Result<super::config::RopeScaling> {
    use super::config::RopeScaling;
    let Some(r) = f.get("rope_scaling") else {
        return Ok(RopeScaling::None);
    };
    let kind = r
        .get("rope_type")
        .or_else(|| r.get("type"))
        .and_then(Json::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        r.get(k)
            .and_then(Json::as_f64)
            .ok_or_else(|| ModelError::Config(format!("rope_scaling ({kind}) needs `{k}`")))
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(ModelError::Config(format!(
                "rope_scaling `{other}` is not supported (supported: linear, llama3)"
            )))
        }
    })
}

/// Newer transformers write `rope_parameters: {rope_theta}` (or per layer type) instead.
fn rope_theta_from_parameters(f: &Fields) -> Result<Option<f64>> {
    let Some(p) = f.get("rope_parameters") else {
        return Ok(None);
    };
    let p = p.get("full_attention").unwrap_or(p);
    Ok(p.get("rope_theta").and_then(Json::as_f64))
}

/// Gemma 3's `layer_types` list: the pattern is the distance between global layers.
fn layer_types_pattern(f: &Fields) -> Option<usize> {
    let types = f.get("layer_types")?.as_array()?;
    let first_global = types
        .iter()
        .position(|t| t.as_str() == Some("full_attention"))?;
    Some(first_global + 1)
}

// ---------------------------------------------------------------------------------------------
// weights

/// The safetensors files of a folder: those named by the shard index, else every `*.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| {
                ModelError::Format(format!("`{}` has no `weight_map` object", index.display()))
            })?;
        let files: BTreeSet<&str> = map.values().filter_map(Json::as_str).collect();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(ModelError::Io(format!(
                "shard `{}` listed in model.safetensors.index.json is missing",
                missing.display()
            )));
        }
        return Ok(paths);
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ModelError::Io(format!("cannot list `{}`: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::Io(format!(
            "`{}` has no *.safetensors weights",
            dir.display()
        )));
    }
    Ok(files)
}

/// Multimodal and newer checkpoints nest the language model; bring names back to `model.*`.
/// Returns `None` for tensors outside the language model (vision tower, projector).
pub fn normalize_hf_name(name: &str) -> Option<String> {
    for (from, to) in [
        ("model.language_model.", "model."),
        ("language_model.model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ] {
        if let Some(rest) = name.strip_prefix(from) {
            return Some(format!("{to}{rest}"));
        }
    }
    if name.starts_with("model.") || name.starts_with("lm_head.") {
        Some(name.to_string())
    } else {
        None
    }
}

fn load_weights(dir: &Path, device: &Device, dtype: DType) -> Result<Weights> {
    let mut weights = Weights::default();
    for file in weight_files(dir)? {
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| {
                ModelError::Format(format!(
                    "`{}` is not a readable safetensors file (truncated or corrupted?): {e}",
                    file.display()
                ))
            })?;
        for (name, t) in tensors {
            let Some(name) = normalize_hf_name(&name) else {
                continue;
            };
            let t = t.to_dtype(dtype)?.to_device(device)?;
            weights.insert(name, t);
        }
    }
    Ok(weights)
}

// ---------------------------------------------------------------------------------------------
// tokenizer + chat template

fn load_tokenizer(
    dir: &Path,
    cfg: &ModelConfig,
    tok_config: Option<&Json>,
) -> Result<TextTokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(ModelError::Tokenizer(format!(
            "`{}` has no tokenizer.json (only fast HF tokenizers are supported)",
            dir.display()
        )));
    }
    let mut tok = TextTokenizer::from_file(&path)?;
    // Special tokens named in tokenizer_config.json win over config.json ids when both exist.
    let named = |key: &str| -> Option<u32> {
        let v = tok_config?.get(key)?;
        let s = v
            .as_str()
            .or_else(|| v.get("content").and_then(Json::as_str))?;
        tok.token_id(s)
    };
    let (named_bos, named_eos) = (named("bos_token"), named("eos_token"));
    tok.bos_id = named_bos.or(cfg.bos_token_id);
    let mut eos = cfg.eos_token_ids.clone();
    if let Some(e) = named_eos {
        if !eos.contains(&e) {
            eos.insert(0, e);
        }
    }
    tok.eos_ids = eos;
    Ok(tok)
}

/// `chat_template` may be a string or a list of `{name, template}`; the `default` one is used.
fn chat_template_from(tok_config: &Json, dir: &Path) -> Result<Option<String>> {
    match tok_config.get("chat_template") {
        None | Some(Json::Null) => Ok(chat_template_file(dir)),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(list)) => {
            let named = |n: &str| {
                list.iter().find_map(|e| {
                    (e.get("name")?.as_str()? == n)
                        .then(|| e.get("template")?.as_str().map(str::to_string))
                        .flatten()
                })
            };
            let first = list
                .iter()
                .find_map(|e| e.get("template")?.as_str().map(str::to_string));
            Ok(named("default").or(first))
        }
        Some(other) => Err(ModelError::Config(format!(
            "tokenizer_config.json `chat_template` should be a string or a list, got {}",
            other
        ))),
    }
}

/// Newer checkpoints ship the template as `chat_template.jinja` (or `chat_template.json`).
fn chat_template_file(dir: &Path) -> Option<String> {
    if let Ok(s) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some(s);
    }
    let json: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("chat_template.json")).ok()?)
            .ok()?;
    json.get("chat_template")?.as_str().map(str::to_string)
}
