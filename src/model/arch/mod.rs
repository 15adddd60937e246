//! Model families as data. Each family has one file here with what really differs between
//! families: its names (HF `model_type`/`architectures`, the GGUF architecture), its config
//! mapping (defaults and family-only fields of `config.json` and GGUF metadata, what a saved
//! `config.json` adds), and its traits (where the norms sit, the q/k norm, activation, embedding
//! scale, per-layer rope and window).
//!
//! Everything else reads those traits instead of naming a family:
//! - [`manifest`] is the one list of weights a config implies; the loaders check files against
//!   it, synthetic models are drawn from it, HF saving writes exactly it, parameter counts sum it,
//!   and the hooked forward reads its weights by the same rules ([`NormPlacement`], [`QkNorm`]);
//! - [`ForwardTraits::of`] resolves the forward's switches once per transformer.
//!
//! Adding a family: a file here implementing [`Arch`], its arm in [`Family::arch`] below, and
//! its variant in [`Family`] (declared in `model::config`, which must not import this folder).
//! Nothing else changes unless the family needs a trait value the forward does not implement yet.

mod gemma3;
mod llama;
mod mistral;
mod olmo2;
mod qwen2;
mod qwen3;

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::model::config::{Family, ModelConfig, RopeScaling};
use crate::model::error::Result;
use crate::model::kernels::ops::GluActivation;

// `Family` is declared in `config` (a config names its family; `config` imports nothing of
// `arch`); what a family means is implemented here.
impl Family {
    /// The family's description: the only place a family is matched on.
    pub fn arch(self) -> &'static dyn Arch {
        match self {
            Family::Llama => &llama::Llama,
            Family::Mistral => &mistral::Mistral,
            Family::Qwen2 => &qwen2::Qwen2,
            Family::Qwen3 => &qwen3::Qwen3,
            Family::Gemma3 => &gemma3::Gemma3,
            Family::Olmo2 => &olmo2::Olmo2,
        }
    }

    pub fn name(self) -> &'static str {
        self.arch().name()
    }

    /// The family of an HF `model_type`.
    pub fn from_hf_model_type(t: &str) -> Option<Family> {
        Self::ALL
            .into_iter()
            .find(|f| f.arch().hf_model_types().contains(&t))
    }

    /// The family of an HF `architectures` entry.
    pub fn from_hf_architecture(a: &str) -> Option<Family> {
        Self::ALL
            .into_iter()
            .find(|f| f.arch().hf_architectures().contains(&a))
    }

    /// The family of a GGUF `general.architecture`.
    pub fn from_gguf_arch(a: &str) -> Option<Family> {
        Self::ALL.into_iter().find(|f| f.arch().gguf_arch() == a)
    }
}

/// The families' names, for messages: `llama, mistral, …`.
pub fn supported_names() -> String {
    Family::ALL.map(Family::name).join(", ")
}

// ---------------------------------------------------------------------------------------------
// traits

/// Where a decoder layer's RMSNorms sit around its two sublayers (attention, MLP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// Llama-style: a norm on each sublayer's input (`input_layernorm`,
    /// `post_attention_layernorm` in front of the MLP).
    Pre,
    /// Gemma-style: norms on each sublayer's input and output (`input_layernorm`,
    /// `post_attention_layernorm`, `pre_feedforward_layernorm`, `post_feedforward_layernorm`).
    Sandwich,
    /// OLMo 2-style: a norm on each sublayer's output only (`post_attention_layernorm`,
    /// `post_feedforward_layernorm`); the sublayers read the raw residual stream.
    Post,
}

impl NormPlacement {
    pub fn normalises_inputs(self) -> bool {
        matches!(self, NormPlacement::Pre | NormPlacement::Sandwich)
    }
    pub fn normalises_outputs(self) -> bool {
        matches!(self, NormPlacement::Sandwich | NormPlacement::Post)
    }
    /// The HF name of the norm in front of the MLP, if there is one (`ffn_norm` in GGUF).
    pub fn mlp_input_norm(self) -> Option<&'static str> {
        match self {
            NormPlacement::Pre => Some("post_attention_layernorm"),
            NormPlacement::Sandwich => Some("pre_feedforward_layernorm"),
            NormPlacement::Post => None,
        }
    }
}

/// How q and k are normalised (RMSNorm) before rope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// Over each head's `head_dim` values, one weight of `[head_dim]` shared by the heads
    /// (Qwen3, Gemma 3).
    PerHead,
    /// Over the whole flattened projection, weights `[n_heads·head_dim]` and
    /// `[n_kv_heads·head_dim]` (OLMo 2): the norm mixes the heads.
    Flat,
}

/// Defaults for fields a `config.json` or GGUF file may leave out.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub n_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: Option<usize>,
    pub rope_theta: f64,
    pub tie_embeddings: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            n_heads: None,
            head_dim: None,
            vocab_size: None,
            rope_theta: 1e4,
            tie_embeddings: false,
        }
    }
}

