//! Test group `analysis`. Analysis: the statistics, their bootstrap intervals, comparisons and the analysis verbs.
//!
//! Each file of `tests/` is one module of a group (Cargo.toml: `autotests = false`): every
//! test binary links candle and polars, so five binaries build and link far faster than one
//! per file. Run one file's tests with `cargo test --test analysis <file>::`.

#[path = "../analysis_compare.rs"]
mod analysis_compare;
#[path = "../analysis_measures.rs"]
mod analysis_measures;
#[path = "../analysis_stats.rs"]
mod analysis_stats;
#[path = "../analysis_verbs.rs"]
mod analysis_verbs;
