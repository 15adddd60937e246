//! rlq — a small analysis language for looking inside language models.
//!
//! Layers (arrows point down only):
//! `cli`/`repl` → [`Session`] → `syntax` → `eval` → `model` / `attribution` / `analysis` / `plot`.
//! `model` and `attribution` know nothing about the language and are usable as plain Rust.

pub mod analysis;
pub mod attribution;
pub mod cli;
pub mod eval;
pub mod model;
pub mod plot;
pub mod repl;
pub mod session;
pub mod syntax;

pub use session::Session;
