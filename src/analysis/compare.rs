//! Base vs tuned: every whole-graph statistic of both, the change, and a bootstrap interval
//! of the change over samples (paired by default: the same questions resampled in both).

use polars::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::bootstrap::{quantile, Summary};
use super::error::{AnalysisError, Result};
use super::group::{group_edges, key_columns, By, GroupKey};
use super::matrix::ScoreMatrix;
use super::normalize::{Normalize, NormalizedStat};
use super::pairing::{check_same_prompts, match_edges};
use super::stats::{check_dense_layers, dense_cells, HistOpts, Stat, StatParams, STATS};

/// Which statistics `compare` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatSet {
    /// The nine of METHOD.md §5 (`StatDef::in_compare`), the rows compare has always had.
    #[default]
    Default,
    /// Every statistic of [`STATS`], in its order (adds the rank-based ones).
    All,
}

/// Options of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOpts {
    /// Bootstrap replicates (1000); 0 skips the interval (ci columns NaN).
    pub resamples: usize,
    /// Seed of `StdRng::seed_from_u64`, so a comparison is reproducible.
    pub seed: u64,
    /// Confidence level of the percentile interval (0.95).
    pub level: f64,
    /// Histogram entropy options.
    pub hist: HistOpts,
    /// k of the top-k mass row (10).
    pub topk: usize,
    /// `Some(n_layers)`: intensity divides by the dense (1+2L)×(4L+1) matrix.
    pub dense_layers: Option<usize>,
    /// Resample the same prompt_ids in both graphs (needs equal prompt sets). `false` resamples
    /// each graph on its own: an unpaired interval, valid for different prompt sets.
    pub paired: bool,
    /// Refuse graphs with different edge sets (different models). `false` compares the
    /// whole-graph statistics anyway; never allowed with a grouping.
    pub require_same_edges: bool,
    /// Split the edges first: one block of rows per group (`By::Edge` is refused: use
    /// `rel_change`).
    pub by: By,
    /// Rescale each sample's scores first (rows named `entropy/mass`); see `normalize`.
    pub normalize: Normalize,
    /// Which statistics become rows.
    pub statistics: StatSet,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            resamples: 1000,
            seed: 0,
            level: 0.95,
            hist: HistOpts::default(),
            topk: 10,
            dense_layers: None,
            paired: true,
            require_same_edges: true,
            by: By::None,
            normalize: Normalize::None,
            statistics: StatSet::Default,
        }
    }
}

impl CompareOpts {
    /// The statistics that become rows, in [`STATS`] order, with these options. Under
    /// `normalize mass` a whole-graph comparison leaves out those it makes constant (intensity:
    /// 1/n_edges in both graphs); by group they stay (each group's share).
    pub fn statistics(&self) -> Vec<Stat> {
        let params = StatParams {
            hist: self.hist,
            topk: self.topk,
            dense_layers: self.dense_layers,
        };
        STATS
            .iter()
            .filter(|d| self.statistics == StatSet::All || d.in_compare)
            .map(|d| (d.make)(&params))
            .filter(|s| {
                NormalizedStat::new(*s, self.normalize)
                    .check_meaningful(self.by)
                    .is_ok()
            })
            .collect()
    }

    /// Row names, in the order of [`CompareOpts::statistics`].
    pub fn metric_names(&self) -> Vec<String> {
        self.statistics()
            .into_iter()
            .map(|s| NormalizedStat::new(s, self.normalize).name())
            .collect()
    }

