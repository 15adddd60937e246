//! Reading plot inputs out of frames.

use polars::prelude::*;

use super::error::PlotError;

/// A numeric column as f64s (nulls become NaN, which the charts skip).
pub(crate) fn numeric(
    table: &DataFrame,
    name: &str,
    needed_for: &'static str,
) -> Result<Vec<f64>, PlotError> {
    let column = table.column(name).map_err(|_| PlotError::MissingColumn {
        column: name.to_string(),
        needed_for,
    })?;
    if !column.dtype().is_primitive_numeric() {
        return Err(PlotError::NotNumeric {
            column: name.to_string(),
            found: column.dtype().to_string(),
        });
    }
    let cast = column.cast(&DataType::Float64)?;
    Ok(cast.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Any column as display strings (categories on an axis).
pub(crate) fn labels(
    table: &DataFrame,
    name: &str,
    needed_for: &'static str,
) -> Result<Vec<String>, PlotError> {
    let column = table.column(name).map_err(|_| PlotError::MissingColumn {
        column: name.to_string(),
        needed_for,
    })?;
    let cast = column.cast(&DataType::String)?;
    Ok(cast
        .str()?
        .iter()
        .map(|v| v.unwrap_or("null").to_string())
        .collect())
}
