//! Evaluating a circuit (METHOD.md §8, EAP-IG's `evaluate_graph`): one forward per sample on
//! the clean input in which every destination v receives
//!
//! ```text
//! H_v − Σ_{u→v ∉ C} (O_u − Ô_u)
//! ```
//!
//! with O_u the source's output *in this intervened run* (so ablations upstream propagate) and
//! Ô_u its ablated value: 0, the dataset mean (over samples and positions, or per position), or
//! the source's output on the row's corrupted input. The metric is the negated loss, so higher
//! is better.

use std::cell::RefCell;

use candle_core::{DType, Tensor};

use super::{Circuit, CircuitError, Result};
use crate::attribution::eap::{loss_window_start, resolve_loss};
use crate::attribution::loss::loss;
use crate::attribution::{Sample, SampleLoss};
use crate::model::hooked::{DestOffsets, ForwardInput, HookedTransformer, Hooks, SourceOffsets};
use crate::model::hooks::HookLayout;

/// What an ablated edge delivers instead of its source's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ablation {
    /// Nothing (the paper's edge removal).
    Zero,
    /// The source's mean output over the samples and their positions.
    Mean,
    /// The source's mean output at the same position, over the samples that reach it.
    MeanPositional,
    /// The source's output on the sample's corrupted input (`corrupt` / `corrupt_ids`).
    Corrupt,
}

