//! Synthetic block graphs with chosen scores: for tests, examples and benchmarks.

use polars::prelude::*;

use super::canonical::{block_destinations, block_sources};
use crate::attribution::graph::{EdgeInfo, Graph, GraphMeta};

/// The edges of the block graph with `n_layers` layers (METHOD.md §1), sources in canonical
/// order, each source's destinations in canonical order: 4L² + 3L + 1 of them.
pub fn block_edges(n_layers: usize) -> Vec<EdgeInfo> {
    // Position in the residual stream: a source feeds every destination read after it.
    let src_pos = |layer: i64, kind: &str| match kind {
        "embed" => 0,
        "attn" => 2 * layer + 1,
        _ => 2 * layer + 2,
    };
    let dst_pos = |layer: i64, kind: &str| match kind {
        "q" | "k" | "v" => 2 * layer,
        "mlp" => 2 * layer + 1,
        _ => 2 * layer, // logits at layer L: after m{L-1} (position 2L)
    };
    let mut edges = Vec::new();
    for s in block_sources(n_layers) {
        for d in block_destinations(n_layers) {
            if src_pos(s.layer, s.kind) <= dst_pos(d.layer, d.kind) {
                edges.push(EdgeInfo {
                    src: s.name.clone(),
                    dst: d.name.clone(),
                    src_layer: s.layer,
                    dst_layer: d.layer,
                    src_kind: s.kind,
                    dst_kind: d.kind,
                });
            }
        }
    }
    edges
}

/// A graph over `block_edges(n_layers)` with `scores[sample][edge]` and prompt ids 0..N.
pub fn block_graph(n_layers: usize, scores: Vec<Vec<f64>>) -> Graph {
    let prompt_ids = (0..scores.len() as i64).collect();
    Graph {
        edges: block_edges(n_layers),
        scores,
        meta: GraphMeta {
            model: "synthetic".into(),
            n_layers,
            loss: "none".into(),
            method: "synthetic".into(),
            granularity: "block".into(),
            t_cut: None,
            prompt_ids,
            per_sample: true,
            per_position: false,
            n_heads: 0,
            d_model: 0,
        },
        positions: None,
    }
}

/// The long table (`prompt_id` + edge columns + `score`, `abs_score`) of such a graph.
pub fn block_table(n_layers: usize, scores: Vec<Vec<f64>>) -> PolarsResult<DataFrame> {
    block_graph(n_layers, scores).sample_table()
}
