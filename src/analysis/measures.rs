//! Pure numeric measures on slices of scores. No tables, no options parsing: the statistics
//! module decides what slice each measure sees.

/// Shannon entropy (natural log) of non-negative weights, normalised to sum 1; 0·ln 0 = 0.
/// NaN when the weights sum to 0 (no distribution to speak of).
pub fn entropy_of_weights(weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return f64::NAN;
    }
    let mut h = 0.0;
    for &w in weights {
        if w > 0.0 {
            let p = w / total;
            h -= p * p.ln();
        }
    }
    h.max(0.0) // rounding can leave -0.0 or -1e-17 for a single non-zero weight
}

/// Equal-width bins over `[lo, hi]`. The last bin is closed so `hi` itself is counted
/// (numpy's convention); values outside the range are not counted; with `include_zeros` false,
/// exact zeros are skipped. A zero-width range puts every in-range value in the first bin.
#[derive(Debug, Clone, Copy)]
pub struct BinGrid {
    pub bins: usize,
    pub lo: f64,
    pub hi: f64,
    pub include_zeros: bool,
}

impl BinGrid {
    /// Bin index of `v`, or None when `v` is not counted.
    #[inline]
    pub fn bin_of(&self, v: f64) -> Option<usize> {
        if (!self.include_zeros && v == 0.0) || !(v >= self.lo && v <= self.hi) {
            return None;
        }
        let width = self.hi - self.lo;
        if width <= 0.0 {
            return Some(0);
        }
        let b = ((v - self.lo) / width * self.bins as f64) as usize;
        Some(b.min(self.bins - 1))
    }

    /// Add the absolute values of `scores` to `counts` (length `bins`).
    pub fn add_abs(&self, scores: &[f64], counts: &mut [u64]) {
        for &s in scores {
            if let Some(b) = self.bin_of(s.abs()) {
                counts[b] += 1;
            }
        }
    }
}

/// Entropy (natural log) of a histogram's counts; NaN when it is empty.
pub fn histogram_entropy(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let n = total as f64;
    let mut h = 0.0;
    for &c in counts {
        if c > 0 {
            let p = c as f64 / n;
            h -= p * p.ln();
        }
    }
    h.max(0.0)
}

/// Pearson kurtosis m4 / m2² (not excess: a normal distribution gives 3), with central moments
/// taken with 1/n. NaN when the values have no spread (m2 = 0) or there are none.
pub fn pearson_kurtosis(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let (mut m2, mut m4) = (0.0, 0.0);
    for &v in values {
        let d2 = (v - mean) * (v - mean);
        m2 += d2;
        m4 += d2 * d2;
    }
    m2 /= n;
    m4 /= n;
    if m2 <= 0.0 {
        return f64::NAN;
    }
    m4 / (m2 * m2)
}

/// Gini coefficient of non-negative values: Σ_i Σ_j |x_i − x_j| / (2 n² x̄), computed from the
/// sorted values as Σ_i (2i − n − 1) x_(i) / (n Σx) with i = 1..n. This is the plain
/// (population) Gini: all mass on one of n values gives (n − 1)/n, which tends to 1 as n grows;
/// equal values give 0. NaN when the values sum to 0. Sorts `values` in place.
pub fn gini_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n == 0 || total <= 0.0 || !total.is_finite() {
        return f64::NAN;
    }
    values.sort_unstable_by(|a, b| a.total_cmp(b));
    let nf = n as f64;
    let weighted: f64 = values
        .iter()
        .enumerate()
        .map(|(i, &x)| (2.0 * (i as f64 + 1.0) - nf - 1.0) * x)
        .sum();
    weighted / (nf * total)
}

/// Share of Σx held by the k largest values (all of them when k ≥ n). NaN when Σx = 0.
/// Reorders `values` in place.
pub fn topk_mass_in_place(values: &mut [f64], k: usize) -> f64 {
    let total: f64 = values.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return f64::NAN;
    }
    if k == 0 {
        return 0.0;
    }
    if k >= values.len() {
        return 1.0;
    }
    // Partition so the k largest sit in values[..k].
    values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    values[..k].iter().sum::<f64>() / total
}

/// Pearson correlation; NaN when either side has no spread.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::NAN;
    }
    let nf = n as f64;
    let ma = a[..n].iter().sum::<f64>() / nf;
    let mb = b[..n].iter().sum::<f64>() / nf;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    sab / (saa.sqrt() * sbb.sqrt())
}

/// Ranks 1..n, ties sharing their average rank.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0; // mean of ranks start+1..=end
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman rank correlation: Pearson correlation of average ranks (handles ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&average_ranks(a), &average_ranks(b))
}

/// Per-sample centred, unit-norm copies of the rows, so a Pearson correlation is a dot product.
/// Rows with no spread become NaN rows.
pub fn standardized_rows(rows: &[&[f64]]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|row| {
            let n = row.len().max(1) as f64;
            let mean = row.iter().sum::<f64>() / n;
            let mut z: Vec<f64> = row.iter().map(|v| v - mean).collect();
            let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { f64::NAN };
            z.iter_mut().for_each(|v| *v *= scale);
            z
        })
        .collect()
}

/// The N×N matrix of Pearson correlations between rows (row-major).
pub fn correlation_matrix(rows: &[&[f64]]) -> Vec<f64> {
    let z = standardized_rows(rows);
    let n = z.len();
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        c[i * n + i] = if z[i].iter().all(|v| v.is_finite()) {
            1.0
        } else {
            f64::NAN
        };
        for j in (i + 1)..n {
            let r: f64 = z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum();
            c[i * n + j] = r;
            c[j * n + i] = r;
        }
    }
    c
}
