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
    check_quantile(opts.robust_quantile)?;
    let means = edge_means(table)?;
    let (sources, dests) = layout(means.iter().map(|(e, _)| e));
    let cells = grid(&sources, &dests, &means.iter().cloned().collect());
    let abs: Vec<f64> = means.iter().map(|(_, v)| v.abs()).collect();
    let limit = scale_limit(&abs, opts.robust_quantile);
    let chart = Heatmap {
        sources,
        dests,
        panels: vec![(None, cells)],
        limit,
        scale_caption: "mean score".into(),
        scale_note: None,
        opts: opts.clone(),
    };
    render(&chart, path.as_ref(), (opts.plot.width, opts.plot.height))
}

/// Two graphs' heatmaps: side by side on one colour scale (the same ±limit, from the pooled
/// |mean scores| of both, stated under the colour bar), or, with `diff`, one panel of
/// `b − a` per edge (grey where an edge is missing from either). `names` title the panels.
pub fn heatmap_pair(
    a: &polars::prelude::DataFrame,
    b: &polars::prelude::DataFrame,
    names: [&str; 2],
    diff: bool,
    path: impl AsRef<Path>,
    opts: &HeatmapOpts,
) -> Result<(), PlotError> {
    opts.plot.validate()?;
    check_quantile(opts.robust_quantile)?;
    let (ma, mb) = (edge_means(a)?, edge_means(b)?);
    let (sources, dests) = layout(ma.iter().chain(&mb).map(|(e, _)| e));
    let (mapa, mapb): (HashMap<_, _>, HashMap<_, _>) =
        (ma.iter().cloned().collect(), mb.iter().cloned().collect());
    let mut o = opts.clone();
    let chart = if diff {
        let d: HashMap<EdgeKey, f64> = mapb
            .iter()
            .filter_map(|(e, vb)| mapa.get(e).map(|va| (e.clone(), vb - va)))
            .collect();
        let abs: Vec<f64> = d.values().map(|v| v.abs()).collect();
        let label = format!("{} − {}", names[1], names[0]);
        o.plot.title = o
            .plot
            .title
            .or(Some(format!("Difference of mean edge score: {label}")));
        Heatmap {
            panels: vec![(None, grid(&sources, &dests, &d))],
            limit: scale_limit(&abs, opts.robust_quantile),
            scale_caption: label,
            scale_note: Some("grey: no edge in one or both".into()),
            sources,
            dests,
            opts: o.clone(),
        }
    } else {
        let abs: Vec<f64> = ma.iter().chain(&mb).map(|(_, v)| v.abs()).collect();
        let limit = scale_limit(&abs, opts.robust_quantile);
        o.plot.title = o.plot.title.or(Some(format!(
            "Mean edge score: {} and {}",
            names[0], names[1]
        )));
        Heatmap {
            panels: vec![
                (Some(names[0].to_string()), grid(&sources, &dests, &mapa)),
                (Some(names[1].to_string()), grid(&sources, &dests, &mapb)),
            ],
            limit,
            scale_caption: "mean score".into(),
            scale_note: Some(format!("one scale, both panels: ±{}", fmt_num(limit))),
            sources,
            dests,
            opts: o.clone(),
        }
    };
    render(&chart, path.as_ref(), (o.plot.width, o.plot.height))
}

fn check_quantile(q: f64) -> Result<(), PlotError> {
    if !(q > 0.0 && q <= 1.0) {
        return Err(PlotError::InvalidOption {
            option: "robust_quantile",
            reason: format!("must be in (0, 1], got {q}"),
        });
    }
    Ok(())
}

/// (source, destination) of an edge.
type EdgeKey = (String, String);

/// Each edge's mean score over samples, in the table's edge order.
fn edge_means(table: &polars::prelude::DataFrame) -> Result<Vec<(EdgeKey, f64)>, PlotError> {
    let matrix = ScoreMatrix::from_table(table)?;
    let mean = matrix.mean_scores();
    Ok(matrix
        .edges
        .iter()
        .zip(mean)
        .map(|(e, v)| ((e.src.clone(), e.dst.clone()), v))
        .collect())
}

