//! The architecture description every family's forward reads, independent of the file format.
//! The vocabulary below the families: `arch` reads these types, this module imports no `arch`.

use serde::{Deserialize, Serialize};

use crate::model::error::{ModelError, Result};

/// Decoder families rlq has a hooked forward for. What each means (names, config mapping,
/// weights, forward traits) is [`Family::arch`], in `model::arch`; adding one adds its variant
/// here and in [`Family::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma3,
    Olmo2,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Llama,
        Family::Mistral,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma3,
        Family::Olmo2,
    ];
}

/// Everything the hooked forward needs to know about a checkpoint's shape.
/// Field names follow HF `config.json` meaning; GGUF metadata is mapped onto them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position: usize,
    /// lm_head shares the token embedding matrix.
    pub tie_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    /// RMSNorm on q and k before rope (Qwen3, Gemma 3: per head; OLMo 2: over all heads, see
    /// `arch::QkNorm`).
    pub qk_norm: bool,
    /// Gemma 3 specifics (ignored by the other families).
    pub gemma: Option<GemmaExtras>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// How rotary frequencies are stretched for long contexts (Llama 3.x, linear).
    #[serde(default)]
    pub rope_scaling: RopeScaling,
}

/// Rotary scaling schemes rlq applies; a checkpoint asking for any other is refused at load.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum RopeScaling {
    #[default]
    None,
    /// Every frequency divided by `factor` (HF `rope_type: linear`).
    Linear { factor: f64 },
    /// Llama 3.1's piecewise scaling (HF `rope_type: llama3`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position: f64,
    },
    /// Frequency `i` divided by `factors[i]`: the per-frequency factors (`rope_freqs`) that
    /// llama.cpp's converter writes for Llama 3.1-style scaling. Missing factors count as 1.
    Factors(Vec<f64>),
}

impl RopeScaling {
    /// Inverse frequencies θ^(−2i/d), i < d/2, after scaling.
    pub fn inv_freq(&self, theta: f64, head_dim: usize) -> Vec<f64> {
        (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                match *self {
                    RopeScaling::None => f,
                    RopeScaling::Linear { factor } => f / factor,
                    RopeScaling::Factors(ref factors) => factors.get(i).map_or(f, |k| f / k),
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position,
                    } => {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let low_wavelen = original_max_position / low_freq_factor;
                        let high_wavelen = original_max_position / high_freq_factor;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_max_position / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    }
                }
            })
            .collect()
    }
}

/// Gemma 3 specifics.
///
/// Norm weights (`*layernorm.weight`, `model.norm.weight`, `q_norm`/`k_norm`) are always in the
/// **HF convention**: the RMSNorm scale is `1 + w`. GGUF files store `1 + w` (llama.cpp's converter
/// adds 1); the GGUF loader subtracts it again, so the forward applies `(1 + w)` for every source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmaExtras {
    /// Attention scores are scaled by 1/sqrt(query_pre_attn_scalar).
    pub query_pre_attn_scalar: f64,
    pub sliding_window: usize,
    /// Every `sliding_window_pattern`-th layer is global; the others are local.
    pub sliding_window_pattern: usize,
    pub rope_local_base_freq: f64,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// ranges every loader checks a checkpoint's fields against

/// Inclusive ranges for the size fields of a checkpoint, the same for every file format. The
/// upper bounds are far above any real model (Llama 3.1 405B: 126 layers, d_model 16384, 128
/// heads, d_ff 53248) and keep every product of them (e.g. vocab × d_model) far from overflow.
pub mod bounds {
    pub const N_LAYERS: (u64, u64) = (1, 1024);
    pub const D_MODEL: (u64, u64) = (1, 1 << 16);
    pub const N_HEADS: (u64, u64) = (1, 1024);
    pub const HEAD_DIM: (u64, u64) = (2, 4096);
    pub const D_FF: (u64, u64) = (1, 1 << 20);
    pub const VOCAB: (u64, u64) = (1, 1 << 22);
    pub const CONTEXT: (u64, u64) = (1, 1 << 24);
    pub const SLIDING_WINDOW: (u64, u64) = (1, 1 << 24);
    pub const WINDOW_PATTERN: (u64, u64) = (1, 1024);
}

