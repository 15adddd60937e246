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
//! - [`Policy::HoldHeap`] (a tuning run, while it lives): every block from the heap, nothing
//!   handed back until the run ends. A training step allocates and frees the same large
//!   tensors every step (logits and their log-softmax, activations, gradients, the update's
//!   pieces); any block that came from `mmap`, and any heap page trimmed or released, faults
//!   and is zeroed again on its next use. With blocks over 256 MiB from `mmap`, the heap's top
//!   trimmed past 256 MiB and free pages released between phases, a steady GRPO step of
//!   SmolLM2-135M (group 8 × 128 tokens, 2 cores) took ~400,000 page faults (1.6 GB zeroed by
//!   the kernel, `clear_page_erms` ~10% of the training phases' time); held, it takes none, and
//!   the step went 16.4 → 14.1 s (forward 3.2 → 2.4 s, backward 5.4 → 4.4 s); six steps of
//!   answers of varying length 55 → 44 s. Peak RSS did not move (2,645,668 vs 2,645,204 kB;
//!   group 8 × 256 tokens 2,847,400 vs 2,851,152 kB; LoRA the same): the heap's extent is the
//!   step's own peak, which every step reaches again, and what is held is reused. Two arenas
//!   only, so a freed block is found by the next allocation of any thread. The held pages are
//!   handed back when the run ends ([`PolicyGuard`]).
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
    /// Every block from the heap, none handed back while in force (tuning).
    HoldHeap,
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

impl Policy {
    fn code(self) -> u8 {
        match self {
            Policy::Default => 0,
            Policy::ReuseFreed => 1,
            Policy::HoldHeap => 2,
        }
    }

    fn from_code(c: u8) -> Policy {
        match c {
            1 => Policy::ReuseFreed,
            2 => Policy::HoldHeap,
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
            // (mmap threshold, most mmapped blocks, trim threshold, top pad); glibc's defaults
            // are 128 KiB, 65536, 128 KiB, 128 KiB (the mmap threshold then grows by itself,
            // which an explicit value turns off).
            let (mmap, mmap_max, trim, pad) = match self {
                Policy::Default => (128 << 10, 65536, 128 << 10, 128 << 10),
                Policy::ReuseFreed => (32 << 20, 65536, i32::MAX, 256 << 20),
                // No block from mmap at all: the heap serves every size (glibc falls back to
                // mmap only when the heap cannot grow).
                Policy::HoldHeap => (32 << 20, 0, i32::MAX, 128 << 10),
            };
            // SAFETY: mallopt only changes glibc malloc's tuning parameters, under its own lock
            // (safe with other threads running); a rejected value returns 0 and leaves the
            // previous one in place.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
                libc::mallopt(libc::M_MMAP_MAX, mmap_max);
                libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
                libc::mallopt(libc::M_TOP_PAD, pad);
                if self == Policy::HoldHeap {
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
/// is all its automatic trimming does). For the end of a policy that held pages
/// ([`PolicyGuard`]); not between a tuning step's phases, where the next phase would fault
/// the same pages in again ([`Policy::HoldHeap`]). Costs a walk over the free lists.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel, under the arenas' locks;
    // live allocations are untouched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Restores the policy in force before [`Policy::scoped`] when dropped, and hands the free
/// pages kept meanwhile back to the kernel ([`release_free`]): a REPL session that tuned
/// once does not keep a step's worth of memory for the rest of its life.
#[derive(Debug)]
pub struct PolicyGuard {
    before: Policy,
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        self.before.apply();
        release_free();
    }
}
