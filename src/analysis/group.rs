//! Grouping of edges: by destination layer, source layer, destination kind, source kind, or edge.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::canonical::kind_order;
use super::error::{AnalysisError, Result};
use super::matrix::{EdgeKey, ScoreMatrix};

/// How to split the edges before taking a statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum By {
    /// The whole graph: one row.
    #[default]
    None,
    /// Destination layer (`dst_layer`; `logits` is n_layers).
    Layer,
    /// Source layer (`src_layer`; `input` is -1).
    SrcLayer,
    /// Destination kind (`dst_kind`: q, k, v, mlp, logits).
    Kind,
    /// Source kind (`src_kind`: embed, attn, head, mlp).
    SrcKind,
    /// Every edge on its own (`src`, `dst`).
    Edge,
    /// Relative depth of the destination: [`DEPTH_BINS`] equal bins of layer / n_layers, then
    /// `logits`. Models of different depth line up here, where `Layer` would put layer 24 of a
    /// 24-layer model (its logits) beside block 24 of a 30-layer one.
    Depth,
}

/// Bins of relative depth for `By::Depth`: [0, 0.1), [0.1, 0.2) … [0.9, 1.0), then `logits`.
pub const DEPTH_BINS: i64 = 10;

/// The depth bin of destination layer `layer` in a model of `n_layers` layers (`logits`, at
/// layer n_layers, is bin `DEPTH_BINS`): ⌊layer · DEPTH_BINS / n_layers⌋.
pub fn depth_bin(layer: i64, n_layers: i64) -> i64 {
    if layer >= n_layers {
        DEPTH_BINS
    } else {
        (layer.max(0) * DEPTH_BINS / n_layers.max(1)).min(DEPTH_BINS - 1)
    }
}

/// The label of a depth bin: `0.0-0.1` … `0.9-1.0`, `logits`.
pub fn depth_label(bin: i64) -> String {
    if bin >= DEPTH_BINS {
        "logits".to_string()
    } else {
        let w = 1.0 / DEPTH_BINS as f64;
        format!("{:.1}-{:.1}", bin as f64 * w, (bin + 1) as f64 * w)
    }
}

/// The model depth a matrix's edges imply: the layer of its `logits` destination.
pub fn depth_of(matrix: &ScoreMatrix) -> Result<i64> {
    matrix
        .edges
        .iter()
        .find(|e| e.dst == "logits")
        .and_then(|e| e.dst_layer)
        .ok_or_else(|| AnalysisError::InvalidOption {
            option: "by",
            reason: "by depth needs the graph's `logits` edges (with dst_layer) to know the \
                     model's depth; a circuit without them has none"
                .into(),
        })
}

/// The value identifying one group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    All,
    Layer(i64),
    Kind(usize, String), // (display rank, name) so kinds sort canonically
    Edge(String, String),
}

#[derive(Debug, Clone)]
pub struct Group {
    pub key: GroupKey,
    /// Indices into the matrix's edges.
    pub edges: Vec<usize>,
}

impl std::str::FromStr for By {
    type Err = AnalysisError;

    /// The words a user types after `by`: `layer`, `src_layer`, `kind`, `src_kind`, `edge`
    /// (`dst_layer` / `dst_kind` are accepted too), or `none`.
    fn from_str(s: &str) -> Result<By> {
        Ok(match s {
            "none" | "" => By::None,
            "layer" | "dst_layer" => By::Layer,
            "src_layer" => By::SrcLayer,
            "kind" | "dst_kind" => By::Kind,
            "src_kind" => By::SrcKind,
            "edge" => By::Edge,
            "depth" => By::Depth,
            other => {
                return Err(AnalysisError::InvalidOption {
                    option: "by",
                    reason: format!(
                        "`{other}` is not a grouping: use layer, src_layer, kind, src_kind, depth or edge"
                    ),
                })
            }
        })
    }
}

