//! GGUF files (llama.cpp): metadata → [`ModelConfig`], every tensor dequantized to the requested
//! dtype/device and renamed to its Hugging Face name, in HF layout.
//!
//! Two layout differences from HF are undone here so the forward never sees GGUF conventions
//! (which families need them is said by their `arch` file: `gguf_rope_rows_permuted`,
//! `norm_offset`):
//! - **Rotary rows of q/k** (llama, mistral): llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel`,
//!   `undo_permute = True`) reorders each head's q_proj/k_proj rows (and biases) with
//!   `reshape(n_head, 2, hd/2, in).swapaxes(1, 2)` so its interleaved-pair rope (ROPE_TYPE_NORM)
//!   reproduces HF's half-split `rotate_half`. We apply the inverse. Qwen2/Qwen3/Gemma3 use NEOX
//!   rope in llama.cpp and their converters do not permute, so their rows are left alone.
//! - **Gemma norms**: HF Gemma3 RMSNorm scales by `(1 + w)`; the converter (`Gemma3Model`,
//!   `norm_shift`) writes `w + 1` for every `*norm.weight`. We subtract 1 again, so weights from
//!   GGUF and from safetensors both follow the HF convention (see [`crate::model::GemmaExtras`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};

use super::checkpoint::{check_float_dtype, check_manifest, Checkpoint, PresentTensor};
use crate::model::config::{Family, ModelConfig};
use crate::model::error::{ModelError, Result};
use crate::model::text::tokenizer::value_as_i64;
use crate::model::text::tokenizer::TextTokenizer;
use crate::model::weights::qmatrix::{is_block_quantized, QMatrix};
use crate::model::weights::Weights;

/// Reads a `.gguf` file into a checkpoint (config, HF-named weights, tokenizer, chat template).
/// With `keep_quantized` (and CPU, f32), block-quantized weight matrices stay quantized in memory
/// ([`QMatrix`]); everything else is dequantized here.
pub fn load_gguf(
    path: &Path,
    device: &Device,
    dtype: DType,
    keep_quantized: bool,
) -> Result<Checkpoint> {
    check_float_dtype(dtype)?;
    let (file, file_size) = crate::model::files::open_regular(path, "GGUF file")?;
    let mut reader = BufReader::new(file);
    let content = super::gguf_header::read_header(&mut reader, file_size).map_err(|e| match e {
        ModelError::Format(m) => ModelError::Format(format!("GGUF `{}`: {m}", path.display())),
        other => other,
    })?;
    let mut config = config_from_metadata(&content)?;
    apply_rope_freqs(&content, &mut reader, &mut config, path)?;
    check_tensor_names(&content, &config)?;
    let keep = keep_quantized && device.is_cpu() && dtype == DType::F32;
    let weights = read_weights(&content, &mut reader, &config, device, dtype, keep, path)?;
    let tokenizer = TextTokenizer::from_gguf_metadata(&content.metadata)?;
    let chat_template = content
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    Ok(Checkpoint {
        config,
        weights,
        tokenizer,
        chat_template,
    })
}

// ---------------------------------------------------------------------------------------------
// metadata → config

fn md_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(f64::from(*x)),
        Value::F64(x) => Some(*x),
        // Integers written where a float is meant (e.g. a rope base of 10000): exact up to 2^53.
        other => value_as_i64(other).map(|x| x as f64),
    }
}

struct Meta<'a> {
    md: &'a HashMap<String, Value>,
    arch: String,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.md.get(&format!("{}.{key}", self.arch))
    }
    fn field(&self, key: &str) -> String {
        format!("GGUF `{}.{key}`", self.arch)
    }
    /// An integer field, checked against `range` (see [`crate::model::config::bounds`]).
    fn count_opt(&self, key: &str, range: (u64, u64)) -> Result<Option<usize>> {
        let what = self.field(key);
        let as_count = |v: &Value| {
            value_as_i64(v)
                .and_then(|x| u64::try_from(x).ok())
                .ok_or_else(|| {
                    ModelError::Config(format!(
                        "{what} should be a non-negative integer, got {v:?}"
                    ))
                })
        };
        let x = match self.get(key) {
            None => return Ok(None),
            // Some converters write per-layer arrays (e.g. head_count_kv); all equal is fine.
            Some(Value::Array(vs)) => {
                let xs = vs.iter().map(as_count).collect::<Result<Vec<u64>>>()?;
                match xs.first() {
                    Some(&x) if xs.iter().all(|&y| y == x) => x,
                    _ => {
                        return Err(ModelError::Config(format!(
                            "{what} varies per layer (or is empty), which rlq does not support"
                        )))
                    }
                }
            }
            Some(v) => as_count(v)?,
        };
        crate::model::config::count_in(&what, x, range).map(Some)
    }
    fn count(&self, key: &str, range: (u64, u64)) -> Result<usize> {
        self.count_opt(key, range)?.ok_or_else(|| {
            ModelError::Config(format!("GGUF metadata has no `{}.{key}`", self.arch))
        })
    }
    /// A number field; present with another type is an error, not a default.
    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => md_f64(v).map(Some).ok_or_else(|| {
                ModelError::Config(format!("{} should be a number, got {v:?}", self.field(key)))
            }),
        }
    }
}

