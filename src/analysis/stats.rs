//! The circuit statistics of METHOD.md §5, on a long edge table, whole or grouped.
//!
//! Conventions (where the paper leaves a choice open):
//! - `intensity`: mean |S| over the table's edges and samples; `dense_layers: Some(L)` divides the
//!   sum by N × (the group's cells of the dense (1+2L)×(4L+1) matrix) instead, counting the
//!   structural zeros like the paper's figure.
//! - `entropy`: histogram of |S| pooled over samples and the group's edges; [`HistOpts`].
//! - `edge_entropy`, `edge_entropy_norm`, `effective_edges`, `gini`, `top{k}_mass`: on the mean
//!   graph |S̄_e| (mean over samples first, then absolute value), as METHOD.md defines p_e.
//! - `kurtosis`: Pearson m4/m2² of each sample's signed scores, averaged over the samples where it
//!   is defined (m2 > 0); NaN when none is.
//! - `diversity`: 1 − mean Pearson correlation over pairs of distinct samples; needs ≥ 2 samples.
//!
//! Undefined values (no mass, no spread) are NaN rather than errors, so one empty group does not
//! sink a by-layer table.

use polars::prelude::*;

use super::canonical::{block_destinations, block_sources};
use super::error::{AnalysisError, Result};
use super::group::{group_edges, key_columns, By, Group, GroupKey};
use super::matrix::ScoreMatrix;
use super::measures::{
    correlation_matrix, entropy_of_weights, gini_in_place, histogram_entropy, pearson_kurtosis,
    topk_mass_in_place, BinGrid,
};

/// Options of the histogram entropy (defaults per METHOD.md §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistOpts {
    /// Number of equal-width bins (100).
    pub bins: usize,
    /// Bin range of |S|; `None` is [0, max |S|] of the data the statistic sees.
    pub range: Option<(f64, f64)>,
    /// Count exact zeros (false: they are structural or dead edges, not part of the distribution).
    pub include_zeros: bool,
    /// Logarithm base; `None` is e (nats).
    pub base: Option<f64>,
}

impl Default for HistOpts {
    fn default() -> Self {
        HistOpts {
            bins: 100,
            range: None,
            include_zeros: false,
            base: None,
        }
    }
}

impl HistOpts {
    pub fn validate(&self) -> Result<()> {
        if self.bins == 0 {
            return Err(AnalysisError::InvalidOption {
                option: "bins",
                reason: "must be at least 1".into(),
            });
        }
        if let Some((lo, hi)) = self.range {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(AnalysisError::InvalidOption {
                    option: "range",
                    reason: format!("needs finite lo < hi, got [{lo}, {hi}]"),
                });
            }
        }
        if let Some(b) = self.base {
            if !(b > 0.0 && b != 1.0 && b.is_finite()) {
                return Err(AnalysisError::InvalidOption {
                    option: "base",
                    reason: format!("a logarithm base must be positive and not 1, got {b}"),
                });
            }
        }
        Ok(())
    }

    /// The bin grid for data whose largest |S| is `max_abs`.
    pub fn grid(&self, max_abs: f64) -> BinGrid {
        let (lo, hi) = self.range.unwrap_or((0.0, max_abs));
        BinGrid {
            bins: self.bins,
            lo,
            hi,
            include_zeros: self.include_zeros,
        }
    }

    /// Divide a natural-log entropy by this to get it in the chosen base.
    pub fn log_base(&self) -> f64 {
        self.base.map(f64::ln).unwrap_or(1.0)
    }
}

/// Names [`Stat::from_name`] accepts (`top{k}_mass` for any k as well).
pub const STAT_NAMES: [&str; 9] = [
    "intensity",
    "entropy",
    "edge_entropy",
    "edge_entropy_norm",
    "kurtosis",
    "gini",
    "topk_mass",
    "effective_edges",
    "diversity",
];

/// One statistic of §5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// Mean |S|; `dense_layers: Some(L)` divides by the dense (1+2L)×(4L+1) matrix instead.
    Intensity { dense_layers: Option<usize> },
    /// Shannon entropy of the histogram of |S| pooled over samples.
    Entropy(HistOpts),
    /// Entropy of p_e = |S̄_e| / Σ|S̄|.
    EdgeEntropy,
    /// `EdgeEntropy` / ln(n_edges), in [0, 1].
    EdgeEntropyNorm,
    /// Per-sample Pearson kurtosis m4/m2² of signed scores, averaged over samples.
    Kurtosis,
    /// Gini coefficient of |S̄_e| (plain convention, max (n−1)/n).
    Gini,
    /// Share of Σ|S̄| in the k edges with the largest |S̄_e|.
    TopkMass(usize),
    /// exp(edge entropy): the number of equally strong edges with the same entropy.
    EffectiveEdges,
    /// 1 − mean pairwise Pearson correlation between samples' score vectors.
    Diversity,
}

