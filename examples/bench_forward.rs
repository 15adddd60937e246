//! Benchmark (never a test): tokens/s of rlq's plain forward (no gradient asked, hooks off and
//! with sources recorded) against candle-transformers' f32 llama forward on the same dequantized
//! SmolLM2 weights, in one run; and greedy decoding tokens/s with the KV cache. rlq runs with
//! dense f32 weights (the like-for-like comparison) and with the weights kept quantized (the
//! default), whose f32 values are the same.
//!   cargo run --example bench_forward [-- MODEL.gguf TOKENS REPEATS]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as ct;
use rlq::model::generate::{generate, generate_batch, GenerateOptions};
use rlq::model::hooked::{ForwardInput, HookedTransformer, Hooks};
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::{load, LoadOptions};

fn main() {
    rlq::tune_cpu_threads(); // as the rlq binary does
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map_or("models/smollm2-135m-instruct.q4_1.gguf", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let m = load(
        path,
        &LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            ..Default::default()
        },
    )
    .expect("load");
    let tf = HookedTransformer::new(&m).expect("hooked");
    let dense = load(
        path,
        &LoadOptions {
            keep_quantized: false,
            ..Default::default()
        },
    )
    .expect("load dense");
    let tfq = tf;
    let tf = HookedTransformer::new(&dense).expect("hooked");
    let c = &m.config;
    let ids: Vec<u32> = (0..n as u32)
        .map(|i| (i * 7919) % c.vocab_size as u32)
        .collect();
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);

    // candle-transformers' llama on the same weights
    let cfg: ct::LlamaConfig = serde_json::from_value(serde_json::json!({
        "hidden_size": c.d_model, "intermediate_size": c.d_ff, "vocab_size": c.vocab_size,
        "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads, "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta, "max_position_embeddings": c.max_position,
        "tie_word_embeddings": c.tie_embeddings,
    }))
    .expect("config");
    let cfg = cfg.into_config(false);
    let mut map = dense.weights.dense_map().unwrap();
    if !map.contains_key("lm_head.weight") {
        map.insert(
            "lm_head.weight".into(),
            map["model.embed_tokens.weight"].clone(),
        );
    }
    let reference = ct::Llama::load(
        VarBuilder::from_tensors(map, DType::F32, &Device::Cpu),
        &cfg,
    )
    .expect("llama");
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();

    let time = |f: &mut dyn FnMut()| -> f64 {
        f(); // warm-up
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() / reps as f64
    };
    // Interleave the three so background load hits them alike.
    let mut cand = 0.0;
    let mut plain = 0.0;
    let mut hooked = 0.0;
    for _ in 0..2 {
        cand += time(&mut || {
            let mut cache = ct::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
            reference.forward(&input, 0, &mut cache).unwrap();
        });
        plain += time(&mut || {
            tf.logits(&ids).unwrap();
        });
        hooked += time(&mut || {
            tf.forward(
                ForwardInput::Ids(&ids),
                &Hooks {
                    layout: Some(&lay),
                    record_sources: true,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        });
    }
    // candle's llama computes logits for the last position only: time rlq the same way too.
    let mut last_only = 0.0;
    let mut last_only_q = 0.0;
    for _ in 0..2 {
        for (t, acc) in [(&tf, &mut last_only), (&tfq, &mut last_only_q)] {
            *acc += time(&mut || {
                t.forward(
                    ForwardInput::Ids(&ids),
                    &Hooks {
                        logits_from: n - 1,
                        ..Default::default()
                    },
                    None,
                )
                .unwrap();
            });
        }
    }
    let opts = GenerateOptions {
        max_tokens: 64,
        ..Default::default()
    };
    let t = Instant::now();
    let out = generate(&tf, &ids[..16], &opts, &|| false).unwrap();
    let gen = out.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out_q = generate(&tfq, &ids[..16], &opts, &|| false).unwrap();
    let gen_q = out_q.len() as f64 / t.elapsed().as_secs_f64();
    // Eight prompts of different lengths, one at a time vs decoded together (quantized weights).
    let prompts: Vec<Vec<u32>> = (0..8).map(|i| ids[i..16 + 2 * i].to_vec()).collect();
    let short = GenerateOptions {
        max_tokens: 32,
        ..Default::default()
    };
    let t = Instant::now();
    let one_by_one: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| generate(&tfq, p, &short, &|| false).unwrap())
        .collect();
    let n_one: usize = one_by_one.iter().map(Vec::len).sum();
    let gen_one = n_one as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batched = generate_batch(&tfq, &prompts, &short, &|| false).unwrap();
    let n_batch: usize = batched.iter().map(Vec::len).sum();
    let gen_batch = n_batch as f64 / t.elapsed().as_secs_f64();
    // candle's llama decoding the same way (its KV cache, one token per step)
    let t = Instant::now();
    let mut cache = ct::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    let prompt = Tensor::new(&ids[..16], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut logits = reference.forward(&prompt, 0, &mut cache).unwrap();
    for i in 0..64 {
        let next = logits
            .argmax(candle_core::D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()[0];
        let x = Tensor::new(&[next], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        logits = reference.forward(&x, 16 + i, &mut cache).unwrap();
    }
    let cand_gen = 64.0 / t.elapsed().as_secs_f64();
    let tps = |s: f64| n as f64 * 2.0 / s;
    println!(
        "{}",
        serde_json::json!({
            "tokens": n,
            "candle_llama_tok_s": tps(cand),
            "rlq_all_logits_tok_s": tps(plain),
            "rlq_last_logit_tok_s": tps(last_only),
            "rlq_sources_recorded_tok_s": tps(hooked),
            "hook_cost_vs_candle (last logit, hooks off)": last_only / cand * 1.0 - 1.0,
            "rlq_quantized_last_logit_tok_s": tps(last_only_q),
            "quantized_cost_vs_dense (last logit)": last_only_q / last_only - 1.0,
            "generate_tok_s": gen,
            "generate_quantized_tok_s": gen_q,
            "same_tokens_quantized_vs_dense": out == out_q,
            "generate_8_prompts_one_at_a_time_tok_s": gen_one,
            "generate_8_prompts_batched_tok_s": gen_batch,
            "same_tokens_batched": one_by_one == batched,
            "candle_llama_generate_tok_s": cand_gen,
        })
    );
}
