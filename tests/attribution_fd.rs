//! EAP scores against finite differences, in f64, on tiny random models of every family.
//!
//! Replacing H_v by H_v + ε·ΔO_u changes the loss by ε·S[u,v] to first order, so the central
//! difference (L(ε) − L(−ε)) / 2ε must equal S[u,v]. Its truncation error is O(ε²·L''') ≈ 1e-10
//! at ε = 1e-5 and its rounding error ≈ 1e-16/ε ≈ 1e-11 in f64, so 1e-6 relative (plus a 1e-9
//! absolute floor for scores that are nearly zero) is a strict test that still cannot flake.

use candle_core::{DType, Tensor};
use rlq::attribution::loss::{loss, LossTarget};
use rlq::attribution::{
    score_sample, score_sample_observed, score_sample_with, Method, Sample, SampleLoss,
    ScoreOptions,
};
use rlq::model::hooked::{DestOffsets, ForwardInput, HookedTransformer, Hooks};
use rlq::model::hooks::{DestKind, Granularity, HookLayout, SourceKind};
use rlq::model::synthetic::random_model;
use rlq::model::Family;

fn transformer(family: Family) -> HookedTransformer {
    let m = random_model(family, 7, DType::F64).unwrap();
    HookedTransformer::new(&m).unwrap()
}

fn sample(corrupt: bool) -> Sample {
    Sample {
        id: 0,
        tokens: vec![3, 17, 5, 9, 28, 11, 4],
        corrupt: corrupt.then(|| vec![3, 12, 5, 30, 28, 1, 4]),
        loss: SampleLoss::Tokens {
            start: 3,
            targets: vec![28, 11, 4, 6],
        },
    }
}

