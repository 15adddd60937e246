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
//! - `rank_diversity`, `half_mass_fraction`: rank-based and scale-free ([`STATS`] says why).
//!
//! Each statistic is one entry of [`STATS`]: its name, description, options, whether `compare`
//! reports it by default, and its [`Recipe`] (how a matrix and a bootstrap replicate compute it).
//! The verbs, `compare`, the bootstrap and `help` all read that table.
//! Undefined values (no mass, no spread) are NaN rather than errors, so one empty group does not
//! sink a by-layer table.

use polars::prelude::*;

use super::canonical::{block_destinations, block_sources};
use super::error::{AnalysisError, Result};
use super::group::{group_edges, key_columns, By, Group, GroupKey};
use super::matrix::ScoreMatrix;
use super::measures::{
    correlation_matrix, entropy_of_weights, gini_in_place, half_mass_fraction, histogram_entropy,
    pearson_kurtosis, rank_correlation_matrix, topk_mass_in_place, BinGrid,
};
use super::normalize::NormalizedStat;

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

/// The options of a statistic, as parsed from the verbs' keywords (only those a statistic's
/// [`StatDef::options`] lists matter to it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatParams {
    pub hist: HistOpts,
    /// k of `top{k}_mass` (10).
    pub topk: usize,
    /// `Some(n_layers)`: dense intensity.
    pub dense_layers: Option<usize>,
}

impl Default for StatParams {
    fn default() -> Self {
        StatParams {
            hist: HistOpts::default(),
            topk: 10,
            dense_layers: None,
        }
    }
}

/// A family of options that parameterises a statistic; the verbs declare its keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatOption {
    /// The histogram's `bins`, `range`, `zeros` and `base` ([`HistOpts`]).
    Hist,
    /// `k`: how many of the strongest edges.
    TopK,
    /// `dense`: divide by the dense (1+2L)×(4L+1) matrix.
    Dense,
}

/// How a statistic is computed: on one (sub-)matrix ([`Recipe::value`]) and, from per-sample
/// sufficient statistics computed once, on a bootstrap replicate (`bootstrap::Summary`). The
/// kinds are generic: a new statistic usually reuses one with its own measure.
#[derive(Debug, Clone, Copy)]
pub enum Recipe {
    /// Σ|S| over samples and cells / (N · cells), cells = the edges (or the dense matrix's
    /// cells). A replicate sums the drawn samples' Σ|S|.
    AbsMass,
    /// Entropy of the histogram of |S| pooled over samples ([`HistOpts`]). A replicate sums the
    /// drawn samples' histograms on one bin grid fixed from all the data.
    PooledHistogram,
    /// The mean, over the samples where it is finite, of a measure of each sample's signed
    /// scores. A replicate averages the drawn samples' values.
    PerSample(fn(&[f64]) -> f64),
    /// A measure of the mean graph |S̄_e| (given a scratch copy, which it may reorder). A
    /// replicate takes it of the replicate's mean graph Σ_k c_k S_k / N.
    MeanGraph(fn(&Stat, &mut [f64]) -> f64),
    /// 1 − the mean, over pairs of distinct samples, of a similarity of their score vectors
    /// (the function gives the N×N matrix, row-major). A replicate averages it over distinct
    /// drawn pairs weighted by multiplicity (a sample drawn twice is not paired with itself).
    PairwiseDissimilarity(fn(&[&[f64]]) -> Vec<f64>),
}

/// One statistic: everything the verbs, `compare`, the bootstrap and `help` know of it.
#[derive(Debug)]
pub struct StatDef {
    /// Its verb, and its row/column name unless `row_name` says otherwise.
    pub name: &'static str,
    /// One line for `help`.
    pub description: &'static str,
    /// The options it reads.
    pub options: &'static [StatOption],
    /// Among `compare`'s rows by default (the nine METHOD.md §5 lists); the others with
    /// `statistics: StatSet::All`.
    pub in_compare: bool,
    /// Samples (distinct prompt_ids) it needs to be defined.
    pub min_samples: usize,
    /// Under `normalize mass` its whole-graph value is the same for every graph (mean |S| of
    /// shares is 1/n_edges): only its groups (by layer, kind …) say something.
    pub constant_under_mass: bool,
    /// The statistic with these options.
    pub make: fn(&StatParams) -> Stat,
    /// The row name when it depends on the options (`top25_mass`); `None`: `name`.
    pub row_name: Option<fn(&Stat) -> String>,
    pub recipe: Recipe,
}