/// Sources (rows) and destinations (columns) of these edges, in canonical node order.
fn layout<'a>(edges: impl Iterator<Item = &'a EdgeKey>) -> (Vec<String>, Vec<String>) {
    let mut sources: Vec<String> = Vec::new();
    let mut dests: Vec<String> = Vec::new();
    for (src, dst) in edges {
        if !sources.contains(src) {
            sources.push(src.clone());
        }
        if !dests.contains(dst) {
            dests.push(dst.clone());
        }
    }
    sources.sort_by_key(|s| node_order(s));
    dests.sort_by_key(|d| node_order(d));
    (sources, dests)
}

/// Row-major cells over (source, destination); None where `values` has no such edge.
fn grid(sources: &[String], dests: &[String], values: &HashMap<EdgeKey, f64>) -> Vec<Option<f64>> {
    let mut cells = Vec::with_capacity(sources.len() * dests.len());
    for s in sources {
        for d in dests {
            cells.push(values.get(&(s.clone(), d.clone())).copied());
        }
    }
    cells
}

/// |value| at which the colours saturate: the `q` quantile of `abs`, else its finite maximum,
/// else 1 (an all-zero graph: any scale shows white).
fn scale_limit(abs: &[f64], q: f64) -> f64 {
    let limit = quantile(abs, q);
    if limit.is_finite() && limit > 0.0 {
        return limit;
    }
    let max = abs
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if max > 0.0 {
        max
    } else {
        1.0
    }
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
    let limit = scale_limit(&abs, opts.robust_quantile);
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
        panels: vec![(None, cells)],
        limit,
        scale_caption: "mean score".into(),
        scale_note: None,
        opts: o.clone(),
    };
    render(&chart, path.as_ref(), (o.plot.width, o.plot.height))
}

struct Heatmap {
    sources: Vec<String>,
    dests: Vec<String>,
    /// One or more panels on the same rows, columns and colour scale: (caption, cells), the
    /// cells row-major over (source, destination), None where there is no edge.
    panels: Vec<(Option<String>, Vec<Option<f64>>)>,
    /// |value| at which the colours saturate.
    limit: f64,
    /// What the colour bar measures.
    scale_caption: String,
    /// A line under the colour bar (the shared scale, what grey means).
    scale_note: Option<String>,
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
        // A stated shared scale needs a wider strip for its line of text.
        let bar_width = if self.scale_note.is_some() { 230 } else { 130 };
        let (main, bar) = root.split_horizontally(w.saturating_sub(bar_width));

        let areas = main.split_evenly((1, self.panels.len()));
        for (area, (caption, cells)) in areas.iter().zip(&self.panels) {
            self.draw_panel(area, caption.as_deref(), cells)?;
        }
        self.draw_colorbar(&bar)
    }
}

impl Heatmap {
    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption: Option<&str>,
        cells: &[Option<f64>],
    ) -> Result<(), PlotError> {
        let (n_rows, n_cols) = (self.sources.len(), self.dests.len());
        // Cell c spans [c − 0.5, c + 0.5], so integer ticks sit on cell centres; rows run top to
        // bottom: row r is drawn at y = n_rows − 1 − r.
        let mut builder = ChartBuilder::on(area);
        if let Some(c) = caption {
            builder.caption(c, (FONT, LABEL_SIZE + 3).into_font());
        }
        let mut chart = builder
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
            // Panels side by side share the width, so each gets its share of the ticks.
            .x_labels(
                (self.opts.max_x_ticks / self.panels.len())
                    .max(2)
                    .min(n_cols),
            )
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
                    let color = match cells[r * n_cols + c] {
                        Some(v) => diverging(v / self.limit),
                        None => NO_EDGE,
                    };
                    let (x, y) = (c as f64, (n_rows - 1 - r) as f64);
                    Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], color.filled())
                })
            }))
            .map_err(draw_err)?;
        Ok(())
    }

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
            .caption(&self.scale_caption, (FONT, LABEL_SIZE).into_font())
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
        if let Some(note) = &self.scale_note {
            area.draw(&Text::new(
                note.as_str(),
                (8, swatch_y + 60),
                (FONT, TICK_SIZE).into_font(),
            ))
            .map_err(draw_err)?;
        }
        Ok(())
    }
}
