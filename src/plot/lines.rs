//! Line chart: one line per column of `y_cols` against a numeric `x_col`.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::bars::value_range;
use super::columns::numeric;
use super::error::{draw_err, PlotError};
use super::output::{render, Chart};
use super::style::{fmt_num, series_color, PlotOpts, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE};

/// Lines with point markers, sorted by x; rows with a null x or y are skipped.
pub fn lines(
    table: &DataFrame,
    x_col: &str,
    y_cols: &[&str],
    path: impl AsRef<Path>,
    opts: &PlotOpts,
) -> Result<(), PlotError> {
    opts.validate()?;
    if y_cols.is_empty() {
        return Err(PlotError::Empty("lines needs at least one y column".into()));
    }
    let x = numeric(table, x_col, "the x axis")?;
    let mut series = Vec::new();
    for c in y_cols {
        let y = numeric(table, c, "a line")?;
        let mut points: Vec<(f64, f64)> = x
            .iter()
            .zip(&y)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| (*a, *b))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push((c.to_string(), points));
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err(PlotError::Empty("no finite (x, y) points".into()));
    }
    let chart = Lines {
        x_col: x_col.to_string(),
        series,
        opts: opts.clone(),
    };
    render(&chart, path.as_ref(), (opts.width, opts.height))
}

struct Lines {
    x_col: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
    opts: PlotOpts,
}

impl Chart for Lines {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(draw_err)?;
        let names: Vec<&str> = self.series.iter().map(|(n, _)| n.as_str()).collect();
        let title = self
            .opts
            .title
            .clone()
            .unwrap_or_else(|| format!("{} by {}", names.join(", "), self.x_col));
        let all = || self.series.iter().flat_map(|(_, p)| p.iter());
        let (x0, x1) = value_range(all().map(|p| p.0), false);
        let (y0, y1) = value_range(all().map(|p| p.1), false);
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, TITLE_SIZE).into_font())
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        let y_desc = self.opts.y_label.clone().unwrap_or_else(|| {
            if names.len() == 1 {
                names[0].into()
            } else {
                "value".into()
            }
        });
        chart
            .configure_mesh()
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&|v| fmt_num(*v))
            .label_style((FONT, TICK_SIZE).into_font())
            .axis_desc_style((FONT, LABEL_SIZE).into_font())
            .x_desc(self.opts.x_label.as_deref().unwrap_or(&self.x_col))
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(draw_err)?;
        for (j, (name, points)) in self.series.iter().enumerate() {
            let color = series_color(j);
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(draw_err)?;
        }
        super::style::draw_legend(&mut chart)?;
        Ok(())
    }
}
