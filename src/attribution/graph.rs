//! A scored graph: one row per edge, per-sample scores kept for the statistics.

use polars::prelude::*;

/// What produced a graph: every setting that changes a score, so a resume, a merge of shards
/// or a comparison can check its graphs are comparable ([`super::settings::differences`]).
/// Saved with the graph (parquet key-value metadata, a sidecar beside csv/json).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GraphMeta {
    pub model: String,
    /// blake3 of the model's weights (names, shapes, f32 values); empty when unknown.
    pub model_hash: String,
    pub n_layers: usize,
    pub loss: String,
    pub method: String,
    /// Integrated-gradient steps (`eap_ig` only).
    pub steps: Option<usize>,
    pub granularity: String,
    pub t_cut: Option<usize>,
    /// How T_cut was chosen: `alpha 0.1`, `fixed 4`, `whole answer`, `t_cut column`, `none`.
    pub t_cut_rule: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// `zero`, `corrupt` (each sample's corrupted input) or `mixed`.
    pub ablation: String,
    /// The chat template was applied to text prompts.
    pub chat: bool,
    /// One id per sample, in the order of `Graph::scores`.
    pub prompt_ids: Vec<i64>,
    /// One hash per sample, parallel to `prompt_ids`, of exactly what was scored (input tokens,
    /// corrupted input, loss targets): [`super::settings::sample_hash`].
    pub sample_hashes: Vec<String>,
    /// Show one row per (sample, edge) when printed or piped.
    pub per_sample: bool,
}

/// Per-edge description, in the graph's canonical edge order.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeInfo {
    pub src: String,
    pub dst: String,
    /// `input` is layer -1; `logits` is layer n_layers.
    pub src_layer: i64,
    pub dst_layer: i64,
    /// `embed`, `attn`, `head`, `mlp`.
    pub src_kind: &'static str,
    /// `q`, `k`, `v`, `mlp`, `logits`.
    pub dst_kind: &'static str,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub edges: Vec<EdgeInfo>,
    /// scores[sample][edge], f64.
    pub scores: Vec<Vec<f64>>,
    pub meta: GraphMeta,
}

impl Graph {
    /// Mean score over samples per edge.
    pub fn mean_scores(&self) -> Vec<f64> {
        let n = self.scores.len().max(1) as f64;
        let mut out = vec![0.0; self.edges.len()];
        for s in &self.scores {
            for (o, v) in out.iter_mut().zip(s) {
                *o += v / n;
            }
        }
        out
    }

    fn edge_columns(&self, repeat: usize) -> Vec<Column> {
        let rep = |f: &dyn Fn(&EdgeInfo) -> String| -> Vec<String> {
            (0..repeat).flat_map(|_| self.edges.iter().map(f)).collect()
        };
        let rep_i = |f: &dyn Fn(&EdgeInfo) -> i64| -> Vec<i64> {
            (0..repeat).flat_map(|_| self.edges.iter().map(f)).collect()
        };
        vec![
            Column::new("src".into(), rep(&|e| e.src.clone())),
            Column::new("dst".into(), rep(&|e| e.dst.clone())),
            Column::new("src_layer".into(), rep_i(&|e| e.src_layer)),
            Column::new("dst_layer".into(), rep_i(&|e| e.dst_layer)),
            Column::new("src_kind".into(), rep(&|e| e.src_kind.to_string())),
            Column::new("dst_kind".into(), rep(&|e| e.dst_kind.to_string())),
        ]
    }

    /// One row per edge: `src, dst, src_layer, dst_layer, src_kind, dst_kind, score, abs_score`
    /// with the score averaged over samples.
    pub fn edge_table(&self) -> PolarsResult<DataFrame> {
        let mean = self.mean_scores();
        let abs: Vec<f64> = mean.iter().map(|v| v.abs()).collect();
        let mut cols = self.edge_columns(1);
        cols.push(Column::new("score".into(), mean));
        cols.push(Column::new("abs_score".into(), abs));
        DataFrame::new_infer_height(cols)
    }

    /// One row per (sample, edge), with `prompt_id` first.
    pub fn sample_table(&self) -> PolarsResult<DataFrame> {
        let n_e = self.edges.len();
        let ids: Vec<i64> = self
            .meta
            .prompt_ids
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p, n_e))
            .collect();
        let score: Vec<f64> = self.scores.iter().flatten().copied().collect();
        let abs: Vec<f64> = score.iter().map(|v| v.abs()).collect();
        let mut cols = vec![Column::new("prompt_id".into(), ids)];
        cols.extend(self.edge_columns(self.scores.len()));
        cols.push(Column::new("score".into(), score));
        cols.push(Column::new("abs_score".into(), abs));
        DataFrame::new_infer_height(cols)
    }

    /// The table a user sees when the graph is printed or piped into a table verb.
    pub fn table(&self) -> PolarsResult<DataFrame> {
        if self.meta.per_sample {
            self.sample_table()
        } else {
            self.edge_table()
        }
    }
}
