//! The hooked forward on its own: KV-cached decoding equals the full forward, hooks with zero
//! offsets change nothing, gradients reach every destination, Gemma's sliding window.

use candle_core::{DType, IndexOp, Tensor, Var};
use rlq::model::generate::{generate, GenerateOptions};
use rlq::model::hooked::{DestOffsets, ForwardInput, HookedTransformer, Hooks, KvCache};
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::synthetic::random_model;
use rlq::model::Family;

const TOKENS: [u32; 7] = [3, 17, 5, 9, 28, 11, 4];

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn kv_cache_decoding_equals_full_forward() {
    for f in Family::ALL {
        let m = random_model(f, 3, DType::F64).unwrap();
        let tf = HookedTransformer::new(&m).unwrap();
        let full = tf.logits(&TOKENS).unwrap();
        let mut cache = KvCache::new();
        let first = tf
            .forward(
                ForwardInput::Ids(&TOKENS[..4]),
                &Hooks::default(),
                Some(&mut cache),
            )
            .unwrap()
            .logits;
        assert!(max_abs_diff(&first, &full.narrow(0, 0, 4).unwrap()) < 1e-10);
        for (i, &t) in TOKENS.iter().enumerate().skip(4) {
            let step = tf
                .forward(ForwardInput::Ids(&[t]), &Hooks::default(), Some(&mut cache))
                .unwrap()
                .logits;
            let d = max_abs_diff(&step.i(0).unwrap(), &full.i(i).unwrap());
            assert!(d < 1e-10, "{f:?} position {i}: {d}");
        }
        assert_eq!(cache.len(), TOKENS.len());
    }
}