impl crate::model::arch::ConfigFields for Meta<'_> {
    fn count_opt(&self, key: &str, range: (u64, u64)) -> Result<Option<usize>> {
        Meta::count_opt(self, key, range)
    }
    fn above_opt(&self, key: &str, min: f64) -> Result<Option<f64>> {
        match self.f64_opt(key)? {
            None => Ok(None),
            Some(x) => crate::model::config::finite_above(&self.field(key), x, min).map(Some),
        }
    }
    fn strings_opt(&self, key: &str) -> Option<Vec<String>> {
        match self.get(key)? {
            Value::Array(vs) => vs.iter().map(|v| v.to_string().ok().cloned()).collect(),
            _ => None,
        }
    }
    fn field(&self, key: &str) -> String {
        Meta::field(self, key)
    }
}

fn family_of_arch(arch: &str) -> Result<Family> {
    Family::from_gguf_arch(arch).ok_or_else(|| ModelError::UnsupportedArch {
        arch: arch.to_string(),
        supported: crate::model::arch::supported_names(),
    })
}

/// Whether llama.cpp's converter permuted q/k rows for this architecture (see module docs).
pub fn rope_rows_permuted(family: Family) -> bool {
    family.arch().gguf_rope_rows_permuted()
}

/// Maps GGUF metadata onto [`ModelConfig`].
pub fn config_from_metadata(content: &Content) -> Result<ModelConfig> {
    let md = &content.metadata;
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| ModelError::Config("GGUF metadata has no `general.architecture`".into()))?
        .clone();
    let family = family_of_arch(&arch)?;
    let defaults = family.arch().defaults();
    let m = Meta { md, arch };
    use crate::model::config::{bounds, count_in, finite_above};
    let n_layers = m.count("block_count", bounds::N_LAYERS)?;
    let d_model = m.count("embedding_length", bounds::D_MODEL)?;
    let n_heads = m.count("attention.head_count", bounds::N_HEADS)?;
    let n_kv_heads = m
        .count_opt("attention.head_count_kv", bounds::N_HEADS)?
        .unwrap_or(n_heads);
    let head_dim = match (
        m.count_opt("attention.key_length", bounds::HEAD_DIM)?,
        defaults.head_dim,
    ) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) if d_model % n_heads == 0 => d_model / n_heads,
        (None, None) => {
            return Err(ModelError::Config(format!(
                "{} is {d_model}, not a multiple of {} ({n_heads}), and {} is absent",
                m.field("embedding_length"),
                m.field("attention.head_count"),
                m.field("attention.key_length")
            )))
        }
    };
    let d_ff = m.count("feed_forward_length", bounds::D_FF)?;
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .map(|t| t.shape.dims().to_vec())
        .ok_or_else(|| ModelError::MissingWeight("token_embd.weight (GGUF)".into()))?;
    // Gemma's converter trims padding rows from the embedding; the tensor is the truth.
    let rows = embd.first().copied().unwrap_or(0);
    let vocab_size = count_in(
        "the row count of GGUF tensor `token_embd.weight` (the vocabulary size)",
        rows as u64,
        bounds::VOCAB,
    )?;
    let rms_norm_eps = match m.f64_opt("attention.layer_norm_rms_epsilon")? {
        Some(e) => finite_above(&m.field("attention.layer_norm_rms_epsilon"), e, 0.0)?,
        None => 1e-6,
    };
    let rope_theta = match m.f64_opt("rope.freq_base")? {
        Some(t) => finite_above(&m.field("rope.freq_base"), t, 1.0)?,
        None => defaults.rope_theta,
    };
    let max_position = m
        .count_opt("context_length", bounds::CONTEXT)?
        .unwrap_or(4096);
    let tie_embeddings = !content.tensor_infos.contains_key("output.weight");
    let attention_bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");
    let qk_norm = content
        .tensor_infos
        .contains_key("blk.0.attn_q_norm.weight");
    // A special-token id that is present must be a valid id; it is never dropped or wrapped.
    let id = |key: &str| -> Result<Option<u32>> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => value_as_i64(v)
                .and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    ModelError::Config(format!("GGUF `{key}` is not a token id: {v:?}"))
                }),
        }
    };
    let mut eos_token_ids = vec![];
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(x) = id(key)? {
            if !eos_token_ids.contains(&x) {
                eos_token_ids.push(x);
            }
        }
    }
    let mut config = ModelConfig {
        family,
        n_layers,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        d_ff,
        vocab_size,
        rms_norm_eps,
        rope_theta,
        max_position,
        tie_embeddings,
        attention_bias,
        qk_norm,
        gemma: None,
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
        rope_scaling: gguf_rope_scaling(&m)?,
    };
    family.arch().read_gguf(&mut config, &m)?;
    config.check("GGUF metadata")?;
    Ok(config)
}