/// Typed reads of a checkpoint's config fields (config.json, or GGUF metadata under the
/// architecture's prefix), with messages naming the field; implemented by each reader.
pub trait ConfigFields {
    /// An integer field, checked against `range` (see [`super::config::bounds`]).
    fn count_opt(&self, key: &str, range: (u64, u64)) -> Result<Option<usize>>;
    /// A number field that must be finite and above `min`.
    fn above_opt(&self, key: &str, min: f64) -> Result<Option<f64>>;
    /// A list of strings (e.g. HF `layer_types`); `None` if absent or not such a list.
    fn strings_opt(&self, key: &str) -> Option<Vec<String>>;
    /// The field's name as the person sees it, for messages.
    fn field(&self, key: &str) -> String;
}

/// One layer's rotary base, scaling and attention window.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTraits {
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Keys further back than this many positions are masked (sliding-window layers).
    pub window: Option<usize>,
}

impl LayerTraits {
    /// A global layer: the config's base frequency and scaling, no window.
    pub fn global(c: &ModelConfig) -> Self {
        Self {
            rope_theta: c.rope_theta,
            rope_scaling: c.rope_scaling.clone(),
            window: None,
        }
    }
}

/// What one family says about itself. Every method but the names has the Llama answer as its
/// default, so a family file states only where it differs.
pub trait Arch: Sync {
    /// rlq's name (also the `family` column of `info`).
    fn name(&self) -> &'static str;
    /// HF `model_type`s read as this family; the first is written when saving.
    fn hf_model_types(&self) -> &'static [&'static str];
    /// HF `architectures` entries read as this family; the first is written when saving.
    fn hf_architectures(&self) -> &'static [&'static str];
    /// llama.cpp's `general.architecture`.
    fn gguf_arch(&self) -> &'static str {
        self.name()
    }
    /// HF `hidden_act` of the gate.
    fn hf_activation(&self) -> &'static str {
        "silu"
    }

    fn defaults(&self) -> Defaults {
        Defaults::default()
    }
    /// Family-only fields of `config.json`, read after the shared ones into `c`.
    fn read_hf(&self, _c: &mut ModelConfig, _f: &dyn ConfigFields) -> Result<()> {
        Ok(())
    }
    /// Family-only GGUF metadata, read after the shared fields into `c`.
    fn read_gguf(&self, _c: &mut ModelConfig, _m: &dyn ConfigFields) -> Result<()> {
        Ok(())
    }
    /// Family-only keys of a saved `config.json`.
    fn to_hf(&self, _c: &ModelConfig, _m: &mut BTreeMap<&'static str, Json>) {}
    /// Whether llama.cpp's converter permuted q/k rows for its interleaved rope
    /// (`ROPE_TYPE_NORM`); NEOX-rope architectures are written in HF order.
    fn gguf_rope_rows_permuted(&self) -> bool {
        false
    }

    fn norms(&self) -> NormPlacement {
        NormPlacement::Pre
    }
    /// The family's q/k norm. A checkpoint of a family without one that still carries q/k
    /// norm weights (a GGUF `attn_q_norm`) gets the per-head kind.
    fn qk_norm(&self) -> QkNorm {
        QkNorm::None
    }
    fn activation(&self) -> GluActivation {
        GluActivation::Silu
    }
    /// Added to every RMSNorm weight (Gemma stores `w − 1`); GGUF files hold `w + offset`.
    fn norm_offset(&self) -> f64 {
        0.0
    }
    /// Factor on the token embeddings.
    fn embed_scale(&self, _c: &ModelConfig) -> Option<f64> {
        None
    }
    /// Attention scores are `q·k · attn_scale`.
    fn attn_scale(&self, c: &ModelConfig) -> f64 {
        1.0 / (c.head_dim as f64).sqrt()
    }
    /// `(attention scores, final logits)` soft caps `c·tanh(x/c)`.
    fn softcaps(&self, _c: &ModelConfig) -> (Option<f64>, Option<f64>) {
        (None, None)
    }
    fn layer(&self, c: &ModelConfig, _l: usize) -> LayerTraits {
        LayerTraits::global(c)
    }

    /// The family's fields of a tiny synthetic config (see `synthetic::tiny_config`).
    fn tiny(&self, _c: &mut ModelConfig) {}
}

/// The forward's per-family switches, resolved once from a config.
#[derive(Debug, Clone)]
pub struct ForwardTraits {
    pub norms: NormPlacement,
    pub qk_norm: QkNorm,
    pub activation: GluActivation,
    pub norm_offset: f64,
    pub embed_scale: Option<f64>,
    pub attn_scale: f64,
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    /// One entry per layer.
    pub layers: Vec<LayerTraits>,
}