/// `value` of the field `what` (e.g. "GGUF `llama.block_count`"), checked against `range`.
pub fn count_in(what: &str, value: u64, (lo, hi): (u64, u64)) -> Result<usize> {
    if value < lo || value > hi {
        return Err(ModelError::Config(format!(
            "{what} is {value}; it must be between {lo} and {hi}"
        )));
    }
    usize::try_from(value)
        .map_err(|_| ModelError::Config(format!("{what} is {value}, too large for this machine")))
}

/// `value` of the field `what`, which must be finite and above `min` (exclusive).
pub fn finite_above(what: &str, value: f64, min: f64) -> Result<f64> {
    if !(value.is_finite() && value > min) {
        return Err(ModelError::Config(format!(
            "{what} is {value}; it must be a finite number above {min}"
        )));
    }
    Ok(value)
}

impl ModelConfig {
    /// Checks the relations between fields that the per-field ranges cannot: called by every
    /// loader once the config is assembled (before any weight is read). `origin` names the file.
    pub fn check(&self, origin: &str) -> Result<()> {
        let err = |m: String| Err(ModelError::Config(format!("{origin}: {m}")));
        if self.n_kv_heads > self.n_heads || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return err(format!(
                "{} attention heads cannot share {} kv heads (must divide evenly)",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return err(format!(
                "head dimension {} is odd; rotary embeddings need an even one",
                self.head_dim
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return err(format!(
                "rms norm epsilon {} must be a finite number in (0, 1)",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return err(format!(
                "rope base (theta) {} must be a finite number above 1",
                self.rope_theta
            ));
        }
        match &self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                if !(factor.is_finite() && *factor > 0.0) {
                    return err(format!(
                        "linear rope scaling factor {factor} must be a finite number above 0"
                    ));
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position,
            } => {
                let ok = |x: f64| x.is_finite() && x > 0.0;
                if !(ok(*factor)
                    && ok(*low_freq_factor)
                    && ok(*high_freq_factor)
                    && ok(*original_max_position)
                    && high_freq_factor > low_freq_factor)
                {
                    return err(format!(
                        "llama3 rope scaling needs finite positive factor ({factor}), \
                         low_freq_factor ({low_freq_factor}) < high_freq_factor \
                         ({high_freq_factor}) and original_max_position_embeddings \
                         ({original_max_position})"
                    ));
                }
            }
            RopeScaling::Factors(fs) => {
                if let Some(f) = fs.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                    return err(format!(
                        "rope frequency factor {f} must be finite and positive"
                    ));
                }
            }
        }
        if let Some(g) = &self.gemma {
            let ok = |x: f64| x.is_finite() && x > 0.0;
            if !ok(g.query_pre_attn_scalar) {
                return err(format!(
                    "query_pre_attn_scalar {} must be a finite number above 0",
                    g.query_pre_attn_scalar
                ));
            }
            if !(g.rope_local_base_freq.is_finite() && g.rope_local_base_freq > 1.0) {
                return err(format!(
                    "local rope base {} must be a finite number above 1",
                    g.rope_local_base_freq
                ));
            }
            for (name, cap) in [
                ("final_logit_softcapping", g.final_logit_softcapping),
                ("attn_logit_softcapping", g.attn_logit_softcapping),
            ] {
                if let Some(c) = cap.filter(|&c| !ok(c)) {
                    return err(format!("{name} {c} must be a finite number above 0"));
                }
            }
        }
        let vocab = self.vocab_size;
        let ids = self.bos_token_id.iter().chain(&self.eos_token_ids);
        if let Some(id) = ids
            .copied()
            .find(|&id| usize::try_from(id).map_or(true, |i| i >= vocab))
        {
            return err(format!(
                "special token id {id} (bos/eos) is outside the vocabulary of {vocab} tokens"
            ));
        }
        Ok(())
    }
}
