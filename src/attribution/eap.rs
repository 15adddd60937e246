//! Edge scores for one sample (METHOD.md section 2): EAP, EAP-IG and exact activation patching.
//!
//! EAP: one forward that records every source O_u and adds a zero `Var` to every destination's
//! private residual copy, one backward that yields G_v = ∂L/∂H_v for all destinations at once;
//! then `S = ΔOᵀ G` as a single matrix product over (position, channel), masked to real edges.
//! ΔO = −O (zero ablation) or O_corrupt − O_clean.

use candle_core::{DType, Tensor};

use super::loss::{loss, probs_at, LossTarget};
use crate::model::hooked::{DestOffsets, ForwardInput, HookedTransformer, Hooks};
use crate::model::hooks::HookLayout;

/// Attribution method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Edge attribution patching: first-order, one forward + one backward.
    Eap,
    /// EAP with integrated gradients: G averaged over `steps` inputs on the straight path from
    /// the baseline (corrupted input, or zero embeddings) to the clean input, α = k/steps.
    EapIg { steps: usize },
    /// Exact activation patching: ablate each edge on its own and rerun (slow; ground truth).
    Patch,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Eap => "eap",
            Method::EapIg { .. } => "eap_ig",
            Method::Patch => "patch",
        }
    }
}

/// The loss of one sample, before any forward pass.
#[derive(Debug, Clone)]
pub enum SampleLoss {
    Tokens {
        start: usize,
        targets: Vec<u32>,
    },
    /// Mean NLL of `targets[i]` predicted at fed position `positions[i]` (ascending, unique):
    /// answer tokens chosen one by one (`patch … positions`). Contiguous positions give the
    /// same loss, bit for bit, as `Tokens`.
    Picked {
        positions: Vec<usize>,
        targets: Vec<u32>,
    },
    LogitDiff {
        position: usize,
        target: u32,
        wrong: u32,
    },
    /// KL against the clean run's own distribution at `start..start+len`.
    Kl {
        start: usize,
        len: usize,
    },
}

/// One sample, as exact tokens.
#[derive(Debug, Clone)]
pub struct Sample {
    pub id: i64,
    /// Everything fed to the model: prompt ++ truncated answer.
    pub tokens: Vec<u32>,
    /// Corrupted input of the same length, for classic EAP / EAP-IG baselines.
    pub corrupt: Option<Vec<u32>>,
    pub loss: SampleLoss,
}

/// Scores of one sample, in the order of `edges`, plus the clean loss.
#[derive(Debug, Clone)]
pub struct SampleScores {
    pub scores: Vec<f64>,
    pub loss: f64,
    /// ‖∂L/∂H_logits‖_F in f64 at the clean input ([`crate::attribution::SampleRecord::grad_norm`]).
    pub grad_norm: f64,
    /// With [`ScoreOptions::per_position`]: S[u,v,t] row-major `[t * n_edges + e]` over every
    /// fed position t; summed over t it is `scores` (up to summation order).
    pub per_position: Option<Vec<f64>>,
}

/// What [`score_sample_with`] keeps beyond the per-edge scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Keep S[u,v,t] for every position t (8·T·E bytes per sample). EAP and EAP-IG only: an
    /// exact patch of one edge at one position is not additive over positions.
    pub per_position: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error("sample {sample}: {what} is not finite ({value})")]
    NonFinite {
        sample: i64,
        what: &'static str,
        value: f64,
    },
    #[error("sample {sample}: {msg}")]
    Sample { sample: i64, msg: String },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

type Result<T> = std::result::Result<T, AttributionError>;

/// The first position whose logits a sample's loss reads.
pub(crate) fn loss_window_start(loss: &SampleLoss) -> usize {
    match loss {
        SampleLoss::Tokens { start, .. } | SampleLoss::Kl { start, .. } => *start,
        SampleLoss::LogitDiff { position, .. } => *position,
        SampleLoss::Picked { positions, .. } => positions.first().copied().unwrap_or(0),
    }
}

