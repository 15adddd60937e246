//! Gemma 3 (text): sandwich norms stored as `w − 1`, GeGLU, embeddings scaled by √d, a custom
//! attention scale, optional soft caps, and sliding-window local layers with their own rope
//! base between periodic global layers.
//!
//! Norm weights are kept in the **HF convention** (the scale is `1 + w`) whatever the source:
//! llama.cpp's converter writes `w + 1`, which the GGUF loader undoes with [`Arch::norm_offset`].

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::{Arch, ConfigFields, Defaults, LayerTraits, NormPlacement, QkNorm};
use crate::model::config::{bounds, RopeScaling};
use crate::model::kernels::ops::GluActivation;
use crate::model::{GemmaExtras, ModelConfig, Result};

pub struct Gemma3;

/// Whether layer `l` is a sliding-window (local) layer: all but every `pattern`-th.
fn is_local(g: &GemmaExtras, l: usize) -> bool {
    !(l + 1).is_multiple_of(g.sliding_window_pattern.max(1))
}

impl Arch for Gemma3 {
    fn name(&self) -> &'static str {
        "gemma3"
    }
    fn hf_model_types(&self) -> &'static [&'static str] {
        &["gemma3_text", "gemma3"]
    }
    fn hf_architectures(&self) -> &'static [&'static str] {
        &["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"]
    }
    fn hf_activation(&self) -> &'static str {
        "gelu_pytorch_tanh"
    }
    /// HF `Gemma3TextConfig`'s defaults.
    fn defaults(&self) -> Defaults {
        Defaults {
            n_heads: Some(8),
            head_dim: Some(256),
            vocab_size: Some(262_208),
            rope_theta: 1e6,
            tie_embeddings: true,
        }
    }

    fn read_hf(&self, c: &mut ModelConfig, f: &dyn ConfigFields) -> Result<()> {
        let pattern = match f.count_opt("sliding_window_pattern", bounds::WINDOW_PATTERN)? {
            Some(p) => p,
            // Newer configs list `layer_types`; the pattern is the distance between globals.
            None => f
                .strings_opt("layer_types")
                .and_then(|t| t.iter().position(|s| s == "full_attention"))
                .map_or(6, |first_global| first_global + 1),
        };
        c.gemma = Some(GemmaExtras {
            query_pre_attn_scalar: f
                .above_opt("query_pre_attn_scalar", 0.0)?
                .unwrap_or(c.head_dim as f64),
            sliding_window: f
                .count_opt("sliding_window", bounds::SLIDING_WINDOW)?
                .unwrap_or(4096),
            sliding_window_pattern: pattern,
            rope_local_base_freq: f
                .above_opt("rope_local_base_freq", 1.0)?
                .unwrap_or(10_000.0),
            final_logit_softcapping: f.above_opt("final_logit_softcapping", 0.0)?,
            attn_logit_softcapping: f.above_opt("attn_logit_softcapping", 0.0)?,
        });
        Ok(())
    }

    fn read_gguf(&self, c: &mut ModelConfig, m: &dyn ConfigFields) -> Result<()> {
        c.gemma = Some(GemmaExtras {
            // llama.cpp: 1/sqrt(head_dim), except Gemma 3 27B (62 layers): 1/sqrt(d_model/n_heads).
            query_pre_attn_scalar: if c.n_layers == 62 {
                (c.d_model / c.n_heads) as f64
            } else {
                c.head_dim as f64
            },
            sliding_window: m
                .count_opt("attention.sliding_window", bounds::SLIDING_WINDOW)?
                .unwrap_or(4096),
            // llama.cpp hard-codes these for gemma3 (swa pattern 6, local rope base 10k).
            sliding_window_pattern: 6,
            rope_local_base_freq: 10_000.0,
            final_logit_softcapping: m.above_opt("final_logit_softcapping", 0.0)?,
            attn_logit_softcapping: m.above_opt("attn_logit_softcapping", 0.0)?,
        });
        Ok(())
    }

    fn to_hf(&self, c: &ModelConfig, m: &mut BTreeMap<&'static str, Json>) {
        let Some(g) = &c.gemma else { return };
        m.insert("query_pre_attn_scalar", json!(g.query_pre_attn_scalar));
        m.insert("sliding_window", json!(g.sliding_window));
        m.insert("sliding_window_pattern", json!(g.sliding_window_pattern));
        m.insert("rope_local_base_freq", json!(g.rope_local_base_freq));
        m.insert("final_logit_softcapping", json!(g.final_logit_softcapping));
        m.insert("attn_logit_softcapping", json!(g.attn_logit_softcapping));
        let types: Vec<&str> = (0..c.n_layers)
            .map(|l| {
                if is_local(g, l) {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        m.insert("layer_types", json!(types));
    }

    fn norms(&self) -> NormPlacement {
        NormPlacement::Sandwich
    }
    fn qk_norm(&self) -> QkNorm {
        QkNorm::PerHead
    }
    fn activation(&self) -> GluActivation {
        GluActivation::GeluTanh
    }
    fn norm_offset(&self) -> f64 {
        1.0
    }
    fn embed_scale(&self, c: &ModelConfig) -> Option<f64> {
        Some((c.d_model as f64).sqrt())
    }
    fn attn_scale(&self, c: &ModelConfig) -> f64 {
        match &c.gemma {
            Some(g) => 1.0 / g.query_pre_attn_scalar.sqrt(),
            None => 1.0 / (c.head_dim as f64).sqrt(),
        }
    }
    fn softcaps(&self, c: &ModelConfig) -> (Option<f64>, Option<f64>) {
        c.gemma.as_ref().map_or((None, None), |g| {
            (g.attn_logit_softcapping, g.final_logit_softcapping)
        })
    }
    /// Local layers rotate at their own base frequency, never scaled, inside the window.
    fn layer(&self, c: &ModelConfig, l: usize) -> LayerTraits {
        match &c.gemma {
            Some(g) if is_local(g, l) => LayerTraits {
                rope_theta: g.rope_local_base_freq,
                rope_scaling: RopeScaling::None,
                window: Some(g.sliding_window),
            },
            _ => LayerTraits::global(c),
        }
    }

    fn tiny(&self, c: &mut ModelConfig) {
        c.tie_embeddings = true;
        c.gemma = Some(GemmaExtras {
            query_pre_attn_scalar: 4.0,
            sliding_window: 3,
            sliding_window_pattern: 2,
            rope_local_base_freq: 10000.0,
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
        });
    }
}