/// Loss with `offset` added to destination `v` only.
fn loss_with_offset(
    tf: &HookedTransformer,
    lay: &HookLayout,
    s: &Sample,
    v: usize,
    offset: &Tensor,
) -> f64 {
    let (seq, d) = (s.tokens.len(), tf.config.d_model);
    let mut offs = Tensor::zeros((lay.n_dests(), seq, d), DType::F64, tf.device()).unwrap();
    offs = offs
        .slice_assign(&[v..v + 1, 0..seq, 0..d], &offset.unsqueeze(0).unwrap())
        .unwrap();
    let out = tf
        .forward(
            ForwardInput::Ids(&s.tokens),
            &Hooks {
                layout: Some(lay),
                dest_offsets: Some(&DestOffsets::Stacked(offs.clone())),
                record_sources: false,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    loss(&out.logits, &token_target(s))
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The loss target of a token loss (these tests' samples use no other).
fn token_target(s: &Sample) -> LossTarget {
    match &s.loss {
        SampleLoss::Tokens { start, targets } => LossTarget::Tokens {
            start: *start,
            targets: targets.clone(),
        },
        SampleLoss::Picked { positions, targets } => LossTarget::Picked {
            positions: positions.clone(),
            targets: targets.clone(),
        },
        other => unreachable!("a token loss, not {other:?}"),
    }
}

/// All sources recorded on `tokens`.
fn sources(tf: &HookedTransformer, lay: &HookLayout, tokens: &[u32]) -> Tensor {
    tf.forward(
        ForwardInput::Ids(tokens),
        &Hooks {
            layout: Some(lay),
            dest_offsets: None,
            record_sources: true,
            ..Default::default()
        },
        None,
    )
    .unwrap()
    .sources
    .unwrap()
}

/// Edges covering every (source kind, destination kind) pair present in the layout.
fn sampled_edges(lay: &HookLayout) -> Vec<usize> {
    let edges = lay.edges();
    let mut seen = std::collections::HashSet::new();
    let mut picked = Vec::new();
    for (i, &(u, v)) in edges.iter().enumerate() {
        let key = (lay.sources[u].kind, lay.dests[v].kind);
        if seen.insert(key) {
            picked.push(i);
        }
    }
    // and the last edge (into logits from the last MLP)
    picked.push(edges.len() - 1);
    picked
}

fn check_fd(family: Family, granularity: Granularity, corrupt: bool) {
    let tf = transformer(family);
    let c = &tf.config;
    let lay = HookLayout::new(granularity, c.n_layers, c.n_heads, c.n_kv_heads);
    let s = sample(corrupt);
    let edges = lay.edges();
    let got = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
    assert_eq!(got.scores.len(), edges.len());
    let o = sources(&tf, &lay, &s.tokens);
    let delta_o = match &s.corrupt {
        Some(ct) => (sources(&tf, &lay, ct) - &o).unwrap(),
        None => o.neg().unwrap(),
    };
    let eps = 1e-5;
    let picked = sampled_edges(&lay);
    let kinds: std::collections::HashSet<_> = picked
        .iter()
        .map(|&i| (lay.sources[edges[i].0].kind, lay.dests[edges[i].1].kind))
        .collect();
    // every kind of edge the issue names is among those checked
    for want in [
        (SourceKind::Embed, DestKind::Q),
        (SourceKind::Mlp, DestKind::V),
        (SourceKind::Embed, DestKind::Mlp),
        (SourceKind::Mlp, DestKind::Logits),
    ] {
        assert!(kinds.contains(&want), "{want:?} not sampled");
    }
    let attn_kind = match granularity {
        Granularity::Block => SourceKind::Attn,
        Granularity::Head | Granularity::HeadUngrouped => SourceKind::Head,
    };
    assert!(kinds.contains(&(attn_kind, DestKind::K)));
    for i in picked {
        let (u, v) = edges[i];
        let du = delta_o.get(u).unwrap();
        let lp = loss_with_offset(&tf, &lay, &s, v, &(&du * eps).unwrap());
        let lm = loss_with_offset(&tf, &lay, &s, v, &(&du * -eps).unwrap());
        let fd = (lp - lm) / (2.0 * eps);
        let eap = got.scores[i];
        let err = (fd - eap).abs();
        assert!(
            err <= 1e-6 * fd.abs().max(eap.abs()) + 1e-9,
            "{family:?} {granularity:?} corrupt={corrupt} edge {}->{}: eap {eap:e} fd {fd:e}",
            lay.sources[u].name,
            lay.dests[v].name
        );
    }
}

#[test]
fn eap_matches_finite_differences_block() {
    for f in Family::ALL {
        check_fd(f, Granularity::Block, false);
    }
}

#[test]
fn eap_matches_finite_differences_head() {
    for f in [Family::Llama, Family::Qwen2, Family::Qwen3, Family::Mistral] {
        check_fd(f, Granularity::Head, false);
    }
}

/// k/v per query head: each query head's path through its group's k/v projection on its own.
#[test]
fn eap_matches_finite_differences_head_kv_ungrouped() {
    for f in [Family::Llama, Family::Qwen2, Family::Qwen3] {
        check_fd(f, Granularity::HeadUngrouped, false);
    }
    check_fd(Family::Qwen2, Granularity::HeadUngrouped, true);
}

/// Under GQA (4 query heads over 2 KV heads), the ungrouped k/v scores of the query heads of
/// one group add up to that KV head's grouped score: the grouped copy feeds all of them, and at
/// the clean point every per-query copy equals it, so the chain rule sums their gradients.
/// Every other edge (q, mlp, logits; all sources) is the same graph and must agree alone.
/// f64; tolerance 1e-10 relative (the sums differ only in rounding order).
#[test]
fn ungrouped_kv_scores_sum_to_grouped() {
    for (f, corrupt) in [
        (Family::Llama, false),
        (Family::Qwen2, true),
        (Family::Qwen3, false),
    ] {
        let tf = transformer(f);
        let c = tf.config.clone();
        assert!(c.n_heads > c.n_kv_heads, "the synthetic model must use GQA");
        let group = c.n_heads / c.n_kv_heads;
        let grouped = HookLayout::new(Granularity::Head, c.n_layers, c.n_heads, c.n_kv_heads);
        let ungrouped = HookLayout::new(
            Granularity::HeadUngrouped,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
        );
        let s = sample(corrupt);
        let (ge, ue) = (grouped.edges(), ungrouped.edges());
        assert!(ue.len() > ge.len());
        let g = score_sample(&tf, &grouped, &ge, &s, Method::Eap, &|| false).unwrap();
        let u = score_sample(&tf, &ungrouped, &ue, &s, Method::Eap, &|| false).unwrap();
        // a{l}.h{h}<k> (query head h) -> a{l}.h{h / group}<k> (its KV head); others unchanged.
        let to_grouped = |name: &str| -> String {
            if !(name.ends_with("<k>") || name.ends_with("<v>")) {
                return name.to_string();
            }
            let (layer, rest) = name.split_once(".h").unwrap();
            let (h, port) = rest.split_once('<').unwrap();
            let h: usize = h.parse().unwrap();
            format!("{layer}.h{}<{port}", h / group)
        };
        let mut summed = std::collections::HashMap::<(String, String), f64>::new();
        for (&(a, b), x) in ue.iter().zip(&u.scores) {
            let key = (
                ungrouped.sources[a].name.clone(),
                to_grouped(&ungrouped.dests[b].name),
            );
            *summed.entry(key).or_default() += x;
        }
        assert_eq!(summed.len(), ge.len());
        let mut kv_checked = 0;
        for (&(a, b), x) in ge.iter().zip(&g.scores) {
            let key = (
                grouped.sources[a].name.clone(),
                grouped.dests[b].name.clone(),
            );
            let y = summed[&key];
            assert!(
                (x - y).abs() <= 1e-10 * x.abs().max(y.abs()) + 1e-14,
                "{f:?} {key:?}: grouped {x:e} vs summed query heads {y:e}"
            );
            if matches!(grouped.dests[b].kind, DestKind::K | DestKind::V) {
                kv_checked += 1;
            }
        }
        assert!(kv_checked > 0);
        // and the split is not trivial: query heads of one group get different k scores
        let k0 = |h: usize| {
            let want = format!("a1.h{h}<k>");
            ue.iter()
                .zip(&u.scores)
                .find(|(&(a, b), _)| {
                    ungrouped.sources[a].name == "input" && ungrouped.dests[b].name == want
                })
                .map(|(_, x)| *x)
                .unwrap()
        };
        assert_ne!(k0(0), k0(1), "{f:?}");
    }
}

/// Per-position scores summed over positions equal the ordinary scores, for EAP (zero and
/// corrupted ablation) and EAP-IG, at block and head granularity. f64; 1e-12 relative (plus
/// 1e-15 absolute for scores that cancel to ~0): the two are the same products summed in
/// another order.
#[test]
fn per_position_scores_sum_to_edge_scores() {
    let tf = transformer(Family::Qwen2);
    let c = tf.config.clone();
    for (g, corrupt, method) in [
        (Granularity::Block, false, Method::Eap),
        (Granularity::Block, true, Method::Eap),
        (Granularity::HeadUngrouped, false, Method::Eap),
        (Granularity::Block, true, Method::EapIg { steps: 3 }),
    ] {
        let lay = HookLayout::new(g, c.n_layers, c.n_heads, c.n_kv_heads);
        let edges = lay.edges();
        let s = sample(corrupt);
        let plain = score_sample(&tf, &lay, &edges, &s, method, &|| false).unwrap();
        assert!(plain.per_position.is_none());
        let opts = ScoreOptions { per_position: true };
        let per = score_sample_with(&tf, &lay, &edges, &s, method, opts, &|| false).unwrap();
        let pp = per.per_position.as_ref().unwrap();
        let (n_t, n_e) = (s.tokens.len(), edges.len());
        assert_eq!(pp.len(), n_t * n_e);
        assert_eq!(
            per.scores, plain.scores,
            "the edge scores themselves are unchanged"
        );
        for e in 0..n_e {
            let sum: f64 = (0..n_t).map(|t| pp[t * n_e + e]).sum();
            let want = plain.scores[e];
            assert!(
                (sum - want).abs() <= 1e-12 * want.abs() + 1e-15,
                "{g:?} {method:?} edge {e}: Σ_t {sum:e} vs {want:e}"
            );
        }
        // the split is real: several positions carry score
        let live = (0..n_t)
            .filter(|t| (0..n_e).any(|e| pp[t * n_e + e].abs() > 1e-9))
            .count();
        assert!(live >= 3, "{g:?}: only {live} positions carry score");
    }
    // exact patching has no per-position form
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let opts = ScoreOptions { per_position: true };
    let e = score_sample_with(
        &tf,
        &lay,
        &lay.edges(),
        &sample(false),
        Method::Patch,
        opts,
        &|| false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("per-position"), "{e}");
}

/// One position's score against a finite difference that moves H_v along ΔO_u at that position
/// only: S[u,v,t] = ∂L/∂ε of L(H_v + ε·ΔO_u[t]·e_t). Same tolerance as `check_fd`.
#[test]
fn per_position_scores_match_finite_differences() {
    for (f, g, corrupt) in [
        (Family::Llama, Granularity::Block, false),
        (Family::Qwen2, Granularity::HeadUngrouped, true),
    ] {
        let tf = transformer(f);
        let c = tf.config.clone();
        let lay = HookLayout::new(g, c.n_layers, c.n_heads, c.n_kv_heads);
        let edges = lay.edges();
        let s = sample(corrupt);
        let opts = ScoreOptions { per_position: true };
        let got = score_sample_with(&tf, &lay, &edges, &s, Method::Eap, opts, &|| false).unwrap();
        let pp = got.per_position.unwrap();
        let o = sources(&tf, &lay, &s.tokens);
        let delta_o = match &s.corrupt {
            Some(ct) => (sources(&tf, &lay, ct) - &o).unwrap(),
            None => o.neg().unwrap(),
        };
        let (seq, n_e) = (s.tokens.len(), edges.len());
        let eps = 1e-5;
        let mut nonzero = 0;
        for i in sampled_edges(&lay) {
            let (u, v) = edges[i];
            for t in [1usize, 3, 4] {
                let du = delta_o.get(u).unwrap();
                // ΔO_u at row t, zeros elsewhere
                let mask: Vec<f64> = (0..seq).map(|r| if r == t { 1.0 } else { 0.0 }).collect();
                let mask = Tensor::from_vec(mask, (seq, 1), tf.device()).unwrap();
                let du_t = du.broadcast_mul(&mask).unwrap();
                let lp = loss_with_offset(&tf, &lay, &s, v, &(&du_t * eps).unwrap());
                let lm = loss_with_offset(&tf, &lay, &s, v, &(&du_t * -eps).unwrap());
                let fd = (lp - lm) / (2.0 * eps);
                let x = pp[t * n_e + i];
                assert!(
                    (fd - x).abs() <= 1e-6 * fd.abs().max(x.abs()) + 1e-9,
                    "{f:?} {g:?} edge {}->{} t={t}: per-position {x:e} fd {fd:e}",
                    lay.sources[u].name,
                    lay.dests[v].name
                );
                if x.abs() > 1e-6 {
                    nonzero += 1;
                }
            }
        }
        assert!(nonzero > 3, "the checked positions must carry real scores");
    }
}

#[test]
fn classic_eap_with_corrupted_input_matches_finite_differences() {
    check_fd(Family::Llama, Granularity::Block, true);
    check_fd(Family::Qwen2, Granularity::Head, true);
    check_fd(Family::Olmo2, Granularity::Block, true);
}

/// Under OLMo 2's post-norm the attention block adds `norm(Σ_h z_h·W_o,h)` to the residual, not
/// `Σ_h norm(…)`: per-head outputs are not sources whose sum is the block's output, so
/// `granularity head` is refused with that reason (block granularity stays exact, checked by
/// finite differences above) instead of scoring edges that no ablation realises.
#[test]
fn olmo2_head_granularity_is_refused_with_its_reason() {
    let tf = transformer(Family::Olmo2);
    let c = &tf.config;
    let lay = HookLayout::new(Granularity::Head, c.n_layers, c.n_heads, c.n_kv_heads);
    let err = score_sample(
        &tf,
        &lay,
        &lay.edges(),
        &sample(false),
        Method::Eap,
        &|| false,
    )
    .expect_err("head granularity must be refused for olmo2")
    .to_string();
    assert!(
        err.contains("head granularity is not defined for olmo2")
            && err.contains("per-head outputs do not add up"),
        "{err}"
    );
}

#[test]
fn eap_ig_with_one_step_equals_eap() {
    let tf = transformer(Family::Llama);
    let c = &tf.config;
    for corrupt in [false, true] {
        let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
        let edges = lay.edges();
        let s = sample(corrupt);
        let a = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
        let b = score_sample(&tf, &lay, &edges, &s, Method::EapIg { steps: 1 }, &|| false).unwrap();
        assert_eq!(a.scores, b.scores, "steps 1 must be the same computation");
        // and more steps differ but stay finite
        let c4 =
            score_sample(&tf, &lay, &edges, &s, Method::EapIg { steps: 4 }, &|| false).unwrap();
        assert!(c4.scores.iter().all(|x| x.is_finite()));
        assert_ne!(a.scores, c4.scores);
    }
}

/// The residual a destination reads is the sum of the sources before it: at `logits`, the
/// recorded sources must add up to the stream the final norm sees, so the forward's logits are
/// reproduced from them. Then Σ_u S[u, logits] = −⟨H, G⟩ holds by linearity.
#[test]
fn sources_sum_to_the_residual_stream() {
    // OLMo 2: the sources are the post-normed sublayer outputs, which is what the residual adds.
    for (f, g) in [
        (Family::Qwen3, Granularity::Block),
        (Family::Qwen3, Granularity::Head),
        (Family::Olmo2, Granularity::Block),
    ] {
        let tf = transformer(f);
        let c = tf.config.clone();
        let lay = HookLayout::new(g, c.n_layers, c.n_heads, c.n_kv_heads);
        let s = sample(false);
        let o = sources(&tf, &lay, &s.tokens);
        let h = o.sum(0).unwrap();
        // feed −H to the logits destination: the final norm then sees exactly zero... which
        // rms-norms to zero logits.
        let logits_dst = lay.dest_logits();
        let seq = s.tokens.len();
        let mut offs =
            Tensor::zeros((lay.n_dests(), seq, c.d_model), DType::F64, tf.device()).unwrap();
        offs = offs
            .slice_assign(
                &[logits_dst..logits_dst + 1, 0..seq, 0..c.d_model],
                &h.neg().unwrap().unsqueeze(0).unwrap(),
            )
            .unwrap();
        let out = tf
            .forward(
                ForwardInput::Ids(&s.tokens),
                &Hooks {
                    layout: Some(&lay),
                    dest_offsets: Some(&DestOffsets::Stacked(offs.clone())),
                    record_sources: false,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        let max = out
            .logits
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            max < 1e-6,
            "{f:?} {g:?}: logits after removing all sources: {max}"
        );
        // Sum rule over the scores themselves.
        let edges = lay.edges();
        let sc = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
        let into_logits: f64 = edges
            .iter()
            .zip(&sc.scores)
            .filter(|((_, v), _)| *v == logits_dst)
            .map(|(_, x)| x)
            .sum();
        // −⟨H, G⟩ by finite differences of scaling the whole residual at logits.
        let eps = 1e-5;
        let lp = loss_with_offset(&tf, &lay, &s, logits_dst, &(&h * -eps).unwrap());
        let lm = loss_with_offset(&tf, &lay, &s, logits_dst, &(&h * eps).unwrap());
        let fd = (lp - lm) / (2.0 * eps);
        assert!(
            (into_logits - fd).abs() <= 1e-6 * fd.abs() + 1e-9,
            "{g:?}: Σ_u S[u,logits] = {into_logits}, −⟨H,G⟩ = {fd}"
        );
    }
}

/// Per-head sources of a{l} add up to a{l}; per-head q/k/v destinations add up to the block's.
#[test]
fn head_granularity_sums_back_to_block() {
    let tf = transformer(Family::Llama);
    let c = tf.config.clone();
    let block = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let head = HookLayout::new(Granularity::Head, c.n_layers, c.n_heads, c.n_kv_heads);
    let s = sample(false);
    let be = block.edges();
    let he = head.edges();
    let b = score_sample(&tf, &block, &be, &s, Method::Eap, &|| false).unwrap();
    let h = score_sample(&tf, &head, &he, &s, Method::Eap, &|| false).unwrap();
    // Map a head-granularity node name to its block name: a1.h2 -> a1, a1.h0<q> -> a1<q>.
    let to_block = |n: &str| -> String {
        match n.split_once(".h") {
            Some((a, rest)) => match rest.find('<') {
                Some(i) => format!("{a}{}", &rest[i..]),
                None => a.to_string(),
            },
            None => n.to_string(),
        }
    };
    let mut summed = std::collections::HashMap::<(String, String), f64>::new();
    for (&(u, v), x) in he.iter().zip(&h.scores) {
        let key = (
            to_block(&head.sources[u].name),
            to_block(&head.dests[v].name),
        );
        *summed.entry(key).or_default() += x;
    }
    assert_eq!(summed.len(), be.len());
    for (&(u, v), x) in be.iter().zip(&b.scores) {
        let key = (block.sources[u].name.clone(), block.dests[v].name.clone());
        let y = summed[&key];
        assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "{key:?}: block {x} vs summed heads {y}"
        );
    }
}

fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    for (rank, &i) in idx.iter().enumerate() {
        r[i] = rank as f64;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Exact patching vs EAP. EAP is the first-order term of exact patching (checked to 1e-6 by
/// the finite-difference tests above); here the full ablations are compared and the rank
/// correlation reported. One structural gap is asserted rather than hidden: layer 0's q/k/v read
/// `input` alone, and RMSNorm is scale-invariant, so the first-order effect of removing `input`
/// from them is exactly zero while the real ablation (norm of a zero vector) is large.
#[test]
fn exact_patching_vs_eap() {
    let tf = transformer(Family::Llama);
    let c = tf.config.clone();
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let edges = lay.edges();
    let s = sample(false);
    let eap = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
    let exact = score_sample(&tf, &lay, &edges, &s, Method::Patch, &|| false).unwrap();
    let rho = pearson(&ranks(&eap.scores), &ranks(&exact.scores));
    println!(
        "spearman(eap, exact patching) = {rho:.4} over {} edges",
        edges.len()
    );
    assert!(rho > 0.5, "rank correlation {rho}");
    let mut rest_e = Vec::new();
    let mut rest_x = Vec::new();
    for (i, &(u, v)) in edges.iter().enumerate() {
        let only_input_into_layer0_attn = lay.sources[u].name == "input"
            && lay.dests[v].layer == 0
            && matches!(lay.dests[v].kind, DestKind::Q | DestKind::K | DestKind::V);
        if only_input_into_layer0_attn {
            assert!(
                eap.scores[i].abs() < 1e-4,
                "scale invariance: {}",
                eap.scores[i]
            );
            assert!(exact.scores[i].abs() > 1e-2);
        } else {
            rest_e.push(eap.scores[i]);
            rest_x.push(exact.scores[i]);
        }
    }
    let rho_rest = pearson(&ranks(&rest_e), &ranks(&rest_x));
    println!("spearman without the scale-invariant edges = {rho_rest:.4}");
    assert!(rho_rest > rho);
    // Exact patching of an edge really equals the rerun with the edge removed.
    let (u, v) = edges[3];
    let o = sources(&tf, &lay, &s.tokens);
    let l_abl = loss_with_offset(&tf, &lay, &s, v, &o.get(u).unwrap().neg().unwrap());
    assert!((l_abl - exact.loss - exact.scores[3]).abs() < 1e-12);
}

#[test]
fn mismatched_corrupt_length_is_an_error_not_a_panic() {
    let tf = transformer(Family::Llama);
    let c = tf.config.clone();
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let mut s = sample(true);
    s.corrupt = Some(vec![1, 2]);
    let err = score_sample(&tf, &lay, &lay.edges(), &s, Method::Eap, &|| false).unwrap_err();
    assert!(err.to_string().contains("must align"), "{err}");
    let mut s = sample(false);
    s.loss = SampleLoss::Tokens {
        start: 6,
        targets: vec![1, 2, 3],
    };
    let err = score_sample(&tf, &lay, &lay.edges(), &s, Method::Eap, &|| false).unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
}

/// The logit-difference loss through the same finite-difference check, and the KL loss's
/// defining property: at the clean input its gradient vanishes, so zero-ablation EAP scores are 0.
#[test]
fn logit_diff_and_kl_losses() {
    let tf = transformer(Family::Qwen2);
    let c = tf.config.clone();
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let edges = lay.edges();
    let mut s = sample(false);
    s.loss = SampleLoss::LogitDiff {
        position: 6,
        target: 3,
        wrong: 8,
    };
    let got = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
    let o = sources(&tf, &lay, &s.tokens);
    let diff_loss = |v: usize, off: &Tensor| -> f64 {
        let (seq, d) = (s.tokens.len(), c.d_model);
        let mut offs = Tensor::zeros((lay.n_dests(), seq, d), DType::F64, tf.device()).unwrap();
        offs = offs
            .slice_assign(&[v..v + 1, 0..seq, 0..d], &off.unsqueeze(0).unwrap())
            .unwrap();
        let out = tf
            .forward(
                ForwardInput::Ids(&s.tokens),
                &Hooks {
                    layout: Some(&lay),
                    dest_offsets: Some(&DestOffsets::Stacked(offs)),
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        let t = LossTarget::LogitDiff {
            position: 6,
            target: 3,
            wrong: 8,
        };
        loss(&out.logits, &t).unwrap().to_scalar::<f64>().unwrap()
    };
    let eps = 1e-5;
    for i in sampled_edges(&lay) {
        let (u, v) = edges[i];
        let du = o.get(u).unwrap().neg().unwrap();
        let fd = (diff_loss(v, &(&du * eps).unwrap()) - diff_loss(v, &(&du * -eps).unwrap()))
            / (2.0 * eps);
        let e = got.scores[i];
        assert!(
            (fd - e).abs() <= 1e-6 * fd.abs().max(e.abs()) + 1e-9,
            "edge {i}: {e} vs {fd}"
        );
    }
    // KL against the clean run: zero at the clean point, zero gradient there.
    s.loss = SampleLoss::Kl { start: 3, len: 4 };
    let kl = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
    assert!(kl.loss.abs() < 1e-12);
    assert!(kl.scores.iter().all(|x| x.abs() < 1e-9));
    // ...but exact patching of an edge moves the distribution: KL > 0.
    let kp = score_sample(&tf, &lay, &edges[..3], &s, Method::Patch, &|| false).unwrap();
    assert!(kp.scores.iter().all(|x| *x > 0.0), "{:?}", kp.scores);
}

/// A NaN weight makes the loss NaN: the error names the sample instead of averaging it in.
#[test]
fn non_finite_values_are_reported_with_their_sample() {
    let mut m = random_model(Family::Llama, 7, DType::F64).unwrap();
    let name = "model.layers.1.mlp.down_proj.weight";
    let w = m.weights.get(name).unwrap();
    let nan = (w.ones_like().unwrap() * f64::NAN).unwrap();
    m.weights.insert(name, nan);
    let tf = HookedTransformer::new(&m).unwrap();
    let c = tf.config.clone();
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let mut s = sample(false);
    s.id = 42;
    let err = score_sample(&tf, &lay, &lay.edges(), &s, Method::Eap, &|| false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sample 42") && msg.contains("not finite"),
        "{msg}"
    );
}

/// `grad_norm` is ‖∂L/∂H_logits‖_F: checked against the gradient taken by central differences,
/// one residual element of the final stream at a time (all 7 × 16 of them, inside the loss
/// window and before it), an estimate independent of the backward. Per element the difference's
/// error is ≈ 1e-10 (see the module comment), so the norm agrees to 1e-6 relative. EAP-IG and
/// exact patching take it at the clean input too: with the zero baseline EAP-IG's last path
/// point is the clean input exactly (0 + 1·E), with a corrupted one up to the rounding of
/// E_b + (E − E_b), hence 1e-9 there; patching's extra backward is EAP's own, hence equal bits.
#[test]
fn grad_norm_is_the_loss_gradient_norm_at_logits() {
    for family in [Family::Llama, Family::Gemma3] {
        let tf = transformer(family);
        let c = &tf.config;
        let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
        let edges = lay.edges();
        for corrupt in [false, true] {
            let s = sample(corrupt);
            let got = score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).unwrap();
            let (seq, d) = (s.tokens.len(), c.d_model);
            let eps = 1e-5;
            let (mut sq, mut before_window) = (0.0f64, 0.0f64);
            for t in 0..seq {
                for j in 0..d {
                    let mut e = vec![0.0f64; seq * d];
                    e[t * d + j] = eps;
                    let plus = Tensor::from_vec(e, (seq, d), tf.device()).unwrap();
                    let minus = plus.neg().unwrap();
                    let fd = (loss_with_offset(&tf, &lay, &s, lay.dest_logits(), &plus)
                        - loss_with_offset(&tf, &lay, &s, lay.dest_logits(), &minus))
                        / (2.0 * eps);
                    sq += fd * fd;
                    if t < 3 {
                        before_window = before_window.max(fd.abs());
                    }
                }
            }
            let fd_norm = sq.sqrt();
            eprintln!(
                "{family:?} corrupt {corrupt}: grad_norm {:.12e}, finite differences {fd_norm:.12e} \
                 (relative {:.1e})",
                got.grad_norm,
                (got.grad_norm - fd_norm).abs() / fd_norm
            );
            assert!(
                got.grad_norm > 1e-3 && (got.grad_norm - fd_norm).abs() <= 1e-6 * fd_norm,
                "{family:?} corrupt {corrupt}: grad_norm {} vs finite differences {fd_norm}",
                got.grad_norm
            );
            // the final stream before the loss window does not reach the loss
            assert!(before_window < 1e-9, "{before_window}");
            let ig =
                score_sample(&tf, &lay, &edges, &s, Method::EapIg { steps: 3 }, &|| false).unwrap();
            let tol = if corrupt { 1e-9 } else { 1e-12 };
            assert!(
                (ig.grad_norm - got.grad_norm).abs() <= tol * got.grad_norm,
                "eap_ig {} vs eap {}",
                ig.grad_norm,
                got.grad_norm
            );
            let patch = score_sample(&tf, &lay, &edges, &s, Method::Patch, &|| false).unwrap();
            assert_eq!(patch.grad_norm, got.grad_norm);
        }
    }
}

/// Chosen answer positions (`patch … positions`): a contiguous choice is the T_cut window to
/// the last bit, and a single position's loss is that token's NLL alone, computed here by hand
/// from the plain forward's logits in f64 (1e-12: only the summation order of the
/// log-sum-exp differs); its edge scores match finite differences like any loss's.
#[test]
fn chosen_positions_give_the_loss_on_those_tokens_only() {
    let tf = transformer(Family::Llama);
    let c = &tf.config;
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let edges = lay.edges();
    let window = sample(false);
    let SampleLoss::Tokens { start, targets } = window.loss.clone() else {
        unreachable!()
    };
    let mut picked = window.clone();
    picked.loss = SampleLoss::Picked {
        positions: (start..start + targets.len()).collect(),
        targets: targets.clone(),
    };
    let a = score_sample(&tf, &lay, &edges, &window, Method::Eap, &|| false).unwrap();
    let b = score_sample(&tf, &lay, &edges, &picked, Method::Eap, &|| false).unwrap();
    assert_eq!(a.scores, b.scores);
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits());

    // one position: the third answer token, predicted at fed position start + 2
    let (pos, target) = (start + 2, targets[2]);
    let mut one = window.clone();
    one.loss = SampleLoss::Picked {
        positions: vec![pos],
        targets: vec![target],
    };
    let got = score_sample(&tf, &lay, &edges, &one, Method::Eap, &|| false).unwrap();
    let logits = tf
        .forward(ForwardInput::Ids(&one.tokens), &Hooks::default(), None)
        .unwrap()
        .logits
        .to_vec2::<f64>()
        .unwrap();
    let row = &logits[pos];
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    let nll = lse - row[target as usize];
    assert!(
        (got.loss - nll).abs() <= 1e-12 * nll.abs(),
        "loss {} vs the token's NLL {nll}",
        got.loss
    );
    let o = sources(&tf, &lay, &one.tokens).neg().unwrap();
    let eps = 1e-5;
    for i in sampled_edges(&lay) {
        let (u, v) = edges[i];
        let du = o.get(u).unwrap();
        let fd = (loss_with_offset(&tf, &lay, &one, v, &(&du * eps).unwrap())
            - loss_with_offset(&tf, &lay, &one, v, &(&du * -eps).unwrap()))
            / (2.0 * eps);
        let eap = got.scores[i];
        assert!(
            (fd - eap).abs() <= 1e-6 * fd.abs().max(eap.abs()) + 1e-9,
            "edge {i}: eap {eap} vs fd {fd}"
        );
    }
    // positions out of order or past the input are errors, not panics
    for bad in [vec![pos, pos - 1], vec![one.tokens.len()]] {
        let mut s = one.clone();
        s.loss = SampleLoss::Picked {
            targets: vec![target; bad.len()],
            positions: bad,
        };
        assert!(score_sample(&tf, &lay, &edges, &s, Method::Eap, &|| false).is_err());
    }
}

/// Inside one sample, scoring tells its host how far it is (#12: a sample of exact patching can
/// take minutes): one report after each patched forward (one per edge) and after each EAP-IG
/// step, in order, the last at `total`, and none for plain EAP (one forward, one backward).
/// Observing changes nothing: the scores are bitwise those of `score_sample`.
#[test]
fn scoring_reports_progress_inside_a_sample() {
    let tf = transformer(Family::Llama);
    let c = &tf.config;
    let lay = HookLayout::new(Granularity::Block, c.n_layers, c.n_heads, c.n_kv_heads);
    let edges = lay.edges();
    let s = sample(true);
    for (method, want_total) in [
        (Method::Patch, edges.len()),
        (Method::EapIg { steps: 4 }, 4),
        (Method::Eap, 0),
    ] {
        let mut seen = Vec::new();
        let observed = score_sample_observed(
            &tf,
            &lay,
            &edges,
            &s,
            method,
            ScoreOptions::default(),
            &|| false,
            &mut |done, total| seen.push((done, total)),
        )
        .unwrap();
        let want: Vec<(usize, usize)> = (1..=want_total).map(|k| (k, want_total)).collect();
        assert_eq!(seen, want, "{method:?}");
        let plain = score_sample(&tf, &lay, &edges, &s, method, &|| false).unwrap();
        assert_eq!(observed.scores, plain.scores, "{method:?}");
    }
}
