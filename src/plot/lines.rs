//! Line chart: one line per column of `y_cols` against a numeric `x_col`, with a shaded band
//! where the table carries an interval for that column ([`interval_columns`]).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::bars::value_range;
use super::columns::numeric;
use super::error::{draw_err, PlotError};
use super::output::{render, Chart};
use super::style::{fmt_num, series_color, PlotOpts, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE};

/// The (low, high) columns of `y`'s interval, when the table has both and they are numeric:
/// `{y}_lo`/`{y}_hi`, `{y}_low`/`{y}_high` or `{y}_ci_low`/`{y}_ci_high`; and for `delta` (the
/// column `compare` gives its bootstrap CI for) or a line drawn alone, `ci_low`/`ci_high` or
/// `lo`/`hi`.
pub fn interval_columns(table: &DataFrame, y: &str, alone: bool) -> Option<(String, String)> {
    let numeric_col = |c: &str| {
        table
            .column(c)
            .is_ok_and(|col| col.dtype().is_primitive_numeric())
    };
    let mut pairs = vec![
        (format!("{y}_lo"), format!("{y}_hi")),
        (format!("{y}_low"), format!("{y}_high")),
        (format!("{y}_ci_low"), format!("{y}_ci_high")),
    ];
    if alone || y == "delta" {
        pairs.push(("ci_low".into(), "ci_high".into()));
        pairs.push(("lo".into(), "hi".into()));
    }
    pairs
        .into_iter()
        .find(|(lo, hi)| numeric_col(lo) && numeric_col(hi))
}

/// Lines with point markers, sorted by x; rows with a null x or y are skipped. A column with an
/// interval ([`interval_columns`]) gets a translucent band from low to high (rows where either
/// bound is null are left out of the band).
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
    let mut bands = Vec::new();
    for (i, c) in y_cols.iter().enumerate() {
        let y = numeric(table, c, "a line")?;
        let mut points: Vec<(f64, f64)> = x
            .iter()
            .zip(&y)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| (*a, *b))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let name = opts.series_name(i, c);
        if let Some((lo_col, hi_col)) = interval_columns(table, c, y_cols.len() == 1) {
            let (lo, hi) = (
                numeric(table, &lo_col, "a band")?,
                numeric(table, &hi_col, "a band")?,
            );
            let mut rows: Vec<(f64, f64, f64)> = (0..x.len())
                .filter(|&r| x[r].is_finite() && lo[r].is_finite() && hi[r].is_finite())
                .map(|r| (x[r], lo[r], hi[r]))
                .collect();
            rows.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !rows.is_empty() {
                bands.push(Band {
                    series: i,
                    label: format!("{name}: {lo_col} to {hi_col}"),
                    rows,
                });
            }
        }
        series.push((name, points));
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err(PlotError::Empty("no finite (x, y) points".into()));
    }
    let chart = Lines {
        x_col: x_col.to_string(),
        series,
        bands,
        opts: opts.clone(),
    };
    render(&chart, path.as_ref(), (opts.width, opts.height))
}

struct Lines {
    x_col: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
    bands: Vec<Band>,
    opts: PlotOpts,
}

/// The interval of one series: (x, low, high) sorted by x.
struct Band {
    series: usize,
    label: String,
    rows: Vec<(f64, f64, f64)>,
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
        let all = || self.series.iter().flat_map(|(_, p)| p.iter().copied());
        let band_points = || {
            self.bands
                .iter()
                .flat_map(|b| b.rows.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
        };
        let (x0, x1) = value_range(all().chain(band_points()).map(|p| p.0), false);
        let (y0, y1) = value_range(all().chain(band_points()).map(|p| p.1), false);
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
        // Bands first, so the lines stay on top.
        for band in &self.bands {
            let color = series_color(band.series);
            let outline: Vec<(f64, f64)> = band
                .rows
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(band.rows.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.2).filled(),
                )))
                .map_err(draw_err)?
                .label(band.label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.mix(0.2).filled())
                });
        }
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
