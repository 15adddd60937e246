//! Model loading: the real SmolLM2 GGUF, synthetic GGUFs of every family (rope un-permutation,
//! Gemma norm shift, name mapping), synthetic safetensors folders, chat templates, and every
//! kind of bad input (which must be an error, never a panic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rlq::model::gguf::{permute_rope_rows, unpermute_rope_rows};
use rlq::model::load::expected_weights;
use rlq::model::safetensors_dir::config_from_hf_json;
use rlq::model::{
    device_from_str, dtype_from_str, load, validate_weights, ChatTemplate, Family, LoadOptions,
    Model, ModelError, Weights,
};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// the real SmolLM2 GGUF

fn smollm2_path() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct.q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (run scripts/fetch-models.sh)",
            path.display()
        );
        None
    }
}

fn smollm2() -> Option<Arc<Model>> {
    let p = smollm2_path()?;
    Some(load(p.to_str().unwrap(), &LoadOptions::default()).expect("SmolLM2 loads"))
}

#[test]
fn smollm2_config_comes_from_gguf_metadata() {
    let Some(m) = smollm2() else { return };
    let c = &m.config;
    assert_eq!(c.family, Family::Llama);
    assert_eq!(
        (
            c.n_layers,
            c.d_model,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            c.d_ff,
            c.vocab_size
        ),
        (30, 576, 9, 3, 64, 1536, 49152)
    );
    assert_eq!(c.rope_theta, 100000.0);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert_eq!(c.max_position, 8192);
    assert!(c.tie_embeddings, "SmolLM2 GGUF has no output.weight");
    assert!(!c.attention_bias && !c.qk_norm && c.gemma.is_none());
    assert_eq!(c.bos_token_id, Some(1));
    assert_eq!(c.eos_token_ids, vec![2]);
}

#[test]
fn smollm2_has_every_weight_with_the_right_shape() {
    let Some(m) = smollm2() else { return };
    validate_weights(&m.config, &m.weights).unwrap();
    let expected = expected_weights(&m.config);
    assert_eq!(expected.len(), 2 + 30 * 9);
    assert_eq!(
        m.weights.len(),
        expected.len(),
        "no extra or missing tensors"
    );
    for l in 0..30 {
        let w = |n: &str| m.weights.shape(&format!("model.layers.{l}.{n}")).unwrap();
        assert_eq!(w("self_attn.q_proj.weight"), vec![576, 576]);
        assert_eq!(w("self_attn.k_proj.weight"), vec![192, 576]);
        assert_eq!(w("self_attn.v_proj.weight"), vec![192, 576]);
        assert_eq!(w("self_attn.o_proj.weight"), vec![576, 576]);
        assert_eq!(w("mlp.gate_proj.weight"), vec![1536, 576]);
        assert_eq!(w("mlp.up_proj.weight"), vec![1536, 576]);
        assert_eq!(w("mlp.down_proj.weight"), vec![576, 1536]);
        assert_eq!(w("input_layernorm.weight"), vec![576]);
        assert_eq!(w("post_attention_layernorm.weight"), vec![576]);
    }
    // The default load keeps the quantized matrices quantized; norms are plain f32.
    assert!(m.weights.is_quantized("model.layers.0.mlp.up_proj.weight"));
    assert!(!m.weights.is_quantized("model.norm.weight"));
    assert!(
        m.weights.storage_bytes() < 150_000_000,
        "{}",
        m.weights.storage_bytes()
    );
    let emb = m.weights.dense("model.embed_tokens.weight").unwrap();
    assert_eq!(emb.dims(), &[49152, 576]);
    assert_eq!(emb.dtype(), DType::F32);
    // Dequantized values are finite and not all zero.
    let s = emb
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(s.is_finite() && s > 0.0);
    let norm = m.weights.get("model.norm.weight").unwrap();
    let mean = norm.mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(mean > 0.1 && mean.is_finite(), "final norm mean {mean}");
}

/// Keeping weights quantized changes where the f32 values are made, not what they are: every
/// weight of the quantized load dequantizes to exactly the dense load's tensor (q/k rows
/// reordered in their quantized form included), and the forward gives the same logits up to the
/// matmul's summation order.
#[test]
fn smollm2_quantized_and_dense_loads_agree() {
    let Some(p) = smollm2_path() else { return };
    let q = smollm2().unwrap();
    let dense_opts = LoadOptions {
        keep_quantized: false,
        ..Default::default()
    };
    let d = load(p.to_str().unwrap(), &dense_opts).unwrap();
    assert!(!d
        .weights
        .is_quantized("model.layers.0.self_attn.q_proj.weight"));
    assert!(d.weights.storage_bytes() > 4 * q.weights.storage_bytes());
    for name in d.weights.names() {
        let a = q.weights.dense(name).unwrap();
        let b = d.weights.get(name).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }
    let ids = [1u32, 4093, 198, 1780, 314, 260, 5, 9, 17, 300];
    let lq = rlq::model::hooked::HookedTransformer::new(&q)
        .unwrap()
        .logits(&ids)
        .unwrap();
    let ld = rlq::model::hooked::HookedTransformer::new(&d)
        .unwrap()
        .logits(&ids)
        .unwrap();
    let scale = ld
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (lq - ld)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // f32 rounding through 30 layers: the same bound as the candle-transformers parity check.
    assert!(
        diff < 1e-5 * scale.max(1.0) * 10.0,
        "max |Δlogit| {diff} at scale {scale}"
    );
}

#[test]
fn smollm2_loaded_twice_is_one_model() {
    let Some(p) = smollm2_path() else { return };
    let a = load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    // Same file through another spelling of the path.
    let other = format!(
        "{}/models/../models/smollm2-135m-instruct.q4_1.gguf",
        env!("CARGO_MANIFEST_DIR")
    );
    let b = load(&other, &LoadOptions::default()).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let info = a.info();
    assert_eq!(info.family, Family::Llama);
    assert_eq!((info.n_layers, info.n_heads, info.n_kv_heads), (30, 9, 3));
    assert_eq!((info.d_model, info.vocab_size), (576, 49152));
    assert_eq!(info.dtype, "f32");
    assert_eq!(info.device, "cpu");
    // 134.5M parameters with tied embeddings.
    assert!(
        (134_000_000..135_000_000).contains(&info.n_params),
        "{}",
        info.n_params
    );
    assert!(info.to_string().contains("30 layers"));
}

#[test]
fn smollm2_bf16_is_a_separate_model() {
    let Some(p) = smollm2_path() else { return };
    let opts = LoadOptions {
        device: Device::Cpu,
        dtype: DType::BF16,
        ..Default::default()
    };
    let a = load(p.to_str().unwrap(), &opts).unwrap();
    assert_eq!(a.dtype, DType::BF16);
    assert_eq!(
        a.weights
            .get("model.layers.0.self_attn.q_proj.weight")
            .unwrap()
            .dtype(),
        DType::BF16
    );
    let b = load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
}

#[test]
fn smollm2_chat_template_renders_hf_style() {
    let Some(m) = smollm2() else { return };
    let text = m
        .apply_chat_template(&[("user", "What is the capital of France?")], true)
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let no_prompt = m.apply_chat_template(&[("user", "Hi")], false).unwrap();
    assert!(
        no_prompt.ends_with("<|im_start|>user\nHi<|im_end|>\n"),
        "{no_prompt:?}"
    );
    // A given system message replaces the default one.
    let sys = m
        .apply_chat_template(&[("system", "Be terse."), ("user", "Hi")], true)
        .unwrap();
    assert!(sys.starts_with("<|im_start|>system\nBe terse.<|im_end|>\n"));
    assert!(!sys.contains("SmolLM"));
    let ids = m.tokenizer.encode(&text, false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(&ids[ids.len() - 3..], &[520, 9531, 198]);
}

// ---------------------------------------------------------------------------------------------
// chat template semantics

#[test]
fn chat_template_supports_hf_helpers() {
    let src = r#"{{ bos_token }}{% for m in messages %}{% if m['role'] == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}
[{{ m['role'] | upper }}] {{ m['content'].strip() }}{% if m.content.startswith('  x') %}!{% endif %}
{% endfor %}{{ {"k": "<v>"} | tojson }} {{ "a,b".split(",") | length }} {{ strftime_now("%Y") | length }}
{%- if add_generation_prompt %}<go>{% endif %}"#;
    let t = ChatTemplate::with_tokens(src, "<s>", "</s>").unwrap();
    let out = t.render(&[("user", "  x y  ")], true).unwrap();
    // trim_blocks eats the newline after `{% endif %}`, as in Jinja2.
    assert_eq!(out, "<s>[USER] x y!{\"k\": \"<v>\"} 2 4<go>");
    let err = t.render(&[("bad", "x")], false).unwrap_err().to_string();
    assert!(err.contains("no bad roles"), "{err}");
    let err = ChatTemplate::with_tokens("{% for %}", "", "")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("chat template"), "{err}");
}