impl Stat {
    /// The statistic a name denotes (the names [`Stat::name`] gives, plus `intensity` with
    /// `dense_layers` set, and `topk_mass` meaning `top{topk}_mass`), with the options that
    /// parameterise some of them.
    pub fn from_name(
        name: &str,
        hist: HistOpts,
        topk: usize,
        dense_layers: Option<usize>,
    ) -> Result<Stat> {
        Ok(match name {
            "intensity" => Stat::Intensity { dense_layers },
            "entropy" => Stat::Entropy(hist),
            "edge_entropy" => Stat::EdgeEntropy,
            "edge_entropy_norm" => Stat::EdgeEntropyNorm,
            "kurtosis" => Stat::Kurtosis,
            "gini" => Stat::Gini,
            "topk_mass" => Stat::TopkMass(topk),
            "effective_edges" => Stat::EffectiveEdges,
            "diversity" => Stat::Diversity,
            other => {
                let k = other
                    .strip_prefix("top")
                    .and_then(|r| r.strip_suffix("_mass"))
                    .and_then(|k| k.parse().ok());
                match k {
                    Some(k) => Stat::TopkMass(k),
                    None => {
                        return Err(AnalysisError::InvalidOption {
                            option: "statistic",
                            reason: format!(
                                "unknown statistic `{other}`; known: {}",
                                STAT_NAMES.join(", ")
                            ),
                        })
                    }
                }
            }
        })
    }

    /// Column / row name of the statistic.
    pub fn name(&self) -> String {
        match self {
            Stat::Intensity { dense_layers: None } => "intensity".into(),
            Stat::Intensity { .. } => "intensity_dense".into(),
            Stat::Entropy(_) => "entropy".into(),
            Stat::EdgeEntropy => "edge_entropy".into(),
            Stat::EdgeEntropyNorm => "edge_entropy_norm".into(),
            Stat::Kurtosis => "kurtosis".into(),
            Stat::Gini => "gini".into(),
            Stat::TopkMass(k) => format!("top{k}_mass"),
            Stat::EffectiveEdges => "effective_edges".into(),
            Stat::Diversity => "diversity".into(),
        }
    }
}

/// A statistic of a long (or mean) edge table: with `By::None` one row `statistic | value`,
/// otherwise one row per group with the key column(s) and a column named after the statistic.
pub fn statistic(table: &DataFrame, stat: &Stat, by: By) -> Result<DataFrame> {
    let matrix = ScoreMatrix::from_table(table)?;
    let (keys, values) = grouped_values(&matrix, stat, by)?;
    if by == By::None {
        return Ok(DataFrame::new(
            1,
            vec![
                Column::new("statistic".into(), [stat.name()]),
                Column::new("value".into(), values),
            ],
        )?);
    }
    let mut columns = key_columns(by, &keys);
    columns.push(Column::new(stat.name().into(), values));
    Ok(DataFrame::new(keys.len(), columns)?)
}

/// The statistic of every group of a matrix: group keys and values, in group order.
pub fn grouped_values(
    matrix: &ScoreMatrix,
    stat: &Stat,
    by: By,
) -> Result<(Vec<GroupKey>, Vec<f64>)> {
    validate(matrix, stat)?;
    let groups = group_edges(matrix, by)?;
    let mut keys = Vec::with_capacity(groups.len());
    let mut values = Vec::with_capacity(groups.len());
    for group in &groups {
        let sub = if by == By::None {
            None
        } else {
            Some(matrix.select_edges(&group.edges))
        };
        let m = sub.as_ref().unwrap_or(matrix);
        let dense = match stat {
            Stat::Intensity {
                dense_layers: Some(l),
            } => Some(dense_cells(*l, by, group)?),
            _ => None,
        };
        values.push(value_of(m, stat, dense));
        keys.push(group.key.clone());
    }
    Ok((keys, values))
}

fn validate(matrix: &ScoreMatrix, stat: &Stat) -> Result<()> {
    match stat {
        Stat::Entropy(h) => h.validate(),
        Stat::Diversity if matrix.n_samples() < 2 => Err(AnalysisError::TooFewSamples {
            statistic: "diversity",
            needed: 2,
            found: matrix.n_samples(),
        }),
        Stat::Intensity {
            dense_layers: Some(l),
        } => check_dense_layers(matrix, *l),
        _ => Ok(()),
    }
}

/// `dense` needs the graph's real n_layers: the logits destination sits at layer n_layers.
pub fn check_dense_layers(matrix: &ScoreMatrix, n_layers: usize) -> Result<()> {
    let dense = (1 + 2 * n_layers) * (4 * n_layers + 1);
    if matrix.n_edges() > dense {
        return Err(AnalysisError::InvalidOption {
            option: "dense",
            reason: format!(
                "{} edges do not fit a dense {}×{} matrix: is n_layers {n_layers} right, \
                 and is this a block (not head) graph?",
                matrix.n_edges(),
                1 + 2 * n_layers,
                4 * n_layers + 1
            ),
        });
    }
    if let Some(max) = matrix.max_dst_layer() {
        if max > n_layers as i64 {
            return Err(AnalysisError::InvalidOption {
                option: "dense",
                reason: format!("the table has dst_layer {max} but n_layers is {n_layers}"),
            });
        }
    }
    Ok(())
}

