//! One statistic of several graphs in one table: a column per graph, named after its variable.

use polars::prelude::*;

use super::error::{AnalysisError, Result};
use super::group::depth_of;
use super::group::{key_columns, By, GroupKey};
use super::matrix::ScoreMatrix;
use super::normalize::NormalizedStat;
use super::stats::grouped_values;

/// `stat` of each table: with `By::None` one row `statistic | <name0> | <name1> …`, otherwise one
/// row per group key (the union over the tables, in key order) with null where a table lacks
/// that group (e.g. a layer only the deeper model has). Each table is normalised on its own.
pub fn side_by_side(
    names: &[&str],
    tables: &[DataFrame],
    stat: impl Into<NormalizedStat>,
    by: By,
) -> Result<DataFrame> {
    let stat = stat.into();
    stat.check_meaningful(by)?;
    if names.len() != tables.len() {
        return Err(AnalysisError::NameCount {
            names: names.len(),
            tables: tables.len(),
        });
    }
    let matrices = tables
        .iter()
        .map(ScoreMatrix::from_table)
        .collect::<Result<Vec<_>>>()?;
    if matches!(by, By::Layer | By::SrcLayer) {
        check_same_depth(names, &matrices)?;
    }
    let mut per_table: Vec<Vec<(GroupKey, f64)>> = Vec::with_capacity(tables.len());
    for m in &matrices {
        let m = stat.normalize.apply(m)?;
        let (keys, values) = grouped_values(&m, &stat.stat, by)?;
        per_table.push(keys.into_iter().zip(values).collect());
    }
    // Union of keys: sorted for layers/kinds, first-seen for edges.
    let mut keys: Vec<GroupKey> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rows in &per_table {
        for (k, _) in rows {
            if seen.insert(k.clone()) {
                keys.push(k.clone());
            }
        }
    }
    if by != By::Edge {
        keys.sort();
    }
    let mut columns = if by == By::None {
        vec![Column::new("statistic".into(), [stat.name()])]
    } else {
        key_columns(by, &keys)
    };
    for (name, rows) in names.iter().zip(&per_table) {
        let lookup: std::collections::HashMap<&GroupKey, f64> =
            rows.iter().map(|(k, v)| (k, *v)).collect();
        let values: Vec<Option<f64>> = keys.iter().map(|k| lookup.get(k).copied()).collect();
        columns.push(Column::new((*name).into(), values));
    }
    Ok(DataFrame::new(keys.len(), columns)?)
}

/// Layer-by-layer rows of graphs of different depth would put different depths side by side
/// (a 24-layer model's logits beside a 30-layer model's block 24): refused, naming the depths.
pub fn check_same_depth(names: &[&str], matrices: &[ScoreMatrix]) -> Result<()> {
    let depths: Vec<Option<i64>> = matrices.iter().map(|m| depth_of(m).ok()).collect();
    let known: Vec<i64> = depths.iter().flatten().copied().collect();
    if known.windows(2).all(|w| w[0] == w[1]) {
        return Ok(());
    }
    let listed: Vec<String> = names
        .iter()
        .zip(&depths)
        .map(|(n, d)| match d {
            Some(d) => format!("{n}: {d} layers"),
            None => format!("{n}: depth unknown"),
        })
        .collect();
    Err(AnalysisError::DepthMismatch {
        depths: listed.join(", "),
    })
}
