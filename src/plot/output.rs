//! Writing a chart to disk: pick the backend from the extension, draw, write atomically.

use std::path::{Path, PathBuf};
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

/// Draw `chart` to `path` (SVG or PNG by extension) through a temp file and a rename, so a
/// reader never sees a half-written image.
pub(crate) fn render<C: Chart>(chart: &C, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    let format = Format::from_path(path)?;
    let io = |source| PlotError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    register_font(); // both backends measure text with it
    let tmp = temp_path(path, format);
    let result = match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                chart.draw(&root)?;
                root.present().map_err(draw_err)?;
            }
            std::fs::write(&tmp, svg).map_err(io)
        }
        Format::Png => {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            chart.draw(&root)?;
            root.present().map_err(draw_err)
        }
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// `dir/.name.tmp-<pid>-<n>.<ext>`: same folder (rename stays atomic), same extension (the
/// bitmap encoder picks the format from it).
fn temp_path(path: &Path, format: Format) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plot");
    let ext = match format {
        Format::Svg => "svg",
        Format::Png => "png",
    };
    path.with_file_name(format!(".{stem}.tmp-{}-{n}.{ext}", std::process::id()))
}
