//! Every chart renders to valid SVG and PNG files of the requested size.

use std::path::Path;

use rlq::analysis::synthetic::block_table;
use rlq::analysis::{side_by_side, By, Stat};
use rlq::plot::*;

fn scores(samples: usize, edges: usize) -> Vec<Vec<f64>> {
    // Deterministic, signed, heavy-ish tailed, with some structure along the edge index.
    (0..samples)
        .map(|k| {
            (0..edges)
                .map(|e| {
                    let x = ((e * 7919 + k * 104729) % 1000) as f64 / 1000.0 - 0.5;
                    x * x * x * 10.0 + (e as f64 / edges as f64 - 0.3) * 0.2
                })
                .collect()
        })
        .collect()
}

/// Minimal XML well-formedness: tags nest and close, attributes are quoted. Returns the root
/// element's start tag.
fn check_xml(text: &str) -> String {
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if rest.starts_with("<?") {
            rest = &rest[rest.find("?>").expect("unclosed <?") + 2..];
            continue;
        }
        if rest.starts_with("<!--") {
            rest = &rest[rest.find("-->").expect("unclosed comment") + 3..];
            continue;
        }
        // Find the tag's end outside quotes.
        let mut in_quote = None;
        let mut end = None;
        for (i, c) in rest.char_indices().skip(1) {
            match (in_quote, c) {
                (None, '"') | (None, '\'') => in_quote = Some(c),
                (Some(q), c) if c == q => in_quote = None,
                (None, '>') => {
                    end = Some(i);
                    break;
                }
                (None, '<') => panic!("'<' inside a tag: {}", &rest[..i]),
                _ => {}
            }
        }
        let end = end.expect("unterminated tag");
        let tag = &rest[1..end];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("close without open");
            assert_eq!(open, name.trim(), "mismatched close tag");
        } else {
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap()
                .to_string();
            if root.is_none() {
                root = Some(tag.to_string());
            } else {
                assert!(!stack.is_empty(), "second root element <{name}>");
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    root.expect("no root element")
}

fn check_svg(path: &Path, width: u32, height: u32) {
    let text = std::fs::read_to_string(path).unwrap();
    let root = check_xml(&text);
    assert!(root.starts_with("svg"), "root is <{root}>");
    assert!(root.contains(&format!("width=\"{width}\"")), "{root}");
    assert!(root.contains(&format!("height=\"{height}\"")), "{root}");
    assert!(text.contains("<text"), "no text in {}", path.display());
}

fn check_png(path: &Path, width: u32, height: u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG magic");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (width, height));
}

fn no_temp_files_left(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.contains(".tmp-"), "temp file left behind: {name}");
    }
}

#[test]
fn heatmap_renders_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let l = 6;
    let table = block_table(l, scores(3, 4 * l * l + 3 * l + 1)).unwrap();
    let opts = HeatmapOpts::default();
    for ext in ["svg", "png"] {
        let path = dir.path().join(format!("heat.{ext}"));
        heatmap(&table, &path, &opts).unwrap();
        if ext == "svg" {
            check_svg(&path, 1400, 1000);
        } else {
            check_png(&path, 1400, 1000);
        }
    }
    no_temp_files_left(dir.path());
}

#[test]
fn bars_lines_and_hist_render_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let l = 4;
    let n = 4 * l * l + 3 * l + 1;
    let g0 = block_table(l, scores(5, n)).unwrap();
    let g1 = block_table(
        l,
        scores(5, n)
            .into_iter()
            .map(|r| r.iter().map(|v| v * 1.3).collect())
            .collect(),
    )
    .unwrap();
    let stat = Stat::Intensity { dense_layers: None };
    let by_layer = side_by_side(&["base", "tuned"], &[g0.clone(), g1], stat, By::Layer).unwrap();
    let opts = PlotOpts {
        width: 800,
        height: 500,
        ..PlotOpts::default()
    };
    for ext in ["svg", "png"] {
        let p = |name: &str| dir.path().join(format!("{name}.{ext}"));
        bars(&by_layer, "dst_layer", &["base", "tuned"], p("bars"), &opts).unwrap();
        lines(
            &by_layer,
            "dst_layer",
            &["base", "tuned"],
            p("lines"),
            &opts,
        )
        .unwrap();
        let h = HistPlotOpts {
            plot: opts.clone(),
            log_y: true,
            ..HistPlotOpts::default()
        };
        hist(&g0, p("hist_log"), &h).unwrap();
        hist(&g0, p("hist"), &HistPlotOpts { log_y: false, ..h }).unwrap();
        for name in ["bars", "lines", "hist_log", "hist"] {
            if ext == "svg" {
                check_svg(&p(name), 800, 500);
            } else {
                check_png(&p(name), 800, 500);
            }
        }
    }
    no_temp_files_left(dir.path());
}