/// Every statistic, in `compare`'s row order. Adding one is an entry here (with a [`Stat`]
/// variant for its options) and its measure in `measures.rs`.
pub const STATS: &[StatDef] = &[
    StatDef {
        name: "intensity",
        description: "activation intensity: mean |score| over edges and samples",
        options: &[StatOption::Dense],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: true,
        make: |p| Stat::Intensity {
            dense_layers: p.dense_layers,
        },
        row_name: Some(|s| match s {
            Stat::Intensity {
                dense_layers: Some(_),
            } => "intensity_dense".into(),
            _ => "intensity".into(),
        }),
        recipe: Recipe::AbsMass,
    },
    StatDef {
        name: "entropy",
        description: "Shannon entropy of the histogram of |score| pooled over samples",
        options: &[StatOption::Hist],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |p| Stat::Entropy(p.hist),
        row_name: None,
        recipe: Recipe::PooledHistogram,
    },
    StatDef {
        name: "edge_entropy",
        description: "entropy of p_e = |mean score_e| / Σ|mean score|",
        options: &[],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |_| Stat::EdgeEntropy,
        row_name: None,
        recipe: Recipe::MeanGraph(|_, w| entropy_of_weights(w)),
    },
    StatDef {
        name: "edge_entropy_norm",
        description: "edge_entropy / ln(number of edges), in [0, 1]",
        options: &[],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |_| Stat::EdgeEntropyNorm,
        row_name: None,
        recipe: Recipe::MeanGraph(|_, w| entropy_of_weights(w) / (w.len() as f64).ln()),
    },
    StatDef {
        name: "kurtosis",
        description: "per-sample Pearson kurtosis m4/m2² of signed scores, averaged",
        options: &[],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |_| Stat::Kurtosis,
        row_name: None,
        recipe: Recipe::PerSample(pearson_kurtosis),
    },
    StatDef {
        name: "gini",
        description: "Gini coefficient of |mean score| over edges",
        options: &[],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |_| Stat::Gini,
        row_name: None,
        recipe: Recipe::MeanGraph(|_, w| gini_in_place(w)),
    },
    StatDef {
        name: "topk_mass",
        description: "share of Σ|mean score| in the k strongest edges",
        options: &[StatOption::TopK],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |p| Stat::TopkMass(p.topk),
        row_name: Some(|s| format!("top{}_mass", s.topk())),
        recipe: Recipe::MeanGraph(|s, w| topk_mass_in_place(w, s.topk())),
    },
    StatDef {
        name: "effective_edges",
        description: "exp(edge_entropy): how many equally strong edges that entropy means",
        options: &[],
        in_compare: true,
        min_samples: 1,
        constant_under_mass: false,
        make: |_| Stat::EffectiveEdges,
        row_name: None,
        recipe: Recipe::MeanGraph(|_, w| entropy_of_weights(w).exp()),
    },
    StatDef {
        name: "diversity",
        description: "1 − mean pairwise correlation of the samples' score vectors",
        options: &[],
        in_compare: true,
        min_samples: 2,
        constant_under_mass: false,
        make: |_| Stat::Diversity,
        row_name: None,
        recipe: Recipe::PairwiseDissimilarity(correlation_matrix),
    },
    // Rank-based, scale-free statistics (issue 10). Both are per-sample invariant to any
    // positive rescaling of a sample, so they need no normalisation and the paper's heavy
    // tails (a few edges dominate Pearson moments) cannot drive them:
    // - rank_diversity replaces diversity's Pearson correlation by Spearman's: whether two
    //   questions use the same edges in the same order of strength, not whether their few
    //   largest scores line up. Invariant to any increasing transform of each sample.
    // - half_mass_fraction is a per-sample concentration read off the ranks: the fraction of
    //   edges, strongest first, that holds half the sample's Σ|S| (a point of its Lorenz
    //   curve). Unlike the mean-graph gini/top-k it weighs every question alike, and unlike
    //   kurtosis it says how many edges carry the signal, in units a reader can check.
    // A rank agreement between base and tuned (Spearman of their mean |S|) is not a row here:
    // compare's rows are one value per graph (base, tuned, their change), and an agreement has
    // one value per pair; `overlap` reports it (spearman_abs, kendall, over all edges).
    StatDef {
        name: "rank_diversity",
        description: "1 − mean pairwise Spearman correlation of the samples' score vectors",
        options: &[],
        in_compare: false,
        min_samples: 2,
        constant_under_mass: false,
        make: |_| Stat::RankDiversity,
        row_name: None,
        recipe: Recipe::PairwiseDissimilarity(rank_correlation_matrix),
    },
    StatDef {
        name: "half_mass_fraction",
        description: "per sample: the fraction of edges, strongest first, holding half its \
                      Σ|score|, averaged",
        options: &[],
        in_compare: false,
        min_samples: 1,
        constant_under_mass: false,
        make: |_| Stat::HalfMassFraction,
        row_name: None,
        recipe: Recipe::PerSample(half_mass_fraction),
    },
];

