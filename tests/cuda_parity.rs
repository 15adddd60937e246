//! CPU vs CUDA parity of the hooked forward, EAP edge scores and greedy generation, plus a
//! timing print of one EAP sample on a SmolLM2-shaped model. Needs `--features cuda` and a GPU:
//! without the feature it compiles to one test that says it was skipped; with the feature but
//! no device it skips too, unless `RLQ_REQUIRE_CUDA=1`, which turns a missing device into a
//! failure (the GPU check script sets it, so a skip there cannot pass for a success).
//!
//! The same random weights (built on the CPU at a fixed seed, then copied) run on both devices.
//! On the CPU the fused custom ops of `model::fused` and the const-matmul op run; on CUDA every
//! one of them falls back to the composition of primitive candle ops, so the two sides do the
//! same arithmetic in a different order (and cuBLAS sums dot products in its own order):
//! results may differ only by rounding. Tolerances are stated per test, relative to the largest
//! magnitude of the compared quantity, so scores near zero are not judged by their own size.
//!
//! `RLQ_CUDA_PARITY_DRY_RUN=1` lets the CPU stand in for the GPU, to check the test itself on a
//! machine without one (the CUDA build still needs its libraries to load).
//!
//! Run: `cargo test --features cuda --test model cuda_parity:: -- --nocapture --test-threads=1`.

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_parity_skipped_without_cuda_feature() {
    eprintln!("SKIPPED: cuda_parity needs `--features cuda` (and a GPU)");
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::time::Instant;

    use candle_core::{DType, Device, IndexOp, Tensor, Var};
    use rlq::attribution::{score_sample, Method, Sample, SampleLoss};
    use rlq::model::generate::{generate, GenerateOptions};
    use rlq::model::hooked::HookedTransformer;
    use rlq::model::hooks::{Granularity, HookLayout};
    use rlq::model::linear::Linear;
    use rlq::model::mlp::{glu_down, GluActivation};
    use rlq::model::synthetic::{random_weights, tiny_config};
    use rlq::model::{attention, fused, ops, Family, Model, ModelConfig, Weights};

    // -----------------------------------------------------------------------------------------
    // helpers

    /// The CUDA device, or `None` (test skipped) when none opens. `RLQ_REQUIRE_CUDA=1` makes a
    /// missing device a failure instead.
    fn gpu() -> Option<Device> {
        if std::env::var("RLQ_CUDA_PARITY_DRY_RUN").is_ok_and(|v| v == "1") {
            eprintln!("DRY RUN: the CPU stands in for the GPU (checks the test itself, not CUDA)");
            return Some(Device::Cpu);
        }
        let require = std::env::var("RLQ_REQUIRE_CUDA").is_ok_and(|v| v == "1");
        if !candle_core::utils::cuda_is_available() {
            assert!(
                !require,
                "RLQ_REQUIRE_CUDA=1 but candle was built without CUDA"
            );
            eprintln!("SKIPPED: candle was built without CUDA");
            return None;
        }
        match Device::new_cuda(0) {
            Ok(d) => Some(d),
            Err(e) => {
                assert!(!require, "RLQ_REQUIRE_CUDA=1 but no CUDA device opens: {e}");
                eprintln!("SKIPPED: no CUDA device opens: {e}");
                None
            }
        }
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// max |a − b| with `b` brought to `a`'s device, both compared in f64.
    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap();
        let b = b
            .to_device(a.device())
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        max_abs(&(a - b).unwrap())
    }

    /// max |a − b| / max(floor, max |a|) over plain vectors.
    fn rel_vec(a: &[f64], b: &[f64], floor: f64) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = a.iter().fold(floor, |m, x| m.max(x.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
            / scale
    }

    /// Deterministic pseudo-random token ids below `vocab`.
    fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % vocab as u64) as u32
            })
            .collect()
    }

    /// A CPU tensor of `shape` with deterministic values uniform in (−scale, scale).
    fn det<S: Into<candle_core::Shape>>(shape: S, seed: u64, scale: f64, dtype: DType) -> Tensor {
        let shape = shape.into();
        let mut s = seed.wrapping_add(0x9E3779B97F4A7C15);
        let v: Vec<f64> = (0..shape.elem_count())
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// Larger than `tiny_config` so cuBLAS and the reductions see real sizes: 3 layers, d=64,
    /// 4 heads over 2 kv heads of 16, d_ff 96, vocab 200.
    fn small_config(family: Family) -> ModelConfig {
        let mut c = tiny_config(family);
        c.n_layers = 3;
        c.d_model = 64;
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.head_dim = 16;
        c.d_ff = 96;
        c.vocab_size = 200;
        c.max_position = 256;
        if let Some(g) = c.gemma.as_mut() {
            g.query_pre_attn_scalar = 16.0;
            g.sliding_window = 5;
        }
        c
    }

    /// SmolLM2-135M's shape (llama, tied embeddings).
    fn smollm2_config() -> ModelConfig {
        let mut c = tiny_config(Family::Llama);
        c.n_layers = 30;
        c.d_model = 576;
        c.n_heads = 9;
        c.n_kv_heads = 3;
        c.head_dim = 64;
        c.d_ff = 1536;
        c.vocab_size = 49152;
        c.rms_norm_eps = 1e-5;
        c.rope_theta = 100000.0;
        c.max_position = 8192;
        c.tie_embeddings = true;
        c
    }

    /// Random weights at `seed`, built on the CPU in `dtype` and copied to `dev` (so both
    /// devices hold bit-identical weights), as a model on `dev`.
    fn model_on(cfg: &ModelConfig, seed: u64, dtype: DType, dev: &Device) -> Model {
        let w = random_weights(cfg, seed, dtype, &Device::Cpu).unwrap();
        let map = w
            .names()
            .map(|k| (k.clone(), w.get(k).unwrap().to_device(dev).unwrap()))
            .collect();
        Model::from_parts(
            cfg.clone(),
            Weights::new(map),
            format!("synthetic:{}:{seed}", cfg.family.name()),
            dev.clone(),
            dtype,
        )
    }

    /// The same transformer on the CPU and on `gpu`.
    fn pair(cfg: &ModelConfig, seed: u64, dtype: DType, gpu: &Device) -> [HookedTransformer; 2] {
        [
            HookedTransformer::new(&model_on(cfg, seed, dtype, &Device::Cpu)).unwrap(),
            HookedTransformer::new(&model_on(cfg, seed, dtype, gpu)).unwrap(),
        ]
    }

    // -----------------------------------------------------------------------------------------
    // (0) the building blocks: fused CPU ops vs their CUDA fallback, values and gradients

    /// Each op with a fused CPU custom op (`ops`, `attention`, `mlp::glu_down`) on the same
    /// input on both devices: on CUDA the custom op must not be chosen (it has only a CPU
    /// kernel, so candle would fail with "no cuda implementation"), and the composed fallback
    /// must give the same value and the same input gradient. Tolerance: 1e-5 (f32) / 1e-12
    /// (f64) of the largest magnitude; these are a few elementwise passes, reductions and
    /// products of ≤ 48 terms, so rounding differences are a few ulp (f32 ulp ≈ 1.2e-7).
    #[test]
    fn ops_fall_back_and_match() {
        let Some(g) = gpu() else { return };
        for dtype in [DType::F32, DType::F64] {
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let cpu = Device::Cpu;
            let x = det((3, 7, 48), 1, 1.5, dtype);
            let w = (det(48, 2, 0.2, dtype) + 1.0).unwrap();
            let wm = det((32, 48), 3, 0.25, dtype);
            let xg = x.to_device(&g).unwrap();
            assert!(
                fused::supported(&x),
                "fused ops should run on CPU {dtype:?}"
            );
            let real = g.is_cuda(); // false only in a dry run
            assert!(!real || !fused::supported(&xg), "fused ops chosen on CUDA");
            let (cos, sin) = ops::rope_tables(7, 2, 48, 10000.0, dtype, &cpu).unwrap();
            let (cos_g, sin_g) = ops::rope_tables(7, 2, 48, 10000.0, dtype, &g).unwrap();
            assert!(fused::rope_supported(&x, &cos, &sin));
            assert!(!real || !fused::rope_supported(&xg, &cos_g, &sin_g));

            type Op = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;
            let per_dev = |dev: &Device| -> Vec<(&'static str, Op)> {
                let (w, wm) = (w.to_device(dev).unwrap(), wm.to_device(dev).unwrap());
                let (c, s) = ops::rope_tables(7, 2, 48, 10000.0, dtype, dev).unwrap();
                let (w1, w2, w3) = (w.clone(), w.clone(), w.clone());
                let mask = ops::causal_mask(7, 7, 0, None, dtype, dev).unwrap();
                let down = Linear::Dense(wm.clone());
                let down2 = down.clone();
                vec![
                    (
                        "rms_norm",
                        Box::new(move |x| ops::rms_norm(x, &w1, 1e-6, 0.0)),
                    ),
                    (
                        "rms_norm+1",
                        Box::new(move |x| ops::rms_norm(x, &w2, 1e-6, 1.0)),
                    ),
                    ("softmax", Box::new(ops::softmax_last_dim)),
                    ("log_softmax", Box::new(ops::log_softmax_last_dim)),
                    ("silu", Box::new(ops::silu)),
                    ("gelu_tanh", Box::new(ops::gelu_tanh)),
                    ("rope", Box::new(move |x| ops::rope(x, &c, &s))),
                    (
                        "matmul_const",
                        Box::new(move |x| ops::matmul_const(&x.reshape((21, 48))?, &wm.t()?)),
                    ),
                    // h = x[0] broadcast over offsets 0.3·x: gradients reach x through both
                    (
                        "rms_norm_of_sum",
                        Box::new(move |x| {
                            ops::rms_norm_of_sum(&x.narrow(0, 0, 1)?, &(x * 0.3)?, &w3, 1e-6, 0.0)
                        }),
                    ),
                    // 3 query heads over 1 kv head, q, k and v all functions of x
                    (
                        "attention",
                        Box::new(move |x| {
                            let k = (x.narrow(0, 1, 1)? * 0.5)?;
                            let v = x.narrow(0, 2, 1)?;
                            attention::attention(x, &k, &v, &mask, 48f64.powf(-0.5))
                        }),
                    ),
                    (
                        "glu_down silu",
                        Box::new(move |x| {
                            let gate = x.reshape((21, 48))?;
                            let up = ((&gate * 0.7)? + 0.1)?;
                            glu_down(&gate, &up, GluActivation::Silu, &down)
                        }),
                    ),
                    (
                        "glu_down gelu",
                        Box::new(move |x| {
                            let gate = x.reshape((21, 48))?;
                            let up = ((&gate * 0.7)? + 0.1)?;
                            glu_down(&gate, &up, GluActivation::GeluTanh, &down2)
                        }),
                    ),
                ]
            };
            let run = |dev: &Device, op: &Op| -> (Tensor, Tensor) {
                let v = Var::from_tensor(&x.to_device(dev).unwrap()).unwrap();
                let y = op(v.as_tensor()).unwrap();
                // a fixed random linear functional of y, so every output element has a gradient
                let rr = det(y.dims(), 4, 1.0, dtype).to_device(dev).unwrap();
                let l = (&y * &rr).unwrap().sum_all().unwrap();
                let gx = l.backward().unwrap().get(v.as_tensor()).unwrap().clone();
                (y, gx)
            };
            let (cpu_ops, gpu_ops) = (per_dev(&cpu), per_dev(&g));
            for ((name, op_c), (_, op_g)) in cpu_ops.iter().zip(&gpu_ops) {
                let (yc, gc) = run(&cpu, op_c);
                let (yg, gg) = run(&g, op_g);
                assert!(
                    !real || yg.device().is_cuda(),
                    "{name}: result left the GPU"
                );
                let dy = max_abs_diff(&yc, &yg) / max_abs(&yc).max(1e-30);
                let dg = max_abs_diff(&gc, &gg) / max_abs(&gc).max(1e-30);
                println!("ops {dtype:?} {name:16} value rel {dy:.2e}  grad rel {dg:.2e}");
                assert!(
                    dy <= tol,
                    "{name} {dtype:?}: value differs by {dy:e} (tol {tol:e})"
                );
                assert!(
                    dg <= tol,
                    "{name} {dtype:?}: gradient differs by {dg:e} (tol {tol:e})"
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // (a) plain forward logits

    /// Logits of the plain forward, 24 tokens, every family's switches (Llama; Qwen2 biases;
    /// Qwen3 q/k norm; Gemma3 sandwich norms, GELU, sliding window). Tolerance relative to the
    /// largest |logit|: 1e-4 in f32, 1e-10 in f64. Three layers of matmuls over ≤ 96 terms,
    /// norms and softmaxes, summed in a different order on each side: the expected difference
    /// is ~1e-6 (f32) / ~1e-15 (f64); a wrong op shows up as O(1).
    #[test]
    fn forward_logits_match() {
        let Some(g) = gpu() else { return };
        let ids = tokens(24, 200, 1);
        for family in [Family::Llama, Family::Qwen2, Family::Qwen3, Family::Gemma3] {
            for (dtype, tol) in [(DType::F32, 1e-4), (DType::F64, 1e-10)] {
                let [tc, tg] = pair(&small_config(family), 11, dtype, &g);
                let lc = tc.logits(&ids).unwrap();
                let lg = tg.logits(&ids).unwrap();
                assert!(!g.is_cuda() || lg.device().is_cuda());
                assert_eq!(lc.dims(), lg.dims());
                let rel = max_abs_diff(&lc, &lg) / max_abs(&lc).max(1.0);
                println!(
                    "forward {:7} {dtype:?}: max|logit| {:.3}, max rel diff {rel:.2e} (tol {tol:e})",
                    family.name(),
                    max_abs(&lc)
                );
                assert!(rel <= tol, "{family:?} {dtype:?}: logits differ by {rel:e}");
            }
        }
    }

    /// bf16 on CUDA: the forward runs, stays finite and roughly agrees with the CPU's bf16
    /// forward (8-bit mantissas, eps ≈ 4e-3, different accumulation: 0.1 of the largest
    /// |logit| only catches gross errors). Printed, for information.
    #[test]
    fn forward_bf16_runs() {
        let Some(g) = gpu() else { return };
        let ids = tokens(24, 200, 2);
        let [tc, tg] = pair(&small_config(Family::Llama), 11, DType::BF16, &g);
        let lc = tc.logits(&ids).unwrap();
        let lg = tg.logits(&ids).unwrap();
        let m = max_abs(&lg);
        assert!(m.is_finite(), "bf16 CUDA logits are not finite");
        let rel = max_abs_diff(&lc, &lg) / max_abs(&lc).max(1.0);
        println!("forward llama BF16: max|logit| {m:.3}, max rel diff vs CPU bf16 {rel:.2e}");
        assert!(rel <= 0.1, "bf16 logits differ by {rel:e}");
    }

    // -----------------------------------------------------------------------------------------
    // (b) EAP edge scores

    /// Three samples: corrupted baseline with a token loss, zero ablation with a logit
    /// difference, corrupted baseline with the KL loss.
    fn samples(vocab: usize) -> Vec<Sample> {
        let t = tokens(20, vocab, 3);
        let mut c = t.clone();
        for (i, x) in tokens(20, vocab, 4).into_iter().enumerate() {
            if i % 3 == 1 {
                c[i] = x;
            }
        }
        vec![
            Sample {
                id: 0,
                tokens: t.clone(),
                corrupt: Some(c.clone()),
                loss: SampleLoss::Tokens {
                    start: 12,
                    targets: t[13..20].to_vec(),
                },
            },
            Sample {
                id: 1,
                tokens: t.clone(),
                corrupt: None,
                loss: SampleLoss::LogitDiff {
                    position: 19,
                    target: 7,
                    wrong: 9,
                },
            },
            Sample {
                id: 2,
                tokens: t,
                corrupt: Some(c),
                loss: SampleLoss::Kl { start: 10, len: 6 },
            },
        ]
    }

    /// EAP scores (and the clean loss) on both devices for one model and layout. Tolerance
    /// relative to the largest |score| of the sample (at least 1e-3): 1e-3 in f32, 1e-9 in f64. A score is
    /// Σ over 20·64 (position, channel) terms of ΔO·G, formed in f64 from ΔO and G that carry
    /// f32 rounding from the forward and the backward (~1e-6 to 1e-5 relative); small scores
    /// are sums with cancellation, hence the scale max|S|. Any real defect (a missing gradient
    /// path, a wrong fallback) is O(1) of max|S|.
    fn check_eap(family: Family, gran: Granularity, method: Method, dtype: DType, g: &Device) {
        let tol = if dtype == DType::F32 { 1e-3 } else { 1e-9 };
        let cfg = small_config(family);
        let [tc, tg] = pair(&cfg, 5, dtype, g);
        let lay = HookLayout::new(gran, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
        let edges = lay.edges();
        for s in samples(cfg.vocab_size) {
            let a = score_sample(&tc, &lay, &edges, &s, method, &|| false).unwrap();
            let b = score_sample(&tg, &lay, &edges, &s, method, &|| false)
                .unwrap_or_else(|e| panic!("CUDA score_sample {family:?} {gran:?}: {e}"));
            // Floor 1e-3: the KL sample's EAP scores are ~0 (the KL is at its minimum on the
            // clean run, so its gradient vanishes) and would otherwise be judged on noise; the
            // other samples' scores are O(0.1..1), far above it.
            let rel = rel_vec(&a.scores, &b.scores, 1e-3);
            let lrel = (a.loss - b.loss).abs() / a.loss.abs().max(1e-3);
            let smax = a.scores.iter().fold(0f64, |m, x| m.max(x.abs()));
            println!(
                "eap {:7} {:5} {:8} {dtype:?} sample {}: {} edges, max|S| {smax:.3e}, rel diff {rel:.2e}, loss rel {lrel:.2e} (tol {tol:e})",
                family.name(),
                gran.name(),
                method.name(),
                s.id,
                edges.len()
            );
            assert!(
                rel <= tol,
                "{family:?} {gran:?} {method:?} {dtype:?} sample {}: scores differ by {rel:e}",
                s.id
            );
            assert!(lrel <= tol, "loss differs by {lrel:e}");
        }
    }

    #[test]
    fn eap_scores_match_block() {
        let Some(g) = gpu() else { return };
        for dtype in [DType::F32, DType::F64] {
            for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
                check_eap(family, Granularity::Block, Method::Eap, dtype, &g);
            }
        }
    }

    #[test]
    fn eap_scores_match_head() {
        let Some(g) = gpu() else { return };
        for dtype in [DType::F32, DType::F64] {
            for family in [Family::Llama, Family::Qwen2, Family::Qwen3] {
                check_eap(family, Granularity::Head, Method::Eap, dtype, &g);
            }
        }
    }

    /// EAP-IG (embeddings as input, several backward passes) and exact patching (one rerun per
    /// edge, offsets as one stacked tensor) on the llama model, block level, f64.
    #[test]
    fn eap_ig_and_patch_match() {
        let Some(g) = gpu() else { return };
        check_eap(
            Family::Llama,
            Granularity::Block,
            Method::EapIg { steps: 3 },
            DType::F64,
            &g,
        );
        check_eap(
            Family::Llama,
            Granularity::Head,
            Method::EapIg { steps: 2 },
            DType::F32,
            &g,
        );
        check_eap(
            Family::Llama,
            Granularity::Block,
            Method::Patch,
            DType::F64,
            &g,
        );
    }

    // -----------------------------------------------------------------------------------------
    // (c) greedy generation (KV cache)

    /// Greedy generation of 12 tokens gives the same ids on both devices. In f64 exactly; in
    /// f32 a divergence is accepted only where the CPU's top-2 logits are within 1e-4 of the
    /// largest |logit| (a near-tie that rounding may break either way), which is reported.
    #[test]
    fn greedy_generate_matches() {
        let Some(g) = gpu() else { return };
        let prompt = tokens(9, 200, 5);
        let opts = GenerateOptions {
            max_tokens: 12,
            ..Default::default()
        };
        for family in [Family::Llama, Family::Qwen3, Family::Gemma3] {
            for dtype in [DType::F64, DType::F32] {
                let [tc, tg] = pair(&small_config(family), 13, dtype, &g);
                let a = generate(&tc, &prompt, &opts, &|| false).unwrap();
                let b = generate(&tg, &prompt, &opts, &|| false).unwrap();
                println!(
                    "generate {:7} {dtype:?}: cpu {a:?}\n{:25}cuda {b:?}",
                    family.name(),
                    ""
                );
                if a == b {
                    continue;
                }
                assert_eq!(dtype, DType::F32, "{family:?} f64: tokens differ");
                let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
                let mut ctx = prompt.clone();
                ctx.extend(&a[..i]);
                let l = tc.logits(&ctx).unwrap();
                let mut last = l
                    .i(l.dim(0).unwrap() - 1)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let m = last.iter().fold(0f32, |m, x| m.max(x.abs()));
                last.sort_by(|x, y| y.total_cmp(x));
                let gap = (last[0] - last[1]) / m.max(1.0);
                println!("  diverged at step {i}: CPU top-2 gap {gap:.2e} of max|logit|");
                assert!(
                    gap < 1e-4,
                    "{family:?} f32: tokens differ at step {i}, top-2 gap {gap:e}"
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // (d) timing, SmolLM2 shape

    /// Polls the device's used memory (all processes) every 2 ms until dropped; keeps the peak.
    struct MemPoll {
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        handle: Option<std::thread::JoinHandle<usize>>,
    }

    impl MemPoll {
        fn start(dev: &Device) -> Option<Self> {
            let Device::Cuda(cd) = dev else { return None };
            let ctx = cd.cuda_stream().context().clone();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s = stop.clone();
            let handle = std::thread::spawn(move || {
                let mut peak = 0usize;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((free, total)) = ctx.mem_get_info() {
                        peak = peak.max(total - free);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                peak
            });
            Some(Self {
                stop,
                handle: Some(handle),
            })
        }
        fn finish(mut self) -> usize {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            self.handle.take().unwrap().join().unwrap_or(0)
        }
    }

    fn used_mib(dev: &Device) -> f64 {
        match dev {
            Device::Cuda(cd) => cd
                .cuda_stream()
                .context()
                .mem_get_info()
                .map_or(f64::NAN, |(f, t)| (t - f) as f64 / 1048576.0),
            _ => f64::NAN,
        }
    }

    /// One EAP sample of 128 tokens (loss over the last 32) on a SmolLM2-shaped random model in
    /// f32, block and head level: seconds on the CPU (1 run) and on CUDA (after a warm-up, 3
    /// runs), the device's peak used memory during the CUDA runs, and how far the scores agree.
    /// Nothing here is asserted except that both runs succeed with finite scores.
    #[test]
    fn timing_smollm2_eap_128() {
        let Some(g) = gpu() else { return };
        if let Device::Cuda(cd) = &g {
            let ctx = cd.cuda_stream().context().clone();
            println!(
                "device: {} ({} MiB), rayon threads on CPU: {}",
                ctx.name().unwrap_or_default(),
                ctx.total_mem().unwrap_or(0) / 1048576,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
        }
        let cfg = smollm2_config();
        let t0 = Instant::now();
        let [tc, tg] = pair(&cfg, 21, DType::F32, &g);
        g.synchronize().unwrap();
        println!(
            "smollm2-shaped model ({:.1}M params) built on both devices in {:.1}s; GPU used {:.0} MiB",
            cfg.n_params() as f64 / 1e6,
            t0.elapsed().as_secs_f64(),
            used_mib(&g)
        );
        let t = tokens(128, cfg.vocab_size, 8);
        let s = Sample {
            id: 0,
            tokens: t.clone(),
            corrupt: None,
            loss: SampleLoss::Tokens {
                start: 95,
                targets: t[96..128].to_vec(),
            },
        };
        for gran in [Granularity::Block, Granularity::Head] {
            let lay = HookLayout::new(gran, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
            let edges = lay.edges();
            let t0 = Instant::now();
            let a = score_sample(&tc, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
            let cpu_s = t0.elapsed().as_secs_f64();

            let t0 = Instant::now();
            let _ = score_sample(&tg, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
            g.synchronize().unwrap();
            let warm_s = t0.elapsed().as_secs_f64();
            let before = used_mib(&g);
            let poll = MemPoll::start(&g);
            let mut times = Vec::new();
            let mut b = None;
            for _ in 0..3 {
                let t0 = Instant::now();
                b = Some(score_sample(&tg, &lay, &edges, &s, Method::Eap, &|| false).unwrap());
                g.synchronize().unwrap();
                times.push(t0.elapsed().as_secs_f64());
            }
            let peak = poll.map_or(0, MemPoll::finish) as f64 / 1048576.0;
            let b = b.unwrap();
            let rel = rel_vec(&a.scores, &b.scores, 1e-30);
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
            println!(
                "TIMING eap {:5} 128 tok, {} edges: CPU {cpu_s:.3}s | CUDA first {warm_s:.3}s, then mean {mean:.3}s min {min:.3}s (x{:.1} vs CPU) | GPU used before {before:.0} MiB, peak {peak:.0} MiB | scores rel diff {rel:.2e}, loss cpu {:.5} cuda {:.5}",
                gran.name(),
                edges.len(),
                cpu_s / min,
                a.loss,
                b.loss
            );
            assert!(b.scores.iter().all(|x| x.is_finite()));
        }
    }
}
