//! A Hugging Face checkpoint folder: `config.json`, `*.safetensors` (single or sharded),
//! `tokenizer.json`, `tokenizer_config.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;

use super::checkpoint::{check_float_dtype, Checkpoint};
use crate::model::arch::{ConfigFields, QkNorm};
use crate::model::config::{bounds, count_in, finite_above};
use crate::model::config::{Family, ModelConfig};
use crate::model::error::{ModelError, Result};
use crate::model::files;
use crate::model::text::tokenizer::TextTokenizer;
use crate::model::weights::Weights;

/// Reads a checkpoint folder; weights converted to `dtype` on `device`.
pub fn load_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Checkpoint> {
    check_float_dtype(dtype)?;
    let config_json = read_json(&dir.join("config.json"))?;
    let config = config_from_hf_json(&config_json)?;
    let weights = load_weights(dir, device, dtype)?;
    let tok_config = match dir.join("tokenizer_config.json") {
        p if files::exists(&p) => Some(read_json(&p)?),
        _ => None,
    };
    let tokenizer = load_tokenizer(dir, &config, tok_config.as_ref())?;
    let chat_template = match &tok_config {
        Some(tc) => chat_template_from(tc, dir)?,
        None => chat_template_file(dir)?,
    };
    Ok(Checkpoint {
        config,
        weights,
        tokenizer,
        chat_template,
    })
}

fn read_json(path: &Path) -> Result<Json> {
    let name = path
        .file_name()
        .map_or_else(|| "JSON file".into(), |n| n.to_string_lossy().into_owned());
    let text = files::read_text_capped(path, &name, files::CONFIG_MAX_BYTES)?;
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
    /// An integer field, checked against `range` (see [`crate::model::config::bounds`]).
    fn count_opt(&self, key: &str, range: (u64, u64)) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_u64().ok_or_else(|| {
                    ModelError::Config(format!(
                        "config.json `{key}` should be a non-negative integer, got {v}"
                    ))
                })?;
                count_in(&format!("config.json `{key}`"), x, range).map(Some)
            }
        }
    }
    fn count(&self, key: &str, range: (u64, u64)) -> Result<usize> {
        self.count_opt(key, range)?
            .ok_or_else(|| ModelError::Config(format!("config.json has no `{key}`")))
    }
    /// A number field that must be finite and above `min`.
    fn above_opt(&self, key: &str, min: f64) -> Result<Option<f64>> {
        match self.f64_opt(key)? {
            None => Ok(None),
            Some(x) => finite_above(&format!("config.json `{key}`"), x, min).map(Some),
        }
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

impl ConfigFields for Fields<'_> {
    fn count_opt(&self, key: &str, range: (u64, u64)) -> Result<Option<usize>> {
        Fields::count_opt(self, key, range)
    }
    fn above_opt(&self, key: &str, min: f64) -> Result<Option<f64>> {
        Fields::above_opt(self, key, min)
    }
    fn strings_opt(&self, key: &str) -> Option<Vec<String>> {
        let list = self.get(key)?.as_array()?;
        list.iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    }
    fn field(&self, key: &str) -> String {
        format!("config.json `{key}`")
    }
}

fn family_of(model_type: Option<&str>, architectures: &[&str]) -> Result<Family> {
    let by_type = Family::from_hf_model_type;
    let by_arch = Family::from_hf_architecture;
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
    Err(ModelError::UnsupportedArch {
        arch,
        supported: crate::model::arch::supported_names(),
    })
}

fn token_ids(v: Option<&Json>, key: &str) -> Result<Vec<u32>> {
    match v {
        None | Some(Json::Null) => Ok(vec![]),
        // Never truncated or wrapped: an id beyond u32 is refused (the vocabulary check in
        // `ModelConfig::check` then refuses ids beyond the model's vocabulary).
        Some(v @ Json::Number(_)) => Ok(vec![token_id(v, key)?]),
        Some(Json::Array(xs)) => xs.iter().map(|x| token_id(x, key)).collect(),
        Some(other) => Err(ModelError::Config(format!(
            "config.json `{key}` should be an id or a list of ids, got {other}"
        ))),
    }
}

