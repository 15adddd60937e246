//! The hooked forward and what runs it: the transformer with its hook points (`hooked`, whose
//! `KvCache` serves incremental decoding), where hooks sit (`hooks`), the attention and gated-MLP
//! ops it differentiates through (`attention`, `mlp`), the hand-written layer backward tuning
//! takes (`tape`), and sampling (`generate`).
//! Reads a [`Model`](crate::model::Model); above `arch`, `weights` and `kernels`.

pub mod attention;
pub mod generate;
pub mod hooked;
pub mod hooks;
pub mod mlp;
pub mod packing;
pub mod tape;
