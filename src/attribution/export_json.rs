//! Graphs in EAP-IG's JSON layout (`Graph.to_json` / `Graph.from_json` of hannamw/EAP-IG) and
//! MIB's circuit-track submission folders, both ways.
//!
//! The layout, as EAP-IG's `graph.py` writes and reads it:
//! - `cfg`: `{n_layers, n_heads, parallel_attn_mlp, d_model}`. The loader rebuilds the *full*
//!   graph from it (`Graph.from_model`), so every node and edge name below must be one of that
//!   graph's; it reads `d_model` too (it sizes neuron masks). Extra keys are kept as they are:
//!   rlq adds `rlq` (model, method, loss, granularity, samples, T_cut).
//! - `nodes`: every node (`input`, `a{l}.h{h}`, `m{l}`, `logits`) → `{"in_graph": bool}`.
//! - `edges`: every edge → `{"score": float, "in_graph": bool}`, named `input->a0.h1<q>`,
//!   `a0.h1->m0`, `m3->logits` (a `<q|k|v>` suffix exactly when the child is a head).
//!
//! EAP-IG's nodes are query heads each with its own q, k and v input, and attention feeds the
//! MLP of its own layer (`parallel_attn_mlp: false`): that is rlq's `granularity head kv
//! ungrouped` graph, edge for edge. Block and grouped-head graphs have no such layout and are
//! refused. An rlq graph holds only the edges it scored (a circuit holds fewer): those are
//! written `in_graph: true` with their mean score; every other edge of the full graph is
//! written `in_graph: false` with score 0 (EAP-IG's loader needs a number; `cfg.rlq.scored`
//! says how many edges carry real scores).
//!
//! MIB (aaronmueller/MIB, hannamw/MIB-circuit-track README): one folder per task and model,
//! named `<task>_<model>` (e.g. `ioi_qwen2.5`), holding either one `importances.json` with
//! the scores of every edge, or nine circuits with at most 0.1, 0.2, 0.5, 1, 2, 5, 10, 20 and
//! 50 % of the edges. The nine files are named `edges_<percent>pct.json` here: MIB's own
//! example names could not be checked offline; its checker reads the folder's JSON files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::graph::{Graph, GraphMeta};
use super::run::edge_infos;
use crate::model::hooks::{Granularity, HookLayout};

/// The edge shares (percent of all edges) of MIB's nine submitted circuits.
pub const MIB_PERCENTS: [f64; 9] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0];

#[derive(Debug, thiserror::Error)]
pub enum JsonGraphError {
    #[error(
        "EAP-IG's graph has one node per query head with its own q, k and v inputs; this graph \
         is `{0}`: score it with `granularity head kv ungrouped`"
    )]
    Granularity(String),
    #[error(
        "the graph does not say its model's {0} (it came from a table?): EAP-IG's cfg needs it"
    )]
    MissingShape(&'static str),
    #[error("edge `{0}` is not in EAP-IG's graph of this shape")]
    UnknownEdge(String),
    #[error("not EAP-IG graph JSON: {0}")]
    Format(String),
    #[error("the file marks no edge `in_graph`: read it with `edges all` for its scores")]
    NoEdges,
}

type Result<T> = std::result::Result<T, JsonGraphError>;

/// The full EAP-IG graph of this shape, as rlq's layout (k/v per query head).
fn eap_ig_layout(n_layers: usize, n_heads: usize) -> HookLayout {
    HookLayout::new(Granularity::HeadUngrouped, n_layers, n_heads, n_heads)
}

/// EAP-IG's node name of a destination: `a3.h1<q>` belongs to head `a3.h1`.
fn dst_node(dst: &str) -> &str {
    dst.split('<').next().unwrap_or(dst)
}