/// The loss target, validated against the sequence, in the coordinates of logits that start at
/// `from` (`Hooks::logits_from`).
pub(crate) fn resolve_loss(
    sample: &Sample,
    clean_logits: &Tensor,
    from: usize,
) -> Result<LossTarget> {
    let seq = sample.tokens.len();
    let bad = |msg: String| AttributionError::Sample {
        sample: sample.id,
        msg,
    };
    Ok(match &sample.loss {
        SampleLoss::Tokens { start, targets } => {
            if targets.is_empty() || start + targets.len() > seq {
                return Err(bad(format!(
                    "answer positions {start}..{} do not fit in {seq} tokens",
                    start + targets.len()
                )));
            }
            LossTarget::Tokens {
                start: *start,
                targets: targets.clone(),
            }
        }
        SampleLoss::Picked { positions, targets } => {
            if positions.is_empty() || positions.len() != targets.len() {
                return Err(bad(format!(
                    "{} loss positions for {} targets: they must pair up, at least one",
                    positions.len(),
                    targets.len()
                )));
            }
            if positions.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad("loss positions must be ascending and unique".into()));
            }
            if let Some(&p) = positions.iter().find(|&&p| p >= seq) {
                return Err(bad(format!("loss position {p} is past {seq} tokens")));
            }
            LossTarget::Picked {
                positions: positions.clone(),
                targets: targets.clone(),
            }
        }
        SampleLoss::LogitDiff {
            position,
            target,
            wrong,
        } => {
            if *position >= seq {
                return Err(bad(format!("position {position} is past {seq} tokens")));
            }
            LossTarget::LogitDiff {
                position: *position,
                target: *target,
                wrong: *wrong,
            }
        }
        SampleLoss::Kl { start, len } => {
            if *len == 0 || start + len > seq {
                return Err(bad(format!(
                    "KL positions {start}..{} do not fit in {seq} tokens",
                    start + len
                )));
            }
            LossTarget::Kl {
                start: *start,
                len: *len,
                clean: probs_at(clean_logits, *start - from, *len)?,
            }
        }
    }
    .shifted(from))
}

