//! Analysis layer (METHOD.md §5): circuit statistics of scored edge tables, whole or grouped,
//! several graphs side by side, and base-vs-tuned comparisons with a bootstrap over samples.
//!
//! Every entry point takes polars frames shaped like `Graph::sample_table()` (long: one row per
//! prompt_id and edge) or `Graph::edge_table()` (no prompt_id: one sample), so tables read back
//! from parquet work too. Each call parses its table once into a [`ScoreMatrix`].

pub mod bootstrap;
pub mod canonical;
pub mod claims;
pub mod compare;
pub mod error;
pub mod group;
pub mod matrix;
pub mod measures;
pub mod normalize;
pub mod pairing;
pub mod per_edge;
pub mod positions;
pub mod side_by_side;
pub mod stats;
#[cfg(any(test, feature = "test-support"))]
pub mod synthetic;

pub use compare::{compare, CompareOpts, StatSet};
pub use error::{AnalysisError, Result};
pub use group::By;
pub use matrix::ScoreMatrix;
pub use normalize::{Normalize, NormalizedStat, NORMALIZE_NAMES};
pub use pairing::check_same_tokens;
pub use per_edge::{node_entropy, overlap, rel_change};
pub use positions::statistic_by_position;
pub use side_by_side::side_by_side;
pub use stats::{
    diversity, edge_entropy, edge_entropy_norm, effective_edges, entropy, gini, intensity,
    kurtosis, statistic, topk_mass, HistOpts, Recipe, Stat, StatDef, StatOption, StatParams, STATS,
    STAT_NAMES,
};
