//! Per-edge and per-node views: node entropy, relative change, top-n overlap.

use polars::prelude::*;

use super::canonical::node_order;
use super::error::Result;
use super::matrix::ScoreMatrix;
use super::measures::{entropy_of_weights, kendall, pearson, spearman};
use super::pairing::match_edges;

/// Per source node: entropy of its outgoing edges' |S̄_e| (mean over samples, then abs).
/// Columns `src [src_layer src_kind] n_edges node_entropy node_entropy_norm` (norm = entropy /
/// ln n_edges, NaN for a single edge); sources in canonical order.
pub fn node_entropy(table: &DataFrame) -> Result<DataFrame> {
    let m = ScoreMatrix::from_table(table)?;
    let abs_mean = m.abs_mean_scores();
    let mut sources: Vec<&str> = Vec::new();
    let mut outgoing: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, e) in m.edges.iter().enumerate() {
        let list = outgoing.entry(e.src.as_str()).or_insert_with(|| {
            sources.push(e.src.as_str());
            Vec::new()
        });
        list.push(i);
    }
    sources.sort_by_key(|s| node_order(s));
    let (mut layer, mut kind, mut count, mut h, mut h_norm) =
        (vec![], vec![], vec![], vec![], vec![]);
    for s in &sources {
        let edges = &outgoing[s];
        let weights: Vec<f64> = edges.iter().map(|&i| abs_mean[i]).collect();
        let entropy = entropy_of_weights(&weights);
        let first = &m.edges[edges[0]];
        layer.push(first.src_layer);
        kind.push(first.src_kind.clone());
        count.push(edges.len() as i64);
        h.push(entropy);
        h_norm.push(entropy / (edges.len() as f64).ln());
    }
    let mut cols = vec![Column::new("src".into(), sources.clone())];
    if layer.iter().all(Option::is_some) {
        cols.push(Column::new("src_layer".into(), layer));
    }
    if kind.iter().all(Option::is_some) {
        cols.push(Column::new("src_kind".into(), kind));
    }
    cols.push(Column::new("n_edges".into(), count));
    cols.push(Column::new("node_entropy".into(), h));
    cols.push(Column::new("node_entropy_norm".into(), h_norm));
    Ok(DataFrame::new(sources.len(), cols)?)
}

/// Per edge: (|S̄_tuned| − |S̄_base|) / |S̄_base|, matched on (src, dst). The edge sets must be
/// equal (else `EdgeMismatch`); prompts need not be. A zero base gives ±inf (or NaN for 0/0).
/// Columns: the base table's edge columns, `base_abs`, `tuned_abs`, `rel_change`.
pub fn rel_change(base: &DataFrame, tuned: &DataFrame) -> Result<DataFrame> {
    let b = ScoreMatrix::from_table(base)?;
    let t = ScoreMatrix::from_table(tuned)?;
    let to_tuned = match_edges(&b, &t)?;
    let b_abs = b.abs_mean_scores();
    let t_abs_all = t.abs_mean_scores();
    let t_abs: Vec<f64> = to_tuned.iter().map(|&j| t_abs_all[j]).collect();
    let rel: Vec<f64> = b_abs.iter().zip(&t_abs).map(|(b, t)| (t - b) / b).collect();
    let mut cols = edge_columns(&b);
    cols.push(Column::new("base_abs".into(), b_abs));
    cols.push(Column::new("tuned_abs".into(), t_abs));
    cols.push(Column::new("rel_change".into(), rel));
    Ok(DataFrame::new(b.n_edges(), cols)?)
}

/// Agreement of two graphs' most important edges, each statistic saying what it covers:
/// - over the top `n` of each by |S̄_e| (ties by table order): `shared` (in both tops),
///   `jaccard` (shared / union) and `spearman_top`, Spearman of the signed mean scores over the
///   union of the two tops (`top_edges` edges);
/// - over all `n_edges` (common) edges: Spearman of the signed means (`spearman`) and of |S̄_e|
///   (`spearman_abs`), Kendall's τ-b (`kendall`) and Pearson (`pearson`) of the signed means.
///
/// The edge sets must be equal. One row: `top_n shared jaccard top_edges spearman_top spearman
/// spearman_abs kendall pearson n_edges`.
pub fn overlap(g0: &DataFrame, g1: &DataFrame, n: usize) -> Result<DataFrame> {
    let a = ScoreMatrix::from_table(g0)?;
    let b = ScoreMatrix::from_table(g1)?;
    let a_to_b = match_edges(&a, &b)?;
    let a_mean = a.mean_scores();
    let b_all = b.mean_scores();
    let b_mean: Vec<f64> = a_to_b.iter().map(|&j| b_all[j]).collect();
    let top = |mean: &[f64]| -> Vec<usize> {
        let mut order: Vec<usize> = (0..mean.len()).collect();
        order.sort_by(|&i, &j| mean[j].abs().total_cmp(&mean[i].abs()));
        order.truncate(n);
        order
    };
    let top_a: std::collections::HashSet<usize> = top(&a_mean).into_iter().collect();
    let top_b: std::collections::HashSet<usize> = top(&b_mean).into_iter().collect();
    let shared = top_a.intersection(&top_b).count();
    let mut union: Vec<usize> = top_a.union(&top_b).copied().collect();
    union.sort_unstable();
    let jaccard = if union.is_empty() {
        f64::NAN
    } else {
        shared as f64 / union.len() as f64
    };
    let pick = |v: &[f64]| union.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    Ok(DataFrame::new(
        1,
        vec![
            Column::new("top_n".into(), [n as i64]),
            Column::new("shared".into(), [shared as i64]),
            Column::new("jaccard".into(), [jaccard]),
            Column::new("top_edges".into(), [union.len() as i64]),
            Column::new(
                "spearman_top".into(),
                [spearman(&pick(&a_mean), &pick(&b_mean))],
            ),
            Column::new("spearman".into(), [spearman(&a_mean, &b_mean)]),
            Column::new(
                "spearman_abs".into(),
                [spearman(&abs(&a_mean), &abs(&b_mean))],
            ),
            Column::new("kendall".into(), [kendall(&a_mean, &b_mean)]),
            Column::new("pearson".into(), [pearson(&a_mean, &b_mean)]),
            Column::new("n_edges".into(), [a.n_edges() as i64]),
        ],
    )?)
}

/// The edge-describing columns of a matrix (those the source table had).
fn edge_columns(m: &ScoreMatrix) -> Vec<Column> {
    let e = &m.edges;
    let mut cols = vec![
        Column::new(
            "src".into(),
            e.iter().map(|x| x.src.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "dst".into(),
            e.iter().map(|x| x.dst.clone()).collect::<Vec<_>>(),
        ),
    ];
    let layers = |f: &dyn Fn(&super::matrix::EdgeKey) -> Option<i64>| -> Option<Vec<i64>> {
        e.iter().map(f).collect()
    };
    let kinds = |f: &dyn Fn(&super::matrix::EdgeKey) -> Option<String>| -> Option<Vec<String>> {
        e.iter().map(f).collect()
    };
    if let Some(v) = layers(&|x| x.src_layer) {
        cols.push(Column::new("src_layer".into(), v));
    }
    if let Some(v) = layers(&|x| x.dst_layer) {
        cols.push(Column::new("dst_layer".into(), v));
    }
    if let Some(v) = kinds(&|x| x.src_kind.clone()) {
        cols.push(Column::new("src_kind".into(), v));
    }
    if let Some(v) = kinds(&|x| x.dst_kind.clone()) {
        cols.push(Column::new("dst_kind".into(), v));
    }
    cols
}