#[test]
fn zero_offsets_and_recording_do_not_change_logits() {
    for g in [Granularity::Block, Granularity::Head] {
        let m = random_model(Family::Qwen2, 5, DType::F64).unwrap();
        let tf = HookedTransformer::new(&m).unwrap();
        let c = &tf.config;
        let lay = HookLayout::new(g, c.n_layers, c.n_heads, c.n_kv_heads);
        let plain = tf.logits(&TOKENS).unwrap();
        let zeros = Tensor::zeros(
            (lay.n_dests(), TOKENS.len(), c.d_model),
            DType::F64,
            tf.device(),
        )
        .unwrap();
        let hooked = tf
            .forward(
                ForwardInput::Ids(&TOKENS),
                &Hooks {
                    layout: Some(&lay),
                    dest_offsets: Some(&DestOffsets::Stacked(zeros.clone())),
                    record_sources: true,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert!(max_abs_diff(&plain, &hooked.logits) < 1e-12);
        let src = hooked.sources.unwrap();
        assert_eq!(src.dims(), &[lay.n_sources(), TOKENS.len(), c.d_model]);
    }
}

/// candle drops gradients silently through its fused kernels; ours are composed, so every
/// destination slot must receive a non-zero gradient.
#[test]
fn every_destination_receives_a_gradient() {
    for f in Family::ALL {
        let m = random_model(f, 9, DType::F64).unwrap();
        let tf = HookedTransformer::new(&m).unwrap();
        let c = &tf.config;
        let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
        let delta = Var::zeros(
            (lay.n_dests(), TOKENS.len(), c.d_model),
            DType::F64,
            tf.device(),
        )
        .unwrap();
        let out = tf
            .forward(
                ForwardInput::Ids(&TOKENS),
                &Hooks {
                    layout: Some(&lay),
                    dest_offsets: Some(&DestOffsets::Stacked(delta.as_tensor().clone())),
                    record_sources: false,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        let loss = out.logits.i(TOKENS.len() - 1).unwrap().i(5).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(delta.as_tensor())
            .expect("gradient for the offsets");
        for slot in 0..lay.n_dests() {
            let n = g
                .get(slot)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(n > 0.0, "{f:?}: no gradient at {}", lay.dests[slot].name);
        }
    }
}

/// Gemma's local layers see only the last `sliding_window` positions (HF semantics:
/// `q - k < window`): changing a token further back must not change a local-only model's output.
#[test]
fn gemma_sliding_window_hides_old_tokens() {
    let mut m = random_model(Family::Gemma3, 4, DType::F64).unwrap();
    {
        let g = m.config.gemma.as_mut().unwrap();
        g.sliding_window = 3;
        g.sliding_window_pattern = 1000; // every layer local
    }
    m.config.n_layers = 1;
    let tf = HookedTransformer::new(&m).unwrap();
    let a = tf.logits(&[1, 2, 3, 4, 5]).unwrap();
    let b = tf.logits(&[9, 2, 3, 4, 5]).unwrap();
    // position 4 sees keys 2,3,4 only (one layer), so token 0 is invisible to it
    assert!(max_abs_diff(&a.i(4).unwrap(), &b.i(4).unwrap()) < 1e-12);
    // position 2 sees keys 0,1,2
    assert!(max_abs_diff(&a.i(2).unwrap(), &b.i(2).unwrap()) > 1e-6);
}

#[test]
fn greedy_generation_is_argmax_of_full_forward() {
    let m = random_model(Family::Llama, 2, DType::F64).unwrap();
    let tf = HookedTransformer::new(&m).unwrap();
    let opts = GenerateOptions {
        max_tokens: 5,
        ..Default::default()
    };
    let out = generate(&tf, &TOKENS[..3], &opts, &|| false).unwrap();
    assert_eq!(out.len(), 5);
    let mut seq = TOKENS[..3].to_vec();
    for &t in &out {
        let l = tf.logits(&seq).unwrap();
        assert_eq!(HookedTransformer::argmax_last(&l).unwrap(), t);
        seq.push(t);
    }
    // sampling with a seed is reproducible
    let s = GenerateOptions {
        max_tokens: 6,
        temperature: 1.0,
        top_p: 0.9,
        seed: 42,
        ..Default::default()
    };
    assert_eq!(
        generate(&tf, &TOKENS[..3], &s, &|| false).unwrap(),
        generate(&tf, &TOKENS[..3], &s, &|| false).unwrap()
    );
}

/// A batch decoding step continues each sequence exactly as decoding it alone does, for every
/// family (Gemma's sliding window of 3 included: the prompts are longer than it), and equals the
/// last row of a full forward over the whole sequence. f64, so only summation order differs.
#[test]
fn batched_decode_step_equals_one_sequence_at_a_time() {
    let prompts: [&[u32]; 3] = [&[3, 17, 5], &[9, 28, 11, 4, 30, 2, 8], &[1, 6, 12, 19, 25]];
    let next: [u32; 3] = [7, 13, 21];
    for f in Family::ALL {
        let m = random_model(f, 5, DType::F64).unwrap();
        let tf = HookedTransformer::new(&m).unwrap();
        let prefill = |p: &[u32]| prefilled(&tf, p);
        let mut caches: Vec<KvCache> = prompts.iter().map(|p| prefill(p)).collect();
        // Two steps, so the second reads keys the batch step itself cached.
        let second: [u32; 3] = [2, 29, 14];
        let batch1 = tf.decode_step(&next, &mut caches).unwrap();
        let batch2 = tf.decode_step(&second, &mut caches).unwrap();
        assert_eq!(batch2.dims(), &[3, 32]);
        for (i, p) in prompts.iter().enumerate() {
            assert_eq!(caches[i].len(), p.len() + 2);
            let mut alone = prefill(p);
            let step = |cache: &mut KvCache, t: u32| {
                tf.forward(ForwardInput::Ids(&[t]), &Hooks::default(), Some(cache))
                    .unwrap()
                    .logits
                    .i(0)
                    .unwrap()
            };
            let a1 = step(&mut alone, next[i]);
            let a2 = step(&mut alone, second[i]);
            let full_seq: Vec<u32> = p.iter().copied().chain([next[i], second[i]]).collect();
            let full = tf.logits(&full_seq).unwrap();
            let full_last = full.i(full.dim(0).unwrap() - 1).unwrap();
            let d1 = max_abs_diff(&batch1.i(i).unwrap(), &a1);
            let d2 = max_abs_diff(&batch2.i(i).unwrap(), &a2);
            let d3 = max_abs_diff(&batch2.i(i).unwrap(), &full_last);
            assert!(
                d1 < 1e-12 && d2 < 1e-12 && d3 < 1e-12,
                "{f:?} row {i}: {d1:e} {d2:e} {d3:e}"
            );
        }
        assert!(tf.decode_step(&next[..2], &mut caches).is_err());
    }
}

/// A cache holding prompt `p`'s keys and values.
fn prefilled(tf: &HookedTransformer, p: &[u32]) -> KvCache {
    let mut cache = KvCache::new();
    tf.forward(ForwardInput::Ids(p), &Hooks::default(), Some(&mut cache))
        .unwrap();
    cache
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// On CPU in f32 decoding appends to host buffers and attends with its own kernel: every
/// family's rows (sliding windows included: Gemma 3, Mistral) match the last row of a full f32
/// forward to 1e-4 of the logits' scale (f32 sums in another order, over random weights), a
/// row's logits are the same bits decoded alone or beside others (the kernels sum in one fixed
/// order), and a cache decoded this way still serves an ordinary cached forward.
#[test]
fn f32_decoding_on_host_caches_matches_the_full_forward() {
    let prompts: [&[u32]; 3] = [&[3, 17, 5], &[9, 28, 11, 4, 30, 2, 8], &[1, 6, 12, 19, 25]];
    let steps: [[u32; 3]; 4] = [[7, 13, 21], [2, 29, 14], [30, 1, 3], [5, 5, 9]];
    for f in Family::ALL {
        let m = random_model(f, 5, DType::F32).unwrap();
        let tf = HookedTransformer::new(&m).unwrap();
        let prefill = |p: &[u32]| prefilled(&tf, p);
        let mut caches: Vec<KvCache> = prompts.iter().map(|p| prefill(p)).collect();
        let mut alone: Vec<KvCache> = prompts.iter().map(|p| prefill(p)).collect();
        for (k, next) in steps.iter().enumerate() {
            let batch = tf.decode_step(next, &mut caches).unwrap();
            for (i, p) in prompts.iter().enumerate() {
                let one = tf
                    .decode_step(&next[i..=i], std::slice::from_mut(&mut alone[i]))
                    .unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    t.flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect()
                };
                assert_eq!(
                    bits(&batch.i(i).unwrap()),
                    bits(&one.i(0).unwrap()),
                    "{f:?} row {i} step {k}"
                );
                let seq: Vec<u32> = p
                    .iter()
                    .copied()
                    .chain(steps[..=k].iter().map(|s| s[i]))
                    .collect();
                let full = tf.logits(&seq).unwrap();
                let last = full.i(full.dim(0).unwrap() - 1).unwrap();
                let scale = scalar(&last.abs().unwrap().max_all().unwrap());
                let d = max_abs_diff(&batch.i(i).unwrap(), &last);
                assert!(
                    d <= 1e-4 * scale.max(1.0),
                    "{f:?} row {i} step {k}: {d:e} (scale {scale})"
                );
            }
        }
        // One more token through the ordinary cached forward, after host-buffer decoding.
        let seq: Vec<u32> = prompts[1]
            .iter()
            .copied()
            .chain(steps.iter().map(|s| s[1]))
            .chain([4])
            .collect();
        let step = tf
            .forward(
                ForwardInput::Ids(&[4]),
                &Hooks::default(),
                Some(&mut caches[1]),
            )
            .unwrap()
            .logits;
        let full = tf.logits(&seq).unwrap();
        let last = full.i(full.dim(0).unwrap() - 1).unwrap();
        let scale = scalar(&last.abs().unwrap().max_all().unwrap());
        let d = max_abs_diff(&step.i(0).unwrap(), &last);
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "{f:?} forward after decoding: {d:e}"
        );
        assert_eq!(caches[1].len(), seq.len());
    }
}

/// Batched generation gives each prompt the tokens it gets alone, greedy and sampled.
#[test]
fn batched_generation_equals_generating_each_prompt_alone() {
    use rlq::model::generate::generate_batch;
    let prompts: Vec<Vec<u32>> = vec![vec![3, 17, 5], vec![9, 28, 11, 4, 30], vec![1, 6]];
    for f in [Family::Llama, Family::Gemma3] {
        let m = random_model(f, 9, DType::F64).unwrap();
        let tf = HookedTransformer::new(&m).unwrap();
        for temperature in [0.0, 0.8] {
            let opts = GenerateOptions {
                max_tokens: 6,
                temperature,
                seed: 42,
                stop_tokens: vec![2],
                ..Default::default()
            };
            let batch = generate_batch(&tf, &prompts, &opts, &|| false).unwrap();
            for (p, got) in prompts.iter().zip(&batch) {
                let alone = generate(&tf, p, &opts, &|| false).unwrap();
                assert_eq!(got, &alone, "{f:?} t={temperature}");
                assert!(!got.is_empty() && got.len() <= 6);
            }
        }
    }
    let m = random_model(Family::Llama, 9, DType::F64).unwrap();
    let tf = HookedTransformer::new(&m).unwrap();
    let opts = GenerateOptions::default();
    assert!(generate_batch(&tf, &[vec![1], vec![]], &opts, &|| false).is_err());
}

/// Each continuation says why it ended: its stop token, max_tokens, the context, or an
/// interrupt mid-answer (Ctrl-C used to return cut answers as ordinary ones). `max_tokens 0`
/// used to give one token. Prompts past the context or the vocabulary are refused.
#[test]
fn generation_reports_why_each_sequence_stopped() {
    use rlq::model::generate::{generate_batch_detailed, Stop};
    use std::cell::Cell;
    let mut m = random_model(Family::Llama, 9, DType::F64).unwrap();
    m.config.max_position = 16;
    let tf = HookedTransformer::new(&m).unwrap();
    let opts = |max_tokens| GenerateOptions {
        max_tokens,
        ..Default::default()
    };
    let none = generate_batch_detailed(&tf, &[vec![3, 4]], &opts(0), &|| false).unwrap();
    assert_eq!((none[0].tokens.len(), none[0].stop), (0, Stop::MaxTokens));
    let cut = generate_batch_detailed(&tf, &[vec![3, 4]], &opts(3), &|| false).unwrap();
    assert_eq!((cut[0].tokens.len(), cut[0].stop), (3, Stop::MaxTokens));
    // A 14-token prompt in a 16-token context: 3 tokens (the last one is never fed).
    let full = generate_batch_detailed(&tf, &[vec![3; 14]], &opts(50), &|| false).unwrap();
    assert_eq!((full[0].tokens.len(), full[0].stop), (3, Stop::Context));
    let first = cut[0].tokens[0];
    let stop = GenerateOptions {
        stop_tokens: vec![first],
        ..opts(3)
    };
    let stopped = generate_batch_detailed(&tf, &[vec![3, 4]], &stop, &|| false).unwrap();
    assert_eq!(stopped[0].tokens, [first]);
    assert_eq!(stopped[0].stop, Stop::StopToken);
    // `min_tokens`: the stop token (here greedy's first choice) is not drawn before it, greedy
    // or sampled.
    for temperature in [0.0, 1.0] {
        let at_least = GenerateOptions {
            min_tokens: 3,
            temperature,
            seed: 5,
            ..stop.clone()
        };
        let long = generate_batch_detailed(
            &tf,
            &[vec![3, 4]],
            &GenerateOptions {
                max_tokens: 8,
                ..at_least
            },
            &|| false,
        )
        .unwrap();
        assert!(
            long[0].tokens.len() >= 3,
            "t {temperature}: {:?}",
            long[0].tokens
        );
        assert!(
            !long[0].tokens[..3].contains(&first),
            "t {temperature}: {:?}",
            long[0].tokens
        );
    }
    // Ctrl-C after the prefill of both prompts (a poll each) and one decoding step.
    let polls = Cell::new(0);
    let interrupted = || {
        polls.set(polls.get() + 1);
        polls.get() > 3
    };
    let outs =
        generate_batch_detailed(&tf, &[vec![3, 4], vec![5]], &opts(10), &interrupted).unwrap();
    for g in &outs {
        assert_eq!((g.tokens.len(), g.stop), (2, Stop::Interrupted));
    }
    let e = generate_batch_detailed(&tf, &[vec![3; 17]], &opts(1), &|| false).unwrap_err();
    assert!(
        e.to_string()
            .contains("17 tokens, over the model's context of 16"),
        "{e}"
    );
    let e = generate_batch_detailed(&tf, &[vec![3, 32]], &opts(1), &|| false).unwrap_err();
    assert!(
        e.to_string()
            .contains("token id 32 is outside the vocabulary (32 ids)"),
        "{e}"
    );
}