/// Rotary scaling from GGUF metadata (the `rope_freqs` tensor is read by [`apply_rope_freqs`]).
/// Scaling types rlq does not implement are refused rather than silently ignored.
fn gguf_rope_scaling(m: &Meta) -> Result<crate::model::config::RopeScaling> {
    use crate::model::config::RopeScaling;
    let kind = m
        .get("rope.scaling.type")
        .and_then(|v| v.to_string().ok())
        .cloned();
    match kind.as_deref() {
        None | Some("none") => Ok(RopeScaling::None),
        Some("linear") => match m.f64_opt("rope.scaling.factor")? {
            Some(factor) => Ok(RopeScaling::Linear {
                factor: crate::model::config::finite_above(
                    &m.field("rope.scaling.factor"),
                    factor,
                    0.0,
                )?,
            }),
            None => Err(ModelError::Config(format!(
                "linear rope scaling without a factor ({})",
                m.field("rope.scaling.factor")
            ))),
        },
        Some(other) => Err(ModelError::Config(format!(
            "rope scaling `{other}` is not supported (supported: linear, llama3)"
        ))),
    }
}

/// Per-frequency rope factors (`rope_freqs.weight`, written by llama.cpp's converter for Llama
/// 3.1-style scaling): frequency `i` is divided by factor `i`, on top of any linear factor.
fn apply_rope_freqs(
    content: &Content,
    reader: &mut BufReader<File>,
    config: &mut ModelConfig,
    path: &Path,
) -> Result<()> {
    use crate::model::config::RopeScaling;
    const NAME: &str = "rope_freqs.weight";
    if !content.tensor_infos.contains_key(NAME) {
        return Ok(());
    }
    let bad =
        |msg: String| ModelError::Format(format!("GGUF `{}`: `{NAME}` {msg}", path.display()));
    let factors: Vec<f64> = content
        .tensor(reader, NAME, &Device::Cpu)
        .and_then(|q| q.dequantize(&Device::Cpu))
        .and_then(|t| t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>())
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    let half = config.head_dim / 2;
    if factors.len() != half {
        return Err(bad(format!(
            "has {} factors, but a head of {} dimensions has {half} frequencies",
            factors.len(),
            config.head_dim
        )));
    }
    if let Some(f) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        return Err(bad(format!(
            "holds the factor {f}; factors must be positive"
        )));
    }
    let linear = match config.rope_scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor } => factor,
        ref other => {
            return Err(bad(format!(
                "cannot be combined with rope scaling {other:?}"
            )))
        }
    };
    config.rope_scaling = RopeScaling::Factors(factors.iter().map(|f| f * linear).collect());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tensor names