    fn validate(&self) -> Result<()> {
        self.hist.validate()?;
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(AnalysisError::InvalidOption {
                option: "level",
                reason: format!("must be in (0, 1), got {}", self.level),
            });
        }
        if self.by == By::Edge {
            return Err(AnalysisError::InvalidOption {
                option: "by",
                reason: "compare by edge is not offered: use rel_change for per-edge changes"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Compare two long edge tables. Rows are statistics (per group when `opts.by` groups), columns
/// `[group key…] metric base tuned delta pct ci_low ci_high se effect_d` with delta = tuned −
/// base, pct = 100·delta/base, [ci_low, ci_high] the bootstrap percentile interval of delta, se
/// the bootstrap standard error of delta and effect_d = delta / (se·√N), a standardised effect
/// (the paired Cohen's d_z for statistics that are means over samples).
/// With one sample, diversity is NaN and so is the interval.
pub fn compare(base: &DataFrame, tuned: &DataFrame, opts: &CompareOpts) -> Result<DataFrame> {
    opts.validate()?;
    let b = ScoreMatrix::from_table(base)?;
    let t = ScoreMatrix::from_table(tuned)?;
    // Each sample is rescaled by its whole-graph scale, before any grouping.
    let b = opts.normalize.apply(&b)?.into_owned();
    let t = opts.normalize.apply(&t)?.into_owned();
    if opts.paired {
        check_same_prompts(&b, &t)?;
    }
    let same_edges = match_edges(&b, &t);
    // By depth pairs each graph's own bins, so two depths may be compared; any other grouping
    // pairs edges and needs the same edge set.
    if opts.require_same_edges || !matches!(opts.by, By::None | By::Depth) {
        same_edges.as_ref().map_err(clone_mismatch)?;
    }
    if let Some(l) = opts.dense_layers {
        check_dense_layers(&b, l)?;
        check_dense_layers(&t, l)?;
    }

    let stats = opts.statistics();
    let names = opts.metric_names();
    let groups = group_edges(&b, opts.by)?;
    let tuned_groups = if opts.by == By::Depth {
        group_edges(&t, By::Depth)?
    } else {
        Vec::new()
    };
    let mut keys: Vec<GroupKey> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for group in &groups {
        let (bg, tg);
        let (bm, tm) = if opts.by == By::None {
            (&b, &t)
        } else if opts.by == By::Depth {
            let Some(tuned) = tuned_groups.iter().find(|g| g.key == group.key) else {
                continue; // a bin only one model has (a very shallow one): no pair
            };
            bg = b.select_edges(&group.edges);
            tg = t.select_edges(&tuned.edges);
            (&bg, &tg)
        } else {
            let to_t = same_edges.as_ref().map_err(clone_mismatch)?;
            let t_idx: Vec<usize> = group.edges.iter().map(|&e| to_t[e]).collect();
            bg = b.select_edges(&group.edges);
            tg = t.select_edges(&t_idx);
            (&bg, &tg)
        };
        let cells = |m: &ScoreMatrix| -> Result<f64> {
            match opts.dense_layers {
                Some(l) => dense_cells(l, opts.by, group),
                None => Ok(m.n_edges() as f64),
            }
        };
        let result = compare_matrices(bm, tm, &stats, cells(bm)?, cells(tm)?, opts);
        for (i, row) in result.into_iter().enumerate() {
            keys.push(group.key.clone());
            rows.push(Row {
                metric: names[i].clone(),
                ..row
            });
        }
    }
    to_frame(opts.by, &keys, rows)
}

fn clone_mismatch(e: &AnalysisError) -> AnalysisError {
    match e {
        AnalysisError::EdgeMismatch {
            only_in_base,
            only_in_tuned,
            example,
            base_layers,
            tuned_layers,
        } => AnalysisError::EdgeMismatch {
            only_in_base: *only_in_base,
            only_in_tuned: *only_in_tuned,
            example: example.clone(),
            base_layers: *base_layers,
            tuned_layers: *tuned_layers,
        },
        other => AnalysisError::InvalidOption {
            option: "edges",
            reason: other.to_string(),
        },
    }
}

#[derive(Debug, Clone, Default)]
struct Row {
    metric: String,
    base: f64,
    tuned: f64,
    ci_low: f64,
    ci_high: f64,
    /// Standard deviation of the bootstrap deltas: the standard error of delta.
    se: f64,
    /// Samples the statistic rests on (the smaller graph's, unpaired).
    n: usize,
}

/// Point estimates and the bootstrap interval of the change for two matrices.
fn compare_matrices(
    b: &ScoreMatrix,
    t: &ScoreMatrix,
    stats: &[Stat],
    b_cells: f64,
    t_cells: f64,
    opts: &CompareOpts,
) -> Vec<Row> {
    let sb = Summary::new(b, stats, b_cells);
    let st = Summary::new(t, stats, t_cells);
    let (mut scratch_b, mut scratch_t) = (sb.scratch(), st.scratch());
    let all_b: Vec<usize> = (0..b.n_samples()).collect();
    let all_t: Vec<usize> = (0..t.n_samples()).collect();
    let point_b = sb.stats(&all_b, &mut scratch_b);
    let point_t = st.stats(&all_t, &mut scratch_t);

    let mut deltas: Vec<Vec<f64>> = (0..stats.len())
        .map(|_| Vec::with_capacity(opts.resamples))
        .collect();
    let can_resample = b.n_samples() >= 2 && t.n_samples() >= 2;
    if can_resample {
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let mut draw_b = vec![0usize; b.n_samples()];
        let mut draw_t = vec![0usize; t.n_samples()];
        for _ in 0..opts.resamples {
            draw_b
                .iter_mut()
                .for_each(|d| *d = rng.gen_range(0..all_b.len()));
            if opts.paired {
                draw_t.copy_from_slice(&draw_b); // same prompts, same order (both sorted by id)
            } else {
                draw_t
                    .iter_mut()
                    .for_each(|d| *d = rng.gen_range(0..all_t.len()));
            }
            let rb = sb.stats(&draw_b, &mut scratch_b);
            let rt = st.stats(&draw_t, &mut scratch_t);
            for i in 0..stats.len() {
                deltas[i].push(rt[i] - rb[i]);
            }
        }
    }
    let alpha = (1.0 - opts.level) / 2.0;
    (0..stats.len())
        .map(|i| Row {
            metric: String::new(),
            base: point_b[i],
            tuned: point_t[i],
            ci_low: quantile(&deltas[i], alpha),
            ci_high: quantile(&deltas[i], 1.0 - alpha),
            se: std_dev(&deltas[i]),
            n: b.n_samples().min(t.n_samples()),
        })
        .collect()
}

/// Sample standard deviation; NaN for fewer than two values or any NaN among them.
fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

fn to_frame(by: By, keys: &[GroupKey], rows: Vec<Row>) -> Result<DataFrame> {
    let mut cols = key_columns(by, keys);
    let f = |g: &dyn Fn(&Row) -> f64| rows.iter().map(g).collect::<Vec<f64>>();
    cols.push(Column::new(
        "metric".into(),
        rows.iter().map(|r| r.metric.clone()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new("base".into(), f(&|r| r.base)));
    cols.push(Column::new("tuned".into(), f(&|r| r.tuned)));
    cols.push(Column::new("delta".into(), f(&|r| r.tuned - r.base)));
    cols.push(Column::new(
        "pct".into(),
        f(&|r| 100.0 * (r.tuned - r.base) / r.base),
    ));
    cols.push(Column::new("ci_low".into(), f(&|r| r.ci_low)));
    cols.push(Column::new("ci_high".into(), f(&|r| r.ci_high)));
    cols.push(Column::new("se".into(), f(&|r| r.se)));
    // delta / (se·√N): the change in units of the per-sample spread the bootstrap implies. For
    // a statistic that is a mean over samples (intensity) this is the paired Cohen's d_z.
    cols.push(Column::new(
        "effect_d".into(),
        f(&|r| (r.tuned - r.base) / (r.se * (r.n as f64).sqrt())),
    ));
    Ok(DataFrame::new(rows.len(), cols)?)
}
