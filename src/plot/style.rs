//! Shared look: sizes, fonts, colours.

use plotters::style::RGBColor;

/// Options every chart takes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOpts {
    /// Chart title; each chart has a descriptive default.
    pub title: Option<String>,
    /// Image size in pixels.
    pub width: u32,
    pub height: u32,
    /// Axis descriptions; default to the column names.
    pub x_label: Option<String>,
    pub y_label: Option<String>,
    /// Legend names, one per y column in order (e.g. the models behind columns `g0`, `g1`);
    /// missing or empty entries use the column's name.
    pub series_names: Vec<String>,
}

impl Default for PlotOpts {
    fn default() -> Self {
        PlotOpts {
            title: None,
            width: 1000,
            height: 600,
            x_label: None,
            y_label: None,
            series_names: Vec::new(),
        }
    }
}

impl PlotOpts {
    /// The legend name of the `i`-th y column `column`.
    pub(crate) fn series_name(&self, i: usize, column: &str) -> String {
        match self.series_names.get(i) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => column.to_string(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), super::PlotError> {
        if self.width < 200 || self.height < 150 || self.width > 20000 || self.height > 20000 {
            return Err(super::PlotError::InvalidOption {
                option: "size",
                reason: format!(
                    "{}×{} px: width and height must be within 200×150 .. 20000×20000",
                    self.width, self.height
                ),
            });
        }
        Ok(())
    }
}

pub(crate) const FONT: &str = "sans-serif";
pub(crate) const TITLE_SIZE: u32 = 24;
pub(crate) const LABEL_SIZE: u32 = 15;
pub(crate) const TICK_SIZE: u32 = 13;

/// Tableau 10: distinct, colour-blind-friendlier series colours.
pub(crate) const SERIES: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn series_color(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// Diverging blue–white–red (ColorBrewer RdBu ends) for t in [-1, 1]; 0 is white.
pub(crate) fn diverging(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let (end, s) = if t >= 0.0 {
        ((178.0, 24.0, 43.0), t)
    } else {
        ((33.0, 102.0, 172.0), -t)
    };
    let mix = |e: f64| (255.0 + (e - 255.0) * s).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// Format an axis number compactly: plain for moderate magnitudes, scientific otherwise.
pub(crate) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&a) {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// The legend every chart uses: top right, on a translucent white box.
pub(crate) fn draw_legend<'a, DB, CT>(
    chart: &mut plotters::chart::ChartContext<'a, DB, CT>,
) -> Result<(), super::error::PlotError>
where
    DB: plotters::prelude::DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    use plotters::prelude::*;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, TICK_SIZE).into_font())
        .draw()
        .map_err(super::error::draw_err)
}

/// Legend and panel names for several graphs: each graph's model (`meta.model`, shortened to
/// its file stem, so `models/smollm2-135m.gguf` reads `smollm2-135m`), else its fallback (the
/// variable name or `g0`, `g1`…). Graphs whose model is unknown, or shared with another graph
/// here (two runs of one model), keep their fallback, so no two entries read the same.
pub fn series_names(models: &[Option<&str>], fallbacks: &[String]) -> Vec<String> {
    let stem = |m: &str| {
        let m = m.trim();
        std::path::Path::new(m)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| m.to_string())
    };
    let stems: Vec<Option<String>> = models
        .iter()
        .map(|m| m.filter(|m| !m.trim().is_empty()).map(stem))
        .collect();
    fallbacks
        .iter()
        .enumerate()
        .map(|(i, fallback)| match stems.get(i).cloned().flatten() {
            Some(s) if stems.iter().filter(|o| o.as_deref() == Some(&s)).count() == 1 => s,
            _ => fallback.clone(),
        })
        .collect()
}
