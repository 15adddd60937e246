//! The long edge table as a dense `[sample][edge]` matrix: every statistic is computed from here,
//! so the table is parsed once and the numeric loops run over contiguous f64s.

use std::collections::HashMap;

use polars::prelude::*;

use super::error::{AnalysisError, Result};

/// One edge as the table describes it. Layer and kind columns are optional in the input;
/// they are only needed for grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeKey {
    pub src: String,
    pub dst: String,
    pub src_layer: Option<i64>,
    pub dst_layer: Option<i64>,
    pub src_kind: Option<String>,
    pub dst_kind: Option<String>,
}

impl EdgeKey {
    pub fn name(&self) -> String {
        format!("{}->{}", self.src, self.dst)
    }
}

/// Scores of N samples over E edges, samples sorted by `prompt_id`, edges in first-seen order.
#[derive(Debug, Clone)]
pub struct ScoreMatrix {
    pub prompt_ids: Vec<i64>,
    pub edges: Vec<EdgeKey>,
    /// Row-major: `values[k * n_edges + e]`.
    pub values: Vec<f64>,
    /// Each sample's loss-gradient norm at `logits`, from the table's optional
    /// [`GRAD_NORM_COLUMN`] (what `normalize grad` divides by).
    pub grad_norms: Option<Vec<f64>>,
}

/// The long table's optional per-sample column of loss-gradient norms at `logits`.
pub const GRAD_NORM_COLUMN: &str = "grad_norm";

/// Prompt id given to a table without a `prompt_id` column (a mean table is one sample).
pub const SINGLE_SAMPLE_ID: i64 = 0;

impl ScoreMatrix {
    /// Parse a long (`prompt_id` + edge columns + `score`) or mean (no `prompt_id`) edge table.
    /// Every sample must have exactly one row per edge.
    pub fn from_table(table: &DataFrame) -> Result<Self> {
        if table.height() == 0 {
            return Err(AnalysisError::EmptyTable);
        }
        let src = string_column(table, "src", "it names an edge's source")?;
        let dst = string_column(table, "dst", "it names an edge's destination")?;
        let score = f64_column(table, "score", "the statistics are computed from it")?;
        let prompt = optional_i64_column(table, "prompt_id")?;
        let src_layer = optional_i64_column(table, "src_layer")?;
        let dst_layer = optional_i64_column(table, "dst_layer")?;
        let src_kind = optional_string_column(table, "src_kind")?;
        let dst_kind = optional_string_column(table, "dst_kind")?;
        let grad_norm = optional_f64_column(table, GRAD_NORM_COLUMN)?;

        let n_rows = table.height();
        let mut prompt_ids: Vec<i64> = match &prompt {
            Some(p) => p.clone(),
            None => vec![SINGLE_SAMPLE_ID],
        };
        prompt_ids.sort_unstable();
        prompt_ids.dedup();
        let sample_of: HashMap<i64, usize> = prompt_ids
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, i))
            .collect();

        let mut edge_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut edges: Vec<EdgeKey> = Vec::new();
        let mut cells: Vec<(usize, usize, f64)> = Vec::with_capacity(n_rows);
        let mut grad_norms: Option<Vec<Option<f64>>> =
            grad_norm.as_ref().map(|_| vec![None; prompt_ids.len()]);
        for row in 0..n_rows {
            let key = (src[row], dst[row]);
            let e = *edge_of.entry(key).or_insert_with(|| {
                edges.push(EdgeKey {
                    src: key.0.to_string(),
                    dst: key.1.to_string(),
                    src_layer: src_layer.as_ref().map(|c| c[row]),
                    dst_layer: dst_layer.as_ref().map(|c| c[row]),
                    src_kind: src_kind.as_ref().map(|c| c[row].to_string()),
                    dst_kind: dst_kind.as_ref().map(|c| c[row].to_string()),
                });
                edges.len() - 1
            });
            let k = match &prompt {
                Some(p) => sample_of[&p[row]],
                None => 0,
            };
            if let (Some(g), Some(col)) = (grad_norms.as_mut(), grad_norm.as_ref()) {
                // One value per sample: a table whose rows disagree mixed two runs.
                match g[k] {
                    None => g[k] = Some(col[row]),
                    Some(v) if v == col[row] => {}
                    Some(v) => {
                        return Err(AnalysisError::InvalidOption {
                            option: "grad_norm",
                            reason: format!(
                                "prompt_id {} has two grad_norm values ({v} and {}): it is one \
                                 number per sample",
                                prompt_ids[k], col[row]
                            ),
                        })
                    }
                }
            }
            cells.push((k, e, score[row]));
        }

        let n_edges = edges.len();
        let mut values = vec![0.0; prompt_ids.len() * n_edges];
        let mut seen = vec![false; values.len()];
        for (k, e, v) in cells {
            let i = k * n_edges + e;
            if seen[i] {
                return Err(AnalysisError::DuplicateRow {
                    prompt_id: prompt_ids[k],
                    src: edges[e].src.clone(),
                    dst: edges[e].dst.clone(),
                });
            }
            if !v.is_finite() {
                return Err(AnalysisError::NonFiniteScore {
                    prompt_id: prompt_ids[k],
                    src: edges[e].src.clone(),
                    dst: edges[e].dst.clone(),
                    value: v,
                });
            }
            seen[i] = true;
            values[i] = v;
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            let (k, e) = (i / n_edges, i % n_edges);
            return Err(AnalysisError::MissingRow {
                prompt_id: prompt_ids[k],
                src: edges[e].src.clone(),
                dst: edges[e].dst.clone(),
            });
        }
        Ok(ScoreMatrix {
            prompt_ids,
            edges,
            values,
            // Every sample has rows (checked above), so every sample has its value.
            grad_norms: grad_norms.map(|g| g.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect()),
        })
    }

    pub fn n_samples(&self) -> usize {
        self.prompt_ids.len()
    }

    pub fn n_edges(&self) -> usize {
        self.edges.len()
    }

    /// Scores of sample `k` over all edges.
    pub fn row(&self, k: usize) -> &[f64] {
        let n = self.n_edges();
        &self.values[k * n..(k + 1) * n]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.values.chunks(self.n_edges().max(1))
    }

    /// The sub-matrix of the given edges (same samples).
    pub fn select_edges(&self, edge_indices: &[usize]) -> ScoreMatrix {
        let mut values = Vec::with_capacity(self.n_samples() * edge_indices.len());
        for row in self.rows() {
            values.extend(edge_indices.iter().map(|&e| row[e]));
        }
        ScoreMatrix {
            prompt_ids: self.prompt_ids.clone(),
            edges: edge_indices
                .iter()
                .map(|&e| self.edges[e].clone())
                .collect(),
            values,
            grad_norms: self.grad_norms.clone(),
        }
    }

    /// S̄_e: the mean score of each edge over samples.
    pub fn mean_scores(&self) -> Vec<f64> {
        let mut mean = vec![0.0; self.n_edges()];
        for row in self.rows() {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        let n = self.n_samples() as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        mean
    }

    /// |S̄_e|: the absolute value of each edge's mean score.
    pub fn abs_mean_scores(&self) -> Vec<f64> {
        self.mean_scores().into_iter().map(f64::abs).collect()
    }

    /// The largest destination layer (`logits` sits at n_layers), if layers are known.
    pub fn max_dst_layer(&self) -> Option<i64> {
        self.edges.iter().filter_map(|e| e.dst_layer).max()
    }
}

