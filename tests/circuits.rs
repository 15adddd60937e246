//! Circuit evaluation (METHOD.md §8) against independent computations on tiny synthetic
//! models, the `circuit` / `evaluate` / `faithfulness` verbs, and one check on the real
//! SmolLM2 (skipped with a notice when scripts/fetch-models.sh has not been run).

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use polars::prelude::*;
use rlq::attribution::{score_sample, Method, Sample, SampleLoss};
use rlq::circuit::{
    ablation_values, evaluate, faithfulness, Ablation, AblationValues, Circuit, FaithOptions,
};
use rlq::model::hooked::{DestOffsets, ForwardInput, HookedTransformer, Hooks};
use rlq::model::hooks::{Granularity, HookLayout};
use rlq::model::synthetic::{random_model, random_weights, tiny_config};
use rlq::model::{Family, Model, Weights};
use rlq::Session;

fn tf_of(family: Family, seed: u64) -> HookedTransformer {
    let m = random_model(family, seed, DType::F64).unwrap();
    HookedTransformer::new(&m).unwrap()
}

fn layout(tf: &HookedTransformer, g: Granularity) -> HookLayout {
    let c = &tf.config;
    HookLayout::new(g, c.n_layers, c.n_heads, c.n_kv_heads)
}

/// Two samples of 7 and 5 tokens: the loss is the NLL of the last 3 (resp. 2) tokens given
/// before them, each with a corrupted input of the same length.
fn samples() -> Vec<Sample> {
    vec![
        Sample {
            id: 10,
            tokens: vec![1, 5, 9, 3, 17, 4, 22],
            corrupt: Some(vec![1, 6, 2, 3, 30, 4, 22]),
            loss: SampleLoss::Tokens {
                start: 4,
                targets: vec![4, 22, 8],
            },
        },
        Sample {
            id: 11,
            tokens: vec![1, 12, 7, 25, 2],
            corrupt: Some(vec![1, 13, 8, 25, 2]),
            loss: SampleLoss::Tokens {
                start: 3,
                targets: vec![2, 19],
            },
        },
    ]
}

/// Mean NLL of `targets[t]` at row `start + t` of `[seq, vocab]` logits, in f64 by hand.
fn nll(logits: &Tensor, start: usize, targets: &[u32]) -> f64 {
    let rows = logits
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let mut total = 0.0;
    for (t, &y) in targets.iter().enumerate() {
        let row = &rows[start + t];
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        total += lse - row[y as usize];
    }
    total / targets.len() as f64
}

fn sample_nll(logits: &Tensor, s: &Sample) -> f64 {
    match &s.loss {
        SampleLoss::Tokens { start, targets } => nll(logits, *start, targets),
        _ => unreachable!("these tests use token losses"),
    }
}

fn eval_mean(
    tf: &HookedTransformer,
    lay: &HookLayout,
    c: &Circuit,
    ss: &[Sample],
    v: &AblationValues,
) -> Vec<f64> {
    evaluate(tf, lay, c, ss, v, &mut |_, _| {}, &|| false)
        .unwrap()
        .metric
}

