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
    /// What each sample's score rests on, parallel to `prompt_ids`: the answer, the tokens in
    /// the loss, the loss and its gradient's norm at `logits`. Empty for graphs that have none
    /// (saved before rlq kept them, read from EAP-IG's JSON, or resumed/merged from such a
    /// graph): never partly filled.
    pub samples: Vec<SampleRecord>,
    /// `patch … positions`: the answer tokens chosen to enter the loss (None: the first T_cut).
    pub answer_positions: Option<AnswerPositions>,
    /// Show one row per (sample, edge) when printed or piped.
    pub per_sample: bool,
    /// Keep S[u,v,t] per position (`Graph::positions`); shown one row per (sample, position, edge).
    pub per_position: bool,
    /// Query heads and residual width of the model (EAP-IG's graph config needs both).
    pub n_heads: usize,
    pub d_model: usize,
}

/// One scored sample, as `samples g` shows it (issue 12: the answer used and the tokens in the
/// loss were not visible, so a T_cut of 1 on short answers went unnoticed).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SampleRecord {
    /// The whole answer used (given or generated), before any truncation; empty for
    /// `logit_diff`, which reads no answer.
    pub answer_ids: Vec<u32>,
    /// `answer_ids` decoded, when a tokenizer was at hand (else empty).
    pub answer: String,
    /// Indices into `answer_ids` of the tokens whose prediction enters the loss: `0..T_cut`, or
    /// the `positions` asked for. Empty for `logit_diff`.
    pub loss_positions: Vec<usize>,
    /// The tokens at `loss_positions` (for `logit_diff`: the target and the wrong token).
    pub loss_ids: Vec<u32>,
    /// Answer tokens the loss window spans (the last loss position + 1); None for `logit_diff`.
    pub t_cut: Option<usize>,
    /// The loss at the clean input.
    pub loss: f64,
    /// Frobenius norm (in f64) of ∂L/∂H_logits, the loss's gradient with respect to the final
    /// residual stream (the input of the final norm) over every fed position (only the positions
    /// the loss reads have a nonzero gradient there). Taken at the clean input: for `eap` from
    /// the backward that gives the scores; for `eap_ig` from the backward of the path's last
    /// point, α = 1, i.e. the clean input (its other points are not the sample's own scale);
    /// for `patch` from one extra backward at the clean input. The scale of the loss at the
    /// output, to make statistics such as intensity scale-free (issue 10).
    pub grad_norm: f64,
}

/// Which answer tokens enter the loss when chosen one by one (`patch … positions`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerPositions {
    /// These indices into each sample's answer (0 is the first answer token), ascending, unique.
    Indices(Vec<usize>),
    /// The last token of each sample's answer.
    Last,
}

impl std::fmt::Display for AnswerPositions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerPositions::Indices(v) => {
                let v: Vec<String> = v.iter().map(|i| i.to_string()).collect();
                write!(f, "[{}]", v.join(", "))
            }
            AnswerPositions::Last => write!(f, "last"),
        }
    }
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

/// Per-position scores S[u,v,t] of every sample (`patch … per_position true`), in the order of
/// `Graph::scores`: summed over positions they give that sample's edge scores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PositionScores {
    /// Per sample: every token fed (prompt ++ truncated answer).
    pub token_ids: Vec<Vec<u32>>,
    /// Per sample: each token as text, when a tokenizer was at hand (else empty: ids are shown).
    pub tokens: Vec<Vec<String>>,
    /// Per sample: `[t * n_edges + e]`.
    pub scores: Vec<Vec<f64>>,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub edges: Vec<EdgeInfo>,
    /// scores[sample][edge], f64.
    pub scores: Vec<Vec<f64>>,
    pub meta: GraphMeta,
    /// Kept only when asked for (they cost 8·T·E bytes per sample).
    pub positions: Option<PositionScores>,
}

impl Graph {
    /// The graph restricted to the edges `keep` (indices, in the order given), per-position
    /// scores included.
    pub fn subset(&self, keep: &[usize]) -> Graph {
        let n_e = self.edges.len();
        Graph {
            edges: keep.iter().map(|&i| self.edges[i].clone()).collect(),
            scores: self
                .scores
                .iter()
                .map(|s| keep.iter().map(|&i| s[i]).collect())
                .collect(),
            meta: self.meta.clone(),
            positions: self.positions.as_ref().map(|p| PositionScores {
                token_ids: p.token_ids.clone(),
                tokens: p.tokens.clone(),
                scores: p
                    .scores
                    .iter()
                    .map(|s| {
                        s.chunks(n_e.max(1))
                            .flat_map(|row| keep.iter().map(|&i| row[i]))
                            .collect()
                    })
                    .collect(),
            }),
        }
    }

    /// Each sample's [`SampleRecord::grad_norm`], in the order of `scores`; None when the graph
    /// keeps no sample records.
    pub fn grad_norms(&self) -> Option<Vec<f64>> {
        self.has_sample_records()
            .then(|| self.meta.samples.iter().map(|r| r.grad_norm).collect())
    }

