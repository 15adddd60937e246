//! `concat`: stack tables with the same columns (e.g. one comparison per checkpoint into one
//! table to plot along training). Tables come as separate items, as lists of tables (what `map`
//! returns), or both. Columns are matched by name; a table whose columns differ is refused,
//! naming what differs, rather than filled with nulls.

use polars::prelude::*;

use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{ArgValue, Args, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::syntax::Span;

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "concat",
            "stack the rows of tables that have the same columns",
        )
        .category("table")
        .rest(
            "tables",
            Type::Any,
            "tables, or lists of tables (a `map`'s result), in order",
        )
        .example("concat (arith 2 seed 1), (arith 3 seed 2)", "5 rows")
        .example(
            "concat (map [1, 2, 3] (fn(s) = arith 2 seed s))",
            "6 rows: a list of tables",
        ),
        verb_concat,
    );
}

/// One table to stack, with where it came from (for errors).
struct Part {
    df: DataFrame,
    span: Span,
    /// `table 3`, or `table 3 (element [1] of a list)`.
    name: String,
}

/// The tables of the items in order, lists opened one level.
fn parts(args: &Args) -> EvalResult<Vec<Part>> {
    let mut out: Vec<Part> = Vec::new();
    for a in args.all("tables") {
        let ArgValue::Value(v) = &a.value else {
            return Err(EvalError::at(a.span, "expected a table"));
        };
        let as_table = |v: &Value, within: Option<usize>| {
            v.as_table().ok_or_else(|| {
                let what = match within {
                    Some(i) => format!("element [{i}] of this list"),
                    None => "this".to_string(),
                };
                EvalError::type_mismatch("table", v.type_name(), a.span).with_help(format!(
                    "{what} is a {}; concat stacks tables",
                    v.type_name()
                ))
            })
        };
        match v {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let df = as_table(item, Some(i))?;
                    let name = format!("table {} (element [{i}] of a list)", out.len() + 1);
                    out.push(Part {
                        df,
                        span: a.span,
                        name,
                    });
                }
            }
            other => {
                let df = as_table(other, None)?;
                let name = format!("table {}", out.len() + 1);
                out.push(Part {
                    df,
                    span: a.span,
                    name,
                });
            }
        }
    }
    Ok(out)
}

fn verb_concat(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let parts = parts(&args)?;
    let Some((first, rest)) = parts.split_first() else {
        return Err(EvalError::at(
            args.span,
            "concat needs at least one table (an empty list has none)",
        ));
    };
    let first_names: Vec<String> = first
        .df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = first.df.clone();
    for part in rest {
        let names: Vec<String> = part
            .df
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let missing: Vec<&String> = first_names.iter().filter(|n| !names.contains(n)).collect();
        let extra: Vec<&String> = names.iter().filter(|n| !first_names.contains(n)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(EvalError::at(
                part.span,
                format!(
                    "{} has other columns than the first: missing {:?}, extra {:?}",
                    part.name, missing, extra
                ),
            )
            .with_code(ErrorCode::Column));
        }
        let reordered = part
            .df
            .select(first_names.iter().map(|s| s.as_str()))
            .map_err(|e| EvalError::at(part.span, e.to_string()))?;
        out.vstack_mut(&reordered).map_err(|e| {
            EvalError::at(
                part.span,
                format!("{}: {e} (column types must agree)", part.name),
            )
        })?;
    }
    Ok(Value::Table(Table::Eager(out)))
}
