//! On the real SmolLM2-135M-Instruct (GGUF Q4_1, fetched by scripts/fetch-models.sh): weights
//! really load, the hooked forward matches candle-transformers' llama on the same dequantized
//! weights, and EAP gives the full 3691-edge graph with f32 close to f64.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as ct;
use rlq::attribution::{score_sample, Method, Sample, SampleLoss};
use rlq::model::generate::{generate, GenerateOptions};
use rlq::model::hooked::HookedTransformer;
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::{load, LoadOptions, Model};

const GGUF: &str = "models/smollm2-135m-instruct.q4_1.gguf";

fn smollm2(dtype: DType) -> Option<Arc<Model>> {
    if !Path::new(GGUF).exists() {
        eprintln!("SKIP: {GGUF} missing; run scripts/fetch-models.sh");
        return None;
    }
    Some(
        load(
            GGUF,
            &LoadOptions {
                device: Device::Cpu,
                dtype,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

const PARAGRAPH: &str = "The history of science is the study of the development of science and \
scientific knowledge, including both the natural and social sciences. Science is a body of \
empirical, theoretical, and practical knowledge about the natural world, produced by scientists \
who emphasize the observation, explanation, and prediction of real-world phenomena.";

fn nll_per_token(tf: &HookedTransformer, ids: &[u32]) -> f64 {
    let logits = tf.logits(ids).unwrap().to_dtype(DType::F64).unwrap();
    let lp = rlq::model::ops::log_softmax_last_dim(&logits).unwrap();
    let mut total = 0.0;
    for t in 0..ids.len() - 1 {
        total -= lp
            .i((t, ids[t + 1] as usize))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
    }
    total / (ids.len() - 1) as f64
}

/// A trained model's perplexity on plain English is tens at most; random weights give about the
/// vocabulary size (49152). The bound 60 is far from both.
#[test]
fn smollm2_perplexity_is_that_of_a_trained_model() {
    let Some(m) = smollm2(DType::F32) else { return };
    let tf = HookedTransformer::new(&m).unwrap();
    let ids = m.tokenizer.encode(PARAGRAPH, false).unwrap();
    let ppl = nll_per_token(&tf, &ids).exp();
    println!(
        "SmolLM2 perplexity on the paragraph: {ppl:.2} over {} tokens",
        ids.len()
    );
    assert!(ppl < 60.0, "perplexity {ppl}");
    // and shuffling the same tokens makes it much worse: the model reads order, not unigrams
    let mut shuffled = ids.clone();
    shuffled.reverse();
    let ppl_rev = nll_per_token(&tf, &shuffled).exp();
    assert!(ppl_rev > 3.0 * ppl, "reversed {ppl_rev} vs {ppl}");
}

#[test]
fn smollm2_answers_simple_questions_coherently() {
    let Some(m) = smollm2(DType::F32) else { return };
    let tf = HookedTransformer::new(&m).unwrap();
    let prompt = m
        .apply_chat_template(&[("user", "What is the capital of France?")], true)
        .unwrap();
    let ids = m.tokenizer.encode(&prompt, false).unwrap();
    let opts = GenerateOptions {
        max_tokens: 24,
        stop_tokens: m.config.eos_token_ids.clone(),
        ..Default::default()
    };
    let out = generate(&tf, &ids, &opts, &|| false).unwrap();
    let text = m.tokenizer.decode(&out, true).unwrap();
    println!("answer: {text}");
    assert!(text.contains("Paris"), "{text}");
}

/// The parity check on real weights: candle-transformers' f32 llama forward on the same
/// dequantized weights (not quantized_llama, which quantizes activations). Tolerance 1e-4 of the
/// logit scale: 30 layers of f32 rounding in a different op order.
#[test]
fn smollm2_logits_match_candle_transformers_llama() {
    let Some(m) = smollm2(DType::F32) else { return };
    let tf = HookedTransformer::new(&m).unwrap();
    let ids = m
        .tokenizer
        .encode("Gravity pulls apples to the ground.", false)
        .unwrap();
    let ours = tf.logits(&ids).unwrap();
    let c = &m.config;
    let cfg: ct::LlamaConfig = serde_json::from_value(serde_json::json!({
        "hidden_size": c.d_model, "intermediate_size": c.d_ff, "vocab_size": c.vocab_size,
        "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads, "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta, "max_position_embeddings": c.max_position,
        "tie_word_embeddings": c.tie_embeddings,
    }))
    .unwrap();
    let cfg = cfg.into_config(false);
    let mut map = m.weights.dense_map().unwrap();
    if !map.contains_key("lm_head.weight") {
        map.insert(
            "lm_head.weight".into(),
            map["model.embed_tokens.weight"].clone(),
        );
    }
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let reference = ct::Llama::load(vb, &cfg).unwrap();
    let mut cache = ct::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let want = reference
        .forward(&input, 0, &mut cache)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got = ours.i(ids.len() - 1).unwrap().to_vec1::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("max |Δlogit| = {worst:e} (scale {scale})");
    assert!(worst <= 1e-4 * scale, "max diff {worst} at scale {scale}");
}

/// The full block graph on real weights: 3691 edges, finite, f32 within 1e-4 (relative to the
/// largest |score|) of f64 — the f32 forward/backward accumulates ~1e-6 relative rounding per
/// op over 30 layers.
#[test]
fn smollm2_eap_f32_agrees_with_f64() {
    let Some(m) = smollm2(DType::F32) else { return };
    let tf32 = HookedTransformer::new(&m).unwrap();
    let tf64 = tf32.to_dtype(DType::F64).unwrap();
    let c = &m.config;
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let edges = lay.edges();
    assert_eq!(edges.len(), 3691);
    let prompt = m
        .apply_chat_template(&[("user", "What is 12 plus 7?")], true)
        .unwrap();
    let p = m.tokenizer.encode(&prompt, false).unwrap();
    let answer = m.tokenizer.encode("12 plus 7 is 19.", false).unwrap();
    let mut tokens = p.clone();
    tokens.extend_from_slice(&answer[..answer.len() - 1]);
    let s = Sample {
        id: 0,
        tokens,
        corrupt: None,
        loss: SampleLoss::Tokens {
            start: p.len() - 1,
            targets: answer.clone(),
        },
    };
    let a = score_sample(&tf32, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
    let b = score_sample(&tf64, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
    let scale = b.scores.iter().fold(0f64, |m, x| m.max(x.abs()));
    let worst = a
        .scores
        .iter()
        .zip(&b.scores)
        .map(|(x, y)| (x - y).abs())
        .fold(0f64, f64::max);
    println!(
        "loss f32 {} f64 {}; max |Δscore| {worst:e} at scale {scale:e}",
        a.loss, b.loss
    );
    assert!(a.scores.iter().all(|x| x.is_finite()));
    assert!(worst <= 1e-4 * scale, "{worst} vs scale {scale}");
    assert!((a.loss - b.loss).abs() < 1e-4 * b.loss.abs());
}

/// With quantized weights and up to 8 sequences, a batched decoding step computes each row with
/// the same dot products as a single-sequence step: batched greedy answers equal one-at-a-time
/// answers token for token on the real model.
#[test]
fn batched_greedy_answers_equal_one_at_a_time() {
    let Some(m) = smollm2(DType::F32) else { return };
    assert!(m.weights.is_quantized("model.layers.0.mlp.up_proj.weight"));
    let tf = HookedTransformer::new(&m).unwrap();
    let prompts: Vec<Vec<u32>> = [
        "What is 2 + 3?",
        "Name a colour.",
        "The capital of France is",
    ]
    .iter()
    .map(|q| {
        let text = m.apply_chat_template(&[("user", q)], true).unwrap();
        m.tokenizer.encode(&text, false).unwrap()
    })
    .collect();
    let opts = GenerateOptions {
        max_tokens: 12,
        stop_tokens: m.config.eos_token_ids.clone(),
        ..Default::default()
    };
    let batch = rlq::model::generate::generate_batch(&tf, &prompts, &opts, &|| false).unwrap();
    for (p, got) in prompts.iter().zip(&batch) {
        assert_eq!(got, &generate(&tf, p, &opts, &|| false).unwrap());
    }
    assert!(batch.iter().all(|a| !a.is_empty()));
}
