//! Fast resampling of the whole-graph statistics: per-sample sufficient statistics are computed
//! once, and a bootstrap replicate only recombines them with the multiplicity of each sample.
//! What each statistic keeps is its [`Recipe`]:
//!
//! - `AbsMass` (intensity): per-sample Σ|S|.
//! - `PooledHistogram` (entropy): per-sample histograms on ONE bin grid fixed from the full data
//!   (range [0, max|S|] of all samples, or the given range); a replicate sums them. Recomputing
//!   max per replicate would move the bin edges with the resample; fixing the grid keeps the
//!   point estimate identical to `statistic` and makes a replicate O(N·bins) instead of O(N·E).
//! - `PerSample` (kurtosis, half_mass_fraction): the per-sample values, averaged.
//! - `PairwiseDissimilarity` (diversity, rank_diversity): the N×N similarity matrix; a replicate
//!   averages it over pairs of *distinct* samples weighted by multiplicity (a duplicated sample
//!   paired with itself is not diversity).
//! - `MeanGraph` (edge_entropy, gini, top-k, effective edges): the replicate's mean vector
//!   Σ_k c_k S_k / N, computed once per replicate for all of them.

use super::matrix::ScoreMatrix;
use super::measures::{histogram_entropy, BinGrid};
use super::stats::{mean_defined, Recipe, Stat};

/// What one statistic's replicates need, computed once from all samples.
enum Prepared {
    /// Per-sample Σ|S|.
    AbsMass(Vec<f64>),
    /// `[sample][bin]` counts on the fixed grid.
    Histogram {
        counts: Vec<u64>,
        bins: usize,
        log_base: f64,
    },
    PerSample(Vec<f64>),
    MeanGraph(fn(&Stat, &mut [f64]) -> f64),
    /// N×N similarities; empty when N < 2.
    Pairs(Vec<f64>),
}

/// What a replicate needs to know about one graph, for a list of statistics.
pub struct Summary<'a> {
    matrix: &'a ScoreMatrix,
    stats: Vec<Stat>,
    prepared: Vec<Prepared>,
    /// Denominator cells per sample for intensity (n_edges, or the dense matrix size).
    cells: f64,
}

/// Reusable buffers of one replicate.
pub struct Scratch {
    counts: Vec<usize>,
    mean: Vec<f64>,
    work: Vec<f64>,
    hist: Vec<u64>,
}

impl<'a> Summary<'a> {
    pub fn new(matrix: &'a ScoreMatrix, stats: &[Stat], cells: f64) -> Self {
        let rows: Vec<&[f64]> = matrix.rows().collect();
        let prepared = stats
            .iter()
            .map(|stat| match stat.def().recipe {
                Recipe::AbsMass => Prepared::AbsMass(
                    rows.iter()
                        .map(|r| r.iter().map(|v| v.abs()).sum())
                        .collect(),
                ),
                Recipe::PooledHistogram => {
                    let hist = stat.hist();
                    let max_abs = matrix.values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                    let grid: BinGrid = hist.grid(max_abs);
                    let mut counts = vec![0u64; matrix.n_samples() * grid.bins];
                    for (k, row) in rows.iter().enumerate() {
                        grid.add_abs(row, &mut counts[k * grid.bins..(k + 1) * grid.bins]);
                    }
                    Prepared::Histogram {
                        counts,
                        bins: grid.bins,
                        log_base: hist.log_base(),
                    }
                }
                Recipe::PerSample(measure) => {
                    Prepared::PerSample(rows.iter().map(|r| measure(r)).collect())
                }
                Recipe::MeanGraph(measure) => Prepared::MeanGraph(measure),
                Recipe::PairwiseDissimilarity(similarity) => Prepared::Pairs(if rows.len() >= 2 {
                    similarity(&rows)
                } else {
                    Vec::new()
                }),
            })
            .collect();
        Summary {
            matrix,
            stats: stats.to_vec(),
            prepared,
            cells,
        }
    }

    pub fn scratch(&self) -> Scratch {
        let bins = self
            .prepared
            .iter()
            .map(|p| match p {
                Prepared::Histogram { bins, .. } => *bins,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        Scratch {
            counts: vec![0; self.matrix.n_samples()],
            mean: vec![0.0; self.matrix.n_edges()],
            work: vec![0.0; self.matrix.n_edges()],
            hist: vec![0; bins],
        }
    }

    /// The statistics of the sample multiset `draw` (indices into the samples), in the order
    /// given to [`Summary::new`]. `draw = 0..N` gives the point estimates.
    pub fn stats(&self, draw: &[usize], s: &mut Scratch) -> Vec<f64> {
        let n = draw.len() as f64;
        s.counts.iter_mut().for_each(|c| *c = 0);
        for &k in draw {
            s.counts[k] += 1;
        }
        // The replicate's mean graph |S̄|, once for every statistic of it.
        if self
            .prepared
            .iter()
            .any(|p| matches!(p, Prepared::MeanGraph(_)))
        {
            s.mean.iter_mut().for_each(|m| *m = 0.0);
            for (k, &c) in s.counts.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let w = c as f64 / n;
                for (m, v) in s.mean.iter_mut().zip(self.matrix.row(k)) {
                    *m += w * v;
                }
            }
            s.mean.iter_mut().for_each(|m| *m = m.abs());
        }
        self.stats
            .iter()
            .zip(&self.prepared)
            .map(|(stat, prepared)| match prepared {
                Prepared::AbsMass(abs_sum) => {
                    draw.iter().map(|&k| abs_sum[k]).sum::<f64>() / (n * self.cells)
                }
                Prepared::Histogram {
                    counts,
                    bins,
                    log_base,
                } => {
                    let hist = &mut s.hist[..*bins];
                    hist.iter_mut().for_each(|h| *h = 0);
                    for (k, &c) in s.counts.iter().enumerate() {
                        if c == 0 {
                            continue;
                        }
                        let row_hist = &counts[k * bins..(k + 1) * bins];
                        for (h, r) in hist.iter_mut().zip(row_hist) {
                            *h += c as u64 * r;
                        }
                    }
                    histogram_entropy(hist) / log_base
                }
                Prepared::PerSample(values) => mean_defined(draw.iter().map(|&k| values[k])),
                Prepared::MeanGraph(measure) => {
                    s.work.copy_from_slice(&s.mean);
                    measure(stat, &mut s.work)
                }
                Prepared::Pairs(similarity) => distinct_pairs(similarity, &s.counts),
            })
            .collect()
    }
}

/// 1 − mean similarity over pairs of distinct samples, weighted by multiplicity.
fn distinct_pairs(similarity: &[f64], counts: &[usize]) -> f64 {
    let n = counts.len();
    if similarity.is_empty() {
        return f64::NAN;
    }
    let (mut sum, mut weight) = (0.0, 0.0);
    for a in 0..n {
        if counts[a] == 0 {
            continue;
        }
        let row = &similarity[a * n..(a + 1) * n];
        for b in (a + 1)..n {
            if counts[b] != 0 {
                let w = (counts[a] * counts[b]) as f64;
                sum += w * row[b];
                weight += w;
            }
        }
    }
    if weight == 0.0 {
        f64::NAN
    } else {
        1.0 - sum / weight
    }
}

/// The `q`-quantile (0..=1) of the finite values, linear interpolation between order statistics
/// (numpy's default); NaN when there are none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}