/// Names [`Stat::from_name`] accepts (`top{k}_mass` for any k as well), in [`STATS`] order.
pub const STAT_NAMES: [&str; STATS.len()] = {
    let mut names = [""; STATS.len()];
    let mut i = 0;
    while i < STATS.len() {
        names[i] = STATS[i].name;
        i += 1;
    }
    names
};

/// One statistic of §5 with its options: the key of its [`STATS`] entry.
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
    /// 1 − mean pairwise Spearman correlation between samples' score vectors.
    RankDiversity,
    /// Mean over samples of the fraction of edges (strongest first) holding half of Σ|S|.
    HalfMassFraction,
}

impl Stat {
    /// Its entry of [`STATS`]: the one whose `make` gives this variant.
    pub fn def(&self) -> &'static StatDef {
        let variant = std::mem::discriminant(self);
        STATS
            .iter()
            .find(|d| std::mem::discriminant(&(d.make)(&StatParams::default())) == variant)
            .expect("every Stat variant has an entry in STATS (tested)")
    }

    /// The statistic a name denotes (the names [`Stat::name`] gives, plus `intensity` with
    /// `dense_layers` set, and `topk_mass` meaning `top{topk}_mass`), with the options that
    /// parameterise some of them.
    pub fn from_name(
        name: &str,
        hist: HistOpts,
        topk: usize,
        dense_layers: Option<usize>,
    ) -> Result<Stat> {
        let params = StatParams {
            hist,
            topk,
            dense_layers,
        };
        if let Some(def) = STATS.iter().find(|d| d.name == name) {
            return Ok((def.make)(&params));
        }
        let k = name
            .strip_prefix("top")
            .and_then(|r| r.strip_suffix("_mass"))
            .and_then(|k| k.parse().ok());
        match k {
            Some(k) => Ok(Stat::TopkMass(k)),
            None => Err(AnalysisError::InvalidOption {
                option: "statistic",
                reason: format!(
                    "unknown statistic `{name}`; known: {}",
                    STAT_NAMES.join(", ")
                ),
            }),
        }
    }

    /// Column / row name of the statistic.
    pub fn name(&self) -> String {
        let def = self.def();
        match def.row_name {
            Some(f) => f(self),
            None => def.name.to_string(),
        }
    }

    /// The histogram options (entropy's; the defaults for the others).
    pub fn hist(&self) -> HistOpts {
        match self {
            Stat::Entropy(h) => *h,
            _ => HistOpts::default(),
        }
    }

    /// k of `top{k}_mass` (10 for the others).
    pub fn topk(&self) -> usize {
        match self {
            Stat::TopkMass(k) => *k,
            _ => StatParams::default().topk,
        }
    }

    /// `Some(n_layers)` for dense intensity.
    pub fn dense_layers(&self) -> Option<usize> {
        match self {
            Stat::Intensity { dense_layers } => *dense_layers,
            _ => None,
        }
    }
}