/// The HF name of a GGUF tensor, or `None` for tensors rlq does not use (e.g. `rope_freqs`).
pub fn hf_name(gguf_name: &str, family: Family) -> Option<String> {
    let top = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    // GGUF's `ffn_norm` is the norm in front of the MLP, whatever HF calls it.
    let mlp_norm = family.arch().norms().mlp_input_norm();
    let hf = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => mlp_norm?,
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

// ---------------------------------------------------------------------------------------------
// rotary row permutation

/// llama.cpp's HF→GGUF permutation of q/k rows (`LlamaModel.permute`), for tests and tools:
/// within each head, rows `[j * hd/2 + i]` move to `[2 * i + j]`.
pub fn permute_rope_rows(t: &Tensor, n_heads: usize) -> Result<Tensor> {
    reorder_rows(t, n_heads, true)
}

/// The inverse of [`permute_rope_rows`]: GGUF interleaved-pair layout → HF half-split layout.
pub fn unpermute_rope_rows(t: &Tensor, n_heads: usize) -> Result<Tensor> {
    reorder_rows(t, n_heads, false)
}

/// [`unpermute_rope_rows`] as a row order: row `i` of the HF layout is row `order[i]` of the
/// GGUF layout. Used to reorder quantized rows without dequantizing them.
pub fn rope_row_order(rows: usize, n_heads: usize) -> Result<Vec<usize>> {
    let idx: Vec<f64> = (0..rows).map(|i| i as f64).collect();
    let t = Tensor::from_vec(idx, (rows, 1), &Device::Cpu)?;
    let order = unpermute_rope_rows(&t, n_heads)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    Ok(order.into_iter().map(|x| x as usize).collect())
}

fn reorder_rows(t: &Tensor, n_heads: usize, to_gguf: bool) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if n_heads == 0 || !rows.is_multiple_of(2 * n_heads) {
        return Err(ModelError::Format(format!(
            "cannot split {rows} rows into {n_heads} rotary heads"
        )));
    }
    let half = rows / n_heads / 2;
    let rest: Vec<usize> = dims[1..].to_vec();
    let split = |a: usize, b: usize| {
        let mut s = vec![n_heads, a, b];
        s.extend(&rest);
        s
    };
    // HF view: (head, 2, half, ..); GGUF view: (head, half, 2, ..). Swapping axes 1, 2 maps one
    // onto the other in either direction.
    let from = if to_gguf {
        split(2, half)
    } else {
        split(half, 2)
    };
    let out = t
        .reshape(from)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// tensors

/// GGUF tensors rlq reads that are not weights of the forward.
const AUX_TENSORS: [&str; 1] = ["rope_freqs.weight"];

/// The tensor table against the architecture's manifest, before any tensor data is read.
fn check_tensor_names(content: &Content, cfg: &ModelConfig) -> Result<()> {
    let present: Vec<PresentTensor> = content
        .tensor_infos
        .iter()
        .filter(|(name, _)| !AUX_TENSORS.contains(&name.as_str()))
        .map(|(name, info)| PresentTensor {
            hf_name: hf_name(name, cfg.family),
            file_name: name.clone(),
            shape: info.shape.dims().to_vec(),
        })
        .collect();
    check_manifest(cfg, &present)
}

fn read_weights(
    content: &Content,
    reader: &mut BufReader<File>,
    cfg: &ModelConfig,
    device: &Device,
    dtype: DType,
    keep_quantized: bool,
    path: &Path,
) -> Result<Weights> {
    let mut weights = Weights::default();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for gguf_name in names {
        let Some(name) = hf_name(gguf_name, cfg.family) else {
            continue;
        };
        // Read on the CPU (any quant type candle reads); keep block-quantized matrices as they
        // are if asked, else dequantize in f32; fix the layout; convert.
        let q = content
            .tensor(reader, gguf_name, &Device::Cpu)
            .map_err(|e| {
                ModelError::Format(format!(
                    "GGUF `{}`: cannot read tensor `{gguf_name}` (truncated or corrupted?): {e}",
                    path.display()
                ))
            })?;
        let rope_heads = if !rope_rows_permuted(cfg.family) {
            None
        } else if name.contains(".self_attn.q_proj.") {
            Some(cfg.n_heads)
        } else if name.contains(".self_attn.k_proj.") {
            Some(cfg.n_kv_heads)
        } else {
            None
        };
        if keep_quantized && is_block_quantized(q.dtype()) && q.shape().rank() == 2 {
            let mut m = QMatrix::new(q)?;
            if let Some(heads) = rope_heads {
                m = m.permute_rows(&rope_row_order(m.rows(), heads)?)?;
            }
            weights.insert_quantized(name, m);
            continue;
        }
        let mut t = q.dequantize(&Device::Cpu)?;
        if let Some(heads) = rope_heads {
            t = unpermute_rope_rows(&t, heads)?;
        }
        let norm_offset = cfg.family.arch().norm_offset();
        if norm_offset != 0.0 && name.ends_with("norm.weight") {
            t = (t - norm_offset)?;
        }
        let t = t.to_dtype(dtype)?.to_device(device)?;
        weights.insert(name, t);
    }
    Ok(weights)
}
