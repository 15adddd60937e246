//! Attribution layer: the residual graph of METHOD.md, EAP / EAP-IG / activation patching,
//! losses on logits. Returns plain tensors and frames; knows nothing about the language.

pub mod eap;
pub mod export;
pub mod export_json;
pub mod graph;
pub mod loss;
pub mod prepare;
pub mod run;
pub mod saved;
pub mod settings;

pub use eap::{
    score_sample, score_sample_observed, score_sample_with, AttributionError, Method, Sample,
    SampleLoss, SampleScores, ScoreOptions,
};
pub use graph::{AnswerPositions, EdgeInfo, Graph, GraphMeta, PositionScores, SampleRecord};
pub use loss::LossKind;
pub use run::{edge_infos, run, RunOutcome};
