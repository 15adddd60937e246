//! `read` and `save`: tables from and to csv, parquet, json and jsonl (and to markdown).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use polars::prelude::*;

use crate::attribution::saved;
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Registry, Signature, Type};
use crate::eval::value::{guard_polars, Value};

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "read",
            "read a table from a csv, parquet, json or jsonl file; a saved graph comes back as the \
             graph, with its settings",
        )
        .category("io")
        .required(
            "path",
            Type::Str,
            "the file; its extension picks the format",
        )
        .example("read \"data/prompts.csv\"", "a table"),
        verb_read,
    );
    reg.register_fn(
        Signature::new(
            "save",
            "write a table to csv, parquet, json, jsonl or md (a markdown table), atomically",
        )
        .category("io")
        // Any: a graph must arrive as itself (Type::Table would turn it into its edge table).
        .piped("value", Type::Any, "the table (or graph) to write")
        .named_required(
            "to",
            Type::Str,
            "the file; its extension picks the format: .csv, .parquet (.pq), .json, .jsonl \
             (.ndjson) or .md",
        )
        .example("save t to \"out/t.parquet\"", "writes t")
        .example(
            "save g to \"out/g.parquet\"",
            "a graph: every sample's scores, its settings in the file's metadata (csv/json: in \
             a `.rlq-graph.json` sidecar); `read` gives the graph back",
        )
        .example(
            "t | top 10 by score | save to \"out/top.csv\"",
            "pipes into save",
        ),
        verb_save,
    );
}

/// Why a table's file could not be read or written: the file system, or polars encoding or
/// decoding it. Its text is the inner error's; [`TableFileError::source_of`] keeps the inner
/// error itself as an [`EvalError`]'s source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TableFileError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Polars(#[from] PolarsError),
}

impl TableFileError {
    /// `error` with the io or polars error as its source (what a host downcasts to).
    pub(crate) fn source_of(self, error: EvalError) -> EvalError {
        match self {
            TableFileError::Io(e) => error.with_cause(e),
            TableFileError::Polars(e) => error.with_cause(e),
        }
    }
}

impl From<crate::files::WriteError<std::io::Error>> for TableFileError {
    fn from(e: crate::files::WriteError<std::io::Error>) -> Self {
        TableFileError::Io(io_of(e))
    }
}

impl From<crate::files::WriteError<TableFileError>> for TableFileError {
    fn from(e: crate::files::WriteError<TableFileError>) -> Self {
        match e {
            crate::files::WriteError::Io(e) => TableFileError::Io(e),
            crate::files::WriteError::Write(e) => e,
        }
    }
}

/// The io error of an atomic text write, around the write or in it (same text).
pub(crate) fn io_of(e: crate::files::WriteError<std::io::Error>) -> std::io::Error {
    match e {
        crate::files::WriteError::Io(e) | crate::files::WriteError::Write(e) => e,
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    Csv,
    Parquet,
    Json,
    JsonLines,
    /// A GitHub-flavoured markdown table (write only), for reports.
    Markdown,
}

fn format_of(path: &Path, args: &Args, param: &str) -> EvalResult<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "csv" => Format::Csv,
        "parquet" | "pq" => Format::Parquet,
        "json" => Format::Json,
        "jsonl" | "ndjson" => Format::JsonLines,
        "md" => Format::Markdown,
        _ => {
            return Err(EvalError::at(
                args.span_of(param),
                format!(
                    "cannot tell the format of `{}` from its extension",
                    path.display()
                ),
            )
            .with_help(if param == "to" {
                "use .csv, .parquet, .json, .jsonl (.ndjson) or .md"
            } else {
                "use .csv, .parquet, .json or .jsonl (.ndjson)"
            })
            .with_code(ErrorCode::Io))
        }
    })
}