impl ForwardTraits {
    pub fn of(c: &ModelConfig) -> Self {
        let a = c.family.arch();
        let (attn_softcap, final_softcap) = a.softcaps(c);
        Self {
            norms: a.norms(),
            qk_norm: qk_norm_of(c),
            activation: a.activation(),
            norm_offset: a.norm_offset(),
            embed_scale: a.embed_scale(c),
            attn_scale: a.attn_scale(c),
            attn_softcap,
            final_softcap,
            layers: (0..c.n_layers).map(|l| a.layer(c, l)).collect(),
        }
    }

    /// Why per-head sources (or per-head q/k destinations) are not defined for this model, if
    /// they are not: the hooked forward refuses `granularity head` with this reason.
    pub fn head_split_refusal(&self) -> Option<&'static str> {
        if self.norms.normalises_outputs() {
            Some(
                "its post-attention norm mixes the heads, so per-head outputs do not add up to \
                 the block output",
            )
        } else if self.qk_norm == QkNorm::Flat {
            Some("its q/k norm spans all heads, so one head's query cannot read its own copy")
        } else {
            None
        }
    }
}

/// The q/k norm a config implies: none unless the checkpoint has one (`qk_norm`), else the
/// family's kind (per head for a family that names none).
pub fn qk_norm_of(c: &ModelConfig) -> QkNorm {
    match (c.qk_norm, c.family.arch().qk_norm()) {
        (false, _) => QkNorm::None,
        (true, QkNorm::None) => QkNorm::PerHead,
        (true, k) => k,
    }
}

// ---------------------------------------------------------------------------------------------
// the manifest

/// What a weight is, for drawing random values and for the forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    /// Token embedding or unembedding rows.
    Embedding,
    /// A projection `[out, in]`.
    Matrix,
    Bias,
    /// An RMSNorm scale (applied as `w + norm_offset`).
    Norm,
}

/// One weight of the manifest, under its HF name.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: WeightKind,
}

/// Every weight the forward of `c` reads, with the shape it must have (HF names), by layer in
/// forward order (the order synthetic weights are drawn in).
pub fn manifest(c: &ModelConfig) -> Vec<WeightSpec> {
    use WeightKind::*;
    let (d, dh, ff) = (c.d_model, c.head_dim, c.d_ff);
    let q = c.n_heads * dh;
    let kv = c.n_kv_heads * dh;
    let norms = c.family.arch().norms();
    let spec = |name: String, shape: Vec<usize>, kind| WeightSpec { name, shape, kind };
    let mut out = vec![spec(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, d],
        Embedding,
    )];
    for l in 0..c.n_layers {
        let p = format!("model.layers.{l}");
        let mut add = |n: &str, s: Vec<usize>, k| out.push(spec(format!("{p}.{n}"), s, k));
        if norms.normalises_inputs() {
            add("input_layernorm.weight", vec![d], Norm);
        }
        add("self_attn.q_proj.weight", vec![q, d], Matrix);
        add("self_attn.k_proj.weight", vec![kv, d], Matrix);
        add("self_attn.v_proj.weight", vec![kv, d], Matrix);
        if c.attention_bias {
            add("self_attn.q_proj.bias", vec![q], Bias);
            add("self_attn.k_proj.bias", vec![kv], Bias);
            add("self_attn.v_proj.bias", vec![kv], Bias);
        }
        match qk_norm_of(c) {
            QkNorm::None => {}
            QkNorm::PerHead => {
                add("self_attn.q_norm.weight", vec![dh], Norm);
                add("self_attn.k_norm.weight", vec![dh], Norm);
            }
            QkNorm::Flat => {
                add("self_attn.q_norm.weight", vec![q], Norm);
                add("self_attn.k_norm.weight", vec![kv], Norm);
            }
        }
        add("self_attn.o_proj.weight", vec![d, q], Matrix);
        // Under Pre this is the MLP's input norm; under Sandwich and Post the attention output's.
        add("post_attention_layernorm.weight", vec![d], Norm);
        if norms == NormPlacement::Sandwich {
            add("pre_feedforward_layernorm.weight", vec![d], Norm);
        }
        if norms.normalises_outputs() {
            add("post_feedforward_layernorm.weight", vec![d], Norm);
        }
        add("mlp.gate_proj.weight", vec![ff, d], Matrix);
        add("mlp.up_proj.weight", vec![ff, d], Matrix);
        add("mlp.down_proj.weight", vec![d, ff], Matrix);
    }
    out.push(spec("model.norm.weight".into(), vec![d], Norm));
    if !c.tie_embeddings {
        out.push(spec(
            "lm_head.weight".into(),
            vec![c.vocab_size, d],
            Embedding,
        ));
    }
    out
}

impl ModelConfig {
    /// Number of parameters of the weight manifest ([`manifest`]), the embedding counted once
    /// when tied.
    pub fn n_params(&self) -> usize {
        manifest(self)
            .iter()
            .map(|w| w.shape.iter().product::<usize>())
            .sum()
    }
}