fn missing(table: &DataFrame, column: &str, needed_for: &'static str) -> Option<AnalysisError> {
    if table.column(column).is_err() {
        Some(AnalysisError::MissingColumn {
            column: column.to_string(),
            needed_for,
        })
    } else {
        None
    }
}

fn no_nulls(column: &Column, name: &str) -> Result<()> {
    if column.null_count() > 0 {
        let row = (0..column.len())
            .find(|&i| column.get(i).map(|v| v.is_null()).unwrap_or(true))
            .unwrap_or(0);
        return Err(AnalysisError::NullValue {
            column: name.to_string(),
            row,
        });
    }
    Ok(())
}

fn string_column<'a>(
    table: &'a DataFrame,
    name: &str,
    needed_for: &'static str,
) -> Result<Vec<&'a str>> {
    if let Some(err) = missing(table, name, needed_for) {
        return Err(err);
    }
    let column = table.column(name)?;
    no_nulls(column, name)?;
    let chunked = column.str().map_err(|_| AnalysisError::ColumnType {
        column: name.to_string(),
        expected: "string",
        found: column.dtype().to_string(),
    })?;
    Ok(chunked.iter().map(|v| v.unwrap_or("")).collect())
}

fn optional_string_column(table: &DataFrame, name: &str) -> Result<Option<Vec<String>>> {
    if table.column(name).is_err() {
        return Ok(None);
    }
    Ok(Some(
        string_column(table, name, "")?
            .into_iter()
            .map(str::to_string)
            .collect(),
    ))
}

fn numeric_column(table: &DataFrame, name: &str, dtype: &DataType) -> Result<Column> {
    let column = table.column(name)?;
    no_nulls(column, name)?;
    if !column.dtype().is_primitive_numeric() {
        return Err(AnalysisError::ColumnType {
            column: name.to_string(),
            expected: "number",
            found: column.dtype().to_string(),
        });
    }
    Ok(column.cast(dtype)?)
}

fn f64_column(table: &DataFrame, name: &str, needed_for: &'static str) -> Result<Vec<f64>> {
    if let Some(err) = missing(table, name, needed_for) {
        return Err(err);
    }
    let column = numeric_column(table, name, &DataType::Float64)?;
    Ok(column.f64()?.into_no_null_iter().collect())
}

fn optional_f64_column(table: &DataFrame, name: &str) -> Result<Option<Vec<f64>>> {
    if table.column(name).is_err() {
        return Ok(None);
    }
    let column = numeric_column(table, name, &DataType::Float64)?;
    Ok(Some(column.f64()?.into_no_null_iter().collect()))
}

fn optional_i64_column(table: &DataFrame, name: &str) -> Result<Option<Vec<i64>>> {
    if table.column(name).is_err() {
        return Ok(None);
    }
    let column = numeric_column(table, name, &DataType::Int64)?;
    Ok(Some(column.i64()?.into_no_null_iter().collect()))
}
