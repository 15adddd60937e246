//! Scale-free statistics (issue 10): each sample's scores divided by a scale of its own before a
//! statistic sees them, so a model whose scores are uniformly larger (a sharper loss, a larger
//! output gradient) does not look "more intense" for that reason alone.
//!
//! - `mass`: the sample's Σ|S| over all of the graph's edges. Every sample then carries unit
//!   attribution mass and the statistics describe how it is spread. Whole-graph intensity becomes
//!   1/n_edges for every graph, so it is refused there ([`StatDef::constant_under_mass`]); by
//!   layer or kind it is each group's share of the mass per edge.
//! - `grad`: the sample's loss-gradient norm at the input of `logits` (the `grad_norm` column
//!   of the long table; graphs carry it per sample). EAP scores are gradient × activation
//!   difference, so this removes the scale of the loss at the output and keeps what the
//!   circuit does with it.
//!
//! Statistics that are per-sample scale-free already (kurtosis, diversity, rank_diversity,
//! half_mass_fraction) give the same values up to rounding; pooled and mean-graph statistics
//! change, because samples now weigh alike.

use std::borrow::Cow;
use std::str::FromStr;

use super::error::{AnalysisError, Result};
use super::group::By;
use super::matrix::ScoreMatrix;
use super::stats::{Stat, StatDef};

/// How each sample's scores are rescaled before the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalize {
    /// The paper's raw scores.
    #[default]
    None,
    /// Divided by the sample's Σ|S|.
    Mass,
    /// Divided by the sample's loss-gradient norm at `logits`.
    Grad,
}

/// The names [`Normalize::from_str`] accepts, the default first.
pub const NORMALIZE_NAMES: [&str; 3] = ["none", "mass", "grad"];

impl FromStr for Normalize {
    type Err = AnalysisError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Normalize::None),
            "mass" => Ok(Normalize::Mass),
            "grad" => Ok(Normalize::Grad),
            other => Err(AnalysisError::InvalidOption {
                option: "normalize",
                reason: format!("unknown `{other}`; choose {}", NORMALIZE_NAMES.join(", ")),
            }),
        }
    }
}

impl Normalize {
    pub fn name(self) -> &'static str {
        match self {
            Normalize::None => "none",
            Normalize::Mass => "mass",
            Normalize::Grad => "grad",
        }
    }

    /// What a statistic's name gets: `intensity/grad`; nothing for raw scores.
    pub fn suffix(self) -> &'static str {
        match self {
            Normalize::None => "",
            Normalize::Mass => "/mass",
            Normalize::Grad => "/grad",
        }
    }

    /// The matrix with each sample's scores divided by its scale. Refused, naming the sample,
    /// when a scale is zero or unknown: a silent NaN or a skipped sample would change N.
    pub fn apply<'a>(self, m: &'a ScoreMatrix) -> Result<Cow<'a, ScoreMatrix>> {
        let scales: Vec<f64> = match self {
            Normalize::None => return Ok(Cow::Borrowed(m)),
            Normalize::Mass => m.rows().map(|r| r.iter().map(|v| v.abs()).sum()).collect(),
            Normalize::Grad => match &m.grad_norms {
                Some(g) => g.clone(),
                None => {
                    return Err(AnalysisError::MissingColumn {
                        column: super::matrix::GRAD_NORM_COLUMN.into(),
                        needed_for: "normalize grad: each sample's loss-gradient norm at logits, \
                                     which graphs scored by patch carry",
                    })
                }
            },
        };
        for (k, &s) in scales.iter().enumerate() {
            if !(s > 0.0 && s.is_finite()) {
                return Err(AnalysisError::CannotNormalize {
                    how: self.name(),
                    prompt_id: m.prompt_ids[k],
                    scale: s,
                });
            }
        }
        let n_edges = m.n_edges();
        let mut out = m.clone();
        for (k, row) in out.values.chunks_mut(n_edges.max(1)).enumerate() {
            row.iter_mut().for_each(|v| *v /= scales[k]);
        }
        Ok(Cow::Owned(out))
    }
}

/// A statistic of normalised scores: what `statistic`, `side_by_side` and the per-position
/// statistics take (a plain `&Stat` converts to raw scores).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizedStat {
    pub stat: Stat,
    pub normalize: Normalize,
}

impl From<Stat> for NormalizedStat {
    fn from(stat: Stat) -> Self {
        NormalizedStat {
            stat,
            normalize: Normalize::None,
        }
    }
}

impl From<&Stat> for NormalizedStat {
    fn from(stat: &Stat) -> Self {
        (*stat).into()
    }
}

impl From<&NormalizedStat> for NormalizedStat {
    fn from(s: &NormalizedStat) -> Self {
        *s
    }
}

impl NormalizedStat {
    pub fn new(stat: Stat, normalize: Normalize) -> Self {
        NormalizedStat { stat, normalize }
    }

    /// Column / row name: the statistic's, then how it was normalised (`entropy/mass`).
    pub fn name(&self) -> String {
        format!("{}{}", self.stat.name(), self.normalize.suffix())
    }

    /// Refuses a whole-graph value that normalisation makes the same for every graph.
    pub fn check_meaningful(&self, by: By) -> Result<()> {
        let def: &StatDef = self.stat.def();
        if self.normalize == Normalize::Mass && def.constant_under_mass && by == By::None {
            return Err(AnalysisError::InvalidOption {
                option: "normalize",
                reason: format!(
                    "{} of mass-normalised scores is the same for every graph (each sample's \
                     |scores| sum to 1, so the mean is 1 / the number of cells): take it by \
                     layer or by kind (each group's share of the mass), or use normalize grad",
                    self.stat.name()
                ),
            });
        }
        Ok(())
    }
}
