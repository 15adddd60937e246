//! Circuits out of rlq: Graphviz DOT text and the EAP-IG JSON layout
//! (`{"cfg": …, "nodes": {name: in_graph}, "edges": {"u->v": {"score": s, "in_graph": true}}}`),
//! so circuits move between rlq and the Python tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::graph::Graph;

/// EAP-IG-style JSON of the graph's mean scores; every edge present is `in_graph`.
pub fn to_eap_ig_json(g: &Graph) -> serde_json::Value {
    let mean = g.mean_scores();
    let mut nodes = BTreeMap::new();
    let mut edges = serde_json::Map::new();
    for (e, s) in g.edges.iter().zip(&mean) {
        nodes.insert(e.src.clone(), true);
        // EAP-IG names destinations by their node (`a3.h1<q>` belongs to node `a3.h1`).
        let dst_node = e.dst.split('<').next().unwrap_or(&e.dst).to_string();
        nodes.insert(dst_node, true);
        edges.insert(
            format!("{}->{}", e.src, e.dst),
            serde_json::json!({"score": s, "in_graph": true}),
        );
    }
    serde_json::json!({
        "cfg": {
            "n_layers": g.meta.n_layers,
            "granularity": g.meta.granularity,
            "model": g.meta.model,
            "loss": g.meta.loss,
            "method": g.meta.method,
            "n_samples": g.scores.len(),
            "t_cut": g.meta.t_cut,
        },
        "nodes": nodes,
        "edges": edges,
    })
}

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
