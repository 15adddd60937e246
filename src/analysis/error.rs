//! Errors of the analysis layer: values, never panics, each naming what to fix.

use polars::prelude::PolarsError;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("the table has no column `{column}` ({needed_for})")]
    MissingColumn {
        column: String,
        needed_for: &'static str,
    },

    #[error("column `{column}` has the wrong type: expected {expected}, found {found}")]
    ColumnType {
        column: String,
        expected: &'static str,
        found: String,
    },

    #[error("column `{column}` has a missing (null) value at row {row}")]
    NullValue { column: String, row: usize },

    #[error(
        "score {value} of edge {src}->{dst} (prompt_id {prompt_id}) is not a finite number: \
         the attribution that produced it overflowed or divided by zero"
    )]
    NonFiniteScore {
        prompt_id: i64,
        src: String,
        dst: String,
        value: f64,
    },

    #[error("the table has no rows")]
    EmptyTable,

    #[error("edge {src}->{dst} appears twice for prompt_id {prompt_id}")]
    DuplicateRow {
        prompt_id: i64,
        src: String,
        dst: String,
    },

    #[error(
        "prompt_id {prompt_id} has no row for edge {src}->{dst}: every sample must score the same \
         edges (a long table has one row per (prompt_id, edge))"
    )]
    MissingRow {
        prompt_id: i64,
        src: String,
        dst: String,
    },

    #[error(
        "{statistic} needs at least {needed} samples (distinct prompt_id), the table has {found}"
    )]
    TooFewSamples {
        statistic: &'static str,
        needed: usize,
        found: usize,
    },

    #[error(
        "the two graphs were scored on different prompts ({only_in_base} prompt_id only in base, \
         {only_in_tuned} only in tuned, e.g. {example}): paired statistics (the paired bootstrap \
         interval of compare) are invalid. Unpaired statistics remain valid: compare with \
         `paired: false` (independent bootstrap of each graph), or score both graphs on the same prompts"
    )]
    PromptMismatch {
        only_in_base: usize,
        only_in_tuned: usize,
        example: String,
    },

    #[error(
        "the two graphs have different edge sets ({only_in_base} edges only in base, \
         {only_in_tuned} only in tuned, e.g. {example}; n_layers {base_layers} vs {tuned_layers}): \
         per-edge views (rel_change, overlap, by edge / by layer comparisons) are invalid. \
         Whole-graph statistics can still be compared with `require_same_edges: false`"
    )]
    EdgeMismatch {
        only_in_base: usize,
        only_in_tuned: usize,
        example: String,
        base_layers: i64,
        tuned_layers: i64,
    },

    #[error(
        "the graphs have different depths ({depths}): by layer would set layers of the same \
         index but different depth side by side. Use `by depth` (relative depth in 10 bins of \
         layer / n_layers, then logits) or look at each graph on its own"
    )]
    DepthMismatch { depths: String },

    #[error(
        "cannot normalize {how}: prompt_id {prompt_id} has scale {scale} (a sample's scale must be \
         a positive number; a sample with no attribution mass or no gradient cannot be made \
         scale-free). Drop that sample, or compare raw scores"
    )]
    CannotNormalize {
        how: &'static str,
        prompt_id: i64,
        scale: f64,
    },

    #[error(
        "the two graphs scored different tokens for {count} prompt(s) (prompt_id {prompt_ids}): \
         same_tokens needs each prompt scored on the same input and answer tokens in both \
         (score one model on the other's answers first)"
    )]
    TokenMismatch { count: usize, prompt_ids: String },

    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },

    #[error("side_by_side got {names} names for {tables} tables")]
    NameCount { names: usize, tables: usize },

    #[error(transparent)]
    Polars(#[from] PolarsError),
}

pub type Result<T> = std::result::Result<T, AnalysisError>;
