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

/// Kendall's τ-b (ties corrected), in O(n log n) by Knight's method: sort by (a, b), count the
/// discordant pairs as the swaps of a merge sort by b. NaN when either side is constant.
pub fn kendall(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[i].total_cmp(&a[j]).then(b[i].total_cmp(&b[j])));
    let pairs = |run: u64| run * run.saturating_sub(1) / 2;
    // Ties in a (n1) and in both (n3), over runs of the (a, b)-sorted order.
    let (mut tied_a, mut tied_both) = (0u64, 0u64);
    let (mut run_a, mut run_ab) = (1u64, 1u64);
    for w in order.windows(2) {
        let (i, j) = (w[0], w[1]);
        if a[i] == a[j] {
            run_a += 1;
            if b[i] == b[j] {
                run_ab += 1;
            } else {
                tied_both += pairs(run_ab);
                run_ab = 1;
            }
        } else {
            tied_a += pairs(run_a);
            tied_both += pairs(run_ab);
            run_a = 1;
            run_ab = 1;
        }
    }
    tied_a += pairs(run_a);
    tied_both += pairs(run_ab);
    // Merge sort by b, counting swaps: each is a discordant pair.
    let mut ys: Vec<f64> = order.iter().map(|&i| b[i]).collect();
    let mut buf = ys.clone();
    let swaps = merge_count(&mut ys, &mut buf);
    let mut tied_b = 0u64;
    let mut run_b = 1u64;
    for w in ys.windows(2) {
        if w[0] == w[1] {
            run_b += 1;
        } else {
            tied_b += pairs(run_b);
            run_b = 1;
        }
    }
    tied_b += pairs(run_b);
    let total = pairs(n as u64);
    let (da, db) = ((total - tied_a) as f64, (total - tied_b) as f64);
    if da <= 0.0 || db <= 0.0 {
        return f64::NAN;
    }
    let concordant_minus_discordant =
        total as f64 - tied_a as f64 - tied_b as f64 + tied_both as f64 - 2.0 * swaps as f64;
    concordant_minus_discordant / (da.sqrt() * db.sqrt())
}

/// Sorts `v` ascending (stable), returning the number of inversions (pairs out of order).
fn merge_count(v: &mut [f64], buf: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut swaps = {
        let (l, r) = v.split_at_mut(mid);
        let (bl, br) = buf.split_at_mut(mid);
        merge_count(l, bl) + merge_count(r, br)
    };
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        if v[j] < v[i] {
            buf[k] = v[j];
            swaps += (mid - i) as u64;
            j += 1;
        } else {
            buf[k] = v[i];
            i += 1;
        }
        k += 1;
    }
    while i < mid {
        buf[k] = v[i];
        i += 1;
        k += 1;
    }
    while j < n {
        buf[k] = v[j];
        j += 1;
        k += 1;
    }
    v.copy_from_slice(&buf[..n]);
    swaps
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

/// The N×N matrix of Spearman correlations between rows: Pearson correlations of each row's
/// average ranks ([`average_ranks`], so ties are handled as [`spearman`] does).
pub fn rank_correlation_matrix(rows: &[&[f64]]) -> Vec<f64> {
    let ranked: Vec<Vec<f64>> = rows.iter().map(|r| average_ranks(r)).collect();
    let refs: Vec<&[f64]> = ranked.iter().map(Vec::as_slice).collect();
    correlation_matrix(&refs)
}

/// The fraction of the values, largest |x| first, that together hold at least half of Σ|x|:
/// k/n for the smallest such k (a point of the Lorenz curve, read off the ranks). 1/n when one
/// value holds half the mass, 0.5 when all are equal (n even). NaN when Σ|x| = 0.
pub fn half_mass_fraction(values: &[f64]) -> f64 {
    let mut abs: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    let total: f64 = abs.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return f64::NAN;
    }
    abs.sort_unstable_by(|a, b| b.total_cmp(a));
    let half = 0.5 * total;
    let mut held = 0.0;
    for (i, v) in abs.iter().enumerate() {
        held += v;
        if held >= half {
            return (i + 1) as f64 / abs.len() as f64;
        }
    }
    1.0 // rounding left the sorted sum a hair below the unsorted one
}

#[cfg(test)]
mod tests {
    use super::kendall;

    /// τ-b from its definition, over every pair (the O(n²) oracle for Knight's method).
    fn kendall_pairs(a: &[f64], b: &[f64]) -> f64 {
        let (mut s, mut ta, mut tb, mut n0) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for i in 0..a.len() {
            for j in i + 1..a.len() {
                let (x, y) = ((a[i] - a[j]).signum(), (b[i] - b[j]).signum());
                let (x, y) = (
                    if a[i] == a[j] { 0.0 } else { x },
                    if b[i] == b[j] { 0.0 } else { y },
                );
                s += x * y;
                n0 += 1.0;
                ta += if x == 0.0 { 1.0 } else { 0.0 };
                tb += if y == 0.0 { 1.0 } else { 0.0 };
            }
        }
        s / ((n0 - ta) * (n0 - tb)).sqrt()
    }

    #[test]
    fn kendall_matches_the_pairwise_definition_with_ties() {
        // Integers in a small range: many ties in each and in both.
        let mut x = 12345u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 7) as f64
        };
        for n in [2usize, 3, 10, 57, 200] {
            let a: Vec<f64> = (0..n).map(|_| next()).collect();
            let b: Vec<f64> = (0..n).map(|_| next()).collect();
            let (fast, slow) = (kendall(&a, &b), kendall_pairs(&a, &b));
            // Sums of ±1 and counts: equal up to the last-bit rounding of the division.
            assert!(
                (fast - slow).abs() < 1e-12 || (fast.is_nan() && slow.is_nan()),
                "n={n}: {fast} vs {slow}"
            );
        }
        let up: Vec<f64> = (0..20).map(f64::from).collect();
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert_eq!(kendall(&up, &up), 1.0);
        assert_eq!(kendall(&up, &down), -1.0);
    }
}