fn token_id(v: &Json, key: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| {
            ModelError::Config(format!(
                "config.json `{key}` holds {v}, which is not a token id (an integer from 0 to {})",
                u32::MAX
            ))
        })
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
    let arch = family.arch();
    let defaults = arch.defaults();

    let n_layers = f.count("num_hidden_layers", bounds::N_LAYERS)?;
    let d_model = f.count("hidden_size", bounds::D_MODEL)?;
    let n_heads = match f.count_opt("num_attention_heads", bounds::N_HEADS)? {
        Some(h) => h,
        None => defaults
            .n_heads
            .ok_or_else(|| ModelError::Config("config.json has no `num_attention_heads`".into()))?,
    };
    let n_kv_heads = f
        .count_opt("num_key_value_heads", bounds::N_HEADS)?
        .unwrap_or(n_heads);
    if n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
        return Err(ModelError::Config(format!(
            "config.json head counts are inconsistent: num_attention_heads={n_heads}, \
             num_key_value_heads={n_kv_heads}"
        )));
    }
    let head_dim = match (
        f.count_opt("head_dim", bounds::HEAD_DIM)?,
        defaults.head_dim,
    ) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) if d_model % n_heads == 0 => d_model / n_heads,
        (None, None) => {
            return Err(ModelError::Config(format!(
                "config.json `hidden_size` {d_model} is not a multiple of `num_attention_heads` \
                 {n_heads}, and there is no `head_dim`"
            )))
        }
    };
    let vocab_size = match f.count_opt("vocab_size", bounds::VOCAB)? {
        Some(v) => v,
        None => defaults
            .vocab_size
            .ok_or_else(|| ModelError::Config("config.json has no `vocab_size`".into()))?,
    };
    let rms_norm_eps = f.above_opt("rms_norm_eps", 0.0)?.unwrap_or(1e-6);
    let rope_theta = match f.above_opt("rope_theta", 1.0)? {
        Some(t) => t,
        None => rope_theta_from_parameters(&f)?.unwrap_or(defaults.rope_theta),
    };
    let tie_embeddings = match f.bool_opt("tie_word_embeddings")? {
        Some(t) => t,
        None => top
            .bool_opt("tie_word_embeddings")?
            .unwrap_or(defaults.tie_embeddings),
    };
    let attention_bias = f.bool_opt("attention_bias")?.unwrap_or(false);
    let bos = token_ids(
        f.get("bos_token_id").or(top.get("bos_token_id")),
        "bos_token_id",
    )?;
    let eos = token_ids(
        f.get("eos_token_id").or(top.get("eos_token_id")),
        "eos_token_id",
    )?;
    let mut config = ModelConfig {
        family,
        n_layers,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        d_ff: f.count("intermediate_size", bounds::D_FF)?,
        vocab_size,
        rms_norm_eps,
        rope_theta,
        max_position: f
            .count_opt("max_position_embeddings", bounds::CONTEXT)?
            .unwrap_or(4096),
        tie_embeddings,
        attention_bias,
        qk_norm: arch.qk_norm() != QkNorm::None,
        gemma: None,
        bos_token_id: bos.first().copied(),
        eos_token_ids: eos,
        rope_scaling: rope_scaling(&f)?,
    };
    arch.read_hf(&mut config, &f)?;
    config.check("config.json")?;
    Ok(config)
}

/// `rope_scaling` of config.json: llama3 and linear are applied; any other scheme is refused
/// rather than silently ignored.
fn rope_scaling(f: &Fields) -> Result<crate::model::config::RopeScaling> {
    use crate::model::config::RopeScaling;
    let Some(r) = f.get("rope_scaling") else {
        return Ok(RopeScaling::None);
    };
    let kind = r
        .get("rope_type")
        .or_else(|| r.get("type"))
        .and_then(Json::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        let x = r
            .get(k)
            .and_then(Json::as_f64)
            .ok_or_else(|| ModelError::Config(format!("rope_scaling ({kind}) needs `{k}`")))?;
        finite_above(&format!("config.json `rope_scaling.{k}`"), x, 0.0)
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
    match p.get("rope_theta").and_then(Json::as_f64) {
        None => Ok(None),
        Some(t) => finite_above("config.json `rope_parameters.rope_theta`", t, 1.0).map(Some),
    }
}

// ---------------------------------------------------------------------------------------------
// weights

const INDEX: &str = "model.safetensors.index.json";

/// The shard index's `weight_map` (tensor name → file name), if the folder has an index.
fn shard_index(dir: &Path) -> Result<Option<HashMap<String, String>>> {
    let index = dir.join(INDEX);
    if !files::exists(&index) {
        return Ok(None);
    }
    let json = read_json(&index)?;
    let map = json
        .get("weight_map")
        .and_then(Json::as_object)
        .ok_or_else(|| {
            ModelError::Format(format!("`{}` has no `weight_map` object", index.display()))
        })?;
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(f) => Ok((k.clone(), f.to_string())),
            None => Err(ModelError::Format(format!(
                "`{}` maps `{k}` to {v}, not a file name",
                index.display()
            ))),
        })
        .collect::<Result<HashMap<_, _>>>()
        .map(Some)
}

