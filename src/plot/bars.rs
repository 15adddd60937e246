//! Grouped bar chart: one group per row of `x_col`, one bar per column of `y_cols`.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::columns::{labels, numeric};
use super::error::{draw_err, PlotError};
use super::output::{render, Chart};
use super::style::{fmt_num, series_color, PlotOpts, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE};

/// Grouped bars, e.g. `side_by_side(... By::Layer)` with `x_col = "dst_layer"` and one y column
/// per graph. Null values leave a gap.
pub fn bars(
    table: &DataFrame,
    x_col: &str,
    y_cols: &[&str],
    path: impl AsRef<Path>,
    opts: &PlotOpts,
) -> Result<(), PlotError> {
    opts.validate()?;
    if y_cols.is_empty() {
        return Err(PlotError::Empty("bars needs at least one y column".into()));
    }
    let categories = labels(table, x_col, "the bars' categories")?;
    if categories.is_empty() {
        return Err(PlotError::Empty("the table has no rows".into()));
    }
    let series = y_cols
        .iter()
        .enumerate()
        .map(|(i, c)| Ok((opts.series_name(i, c), numeric(table, c, "bar heights")?)))
        .collect::<Result<Vec<_>, PlotError>>()?;
    let chart = Bars {
        x_col: x_col.to_string(),
        categories,
        series,
        opts: opts.clone(),
    };
    render(&chart, path.as_ref(), (opts.width, opts.height))
}

struct Bars {
    x_col: String,
    categories: Vec<String>,
    series: Vec<(String, Vec<f64>)>,
    opts: PlotOpts,
}

impl Chart for Bars {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(draw_err)?;
        let names: Vec<&str> = self.series.iter().map(|(n, _)| n.as_str()).collect();
        let title = self
            .opts
            .title
            .clone()
            .unwrap_or_else(|| format!("{} by {}", names.join(", "), self.x_col));
        let values = self.series.iter().flat_map(|(_, v)| v.iter().copied());
        let (lo, hi) = value_range(values, true);
        let hi = hi + (hi - lo) * 0.12; // headroom for the legend box
        let n = self.categories.len();
        // Category i is centred on x = i, so integer ticks label the groups.
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, TITLE_SIZE).into_font())
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, lo..hi)
            .map_err(draw_err)?;
        let x_name = |v: &f64| {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            self.categories.get(i as usize).cloned().unwrap_or_default()
        };
        let y_desc = self.opts.y_label.clone().unwrap_or_else(|| {
            if names.len() == 1 {
                names[0].into()
            } else {
                "value".into()
            }
        });
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(40))
            .x_label_formatter(&x_name)
            .y_label_formatter(&|v| fmt_num(*v))
            .label_style((FONT, TICK_SIZE).into_font())
            .axis_desc_style((FONT, LABEL_SIZE).into_font())
            .x_desc(self.opts.x_label.as_deref().unwrap_or(&self.x_col))
            .y_desc(y_desc)
            .draw()
            .map_err(draw_err)?;
        let k = self.series.len() as f64;
        let width = 0.8 / k;
        for (j, (name, values)) in self.series.iter().enumerate() {
            let color = series_color(j);
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(i, &v)| {
                            let x0 = i as f64 - 0.4 + j as f64 * width;
                            Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], color.filled())
                        }),
                )
                .map_err(draw_err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
        }
        super::style::draw_legend(&mut chart)?;
        Ok(())
    }
}

/// Axis range covering the finite values (and 0 when `with_zero`), padded by 5%.
pub(crate) fn value_range(values: impl Iterator<Item = f64>, with_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = if with_zero {
        (0.0, 0.0)
    } else {
        (f64::INFINITY, f64::NEG_INFINITY)
    };
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= 0.0 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (
        if with_zero && lo == 0.0 {
            0.0
        } else {
            lo - pad
        },
        hi + pad,
    )
}