pub(super) fn verb_read(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let given = args.str("path").unwrap_or_default().to_string();
    let path = ctx.resolve_path(&given);
    let format = format_of(&path, &args, "path")?;
    let span = args.span_of("path");
    let io_err = |e: std::io::Error| {
        EvalError::at(span, format!("cannot read `{}`: {e}", path.display()))
            .with_code(ErrorCode::Io)
            .with_cause(e)
    };
    let not_read = || EvalError::at(span, "markdown is written by `save`, not read");
    if format == Format::Markdown {
        return Err(not_read());
    }
    // Only regular files: a FIFO would block for ever, `/dev/zero` would never end.
    let file = crate::files::open_regular(&path).map_err(io_err)?;
    // A saved graph's settings: parquet key-value metadata, or the sidecar of a text table.
    let mut graph_settings: Option<String> = None;
    let sidecar = saved::sidecar_path(&path);
    if format != Format::Parquet && sidecar.is_file() {
        let f = crate::files::open_regular(&sidecar).map_err(io_err)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_SIDECAR), &mut text)
            .map_err(io_err)?;
        graph_settings = Some(text);
    }
    let df = match format {
        Format::Csv => guard_polars(|| {
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(10_000))
                .into_reader_with_file_handle(file)
                .finish()
        }),
        Format::Parquet => guard_polars(|| {
            let mut reader = ParquetReader::new(file);
            graph_settings = reader
                .get_metadata()?
                .key_value_metadata()
                .as_ref()
                .and_then(|kv| kv.iter().find(|k| k.key == saved::META_KEY))
                .and_then(|k| k.value.clone());
            reader.finish()
        }),
        Format::Markdown => return Err(not_read()),
        Format::Json | Format::JsonLines => {
            let mut bytes = Vec::new();
            let mut file = file;
            std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io_err)?;
            // Parsers recurse per nesting level: bound it before handing the text over.
            if let Some(line) = nested_deeper_than(&bytes, MAX_JSON_DEPTH) {
                return Err(EvalError::at(
                    span,
                    format!(
                        "cannot read `{}`: JSON nested deeper than {MAX_JSON_DEPTH} levels (line {line})",
                        path.display()
                    ),
                )
                .with_help("tables nest a few levels at most; is this file a table?")
                .with_code(ErrorCode::Io));
            }
            let fmt = if format == Format::Json {
                JsonFormat::Json
            } else {
                JsonFormat::JsonLines
            };
            // An object at the top is column-oriented JSON (`{"a": [..]}` or polars' own
            // `{"columns": [{"name", "values"}]}`); an array is records.
            let columns = match format {
                Format::JsonLines => None,
                _ => columns_json(&bytes),
            };
            match columns {
                Some(df) => Ok(df),
                None => guard_polars(|| {
                    JsonReader::new(std::io::Cursor::new(bytes))
                        .with_json_format(fmt)
                        .finish()
                }),
            }
        }
    };
    let df = df.map_err(|e| {
        EvalError::at(span, format!("cannot read `{}`: {e}", path.display()))
            .with_code(ErrorCode::Io)
            .with_cause(e)
    })?;
    match graph_settings {
        None => Ok(df.into()),
        Some(text) => {
            let bad = |e: String| {
                EvalError::at(
                    span,
                    format!(
                        "`{}` is a saved graph that cannot be read back: {e}",
                        path.display()
                    ),
                )
                .with_code(ErrorCode::Io)
            };
            let meta = saved::parse_meta(&text).map_err(bad)?;
            let graph = saved::from_sample_table(&df, Some(meta)).map_err(bad)?;
            Ok(Value::Graph(std::sync::Arc::new(graph)))
        }
    }
}

/// The largest graph-settings sidecar read (its sample hashes grow with N: ~30 bytes each).
const MAX_SIDECAR: u64 = 64 << 20;

/// The deepest JSON nesting `read` accepts. Parsers recurse once per level; 50 000 levels
/// overflowed the stack. serde_json's own limit is 128; tables need a handful.
pub(crate) const MAX_JSON_DEPTH: usize = 100;

/// The 1-based line where JSON text first nests deeper than `limit` (`[` / `{` outside
/// strings), if it does. A linear scan, no recursion.
fn nested_deeper_than(bytes: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn verb_save(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let given = args.str("to").unwrap_or_default().to_string();
    let path = ctx.resolve_path(&given);
    let format = format_of(&path, &args, "to")?;
    let value = args.value("value").cloned().unwrap_or(Value::Null);
    let save_err = |e: TableFileError| {
        let message = format!("cannot save to `{}`: {e}", path.display());
        e.source_of(EvalError::at(args.span_of("to"), message).with_code(ErrorCode::Io))
    };
    // A graph is saved whole (every sample's scores) with its settings, so `read` gives it back.
    let (mut df, settings) = match &value {
        Value::Graph(g) if format != Format::Markdown => (
            g.sample_table().map_err(|e| save_err(e.into()))?,
            Some(saved::meta_json(&g.meta)),
        ),
        _ => (
            value.as_table().ok_or_else(|| {
                EvalError::type_mismatch("table or graph", value.type_name(), args.span_of("value"))
            })?,
            None,
        ),
    };
    let sidecar = saved::sidecar_path(&path);
    match (&settings, format) {
        (_, Format::Parquet | Format::Markdown) => {}
        (Some(text), _) => {
            crate::files::write_text_atomic(&sidecar, text).map_err(|e| save_err(e.into()))?
        }
        // A table saved over a graph's file: its old sidecar would make `read` misread it.
        (None, _) => {
            if sidecar.is_file() {
                std::fs::remove_file(&sidecar).map_err(|e| save_err(e.into()))?;
            }
        }
    }
    let kv = match (&settings, format) {
        (Some(text), Format::Parquet) => Some(KeyValueMetadata::from_static(vec![(
            saved::META_KEY.to_string(),
            text.clone(),
        )])),
        _ => None,
    };
    write_atomic(&path, format, &mut df, kv).map_err(save_err)?;
    Ok(Value::Null)
}

/// Writes a table atomically in `format` through [`crate::files::write_atomic`].
fn write_atomic(
    path: &Path,
    format: Format,
    df: &mut DataFrame,
    kv: Option<KeyValueMetadata>,
) -> Result<(), TableFileError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    crate::files::write_atomic(path, ext, |file, _| {
        guard_polars(|| Ok(write_file(file, format, df, kv.clone())))
            .unwrap_or_else(|e| Err(e.into()))
    })
    .map_err(TableFileError::from)
}