/// The graph in EAP-IG's layout, `in_graph` on the edges in `circuit` (edge indices of `g`;
/// `None`: every edge of `g`).
pub fn to_eap_ig_json(g: &Graph, circuit: Option<&[usize]>) -> Result<Value> {
    let m = &g.meta;
    if m.granularity != Granularity::HeadUngrouped.name() {
        let name = if m.granularity.is_empty() {
            "of unknown granularity"
        } else {
            &m.granularity
        };
        return Err(JsonGraphError::Granularity(name.to_string()));
    }
    if m.n_heads == 0 {
        return Err(JsonGraphError::MissingShape("head count"));
    }
    if m.d_model == 0 {
        return Err(JsonGraphError::MissingShape("residual width (d_model)"));
    }
    let layout = eap_ig_layout(m.n_layers, m.n_heads);
    let full = edge_infos(&layout);
    let index: HashMap<String, usize> = full
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("{}->{}", e.src, e.dst), i))
        .collect();
    let mean = g.mean_scores();
    let mut score = vec![None; full.len()];
    let mut in_graph = vec![false; full.len()];
    let chosen: Vec<usize> = match circuit {
        Some(c) => c.to_vec(),
        None => (0..g.edges.len()).collect(),
    };
    for (e, s) in g.edges.iter().zip(&mean) {
        let name = format!("{}->{}", e.src, e.dst);
        let i = *index.get(&name).ok_or(JsonGraphError::UnknownEdge(name))?;
        score[i] = Some(*s);
    }
    for &c in &chosen {
        let e = &g.edges[c];
        in_graph[index[&format!("{}->{}", e.src, e.dst)]] = true;
    }
    let mut nodes = BTreeMap::new();
    for s in &layout.sources {
        nodes.insert(s.name.clone(), false);
    }
    nodes.insert("logits".to_string(), true); // EAP-IG's logits node is always in the graph
    let mut edges = Map::new();
    for (i, e) in full.iter().enumerate() {
        if in_graph[i] {
            nodes.insert(e.src.clone(), true);
            nodes.insert(dst_node(&e.dst).to_string(), true);
        }
        edges.insert(
            format!("{}->{}", e.src, e.dst),
            json!({"score": score[i].unwrap_or(0.0), "in_graph": in_graph[i]}),
        );
    }
    let nodes: Map<String, Value> = nodes
        .into_iter()
        .map(|(n, b)| (n, json!({ "in_graph": b })))
        .collect();
    Ok(json!({
        "cfg": {
            "n_layers": m.n_layers,
            "n_heads": m.n_heads,
            "parallel_attn_mlp": false,
            "d_model": m.d_model,
            "rlq": {
                "model": m.model,
                "method": m.method,
                "loss": m.loss,
                "granularity": m.granularity,
                "n_samples": g.scores.len(),
                "t_cut": m.t_cut,
                "scored": g.edges.len(),
                // Every setting, as a saved graph carries them (read back by `read_graph`).
                "settings": serde_json::to_value(m).unwrap_or(Value::Null),
            },
        },
        "nodes": nodes,
        "edges": edges,
    }))
}

/// Which edges of an EAP-IG JSON become the graph's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonEdges {
    /// Only those marked `in_graph` (a circuit).
    InGraph,
    /// Every edge, with its score (an importance file).
    All,
}