/// The safetensors files of a folder: those named by the shard index, else every `*.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if let Some(map) = shard_index(dir)? {
        let names: BTreeSet<&str> = map.values().map(String::as_str).collect();
        let paths: Vec<PathBuf> = names.iter().map(|f| dir.join(f)).collect();
        for p in &paths {
            if !files::exists(p) {
                return Err(ModelError::Io(format!(
                    "shard `{}` listed in {INDEX} is missing",
                    p.display()
                )));
            }
            files::check_regular(p, "safetensors shard")?;
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

/// Whether a tensor of a checkpoint is a buffer the forward recomputes from the config (older
/// Llama exports save rotary inverse frequencies), not a weight.
fn is_derived_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// Whether a safetensors file names any of the language model's weights, from its header
/// alone (an 8-byte length, then a JSON object keyed by tensor name), the file left at its
/// start. A header that cannot be read that way counts as holding weights: the full read then
/// says what is wrong with it.
fn holds_weights(f: &mut std::fs::File, len: u64) -> bool {
    use std::io::{Read, Seek};
    // The safetensors crate's own cap on a header.
    const MAX_HEADER: u64 = 100_000_000;
    let names = (|| -> Option<Vec<String>> {
        let mut n = [0u8; 8];
        f.read_exact(&mut n).ok()?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n > len.saturating_sub(8) {
            return None;
        }
        let mut header = vec![0u8; usize::try_from(n).ok()?];
        f.read_exact(&mut header).ok()?;
        let map: serde_json::Map<String, Json> = serde_json::from_slice(&header).ok()?;
        Some(map.into_iter().map(|(k, _)| k).collect())
    })();
    let rewound = f.rewind().is_ok();
    match names {
        Some(names) if rewound => names
            .iter()
            .any(|n| !is_derived_buffer(n) && normalize_hf_name(n).is_some()),
        _ => true,
    }
}

fn load_weights(dir: &Path, device: &Device, dtype: DType) -> Result<Weights> {
    use std::io::Read;
    let index = shard_index(dir)?;
    let mut weights = Weights::default();
    // Which file each weight came from, to name both files of a duplicate.
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    for file in weight_files(dir)? {
        let (mut f, len) = files::open_regular(&file, "safetensors file")?;
        if index.is_none() && !holds_weights(&mut f, len) {
            // Another file of the folder (a checkpoint's optimizer moments, LoRA factors): not
            // read. A checkpoint of SmolLM2-135M loaded at 2.65 GB peak RSS in 6.2 s reading its
            // 1.08 GB optimizer.safetensors beside the 0.54 GB model.
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.read_to_end(&mut bytes)
            .map_err(|e| ModelError::Io(format!("cannot read `{}`: {e}", file.display())))?;
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
                ModelError::Format(format!(
                    "`{}` is not a readable safetensors file (truncated or corrupted?): {e}",
                    file.display()
                ))
            })?;
        drop(bytes);
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut names: Vec<String> = tensors.keys().cloned().collect();
        names.sort();
        let mut tensors = tensors;
        for raw in names {
            let Some(t) = tensors.remove(&raw) else {
                continue;
            };
            if is_derived_buffer(&raw) {
                continue;
            }
            let Some(name) = normalize_hf_name(&raw) else {
                continue;
            };
            if let Some(map) = &index {
                match map.get(&raw) {
                    Some(f) if *f == file_name => {}
                    // The index says another shard holds this tensor: that copy is the one.
                    Some(_) => continue,
                    None => {
                        return Err(ModelError::Format(format!(
                            "`{}` holds tensor `{raw}`, which {INDEX} does not list",
                            file.display()
                        )))
                    }
                }
            }
            if !matches!(
                t.dtype(),
                DType::F16 | DType::BF16 | DType::F32 | DType::F64
            ) {
                return Err(ModelError::Format(format!(
                    "`{}`: tensor `{raw}` is stored as {:?}; weights must be floating point \
                     (F16, BF16, F32 or F64)",
                    file.display(),
                    t.dtype()
                )));
            }
            if let Some(first) = origin.get(&name) {
                return Err(ModelError::Format(format!(
                    "tensor `{name}` is in both `{}` and `{}`; without {INDEX} saying which, \
                     rlq will not pick one",
                    first.display(),
                    file.display()
                )));
            }
            origin.insert(name.clone(), file.clone());
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
    if !files::exists(&path) {
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
        None | Some(Json::Null) => chat_template_file(dir),
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
fn chat_template_file(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if files::exists(&jinja) {
        let text = files::read_text_capped(&jinja, "chat template", files::TEMPLATE_MAX_BYTES)?;
        return Ok(Some(text));
    }
    let json = dir.join("chat_template.json");
    if !files::exists(&json) {
        return Ok(None);
    }
    Ok(read_json(&json)?
        .get("chat_template")
        .and_then(Json::as_str)
        .map(str::to_string))
}