impl Recipe {
    /// The statistic `stat` (of this recipe) on one (sub-)matrix. `dense_cells` is the
    /// denominator cell count for dense intensity.
    pub fn value(&self, stat: &Stat, m: &ScoreMatrix, dense_cells: Option<f64>) -> f64 {
        let n = m.n_samples() as f64;
        match self {
            Recipe::AbsMass => {
                let total: f64 = m.values.iter().map(|v| v.abs()).sum();
                let cells = dense_cells.unwrap_or(m.n_edges() as f64);
                total / (n * cells)
            }
            Recipe::PooledHistogram => {
                let h = stat.hist();
                let max_abs = m.values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                let grid = h.grid(max_abs);
                let mut counts = vec![0u64; grid.bins];
                grid.add_abs(&m.values, &mut counts);
                histogram_entropy(&counts) / h.log_base()
            }
            Recipe::PerSample(measure) => mean_defined(m.rows().map(measure)),
            Recipe::MeanGraph(measure) => measure(stat, &mut m.abs_mean_scores()),
            Recipe::PairwiseDissimilarity(similarity) => {
                let rows: Vec<&[f64]> = m.rows().collect();
                let c = similarity(&rows);
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
}

/// A statistic of a long (or mean) edge table: with `By::None` one row `statistic | value`,
/// otherwise one row per group with the key column(s) and a column named after the statistic.
/// `stat` is a [`Stat`] (raw scores) or a [`NormalizedStat`] (each sample rescaled first; the
/// name says how, e.g. `entropy/mass`).
pub fn statistic(table: &DataFrame, stat: impl Into<NormalizedStat>, by: By) -> Result<DataFrame> {
    let stat = stat.into();
    stat.check_meaningful(by)?;
    let raw = ScoreMatrix::from_table(table)?;
    let matrix = stat.normalize.apply(&raw)?;
    let (keys, values) = grouped_values(&matrix, &stat.stat, by)?;
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
    let recipe = stat.def().recipe;
    let mut keys = Vec::with_capacity(groups.len());
    let mut values = Vec::with_capacity(groups.len());
    for group in &groups {
        let sub = if by == By::None {
            None
        } else {
            Some(matrix.select_edges(&group.edges))
        };
        let m = sub.as_ref().unwrap_or(matrix);
        let dense = match stat.dense_layers() {
            Some(l) => Some(dense_cells(l, by, group)?),
            None => None,
        };
        values.push(recipe.value(stat, m, dense));
        keys.push(group.key.clone());
    }
    Ok((keys, values))
}

fn validate(matrix: &ScoreMatrix, stat: &Stat) -> Result<()> {
    let def = stat.def();
    if def.options.contains(&StatOption::Hist) {
        stat.hist().validate()?;
    }
    if matrix.n_samples() < def.min_samples {
        return Err(AnalysisError::TooFewSamples {
            statistic: def.name,
            needed: def.min_samples,
            found: matrix.n_samples(),
        });
    }
    match stat.dense_layers() {
        Some(l) => check_dense_layers(matrix, l),
        None => Ok(()),
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
    stat.def().recipe.value(stat, m, dense_cells)
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
    statistic(table, Stat::Intensity { dense_layers }, by)
}
pub fn entropy(table: &DataFrame, by: By, opts: HistOpts) -> Result<DataFrame> {
    statistic(table, Stat::Entropy(opts), by)
}
pub fn edge_entropy(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, Stat::EdgeEntropy, by)
}
pub fn edge_entropy_norm(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, Stat::EdgeEntropyNorm, by)
}
pub fn kurtosis(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, Stat::Kurtosis, by)
}
pub fn gini(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, Stat::Gini, by)
}
pub fn topk_mass(table: &DataFrame, k: usize, by: By) -> Result<DataFrame> {
    statistic(table, Stat::TopkMass(k), by)
}
pub fn effective_edges(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, Stat::EffectiveEdges, by)
}
pub fn diversity(table: &DataFrame, by: By) -> Result<DataFrame> {
    statistic(table, Stat::Diversity, by)
}
