//! Small models with random weights at a known seed, for tests of the forward, the loaders and
//! the graph logic (never a stand-in for real weights).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{Family, GemmaExtras, Model, ModelConfig, Weights};

/// A tiny config of the given family: 2 layers, d=16, 4 heads over 2 kv heads, vocab 32.
pub fn tiny_config(family: Family) -> ModelConfig {
    let gemma = family == Family::Gemma3;
    ModelConfig {
        family,
        n_layers: 2,
        d_model: 16,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 4,
        d_ff: 24,
        vocab_size: 32,
        rms_norm_eps: 1e-6,
        rope_theta: 10000.0,
        max_position: 128,
        tie_embeddings: gemma,
        attention_bias: family == Family::Qwen2,
        qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
        gemma: gemma.then(|| GemmaExtras {
            query_pre_attn_scalar: 4.0,
            sliding_window: 3,
            sliding_window_pattern: 2,
            rope_local_base_freq: 10000.0,
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
        }),
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        rope_scaling: Default::default(),
    }
}

/// Every weight tensor a config implies, under HF names, with their shapes: the loaders'
/// manifest ([`crate::model::load::expected_weights`]), so synthetic models and checks agree.
pub fn weight_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    crate::model::load::expected_weights(c)
}

/// Random weights for `config` at `seed`: matrices ~ U(-a, a) with a = 1/sqrt(fan_in)·√3 (unit
/// variance outputs), norm weights near 1 (near 0 for Gemma, which adds 1).
pub fn random_weights(
    config: &ModelConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Weights> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut map = HashMap::new();
    for (name, shape) in weight_shapes(config) {
        let n: usize = shape.iter().product();
        let is_norm = name.contains("norm");
        let vals: Vec<f64> = if is_norm {
            let centre = if config.family == Family::Gemma3 {
                0.0
            } else {
                1.0
            };
            (0..n).map(|_| centre + rng.gen_range(-0.2..0.2)).collect()
        } else {
            let fan_in = *shape.last().unwrap_or(&1) as f64;
            let a = (3.0 / fan_in).sqrt();
            (0..n).map(|_| rng.gen_range(-a..a)).collect()
        };
        let t = Tensor::from_vec(vals, shape, device)?.to_dtype(dtype)?;
        map.insert(name, t);
    }
    Ok(Weights::new(map))
}

/// A complete random model (no tokenizer) for tests.
pub fn random_model(family: Family, seed: u64, dtype: DType) -> candle_core::Result<Model> {
    let config = tiny_config(family);
    let device = Device::Cpu;
    let weights = random_weights(&config, seed, dtype, &device)?;
    Ok(Model::from_parts(
        config,
        weights,
        format!("synthetic:{}:{seed}", family.name()),
        device,
        dtype,
    ))
}
