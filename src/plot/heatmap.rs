//! Source × destination heatmap of mean edge scores.

use std::collections::HashMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::{draw_err, PlotError};
use super::output::{render, Chart};
use super::style::{diverging, fmt_num, PlotOpts, FONT, LABEL_SIZE, TICK_SIZE, TITLE_SIZE};
use crate::analysis::bootstrap::quantile;
use crate::analysis::canonical::node_order;
use crate::analysis::ScoreMatrix;

/// Options of [`heatmap`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOpts {
    pub plot: PlotOpts,
    /// The colour scale saturates at this quantile of |mean score| (0.99), so a few huge edges
    /// do not wash out the rest; `1.0` uses the maximum.
    pub robust_quantile: f64,
    /// About this many tick labels across (16; horizontal text needs room) and down (30).
    pub max_x_ticks: usize,
    pub max_y_ticks: usize,
}

impl Default for HeatmapOpts {
    fn default() -> Self {
        HeatmapOpts {
            plot: PlotOpts {
                width: 1400,
                height: 1000,
                ..PlotOpts::default()
            },
            robust_quantile: 0.99,
            max_x_ticks: 16,
            max_y_ticks: 30,
        }
    }
}

/// Heatmap of a graph's edge table (long or mean; scores are averaged over samples): sources
/// (input, a0, m0, a1, …) down, destinations (a0<q>, a0<k>, a0<v>, m0, …, logits) across,
/// blue–white–red centred at 0, grey where there is no edge.
pub fn heatmap(
    table: &polars::prelude::DataFrame,
    path: impl AsRef<Path>,
    opts: &HeatmapOpts,
) -> Result<(), PlotError> {
    opts.plot.validate()?;
    if !(opts.robust_quantile > 0.0 && opts.robust_quantile <= 1.0) {
        return Err(PlotError::InvalidOption {
            option: "robust_quantile",
            reason: format!("must be in (0, 1], got {}", opts.robust_quantile),
        });
    }
    let matrix = ScoreMatrix::from_table(table)?;
    let mean = matrix.mean_scores();
    let mut sources: Vec<String> = Vec::new();
    let mut dests: Vec<String> = Vec::new();
    for e in &matrix.edges {
        if !sources.contains(&e.src) {
            sources.push(e.src.clone());
        }
        if !dests.contains(&e.dst) {
            dests.push(e.dst.clone());
        }
    }
    sources.sort_by_key(|s| node_order(s));
    dests.sort_by_key(|d| node_order(d));
    let row_of: HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let col_of: HashMap<&str, usize> = dests
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    let mut cells = vec![None; sources.len() * dests.len()];
    for (e, v) in matrix.edges.iter().zip(&mean) {
        cells[row_of[e.src.as_str()] * dests.len() + col_of[e.dst.as_str()]] = Some(*v);
    }
    let abs: Vec<f64> = mean.iter().map(|v| v.abs()).collect();
    let mut limit = quantile(&abs, opts.robust_quantile);
    if !(limit.is_finite() && limit > 0.0) {
        limit = abs
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
    }
    if limit <= 0.0 {
        limit = 1.0; // an all-zero graph: any scale shows white
    }
    let chart = Heatmap {
        sources,
        dests,
        cells,
        limit,
        opts: opts.clone(),
    };
    render(&chart, path.as_ref(), (opts.plot.width, opts.plot.height))
}

/// Edges shown by [`heatmap_by_position`]: the strongest, so the rows stay legible.
pub const POSITION_HEATMAP_EDGES: usize = 40;