/// A graph from EAP-IG's JSON: one "sample" holding the file's scores, edges in rlq's order.
pub fn from_eap_ig_json(v: &Value, which: JsonEdges) -> Result<Graph> {
    let bad = |m: String| JsonGraphError::Format(m);
    let cfg = v.get("cfg").ok_or_else(|| bad("no `cfg`".into()))?;
    let int = |k: &str| -> Result<usize> {
        cfg.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(format!("`cfg.{k}` is not a whole number")))
    };
    let (n_layers, n_heads) = (int("n_layers")?, int("n_heads")?);
    // EAP-IG's loader needs it; a file without it still reads (0: unknown).
    let d_model = cfg
        .get("d_model")
        .and_then(Value::as_u64)
        .map_or(Ok(0), usize::try_from)
        .map_err(|_| bad("`cfg.d_model` is too large".into()))?;
    if cfg.get("parallel_attn_mlp").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "`parallel_attn_mlp` graphs (attention and MLP reading the same residual) are not \
             rlq's graph"
                .into(),
        ));
    }
    if n_layers == 0 || n_heads == 0 || n_layers > 1024 || n_heads > 1024 {
        return Err(bad(format!(
            "cfg says {n_layers} layers and {n_heads} heads"
        )));
    }
    let edges_v = v
        .get("edges")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no `edges` object".into()))?;
    if v.get("nodes").and_then(Value::as_object).is_none() {
        return Err(bad("no `nodes` object".into()));
    }
    let layout = eap_ig_layout(n_layers, n_heads);
    let full = edge_infos(&layout);
    let index: HashMap<String, usize> = full
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("{}->{}", e.src, e.dst), i))
        .collect();
    let mut found: Vec<Option<f64>> = vec![None; full.len()];
    for (name, info) in edges_v {
        let i = *index
            .get(name)
            .ok_or_else(|| JsonGraphError::UnknownEdge(name.clone()))?;
        let score = info
            .get("score")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("edge `{name}` has no numeric `score`")))?;
        let in_graph = info
            .get("in_graph")
            .and_then(Value::as_bool)
            .ok_or_else(|| bad(format!("edge `{name}` has no boolean `in_graph`")))?;
        if which == JsonEdges::All || in_graph {
            found[i] = Some(score);
        }
    }
    let keep: Vec<usize> = (0..full.len()).filter(|&i| found[i].is_some()).collect();
    if keep.is_empty() {
        return Err(JsonGraphError::NoEdges);
    }
    let rlq = cfg.get("rlq");
    let text = |k: &str| -> String {
        rlq.and_then(|r| r.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(Graph {
        edges: keep.iter().map(|&i| full[i].clone()).collect(),
        scores: vec![keep.iter().map(|&i| found[i].unwrap_or(0.0)).collect()],
        meta: {
            // The file holds one score per edge (the mean): one sample, whatever it was made of.
            let base = rlq
                .and_then(|r| r.get("settings"))
                .and_then(|v| serde_json::from_value::<GraphMeta>(v.clone()).ok())
                .unwrap_or_else(|| GraphMeta {
                    model: text("model"),
                    loss: text("loss"),
                    method: text("method"),
                    t_cut: rlq
                        .and_then(|r| r.get("t_cut"))
                        .and_then(Value::as_u64)
                        .and_then(|t| usize::try_from(t).ok()),
                    ..GraphMeta::default()
                });
            GraphMeta {
                n_layers,
                granularity: Granularity::HeadUngrouped.name().into(),
                prompt_ids: vec![0],
                sample_hashes: Vec::new(),
                // The file's records (in `settings`) are of the samples its mean was taken
                // over; the graph read back is that mean alone.
                samples: Vec::new(),
                per_sample: false,
                per_position: false,
                n_heads,
                d_model,
                ..base
            }
        },
        positions: None,
    })
}

/// Indices of the `n` edges of largest |mean score| (ties by edge order), ascending.
fn top_edges(g: &Graph, n: usize) -> Vec<usize> {
    let mean = g.mean_scores();
    let mut order: Vec<usize> = (0..mean.len()).collect();
    order.sort_by(|&a, &b| mean[b].abs().total_cmp(&mean[a].abs()).then(a.cmp(&b)));
    order.truncate(n);
    order.sort_unstable();
    order
}

/// How MIB's submission holds a task/model's circuits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MibForm {
    /// One `importances.json` with every edge's score.
    Importances,
    /// Nine circuits, `edges_<p>pct.json`, the top edges by |score| up to each share of
    /// [`MIB_PERCENTS`] of the full graph's edges.
    Circuits,
}

/// Write `dir/<folder>/…` in MIB's layout; returns the files written. `folder` is MIB's
/// `<task>_<model>` name.
pub fn write_mib(
    g: &Graph,
    dir: &Path,
    folder: &str,
    form: MibForm,
) -> std::result::Result<Vec<PathBuf>, String> {
    let valid = !folder.is_empty()
        && folder.contains('_')
        && folder
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !folder.starts_with('.');
    if !valid {
        return Err(format!(
            "MIB names a submission folder `<task>_<model>` (e.g. `ioi_qwen2.5`), got `{folder}`"
        ));
    }
    let out = dir.join(folder);
    let write = |name: String, v: Value| -> std::result::Result<PathBuf, String> {
        let p = out.join(name);
        crate::files::write_text_atomic(&p, &v.to_string())
            .map_err(|e| format!("cannot write `{}`: {e}", p.display()))?;
        Ok(p)
    };
    match form {
        MibForm::Importances => {
            let v = to_eap_ig_json(g, None).map_err(|e| e.to_string())?;
            Ok(vec![write("importances.json".into(), v)?])
        }
        MibForm::Circuits => {
            let total = eap_ig_layout(g.meta.n_layers, g.meta.n_heads.max(1))
                .edges()
                .len();
            let mut files = Vec::new();
            for p in MIB_PERCENTS {
                // At most p % of the full graph's edges (MIB: "no more than").
                let n = ((p / 100.0) * total as f64).floor() as usize;
                let keep = top_edges(g, n.min(g.edges.len()));
                let v = to_eap_ig_json(g, Some(&keep)).map_err(|e| e.to_string())?;
                files.push(write(format!("edges_{p}pct.json"), v)?);
            }
            Ok(files)
        }
    }
}
