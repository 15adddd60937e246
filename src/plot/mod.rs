//! Plot layer: SVG or PNG charts of analysis frames (format chosen by the path's extension,
//! written atomically: temp file in the same folder, then rename).
//!
//! - [`heatmap`]: source × destination matrix of mean scores, diverging colours centred at 0;
//!   [`heatmap_by_position`]: edge × fed position, from a per-position graph; [`heatmap_pair`]:
//!   two graphs on one colour scale, or their difference.
//! - [`bars`]: grouped bars, e.g. a statistic by layer for several graphs.
//! - [`hist`]: distribution of a score column, optionally log-scaled counts.
//! - [`lines`]: one line per column against a numeric x column, CI bands where the table has them.

mod bars;
mod columns;
mod error;
mod heatmap;
mod hist;
mod lines;
mod output;
mod style;

pub use bars::bars;
pub use error::PlotError;
pub use heatmap::{
    heatmap, heatmap_by_position, heatmap_pair, HeatmapOpts, POSITION_HEATMAP_EDGES,
};
pub use hist::{hist, HistPlotOpts};
pub use lines::{interval_columns, lines};
pub use output::Format;
pub use style::{series_names, PlotOpts};
