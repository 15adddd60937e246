//! Two graded answer sets of the same questions, compared question by question: how many each
//! got right, the discordant pairs, and the exact McNemar test on them. A held-out accuracy gain
//! of a few points on a few dozen questions is usually noise; this says whether it is.

use std::collections::BTreeMap;

/// The paired outcome of two answer sets over the same questions.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedAccuracy {
    pub questions: usize,
    /// Right in both, only in the first, only in the second, in neither.
    pub both: usize,
    pub only_first: usize,
    pub only_second: usize,
    pub neither: usize,
    /// Two-sided exact McNemar p-value: the probability, were both sets equally good, of a split
    /// of the discordant questions at least this uneven (a binomial test at ½; 1 with no
    /// discordant question).
    pub p_value: f64,
}

impl PairedAccuracy {
    pub fn accuracy_first(&self) -> f64 {
        (self.both + self.only_first) as f64 / self.questions.max(1) as f64
    }
    pub fn accuracy_second(&self) -> f64 {
        (self.both + self.only_second) as f64 / self.questions.max(1) as f64
    }
}

/// Why two answer sets cannot be paired.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PairingError {
    #[error("question {0} is graded twice in the {1} answers")]
    Repeated(i64, &'static str),
    #[error("question {0} is in the {1} answers only: both must answer the same questions")]
    Unmatched(i64, &'static str),
    #[error("no questions to compare")]
    Empty,
}

/// Pairs `(question id, correct)` of two answer sets. Both must hold the same questions, each
/// once: pairing a subset silently would compare different question sets.
pub fn paired_accuracy(
    first: &[(i64, bool)],
    second: &[(i64, bool)],
) -> Result<PairedAccuracy, PairingError> {
    let index = |rows: &[(i64, bool)], side: &'static str| {
        let mut map = BTreeMap::new();
        for &(id, ok) in rows {
            if map.insert(id, ok).is_some() {
                return Err(PairingError::Repeated(id, side));
            }
        }
        Ok(map)
    };
    let (a, b) = (index(first, "first")?, index(second, "second")?);
    if let Some(id) = a.keys().find(|id| !b.contains_key(id)) {
        return Err(PairingError::Unmatched(*id, "first"));
    }
    if let Some(id) = b.keys().find(|id| !a.contains_key(id)) {
        return Err(PairingError::Unmatched(*id, "second"));
    }
    if a.is_empty() {
        return Err(PairingError::Empty);
    }
    let (mut both, mut only_first, mut only_second, mut neither) = (0, 0, 0, 0);
    for (id, &x) in &a {
        match (x, b[id]) {
            (true, true) => both += 1,
            (true, false) => only_first += 1,
            (false, true) => only_second += 1,
            (false, false) => neither += 1,
        }
    }
    Ok(PairedAccuracy {
        questions: a.len(),
        both,
        only_first,
        only_second,
        neither,
        p_value: exact_mcnemar(only_first, only_second),
    })
}

/// Two-sided exact McNemar p-value for `b` and `c` discordant pairs: `min(1, 2·P(X ≤ min(b, c)))`
/// for X ~ Binomial(b + c, ½). The terms are summed in log space, so thousands of pairs neither
/// overflow nor underflow to a wrong 0 before the sum.
pub fn exact_mcnemar(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // ln C(n, i) by the recurrence C(n, i) = C(n, i-1)·(n-i+1)/i.
    let mut ln_choose = 0.0f64;
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_choose - n as f64 * std::f64::consts::LN_2);
    }
    // C(n, i) grows up to i = n/2 ≥ k: the last term is the largest.
    let top = terms[k];
    let tail = top.exp() * terms.iter().map(|t| (t - top).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact binomial tails by integer arithmetic (u128 holds C(60, i) and 2^60 exactly).
    fn reference(b: usize, c: usize) -> f64 {
        let n = b + c;
        let k = b.min(c);
        let mut choose: u128 = 1;
        let mut sum: u128 = 0;
        for i in 0..=k {
            if i > 0 {
                choose = choose * (n - i + 1) as u128 / i as u128;
            }
            sum += choose;
        }
        (2.0 * sum as f64 / (1u128 << n) as f64).min(1.0)
    }

    #[test]
    fn mcnemar_matches_integer_tails() {
        // The log-space sum against exact integers: relative 1e-12 (a few hundred roundings of
        // ln/exp in f64).
        for (b, c) in [
            (0, 1),
            (1, 1),
            (10, 14),
            (7, 107),
            (0, 20),
            (30, 30),
            (3, 57),
        ] {
            let (got, want) = (exact_mcnemar(b, c), reference(b, c));
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1e-300),
                "b={b} c={c}: {got} vs {want}"
            );
            assert_eq!(exact_mcnemar(c, b), got, "symmetric");
        }
        // The run in scripts/grpo_report/ before this test: 10 vs 14 discordant, p = 0.54.
        assert!((exact_mcnemar(10, 14) - 0.5413).abs() < 1e-4);
        assert_eq!(exact_mcnemar(0, 0), 1.0);
        // Large counts stay finite and positive, not 0 or NaN.
        let p = exact_mcnemar(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }

    #[test]
    fn pairs_by_question_and_refuses_other_sets() {
        let a = [(1, true), (2, false), (3, true), (4, false)];
        let b = [(4, true), (3, true), (2, false), (1, false)];
        let p = paired_accuracy(&a, &b).unwrap();
        assert_eq!(
            (p.questions, p.both, p.only_first, p.only_second, p.neither),
            (4, 1, 1, 1, 1)
        );
        assert_eq!((p.accuracy_first(), p.accuracy_second()), (0.5, 0.5));
        assert_eq!(p.p_value, 1.0);
        assert_eq!(
            paired_accuracy(&a, &b[..3]),
            Err(PairingError::Unmatched(1, "first"))
        );
        assert_eq!(
            paired_accuracy(&[(1, true), (1, false)], &a),
            Err(PairingError::Repeated(1, "first"))
        );
        assert_eq!(paired_accuracy(&[], &[]), Err(PairingError::Empty));
    }
}