fn check_finite(sample: i64, what: &'static str, t: &Tensor) -> Result<()> {
    // Summed in its own dtype: NaN and inf propagate, and no f64 copy of a large gradient is made.
    let s = t.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !s.is_finite() {
        // The sum can overflow only if an element is huge; either way the value is unusable.
        return Err(AttributionError::NonFinite {
            sample,
            what,
            value: s,
        });
    }
    Ok(())
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// ‖G_logits‖_F in f64 of stacked destination gradients `[n_dst, T, D]`.
fn logits_grad_norm(layout: &HookLayout, grad: &Tensor) -> Result<f64> {
    let g = grad.get(layout.dest_logits())?.to_dtype(DType::F64)?;
    Ok(g.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt())
}

/// Score every edge of `layout` for one sample. `edges` is `layout.edges()` (passed in so it is
/// computed once per run). `interrupted` is polled between the reruns of `Method::Patch`.
pub fn score_sample(
    tf: &HookedTransformer,
    layout: &HookLayout,
    edges: &[(usize, usize)],
    sample: &Sample,
    method: Method,
    interrupted: &dyn Fn() -> bool,
) -> Result<SampleScores> {
    score_sample_with(
        tf,
        layout,
        edges,
        sample,
        method,
        ScoreOptions::default(),
        interrupted,
    )
}

/// [`score_sample`], optionally keeping the per-position scores too.
pub fn score_sample_with(
    tf: &HookedTransformer,
    layout: &HookLayout,
    edges: &[(usize, usize)],
    sample: &Sample,
    method: Method,
    opts: ScoreOptions,
    interrupted: &dyn Fn() -> bool,
) -> Result<SampleScores> {
    score_sample_observed(
        tf,
        layout,
        edges,
        sample,
        method,
        opts,
        interrupted,
        &mut |_, _| {},
    )
}

/// [`score_sample_with`], telling `on_within(done, total)` how far the sample is: after each
/// patched forward of `Method::Patch` (one per edge) and each path step of `Method::EapIg`. One
/// sample of exact patching can take minutes; this is what a progress bar shows meanwhile.
/// (Plain EAP is one forward and one backward: nothing in between to report.)
#[allow(clippy::too_many_arguments)]
pub fn score_sample_observed(
    tf: &HookedTransformer,
    layout: &HookLayout,
    edges: &[(usize, usize)],
    sample: &Sample,
    method: Method,
    opts: ScoreOptions,
    interrupted: &dyn Fn() -> bool,
    on_within: &mut dyn FnMut(usize, usize),
) -> Result<SampleScores> {
    if opts.per_position && method == Method::Patch {
        return Err(AttributionError::Sample {
            sample: sample.id,
            msg: "per-position scores need eap or eap_ig: exact patching of one edge at one \
                  position does not add up over positions"
                .into(),
        });
    }
    let seq = sample.tokens.len();
    let d = tf.config.d_model;
    if seq == 0 {
        return Err(AttributionError::Sample {
            sample: sample.id,
            msg: "no tokens".into(),
        });
    }
    if let Some(c) = &sample.corrupt {
        if c.len() != seq {
            return Err(AttributionError::Sample {
                sample: sample.id,
                msg: format!(
                    "corrupted input has {} tokens, the clean one {seq}: they must align",
                    c.len()
                ),
            });
        }
    }
    let (n_src, n_dst) = (layout.n_sources(), layout.n_dests());
    let dtype = tf.dtype();
    let dev = tf.device().clone();

    // Clean forward with zero offsets on every destination; sources recorded; logits only over
    // the loss window.
    let from = loss_window_start(&sample.loss).min(seq - 1);
    let (offsets, vars) = DestOffsets::zero_vars(layout, seq, d, dtype, &dev)?;
    let clean = tf.forward(
        ForwardInput::Ids(&sample.tokens),
        &Hooks {
            layout: Some(layout),
            dest_offsets: Some(&offsets),
            record_sources: true,
            logits_from: from,
        },
        None,
    )?;
    let o_clean = clean
        .sources
        .as_ref()
        .expect("sources were recorded")
        .detach();
    let target = resolve_loss(sample, &clean.logits.detach(), from)?;
    let clean_loss_t = loss(&clean.logits, &target)?;
    let clean_loss = scalar(&clean_loss_t)?;
    if !clean_loss.is_finite() {
        return Err(AttributionError::NonFinite {
            sample: sample.id,
            what: "loss",
            value: clean_loss,
        });
    }

    if method == Method::Patch {
        // Exact patching needs no gradient but for the sample's record: one backward, small
        // beside the one forward per edge that follows.
        let grads = clean_loss_t.backward()?;
        let grad_norm = logits_grad_norm(layout, &DestOffsets::stack_grads(&grads, &vars)?)?;
        drop((grads, clean, clean_loss_t, offsets, vars));
        let delta_o = delta_sources(tf, layout, sample, &o_clean)?;
        return patch_edges(
            tf,
            layout,
            edges,
            sample,
            &target,
            from,
            clean_loss,
            grad_norm,
            &delta_o,
            interrupted,
            on_within,
        );
    }

    let (grad, grad_norm) = match method {
        Method::Eap | Method::EapIg { steps: 1 } => {
            let grads = clean_loss_t.backward()?;
            let g = DestOffsets::stack_grads(&grads, &vars)?;
            drop((grads, clean, clean_loss_t, offsets, vars));
            let norm = logits_grad_norm(layout, &g)?;
            (g, norm)
        }
        Method::EapIg { steps } => {
            // The clean forward's graph is not needed for the path's own forwards.
            drop((clean, clean_loss_t, offsets, vars));
            ig_gradient(
                tf, layout, sample, &target, from, steps, seq, d, &dev, dtype, on_within,
            )?
        }
        Method::Patch => unreachable!("handled above"),
    };
    check_finite(sample.id, "gradient", &grad)?;
    // The forward graph is gone (dropped in either arm): only now are the corrupted sources
    // computed, so they are never alive together with it.

    // ΔO: what replacing each source changes at a destination. Zero ablation is ΔO = −O: the
    // sign goes on the scores (exact) instead of into a negated copy of O.
    let (delta_o, sign) = match &sample.corrupt {
        Some(_) => (delta_sources(tf, layout, sample, &o_clean)?, 1.0),
        None => (o_clean, -1.0),
    };
    let s = score_matrix(&delta_o, &grad, n_src, n_dst)?;
    let scores: Vec<f64> = edges.iter().map(|&(u, v)| sign * s[u][v]).collect();
    if let Some(bad) = scores.iter().find(|x| !x.is_finite()) {
        return Err(AttributionError::NonFinite {
            sample: sample.id,
            what: "score",
            value: *bad,
        });
    }
    let per_position = if opts.per_position {
        Some(position_scores(&delta_o, &grad, edges, sign, sample.id)?)
    } else {
        None
    };
    Ok(SampleScores {
        scores,
        loss: clean_loss,
        grad_norm,
        per_position,
    })
}

/// `S[u,v,t] = sign · Σ_d ΔO_u[t,d] · G_v[t,d]` for the real edges, row-major `[t][edge]`, in
/// f64: one batched `[n_src, D] × [D, n_dst]` product per position, taken over blocks of
/// positions so only one block of f64 copies (~16 MiB with its products) is held at a time.
fn position_scores(
    o: &Tensor,
    g: &Tensor,
    edges: &[(usize, usize)],
    sign: f64,
    sample: i64,
) -> Result<Vec<f64>> {
    let (n_src, seq, d) = o.dims3()?;
    let n_dst = g.dim(0)?;
    let per_position = ((n_src + n_dst) * d + n_src * n_dst) * 8;
    let block = ((16usize << 20) / per_position.max(1)).clamp(1, seq.max(1));
    let mut out = Vec::with_capacity(seq * edges.len());
    for t0 in (0..seq).step_by(block) {
        let len = block.min(seq - t0);
        // [n, len, d] -> [len, n, d]
        let by_t = |x: &Tensor| -> Result<Tensor> {
            Ok(x.narrow(1, t0, len)?
                .to_dtype(DType::F64)?
                .transpose(0, 1)?
                .contiguous()?)
        };
        let prod = by_t(o)?.matmul(&by_t(g)?.transpose(1, 2)?.contiguous()?)?; // [len, src, dst]
        for m in prod.to_vec3::<f64>()? {
            out.extend(edges.iter().map(|&(u, v)| sign * m[u][v]));
        }
    }
    if let Some(bad) = out.iter().find(|x| !x.is_finite()) {
        return Err(AttributionError::NonFinite {
            sample,
            what: "per-position score",
            value: *bad,
        });
    }
    Ok(out)
}

/// ΔO for every source: the corrupted run's outputs minus the clean ones, or −O (zero
/// ablation) without a corrupted input.
fn delta_sources(
    tf: &HookedTransformer,
    layout: &HookLayout,
    sample: &Sample,
    o_clean: &Tensor,
) -> Result<Tensor> {
    let seq = sample.tokens.len();
    Ok(match &sample.corrupt {
        Some(c) => {
            let corrupt = tf.forward(
                ForwardInput::Ids(c),
                &Hooks {
                    layout: Some(layout),
                    dest_offsets: None,
                    record_sources: true,
                    logits_from: seq - 1,
                },
                None,
            )?;
            (corrupt.sources.expect("sources were recorded").detach() - o_clean)?
        }
        None => o_clean.neg()?,
    })
}

/// `S[u][v] = Σ_{t,d} ΔO_u[t,d] · G_v[t,d]` for `ΔO: [n_src, T, D]`, `G: [n_dst, T, D]`, in f64:
/// a `[n_src, T·D] × [T·D, n_dst]` product taken over blocks of positions, so only one block of
/// each is ever held in f64 (~16 MiB together) however long the sample.
fn score_matrix(o: &Tensor, g: &Tensor, n_src: usize, n_dst: usize) -> Result<Vec<Vec<f64>>> {
    let (_, seq, d) = o.dims3()?;
    let per_position = (n_src + n_dst) * d * 8;
    let block = ((16usize << 20) / per_position.max(1)).clamp(1, seq.max(1));
    let mut acc: Option<Tensor> = None;
    for t0 in (0..seq).step_by(block) {
        let len = block.min(seq - t0);
        let f64_block = |x: &Tensor, n: usize| -> Result<Tensor> {
            Ok(x.narrow(1, t0, len)?
                .to_dtype(DType::F64)?
                .contiguous()?
                .reshape((n, len * d))?)
        };
        let part = f64_block(o, n_src)?.matmul(&f64_block(g, n_dst)?.t()?)?;
        acc = Some(match acc {
            None => part,
            Some(a) => (a + part)?,
        });
    }
    match acc {
        Some(a) => Ok(a.to_vec2::<f64>()?),
        None => Ok(vec![vec![0.0; n_dst]; n_src]),
    }
}

/// Destination gradients averaged over the integrated-gradients path, α = k/steps, k = 1..steps,
/// and ‖G_logits‖_F at the path's last point, α = 1 (the clean input).
#[allow(clippy::too_many_arguments)]
fn ig_gradient(
    tf: &HookedTransformer,
    layout: &HookLayout,
    sample: &Sample,
    target: &LossTarget,
    from: usize,
    steps: usize,
    seq: usize,
    d: usize,
    dev: &candle_core::Device,
    dtype: DType,
    on_within: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor, f64)> {
    let e_clean = tf.embed(&sample.tokens)?;
    let e_base = match &sample.corrupt {
        Some(c) => tf.embed(c)?,
        None => e_clean.zeros_like()?,
    };
    let diff = (&e_clean - &e_base)?;
    let mut sum: Option<Tensor> = None;
    let mut grad_norm = f64::NAN;
    for k in 1..=steps {
        let alpha = k as f64 / steps as f64;
        let input = (&e_base + (&diff * alpha)?)?.detach();
        let (offsets, vars) = DestOffsets::zero_vars(layout, seq, d, dtype, dev)?;
        let out = tf.forward(
            ForwardInput::Embeds(input),
            &Hooks {
                layout: Some(layout),
                dest_offsets: Some(&offsets),
                record_sources: false,
                logits_from: from,
            },
            None,
        )?;
        let l = loss(&out.logits, target)?;
        let lv = scalar(&l)?;
        if !lv.is_finite() {
            return Err(AttributionError::NonFinite {
                sample: sample.id,
                what: "loss on the integrated-gradients path",
                value: lv,
            });
        }
        let g = DestOffsets::stack_grads(&l.backward()?, &vars)?;
        if k == steps {
            grad_norm = logits_grad_norm(layout, &g)?;
        }
        sum = Some(match sum {
            Some(s) => (s + g)?,
            None => g,
        });
        on_within(k, steps);
    }
    let sum = sum.ok_or_else(|| AttributionError::Sample {
        sample: sample.id,
        msg: "integrated gradients need at least one step".into(),
    })?;
    Ok(((sum / steps as f64)?, grad_norm))
}

/// Exact effect of each edge: rerun with `H_v + ΔO_u` at destination v only, report ΔL.
#[allow(clippy::too_many_arguments)]
fn patch_edges(
    tf: &HookedTransformer,
    layout: &HookLayout,
    edges: &[(usize, usize)],
    sample: &Sample,
    target: &LossTarget,
    from: usize,
    clean_loss: f64,
    grad_norm: f64,
    delta_o: &Tensor,
    interrupted: &dyn Fn() -> bool,
    on_within: &mut dyn FnMut(usize, usize),
) -> Result<SampleScores> {
    let seq = sample.tokens.len();
    let d = tf.config.d_model;
    let n_dst = layout.n_dests();
    let mut scores = Vec::with_capacity(edges.len());
    for &(u, v) in edges {
        if interrupted() {
            return Err(AttributionError::Interrupted);
        }
        let o_u = delta_o.get(u)?.unsqueeze(0)?;
        let mut parts = Vec::with_capacity(3);
        if v > 0 {
            parts.push(Tensor::zeros((v, seq, d), tf.dtype(), tf.device())?);
        }
        parts.push(o_u);
        if v + 1 < n_dst {
            parts.push(Tensor::zeros(
                (n_dst - v - 1, seq, d),
                tf.dtype(),
                tf.device(),
            )?);
        }
        let offsets = DestOffsets::Stacked(Tensor::cat(&parts, 0)?);
        let out = tf.forward(
            ForwardInput::Ids(&sample.tokens),
            &Hooks {
                layout: Some(layout),
                dest_offsets: Some(&offsets),
                record_sources: false,
                logits_from: from,
            },
            None,
        )?;
        let l = scalar(&loss(&out.logits, target)?)?;
        if !l.is_finite() {
            return Err(AttributionError::NonFinite {
                sample: sample.id,
                what: "patched loss",
                value: l,
            });
        }
        scores.push(l - clean_loss);
        on_within(scores.len(), edges.len());
    }
    Ok(SampleScores {
        scores,
        loss: clean_loss,
        grad_norm,
        per_position: None,
    })
}
