//! Test group `lang`. The language from the outside and inside: parser, evaluator, diagnostics, fuzzing, the REPL, the `rlq` binary, plots, and the layer rule of the source.
//!
//! Each file of `tests/` is one module of a group (Cargo.toml: `autotests = false`): every
//! test binary links candle and polars, so five binaries build and link far faster than one
//! per file. Run one file's tests with `cargo test --test lang <file>::`.

mod groups_cover_every_file;

#[path = "../cli.rs"]
mod cli;
#[path = "../lang_bench.rs"]
mod lang_bench;
#[path = "../lang_diag.rs"]
mod lang_diag;
#[path = "../lang_eval.rs"]
mod lang_eval;
#[path = "../lang_fuzz.rs"]
mod lang_fuzz;
#[path = "../lang_parse.rs"]
mod lang_parse;
#[path = "../layers.rs"]
mod layers;
#[path = "../plot_render.rs"]
mod plot_render;
#[path = "../repl.rs"]
mod repl;
