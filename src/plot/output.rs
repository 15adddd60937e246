//! Writing a chart to disk: pick the backend from the extension, draw, write atomically.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::{draw_err, PlotError};

/// Image formats by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Format, PlotError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(PlotError::UnknownFormat(path.display().to_string())),
        }
    }
}

/// A chart that can draw itself on any plotters backend.
pub(crate) trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>;
}

static FONT: Once = Once::new();

/// Text is measured (SVG, PNG) and rasterised (PNG) by ab_glyph from a bundled font.
fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        // A bundled, known-good font: failure would be a build defect, and text would only
        // be missing from PNGs, so it is not worth an error path.
        let _ = plotters::style::register_font(super::style::FONT, FontStyle::Normal, bytes);
    });
}

/// Draw `chart` to `path` (SVG or PNG by extension) through [`crate::files::write_atomic`], so
/// a reader never sees a half-written image.
pub(crate) fn render<C: Chart>(chart: &C, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    let format = Format::from_path(path)?;
    let io = |source| PlotError::Io {
        path: path.display().to_string(),
        source,
    };
    register_font(); // both backends measure text with it
    let ext = match format {
        Format::Svg => "svg",
        Format::Png => "png", // the bitmap encoder picks the format from the temp file's name
    };
    crate::files::write_atomic(path, ext, |file, tmp| match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                chart.draw(&root)?;
                root.present().map_err(draw_err)?;
            }
            std::io::Write::write_all(file, svg.as_bytes()).map_err(io)
        }
        Format::Png => {
            // The encoder opens the (freshly created, unpredictably named) temp file by path.
            let root = BitMapBackend::new(tmp, size).into_drawing_area();
            chart.draw(&root)?;
            root.present().map_err(draw_err)
        }
    })
    .map_err(|e| match e {
        crate::files::WriteError::Io(source) => io(source),
        crate::files::WriteError::Write(e) => e,
    })
}
