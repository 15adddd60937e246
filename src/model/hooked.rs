//! Hooked forward (in progress).
