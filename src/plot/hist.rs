//! Histogram of a score column.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::columns::numeric;
use super::error::{draw_err, PlotError};
use super::output::{render, Chart};
use super::style::{fmt_num, series_color, PlotOpts, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE};

/// Options of [`hist`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistPlotOpts {
    pub plot: PlotOpts,
    /// The column to histogram (`score`; `abs_score` for magnitudes).
    pub column: String,
    /// Equal-width bins over [min, max] of the column (100).
    pub bins: usize,
    /// Logarithmic count axis: score distributions are heavy-tailed.
    pub log_y: bool,
}

impl Default for HistPlotOpts {
    fn default() -> Self {
        HistPlotOpts {
            plot: PlotOpts::default(),
            column: "score".into(),
            bins: 100,
            log_y: false,
        }
    }
}

/// The distribution of one column (all rows: every sample of a long table).
pub fn hist(
    table: &DataFrame,
    path: impl AsRef<Path>,
    opts: &HistPlotOpts,
) -> Result<(), PlotError> {
    opts.plot.validate()?;
    if opts.bins == 0 {
        return Err(PlotError::InvalidOption {
            option: "bins",
            reason: "must be at least 1".into(),
        });
    }
    let values: Vec<f64> = numeric(table, &opts.column, "the histogram")?
        .into_iter()
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return Err(PlotError::Empty(format!(
            "no finite values in `{}`",
            opts.column
        )));
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
    }
    let width = (hi - lo) / opts.bins as f64;
    let mut counts = vec![0u64; opts.bins];
    for v in &values {
        let b = (((v - lo) / width) as usize).min(opts.bins - 1);
        counts[b] += 1;
    }
    let chart = Hist {
        lo,
        width,
        counts,
        n: values.len(),
        opts: opts.clone(),
    };
    render(&chart, path.as_ref(), (opts.plot.width, opts.plot.height))
}

struct Hist {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
    n: usize,
    opts: HistPlotOpts,
}

impl Hist {
    fn bars(&self) -> impl Iterator<Item = (f64, f64, f64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| {
                let x0 = self.lo + i as f64 * self.width;
                (x0, x0 + self.width, c as f64)
            })
    }
}

impl Chart for Hist {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(draw_err)?;
        let title =
            self.opts.plot.title.clone().unwrap_or_else(|| {
                format!("Distribution of {} ({} values)", self.opts.column, self.n)
            });
        let x_range = self.lo..self.lo + self.width * self.counts.len() as f64;
        let max = *self.counts.iter().max().unwrap_or(&1) as f64;
        let color = series_color(0);
        let x_desc = self
            .opts
            .plot
            .x_label
            .clone()
            .unwrap_or_else(|| self.opts.column.clone());
        let legend = format!("{} bins", self.counts.len());
        let builder = |root| {
            let mut b = ChartBuilder::on(root);
            b.caption(&title, (FONT, TITLE_SIZE).into_font())
                .margin(15)
                .x_label_area_size(50)
                .y_label_area_size(80);
            b
        };
        macro_rules! finish {
            ($chart:expr, $base:expr, $y_desc:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_label_formatter(&|v| fmt_num(*v))
                    .y_label_formatter(&|v| fmt_num(*v))
                    .label_style((FONT, TICK_SIZE).into_font())
                    .axis_desc_style((FONT, LABEL_SIZE).into_font())
                    .x_desc(x_desc.as_str())
                    .y_desc($y_desc)
                    .draw()
                    .map_err(draw_err)?;
                chart
                    .draw_series(
                        self.bars().map(|(x0, x1, c)| {
                            Rectangle::new([(x0, $base), (x1, c)], color.filled())
                        }),
                    )
                    .map_err(draw_err)?
                    .label(legend.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                    });
                super::style::draw_legend(&mut chart)?;
            }};
        }
        let y_desc = self.opts.plot.y_label.clone();
        if self.opts.log_y {
            let chart = builder(root)
                .build_cartesian_2d(x_range, (0.5f64..max * 2.0).log_scale())
                .map_err(draw_err)?;
            finish!(
                chart,
                0.5,
                y_desc.unwrap_or_else(|| "count (log scale)".into())
            );
        } else {
            let chart = builder(root)
                .build_cartesian_2d(x_range, 0f64..max * 1.05)
                .map_err(draw_err)?;
            finish!(chart, 0.0, y_desc.unwrap_or_else(|| "count".into()));
        }
        Ok(())
    }
}
