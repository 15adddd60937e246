//! Statistics per fed position, from per-position tables (`patch … per_position true`: one row
//! per prompt_id, position and edge). Position t is the t-th token fed (prompt ++ truncated
//! answer), so at a given t only the samples at least t+1 tokens long take part: each row says
//! how many did.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::error::{AnalysisError, Result};
use super::group::By;
use super::matrix::ScoreMatrix;
use super::normalize::NormalizedStat;
use super::stats::grouped_values;

/// The statistic of each position's scores: `(position, n_samples, value)`, positions ascending.
/// A normalisation rescales each sample's scores at that position (its mass there).
pub fn position_values(
    table: &DataFrame,
    stat: impl Into<NormalizedStat>,
) -> Result<Vec<(i64, usize, f64)>> {
    let stat = stat.into();
    stat.check_meaningful(By::None)?;
    if table.column("position").is_err() {
        return Err(AnalysisError::MissingColumn {
            column: "position".into(),
            needed_for: "statistics by position (score with `patch … per_position true`)",
        });
    }
    let sorted = table.sort(
        ["position"],
        SortMultipleOptions::default().with_maintain_order(true),
    )?;
    let pos: Vec<i64> = sorted
        .column("position")?
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .map(|p| p.unwrap_or(-1))
        .collect();
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < pos.len() {
        let t = pos[start];
        let end = start + pos[start..].iter().take_while(|&&p| p == t).count();
        let part = sorted.slice(start as i64, end - start);
        let m = ScoreMatrix::from_table(&part)?;
        let m = stat.normalize.apply(&m)?;
        let (_, values) = grouped_values(&m, &stat.stat, By::None)?;
        out.push((t, m.prompt_ids.len(), values[0]));
        start = end;
    }
    Ok(out)
}

/// One row per position: `position`, then for one table `n_samples` and the statistic; for
/// several, one column per table (named as given; null where a table has no such position).
pub fn statistic_by_position(
    names: &[&str],
    tables: &[DataFrame],
    stat: impl Into<NormalizedStat>,
) -> Result<DataFrame> {
    let stat = stat.into();
    if names.len() != tables.len() {
        return Err(AnalysisError::NameCount {
            names: names.len(),
            tables: tables.len(),
        });
    }
    let per: Vec<Vec<(i64, usize, f64)>> = tables
        .iter()
        .map(|t| position_values(t, stat))
        .collect::<Result<_>>()?;
    if per.len() == 1 {
        let rows = &per[0];
        return Ok(DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    "position".into(),
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                ),
                Column::new(
                    "n_samples".into(),
                    rows.iter().map(|r| r.1 as i64).collect::<Vec<_>>(),
                ),
                Column::new(
                    stat.name().into(),
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                ),
            ],
        )?);
    }
    let mut all: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
    for (i, rows) in per.iter().enumerate() {
        for &(t, _, v) in rows {
            all.entry(t).or_insert_with(|| vec![None; per.len()])[i] = Some(v);
        }
    }
    let mut cols = vec![Column::new(
        "position".into(),
        all.keys().copied().collect::<Vec<_>>(),
    )];
    for (i, name) in names.iter().enumerate() {
        cols.push(Column::new(
            (*name).into(),
            all.values().map(|v| v[i]).collect::<Vec<_>>(),
        ));
    }
    Ok(DataFrame::new(all.len(), cols)?)
}
