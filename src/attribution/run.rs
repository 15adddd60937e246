//! Scoring a whole set of samples into a [`Graph`], sample by sample, with progress and
//! interruption: memory grows only with the score table itself.

use super::eap::{score_sample_observed, AttributionError, Method, Sample, ScoreOptions};
use super::graph::{EdgeInfo, Graph, GraphMeta, PositionScores, SampleRecord};
use super::prepare::LossWindow;
use super::settings::sample_hash;
use crate::model::hooked::HookedTransformer;
use crate::model::hooks::HookLayout;

/// The edge table rows of a layout, in `layout.edges()` order.
pub fn edge_infos(layout: &HookLayout) -> Vec<EdgeInfo> {
    layout
        .edges()
        .into_iter()
        .map(|(s, d)| {
            let (s, d) = (&layout.sources[s], &layout.dests[d]);
            EdgeInfo {
                src: s.name.clone(),
                dst: d.name.clone(),
                src_layer: s.layer,
                dst_layer: d.layer,
                src_kind: s.kind.name(),
                dst_kind: d.kind.name(),
            }
        })
        .collect()
}

/// A finished or stopped run: the graph of the samples scored so far, and why it stopped early.
pub struct RunOutcome {
    pub graph: Graph,
    /// Clean loss per scored sample.
    pub losses: Vec<f64>,
    pub stopped: Option<AttributionError>,
}

/// Score `samples` in order. `meta` describes the run (its `prompt_ids`, `sample_hashes` and
/// `samples` records are filled here; with `per_position` the per-position scores are kept as
/// well). `windows` (from [`super::prepare::prepare`], parallel to `samples`) give each record
/// its answer; empty, the records hold only what scoring gives (loss, grad_norm). `resume_from`
/// carries the scores of an earlier, interrupted run of the same samples: samples whose id it
/// already holds are skipped, and its records are kept (a partial graph without records gives
/// a graph without records). The caller checks first that its settings are this run's
/// ([`super::settings::differences`] with `Purpose::Resume`). `on_progress(done, total)` follows
/// the samples, `on_within(done, total)` the work inside the one being scored (see
/// [`score_sample_observed`]).
#[allow(clippy::too_many_arguments)] // each is one setting of the run, passed through as given
pub fn run(
    tf: &HookedTransformer,
    layout: &HookLayout,
    samples: &[Sample],
    windows: &[LossWindow],
    method: Method,
    mut meta: GraphMeta,
    resume_from: Option<&Graph>,
    on_progress: &mut dyn FnMut(usize, usize),
    on_within: &mut dyn FnMut(usize, usize),
    interrupted: &dyn Fn() -> bool,
) -> RunOutcome {
    if !windows.is_empty() && windows.len() != samples.len() {
        return RunOutcome {
            graph: Graph {
                edges: edge_infos(layout),
                scores: Vec::new(),
                meta,
                positions: None,
            },
            losses: Vec::new(),
            stopped: Some(AttributionError::Sample {
                sample: samples.first().map_or(0, |s| s.id),
                msg: format!(
                    "{} loss windows for {} samples: they must be parallel",
                    windows.len(),
                    samples.len()
                ),
            }),
        };
    }
    let pairs = layout.edges();
    let edges = edge_infos(layout);
    let mut scores: Vec<Vec<f64>> = Vec::new();
    let mut ids = Vec::new();
    let mut hashes = Vec::new();
    let mut records = Vec::new();
    // Records are all or none: a partial graph scored without them cannot supply its samples'.
    let mut keep_records = true;
    if let Some(prev) = resume_from {
        scores.extend(prev.scores.iter().cloned());
        ids.extend(prev.meta.prompt_ids.iter().copied());
        hashes.extend(prev.meta.sample_hashes.iter().cloned());
        keep_records = prev.scores.is_empty() || prev.has_sample_records();
        if keep_records {
            records.extend(prev.meta.samples.iter().cloned());
        }
    }
    let opts = ScoreOptions {
        per_position: meta.per_position,
    };
    let mut positions = match (opts.per_position, resume_from) {
        (false, _) => None,
        (true, Some(prev)) => Some(prev.positions.clone().unwrap_or_default()),
        (true, None) => Some(PositionScores::default()),
    };
    let mut losses = Vec::new();
    let mut stopped = None;
    let total = samples.len();
    for (i, s) in samples.iter().enumerate() {
        if ids.contains(&s.id) {
            on_progress(i + 1, total);
            continue;
        }
        if interrupted() {
            stopped = Some(AttributionError::Interrupted);
            break;
        }
        match score_sample_observed(tf, layout, &pairs, s, method, opts, interrupted, on_within) {
            Ok(r) => {
                if let (Some(p), Some(per)) = (positions.as_mut(), r.per_position) {
                    p.token_ids.push(s.tokens.clone());
                    p.scores.push(per);
                }
                scores.push(r.scores);
                let window = windows.get(i).cloned().unwrap_or_default();
                records.push(SampleRecord {
                    answer_ids: window.answer_ids,
                    answer: window.answer,
                    loss_positions: window.loss_positions,
                    loss_ids: window.loss_ids,
                    t_cut: window.t_cut,
                    loss: r.loss,
                    grad_norm: r.grad_norm,
                });
                losses.push(r.loss);
                ids.push(s.id);
                hashes.push(sample_hash(s));
            }
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
        on_progress(i + 1, total);
    }
    meta.prompt_ids = ids;
    meta.sample_hashes = hashes;
    meta.samples = if keep_records { records } else { Vec::new() };
    RunOutcome {
        graph: Graph {
            edges,
            scores,
            meta,
            positions,
        },
        losses,
        stopped,
    }
}