/// Cells of the dense (1+2L)×(4L+1) block matrix that belong to a group: a destination key
/// owns whole columns, a source key whole rows, an edge one cell.
pub(crate) fn dense_cells(n_layers: usize, by: By, group: &Group) -> Result<f64> {
    let srcs = block_sources(n_layers);
    let dsts = block_destinations(n_layers);
    let key = &group.key;
    let cells = match by {
        By::None => srcs.len() * dsts.len(),
        By::Edge => 1,
        By::Layer | By::Kind => {
            dsts.iter()
                .filter(|d| matches_key(key, d.layer, d.kind))
                .count()
                * srcs.len()
        }
        By::Depth => {
            dsts.iter()
                .filter(|d| match key {
                    GroupKey::Layer(b) => super::group::depth_bin(d.layer, n_layers as i64) == *b,
                    _ => false,
                })
                .count()
                * srcs.len()
        }
        By::SrcLayer | By::SrcKind => {
            srcs.iter()
                .filter(|s| matches_key(key, s.layer, s.kind))
                .count()
                * dsts.len()
        }
    };
    if cells == 0 {
        return Err(AnalysisError::InvalidOption {
            option: "dense",
            reason: format!("group {key:?} is not part of a block graph with {n_layers} layers"),
        });
    }
    Ok(cells as f64)
}

fn matches_key(key: &GroupKey, layer: i64, kind: &str) -> bool {
    match key {
        GroupKey::Layer(l) => *l == layer,
        GroupKey::Kind(_, k) => k == kind,
        _ => false,
    }
}

/// One statistic of one (sub-)matrix. `dense_cells` is the denominator cell count for
/// dense intensity.
pub fn value_of(m: &ScoreMatrix, stat: &Stat, dense_cells: Option<f64>) -> f64 {
    let n = m.n_samples() as f64;
    match stat {
        Stat::Intensity { .. } => {
            let total: f64 = m.values.iter().map(|v| v.abs()).sum();
            let cells = dense_cells.unwrap_or(m.n_edges() as f64);
            total / (n * cells)
        }
        Stat::Entropy(h) => {
            let max_abs = m.values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let grid = h.grid(max_abs);
            let mut counts = vec![0u64; grid.bins];
            grid.add_abs(&m.values, &mut counts);
            histogram_entropy(&counts) / h.log_base()
        }
        Stat::EdgeEntropy => entropy_of_weights(&m.abs_mean_scores()),
        Stat::EdgeEntropyNorm => {
            entropy_of_weights(&m.abs_mean_scores()) / (m.n_edges() as f64).ln()
        }
        Stat::EffectiveEdges => entropy_of_weights(&m.abs_mean_scores()).exp(),
        Stat::Kurtosis => mean_defined(m.rows().map(pearson_kurtosis)),
        Stat::Gini => gini_in_place(&mut m.abs_mean_scores()),
        Stat::TopkMass(k) => topk_mass_in_place(&mut m.abs_mean_scores(), *k),
        Stat::Diversity => {
            let rows: Vec<&[f64]> = m.rows().collect();
            let c = correlation_matrix(&rows);
            let k = rows.len();
            let mut sum = 0.0;
            let mut pairs = 0usize;
            for i in 0..k {
                for j in (i + 1)..k {
                    sum += c[i * k + j];
                    pairs += 1;
                }
            }
            1.0 - sum / pairs as f64
        }
    }
}

/// Mean of the finite values; NaN when there are none.
pub fn mean_defined(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values.filter(|v| v.is_finite()) {
        sum += v;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

// ---- one-line entry points, one per statistic ----

pub fn intensity(table: &DataFrame, by: By, dense_layers: Option<usize>) -> Result<DataFrame> {
    statistic(table, &Stat::Intensity { dense_layers }, by)
}
pub fn entropy(table: &DataFrame, by: By, opts: HistOpts) -> Result<DataFrame> {
    statistic(table, &Stat::Entropy(opts), by)
}
pub fn edge_entropy(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::EdgeEntropy, by)
}
pub fn edge_entropy_norm(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::EdgeEntropyNorm, by)
}
pub fn kurtosis(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::Kurtosis, by)
}
pub fn gini(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::Gini, by)
}
pub fn topk_mass(table: &DataFrame, k: usize, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::TopkMass(k), by)
}
pub fn effective_edges(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::EffectiveEdges, by)
}
pub fn diversity(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, &Stat::Diversity, by)
}
