//! Circuits (METHOD.md §8): a circuit is a set of edges of the residual graph. This layer
//! evaluates one by running the model with every other edge ablated, draws faithfulness curves,
//! and picks circuits from a scored graph (top n, threshold, greedy, pruning of dangling
//! nodes). Plain tensors and graphs in, plain numbers out; it knows nothing about the language.

pub mod evaluate;
pub mod faithfulness;
pub mod prune;

use std::collections::HashMap;

use crate::attribution::{AttributionError, Graph};
use crate::model::hooks::{Granularity, HookLayout};

pub use evaluate::{ablation_values, evaluate, Ablation, AblationValues, Evaluation};
pub use faithfulness::{faithfulness, summary, Curve, CurvePoint, FaithOptions, Ranking, Summary};

#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    #[error("{0}")]
    Invalid(String),
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Attribution(#[from] AttributionError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, CircuitError>;

/// Which edges of a layout a circuit keeps, in `layout.edges()` order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Circuit {
    pub keep: Vec<bool>,
}

impl Circuit {
    /// Every edge: the plain model.
    pub fn full(n_edges: usize) -> Self {
        Self {
            keep: vec![true; n_edges],
        }
    }
    /// No edge: every destination receives only ablated values.
    pub fn empty(n_edges: usize) -> Self {
        Self {
            keep: vec![false; n_edges],
        }
    }
    /// The circuit of the given edge indices (into `layout.edges()`).
    pub fn of(n_edges: usize, edges: impl IntoIterator<Item = usize>) -> Self {
        let mut c = Self::empty(n_edges);
        for e in edges {
            c.keep[e] = true;
        }
        c
    }
    /// Edges kept.
    pub fn n_edges(&self) -> usize {
        self.keep.iter().filter(|&&k| k).count()
    }
    /// The circuit made of a graph's edges (a graph from `patch`, or a subgraph of it).
    pub fn from_graph(g: &Graph, layout: &HookLayout) -> Result<Self> {
        let idx = graph_edge_index(g, layout)?;
        Ok(Self::of(layout.edges().len(), idx))
    }
}

/// For each edge of `g`, its index in `layout.edges()`; an edge the layout lacks is an error
/// naming it (another model, or another granularity).
pub fn graph_edge_index(g: &Graph, layout: &HookLayout) -> Result<Vec<usize>> {
    let names: HashMap<(&str, &str), usize> = layout
        .edges()
        .into_iter()
        .enumerate()
        .map(|(i, (s, d))| {
            (
                (
                    layout.sources[s].name.as_str(),
                    layout.dests[d].name.as_str(),
                ),
                i,
            )
        })
        .collect();
    g.edges
        .iter()
        .map(|e| {
            names
                .get(&(e.src.as_str(), e.dst.as_str()))
                .copied()
                .ok_or_else(|| {
                    CircuitError::Invalid(format!(
                        "edge `{}->{}` is not an edge of this model's {} graph ({} layers): the \
                         graph comes from another model or granularity",
                        e.src,
                        e.dst,
                        layout.granularity.name(),
                        layout.n_layers
                    ))
                })
        })
        .collect()
}

/// The granularity a graph was scored at: its metadata, or (for a graph rebuilt from a saved
/// table, which has none) its node names.
pub fn graph_granularity(g: &Graph) -> Granularity {
    match g.meta.granularity.as_str() {
        "head" => Granularity::Head,
        "head_ungrouped" => Granularity::HeadUngrouped,
        "block" => Granularity::Block,
        _ if g
            .edges
            .iter()
            .any(|e| e.src.contains(".h") || e.dst.contains(".h")) =>
        {
            Granularity::Head
        }
        _ => Granularity::Block,
    }
}

/// A layout for a graph without its model (for pruning in the `circuit` verb): layers from the
/// metadata or the names, head counts from the names (the largest head index seen + 1; k/v
/// destinations give the KV heads). Exact for graphs from `patch`, which name every node.
pub fn layout_of_graph(g: &Graph) -> Result<HookLayout> {
    let gran = graph_granularity(g);
    let n_layers = g
        .edges
        .iter()
        .map(|e| e.dst_layer)
        .max()
        .unwrap_or(0)
        .max(g.meta.n_layers as i64)
        .max(0) as usize;
    let (mut n_heads, mut n_kv) = (1usize, 1usize);
    if gran != Granularity::Block {
        let head_of = |name: &str| -> Option<usize> {
            let rest = name.split(".h").nth(1)?;
            rest.split('<').next()?.parse().ok()
        };
        for e in &g.edges {
            if let Some(h) = head_of(&e.src) {
                n_heads = n_heads.max(h + 1);
            }
            if let Some(h) = head_of(&e.dst) {
                if e.dst_kind == "q" {
                    n_heads = n_heads.max(h + 1);
                } else {
                    n_kv = n_kv.max(h + 1);
                }
            }
        }
        if n_heads % n_kv != 0 {
            return Err(CircuitError::Invalid(format!(
                "the graph's names give {n_heads} query heads over {n_kv} kv heads: not a \
                 whole number of heads per kv head"
            )));
        }
    }
    Ok(HookLayout::new(gran, n_layers, n_heads, n_kv))
}
