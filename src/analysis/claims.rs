//! The paper's claims about online RL (METHOD.md §6), as a table that a run's comparisons are
//! checked against: each claim is a statistic and the direction the paper found, and a finding
//! is read from a paired bootstrap interval of tuned − start, whatever the data say.

/// A claim: the statistic (a `compare` metric name) and the sign of the change the paper
/// reports for online RL (+1 up, −1 down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    pub metric: &'static str,
    pub direction: i8,
    pub statement: &'static str,
}

/// The paper's claims for online RL vs its start (METHOD.md §6), one source for the study.
pub const PAPER_CLAIMS: [Claim; 4] = [
    Claim {
        metric: "intensity",
        direction: 1,
        statement: "activation intensity rises (+10…+19%)",
    },
    Claim {
        metric: "entropy",
        direction: 1,
        statement: "histogram entropy of |S| rises (+44…+592%)",
    },
    Claim {
        metric: "kurtosis",
        direction: -1,
        statement: "kurtosis falls (−21…−38%)",
    },
    Claim {
        metric: "diversity",
        direction: 1,
        statement: "inter-sample diversity rises",
    },
];

/// What an interval says about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// The interval excludes 0 on the claimed side.
    Agrees,
    /// The interval excludes 0 on the other side.
    Contradicts,
    /// The interval contains 0.
    Inconclusive,
    /// No interval (NaN: too few samples to resample).
    NoInterval,
    /// Fewer questions than [`MIN_SAMPLES`]: an interval over so few is not read.
    TooFew,
    /// The change and its whole interval are within rounding of the base value (|·| ≤ 1e-4 of
    /// it): e.g. a checkpoint one zero-learning-rate step from its start, whose only difference
    /// is the order of float additions.
    NoChange,
}

/// Questions below which an interval is not read (METHOD.md's N is 100; intervals over a few
/// samples are unreliable).
pub const MIN_SAMPLES: usize = 5;

impl Finding {
    pub fn name(self) -> &'static str {
        match self {
            Finding::Agrees => "agrees",
            Finding::Contradicts => "contradicts",
            Finding::Inconclusive => "inconclusive (interval contains 0)",
            Finding::NoInterval => "no interval",
            Finding::TooFew => "too few questions",
            Finding::NoChange => "no change (rounding level)",
        }
    }
}

/// The finding for `claim` from the interval `[ci_low, ci_high]` of tuned − start, given the
/// start's value and the number of questions (when known).
pub fn judge_full(
    claim: &Claim,
    base: f64,
    ci_low: f64,
    ci_high: f64,
    n: Option<usize>,
) -> Finding {
    if n.is_some_and(|n| n < MIN_SAMPLES) {
        return Finding::TooFew;
    }
    if !(ci_low.is_finite() && ci_high.is_finite()) {
        return Finding::NoInterval;
    }
    let tol = 1e-4 * base.abs();
    if base.is_finite() && ci_low.abs() <= tol && ci_high.abs() <= tol {
        return Finding::NoChange;
    }
    judge(claim, ci_low, ci_high)
}

/// The finding for `claim` from the interval `[ci_low, ci_high]` of tuned − start.
pub fn judge(claim: &Claim, ci_low: f64, ci_high: f64) -> Finding {
    let (lo, hi) = if claim.direction >= 0 {
        (ci_low, ci_high)
    } else {
        (-ci_high, -ci_low)
    };
    if lo > 0.0 {
        Finding::Agrees
    } else if hi < 0.0 {
        Finding::Contradicts
    } else {
        Finding::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_reads_the_interval_on_the_claimed_side() {
        let up = &PAPER_CLAIMS[0];
        let down = &PAPER_CLAIMS[2];
        assert_eq!(judge(up, 0.1, 0.3), Finding::Agrees);
        assert_eq!(judge(up, -0.3, -0.1), Finding::Contradicts);
        assert_eq!(judge(up, -0.1, 0.3), Finding::Inconclusive);
        assert_eq!(judge(down, -0.3, -0.1), Finding::Agrees);
        assert_eq!(judge(down, 0.1, 0.3), Finding::Contradicts);
        assert_eq!(
            judge_full(up, 1.0, f64::NAN, f64::NAN, None),
            Finding::NoInterval
        );
        assert_eq!(judge_full(up, 1.0, 1e-6, 2e-6, None), Finding::NoChange);
        assert_eq!(judge_full(up, 1.0, 0.1, 0.3, Some(3)), Finding::TooFew);
        assert_eq!(judge_full(up, 1.0, 0.1, 0.3, Some(30)), Finding::Agrees);
    }
}
