//! Keep a tuning run's resident memory near its live memory under glibc.
//!
//! A training step allocates and frees many tensors of tens to hundreds of MB (gradients, Adam
//! temporaries, logits). glibc serves large blocks by `mmap` and returns them on `free`, but it
//! raises its mmap threshold to the size of each such block freed (up to 32 MiB), after which
//! blocks below it come from the heap, whose freed space stays resident. Measured on a full
//! fine-tune of SmolLM2-135M from its Q4_1 GGUF (one GRPO step, group 8 × 128 tokens, through
//! `rlq run`, `/usr/bin/time -v`): 3.23 GB peak RSS with glibc's defaults, 2.31 GB with these
//! settings (the same log) — about the live size: f32 weights, Adam's two moments, the summed
//! gradients and one answer's gradients, 0.54 GB each, plus activations. (Over two steps the
//! peak is 3.40 GB: Adam's moments are resident only from the first update on; see
//! benches/results/tune-memory-2026-12-01.txt.) Fixing the threshold turns the adjustment off; glibc's own
//! documentation (mallopt(3)) describes these knobs. No effect on other C libraries.

/// Applies the settings once per process; later calls do nothing.
pub fn return_large_frees_to_the_os() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            use std::os::raw::c_int;
            extern "C" {
                fn mallopt(param: c_int, value: c_int) -> c_int;
            }
            const M_TRIM_THRESHOLD: c_int = -1;
            const M_MMAP_THRESHOLD: c_int = -3;
            const M_ARENA_MAX: c_int = -8;
            // SAFETY: mallopt only changes allocator parameters; the values are in range.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 1 << 20);
                mallopt(M_TRIM_THRESHOLD, 1 << 20);
                mallopt(M_ARENA_MAX, 2);
            }
        }
    });
}