impl Ablation {
    pub const NAMES: [&'static str; 4] = ["zero", "mean", "mean_positional", "corrupt"];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "zero" => Ablation::Zero,
            "mean" => Ablation::Mean,
            "mean_positional" => Ablation::MeanPositional,
            "corrupt" => Ablation::Corrupt,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The ablated values Ô, computed once per dataset (means) or per sample (corrupt).
pub enum AblationValues {
    Zero,
    /// `[n_sources, 1, d]`.
    Mean(Tensor),
    /// `[n_sources, longest sample, d]`.
    Positional(Tensor),
    Corrupt,
}

/// One evaluation of a circuit over samples.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub ids: Vec<i64>,
    /// −loss per sample (higher is better).
    pub metric: Vec<f64>,
    pub loss: Vec<f64>,
    pub n_edges: usize,
}

impl Evaluation {
    /// The dataset mean of the metric.
    pub fn mean(&self) -> f64 {
        self.metric.iter().sum::<f64>() / self.metric.len().max(1) as f64
    }
}

fn sources_of(tf: &HookedTransformer, layout: &HookLayout, tokens: &[u32]) -> Result<Tensor> {
    let out = tf.forward(
        ForwardInput::Ids(tokens),
        &Hooks {
            layout: Some(layout),
            dest_offsets: None,
            record_sources: true,
            logits_from: tokens.len().saturating_sub(1),
        },
        None,
    )?;
    Ok(out.sources.expect("sources were recorded"))
}

/// Ô for `ablation` over `samples` (plain clean forwards for the means, in f64 sums).
pub fn ablation_values(
    tf: &HookedTransformer,
    layout: &HookLayout,
    samples: &[Sample],
    ablation: Ablation,
    interrupted: &dyn Fn() -> bool,
) -> Result<AblationValues> {
    match ablation {
        Ablation::Zero => return Ok(AblationValues::Zero),
        Ablation::Corrupt => {
            if let Some(s) = samples.iter().find(|s| s.corrupt.is_none()) {
                return Err(CircuitError::Invalid(format!(
                    "ablation corrupt needs a corrupted input for every sample; sample {} has \
                     none (give a `corrupt` or `corrupt_ids` column)",
                    s.id
                )));
            }
            return Ok(AblationValues::Corrupt);
        }
        _ => {}
    }
    if samples.is_empty() {
        return Err(CircuitError::Invalid("mean ablation needs samples".into()));
    }
    let longest = samples.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    let mut sum: Option<Tensor> = None; // [n_src, longest or 1, d] in f64
    let mut count = vec![0f64; longest];
    let mut total = 0f64;
    for s in samples {
        if interrupted() {
            return Err(CircuitError::Interrupted);
        }
        let o = sources_of(tf, layout, &s.tokens)?.to_dtype(DType::F64)?;
        let (n, seq, d) = o.dims3()?;
        let part = match ablation {
            Ablation::Mean => o.sum_keepdim(1)?,
            _ if seq < longest => Tensor::cat(
                &[
                    &o,
                    &Tensor::zeros((n, longest - seq, d), DType::F64, o.device())?,
                ],
                1,
            )?,
            _ => o,
        };
        for c in count.iter_mut().take(seq) {
            *c += 1.0;
        }
        total += seq as f64;
        sum = Some(match sum {
            Some(acc) => (acc + part)?,
            None => part,
        });
    }
    let sum = sum.expect("samples is not empty");
    Ok(match ablation {
        Ablation::Mean => AblationValues::Mean((sum / total)?.to_dtype(tf.dtype())?),
        _ => {
            let c = Tensor::new(count, sum.device())?.reshape((1, longest, 1))?;
            AblationValues::Positional(sum.broadcast_div(&c)?.to_dtype(tf.dtype())?)
        }
    })
}

/// The hook: at each destination group, `Σ_{u∉C} Ô_u − Σ_{u∉C} O_u`, the second sum over this
/// forward's own sources.
struct EdgeAblation {
    /// `[n_dests, n_sources]`, 1 where the edge is ablated.
    removed: Tensor,
    /// Destinations with at least one ablated edge.
    any_removed: Vec<bool>,
    /// How many source slots precede each destination (what must be recorded by then).
    needed: Vec<usize>,
    /// `Σ_{u∉C} Ô_u` per destination, `[n_dests, seq or 1, d]`; None for zero ablation.
    constant: Option<Tensor>,
    seq: usize,
    d: usize,
    /// The recorded sources stacked as `[n, seq·d]`, keyed by how many chunks they hold: q, k
    /// and v of a layer read the same sources, so they share one stack.
    stacked: RefCell<Option<(usize, Tensor)>>,
}

impl SourceOffsets for EdgeAblation {
    fn offsets(
        &self,
        start: usize,
        count: usize,
        sources: &[Tensor],
    ) -> candle_core::Result<Tensor> {
        let (seq, d) = (self.seq, self.d);
        let constant = match &self.constant {
            Some(c) => Some(c.narrow(0, start, count)?.broadcast_as((count, seq, d))?),
            None => None,
        };
        if !self.any_removed[start..start + count].iter().any(|&r| r) {
            return match constant {
                Some(c) => c.contiguous(),
                None => Tensor::zeros((count, seq, d), self.removed.dtype(), self.removed.device()),
            };
        }
        let mut cache = self.stacked.borrow_mut();
        let fresh = !matches!(&*cache, Some((n, _)) if *n == sources.len());
        if fresh {
            let s = Tensor::cat(sources, 0)?;
            let n = s.dim(0)?;
            *cache = Some((sources.len(), s.reshape((n, seq * d))?));
        }
        let (_, stacked) = cache.as_ref().expect("filled above");
        let n_rec = stacked.dim(0)?;
        let need = self.needed[start..start + count]
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        if n_rec < need {
            candle_core::bail!(
                "circuit evaluation needs the forward to record sources ({n_rec} recorded, \
                 {need} needed)"
            );
        }
        let m = self
            .removed
            .narrow(0, start, count)?
            .narrow(1, 0, need)?
            .contiguous()?;
        let own = m
            .matmul(&stacked.narrow(0, 0, need)?)?
            .reshape((count, seq, d))?;
        match constant {
            Some(c) => c - own,
            None => own.neg(),
        }
    }
}

/// `[n_dests, n_sources]` mask of the edges outside `circuit`.
fn removed_mask(
    layout: &HookLayout,
    circuit: &Circuit,
    tf: &HookedTransformer,
) -> Result<(Tensor, Vec<bool>)> {
    let (n_src, n_dst) = (layout.n_sources(), layout.n_dests());
    let edges = layout.edges();
    if circuit.keep.len() != edges.len() {
        return Err(CircuitError::Invalid(format!(
            "the circuit covers {} edges, the model's graph has {}",
            circuit.keep.len(),
            edges.len()
        )));
    }
    let mut m = vec![0f64; n_dst * n_src];
    let mut any = vec![false; n_dst];
    for (e, &(s, d)) in edges.iter().enumerate() {
        if !circuit.keep[e] {
            m[d * n_src + s] = 1.0;
            any[d] = true;
        }
    }
    let t = Tensor::from_vec(m, (n_dst, n_src), tf.device())?.to_dtype(tf.dtype())?;
    Ok((t, any))
}

/// The metric of one sample under `circuit`: (−loss, loss).
fn evaluate_sample(
    tf: &HookedTransformer,
    layout: &HookLayout,
    removed: &(Tensor, Vec<bool>),
    values: &AblationValues,
    sample: &Sample,
) -> Result<(f64, f64)> {
    let seq = sample.tokens.len();
    let d = tf.config.d_model;
    if seq == 0 {
        return Err(CircuitError::Invalid(format!(
            "sample {}: no tokens",
            sample.id
        )));
    }
    let from = loss_window_start(&sample.loss).min(seq - 1);
    let n_src = layout.n_sources();
    let constant = match values {
        // Nothing ablated (the full circuit): no ablated values to compute.
        _ if !removed.1.iter().any(|&r| r) => None,
        AblationValues::Zero => None,
        AblationValues::Mean(m) => Some(m.clone()),
        AblationValues::Positional(m) => {
            if m.dim(1)? < seq {
                return Err(CircuitError::Invalid(format!(
                    "sample {} has {seq} tokens, longer than the samples the positional means \
                     were taken over ({})",
                    sample.id,
                    m.dim(1)?
                )));
            }
            Some(m.narrow(1, 0, seq)?)
        }
        AblationValues::Corrupt => {
            let c = sample.corrupt.as_ref().ok_or_else(|| {
                CircuitError::Invalid(format!("sample {}: no corrupted input", sample.id))
            })?;
            if c.len() != seq {
                return Err(CircuitError::Invalid(format!(
                    "sample {}: corrupted input has {} tokens, the clean one {seq}: they must \
                     align",
                    sample.id,
                    c.len()
                )));
            }
            Some(sources_of(tf, layout, c)?)
        }
    };
    // Σ_{u∉C} Ô_u for every destination at once.
    let constant = match constant {
        Some(o) => {
            let t = o.dim(1)?;
            let flat = o.contiguous()?.reshape((n_src, t * d))?;
            Some(removed.0.matmul(&flat)?.reshape((layout.n_dests(), t, d))?)
        }
        None => None,
    };
    let needed = layout
        .dests
        .iter()
        .map(|dst| {
            layout
                .sources
                .iter()
                .filter(|s| s.order < dst.order)
                .count()
        })
        .collect();
    let hook = EdgeAblation {
        removed: removed.0.clone(),
        any_removed: removed.1.clone(),
        needed,
        constant,
        seq,
        d,
        stacked: RefCell::new(None),
    };
    let offsets = DestOffsets::FromSources(Box::new(hook));
    let out = tf.forward(
        ForwardInput::Ids(&sample.tokens),
        &Hooks {
            layout: Some(layout),
            dest_offsets: Some(&offsets),
            record_sources: true,
            logits_from: from,
        },
        None,
    )?;
    // KL is taken against the plain model's distribution; other losses need only the logits.
    let target = match &sample.loss {
        SampleLoss::Kl { .. } => {
            let plain = tf.forward(
                ForwardInput::Ids(&sample.tokens),
                &Hooks {
                    logits_from: from,
                    ..Hooks::default()
                },
                None,
            )?;
            resolve_loss(sample, &plain.logits, from)?
        }
        _ => resolve_loss(sample, &out.logits, from)?,
    };
    let l = loss(&out.logits, &target)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if !l.is_finite() {
        return Err(CircuitError::Invalid(format!(
            "sample {}: the circuit's loss is not finite ({l})",
            sample.id
        )));
    }
    Ok((-l, l))
}

/// Evaluate `circuit` on every sample, in order; `on_progress(done, total)` after each.
pub fn evaluate(
    tf: &HookedTransformer,
    layout: &HookLayout,
    circuit: &Circuit,
    samples: &[Sample],
    values: &AblationValues,
    on_progress: &mut dyn FnMut(usize, usize),
    interrupted: &dyn Fn() -> bool,
) -> Result<Evaluation> {
    let removed = removed_mask(layout, circuit, tf)?;
    let mut ev = Evaluation {
        ids: Vec::with_capacity(samples.len()),
        metric: Vec::with_capacity(samples.len()),
        loss: Vec::with_capacity(samples.len()),
        n_edges: circuit.n_edges(),
    };
    for (i, s) in samples.iter().enumerate() {
        if interrupted() {
            return Err(CircuitError::Interrupted);
        }
        let (m, l) = evaluate_sample(tf, layout, &removed, values, s)?;
        ev.ids.push(s.id);
        ev.metric.push(m);
        ev.loss.push(l);
        on_progress(i + 1, samples.len());
    }
    Ok(ev)
}
