//! Errors of the plot layer.

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot tell the image format of `{0}`: use a .svg or .png file name")]
    UnknownFormat(String),

    #[error("the table has no column `{column}` ({needed_for})")]
    MissingColumn {
        column: String,
        needed_for: &'static str,
    },

    #[error("column `{column}` must be numeric to plot, found {found}")]
    NotNumeric { column: String, found: String },

    #[error("nothing to plot: {0}")]
    Empty(String),

    #[error("invalid plot option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },

    #[error("drawing failed: {0}")]
    Draw(String),

    #[error("cannot write `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },

    #[error(transparent)]
    Analysis(#[from] crate::analysis::AnalysisError),

    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
}

/// Turn a plotters drawing error into ours.
pub(crate) fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}