/// Heatmap of a per-position table (`patch … per_position true`): fed positions across, the
/// [`POSITION_HEATMAP_EDGES`] edges of largest Σ_t |mean score| down (in canonical order), each
/// cell the mean over the samples that reach that position; grey where none does.
pub fn heatmap_by_position(
    table: &polars::prelude::DataFrame,
    path: impl AsRef<Path>,
    opts: &HeatmapOpts,
) -> Result<(), PlotError> {
    use polars::prelude::DataType;
    opts.plot.validate()?;
    let missing = |c: &str| PlotError::InvalidOption {
        option: "by",
        reason: format!(
            "`by position` needs a per-position table (column `{c}` is missing): score with \
             `patch … per_position true`"
        ),
    };
    let col_i = |c: &str| -> Result<Vec<i64>, PlotError> {
        let s = table.column(c).map_err(|_| missing(c))?;
        let s = s.cast(&DataType::Int64).map_err(|_| missing(c))?;
        Ok(s.i64()
            .map_err(|_| missing(c))?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let col_s = |c: &str| -> Result<Vec<String>, PlotError> {
        let s = table.column(c).map_err(|_| missing(c))?;
        let s = s.cast(&DataType::String).map_err(|_| missing(c))?;
        Ok(s.str()
            .map_err(|_| missing(c))?
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect())
    };
    let pos = col_i("position")?;
    let (src, dst) = (col_s("src")?, col_s("dst")?);
    let score = {
        let s = table.column("score").map_err(|_| missing("score"))?;
        let s = s.cast(&DataType::Float64).map_err(|_| missing("score"))?;
        s.f64()
            .map_err(|_| missing("score"))?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect::<Vec<f64>>()
    };
    let n_pos = pos
        .iter()
        .copied()
        .max()
        .map_or(0, |m| (m.max(-1) + 1) as usize);
    // (sum, count) per (edge, position)
    let mut edge_of: HashMap<(String, String), usize> = HashMap::new();
    let mut names: Vec<(String, String)> = Vec::new();
    let mut acc: Vec<Vec<(f64, usize)>> = Vec::new();
    for r in 0..pos.len() {
        if pos[r] < 0 || !score[r].is_finite() {
            return Err(PlotError::InvalidOption {
                option: "by",
                reason: format!("row {r}: position {} / score {}", pos[r], score[r]),
            });
        }
        let key = (src[r].clone(), dst[r].clone());
        let e = *edge_of.entry(key.clone()).or_insert_with(|| {
            names.push(key);
            acc.push(vec![(0.0, 0); n_pos]);
            names.len() - 1
        });
        let cell = &mut acc[e][pos[r] as usize];
        cell.0 += score[r];
        cell.1 += 1;
    }
    let mean: Vec<Vec<Option<f64>>> = acc
        .iter()
        .map(|row| {
            row.iter()
                .map(|&(s, n)| (n > 0).then(|| s / n as f64))
                .collect()
        })
        .collect();
    let strength: Vec<f64> = mean
        .iter()
        .map(|row| row.iter().flatten().map(|v| v.abs()).sum())
        .collect();
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| strength[b].total_cmp(&strength[a]).then(a.cmp(&b)));
    order.truncate(POSITION_HEATMAP_EDGES);
    order.sort_by_key(|&e| (node_order(&names[e].0), node_order(&names[e].1)));
    let mut cells = Vec::with_capacity(order.len() * n_pos);
    for &e in &order {
        cells.extend(mean[e].iter().copied());
    }
    let abs: Vec<f64> = cells.iter().flatten().map(|v| v.abs()).collect();
    let mut limit = quantile(&abs, opts.robust_quantile);
    if !(limit.is_finite() && limit > 0.0) {
        limit = abs.iter().copied().fold(0.0, f64::max);
    }
    if limit <= 0.0 {
        limit = 1.0;
    }
    let mut o = opts.clone();
    o.plot.x_label = o.plot.x_label.or(Some("position".into()));
    o.plot.y_label = o.plot.y_label.or(Some("edge".into()));
    o.plot.title = o
        .plot
        .title
        .or(Some("Mean edge score by position (strongest edges)".into()));
    o.max_x_ticks = o.max_x_ticks.max(1);
    let chart = Heatmap {
        sources: order
            .iter()
            .map(|&e| format!("{}->{}", names[e].0, names[e].1))
            .collect(),
        dests: (0..n_pos).map(|t| t.to_string()).collect(),
        cells,
        limit,
        opts: o.clone(),
    };
    render(&chart, path.as_ref(), (o.plot.width, o.plot.height))
}

struct Heatmap {
    sources: Vec<String>,
    dests: Vec<String>,
    /// Row-major over (source, destination); None where there is no edge.
    cells: Vec<Option<f64>>,
    /// |score| at which the colours saturate.
    limit: f64,
    opts: HeatmapOpts,
}

const NO_EDGE: RGBColor = RGBColor(225, 225, 225);

/// The name of the cell whose centre is at `v`; empty between cells (non-integer ticks).
fn label_at(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    names.get(i as usize).cloned().unwrap_or_default()
}

impl Chart for Heatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(draw_err)?;
        let title = self
            .opts
            .plot
            .title
            .clone()
            .unwrap_or_else(|| "Mean edge score (source × destination)".into());
        let root = root
            .titled(&title, (FONT, TITLE_SIZE).into_font())
            .map_err(draw_err)?;
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(130));

        let (n_rows, n_cols) = (self.sources.len(), self.dests.len());
        // Cell c spans [c − 0.5, c + 0.5], so integer ticks sit on cell centres; rows run top to
        // bottom: row r is drawn at y = n_rows − 1 − r.
        let mut chart = ChartBuilder::on(&main)
            .margin(10)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..n_cols as f64 - 0.5, -0.5f64..n_rows as f64 - 0.5)
            .map_err(draw_err)?;
        let x_name = |v: &f64| label_at(&self.dests, *v);
        let y_name = |v: &f64| label_at(&self.sources, (n_rows as f64 - 1.0) - *v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(self.opts.max_x_ticks.min(n_cols))
            .y_labels(self.opts.max_y_ticks.min(n_rows))
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_name)
            .x_label_style((FONT, TICK_SIZE).into_font())
            .y_label_style((FONT, TICK_SIZE).into_font())
            .x_desc(self.opts.plot.x_label.as_deref().unwrap_or("destination"))
            .y_desc(self.opts.plot.y_label.as_deref().unwrap_or("source"))
            .axis_desc_style((FONT, LABEL_SIZE).into_font())
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series((0..n_rows).flat_map(|r| {
                (0..n_cols).map(move |c| {
                    let color = match self.cells[r * n_cols + c] {
                        Some(v) => diverging(v / self.limit),
                        None => NO_EDGE,
                    };
                    let (x, y) = (c as f64, (n_rows - 1 - r) as f64);
                    Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], color.filled())
                })
            }))
            .map_err(draw_err)?;
        self.draw_colorbar(&bar)
    }
}

