//! Small models with random weights at a known seed, for tests of the forward, the loaders and
//! the graph logic (never a stand-in for real weights).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::checkpoint::expected_weights;
use crate::model::arch::{manifest, QkNorm, WeightKind, WeightSpec};
use crate::model::config::{Family, ModelConfig};
use crate::model::weights::Weights;
use crate::model::Model;

/// A tiny config of the given family: 2 layers, d=16, 4 heads over 2 kv heads, vocab 32, with
/// the family's own fields ([`crate::model::arch::Arch::tiny`]).
pub fn tiny_config(family: Family) -> ModelConfig {
    let arch = family.arch();
    let mut c = ModelConfig {
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
        tie_embeddings: false,
        attention_bias: false,
        qk_norm: arch.qk_norm() != QkNorm::None,
        gemma: None,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        rope_scaling: Default::default(),
    };
    arch.tiny(&mut c);
    c
}

/// Every weight tensor a config implies, under HF names, with their shapes: the loaders'
/// manifest ([`expected_weights`]), so synthetic models and checks agree.
pub fn weight_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    expected_weights(c)
}

/// Random weights for `config` at `seed`, drawn in manifest order: matrices, embeddings and
/// biases ~ U(-a, a) with a = 1/sqrt(fan_in)·√3 (unit variance outputs), norm weights near 1
/// as the forward applies them (near 0 stored for Gemma, which adds 1).
pub fn random_weights(
    config: &ModelConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Weights> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut map = HashMap::new();
    let centre = 1.0 - config.family.arch().norm_offset();
    for WeightSpec { name, shape, kind } in manifest(config) {
        let n: usize = shape.iter().product();
        let vals: Vec<f64> = if kind == WeightKind::Norm {
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
