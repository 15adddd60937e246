//! A graph as a file: its per-sample table (`Graph::sample_table`) plus its settings
//! ([`GraphMeta`]) as JSON — in parquet's key-value metadata, or in a sidecar file beside a
//! csv/json table — so that `read` gives the graph back, settings and all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::graph::{EdgeInfo, Graph, GraphMeta};

/// The parquet key-value metadata key (and the sidecar's top-level key) holding the settings.
pub const META_KEY: &str = "rlq.graph";
/// Version of the saved layout; a newer file is refused rather than misread.
const VERSION: u64 = 1;

/// The settings of `g` as the JSON text saved with it.
pub fn meta_json(meta: &GraphMeta) -> String {
    serde_json::json!({ META_KEY: VERSION, "meta": meta }).to_string()
}

/// Settings from the saved JSON text.
pub fn parse_meta(text: &str) -> Result<GraphMeta, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("graph settings are not JSON: {e}"))?;
    match v.get(META_KEY).and_then(|x| x.as_u64()) {
        Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "graph saved in layout {other}; this rlq reads layout {VERSION}"
            ))
        }
        None => return Err(format!("no `{META_KEY}` key: not rlq graph settings")),
    }
    serde_json::from_value(v["meta"].clone()).map_err(|e| format!("graph settings: {e}"))
}

/// The sidecar beside a csv/json table: `g.csv` → `g.csv.rlq-graph.json`.
pub fn sidecar_path(table: &Path) -> PathBuf {
    let mut s = table.as_os_str().to_os_string();
    s.push(".rlq-graph.json");
    PathBuf::from(s)
}

const KINDS: [&str; 8] = ["embed", "attn", "head", "mlp", "q", "k", "v", "logits"];

/// Rebuild a graph from its per-sample table (`prompt_id, src, dst, src_layer, dst_layer,
/// src_kind, dst_kind, score`). With `meta` (the saved settings), the table's samples must be
/// exactly the ones it lists, in its order; without, the settings are unknown (empty).
pub fn from_sample_table(df: &DataFrame, meta: Option<GraphMeta>) -> Result<Graph, String> {
    let need = [
        "prompt_id",
        "src",
        "dst",
        "src_layer",
        "dst_layer",
        "src_kind",
        "dst_kind",
        "score",
    ];
    if df.column("position").is_ok() {
        return Err(
            "this is a per-position table (one row per sample, position and edge): it \
                    is not read back as a graph; resume from the graph value itself, or save \
                    one scored with per_position false"
                .into(),
        );
    }
    for c in need {
        if df.column(c).is_err() {
            return Err(format!(
                "a saved graph table needs column `{c}` (save the graph itself: `save g to …`)"
            ));
        }
    }
    let s = |c: &str| -> Result<Vec<String>, String> {
        Ok(df
            .column(c)
            .and_then(|c| c.cast(&DataType::String))
            .map_err(|e| e.to_string())?
            .str()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let i = |c: &str| -> Result<Vec<Option<i64>>, String> {
        Ok(df
            .column(c)
            .and_then(|c| c.cast(&DataType::Int64))
            .map_err(|e| e.to_string())?
            .i64()
            .map_err(|e| e.to_string())?
            .iter()
            .collect())
    };
    let score: Vec<Option<f64>> = df
        .column("score")
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(|e| e.to_string())?
        .f64()
        .map_err(|e| e.to_string())?
        .iter()
        .collect();
    let (pid, src, dst) = (i("prompt_id")?, s("src")?, s("dst")?);
    let (sl, dl, sk, dk) = (
        i("src_layer")?,
        i("dst_layer")?,
        s("src_kind")?,
        s("dst_kind")?,
    );
    let kind = |k: &str, column: &str, row: usize| -> Result<&'static str, String> {
        KINDS.iter().find(|x| **x == k).copied().ok_or_else(|| {
            format!(
                "column `{column}`, row {row}: `{k}` is not a node kind ({})",
                KINDS.join(", ")
            )
        })
    };
    let whole = |v: Option<i64>, column: &str, row: usize| -> Result<i64, String> {
        v.ok_or_else(|| format!("column `{column}`, row {row} is empty"))
    };
    let mut edge_index: HashMap<(String, String), usize> = HashMap::new();
    let mut edges = Vec::new();
    let mut sample_index: HashMap<i64, usize> = HashMap::new();
    let mut ids = Vec::new();
    let mut rows: Vec<(usize, usize, f64)> = Vec::with_capacity(df.height());
    for r in 0..df.height() {
        let key = (src[r].clone(), dst[r].clone());
        let e = match edge_index.get(&key) {
            Some(&e) => e,
            None => {
                edges.push(EdgeInfo {
                    src: src[r].clone(),
                    dst: dst[r].clone(),
                    src_layer: whole(sl[r], "src_layer", r)?,
                    dst_layer: whole(dl[r], "dst_layer", r)?,
                    src_kind: kind(&sk[r], "src_kind", r)?,
                    dst_kind: kind(&dk[r], "dst_kind", r)?,
                });
                edge_index.insert(key, edges.len() - 1);
                edges.len() - 1
            }
        };
        let p = whole(pid[r], "prompt_id", r)?;
        let sidx = *sample_index.entry(p).or_insert_with(|| {
            ids.push(p);
            ids.len() - 1
        });
        let v = score[r].ok_or_else(|| format!("column `score`, row {r} is empty"))?;
        rows.push((sidx, e, v));
    }
    let mut scores = vec![vec![f64::NAN; edges.len()]; ids.len()];
    let mut seen = vec![vec![false; edges.len()]; ids.len()];
    for (s, e, v) in rows {
        if seen[s][e] {
            return Err(format!(
                "edge {}->{} appears twice for prompt_id {}",
                edges[e].src, edges[e].dst, ids[s]
            ));
        }
        seen[s][e] = true;
        scores[s][e] = v;
    }
    if seen.iter().flatten().any(|v| !v) {
        return Err("the saved table is missing some (sample, edge) rows".into());
    }
    let n_layers = edges.iter().map(|e| e.dst_layer).max().unwrap_or(0).max(0) as usize;
    let meta = match meta {
        Some(m) => {
            if m.prompt_ids != ids {
                return Err(format!(
                    "the table holds {} samples that do not match the {} its settings list \
                     (was the file edited?)",
                    ids.len(),
                    m.prompt_ids.len()
                ));
            }
            if !m.samples.is_empty() && m.samples.len() != ids.len() {
                return Err(format!(
                    "the settings hold {} sample records for {} samples (was the file edited?)",
                    m.samples.len(),
                    ids.len()
                ));
            }
            if m.n_layers != n_layers {
                return Err(format!(
                    "the table's edges reach layer {n_layers}, its settings say {} layers",
                    m.n_layers
                ));
            }
            m
        }
        None => GraphMeta {
            n_layers,
            prompt_ids: ids,
            per_sample: true,
            ..GraphMeta::default()
        },
    };
    // A saved table holds one row per (sample, edge): per-position scores are not saved, so
    // the graph read back has none and says so (a resume with `per_position true` is refused).
    let meta = GraphMeta {
        per_position: false,
        ..meta
    };
    Ok(Graph {
        edges,
        scores,
        meta,
        positions: None,
    })
}