fn write_file(
    file: &mut File,
    format: Format,
    df: &mut DataFrame,
    kv: Option<KeyValueMetadata>,
) -> Result<(), TableFileError> {
    let mut w = BufWriter::new(file);
    match format {
        Format::Csv => CsvWriter::new(&mut w).finish(df)?,
        Format::Parquet => {
            ParquetWriter::new(&mut w)
                .with_key_value_metadata(kv)
                .finish(df)?;
        }
        Format::Json => JsonWriter::new(&mut w)
            .with_json_format(JsonFormat::Json)
            .finish(df)?,
        Format::JsonLines => JsonWriter::new(&mut w)
            .with_json_format(JsonFormat::JsonLines)
            .finish(df)?,
        Format::Markdown => w.write_all(markdown_table(df).as_bytes())?,
    }
    Ok(w.flush()?)
}

/// A markdown table: floats to 4 significant digits, nulls empty, `|` escaped.
pub(crate) fn markdown_table(df: &DataFrame) -> String {
    let cell = |v: AnyValue| -> String {
        let s = match v {
            AnyValue::Null => String::new(),
            AnyValue::Float64(x) => fmt_float(x),
            AnyValue::Float32(x) => fmt_float(x as f64),
            AnyValue::String(s) => s.to_string(),
            other => other.to_string(),
        };
        s.replace('|', "\\|")
    };
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut out = format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for row in 0..df.height() {
        let cells: Vec<String> = df
            .columns()
            .iter()
            .map(|c| c.get(row).map(cell).unwrap_or_default())
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

pub(crate) fn fmt_float(x: f64) -> String {
    if x == 0.0 || (x.abs() >= 1e-3 && x.abs() < 1e6) {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{x:.3e}")
    }
}

/// Reads column-oriented JSON: `{"a": [1, 2], "b": ["x", "y"]}` or polars' serialized
/// `{"columns": [{"name": "a", "values": [1, 2]}, …]}`. `None` if it is neither.
fn columns_json(bytes: &[u8]) -> Option<DataFrame> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None; // records (or not JSON): polars reads those
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let obj = value.as_object()?;
    let pairs: Vec<(String, &Vec<serde_json::Value>)> =
        match obj.get("columns").and_then(|c| c.as_array()) {
            Some(cols) if cols.iter().all(|c| c.get("name").is_some()) => cols
                .iter()
                .filter_map(|c| {
                    Some((
                        c.get("name")?.as_str()?.to_string(),
                        c.get("values")?.as_array()?,
                    ))
                })
                .collect(),
            _ => obj
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_array()?)))
                .collect(),
        };
    let height = pairs.first()?.1.len();
    if pairs.iter().any(|(_, v)| v.len() != height) {
        return None;
    }
    let columns: Vec<Column> = pairs
        .into_iter()
        .map(|(name, values)| json_column(&name, values))
        .collect();
    DataFrame::new_infer_height(columns).ok()
}

/// One column from JSON values: ints, floats, bools or strings (anything else as JSON text).
fn json_column(name: &str, values: &[serde_json::Value]) -> Column {
    use serde_json::Value as J;
    let name = PlSmallStr::from(name);
    let non_null = || values.iter().filter(|v| !v.is_null());
    if non_null().all(|v| v.is_i64()) {
        Column::new(name, values.iter().map(J::as_i64).collect::<Vec<_>>())
    } else if non_null().all(J::is_number) {
        Column::new(name, values.iter().map(J::as_f64).collect::<Vec<_>>())
    } else if non_null().all(J::is_boolean) {
        Column::new(name, values.iter().map(J::as_bool).collect::<Vec<_>>())
    } else {
        let text: Vec<Option<String>> = values
            .iter()
            .map(|v| match v {
                J::Null => None,
                J::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect();
        Column::new(name, text)
    }
}

/// Writes `df` to a parquet file atomically, with file-level key-value metadata.
pub(super) fn save_parquet(
    path: &Path,
    df: &mut DataFrame,
    metadata: Vec<(String, String)>,
) -> Result<(), TableFileError> {
    write_atomic(
        path,
        Format::Parquet,
        df,
        Some(KeyValueMetadata::from_static(metadata)),
    )
}

/// Reads a parquet file and the value of one key of its key-value metadata.
pub(super) fn read_parquet_with(
    path: &Path,
    key: &str,
) -> Result<(DataFrame, Option<String>), TableFileError> {
    let file = crate::files::open_regular(path)?;
    guard_polars(|| {
        let mut reader = ParquetReader::new(file);
        let value = reader
            .get_metadata()?
            .key_value_metadata()
            .as_ref()
            .and_then(|kv| kv.iter().find(|k| k.key == key))
            .and_then(|k| k.value.clone());
        Ok((reader.finish()?, value))
    })
    .map_err(TableFileError::from)
}
