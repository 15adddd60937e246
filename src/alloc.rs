//! glibc malloc's tuning, in one place: which policy suits which work, measured.
//!
//! - [`Policy::ReuseFreed`] (the default the `rlq` binary sets first thing): keep freed memory in
//!   the process for the next sample. Each EAP sample allocates and frees the same few hundred
//!   MB of activations and gradients; with glibc's defaults, blocks above the (dynamic) mmap
//!   threshold come from fresh `mmap`s and freed heap tops are trimmed back to the kernel, so
//!   every sample pays page faults and zeroing again until the thresholds have grown. On
//!   SmolLM2 (128 tokens, 2 cores) the first samples of a `patch` took ~2× the later ones and a
//!   9-sample run ~25% longer than with these settings: a fixed 32 MiB mmap threshold (glibc's
//!   largest), no trimming below 2 GiB, 256 MiB of padding per heap growth. Peak memory is
//!   unchanged (what is kept is what the previous sample used).
//! - [`Policy::ReturnLargeFrees`] (a tuning run, while it lives): give only very large frees
//!   back at once. A training step allocates and frees many tensors of tens to hundreds of MB
//!   (gradients, Adam temporaries, logits) of different sizes; with glibc's defaults one GRPO
//!   step of SmolLM2-135M (group 8 × 128 tokens) peaked at 3.23 GB RSS against 2.31 GB with a
//!   1 MiB mmap and trim threshold and two arenas (benches/results/tune-memory-2026-12-01.txt).
//!   Once a group's answers went through one packed forward (fewer, larger, repeating blocks),
//!   that 1 MiB threshold cost more than it saved: every block over it came from a fresh `mmap`
//!   whose pages fault and are zeroed again — 18% of a step's time in the kernel. At 256 MiB
//!   (thresholds for mmap and trim) the bench step took 19.5 s instead of 24.5 s at about the
//!   same peak (2,753,144 vs 2,721,708 kB RSS), and two steps of group 8 × 128 tokens peaked at
//!   2.74e9 B.
//!
//!   Freed blocks between live ones stay resident: [`release_free`] hands those pages back
//!   between a step's phases.
//!
//! mallopt(3) and malloc_trim(3) document the knobs; other C libraries are left alone.

use std::sync::atomic::{AtomicU8, Ordering};

/// How freed memory is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// glibc's own defaults (dynamic mmap threshold).
    Default,
    /// Keep freed blocks for the next, same-sized work (attribution over many samples).
    ReuseFreed,
    /// Return blocks over 256 MiB to the kernel at once, trim free tops over 256 MiB (tuning).
    ReturnLargeFrees,
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

impl Policy {
    fn code(self) -> u8 {
        match self {
            Policy::Default => 0,
            Policy::ReuseFreed => 1,
            Policy::ReturnLargeFrees => 2,
        }
    }

    fn from_code(c: u8) -> Policy {
        match c {
            1 => Policy::ReuseFreed,
            2 => Policy::ReturnLargeFrees,
            _ => Policy::Default,
        }
    }

    /// The policy in force.
    pub fn current() -> Policy {
        Policy::from_code(CURRENT.load(Ordering::Relaxed))
    }

    /// Puts this policy in force for the rest of the process.
    pub fn apply(self) {
        CURRENT.store(self.code(), Ordering::Relaxed);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // (mmap threshold, trim threshold, top pad); glibc's defaults are 128 KiB each (the
            // mmap threshold then grows by itself, which an explicit value turns off).
            let (mmap, trim, pad) = match self {
                Policy::Default => (128 << 10, 128 << 10, 128 << 10),
                Policy::ReuseFreed => (32 << 20, i32::MAX, 256 << 20),
                Policy::ReturnLargeFrees => (256 << 20, 256 << 20, 128 << 10),
            };
            // SAFETY: mallopt only changes glibc malloc's tuning parameters, under its own lock
            // (safe with other threads running); a rejected value returns 0 and leaves the
            // previous one in place.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
                libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
                libc::mallopt(libc::M_TOP_PAD, pad);
                if self == Policy::ReturnLargeFrees {
                    // Fewer arenas: a freed block is found by the next allocation of any thread.
                    libc::mallopt(libc::M_ARENA_MAX, 2);
                }
            }
        }
    }

    /// Puts this policy in force until the guard is dropped, then restores the one before.
    pub fn scoped(self) -> PolicyGuard {
        let before = Policy::current();
        self.apply();
        PolicyGuard { before }
    }
}

/// Gives the heap's free pages back to the kernel now, wherever they lie: glibc's
/// `malloc_trim(0)` releases whole free pages inside every arena, not only a free top (which
/// is all its automatic trimming does). For the end of a phase whose many small temporaries
/// are gone (a training step's backward), so that the next phase's large blocks (the update's
/// moments) do not add to memory kept resident for nothing. Costs a walk over the free lists.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel, under the arenas' locks;
    // live allocations are untouched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Restores the policy in force before [`Policy::scoped`] when dropped.
#[derive(Debug)]
pub struct PolicyGuard {
    before: Policy,
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        self.before.apply();
    }
}
