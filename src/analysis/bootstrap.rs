//! Fast resampling of the whole-graph statistics: per-sample sufficient statistics are computed
//! once, and a bootstrap replicate only recombines them with the multiplicity of each sample.
//!
//! - intensity: per-sample Σ|S|.
//! - entropy: per-sample histograms on ONE bin grid fixed from the full data (range [0, max|S|]
//!   of all samples, or the given range); a replicate sums them. Recomputing max per replicate
//!   would move the bin edges with the resample; fixing the grid keeps the point estimate
//!   identical to `statistic` and makes a replicate O(N·bins) instead of O(N·E).
//! - kurtosis: per-sample kurtosis, averaged.
//! - diversity: the N×N correlation matrix; a replicate averages it over pairs of *distinct*
//!   samples weighted by multiplicity (a duplicated sample paired with itself is not diversity).
//! - edge_entropy, gini, top-k, effective edges: the replicate's mean vector Σ_k c_k S_k / N.

use super::matrix::ScoreMatrix;
use super::measures::{
    correlation_matrix, entropy_of_weights, gini_in_place, histogram_entropy, pearson_kurtosis,
    topk_mass_in_place, BinGrid,
};
use super::stats::{mean_defined, HistOpts};

/// The statistics `compare` reports, in row order.
pub const N_METRICS: usize = 9;

/// What a replicate needs to know about one graph.
pub struct Summary<'a> {
    matrix: &'a ScoreMatrix,
    abs_sum: Vec<f64>,
    kurtosis: Vec<f64>,
    /// `[sample][bin]` counts on the fixed grid.
    hist: Vec<u64>,
    bins: usize,
    log_base: f64,
    /// N×N Pearson correlations; empty when N < 2.
    corr: Vec<f64>,
    topk: usize,
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
    pub fn new(matrix: &'a ScoreMatrix, hist: &HistOpts, topk: usize, cells: f64) -> Self {
        let max_abs = matrix.values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let grid: BinGrid = hist.grid(max_abs);
        let mut counts = vec![0u64; matrix.n_samples() * grid.bins];
        for (k, row) in matrix.rows().enumerate() {
            grid.add_abs(row, &mut counts[k * grid.bins..(k + 1) * grid.bins]);
        }
        let rows: Vec<&[f64]> = matrix.rows().collect();
        Summary {
            matrix,
            abs_sum: rows
                .iter()
                .map(|r| r.iter().map(|v| v.abs()).sum())
                .collect(),
            kurtosis: rows.iter().map(|r| pearson_kurtosis(r)).collect(),
            hist: counts,
            bins: grid.bins,
            log_base: hist.log_base(),
            corr: if rows.len() >= 2 {
                correlation_matrix(&rows)
            } else {
                Vec::new()
            },
            topk,
            cells,
        }
    }

    pub fn scratch(&self) -> Scratch {
        Scratch {
            counts: vec![0; self.matrix.n_samples()],
            mean: vec![0.0; self.matrix.n_edges()],
            work: vec![0.0; self.matrix.n_edges()],
            hist: vec![0; self.bins],
        }
    }

    /// The statistics of the sample multiset `draw` (indices into the samples), in the order
    /// intensity, entropy, edge_entropy, edge_entropy_norm, kurtosis, gini, top-k mass,
    /// effective_edges, diversity. `draw = 0..N` gives the point estimates.
    pub fn stats(&self, draw: &[usize], s: &mut Scratch) -> [f64; N_METRICS] {
        let n = draw.len() as f64;
        let n_edges = self.matrix.n_edges();
        s.counts.iter_mut().for_each(|c| *c = 0);
        for &k in draw {
            s.counts[k] += 1;
        }

        let intensity = draw.iter().map(|&k| self.abs_sum[k]).sum::<f64>() / (n * self.cells);

        s.hist.iter_mut().for_each(|h| *h = 0);
        s.mean.iter_mut().for_each(|m| *m = 0.0);
        for (k, &c) in s.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let row_hist = &self.hist[k * self.bins..(k + 1) * self.bins];
            for (h, r) in s.hist.iter_mut().zip(row_hist) {
                *h += c as u64 * r;
            }
            let w = c as f64 / n;
            for (m, v) in s.mean.iter_mut().zip(self.matrix.row(k)) {
                *m += w * v;
            }
        }
        let entropy = histogram_entropy(&s.hist) / self.log_base;

        s.mean.iter_mut().for_each(|m| *m = m.abs());
        let edge_entropy = entropy_of_weights(&s.mean);
        let edge_entropy_norm = edge_entropy / (n_edges as f64).ln();
        s.work.copy_from_slice(&s.mean);
        let gini = gini_in_place(&mut s.work);
        s.work.copy_from_slice(&s.mean);
        let topk = topk_mass_in_place(&mut s.work, self.topk);

        let kurtosis = mean_defined(draw.iter().map(|&k| self.kurtosis[k]));
        let diversity = self.diversity(&s.counts);

        [
            intensity,
            entropy,
            edge_entropy,
            edge_entropy_norm,
            kurtosis,
            gini,
            topk,
            edge_entropy.exp(),
            diversity,
        ]
    }

    /// 1 − mean correlation over pairs of distinct samples, weighted by multiplicity.
    fn diversity(&self, counts: &[usize]) -> f64 {
        let n = counts.len();
        if self.corr.is_empty() {
            return f64::NAN;
        }
        let (mut sum, mut weight) = (0.0, 0.0);
        for a in 0..n {
            if counts[a] == 0 {
                continue;
            }
            let row = &self.corr[a * n..(a + 1) * n];
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
