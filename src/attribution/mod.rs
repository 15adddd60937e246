//! Attribution layer: the residual graph of METHOD.md, EAP / EAP-IG / activation patching,
//! losses on logits. Returns plain tensors and frames; knows nothing about the language.

pub mod graph;

pub use graph::{Graph, GraphMeta};