#[test]
fn plot_errors_are_values() {
    let dir = tempfile::tempdir().unwrap();
    let table = block_table(2, scores(2, 23)).unwrap();
    let bad = heatmap(&table, dir.path().join("x.jpg"), &HeatmapOpts::default()).unwrap_err();
    assert!(matches!(bad, PlotError::UnknownFormat(_)), "{bad}");
    let missing = bars(
        &table,
        "nope",
        &["score"],
        dir.path().join("b.svg"),
        &PlotOpts::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&missing, PlotError::MissingColumn { column, .. } if column == "nope"),
        "{missing}"
    );
    let text = lines(
        &table,
        "src",
        &["score"],
        dir.path().join("l.svg"),
        &PlotOpts::default(),
    )
    .unwrap_err();
    assert!(matches!(text, PlotError::NotNumeric { .. }), "{text}");
    let no_score = table.drop("score").unwrap();
    assert!(heatmap(&no_score, dir.path().join("h.svg"), &HeatmapOpts::default()).is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written on error"
    );
    // Nested output folders are created.
    let nested = dir.path().join("a/b/h.svg");
    hist(&table, &nested, &HistPlotOpts::default()).unwrap();
    assert!(nested.exists());
}

/// `RLQ_PLOT_DIR=/some/dir cargo test --test lang plot_render` writes sample charts to look at.
#[test]
fn sample_charts_for_inspection() {
    let Ok(dir) = std::env::var("RLQ_PLOT_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let l = 30;
    let g = block_table(l, scores(4, 4 * l * l + 3 * l + 1)).unwrap();
    heatmap(&g, dir.join("heatmap.png"), &HeatmapOpts::default()).unwrap();
    heatmap(&g, dir.join("heatmap.svg"), &HeatmapOpts::default()).unwrap();
    let g1 = block_table(
        l,
        scores(4, 4 * l * l + 3 * l + 1)
            .into_iter()
            .map(|r| r.iter().map(|v| v * 1.2).collect())
            .collect(),
    )
    .unwrap();
    let stat = Stat::Intensity { dense_layers: None };
    let t = side_by_side(&["base", "tuned"], &[g.clone(), g1], stat, By::Layer).unwrap();
    bars(
        &t,
        "dst_layer",
        &["base", "tuned"],
        dir.join("bars.png"),
        &PlotOpts::default(),
    )
    .unwrap();
    lines(
        &t,
        "dst_layer",
        &["base", "tuned"],
        dir.join("lines.png"),
        &PlotOpts::default(),
    )
    .unwrap();
    let h = HistPlotOpts {
        log_y: true,
        ..HistPlotOpts::default()
    };
    hist(&g, dir.join("hist.png"), &h).unwrap();
    let g2 = block_table(l, scaled(&scores(4, 4 * l * l + 3 * l + 1), 1.5)).unwrap();
    let ho = HeatmapOpts::default();
    heatmap_pair(
        &g,
        &g2,
        ["smollm2-135m", "tuned"],
        false,
        dir.join("pair.png"),
        &ho,
    )
    .unwrap();
    heatmap_pair(
        &g,
        &g2,
        ["smollm2-135m", "tuned"],
        true,
        dir.join("diff.png"),
        &ho,
    )
    .unwrap();
    let band = polars::prelude::df!(
        "dst_layer" => [0i64, 1, 2, 3, 4],
        "delta" => [0.1, 0.3, -0.2, 0.05, 0.0],
        "ci_low" => [0.0, 0.1, -0.4, -0.1, -0.05],
        "ci_high" => [0.2, 0.45, -0.05, 0.2, 0.1],
    )
    .unwrap();
    lines(
        &band,
        "dst_layer",
        &["delta"],
        dir.join("band.png"),
        &PlotOpts::default(),
    )
    .unwrap();
}

/// Whether the SVG has a text element reading exactly `s` (plotters writes the text on its own
/// line between the tags).
fn has_text(svg: &str, s: &str) -> bool {
    svg.lines().any(|l| l.trim() == s)
}

/// Mean over samples of each edge's score: the heatmaps' cell values, computed here
/// independently of `ScoreMatrix`.
fn edge_means(scores: &[Vec<f64>]) -> Vec<f64> {
    let n = scores.len() as f64;
    (0..scores[0].len())
        .map(|e| scores.iter().map(|s| s[e]).sum::<f64>() / n)
        .collect()
}

/// `fmt_num` as the charts print a number in 1e-3..1e4: three decimals, trailing zeros cut.
fn shown(v: f64) -> String {
    assert!(
        (1e-3..1e4).contains(&v.abs()),
        "{v} outside the plain range"
    );
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn scaled(s: &[Vec<f64>], k: f64) -> Vec<Vec<f64>> {
    s.iter()
        .map(|r| r.iter().map(|v| v * k).collect())
        .collect()
}

#[test]
fn pair_heatmap_shares_one_scale_and_names_its_panels() {
    let dir = tempfile::tempdir().unwrap();
    let l = 3;
    let n = 4 * l * l + 3 * l + 1;
    let (sa, sb) = (scores(4, n), scaled(&scores(4, n), 3.0));
    let (a, b) = (
        block_table(l, sa.clone()).unwrap(),
        block_table(l, sb.clone()).unwrap(),
    );
    // Quantile 1: the scale is the exact max |mean|, which here is b's (3× a's).
    let opts = HeatmapOpts {
        robust_quantile: 1.0,
        ..HeatmapOpts::default()
    };
    let max_b = edge_means(&sb).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let max_a = edge_means(&sa).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!((max_b - 3.0 * max_a).abs() < 1e-12 && shown(max_a) != shown(max_b));
    let path = dir.path().join("pair.svg");
    heatmap_pair(
        &a,
        &b,
        ["smollm2-135m", "smollm2-tuned"],
        false,
        &path,
        &opts,
    )
    .unwrap();
    check_svg(&path, 1400, 1000);
    let text = std::fs::read_to_string(&path).unwrap();
    for want in [
        format!("one scale, both panels: ±{}", shown(max_b)),
        format!("clipped at ±{}", shown(max_b)),
        "Mean edge score: smollm2-135m and smollm2-tuned".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?}");
    }
    assert!(
        has_text(&text, "smollm2-135m") && has_text(&text, "smollm2-tuned"),
        "panel names"
    );
    assert!(
        !text.contains(&format!("±{}", shown(max_a))),
        "a's own max is not the scale"
    );
    // Both panels drew every cell: two grids of (2L+1) sources × (4L+1) destinations at most;
    // a single heatmap draws half as many rectangles for the cells.
    let single = dir.path().join("one.svg");
    heatmap(&b, &single, &opts).unwrap();
    let rects = |p: &Path| std::fs::read_to_string(p).unwrap().matches("<rect").count();
    let cells = (2 * l + 1) * (4 * l + 1);
    assert!(
        rects(&path) >= rects(&single) + cells / 2,
        "second panel missing"
    );
    let single_text = std::fs::read_to_string(&single).unwrap();
    assert!(single_text.contains(&format!("clipped at ±{}", shown(max_b))));
    assert!(!single_text.contains("both panels"));
}

#[test]
fn difference_heatmap_scales_to_the_largest_difference() {
    let dir = tempfile::tempdir().unwrap();
    let l = 3;
    let n = 4 * l * l + 3 * l + 1;
    let (sa, sb) = (scores(4, n), scaled(&scores(4, n), 3.0));
    let (a, b) = (
        block_table(l, sa.clone()).unwrap(),
        block_table(l, sb.clone()).unwrap(),
    );
    let opts = HeatmapOpts {
        robust_quantile: 1.0,
        ..HeatmapOpts::default()
    };
    // b − a = 2a per edge, computed from the scores, not from the chart's code.
    let (ma, mb) = (edge_means(&sa), edge_means(&sb));
    let max_diff = ma
        .iter()
        .zip(&mb)
        .fold(0.0f64, |m, (x, y)| m.max((y - x).abs()));
    let path = dir.path().join("diff.svg");
    heatmap_pair(&a, &b, ["base", "tuned"], true, &path, &opts).unwrap();
    check_svg(&path, 1400, 1000);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("Difference of mean edge score: tuned − base"));
    assert!(
        text.contains(&format!("clipped at ±{}", shown(max_diff))),
        "scale"
    );
    // With quantile 1 the largest difference saturates: RdBu's red or blue end is drawn.
    assert!(
        text.contains("#B2182B") || text.contains("#2166AC"),
        "no saturated cell"
    );
    // An edge missing from one graph has no difference: its cell is grey (RGB 225), so dropping
    // b's 2L+1 edges into `logits` greys exactly that many more cells.
    use polars::prelude::*;
    let b_cut = b
        .clone()
        .lazy()
        .filter(col("dst").neq(lit("logits")))
        .collect()
        .unwrap();
    let cut = dir.path().join("cut.svg");
    heatmap_pair(&a, &b_cut, ["base", "tuned"], true, &cut, &opts).unwrap();
    let grey = |svg: &str| svg.matches("#E1E1E1").count();
    let cut_text = std::fs::read_to_string(&cut).unwrap();
    assert_eq!(grey(&cut_text), grey(&text) + 2 * l + 1);
}

