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
}

impl Finding {
    pub fn name(self) -> &'static str {
        match self {
            Finding::Agrees => "agrees",
            Finding::Contradicts => "contradicts",
            Finding::Inconclusive => "inconclusive (interval contains 0)",
        }
    }
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
    }
}