/// The full circuit is the plain model: every ablation leaves nothing to ablate. The offsets
/// are exact zeros, so the only difference is the fused norm-of-sum (rounding: 1e-12 in f64,
/// 1e-5 in f32, relative).
#[test]
fn full_circuit_reproduces_the_plain_forward() {
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
            let m = random_model(family, 3, dtype).unwrap();
            let tf = HookedTransformer::new(&m).unwrap();
            for g in [Granularity::Block, Granularity::Head] {
                if g == Granularity::Head && family == Family::Gemma3 {
                    continue; // refused: its post-attention norm mixes the heads
                }
                let lay = layout(&tf, g);
                let ss = samples();
                let full = Circuit::full(lay.edges().len());
                for ab in [Ablation::Zero, Ablation::Mean, Ablation::Corrupt] {
                    let v = ablation_values(&tf, &lay, &ss, ab, &|| false).unwrap();
                    let got = eval_mean(&tf, &lay, &full, &ss, &v);
                    for (s, m) in ss.iter().zip(&got) {
                        let want = -sample_nll(&tf.logits(&s.tokens).unwrap(), s);
                        assert!(
                            (m - want).abs() <= tol * want.abs(),
                            "{family:?} {g:?} {ab:?} {dtype:?}: {m} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// The empty circuit: every destination receives only ablated values, so `logits` reads
/// Σ_u Ô_u. Computed independently: zero → all-zero logits (NLL = ln V); corrupt → the plain
/// forward on the corrupted input; mean / mean_positional → a plain forward whose `logits`
/// destination is moved to the mean final residual (over samples and positions, or per
/// position). f64; the subtraction H − ΣO leaves rounding (1e-16·|H|) that the final norm scales
/// up by 1/sqrt(eps) = 1e3: tolerance 1e-9.
#[test]
fn empty_circuit_equals_every_source_ablated() {
    let tf = tf_of(Family::Llama, 7);
    let ss = samples();
    let vocab = tf.config.vocab_size as f64;
    for g in [Granularity::Block, Granularity::Head] {
        let lay = layout(&tf, g);
        let empty = Circuit::empty(lay.edges().len());
        // zero
        let v = ablation_values(&tf, &lay, &ss, Ablation::Zero, &|| false).unwrap();
        for m in eval_mean(&tf, &lay, &empty, &ss, &v) {
            assert!((m + vocab.ln()).abs() < 1e-9, "{g:?} zero: {m}");
        }
        // corrupt
        let v = ablation_values(&tf, &lay, &ss, Ablation::Corrupt, &|| false).unwrap();
        for (s, m) in ss.iter().zip(eval_mean(&tf, &lay, &empty, &ss, &v)) {
            let logits = tf.logits(s.corrupt.as_ref().unwrap()).unwrap();
            let want = -sample_nll(&logits, s);
            assert!((m - want).abs() < 1e-9, "{g:?} corrupt: {m} vs {want}");
        }
        // mean and mean_positional: the final residual of each plain run, by hand.
        let finals: Vec<Vec<Vec<f64>>> = ss
            .iter()
            .map(|s| {
                let out = tf
                    .forward(
                        ForwardInput::Ids(&s.tokens),
                        &Hooks {
                            layout: Some(&lay),
                            record_sources: true,
                            ..Hooks::default()
                        },
                        None,
                    )
                    .unwrap();
                out.sources
                    .unwrap()
                    .sum(0)
                    .unwrap()
                    .to_vec2::<f64>()
                    .unwrap()
            })
            .collect();
        let d = tf.config.d_model;
        let total: usize = finals.iter().map(|f| f.len()).sum();
        let mut mean = vec![0.0; d];
        for f in &finals {
            for row in f {
                for (m, x) in mean.iter_mut().zip(row) {
                    *m += x / total as f64;
                }
            }
        }
        let longest = finals.iter().map(|f| f.len()).max().unwrap();
        let mut pos_mean = vec![vec![0.0; d]; longest];
        for (t, pm) in pos_mean.iter_mut().enumerate() {
            let rows: Vec<&Vec<f64>> = finals.iter().filter_map(|f| f.get(t)).collect();
            for r in &rows {
                for (m, x) in pm.iter_mut().zip(r.iter()) {
                    *m += x / rows.len() as f64;
                }
            }
        }
        for (ab, target) in [
            (Ablation::Mean, None),
            (Ablation::MeanPositional, Some(&pos_mean)),
        ] {
            let v = ablation_values(&tf, &lay, &ss, ab, &|| false).unwrap();
            let got = eval_mean(&tf, &lay, &empty, &ss, &v);
            for ((s, fin), m) in ss.iter().zip(&finals).zip(got) {
                let seq = s.tokens.len();
                let mut off = vec![0.0; lay.n_dests() * seq * d];
                let base = lay.dest_logits() * seq * d;
                for t in 0..seq {
                    let want_row = target.map_or(&mean, |p| &p[t]);
                    for j in 0..d {
                        off[base + t * d + j] = want_row[j] - fin[t][j];
                    }
                }
                let off = Tensor::from_vec(off, (lay.n_dests(), seq, d), &Device::Cpu).unwrap();
                let offsets = DestOffsets::Stacked(off);
                let out = tf
                    .forward(
                        ForwardInput::Ids(&s.tokens),
                        &Hooks {
                            layout: Some(&lay),
                            dest_offsets: Some(&offsets),
                            ..Hooks::default()
                        },
                        None,
                    )
                    .unwrap();
                let want = -sample_nll(&out.logits, s);
                assert!((m - want).abs() < 1e-9, "{g:?} {ab:?}: {m} vs {want}");
            }
        }
    }
}

/// The circuit "every edge but e" ablates e alone: its metric drop is exactly what
/// `method patch` reports for e (the same forward, with the same offset, up to the order of a
/// sum with zeros). f64, 1e-12 absolute; zero and corrupted ablation; block and head.
#[test]
fn all_edges_but_one_equals_exact_patching() {
    let tf = tf_of(Family::Qwen2, 11);
    for g in [Granularity::Block, Granularity::Head] {
        let lay = layout(&tf, g);
        let edges = lay.edges();
        for (ab, corrupt) in [(Ablation::Zero, false), (Ablation::Corrupt, true)] {
            let mut s = samples().remove(0);
            if !corrupt {
                s.corrupt = None;
            }
            let ss = vec![s.clone()];
            let patch = score_sample(&tf, &lay, &edges, &s, Method::Patch, &|| false).unwrap();
            let v = ablation_values(&tf, &lay, &ss, ab, &|| false).unwrap();
            let full = eval_mean(&tf, &lay, &Circuit::full(edges.len()), &ss, &v)[0];
            let step = if g == Granularity::Head { 13 } else { 3 };
            for e in (0..edges.len()).step_by(step) {
                let mut c = Circuit::full(edges.len());
                c.keep[e] = false;
                let m = eval_mean(&tf, &lay, &c, &ss, &v)[0];
                let drop = full - m;
                assert!(
                    (drop - patch.scores[e]).abs() < 1e-12,
                    "{g:?} {ab:?} edge {e}: {drop} vs patch {}",
                    patch.scores[e]
                );
            }
        }
    }
}

/// A model made linear: norms that are the identity (eps 1e30 with weights 1e15, so
/// x·1e15/sqrt(mean x² + 1e30) = x to 1e-30 relative), attention with zero q and k
/// projections (uniform causal averaging, linear in v), MLPs with a zero gate (silu(0) = 0:
/// they output nothing), and the linear loss logit_diff. There EAP's first-order scores are
/// exact: each edge's score equals the metric drop of the circuit without that edge. f64,
/// 1e-10 of the largest score.
#[test]
fn eap_scores_equal_exact_ablations_on_a_linear_model() {
    let mut config = tiny_config(Family::Llama);
    config.rms_norm_eps = 1e30;
    let w = random_weights(&config, 21, DType::F64, &Device::Cpu).unwrap();
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for name in w.names() {
        let t = w.get(name).unwrap().clone();
        let t = if name.contains("norm") {
            (t.ones_like().unwrap() * 1e15).unwrap()
        } else if name.contains("q_proj") || name.contains("k_proj") || name.contains("gate_proj") {
            t.zeros_like().unwrap()
        } else {
            t
        };
        map.insert(name.clone(), t);
    }
    let m = Model::from_parts(
        config,
        Weights::new(map),
        "synthetic:linear",
        Device::Cpu,
        DType::F64,
    );
    let tf = HookedTransformer::new(&m).unwrap();
    for g in [Granularity::Block, Granularity::Head] {
        let lay = layout(&tf, g);
        let edges = lay.edges();
        let s = Sample {
            id: 0,
            tokens: vec![3, 8, 1, 30, 12, 6],
            corrupt: None,
            loss: SampleLoss::LogitDiff {
                position: 5,
                target: 7,
                wrong: 19,
            },
        };
        let ss = vec![s.clone()];
        let eap = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
        let v = ablation_values(&tf, &lay, &ss, Ablation::Zero, &|| false).unwrap();
        let full = eval_mean(&tf, &lay, &Circuit::full(edges.len()), &ss, &v)[0];
        let scale = eap.scores.iter().fold(0f64, |a, x| a.max(x.abs()));
        assert!(
            scale > 1e-3,
            "the linear model's scores are not trivial: {scale}"
        );
        let mut nonzero = 0;
        for e in 0..edges.len() {
            let mut c = Circuit::full(edges.len());
            c.keep[e] = false;
            let drop = full - eval_mean(&tf, &lay, &c, &ss, &v)[0];
            assert!(
                (drop - eap.scores[e]).abs() < 1e-10 * scale,
                "{g:?} edge {e}: exact {drop} vs EAP {}",
                eap.scores[e]
            );
            nonzero += usize::from(drop.abs() > 1e-6 * scale);
        }
        assert!(nonzero >= 5, "{g:?}: only {nonzero} edges matter");
    }
}

/// The curve: p = 1 is the plain model (f = 1 exactly), the empty circuit 0; an interrupt
/// keeps the points done, equal to the uninterrupted run's.
#[test]
fn faithfulness_curve_ends_and_interrupts() {
    let tf = tf_of(Family::Llama, 5);
    let lay = layout(&tf, Granularity::Block);
    let ss = samples();
    let edges = lay.edges();
    // A graph with the patch scores of the first sample.
    let scores = score_sample(&tf, &lay, &edges, &ss[0], Method::Eap, &|| false).unwrap();
    let graph = rlq::attribution::Graph {
        edges: rlq::attribution::edge_infos(&lay),
        scores: vec![scores.scores],
        meta: rlq::attribution::GraphMeta {
            model: String::new(),
            n_layers: 2,
            loss: "self_entropy".into(),
            method: "eap".into(),
            granularity: "block".into(),
            t_cut: None,
            prompt_ids: vec![10],
            per_sample: false,
            per_position: false,
            n_heads: tf.config.n_heads,
            d_model: tf.config.d_model,
            ..Default::default()
        },
        positions: None,
    };
    let v = ablation_values(&tf, &lay, &ss, Ablation::Zero, &|| false).unwrap();
    let opts = FaithOptions {
        at: vec![0.1, 0.3, 0.6, 1.0],
        random: 2,
        ..FaithOptions::default()
    };
    let curve = faithfulness(&tf, &lay, &graph, &ss, &v, &opts, &mut |_, _| {}, &|| false).unwrap();
    assert!(!curve.stopped);
    assert_eq!(curve.points.len(), 4);
    let last = curve.points.last().unwrap();
    assert_eq!((last.n_edges, last.f), (edges.len(), 1.0));
    assert_eq!(last.random.as_ref().unwrap().f, vec![1.0, 1.0]);
    assert_eq!(curve.points[0].n_top, (0.1 * edges.len() as f64) as usize);
    // Count the polls of a whole run (once per sample evaluated; repeated circuits are not
    // rerun), then interrupt at its last poll: the last point evaluated is lost, the ones
    // before it are kept exactly.
    let polls = Cell::new(0usize);
    let counting = || {
        polls.set(polls.get() + 1);
        false
    };
    faithfulness(&tf, &lay, &graph, &ss, &v, &opts, &mut |_, _| {}, &counting).unwrap();
    let total = polls.get();
    polls.set(0);
    let stop_at_last = || {
        polls.set(polls.get() + 1);
        polls.get() >= total
    };
    let part = faithfulness(
        &tf,
        &lay,
        &graph,
        &ss,
        &v,
        &opts,
        &mut |_, _| {},
        &stop_at_last,
    )
    .unwrap();
    assert!(part.stopped);
    assert!(part.points.len() < curve.points.len());
    for (a, b) in part.points.iter().zip(&curve.points) {
        assert_eq!((a.p, a.n_edges, a.f), (b.p, b.n_edges, b.f));
    }
}

/// The verbs on the synthetic model: `circuit` (top, threshold, greedy, prune), `evaluate`
/// (the full graph gives the plain model's metric, the empty one the ablated one), and
/// `faithfulness` whose curve `plot lines` draws and `faithfulness_summary` reads.
#[test]
fn circuit_verbs_on_a_synthetic_model() {
    let m = random_model(Family::Llama, 5, DType::F32).unwrap();
    let mut s = Session::new();
    s.set("m", m);
    let ids = |v: Vec<i64>| Series::new("".into(), v);
    let qs = df!(
        "prompt_ids" => [ids(vec![1, 5, 9, 3]), ids(vec![1, 12, 7])],
        "answer_ids" => [ids(vec![17, 4, 22]), ids(vec![25, 2])],
    )
    .unwrap();
    s.set("qs", qs);
    let table = |s: &mut Session, src: &str| -> DataFrame {
        s.eval(src)
            .unwrap_or_else(|e| panic!("`{src}`: {e:?}"))
            .as_table()
            .unwrap_or_else(|| panic!("`{src}` is not a table"))
    };
    s.eval("let g = patch m on qs t_cut 2").unwrap();
    let count = |s: &mut Session, src: &str| -> f64 {
        s.eval(&format!("edges ({src}) | count"))
            .unwrap_or_else(|e| panic!("`{src}`: {e:?}"))
            .as_number()
            .unwrap()
    };
    assert_eq!(count(&mut s, "circuit g top 5"), 5.0);
    assert_eq!(count(&mut s, "circuit g greedy 6"), 6.0);
    let pruned = count(&mut s, "circuit g top 5 prune true");
    assert!(pruned <= 5.0);
    assert_eq!(count(&mut s, "circuit g threshold 0"), 23.0);
    assert!(s.eval("circuit g top 5 greedy 3").is_err());
    // The full graph: the plain model's metric per sample.
    let full = table(&mut s, "evaluate m on qs circuit g");
    assert_eq!(full.height(), 2);
    // Sample 0 feeds p ++ a[..1] (T_cut 2 from the graph) and scores a[..2] from |p| − 1.
    let tf = HookedTransformer::new(&random_model(Family::Llama, 5, DType::F32).unwrap()).unwrap();
    let want = -nll(&tf.logits(&[1, 5, 9, 3, 17]).unwrap(), 3, &[17, 4]);
    let metric = full
        .column("metric")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!(
        (metric - want).abs() < 1e-5 * want.abs(),
        "{metric} vs {want}"
    );
    let one = table(
        &mut s,
        "evaluate m on qs circuit (circuit g top 0) summary true",
    );
    assert_eq!(
        one.column("n_edges").unwrap().i64().unwrap().get(0),
        Some(0)
    );
    let curve = table(
        &mut s,
        "let c = faithfulness m on qs graph g at [0.2, 0.5, 1] random 2\nc",
    );
    assert_eq!(curve.height(), 3);
    for col in ["p", "n_edges", "metric", "f", "random_f", "random_f_sd"] {
        assert!(curve.column(col).is_ok(), "{col}");
    }
    let f = curve.column("f").unwrap().f64().unwrap();
    assert_eq!(f.get(2), Some(1.0));
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("faith.svg");
    s.eval(&format!(
        "plot lines c x \"p\" y [\"f\", \"random_f\"] to \"{}\"",
        svg.display()
    ))
    .unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let sum = table(&mut s, "faithfulness_summary c");
    for col in ["cpr", "cmd", "auc", "random_cpr"] {
        assert!(sum.column(col).is_ok(), "{col}");
    }
    // Another model's graph is refused unless asked for.
    let other = random_model(Family::Llama, 6, DType::F32).unwrap();
    s.set("m2", other);
    assert!(s.eval("evaluate m2 on qs circuit g").is_err());
    assert!(s
        .eval("evaluate m2 on qs circuit g other_model true")
        .is_ok());
}

const GGUF: &str = "models/smollm2-135m-instruct.q4_1.gguf";

/// On the real SmolLM2, in MIB's setting (classic EAP from corrupted prompts, interchange
/// ablation): the top edges of a real graph recover the answer far better than random edge sets
/// of the same size (one run: f 0.43 / 0.82 at p 0.2 / 0.5 against random |f| < 0.01). Under
/// zero ablation both go below the empty circuit on this model (partial circuits are far off
/// distribution), so it is not the setting of this check.
#[test]
fn real_smollm2_curve_lies_above_random() {
    if !Path::new(GGUF).exists() {
        eprintln!("SKIP: {GGUF} missing; run scripts/fetch-models.sh");
        return;
    }
    let mut s = Session::new();
    s.eval(&format!("let m = load \"{GGUF}\"")).unwrap();
    let ids = |v: &[i64]| Series::new("".into(), v.to_vec());
    let p0 = [
        1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    let p1 = [
        1, 4093, 198, 1780, 314, 216, 34, 1232, 216, 37, 47, 2, 198, 1, 520, 9531, 198,
    ];
    let p2 = [
        1, 4093, 198, 23, 3437, 260, 6341, 282, 1345, 30, 2, 198, 1, 520, 9531, 198,
    ];
    // Each corrupted prompt changes one content token.
    let (mut c0, mut c1, mut c2) = (p0.to_vec(), p1.to_vec(), p2.to_vec());
    (c0[8], c1[6], c2[6]) = (5227, 36, 4649);
    let qs = df!(
        "prompt_ids" => [ids(&p0), ids(&p1), ids(&p2)],
        "answer_ids" => [
            ids(&[504, 3575, 282, 4649, 314]),
            ids(&[34, 1232, 216, 37, 314]),
            ids(&[504, 6341, 282, 1345, 314])
        ],
        "corrupt_ids" => [ids(&c0), ids(&c1), ids(&c2)],
    )
    .unwrap();
    s.set("qs", qs);
    s.eval("let g = patch m on qs t_cut 5").unwrap();
    let curve = s
        .eval("faithfulness m on qs graph g at [0.2, 0.5] random 1 ablation corrupt")
        .unwrap()
        .as_table()
        .unwrap();
    let col = |n: &str| -> Vec<f64> {
        curve
            .column(n)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let (f, rf) = (col("f"), col("random_f"));
    eprintln!("f {f:?}\nrandom_f {rf:?}");
    for (a, b) in f.iter().zip(&rf) {
        assert!(*a > b + 0.2, "top edges {a} vs random {b}");
    }
}