#[test]
fn lines_draw_interval_bands_and_given_names() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let x = [0i64, 1, 2, 3];
    let delta = [0.1, 0.3, -0.2, 0.05];
    let t = df!(
        "dst_layer" => x,
        "delta" => delta,
        "ci_low" => delta.map(|d| d - 0.1),
        "ci_high" => delta.map(|d| d + 0.1),
    )
    .unwrap();
    let path = dir.path().join("band.svg");
    lines(&t, "dst_layer", &["delta"], &path, &PlotOpts::default()).unwrap();
    check_svg(&path, 1000, 600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("<polygon").count(), 1, "one band");
    assert!(
        text.contains("delta: ci_low to ci_high"),
        "band in the legend"
    );
    // Per-column intervals, and names for the legend instead of the column names.
    let t = df!(
        "dst_layer" => x,
        "g0" => delta,
        "g0_lo" => delta.map(|d| d - 0.1),
        "g0_hi" => delta.map(|d| d + 0.1),
        "g1" => delta.map(|d| d * 2.0),
    )
    .unwrap();
    let opts = PlotOpts {
        series_names: series_names(
            &[
                Some("models/smollm2-135m.gguf"),
                Some("models/qwen2.5-0.5b.gguf"),
            ],
            &["g0".into(), "g1".into()],
        ),
        ..PlotOpts::default()
    };
    let path = dir.path().join("named.svg");
    lines(&t, "dst_layer", &["g0", "g1"], &path, &opts).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches("<polygon").count(),
        1,
        "only g0 has an interval"
    );
    for want in [
        "smollm2-135m",
        "qwen2.5-0.5b",
        "smollm2-135m: g0_lo to g0_hi",
    ] {
        assert!(has_text(&text, want), "missing {want:?}");
    }
    assert!(!has_text(&text, "g0") && !has_text(&text, "g1"));
    // No interval columns: no band.
    let path = dir.path().join("plain.svg");
    lines(&t, "dst_layer", &["g1"], &path, &PlotOpts::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path)
            .unwrap()
            .matches("<polygon")
            .count(),
        0
    );
}

#[test]
fn series_names_use_model_stems_unless_unknown_or_shared() {
    let fb = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        series_names(
            &[Some("models/smollm2-135m-instruct.q4_1.gguf"), Some("qwen")],
            &fb(&["g0", "g1"])
        ),
        fb(&["smollm2-135m-instruct.q4_1", "qwen"])
    );
    // Two graphs of one model: the stems would collide, so both keep their variable names;
    // an unknown model keeps its own.
    assert_eq!(
        series_names(
            &[Some("m/a.gguf"), Some("other/a.gguf"), None, Some("b.gguf")],
            &fb(&["base", "tuned", "g2", "g3"])
        ),
        fb(&["base", "tuned", "g2", "b"])
    );
    assert_eq!(series_names(&[Some("  ")], &fb(&["g0"])), fb(&["g0"]));
}
