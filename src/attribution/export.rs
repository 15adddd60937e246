//! Circuits out of rlq as Graphviz DOT text (EAP-IG's JSON layout: `export_json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::graph::Graph;

fn dot_id(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz DOT: one rank per layer, edge width by |score|, red positive / blue negative.
pub fn to_dot(g: &Graph) -> String {
    let mean = g.mean_scores();
    let max = mean
        .iter()
        .fold(0f64, |m, s| m.max(s.abs()))
        .max(f64::MIN_POSITIVE);
    let mut by_layer: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in &g.edges {
        by_layer.entry(e.src_layer).or_default().push(e.src.clone());
        by_layer.entry(e.dst_layer).or_default().push(e.dst.clone());
    }
    let mut out =
        String::from("digraph circuit {\n  rankdir=BT;\n  node [shape=box, fontsize=10];\n");
    for (layer, mut names) in by_layer {
        names.sort();
        names.dedup();
        let ids: Vec<String> = names.iter().map(|n| dot_id(n)).collect();
        let _ = writeln!(
            out,
            "  {{ rank=same; /* layer {layer} */ {}; }}",
            ids.join("; ")
        );
    }
    for (e, s) in g.edges.iter().zip(&mean) {
        let w = 0.5 + 4.5 * s.abs() / max;
        let color = if *s >= 0.0 { "#c0392b" } else { "#2e6fba" };
        let _ = writeln!(
            out,
            "  {} -> {} [penwidth={w:.2}, color=\"{color}\", tooltip=\"{s:.4e}\"];",
            dot_id(&e.src),
            dot_id(&e.dst)
        );
    }
    out.push_str("}\n");
    out
}
