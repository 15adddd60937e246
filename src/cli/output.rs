//! How values print: tables as polars prints them, or as CSV / JSON records; scalars plain.

use std::io::Write;

use clap::ValueEnum;
use polars::prelude::*;

use crate::eval::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// The text for a value, or `None` for values that print nothing (`null`, e.g. from `save`).
///
/// ```
/// use rlq::cli::output::{render, Format};
/// use polars::prelude::*;
/// let df = df!("a" => [1i64, 2]).unwrap();
/// assert_eq!(render(&df.clone().into(), Format::Csv).unwrap(), "a\n1\n2\n");
/// assert_eq!(render(&df.into(), Format::Json).unwrap(), "[{\"a\":1},{\"a\":2}]\n");
/// assert_eq!(render(&3.0.into(), Format::Json).unwrap(), "3\n");
/// ```
pub fn render(value: &Value, format: Format) -> Option<String> {
    if value.is_null() {
        return None;
    }
    let tabular = matches!(value, Value::Table(_) | Value::Graph(_));
    let text = match (format, tabular) {
        (Format::Csv | Format::Json, true) => match value.as_table() {
            Some(mut df) => serialize(&mut df, format).unwrap_or_else(|e| format!("<{e}>")),
            // The table failed to compute; its Display says why.
            None => value.to_string(),
        },
        _ => value.to_string(),
    };
    Some(if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    })
}

fn serialize(df: &mut DataFrame, format: Format) -> PolarsResult<String> {
    let mut buf = Vec::new();
    match format {
        Format::Json => JsonWriter::new(&mut buf)
            .with_json_format(JsonFormat::Json)
            .finish(df)?,
        _ => CsvWriter::new(&mut buf).include_header(true).finish(df)?,
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Writes values to stdout. A closed pipe (`rlq run x | head`) is not an error worth a panic.
pub struct Printer {
    format: Format,
}

impl Printer {
    pub fn stdout(format: Format) -> Printer {
        Printer { format }
    }

    pub fn print(&mut self, value: &Value) {
        if let Some(text) = render(value, self.format) {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
    }
}