impl By {
    /// The key column(s) this grouping adds to a result table.
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            By::None => &[],
            By::Layer => &["dst_layer"],
            By::SrcLayer => &["src_layer"],
            By::Kind => &["dst_kind"],
            By::SrcKind => &["src_kind"],
            By::Edge => &["src", "dst"],
            By::Depth => &["depth"],
        }
    }

    fn key_of(self, edge: &EdgeKey) -> Result<GroupKey> {
        let need = |column: &str| AnalysisError::MissingColumn {
            column: column.to_string(),
            needed_for: "grouping by it",
        };
        Ok(match self {
            By::None => GroupKey::All,
            By::Layer => GroupKey::Layer(edge.dst_layer.ok_or_else(|| need("dst_layer"))?),
            By::SrcLayer => GroupKey::Layer(edge.src_layer.ok_or_else(|| need("src_layer"))?),
            By::Kind => {
                let k = edge.dst_kind.clone().ok_or_else(|| need("dst_kind"))?;
                GroupKey::Kind(kind_order(&k), k)
            }
            By::SrcKind => {
                let k = edge.src_kind.clone().ok_or_else(|| need("src_kind"))?;
                GroupKey::Kind(kind_order(&k), k)
            }
            By::Edge => GroupKey::Edge(edge.src.clone(), edge.dst.clone()),
            // Depth bins need the matrix's depth: `group_edges` computes them.
            By::Depth => {
                return Err(AnalysisError::InvalidOption {
                    option: "by",
                    reason: "depth is binned per matrix (group_edges)".into(),
                })
            }
        })
    }
}

/// Split the matrix's edges into groups: layers ascending, kinds in canonical order, edges in
/// the table's order.
pub fn group_edges(matrix: &ScoreMatrix, by: By) -> Result<Vec<Group>> {
    if by == By::Edge {
        return Ok(matrix
            .edges
            .iter()
            .enumerate()
            .map(|(i, e)| Group {
                key: GroupKey::Edge(e.src.clone(), e.dst.clone()),
                edges: vec![i],
            })
            .collect());
    }
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    let depth = if by == By::Depth {
        Some(depth_of(matrix)?)
    } else {
        None
    };
    for (i, edge) in matrix.edges.iter().enumerate() {
        let key = match depth {
            Some(l) => {
                let d = edge.dst_layer.ok_or_else(|| AnalysisError::MissingColumn {
                    column: "dst_layer".into(),
                    needed_for: "grouping by depth",
                })?;
                GroupKey::Layer(depth_bin(d, l))
            }
            None => by.key_of(edge)?,
        };
        groups.entry(key).or_default().push(i);
    }
    Ok(groups
        .into_iter()
        .map(|(key, edges)| Group { key, edges })
        .collect())
}

/// The key columns of a result table, one entry per group.
pub fn key_columns(by: By, keys: &[GroupKey]) -> Vec<Column> {
    let names = by.key_columns();
    match by {
        By::None => vec![],
        By::Layer | By::SrcLayer => {
            let v: Vec<i64> = keys
                .iter()
                .map(|k| match k {
                    GroupKey::Layer(l) => *l,
                    _ => 0,
                })
                .collect();
            vec![Column::new(names[0].into(), v)]
        }
        By::Depth => {
            let v: Vec<String> = keys
                .iter()
                .map(|k| match k {
                    GroupKey::Layer(b) => depth_label(*b),
                    _ => String::new(),
                })
                .collect();
            vec![Column::new(names[0].into(), v)]
        }
        By::Kind | By::SrcKind => {
            let v: Vec<String> = keys
                .iter()
                .map(|k| match k {
                    GroupKey::Kind(_, s) => s.clone(),
                    _ => String::new(),
                })
                .collect();
            vec![Column::new(names[0].into(), v)]
        }
        By::Edge => {
            let (mut src, mut dst) = (Vec::new(), Vec::new());
            for k in keys {
                if let GroupKey::Edge(s, d) = k {
                    src.push(s.clone());
                    dst.push(d.clone());
                }
            }
            vec![
                Column::new(names[0].into(), src),
                Column::new(names[1].into(), dst),
            ]
        }
    }
}