/// The Python methods templates call, as minijinja-contrib's pycompat gives them, plus our
/// `rsplit` (which it lacks), each against what Python prints.
#[test]
fn chat_template_python_methods_match_python() {
    let cases = [
        // Python: "a b  c".rsplit(None, 1) == ['a b', 'c']
        (r#"{{ "a b  c".rsplit(none, 1) | join("|") }}"#, "a b|c"),
        (r#"{{ "a,b,c".rsplit(",", 1) | join("|") }}"#, "a,b|c"),
        (r#"{{ " x  y ".rsplit() | join("|") }}"#, "x|y"),
        (r#"{{ "a,b,c".split(",", 1) | join("|") }}"#, "a|b,c"),
        (
            r#"{{ "xxhixx".strip("x") }}{{ "hello world".title() }}"#,
            "hiHello World",
        ),
        (r#"{{ "think</think>rest".split("</think>")[-1] }}"#, "rest"),
        (
            r#"{{ {"a": 1}.get("b", 7) }}{{ {"a": 1}.items() | list | length }}"#,
            "71",
        ),
        (
            r#"{% if "abc".startswith(("x", "a")) and "abc".endswith("bc") %}yes{% endif %}"#,
            "yes",
        ),
    ];
    for (src, want) in cases {
        let t = ChatTemplate::with_tokens(src, "", "").unwrap();
        assert_eq!(t.render(&[("user", "u")], false).unwrap(), want, "{src}");
    }
}

#[test]
fn strftime_formats_known_dates() {
    use rlq::model::chat::strftime_utc;
    // 2024-02-29 13:05:09 UTC, a Thursday.
    let t = 1_709_211_909;
    assert_eq!(strftime_utc("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
    assert_eq!(
        strftime_utc("%d %B %Y, %A (%b %a) %j %%", t),
        "29 February 2024, Thursday (Feb Thu) 060 %"
    );
}

// ---------------------------------------------------------------------------------------------
// rotary permutation

#[test]
fn rope_permutation_round_trips_and_matches_llama_cpp_formula() {
    let (heads, hd, cols) = (3, 8, 5);
    let hf = Tensor::randn(0f32, 1.0, (heads * hd, cols), &Device::Cpu).unwrap();
    let gguf = permute_rope_rows(&hf, heads).unwrap();
    // llama.cpp: reshape(n_head, 2, hd/2, in).swapaxes(1, 2): GGUF row h*hd + 2i + j = HF row
    // h*hd + j*hd/2 + i.
    let hf_rows: Vec<Vec<f32>> = hf.to_vec2().unwrap();
    let gg_rows: Vec<Vec<f32>> = gguf.to_vec2().unwrap();
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                assert_eq!(
                    gg_rows[h * hd + 2 * i + j],
                    hf_rows[h * hd + j * hd / 2 + i]
                );
            }
        }
    }
    let back = unpermute_rope_rows(&gguf, heads).unwrap();
    assert_eq!(back.to_vec2::<f32>().unwrap(), hf_rows);
    // Biases (1-D) too.
    let b = Tensor::arange(0f32, (heads * hd) as f32, &Device::Cpu).unwrap();
    let pb = permute_rope_rows(&b, heads).unwrap();
    assert_eq!(pb.to_vec1::<f32>().unwrap()[..4], [0.0, 4.0, 1.0, 5.0]);
    assert_eq!(
        unpermute_rope_rows(&pb, heads)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        b.to_vec1::<f32>().unwrap()
    );
    assert!(permute_rope_rows(&b, 5).is_err());
}

// ---------------------------------------------------------------------------------------------
// synthetic GGUFs

const D: usize = 64;
const HEADS: usize = 4;
const KV: usize = 2;
const HD: usize = 16;
const FF: usize = 128;
const VOCAB: usize = 40;
const LAYERS: usize = 2;

/// (HF name, GGUF name, HF-layout tensor) for a tiny model of `arch`.
fn tiny_tensors(arch: &str, with_output: bool) -> Vec<(String, String, Tensor)> {
    let dev = Device::Cpu;
    let r = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
    let gemma = arch == "gemma3";
    let mut out = vec![
        (
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            r(&[VOCAB, D]),
        ),
        (
            "model.norm.weight".into(),
            "output_norm.weight".into(),
            r(&[D]),
        ),
    ];
    if with_output {
        out.push((
            "lm_head.weight".into(),
            "output.weight".into(),
            r(&[VOCAB, D]),
        ));
    }
    for l in 0..LAYERS {
        let mut add = |hf: &str, gg: &str, shape: &[usize]| {
            out.push((
                format!("model.layers.{l}.{hf}"),
                format!("blk.{l}.{gg}"),
                r(shape),
            ))
        };
        add("self_attn.q_proj.weight", "attn_q.weight", &[HEADS * HD, D]);
        add("self_attn.k_proj.weight", "attn_k.weight", &[KV * HD, D]);
        add("self_attn.v_proj.weight", "attn_v.weight", &[KV * HD, D]);
        add(
            "self_attn.o_proj.weight",
            "attn_output.weight",
            &[D, HEADS * HD],
        );
        add("mlp.gate_proj.weight", "ffn_gate.weight", &[FF, D]);
        add("mlp.up_proj.weight", "ffn_up.weight", &[FF, D]);
        add("mlp.down_proj.weight", "ffn_down.weight", &[D, FF]);
        if arch == "olmo2" {
            // Post-norm: no input norms; llama.cpp's names for the output norms.
            add(
                "post_attention_layernorm.weight",
                "post_attention_norm.weight",
                &[D],
            );
            add(
                "post_feedforward_layernorm.weight",
                "post_ffw_norm.weight",
                &[D],
            );
            // The q/k norms span all heads.
            add(
                "self_attn.q_norm.weight",
                "attn_q_norm.weight",
                &[HEADS * HD],
            );
            add("self_attn.k_norm.weight", "attn_k_norm.weight", &[KV * HD]);
            continue;
        }
        add("input_layernorm.weight", "attn_norm.weight", &[D]);
        if gemma {
            add(
                "post_attention_layernorm.weight",
                "post_attention_norm.weight",
                &[D],
            );
            add("pre_feedforward_layernorm.weight", "ffn_norm.weight", &[D]);
            add(
                "post_feedforward_layernorm.weight",
                "post_ffw_norm.weight",
                &[D],
            );
        } else {
            add("post_attention_layernorm.weight", "ffn_norm.weight", &[D]);
        }
        if arch == "qwen2" {
            add("self_attn.q_proj.bias", "attn_q.bias", &[HEADS * HD]);
            add("self_attn.k_proj.bias", "attn_k.bias", &[KV * HD]);
            add("self_attn.v_proj.bias", "attn_v.bias", &[KV * HD]);
        }
        if gemma || arch == "qwen3" {
            add("self_attn.q_norm.weight", "attn_q_norm.weight", &[HD]);
            add("self_attn.k_norm.weight", "attn_k_norm.weight", &[HD]);
        }
    }
    out
}

/// What llama.cpp's converter does to an HF tensor before writing it.
fn to_gguf_layout(arch: &str, hf_name: &str, t: &Tensor) -> Tensor {
    let llama_like = arch == "llama" || arch == "mistral";
    if llama_like && hf_name.contains("q_proj") {
        return permute_rope_rows(t, HEADS).unwrap();
    }
    if llama_like && hf_name.contains("k_proj") {
        return permute_rope_rows(t, KV).unwrap();
    }
    if arch == "gemma3" && hf_name.ends_with("norm.weight") {
        return (t + 1.0).unwrap();
    }
    t.clone()
}

fn tiny_metadata(arch: &str) -> Vec<(String, Value)> {
    let k = |s: &str| format!("{arch}.{s}");
    let strings =
        |xs: &[&str]| Value::Array(xs.iter().map(|s| Value::String(s.to_string())).collect());
    let md = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (k("block_count"), Value::U32(LAYERS as u32)),
        (k("context_length"), Value::U32(2048)),
        (k("embedding_length"), Value::U32(D as u32)),
        (k("feed_forward_length"), Value::U32(FF as u32)),
        (k("attention.head_count"), Value::U32(HEADS as u32)),
        (k("attention.head_count_kv"), Value::U32(KV as u32)),
        (k("attention.key_length"), Value::U32(HD as u32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (k("rope.freq_base"), Value::F32(500000.0)),
        (k("attention.sliding_window"), Value::U32(512)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("gpt-2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            strings(&["<|end|>", "a", "b", "ab", "Ġ"]),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vec![
                Value::I32(3),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
            ]),
        ),
        ("tokenizer.ggml.merges".into(), strings(&["a b"])),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
        (
            "tokenizer.chat_template".into(),
            Value::String(
                "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}".into(),
            ),
        ),
    ];
    // llama.cpp writes no sliding window for OLMo 2 (one would mean OLMo 3's windowed layers).
    md.into_iter()
        .filter(|(key, _)| !(arch == "olmo2" && key.ends_with("attention.sliding_window")))
        .collect()
}

/// Writes a GGUF with the given metadata and (GGUF name, tensor, quant type) entries.
fn write_gguf(path: &Path, md: &[(String, Value)], tensors: &[(String, Tensor, GgmlDType)]) {
    let qs: Vec<(String, QTensor)> = tensors
        .iter()
        .map(|(n, t, q)| (n.clone(), QTensor::quantize(t, *q).unwrap()))
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

fn write_tiny_gguf(
    dir: &Path,
    arch: &str,
    with_output: bool,
) -> (PathBuf, Vec<(String, String, Tensor)>) {
    let tensors = tiny_tensors(arch, with_output);
    let entries: Vec<(String, Tensor, GgmlDType)> = tensors
        .iter()
        .map(|(hf, gg, t)| (gg.clone(), to_gguf_layout(arch, hf, t), GgmlDType::F32))
        .collect();
    let path = dir.join(format!("tiny-{arch}.gguf"));
    write_gguf(&path, &tiny_metadata(arch), &entries);
    (path, tensors)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn synthetic_gguf_of_every_family_loads_in_hf_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, family) in [
        ("llama", Family::Llama),
        ("mistral", Family::Mistral),
        ("qwen2", Family::Qwen2),
        ("qwen3", Family::Qwen3),
        ("gemma3", Family::Gemma3),
        ("olmo2", Family::Olmo2),
    ] {
        let with_output = arch != "gemma3";
        let (path, tensors) = write_tiny_gguf(dir.path(), arch, with_output);
        let m = load(path.to_str().unwrap(), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let c = &m.config;
        assert_eq!(c.family, family);
        assert_eq!(
            (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads),
            (LAYERS, D, HEADS, KV)
        );
        assert_eq!((c.head_dim, c.d_ff, c.vocab_size), (HD, FF, VOCAB));
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.max_position, 2048);
        assert_eq!(c.tie_embeddings, !with_output);
        assert_eq!(c.attention_bias, arch == "qwen2");
        assert_eq!(c.qk_norm, ["qwen3", "gemma3", "olmo2"].contains(&arch));
        assert_eq!(c.eos_token_ids, vec![0]);
        if arch == "gemma3" {
            let g = c.gemma.as_ref().unwrap();
            assert_eq!(g.sliding_window, 512);
            assert_eq!(g.query_pre_attn_scalar, HD as f64);
        }
        assert_eq!(m.weights.len(), tensors.len(), "{arch}");
        for (hf, _, t) in &tensors {
            let got = m.weights.get(hf).unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert_eq!(got.dims(), t.dims(), "{arch} {hf}");
            assert!(
                max_diff(got, t) < 1e-6,
                "{arch} {hf} differs from the HF original"
            );
        }
        assert_eq!(
            m.apply_chat_template(&[("user", "ab")], false).unwrap(),
            "ab<|end|>"
        );
        assert_eq!(m.tokenizer.encode("ab<|end|>", false).unwrap(), vec![3, 0]);
    }
}

#[test]
fn quantized_gguf_tensors_dequantize_close_to_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let arch = "llama";
    let tensors = tiny_tensors(arch, true);
    let quants = [
        GgmlDType::Q8_0,
        GgmlDType::Q4_1,
        GgmlDType::Q4K,
        GgmlDType::F16,
    ];
    let entries: Vec<(String, Tensor, GgmlDType)> = tensors
        .iter()
        .enumerate()
        .map(|(i, (hf, gg, t))| {
            // Matrices with 256-wide rows can take any quant type; others stay f32.
            let q = if t.rank() == 2 && t.dims()[1] % 256 == 0 {
                quants[i % quants.len()]
            } else if t.rank() == 2 && t.dims()[1] % 32 == 0 {
                [GgmlDType::Q8_0, GgmlDType::Q4_1, GgmlDType::F16][i % 3]
            } else {
                GgmlDType::F32
            };
            (gg.clone(), to_gguf_layout(arch, hf, t), q)
        })
        .collect();
    let path = dir.path().join("quant.gguf");
    write_gguf(&path, &tiny_metadata(arch), &entries);
    let m = load(
        path.to_str().unwrap(),
        &LoadOptions {
            device: Device::Cpu,
            dtype: DType::F16,
            ..Default::default()
        },
    )
    .unwrap();
    for (hf, _, t) in &tensors {
        let got = m.weights.get(hf).unwrap();
        assert_eq!(got.dtype(), DType::F16);
        // 4-bit quantization of N(0,1) values: errors well under 0.5.
        assert!(max_diff(got, t) < 0.5, "{hf}: {}", max_diff(got, t));
    }
    // q_proj rows came back in HF order: row-wise correlation with the original is high.
    let q = m
        .weights
        .get("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    let orig = &tensors
        .iter()
        .find(|x| x.0 == "model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .2;
    assert!(max_diff(q, orig) < 0.5);
}

// ---------------------------------------------------------------------------------------------
// bad GGUFs

fn load_err(source: &str) -> ModelError {
    match load(source, &LoadOptions::default()) {
        Ok(_) => panic!("`{source}` should not load"),
        Err(e) => e,
    }
}

#[test]
fn bad_gguf_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let err = load_err(&p("missing.gguf")).to_string();
    assert!(err.contains("not found"), "{err}");

    let (good, _) = write_tiny_gguf(dir.path(), "llama", true);
    let bytes = std::fs::read(&good).unwrap();
    // Truncated in the tensor data and in the header.
    for (name, len) in [
        ("trunc-data.gguf", bytes.len() - 1000),
        ("trunc-head.gguf", 100),
    ] {
        std::fs::write(p(name), &bytes[..len]).unwrap();
        let err = load_err(&p(name)).to_string();
        assert!(err.contains("truncated or corrupted"), "{name}: {err}");
    }
    // Wrong magic.
    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"NOPE");
    std::fs::write(p("magic.gguf"), &bad).unwrap();
    assert!(matches!(load_err(&p("magic.gguf")), ModelError::Format(_)));
    // Random garbage.
    std::fs::write(p("garbage.gguf"), vec![0xABu8; 4096]).unwrap();
    assert!(matches!(
        load_err(&p("garbage.gguf")),
        ModelError::Format(_)
    ));
    // Empty file.
    std::fs::write(p("empty.gguf"), b"").unwrap();
    assert!(matches!(load_err(&p("empty.gguf")), ModelError::Format(_)));

    // Unknown architecture: the message lists the supported ones.
    let mut md = tiny_metadata("gpt2");
    md[0].1 = Value::String("gpt2".into());
    let entries: Vec<(String, Tensor, GgmlDType)> = tiny_tensors("llama", true)
        .into_iter()
        .map(|(_, g, t)| (g, t, GgmlDType::F32))
        .collect();
    write_gguf(&dir.path().join("arch.gguf"), &md, &entries);
    let err = load_err(&p("arch.gguf"));
    assert!(matches!(err, ModelError::UnsupportedArch { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("gpt2") && msg.contains("llama") && msg.contains("gemma3"),
        "{msg}"
    );

    // Metadata that disagrees with the tensors: a shape error naming the weight.
    let mut md = tiny_metadata("llama");
    for kv in md.iter_mut() {
        if kv.0 == "llama.feed_forward_length" {
            kv.1 = Value::U32(100);
        }
    }
    write_gguf(&dir.path().join("shape.gguf"), &md, &entries_for("llama"));
    match load_err(&p("shape.gguf")) {
        ModelError::BadShape {
            name,
            got,
            expected,
        } => {
            assert!(name.contains("mlp."), "{name}");
            assert_eq!(got[0], FF);
            assert_eq!(expected[0], 100);
        }
        other => panic!("expected a shape error, got {other}"),
    }

    // A missing layer tensor.
    let mut entries = entries_for("llama");
    entries.retain(|(n, _, _)| n != "blk.1.ffn_down.weight");
    write_gguf(
        &dir.path().join("missing-w.gguf"),
        &tiny_metadata("llama"),
        &entries,
    );
    let err = load_err(&p("missing-w.gguf")).to_string();
    assert!(err.contains("model.layers.1.mlp.down_proj.weight"), "{err}");

    // Missing required metadata.
    let md: Vec<(String, Value)> = tiny_metadata("llama")
        .into_iter()
        .filter(|(k, _)| k != "llama.block_count")
        .collect();
    write_gguf(&dir.path().join("nometa.gguf"), &md, &entries_for("llama"));
    let err = load_err(&p("nometa.gguf")).to_string();
    assert!(err.contains("llama.block_count"), "{err}");

    // Tokenizer metadata missing.
    let md: Vec<(String, Value)> = tiny_metadata("llama")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("tokenizer.ggml.tokens"))
        .collect();
    write_gguf(&dir.path().join("notok.gguf"), &md, &entries_for("llama"));
    assert!(matches!(
        load_err(&p("notok.gguf")),
        ModelError::Tokenizer(_)
    ));
}

fn entries_for(arch: &str) -> Vec<(String, Tensor, GgmlDType)> {
    tiny_tensors(arch, true)
        .into_iter()
        .map(|(hf, g, t)| (g, to_gguf_layout(arch, &hf, &t), GgmlDType::F32))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// synthetic safetensors folders

const TOKENIZER_JSON: &str = r#"{"version":"1.0","truncation":null,"padding":null,
  "added_tokens":[
    {"id":2,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
    {"id":3,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
  "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
  "model":{"type":"WordLevel","vocab":{"<unk>":0,"hi":1,"<s>":2,"</s>":3},"unk_token":"<unk>"}}"#;

fn tiny_config_json(family: &str) -> serde_json::Value {
    let (model_type, arch) = match family {
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        "qwen3" => ("qwen3", "Qwen3ForCausalLM"),
        "gemma3" => ("gemma3_text", "Gemma3ForCausalLM"),
        "mistral" => ("mistral", "MistralForCausalLM"),
        "olmo2" => ("olmo2", "Olmo2ForCausalLM"),
        _ => ("llama", "LlamaForCausalLM"),
    };
    json!({
        "architectures": [arch],
        "model_type": model_type,
        "num_hidden_layers": LAYERS,
        "hidden_size": D,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV,
        "head_dim": HD,
        "intermediate_size": FF,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": family != "llama",
        "max_position_embeddings": 1024,
        "bos_token_id": 2,
        "eos_token_id": [3, 1],
        "sliding_window": 128,
        "query_pre_attn_scalar": 16,
        "torch_dtype": "bfloat16"
    })
}

/// Writes config.json, tokenizer files and random weights of the right shapes; returns the
/// tensors written (HF names).
fn write_tiny_folder(dir: &Path, family: &str, shards: usize) -> HashMap<String, Tensor> {
    let cfg_json = tiny_config_json(family);
    std::fs::write(dir.join("config.json"), cfg_json.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER_JSON).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({
            "bos_token": "<s>",
            "eos_token": {"content": "</s>", "special": true},
            "chat_template": [
                {"name": "tool_use", "template": "TOOLS"},
                {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let cfg = config_from_hf_json(&cfg_json).unwrap();
    let tensors: HashMap<String, Tensor> = expected_weights(&cfg)
        .into_iter()
        .map(|(n, s)| {
            let t = Tensor::randn(0f32, 1.0, s, &Device::Cpu)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap();
            (n, t)
        })
        .collect();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for s in 0..shards {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", s + 1, shards)
        };
        let part: HashMap<String, Tensor> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % shards == s)
            .map(|(_, n)| {
                weight_map.insert((*n).clone(), json!(file));
                ((*n).clone(), tensors[*n].clone())
            })
            .collect();
        candle_core::safetensors::save(&part, dir.join(&file)).unwrap();
    }
    if shards > 1 {
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            json!({"metadata": {}, "weight_map": weight_map}).to_string(),
        )
        .unwrap();
    }
    tensors
}

#[test]
fn safetensors_folder_loads_config_weights_tokenizer_template() {
    for family in ["llama", "mistral", "qwen2", "qwen3", "gemma3", "olmo2"] {
        let dir = tempfile::tempdir().unwrap();
        let tensors = write_tiny_folder(dir.path(), family, 1);
        let src = dir.path().to_str().unwrap();
        let m = load(src, &LoadOptions::default()).unwrap_or_else(|e| panic!("{family}: {e}"));
        let c = &m.config;
        assert_eq!(c.family.name(), family);
        assert_eq!(
            (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim),
            (LAYERS, D, HEADS, KV, HD)
        );
        assert_eq!((c.d_ff, c.vocab_size, c.max_position), (FF, VOCAB, 1024));
        assert_eq!(c.tie_embeddings, family != "llama");
        assert_eq!(c.attention_bias, family == "qwen2");
        assert_eq!(c.qk_norm, ["qwen3", "gemma3", "olmo2"].contains(&family));
        assert_eq!(c.bos_token_id, Some(2));
        assert_eq!(c.eos_token_ids, vec![3, 1]);
        assert_eq!(c.gemma.is_some(), family == "gemma3");
        assert_eq!(m.weights.len(), tensors.len());
        for (n, t) in &tensors {
            let got = m.weights.get(n).unwrap();
            assert_eq!(got.dtype(), DType::F32);
            assert_eq!(max_diff(got, &t.to_dtype(DType::F32).unwrap()), 0.0, "{n}");
        }
        assert_eq!(m.tokenizer.bos_id, Some(2));
        assert_eq!(m.tokenizer.eos_ids, vec![3, 1]);
        assert_eq!(m.tokenizer.encode("hi </s>", false).unwrap(), vec![1, 3]);
        let chat = m.apply_chat_template(&[("user", "hi")], true).unwrap();
        assert_eq!(chat, "<s>user: hi</s>");
        // The same folder again is the same model; another dtype is not.
        let again = load(src, &LoadOptions::default()).unwrap();
        assert!(Arc::ptr_eq(&m, &again));
        let half = load(
            src,
            &LoadOptions {
                device: Device::Cpu,
                dtype: DType::BF16,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!Arc::ptr_eq(&m, &half));
        assert_eq!(
            half.weights.get("model.norm.weight").unwrap().dtype(),
            DType::BF16
        );
    }
}

#[test]
fn sharded_safetensors_folder_loads_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = write_tiny_folder(dir.path(), "qwen2", 3);
    let m = load(
        dir.path().to_str().unwrap(),
        &LoadOptions {
            device: Device::Cpu,
            dtype: DType::F64,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(m.weights.len(), tensors.len());
    assert_eq!(
        m.weights
            .get("model.layers.1.self_attn.q_proj.bias")
            .unwrap()
            .dtype(),
        DType::F64
    );
    // A shard named in the index but absent is an error naming it.
    std::fs::remove_file(dir.path().join("model-00002-of-00003.safetensors")).unwrap();
    let err = load_err(dir.path().to_str().unwrap()).to_string();
    assert!(err.contains("model-00002-of-00003.safetensors"), "{err}");
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(p, v.to_string()).unwrap();
}

#[test]
fn bad_safetensors_folders_are_clear_errors() {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_folder(dir.path(), "llama", 1);
        dir
    };
    let err_of = |dir: &tempfile::TempDir| load_err(dir.path().to_str().unwrap());

    let d = fresh();
    edit_config(d.path(), |c| {
        c.remove("num_hidden_layers");
    });
    let e = err_of(&d).to_string();
    assert!(e.contains("num_hidden_layers"), "{e}");

    let d = fresh();
    edit_config(d.path(), |c| {
        c.insert("hidden_size".into(), json!("576"));
    });
    let e = err_of(&d).to_string();
    assert!(e.contains("hidden_size") && e.contains("integer"), "{e}");

    let d = fresh();
    edit_config(d.path(), |c| {
        c.insert("eos_token_id".into(), json!("eos"));
    });
    assert!(matches!(err_of(&d), ModelError::Config(_)));

    let d = fresh();
    edit_config(d.path(), |c| {
        c.insert("model_type".into(), json!("gpt_neox"));
        c.insert("architectures".into(), json!(["GPTNeoXForCausalLM"]));
    });
    let e = err_of(&d);
    assert!(matches!(e, ModelError::UnsupportedArch { .. }));
    assert!(
        e.to_string().contains("gpt_neox") && e.to_string().contains("qwen3"),
        "{e}"
    );

    let d = fresh();
    std::fs::write(d.path().join("config.json"), "{ not json").unwrap();
    assert!(matches!(err_of(&d), ModelError::Format(_)));

    let d = fresh();
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    let e = err_of(&d).to_string();
    assert!(e.contains("config.json"), "{e}");

    let d = fresh();
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    let e = err_of(&d);
    assert!(matches!(e, ModelError::Tokenizer(_)), "{e}");

    let d = fresh();
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let e = err_of(&d).to_string();
    assert!(e.contains("no *.safetensors"), "{e}");

    let d = fresh();
    let f = d.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&d).to_string();
    assert!(e.contains("truncated or corrupted"), "{e}");

    let d = fresh();
    std::fs::write(
        d.path().join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk",
    )
    .unwrap();
    assert!(matches!(err_of(&d), ModelError::Format(_)));

    // A weight of the wrong shape.
    let d = fresh();
    let f = d.path().join("model.safetensors");
    let mut ts = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
    ts.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        Tensor::zeros((FF, D + 1), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&ts, &f).unwrap();
    match err_of(&d) {
        ModelError::BadShape {
            name,
            got,
            expected,
        } => {
            assert_eq!(name, "model.layers.1.mlp.up_proj.weight");
            assert_eq!(got, vec![FF, D + 1]);
            assert_eq!(expected, vec![FF, D]);
        }
        other => panic!("expected a shape error, got {other}"),
    }

    // A missing weight (untied lm_head).
    let d = fresh();
    let f = d.path().join("model.safetensors");
    let mut ts = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
    ts.remove("lm_head.weight");
    candle_core::safetensors::save(&ts, &f).unwrap();
    assert!(matches!(err_of(&d), ModelError::MissingWeight(n) if n == "lm_head.weight"));
}

#[test]
fn validate_weights_reports_the_first_problem() {
    let cfg = config_from_hf_json(&tiny_config_json("llama")).unwrap();
    let w = Weights::default();
    let e = validate_weights(&cfg, &w).unwrap_err();
    assert!(matches!(e, ModelError::MissingWeight(_)));
}

// ---------------------------------------------------------------------------------------------
// sources, devices, dtypes

#[test]
fn device_and_dtype_strings() {
    assert!(matches!(device_from_str("cpu").unwrap(), Device::Cpu));
    assert!(matches!(device_from_str(" CPU ").unwrap(), Device::Cpu));
    let e = device_from_str("tpu").unwrap_err().to_string();
    assert!(e.contains("tpu") && e.contains("cuda:N"), "{e}");
    assert!(device_from_str("cuda:x").is_err());
    if !candle_core::utils::cuda_is_available() {
        let e = device_from_str("cuda:0").unwrap_err().to_string();
        assert!(e.contains("cuda"), "{e}");
        assert!(device_from_str("cuda").is_err());
    }
    assert_eq!(dtype_from_str("f32").unwrap(), DType::F32);
    assert_eq!(dtype_from_str("BF16").unwrap(), DType::BF16);
    assert_eq!(dtype_from_str("float16").unwrap(), DType::F16);
    assert_eq!(dtype_from_str("f64").unwrap(), DType::F64);
    let e = dtype_from_str("int8").unwrap_err().to_string();
    assert!(e.contains("int8") && e.contains("bf16"), "{e}");
    // Non-float weights are refused before anything is read.
    let e = load(
        "whatever.gguf",
        &LoadOptions {
            device: Device::Cpu,
            dtype: DType::U8,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("dtype"), "{e}");
}

#[test]
fn unusable_sources_are_clear_errors() {
    let e = load_err("definitely-not-here/model.gguf").to_string();
    assert!(e.contains("not found"), "{e}");
    let e = load_err("just words").to_string();
    assert!(e.contains("hub id"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("weights.bin");
    std::fs::write(&txt, b"x").unwrap();
    let e = load_err(txt.to_str().unwrap()).to_string();
    assert!(e.contains("not a .gguf"), "{e}");
    // An empty folder: no config.json.
    let e = load_err(dir.path().to_str().unwrap()).to_string();
    assert!(e.contains("config.json"), "{e}");
}

/// Offline with an empty cache, and online with an unreachable hub: both fail fast and say why.
/// The hub's settings are a value (no process-wide variables set, so no race with other tests).
#[test]
fn hub_without_cache_or_network_fails_fast() {
    use rlq::model::hub::{resolve_with, HubSettings};
    let cache = tempfile::tempdir().unwrap();
    let offline = HubSettings {
        cache: cache.path().to_path_buf(),
        offline: true,
        endpoint: "https://huggingface.co".into(),
        token: None,
    };
    let t = std::time::Instant::now();
    let e = resolve_with("HuggingFaceTB/SmolLM2-135M-Instruct", &offline)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HF_HUB_OFFLINE") && e.contains("not (fully) in the HF cache"),
        "{e}"
    );
    assert!(t.elapsed().as_secs() < 5);

    let unreachable = HubSettings {
        offline: false,
        endpoint: "http://127.0.0.1:9".into(),
        ..offline.clone()
    };
    let t = std::time::Instant::now();
    let e = resolve_with("HuggingFaceTB/SmolLM2-135M-Instruct@main", &unreachable)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot reach") && e.contains("127.0.0.1:9"),
        "{e}"
    );
    assert!(t.elapsed().as_secs() < 10);

    // A hub cache that holds the repo is used without any network.
    let snap = cache
        .path()
        .join("models--acme--tiny")
        .join("snapshots")
        .join("0123456789abcdef");
    std::fs::create_dir_all(&snap).unwrap();
    write_tiny_folder(&snap, "qwen3", 1);
    std::fs::create_dir_all(cache.path().join("models--acme--tiny/refs")).unwrap();
    std::fs::write(
        cache.path().join("models--acme--tiny/refs/main"),
        "0123456789abcdef",
    )
    .unwrap();
    let dir = resolve_with("acme/tiny", &unreachable).unwrap();
    assert_eq!(dir, snap);
    let m = load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(m.config.family, Family::Qwen3);
}

// ---------------------------------------------------------------------------------------------
// a real Gemma 3 GGUF (optional: `scripts/fetch-models.sh gemma`)

fn gemma3() -> Option<Arc<Model>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m.q4_k_m.gguf");
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} is absent (scripts/fetch-models.sh gemma)",
            path.display()
        );
        return None;
    }
    Some(load(path.to_str().unwrap(), &LoadOptions::default()).expect("Gemma 3 loads"))
}

#[test]
fn gemma3_gguf_maps_config_names_and_norm_convention() {
    let Some(m) = gemma3() else { return };
    let c = &m.config;
    assert_eq!(c.family, Family::Gemma3);
    assert_eq!(
        (
            c.n_layers,
            c.d_model,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            c.d_ff,
            c.vocab_size
        ),
        (18, 640, 4, 1, 256, 2048, 262144)
    );
    assert!(c.qk_norm && c.tie_embeddings && !c.attention_bias);
    assert_eq!(c.rope_theta, 1e6);
    let g = c.gemma.as_ref().unwrap();
    assert_eq!((g.sliding_window, g.sliding_window_pattern), (512, 6));
    assert_eq!(g.query_pre_attn_scalar, 256.0);
    assert_eq!(c.bos_token_id, Some(2));
    assert_eq!(c.eos_token_ids, vec![1]);
    validate_weights(c, &m.weights).unwrap();
    // HF convention (scale = 1 + w): GGUF stored 1 + w, we hand back w. Gemma's trained norm
    // weights are mostly well away from -1, so the GGUF value (w + 1) would have mean ≈ mean(w) + 1.
    for l in [0, 17] {
        for n in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            let w = m
                .weights
                .get(&format!("model.layers.{l}.{n}.weight"))
                .unwrap();
            assert_eq!(w.dims(), &[640]);
        }
        let q = m
            .weights
            .get(&format!("model.layers.{l}.self_attn.q_norm.weight"))
            .unwrap();
        assert_eq!(q.dims(), &[256]);
    }
}

/// The un-permutation is exactly what turns llama.cpp's rope into HF's: on SmolLM2's real layer-0
/// weights, attention logits from (raw GGUF q/k rows + interleaved-pair rope, as llama.cpp runs
/// them) equal logits from (our HF-layout q/k + half-split `rotate_half` rope). The GGUF side reads
/// the file directly, so this does not reuse the loader's permutation code.
#[test]
fn smollm2_unpermuted_qk_with_hf_rope_match_gguf_qk_with_llama_cpp_rope() {
    let Some(path) = smollm2_path() else { return };
    let m = smollm2().unwrap();
    let dev = Device::Cpu;
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut raw = |n: &str| {
        content
            .tensor(&mut f, n, &dev)
            .unwrap()
            .dequantize(&dev)
            .unwrap()
    };
    let (gg_q, gg_k) = (raw("blk.0.attn_q.weight"), raw("blk.0.attn_k.weight"));
    // The default load keeps q/k quantized and reorders their quantized rows.
    assert!(m
        .weights
        .is_quantized("model.layers.0.self_attn.q_proj.weight"));
    let hf_q = m
        .weights
        .dense("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    let hf_k = m
        .weights
        .dense("model.layers.0.self_attn.k_proj.weight")
        .unwrap();

    let (t, hd, heads, kv) = (6usize, 64usize, 9usize, 3usize);
    let ids = Tensor::new(&[1u32, 4093, 198, 1780, 314, 260], &dev).unwrap();
    let x = m
        .weights
        .dense("model.embed_tokens.weight")
        .unwrap()
        .embedding(&ids)
        .unwrap();
    let theta = m.config.rope_theta;
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / hd as f64) as f32)
        .collect();
    let inv = Tensor::new(inv, &dev)
        .unwrap()
        .reshape((1, hd / 2))
        .unwrap();
    let pos = Tensor::arange(0f32, t as f32, &dev)
        .unwrap()
        .reshape((t, 1))
        .unwrap();
    let freqs = pos.broadcast_mul(&inv).unwrap();
    let (cos, sin) = (freqs.cos().unwrap(), freqs.sin().unwrap());

    let project = |w: &Tensor, n: usize| {
        x.matmul(&w.t().unwrap())
            .unwrap()
            .reshape((1, t, n, hd))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let logits = |q: Tensor, k: Tensor| {
        // Each kv head serves heads/kv query heads.
        let k = k
            .unsqueeze(2)
            .unwrap()
            .repeat((1, 1, heads / kv, 1, 1))
            .unwrap()
            .reshape((1, heads, t, hd))
            .unwrap();
        q.matmul(&k.t().unwrap()).unwrap()
    };
    let rope = candle_nn::rotary_emb::rope;
    let rope_i = candle_nn::rotary_emb::rope_i;
    let hf = logits(
        rope(&project(&hf_q, heads), &cos, &sin).unwrap(),
        rope(&project(&hf_k, kv), &cos, &sin).unwrap(),
    );
    let gg = logits(
        rope_i(&project(&gg_q, heads), &cos, &sin).unwrap(),
        rope_i(&project(&gg_k, kv), &cos, &sin).unwrap(),
    );
    let scale = hf
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = max_diff(&hf, &gg);
    assert!(
        scale > 1.0 && diff < 1e-4 * scale,
        "diff {diff} vs scale {scale}"
    );
    // Sanity: HF rope on the raw (still permuted) rows gives different logits.
    let wrong = logits(
        rope(&project(&gg_q, heads), &cos, &sin).unwrap(),
        rope(&project(&gg_k, kv), &cos, &sin).unwrap(),
    );
    assert!(max_diff(&wrong, &gg) > 1e-2 * scale);
}

/// Gemma 3's instruction template (as published with the HF checkpoints): system folded into
/// the first user turn, `messages[1:]`, `is string`, `| trim`, alternation check.
const GEMMA3_TEMPLATE: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"#;

#[test]
fn gemma3_and_qwen3_style_templates_render() {
    let t = ChatTemplate::with_tokens(GEMMA3_TEMPLATE, "<bos>", "<eos>").unwrap();
    let out = t
        .render(
            &[
                ("system", "Be brief."),
                ("user", " hi "),
                ("assistant", "hello"),
                ("user", "bye"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nhello<end_of_turn>\n\
         <start_of_turn>user\nbye<end_of_turn>\n<start_of_turn>model\n"
    );
    let err = t
        .render(&[("user", "a"), ("user", "b")], false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must alternate"), "{err}");

    // Qwen3-style string surgery and reverse iteration with a namespace.
    let qwen3 = r#"{%- set ns = namespace(last_user=-1) %}
{%- for m in messages[::-1] %}{%- set i = (messages|length - 1) - loop.index0 %}
{%- if ns.last_user < 0 and m.role == 'user' %}{%- set ns.last_user = i %}{%- endif %}{%- endfor %}
{%- for m in messages %}
{%- set content = m.content.split('</think>')[-1].lstrip('\n') %}
{{- '<|im_start|>' + m.role + '\n' + content + '<|im_end|>\n' }}
{%- endfor %}
{{- ns.last_user }}"#;
    let t = ChatTemplate::with_tokens(qwen3, "", "").unwrap();
    let out = t
        .render(
            &[
                ("user", "q"),
                ("assistant", "<think>x</think>\n\nanswer"),
                ("user", "q2"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nanswer<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n2"
    );
}

#[test]
fn model_from_parts_has_no_tokenizer_or_template() {
    let cfg = config_from_hf_json(&tiny_config_json("llama")).unwrap();
    let m = Model::from_parts(
        cfg,
        Weights::default(),
        "made:in-code",
        Device::Cpu,
        DType::F32,
    );
    assert!(m.tokenizer.is_empty());
    let e = m
        .apply_chat_template(&[("user", "hi")], true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no chat template"), "{e}");
    assert_eq!(m.info().source, "made:in-code");
}

/// llama.cpp's converter (`LlamaModel.generate_extra_tensors`) turns HF's llama3 rope scaling
/// into per-frequency factors, written as `rope_freqs`. Computed here independently of rlq.
fn llama31_rope_factors(
    theta: f64,
    head_dim: usize,
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let k = if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            k as f32
        })
        .collect()
}

/// A GGUF with `rope_freqs` computes what the same weights compute under HF's llama3 scaling
/// (itself checked against candle-transformers in tests/parity.rs); bad factors are refused.
#[test]
fn gguf_rope_freqs_apply_llama31_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let arch = "llama";
    let entries: Vec<(String, Tensor, GgmlDType)> = tiny_tensors(arch, true)
        .iter()
        .map(|(hf, gg, t)| (gg.clone(), to_gguf_layout(arch, hf, t), GgmlDType::F32))
        .collect();
    let plain_path = dir.path().join("plain.gguf");
    write_gguf(&plain_path, &tiny_metadata(arch), &entries);
    // With θ = 500000 and 16-dim heads: frequency 0 unscaled, 1 in the smoothing band, 2.. ×1/8.
    let (factor, low, high, original) = (8.0, 1.0, 4.0, 64.0);
    let factors = llama31_rope_factors(500000.0, HD, factor, low, high, original);
    assert!(factors[0] == 1.0 && factors[1] > 1.0 && factors[1] < 8.0 && factors[2] == 8.0);
    let with_freqs = |fs: &[f32], name: &str| {
        let mut e = entries.clone();
        let t = Tensor::new(fs, &Device::Cpu).unwrap();
        e.push(("rope_freqs.weight".into(), t, GgmlDType::F32));
        let p = dir.path().join(name);
        write_gguf(&p, &tiny_metadata(arch), &e);
        p
    };
    let scaled_path = with_freqs(&factors, "scaled.gguf");

    let scaled = load(scaled_path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert!(matches!(&scaled.config.rope_scaling,
        rlq::model::RopeScaling::Factors(f) if f.len() == HD / 2));
    let plain = load(plain_path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let mut cfg = plain.config.clone();
    cfg.rope_scaling = rlq::model::RopeScaling::Llama3 {
        factor,
        low_freq_factor: low,
        high_freq_factor: high,
        original_max_position: original,
    };
    let reference = Model::from_parts(cfg, plain.weights.clone(), "ref", Device::Cpu, DType::F32);
    let ids: Vec<u32> = (0..96u32).map(|i| (i * 7) % VOCAB as u32).collect();
    let logits = |m: &Model| {
        rlq::model::hooked::HookedTransformer::new(m)
            .unwrap()
            .logits(&ids)
            .unwrap()
    };
    let (a, b, c) = (logits(&scaled), logits(&reference), logits(&plain));
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // The factors pass through f32 in the file and the two paths round the angles differently;
    // with random weights (logits up to ~40) that shows as up to ~1.2e-5 of the logit scale
    // (seen over runs): bound 1e-4. Leaving the scaling out changes logits by far more (below).
    eprintln!(
        "rope_freqs: |scaled - llama3| {} |unscaled - llama3| {} scale {scale}",
        max_diff(&a, &b),
        max_diff(&c, &b)
    );
    assert!(
        max_diff(&a, &b) < 1e-4 * scale.max(1.0),
        "{}",
        max_diff(&a, &b)
    );
    assert!(
        max_diff(&c, &b) > 1e-2 * scale.max(1.0),
        "the scaling must matter here"
    );

    for (bad, why) in [
        (vec![1.0f32; HD / 2 - 1], "frequencies"),
        (vec![0.0f32; HD / 2], "positive"),
    ] {
        let p = with_freqs(&bad, "bad.gguf");
        let err = match load(p.to_str().unwrap(), &LoadOptions::default()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("bad rope_freqs must be refused"),
        };
        assert!(err.contains("rope_freqs") && err.contains(why), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// hostile model files (issue 13): every header field is untrusted. Each case builds the lying
// file and asserts a diagnostic naming the problem (no panic, no abort, no hang).
//
// Memory: every hostile header here is refused by checks on the header alone, before a tensor
// is read; the header reader allocates at most its caps (4M metadata values, 16 MiB per string,
// bounded by the file's size: these files are < 1 MB), so peak RSS stays far under 500 MB for
// any hostile header (by the caps; the SmolLM2 case holds two 98 MB copies of the real file).

/// The byte position of tensor `name`'s table entry (its dimension count) in a GGUF.
fn tensor_entry(bytes: &[u8], name: &str) -> usize {
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .unwrap_or_else(|| panic!("no tensor entry `{name}`"));
    at + pat.len()
}

/// Reads the (n_dims, dims, dtype, offset) field positions of a tensor entry.
fn entry_fields(bytes: &[u8], name: &str) -> (usize, usize, usize) {
    let nd_at = tensor_entry(bytes, name);
    let n = u32::from_le_bytes(bytes[nd_at..nd_at + 4].try_into().unwrap()) as usize;
    let dtype_at = nd_at + 4 + 8 * n;
    (nd_at, dtype_at, dtype_at + 4)
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A tiny llama GGUF whose `blk.0.attn_q.weight` is Q4_1 (the rest F32), as bytes.
fn gguf_with_q4_1() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<(String, Tensor, GgmlDType)> = entries_for("llama")
        .into_iter()
        .map(|(n, t, q)| {
            let q = if n == "blk.0.attn_q.weight" {
                GgmlDType::Q4_1
            } else {
                q
            };
            (n, t, q)
        })
        .collect();
    let p = dir.path().join("q.gguf");
    write_gguf(&p, &tiny_metadata("llama"), &entries);
    std::fs::read(p).unwrap()
}

/// Writes `bytes` as `<dir>/<name>` and returns the load error's message (a panic would fail
/// the test; a `Format` or `Config` error is what a lying file must give).
fn hostile_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let e = load_err(p.to_str().unwrap());
    assert!(
        matches!(
            e,
            ModelError::Format(_)
                | ModelError::Config(_)
                | ModelError::MissingWeight(_)
                | ModelError::BadShape { .. }
        ),
        "{name}: unexpected kind of error: {e}"
    );
    e.to_string()
}

/// Peak RSS of this test alone: 14 MB (scripts/hostile-rss.sh, benches/results/hostile-rss.txt),
/// although its headers claim tensors of up to 2^80 bytes: nothing is allocated from a header field.
#[test]
fn hostile_gguf_tensor_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = gguf_with_q4_1();
    // The untouched file loads (so each refusal below is the lie's doing).
    let p = dir.path().join("good.gguf");
    std::fs::write(&p, &good).unwrap();
    load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();

    let q = "blk.0.attn_q.weight";
    let (nd_at, dtype_at, off_at) = entry_fields(&good, q);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        // dims [64, 0] (cf. [576, 0] in the issue): a zero dimension.
        (
            "zero-dim.gguf",
            {
                let mut b = good.clone();
                put_u64(&mut b, nd_at + 4, 0);
                b
            },
            vec![q, "zero dimension"],
        ),
        // dims [2^40, 2^40]: the element count overflows.
        (
            "overflow.gguf",
            {
                let mut b = good.clone();
                put_u64(&mut b, nd_at + 4, 1 << 40);
                put_u64(&mut b, nd_at + 12, 1 << 40);
                b
            },
            vec![q, "overflow"],
        ),
        // No dimensions at all (the entry is shortened accordingly).
        (
            "no-dims.gguf",
            {
                let mut b = good.clone();
                put_u32(&mut b, nd_at, 0);
                b.drain(nd_at + 4..nd_at + 20);
                b
            },
            vec![q, "0 dimensions"],
        ),
        // Five dimensions.
        (
            "five-dims.gguf",
            {
                let mut b = good.clone();
                put_u32(&mut b, nd_at, 5);
                b
            },
            vec![q, "5 dimensions"],
        ),
        // An unknown ggml type.
        (
            "dtype-99.gguf",
            {
                let mut b = good.clone();
                put_u32(&mut b, dtype_at, 99);
                b
            },
            vec![q, "ggml type 99"],
        ),
        // Q4_1 data relabelled F32 and Q8_0: larger than its bytes, it overlaps the next tensor.
        (
            "as-f32.gguf",
            {
                let mut b = good.clone();
                put_u32(&mut b, dtype_at, 0);
                b
            },
            vec![q, "overlap"],
        ),
        (
            "as-q8_0.gguf",
            {
                let mut b = good.clone();
                put_u32(&mut b, dtype_at, 8);
                b
            },
            vec![q, "overlap"],
        ),
        // Relabelled Q4_0 (smaller): leaves unused bytes before the next tensor.
        (
            "as-q4_0.gguf",
            {
                let mut b = good.clone();
                put_u32(&mut b, dtype_at, 2);
                b
            },
            vec![q, "unused bytes"],
        ),
        // Its offset moved by one byte.
        (
            "unaligned.gguf",
            {
                let mut b = good.clone();
                let o = get_u64(&b, off_at);
                put_u64(&mut b, off_at, o + 1);
                b
            },
            vec![q, "not aligned"],
        ),
        // Two tensors at the same offset.
        (
            "same-offset.gguf",
            {
                let mut b = good.clone();
                let o = get_u64(&b, off_at);
                let (_, _, k_off) = entry_fields(&good, "blk.0.attn_k.weight");
                put_u64(&mut b, k_off, o);
                b
            },
            vec![q, "blk.0.attn_k.weight", "overlap"],
        ),
        // An offset far past the end of the file (aligned, and overflowing with its size).
        (
            "past-end.gguf",
            {
                let mut b = good.clone();
                put_u64(&mut b, off_at, !31); // the largest 32-aligned offset
                b
            },
            vec![q],
        ),
        // The data cut short: the last tensor runs past the end.
        (
            "cut.gguf",
            good[..good.len() - 100].to_vec(),
            vec!["runs past the end"],
        ),
        // Counts in the header that the file cannot hold.
        (
            "tensor-count.gguf",
            {
                let mut b = good.clone();
                put_u64(&mut b, 8, 1 << 40);
                b
            },
            vec!["claims 1099511627776 tensors"],
        ),
        (
            "key-count.gguf",
            {
                let mut b = good.clone();
                put_u64(&mut b, 16, u64::MAX);
                b
            },
            vec!["metadata keys"],
        ),
        // The first key's length: 2^40 bytes.
        (
            "key-len.gguf",
            {
                let mut b = good.clone();
                put_u64(&mut b, 24, 1 << 40);
                b
            },
            vec!["1099511627776 bytes long"],
        ),
        // The token list claims 2^40 strings.
        (
            "array-len.gguf",
            {
                let mut b = good.clone();
                let key = b"tokenizer.ggml.tokens";
                let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len();
                put_u64(&mut b, at + 8, 1 << 40);
                b
            },
            vec!["tokenizer.ggml.tokens", "1099511627776 elements"],
        ),
    ];
    for (name, bytes, wants) in cases {
        let e = hostile_err(dir.path(), name, &bytes);
        for w in wants {
            assert!(e.contains(w), "{name}: `{w}` not in: {e}");
        }
    }
}

fn md_with(arch: &str, edits: &[(&str, Option<Value>)]) -> Vec<(String, Value)> {
    let mut md = tiny_metadata(arch);
    for (k, v) in edits {
        md.retain(|(key, _)| key != k);
        if let Some(v) = v {
            md.push((k.to_string(), v.clone()));
        }
    }
    md
}

/// Peak RSS of this test alone: 8 MB (scripts/hostile-rss.sh), with `block_count` 10^12 and
/// `key_length` 2^62 among its headers.
#[test]
#[allow(clippy::type_complexity)] // one table of (file, metadata changes, expected words)
fn hostile_gguf_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let entries = entries_for("llama");
    let nan = Value::F32(f32::NAN);
    let cases: Vec<(&str, Vec<(&str, Option<Value>)>, Vec<&str>)> = vec![
        (
            "align0",
            vec![("general.alignment", Some(Value::U32(0)))],
            vec!["general.alignment", "power of two"],
        ),
        (
            "align7",
            vec![("general.alignment", Some(Value::U32(7)))],
            vec!["general.alignment", "power of two"],
        ),
        (
            "keylen",
            vec![("llama.attention.key_length", Some(Value::U64(1 << 62)))],
            vec!["llama.attention.key_length", "4611686018427387904"],
        ),
        (
            "blocks-1e12",
            vec![("llama.block_count", Some(Value::U64(1_000_000_000_000)))],
            vec!["llama.block_count", "1000000000000"],
        ),
        (
            "blocks-max",
            vec![("llama.block_count", Some(Value::U64(u64::MAX)))],
            vec!["llama.block_count"],
        ),
        (
            "blocks-0",
            vec![("llama.block_count", Some(Value::U32(0)))],
            vec!["llama.block_count", "between 1"],
        ),
        // Fewer layers than the file holds: the extra layer's tensors are named.
        (
            "blocks-1",
            vec![("llama.block_count", Some(Value::U32(1)))],
            vec!["1-layer llama", "blk.1.attn_q.weight"],
        ),
        // More layers than the file holds: the first missing weight is named.
        (
            "blocks-3",
            vec![("llama.block_count", Some(Value::U32(3)))],
            vec!["model.layers.2."],
        ),
        (
            "heads-0",
            vec![("llama.attention.head_count", Some(Value::U32(0)))],
            vec!["llama.attention.head_count"],
        ),
        (
            "kv-heads-3",
            vec![("llama.attention.head_count_kv", Some(Value::U32(3)))],
            vec!["kv heads"],
        ),
        (
            "rope0",
            vec![("llama.rope.freq_base", Some(Value::F32(0.0)))],
            vec!["llama.rope.freq_base"],
        ),
        (
            "rope-nan",
            vec![("llama.rope.freq_base", Some(nan.clone()))],
            vec!["llama.rope.freq_base", "NaN"],
        ),
        (
            "rope-neg",
            vec![("llama.rope.freq_base", Some(Value::F32(-10000.0)))],
            vec!["llama.rope.freq_base"],
        ),
        (
            "rope-str",
            vec![("llama.rope.freq_base", Some(Value::String("big".into())))],
            vec!["llama.rope.freq_base", "number"],
        ),
        (
            "eps-neg",
            vec![(
                "llama.attention.layer_norm_rms_epsilon",
                Some(Value::F32(-1e-5)),
            )],
            vec!["layer_norm_rms_epsilon"],
        ),
        (
            "eps-nan",
            vec![("llama.attention.layer_norm_rms_epsilon", Some(nan))],
            vec!["layer_norm_rms_epsilon"],
        ),
        (
            "linear0",
            vec![
                (
                    "llama.rope.scaling.type",
                    Some(Value::String("linear".into())),
                ),
                ("llama.rope.scaling.factor", Some(Value::F32(0.0))),
            ],
            vec!["llama.rope.scaling.factor"],
        ),
        (
            "ctx-0",
            vec![("llama.context_length", Some(Value::U32(0)))],
            vec!["llama.context_length"],
        ),
        (
            "eos-2^40",
            vec![("tokenizer.ggml.eos_token_id", Some(Value::U64(1 << 40)))],
            vec!["tokenizer.ggml.eos_token_id"],
        ),
        (
            "eos-vocab",
            vec![(
                "tokenizer.ggml.eos_token_id",
                Some(Value::U32(VOCAB as u32)),
            )],
            vec!["40", "outside the vocabulary"],
        ),
        (
            "bos-neg",
            vec![("tokenizer.ggml.bos_token_id", Some(Value::I32(-1)))],
            vec!["tokenizer.ggml.bos_token_id"],
        ),
    ];
    for (name, edits, wants) in cases {
        let p = dir.path().join(format!("{name}.gguf"));
        write_gguf(&p, &md_with("llama", &edits), &entries);
        let e = load_err(p.to_str().unwrap()).to_string();
        for w in wants {
            assert!(e.contains(w), "{name}: `{w}` not in: {e}");
        }
    }
    // A tensor no architecture uses is named, not skipped.
    let mut extra = entries.clone();
    extra.push((
        "blk.0.mystery.weight".into(),
        Tensor::zeros(D, DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    ));
    let p = dir.path().join("extra.gguf");
    write_gguf(&p, &tiny_metadata("llama"), &extra);
    let e = load_err(p.to_str().unwrap()).to_string();
    assert!(
        e.contains("blk.0.mystery.weight") && e.contains("not used"),
        "{e}"
    );
}

/// A 30-layer file whose `block_count` says 29 (or 0): refused, naming layer 29's tensors.
/// Built from the real SmolLM2 header, so the real file's layout is what is checked.
/// Peak RSS alone: 207 MB, the real header and tokenizer (scripts/hostile-rss.sh).
#[test]
fn hostile_smollm2_block_count_is_refused() {
    let Some(path) = smollm2_path() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let key = b"llama.block_count";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    // type u32 (4), then the value.
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 4);
    let dir = tempfile::tempdir().unwrap();
    for (n, wants) in [
        (29u32, vec!["29-layer llama", "blk.29."]),
        (0, vec!["llama.block_count"]),
    ] {
        let mut b = bytes.clone();
        put_u32(&mut b, at + 4, n);
        let e = hostile_err(dir.path(), &format!("smol-{n}.gguf"), &b);
        for w in wants {
            assert!(e.contains(w), "{n}: `{w}` not in: {e}");
        }
    }
}

/// Peak RSS of this test alone: 10 MB (scripts/hostile-rss.sh).
#[test]
fn hostile_safetensors_folders_are_refused() {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_folder(dir.path(), "llama", 1);
        dir
    };
    let err_of = |dir: &tempfile::TempDir| load_err(dir.path().to_str().unwrap()).to_string();
    let config_cases: Vec<(&str, serde_json::Value, Vec<&str>)> = vec![
        (
            "num_hidden_layers",
            json!(1_000_000_000_000u64),
            vec!["num_hidden_layers", "1000000000000"],
        ),
        (
            "num_hidden_layers",
            json!(u64::MAX),
            vec!["num_hidden_layers"],
        ),
        // One layer claimed, two present: layer 1's tensors are named.
        (
            "num_hidden_layers",
            json!(1),
            vec!["1-layer llama", "model.layers.1."],
        ),
        (
            "eos_token_id",
            json!(1u64 << 40),
            vec!["eos_token_id", "1099511627776"],
        ),
        (
            "eos_token_id",
            json!([3, 28.7]),
            vec!["eos_token_id", "28.7"],
        ),
        ("bos_token_id", json!(VOCAB), vec!["outside the vocabulary"]),
        ("rope_theta", json!(0.0), vec!["rope_theta"]),
        ("rope_theta", json!(-5.0), vec!["rope_theta"]),
        ("rms_norm_eps", json!(-1e-5), vec!["rms_norm_eps"]),
        (
            "rope_scaling",
            json!({"rope_type": "linear", "factor": 0.0}),
            vec!["rope_scaling.factor"],
        ),
        ("num_attention_heads", json!(0), vec!["num_attention_heads"]),
        ("vocab_size", json!(0), vec!["vocab_size"]),
        ("head_dim", json!(1u64 << 62), vec!["head_dim"]),
    ];
    for (key, value, wants) in config_cases {
        let d = fresh();
        edit_config(d.path(), |c| {
            c.insert(key.into(), value.clone());
        });
        let e = err_of(&d);
        for w in &wants {
            assert!(e.contains(w), "{key}={value}: `{w}` not in: {e}");
        }
    }

    // An I32 tensor where a float weight belongs.
    let d = fresh();
    let f = d.path().join("model.safetensors");
    let mut ts = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
    ts.insert(
        "model.norm.weight".into(),
        Tensor::zeros(D, DType::I32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&ts, &f).unwrap();
    let e = err_of(&d);
    assert!(e.contains("model.norm.weight") && e.contains("I32"), "{e}");

    // The same tensor in two files, no index: both files are named.
    let d = fresh();
    let f = d.path().join("model.safetensors");
    let ts = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
    let mut dup = HashMap::new();
    dup.insert(
        "model.norm.weight".to_string(),
        ts["model.norm.weight"].clone(),
    );
    candle_core::safetensors::save(&dup, d.path().join("extra.safetensors")).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("model.norm.weight")
            && e.contains("model.safetensors")
            && e.contains("extra.safetensors"),
        "{e}"
    );
    // With an index saying which file holds each tensor, the folder loads (the other copy is
    // not read as the weight).
    let mut map = serde_json::Map::new();
    for n in ts.keys() {
        map.insert(n.clone(), json!("model.safetensors"));
    }
    map.insert("model.norm.weight".into(), json!("extra.safetensors"));
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        json!({"weight_map": map}).to_string(),
    )
    .unwrap();
    load(d.path().to_str().unwrap(), &LoadOptions::default()).unwrap();

    // A file beside the weights that names none of them (a checkpoint's optimizer moments) is
    // not read past its header: here its data is cut short, which reading it in full refuses.
    let d = fresh();
    let mut moments = HashMap::new();
    moments.insert(
        "m.model.norm.weight".to_string(),
        ts["model.norm.weight"].clone(),
    );
    let f = d.path().join("optimizer.safetensors");
    candle_core::safetensors::save(&moments, &f).unwrap();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 4]).unwrap();
    assert!(candle_core::safetensors::load(&f, &Device::Cpu).is_err());
    load(d.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    // A header that does not parse counts as weights: the full read names the file.
    std::fs::write(&f, b"\x05\0\0\0\0\0\0\0{bad}").unwrap();
    let e = err_of(&d);
    assert!(e.contains("optimizer.safetensors"), "{e}");
}

/// Paths that are not regular files: a FIFO with no writer (opening it would block for ever),
/// a character device that never ends, a directory named like a file, a link loop, and files
/// larger than the stated caps. Each is refused at once, saying what the path is.
#[cfg(unix)]
/// Peak RSS alone: 43 MB, the over-cap files it writes (scripts/hostile-rss.sh).
#[test]
fn hostile_paths_say_what_they_are() {
    use std::os::unix::fs::symlink;
    let mkfifo = |p: &Path| {
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mkfifo failed");
    };
    let t = std::time::Instant::now();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        let d = tempfile::tempdir().unwrap();
        write_tiny_folder(d.path(), "llama", 1);
        let p = d.path().join(file);
        std::fs::remove_file(&p).unwrap();
        mkfifo(&p);
        let e = load_err(d.path().to_str().unwrap()).to_string();
        assert!(e.contains(file) && e.contains("FIFO"), "{file}: {e}");

        std::fs::remove_file(&p).unwrap();
        symlink("/dev/zero", &p).unwrap();
        let e = load_err(d.path().to_str().unwrap()).to_string();
        assert!(
            e.contains(file) && e.contains("character device"),
            "{file}: {e}"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe.gguf");
    mkfifo(&fifo);
    let e = load_err(fifo.to_str().unwrap()).to_string();
    assert!(e.contains("FIFO"), "{e}");
    // A folder named x.gguf.
    let folder = d.path().join("x.gguf");
    std::fs::create_dir(&folder).unwrap();
    let e = load_err(folder.to_str().unwrap()).to_string();
    assert!(e.contains("is a folder"), "{e}");
    // A directory symlink loop, as a folder and as a .gguf.
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    symlink(&b, &a).unwrap();
    symlink(&a, &b).unwrap();
    let e = load_err(a.to_str().unwrap()).to_string();
    assert!(e.contains("symbolic link") && e.contains("levels"), "{e}");
    let (la, lb) = (d.path().join("la.gguf"), d.path().join("lb.gguf"));
    symlink(&lb, &la).unwrap();
    symlink(&la, &lb).unwrap();
    let e = load_err(la.to_str().unwrap()).to_string();
    assert!(e.contains("symbolic link"), "{e}");
    // All of the above answered at once (no read of /dev/zero, no wait on a FIFO).
    assert!(t.elapsed().as_secs() < 20);

    // Files read whole are capped: a 17 MiB config.json is refused with the limit.
    let d = tempfile::tempdir().unwrap();
    write_tiny_folder(d.path(), "llama", 1);
    let mut big = tiny_config_json("llama").to_string();
    big.pop();
    big.push_str(&format!(", \"pad\": \"{}\"}}", "x".repeat(17 << 20)));
    std::fs::write(d.path().join("config.json"), big).unwrap();
    let e = load_err(d.path().to_str().unwrap()).to_string();
    assert!(e.contains("config.json") && e.contains("16 MiB"), "{e}");
}

/// Peak RSS of this test alone: 24 MB with its output and fuel caps (scripts/hostile-rss.sh).
#[test]
fn hostile_chat_templates_stop_at_their_limits() {
    let render = |src: &str| {
        ChatTemplate::with_tokens(src, "<s>", "</s>")
            .and_then(|t| t.render(&[("user", "hi")], true))
    };
    let t = std::time::Instant::now();
    // Two nested range(100000) loops: 10^10 steps; stopped by the step limit.
    let e =
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
            .unwrap_err()
            .to_string();
    assert!(e.contains("steps"), "{e}");
    assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
    // Output far past any prompt: stopped by the output cap.
    let e = render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("output") && e.contains("limit"), "{e}");
    // Unbounded recursion.
    let e = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("recursion") || e.contains("limit"), "{e}");
    // tojson with a giant indent: an error, not a 1 TB allocation.
    let e = render("{{ messages | tojson(indent=1e12) }}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("indent"), "{e}");
    assert!(render("{{ messages | tojson(indent=2) }}").is_ok());
    // A template larger than the cap is refused before compiling.
    let e = render(&"x".repeat(2 << 20)).unwrap_err().to_string();
    assert!(e.contains("at most"), "{e}");
}

/// Token ids beyond the vocabulary are refused by the model layer, naming the id and the
/// vocabulary size (not candle's "index-select invalid index").
#[test]
fn token_ids_beyond_the_vocabulary_are_named() {
    let m = rlq::model::synthetic::random_model(Family::Llama, 1, DType::F32).unwrap();
    let tf = rlq::model::hooked::HookedTransformer::new(&m).unwrap();
    let vocab = m.config.vocab_size;
    assert!(tf.logits(&[1, 2, (vocab - 1) as u32]).is_ok());
    for bad in [vocab as u32, 4000, u32::MAX] {
        let e = tf.logits(&[1, bad]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("token id {bad}")) && e.contains(&format!("{vocab} tokens")),
            "{e}"
        );
    }
}

/// An OLMo 2 GGUF's post-norm layout: no `attn_norm`/`ffn_norm`, q/k norms over all heads; a
/// file claiming a sliding window (OLMo 3, also `olmo2` in llama.cpp) or carrying an input norm
/// is refused rather than run as something else.
#[test]
fn olmo2_gguf_has_post_norms_and_refuses_what_it_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_tiny_gguf(dir.path(), "olmo2", true);
    let m = load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert!(!m.weights.contains("model.layers.0.input_layernorm.weight"));
    assert_eq!(
        m.weights
            .shape("model.layers.1.self_attn.q_norm.weight")
            .unwrap(),
        vec![HEADS * HD]
    );
    // The GGUF-loaded model runs and gives finite logits.
    let tf = rlq::model::hooked::HookedTransformer::new(&m).unwrap();
    let logits = tf.logits(&[1, 2, 3]).unwrap();
    let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));

    let mut md = tiny_metadata("olmo2");
    md.push(("olmo2.attention.sliding_window".into(), Value::U32(4096)));
    write_gguf(&dir.path().join("olmo3.gguf"), &md, &entries_for("olmo2"));
    let err = load_err(dir.path().join("olmo3.gguf").to_str().unwrap()).to_string();
    assert!(err.contains("sliding-window olmo2"), "{err}");

    let mut entries = entries_for("olmo2");
    entries.push((
        "blk.0.attn_norm.weight".into(),
        Tensor::ones(D, DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    ));
    write_gguf(
        &dir.path().join("extra.gguf"),
        &tiny_metadata("olmo2"),
        &entries,
    );
    let err = load_err(dir.path().join("extra.gguf").to_str().unwrap()).to_string();
    assert!(err.contains("blk.0.attn_norm.weight"), "{err}");
}

/// Every family saves as an HF folder that loads back to the same logits (the manifest is what
/// is written), and a weight map that is not the manifest is refused before anything is written.
#[test]
fn every_family_round_trips_through_an_hf_folder() {
    use rlq::model::hooked::HookedTransformer;
    use rlq::model::save::write_hf_folder;
    use rlq::model::synthetic::random_model;
    for family in Family::ALL {
        let m = random_model(family, 5, DType::F32).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let weights = m.weights.dense_map().unwrap();
        write_hf_folder(&m, &weights, dir.path()).unwrap();
        // The synthetic model has no tokenizer; give the folder one so `load` accepts it.
        std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER_JSON).unwrap();
        let back = load(dir.path().to_str().unwrap(), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{family:?}: {e}"));
        assert_eq!(back.config.family, family);
        assert_eq!(back.config.n_params(), m.config.n_params());
        let ids = [3, 17, 5, 9];
        let a = HookedTransformer::new(&m).unwrap().logits(&ids).unwrap();
        let b = HookedTransformer::new(&back).unwrap().logits(&ids).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0, "{family:?}");

        let mut partial = weights.clone();
        partial.remove("model.norm.weight");
        let empty = tempfile::tempdir().unwrap();
        let err = write_hf_folder(&m, &partial, empty.path()).unwrap_err();
        assert!(err.to_string().contains("model.norm.weight"), "{err}");
        assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
    }
}
