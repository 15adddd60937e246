//! `concat`: stack tables with the same columns (e.g. one comparison per checkpoint into one
//! table to plot along training). Columns are matched by name; a table whose columns differ is
//! refused, naming what differs, rather than filled with nulls.

use polars::prelude::*;

use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{ArgValue, Args, Registry, Signature, Type};
use crate::eval::value::{Table, Value};

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "concat",
            "stack the rows of tables that have the same columns",
        )
        .category("table")
        .rest("tables", Type::Table, "two or more tables, in order")
        .example("concat (arith 2 seed 1), (arith 3 seed 2)", "5 rows"),
        verb_concat,
    );
}

fn verb_concat(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let mut frames: Vec<DataFrame> = Vec::new();
    let mut first_names: Vec<String> = Vec::new();
    for (i, a) in args.all("tables").iter().enumerate() {
        let df = match &a.value {
            ArgValue::Value(v) => v
                .as_table()
                .ok_or_else(|| EvalError::type_mismatch("table", v.type_name(), a.span))?,
            _ => return Err(EvalError::at(a.span, "expected a table")),
        };
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        if i == 0 {
            first_names = names;
            frames.push(df);
            continue;
        }
        let missing: Vec<&String> = first_names.iter().filter(|n| !names.contains(n)).collect();
        let extra: Vec<&String> = names.iter().filter(|n| !first_names.contains(n)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(EvalError::at(
                a.span,
                format!(
                    "table {} has other columns than the first: missing {:?}, extra {:?}",
                    i + 1,
                    missing,
                    extra
                ),
            )
            .with_code(ErrorCode::Column));
        }
        let reordered = df
            .select(first_names.iter().map(|s| s.as_str()))
            .map_err(|e| EvalError::at(a.span, e.to_string()))?;
        frames.push(reordered);
    }
    let Some(mut out) = frames.first().cloned() else {
        return Err(EvalError::at(args.span, "concat needs at least one table"));
    };
    for (i, f) in frames.iter().enumerate().skip(1) {
        out.vstack_mut(f).map_err(|e| {
            EvalError::at(
                args.all("tables")[i].span,
                format!("table {}: {e} (column types must agree)", i + 1),
            )
        })?;
    }
    Ok(Value::Table(Table::Eager(out)))
}
