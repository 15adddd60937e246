//! Differentiable building blocks (filled in by the hooked forward work).