    /// The graph keeps one [`SampleRecord`] per scored sample.
    pub fn has_sample_records(&self) -> bool {
        !self.scores.is_empty() && self.meta.samples.len() == self.scores.len()
    }

    /// One row per sample: `prompt_id, answer, answer_ids, t_cut, loss_positions, loss_ids,
    /// loss, grad_norm`. None when the graph keeps no sample records.
    pub fn sample_records_table(&self) -> Option<PolarsResult<DataFrame>> {
        if !self.has_sample_records() {
            return None;
        }
        let r = &self.meta.samples;
        let list_u32 = |name: &str, f: &dyn Fn(&SampleRecord) -> Vec<i64>| -> Column {
            let cells: Vec<Series> = r.iter().map(|x| Series::new("".into(), f(x))).collect();
            let mut s = Series::new(name.into(), cells);
            if s.dtype() != &DataType::List(Box::new(DataType::Int64)) {
                // Every cell empty infers a list of nulls: say what the cells are.
                s = s
                    .cast(&DataType::List(Box::new(DataType::Int64)))
                    .unwrap_or(s);
            }
            s.into_column()
        };
        let cols = vec![
            Column::new("prompt_id".into(), self.meta.prompt_ids.clone()),
            Column::new(
                "answer".into(),
                r.iter().map(|x| x.answer.clone()).collect::<Vec<_>>(),
            ),
            list_u32("answer_ids", &|x| {
                x.answer_ids.iter().map(|&t| i64::from(t)).collect()
            }),
            Column::new(
                "t_cut".into(),
                r.iter()
                    .map(|x| x.t_cut.and_then(|t| i64::try_from(t).ok()))
                    .collect::<Vec<_>>(),
            ),
            list_u32("loss_positions", &|x| {
                x.loss_positions
                    .iter()
                    .filter_map(|&t| i64::try_from(t).ok())
                    .collect()
            }),
            list_u32("loss_ids", &|x| {
                x.loss_ids.iter().map(|&t| i64::from(t)).collect()
            }),
            Column::new("loss".into(), r.iter().map(|x| x.loss).collect::<Vec<_>>()),
            Column::new(
                "grad_norm".into(),
                r.iter().map(|x| x.grad_norm).collect::<Vec<_>>(),
            ),
        ];
        Some(DataFrame::new_infer_height(cols))
    }

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

    /// One row per (sample, position, edge): `prompt_id, position, token`, the edge columns,
    /// `score, abs_score`. None without per-position scores.
    pub fn position_table(&self) -> Option<PolarsResult<DataFrame>> {
        let p = self.positions.as_ref()?;
        let n_e = self.edges.len();
        let (mut ids, mut pos, mut tok, mut idx) = (vec![], vec![], vec![], vec![]);
        for (k, s) in p.scores.iter().enumerate() {
            let n_t = s.len().checked_div(n_e).unwrap_or(0);
            for t in 0..n_t {
                let text = match p.tokens.get(k).and_then(|v| v.get(t)) {
                    Some(text) => text.clone(),
                    None => p
                        .token_ids
                        .get(k)
                        .and_then(|v| v.get(t))
                        .map_or_else(String::new, |id| id.to_string()),
                };
                for e in 0..n_e {
                    ids.push(self.meta.prompt_ids.get(k).copied().unwrap_or(k as i64));
                    pos.push(t as i64);
                    tok.push(text.clone());
                    idx.push(e);
                }
            }
        }
        let pick_s = |f: &dyn Fn(&EdgeInfo) -> String| -> Vec<String> {
            idx.iter().map(|&e| f(&self.edges[e])).collect()
        };
        let pick_i = |f: &dyn Fn(&EdgeInfo) -> i64| -> Vec<i64> {
            idx.iter().map(|&e| f(&self.edges[e])).collect()
        };
        let score: Vec<f64> = p.scores.iter().flatten().copied().collect();
        let abs: Vec<f64> = score.iter().map(|v| v.abs()).collect();
        let cols = vec![
            Column::new("prompt_id".into(), ids),
            Column::new("position".into(), pos),
            Column::new("token".into(), tok),
            Column::new("src".into(), pick_s(&|e| e.src.clone())),
            Column::new("dst".into(), pick_s(&|e| e.dst.clone())),
            Column::new("src_layer".into(), pick_i(&|e| e.src_layer)),
            Column::new("dst_layer".into(), pick_i(&|e| e.dst_layer)),
            Column::new("src_kind".into(), pick_s(&|e| e.src_kind.to_string())),
            Column::new("dst_kind".into(), pick_s(&|e| e.dst_kind.to_string())),
            Column::new("score".into(), score),
            Column::new("abs_score".into(), abs),
        ];
        Some(DataFrame::new_infer_height(cols))
    }

    /// The table a user sees when the graph is printed or piped into a table verb: per
    /// position when kept, else per sample or per edge.
    pub fn table(&self) -> PolarsResult<DataFrame> {
        if let Some(t) = self.position_table() {
            return t;
        }
        if self.meta.per_sample {
            self.sample_table()
        } else {
            self.edge_table()
        }
    }
}
