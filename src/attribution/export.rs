//! Circuits out of rlq as Graphviz DOT text (EAP-IG's JSON layout: `export_json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::graph::Graph;

fn dot_id(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Edges a DOT drawing shows by default: beyond a few hundred Graphviz's layout is unreadable
/// (and slow); the legend says how many were left out and how to choose others.
pub const DOT_MAX_EDGES: usize = 200;

/// `a3<q>` → (`a3`, Some(`q`)): a destination port belongs to its head's (or block's) node.
fn node_and_port(name: &str) -> (&str, Option<&str>) {
    match name.split_once('<') {
        Some((node, port)) => (node, Some(port.trim_end_matches('>'))),
        None => (name, None),
    }
}

/// Within a layer, attention (and its heads) reads the residual before the MLP does.
fn kind_order(kind: &str) -> u8 {
    match kind {
        "embed" => 0,
        "attn" | "head" | "q" | "k" | "v" => 1,
        "mlp" => 2,
        _ => 3,
    }
}

struct DotNode {
    rank: (i64, u8),
    kind: &'static str,
    /// q/k/v ports that some drawn edge enters, in that order.
    ports: Vec<&'static str>,
}

/// Graphviz DOT of the graph's mean scores, drawn bottom (input) to top (logits): one rank per
/// layer and sublayer, kept in order by an invisible chain of layer labels; attention nodes are
/// records whose q/k/v ports receive the edges into that head's queries, keys and values; edge
/// width ∝ |score|, red positive, blue negative; a legend states the run and the scale. A graph
/// of more than [`DOT_MAX_EDGES`] edges is pruned to its strongest ones (the legend says so).
pub fn to_dot(g: &Graph) -> String {
    to_dot_limited(g, DOT_MAX_EDGES)
}

/// [`to_dot`] with another edge limit (`usize::MAX` for every edge).
pub fn to_dot_limited(g: &Graph, max_edges: usize) -> String {
    let mean = g.mean_scores();
    let mut keep: Vec<usize> = (0..g.edges.len()).collect();
    if keep.len() > max_edges {
        keep.sort_by(|&a, &b| mean[b].abs().total_cmp(&mean[a].abs()));
        keep.truncate(max_edges);
        keep.sort_unstable();
    }
    let max = keep
        .iter()
        .fold(0f64, |m, &i| m.max(mean[i].abs()))
        .max(f64::MIN_POSITIVE);

    let mut nodes: BTreeMap<String, DotNode> = BTreeMap::new();
    for &i in &keep {
        let e = &g.edges[i];
        for (name, layer, kind) in [
            (&e.src, e.src_layer, e.src_kind),
            (&e.dst, e.dst_layer, e.dst_kind),
        ] {
            let (node, port) = node_and_port(name);
            let entry = nodes.entry(node.to_string()).or_insert_with(|| DotNode {
                rank: (layer, kind_order(kind)),
                kind: match kind {
                    "q" | "k" | "v" => "attn",
                    k => k,
                },
                ports: Vec::new(),
            });
            if let Some(p) = ["q", "k", "v"].into_iter().find(|p| Some(*p) == port) {
                if !entry.ports.contains(&p) {
                    entry.ports.push(p);
                }
            }
        }
    }

    let mut out =
        String::from("digraph circuit {\n  rankdir=BT;\n  newrank=true;\n  node [fontsize=10];\n");
    // Nodes: records with their ports for attention, boxes for MLPs, ellipses at the ends.
    for (name, n) in &nodes {
        let attrs = if n.ports.is_empty() {
            match n.kind {
                "mlp" => "shape=box, style=filled, fillcolor=\"#eef3e2\"".to_string(),
                "attn" | "head" => "shape=box, style=filled, fillcolor=\"#fdf2e0\"".to_string(),
                _ => "shape=ellipse".to_string(),
            }
        } else {
            let mut ports: Vec<&str> = n.ports.clone();
            ports.sort_by_key(|p| ["q", "k", "v"].iter().position(|x| x == p));
            let fields: Vec<String> = ports.iter().map(|p| format!("<{p}> {p}")).collect();
            format!(
                "shape=record, style=filled, fillcolor=\"#fdf2e0\", label=\"{{{{{}}}|{}}}\"",
                fields.join("|"),
                name.replace('"', "'")
            )
        };
        let _ = writeln!(out, "  {} [{attrs}];", dot_id(name));
    }
    // Ranks in order: each rank holds an invisible-edged label node, chained bottom to top.
    let mut ranks: BTreeMap<(i64, u8), Vec<&str>> = BTreeMap::new();
    for (name, n) in &nodes {
        ranks.entry(n.rank).or_default().push(name);
    }
    let mut anchors = Vec::new();
    for ((layer, sub), names) in &ranks {
        let anchor = format!("rank_{layer}_{sub}");
        let label = match sub {
            0 => "input".to_string(),
            1 => format!("layer {layer}"),
            2 => format!("layer {layer} mlp"),
            _ => "output".to_string(),
        };
        let ids: Vec<String> = names.iter().map(|n| dot_id(n)).collect();
        let _ = writeln!(
            out,
            "  {{ rank=same; \"{anchor}\" [shape=plaintext, fontcolor=\"#888888\", label=\"{label}\"]; {}; }}",
            ids.join("; ")
        );
        anchors.push(anchor);
    }
    if anchors.len() > 1 {
        let chain: Vec<String> = anchors.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = writeln!(out, "  {} [style=invis];", chain.join(" -> "));
    }
    for &i in &keep {
        let (e, s) = (&g.edges[i], mean[i]);
        let w = 0.5 + 4.5 * s.abs() / max;
        let color = if s >= 0.0 { "#c0392b" } else { "#2e6fba" };
        let (dst, port) = node_and_port(&e.dst);
        let head = match port {
            Some(p) if ["q", "k", "v"].contains(&p) => format!("{}:{p}", dot_id(dst)),
            _ => dot_id(dst),
        };
        let _ = writeln!(
            out,
            "  {} -> {head} [penwidth={w:.2}, color=\"{color}\", tooltip=\"{} to {}: {s:.4e}\"];",
            dot_id(node_and_port(&e.src).0),
            e.src.replace('"', "'"),
            e.dst.replace('"', "'"),
        );
    }
    let m = &g.meta;
    let shown = if keep.len() < g.edges.len() {
        format!(
            "the {} strongest of {} edges (export (circuit g top N) to choose)",
            keep.len(),
            g.edges.len()
        )
    } else {
        format!("all {} edges", g.edges.len())
    };
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let legend = [
        format!("model: {}", or_dash(&m.model)),
        format!(
            "{} samples, method {}, loss {}, T_cut {}",
            g.scores.len(),
            or_dash(&m.method),
            or_dash(&m.loss),
            m.t_cut.map_or("-".to_string(), |t| t.to_string())
        ),
        format!("showing {shown}"),
        format!("red: score > 0, blue: score < 0; width ∝ |score| (widest {max:.3e})"),
        "q / k / v: the edge enters that head's queries, keys or values".to_string(),
    ];
    let rows: Vec<String> = legend
        .iter()
        .map(|l| format!("<tr><td align=\"left\">{}</td></tr>", html_escape(l)))
        .collect();
    let _ = writeln!(
        out,
        "  subgraph cluster_legend {{ label=\"legend\"; fontsize=10; color=\"#bbbbbb\"; \
         legend [shape=plaintext, fontsize=9, label=<<table border=\"0\">{}</table>>]; }}",
        rows.join("")
    );
    out.push_str("}\n");
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
