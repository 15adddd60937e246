//! Test group `study`. The study and tuning: the study verbs and script, GRPO/DPO/SFT.
//!
//! Each file of `tests/` is one module of a group (Cargo.toml: `autotests = false`): every
//! test binary links candle and polars, so five binaries build and link far faster than one
//! per file. Run one file's tests with `cargo test --test study <file>::`.

#[path = "../study_script.rs"]
mod study_script;
#[path = "../study_verbs.rs"]
mod study_verbs;
#[path = "../tuning.rs"]
mod tuning;
