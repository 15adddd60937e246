//! Table literals: `{prompt: ["a", "b"], expected: [42, 7]}` (columns) and
//! `[{prompt: "a", expected: 42}, {prompt: "b", expected: 7}]` (rows), so a few samples need no
//! file. Cells are numbers, strings, bools, null, or lists of those (`prompt_ids: [[1, 2], [3]]`).

use polars::prelude::*;

use super::error::{ErrorCode, EvalError, EvalResult};
use super::value::Value;
use crate::syntax::Span;

/// One evaluated field: its name, value, and where it was written (for messages).
pub(crate) struct Field {
    pub name: String,
    pub value: Value,
    pub span: Span,
}

fn err(span: Span, msg: impl Into<String>) -> EvalError {
    EvalError::at(span, msg.into()).with_code(ErrorCode::TableLiteral)
}

/// `{name: column-or-value, …}`: list values are columns (all the same length); a single value
/// is repeated down the column (one row when no field is a list).
pub(crate) fn columns_table(fields: Vec<Field>) -> EvalResult<DataFrame> {
    let mut height: Option<(usize, &str)> = None;
    for f in &fields {
        if let Value::List(items) = &f.value {
            match height {
                None => height = Some((items.len(), &f.name)),
                Some((h, first)) if h != items.len() => {
                    return Err(err(
                        f.span,
                        format!(
                            "column `{}` has {} values, column `{first}` {h}: a table's columns \
                             have one value per row",
                            f.name,
                            items.len()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let height = height.map_or(1, |(h, _)| h);
    let mut columns = Vec::with_capacity(fields.len());
    for f in &fields {
        let cells = match &f.value {
            Value::List(items) => items.clone(),
            one => vec![one.clone(); height],
        };
        columns.push(column(&f.name, &cells, f.span)?);
    }
    DataFrame::new(height, columns).map_err(|e| err(Span::default(), e.to_string()).with_cause(e))
}

/// `[{…}, {…}]`: one row per record; a field a record lacks is null in that row.
pub(crate) fn rows_table(rows: Vec<Vec<Field>>, span: Span) -> EvalResult<DataFrame> {
    let mut names: Vec<(String, Span)> = Vec::new();
    for row in &rows {
        for f in row {
            if !names.iter().any(|(n, _)| *n == f.name) {
                names.push((f.name.clone(), f.span));
            }
        }
    }
    if names.is_empty() {
        return Err(err(span, "the records have no fields"));
    }
    let mut columns = Vec::with_capacity(names.len());
    for (name, first_span) in &names {
        let cells: Vec<Value> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .find(|f| f.name == *name)
                    .map_or(Value::Null, |f| f.value.clone())
            })
            .collect();
        columns.push(column(name, &cells, *first_span)?);
    }
    DataFrame::new(rows.len(), columns).map_err(|e| err(span, e.to_string()).with_cause(e))
}

/// Whole numbers within f64's exact integer range: an i64 column (ids, counts, answers).
fn is_whole(n: f64) -> bool {
    n.fract() == 0.0 && n.abs() < 9.0e15
}

/// The cells of one column as a typed polars column; nulls allowed anywhere.
fn column(name: &str, cells: &[Value], span: Span) -> EvalResult<Column> {
    let present: Vec<&Value> = cells.iter().filter(|v| !v.is_null()).collect();
    let all = |f: fn(&Value) -> bool| present.iter().all(|v| f(v));
    let name_s: PlSmallStr = name.into();
    let series = if present.is_empty() {
        Series::full_null(name_s, cells.len(), &DataType::Null)
    } else if all(|v| matches!(v, Value::Number(n) if is_whole(*n))) {
        let xs: Vec<Option<i64>> = cells
            .iter()
            .map(|v| v.as_number().map(|n| n as i64))
            .collect();
        Series::new(name_s, xs)
    } else if all(|v| matches!(v, Value::Number(_))) {
        let xs: Vec<Option<f64>> = cells.iter().map(Value::as_number).collect();
        Series::new(name_s, xs)
    } else if all(|v| matches!(v, Value::Str(_))) {
        let xs: Vec<Option<&str>> = cells.iter().map(Value::as_str).collect();
        Series::new(name_s, xs)
    } else if all(|v| matches!(v, Value::Bool(_))) {
        let xs: Vec<Option<bool>> = cells.iter().map(Value::as_bool).collect();
        Series::new(name_s, xs)
    } else if all(|v| matches!(v, Value::List(_))) {
        let inner: Vec<Option<Series>> = cells
            .iter()
            .map(|v| match v {
                Value::List(items) => {
                    column("", items, span).map(|c| Some(c.as_materialized_series().clone()))
                }
                _ => Ok(None),
            })
            .collect::<EvalResult<_>>()?;
        list_of(name_s, inner, name, span)?
    } else {
        let kinds: Vec<&str> = present.iter().map(|v| v.type_name()).collect();
        let mut distinct = kinds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        return Err(err(
            span,
            format!(
                "column `{name}` mixes {}: a column holds one type",
                distinct.join(" and ")
            ),
        )
        .with_help("numbers, strings, bools, or lists of one of them; null for a missing cell"));
    };
    Ok(series.into_column())
}

/// A list column from its rows' series; the rows must agree on their element type (an i64 row
/// beside an f64 row becomes f64).
fn list_of(
    name: PlSmallStr,
    rows: Vec<Option<Series>>,
    column: &str,
    span: Span,
) -> EvalResult<Series> {
    let mut dtype = DataType::Null;
    for s in rows.iter().flatten() {
        dtype = match (&dtype, s.dtype()) {
            (_, DataType::Null) => dtype,
            (DataType::Null, d) => d.clone(),
            (a, b) if a == b => dtype,
            (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
                DataType::Float64
            }
            (a, b) => {
                return Err(err(
                    span,
                    format!("column `{column}` holds lists of {a} and lists of {b}"),
                ))
            }
        };
    }
    let cast: Vec<Option<Series>> = rows
        .into_iter()
        .map(|s| s.map(|s| s.cast(&dtype)).transpose())
        .collect::<PolarsResult<_>>()
        .map_err(|e| err(span, e.to_string()).with_cause(e))?;
    let mut out: ListChunked = cast.into_iter().collect();
    out.rename(name);
    Ok(out.into_series())
}