impl Heatmap {
    /// Vertical colour scale with the saturation limits and a "no edge" swatch.
    fn draw_colorbar<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), PlotError> {
        let l = self.limit;
        let mut bar = ChartBuilder::on(area)
            .margin_top(40)
            .margin_bottom(100)
            .margin_right(10)
            .y_label_area_size(70)
            .caption("mean score", (FONT, LABEL_SIZE).into_font())
            .build_cartesian_2d(0f64..1f64, -l..l)
            .map_err(draw_err)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(9)
            // Tick positions carry rounding noise; the centre tick is exactly 0.
            .y_label_formatter(&|v| fmt_num(if v.abs() < 1e-9 * l { 0.0 } else { *v }))
            .y_label_style((FONT, TICK_SIZE).into_font())
            .draw()
            .map_err(draw_err)?;
        let steps = 200;
        bar.draw_series((0..steps).map(|i| {
            let lo = -l + 2.0 * l * i as f64 / steps as f64;
            let hi = -l + 2.0 * l * (i + 1) as f64 / steps as f64;
            let color = diverging((lo + hi) / 2.0 / l);
            Rectangle::new([(0.0, lo), (1.0, hi)], color.filled())
        }))
        .map_err(draw_err)?;
        let (_, h) = area.dim_in_pixel();
        let swatch_y = h as i32 - 70;
        area.draw(&Rectangle::new(
            [(78, swatch_y), (96, swatch_y + 14)],
            NO_EDGE.filled(),
        ))
        .map_err(draw_err)?;
        area.draw(&Text::new(
            "no edge",
            (78, swatch_y + 20),
            (FONT, TICK_SIZE).into_font(),
        ))
        .map_err(draw_err)?;
        area.draw(&Text::new(
            format!("clipped at ±{}", fmt_num(l)),
            (8, swatch_y + 42),
            (FONT, TICK_SIZE).into_font(),
        ))
        .map_err(draw_err)?;
        Ok(())
    }
}
