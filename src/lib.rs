//! rlq — a small analysis language for looking inside language models.
//!
//! Layers (arrows point down only):
//! `cli`/`repl` → [`Session`] → `syntax` → `eval` → `model` / `attribution` / `analysis` / `plot`.
//! `model` and `attribution` know nothing about the language and are usable as plain Rust.

pub mod analysis;
pub mod attribution;
pub mod circuit;
pub mod cli;
pub mod eval;
pub mod files;
pub mod model;
pub mod plot;
pub mod repl;
pub mod session;
pub mod study;
pub mod syntax;
pub mod tuning;

pub use session::Session;

/// Keeps freed memory in the process for the next sample. Each EAP sample allocates and frees
/// the same few hundred MB of activations and gradients; with glibc's defaults, blocks above the
/// (dynamic) mmap threshold come from fresh `mmap`s and freed heap tops are trimmed back to the
/// kernel, so every sample pays page faults and zeroing again until the thresholds have grown.
/// On SmolLM2 (128 tokens, 2 cores) the first samples of a `patch` took ~2× the later ones and a
/// 9-sample run ~25% longer than with these settings: a fixed 32 MiB mmap threshold (glibc's
/// largest), no trimming below 2 GiB, 256 MiB of padding per heap growth. Peak memory is
/// unchanged (what is kept is what the previous sample used). Call it first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc malloc's tuning parameters; it is called before
        // other threads exist. A rejected value returns 0 and leaves the default in place.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        }
    }
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
