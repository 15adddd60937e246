//! rlq — a small analysis language for looking inside language models.
//!
//! Layers (arrows point down only):
//! `cli`/`repl` → [`Session`] → `syntax` → `eval` → `model` / `attribution` / `analysis` / `plot`.
//! `model` and `attribution` know nothing about the language and are usable as plain Rust.
//!
//! The library never prints: progress and messages go to the [`report::Reporter`] the host
//! gives the session. The front-ends (`cli`, `repl`: clap, rustyline, ctrlc, indicatif) are
//! behind the default `cli` feature; `cargo build --lib --no-default-features` builds without
//! them.

pub mod alloc;
pub mod analysis;
pub mod attribution;
pub mod circuit;
#[cfg(feature = "cli")]
pub mod cli;
pub mod eval;
pub mod files;
pub mod model;
pub mod plot;
#[cfg(feature = "cli")]
pub mod repl;
pub mod report;
pub mod session;
pub mod study;
pub mod syntax;
pub mod tuning;

pub use session::Session;

/// The allocator policy for attribution work ([`alloc::Policy::ReuseFreed`]); call it first
/// thing in `main`, as the `rlq` binary does.
pub fn tune_allocator() {
    alloc::Policy::ReuseFreed.apply();
}

/// Thread settings for candle on the CPU, each only where the user has not set it:
///
/// - `CANDLE_NUM_THREADS=1`: candle runs elementwise ops on a pool of spinning threads of its
///   own, beside rayon's pool that runs the matrix products; with as many threads in each as
///   there are cores, the two pools compete for them (on 2 cores an EAP sample ran ~1.3×
///   slower). Elementwise work is a small share of rlq's, so one thread loses little.
/// - `RAYON_NUM_THREADS` = the count candle would pick: candle asks for it on every matrix
///   product and, without the variable, re-reads `/proc/cpuinfo` each time (~6% of decoding).
///
/// Call it first thing in `main`, before any other thread exists (it sets environment
/// variables); the `rlq` binary does.
pub fn tune_cpu_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
