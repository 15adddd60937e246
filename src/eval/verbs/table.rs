//! Table verbs, compiled to polars lazy plans.

use polars::prelude::*;

use crate::eval::columns::default_agg_name;
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Param, Range, Registry, Shape, Signature, Type};
use crate::eval::value::{guard_polars, Table, Value};

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new("where", "keep the rows where a predicate holds")
            .category("table")
            .input(Type::Table)
            .columns(
                "predicate",
                "conditions on columns, e.g. score > 0.1 and dst_layer < 4 (several are and-ed)",
            )
            .example(
                "t | where score > 0.1 and dst_layer < 4",
                "rows with a large score in early layers",
            ),
        verb_where,
    );
    reg.register_fn(
        Signature::new("select", "keep, compute and rename columns")
            .category("table")
            .input(Type::Table)
            .columns("columns", "column expressions, each optionally `as name`")
            .example(
                "t | select src, dst, score * 2 as double",
                "three columns, the last computed",
            ),
        verb_select,
    );
    reg.register_fn(
        Signature::new("with", "add or replace columns")
            .category("table")
            .input(Type::Table)
            .columns("columns", "`name = expr` assignments (or `expr as name`)")
            .example(
                "t | with z = score * 2, w = abs(score)",
                "adds columns z and w",
            ),
        verb_with,
    );
    reg.register_fn(
        Signature::new("sort", "sort rows by columns (ascending unless `desc`)")
            .category("table")
            .input(Type::Table)
            .positional(Param {
                many: true,
                ordered: true,
                optional: true,
                ..Param::new("keys", Shape::Column, "sort keys (same as after `by`)")
            })
            .keyword(Param {
                many: true,
                ordered: true,
                optional: true,
                ..Param::new(
                    "by",
                    Shape::Column,
                    "sort keys, each optionally followed by desc/asc",
                )
            })
            .example(
                "t | sort by abs_score desc, src",
                "largest first, ties by src",
            ),
        verb_sort,
    );
    reg.register_fn(
        Signature::new(
            "top",
            "the first n rows; with `by col`, the n rows with the largest col",
        )
        .category("table")
        .input(Type::Table)
        .required("n", Type::Number, "how many rows")
        .range("n", ROW_COUNT)
        .keyword(Param {
            optional: true,
            ..Param::new("by", Shape::Column, "rank by this, largest first")
        })
        .example("t | top 20 by score", "the 20 rows with the highest score"),
        verb_top,
    );
    reg.register_fn(
        Signature::new("head", "the first n rows (10 by default)")
            .category("table")
            .input(Type::Table)
            .positional(Param {
                optional: true,
                default: Some(Value::Number(10.0)),
                ..Param::new("n", Shape::Value(Type::Number), "how many rows")
            })
            .range("n", ROW_COUNT)
            .example("t | head 5", "five rows"),
        verb_head,
    );
    reg.register_fn(
        Signature::new(
            "group",
            "group rows by keys and aggregate each group (no `by`: the whole table, one row)",
        )
            .category("table")
            .input(Type::Table)
            .named_columns("by", false, "group keys; without them the whole table is one group")
            .named_columns("agg", true, "aggregations: sum(x), mean(x), min, max, count(), std, median, first, last, n_unique, and the correlations pearson(x, y), spearman(x, y), kendall(x, y) (τ-b; rows with a null left out); `as name`")
            .example("t | group by dst_layer agg sum(score) as total, count()", "one row per layer")
            .example("t | group agg mean(score), count()", "one row for the whole table")
            .example("t | group by src_kind agg spearman(score, abs_score), kendall(score, abs_score) as tau", "a rank correlation per group (columns spearman_score_abs_score, tau)"),
        verb_group,
    );
    reg.register_fn(
        Signature::new(
            "table",
            "a table from a table literal, a graph (its edge table) or a list of 1-row tables",
        )
        .category("table")
        .piped(
            "value",
            Type::Any,
            "`{col: [..], …}`, `[{…}, {…}]`, a graph, or a list of tables",
        )
        .example(
            "let qs = table {prompt: [\"2+2?\", \"3+4?\"], expected: [4, 7]}",
            "two questions without a file",
        )
        .example(
            "table [{prompt: \"2+2?\", expected: 4}, {prompt: \"3+4?\", expected: 7}]",
            "the same, row by row",
        ),
        verb_table,
    );
    reg.register_fn(
        Signature::new("join", "join with another table on key columns")
            .category("table")
            .input(Type::Table)
            .required("other", Type::Table, "the right table")
            .named_columns(
                "on",
                true,
                "key columns; `left = right` when the names differ",
            )
            .word("how", Some("inner"), "inner, left, right, full (or outer)")
            .named_default(
                "max_rows",
                Type::Number,
                DEFAULT_MAX_JOIN_ROWS,
                "refuse a join whose result would have more rows (counted from the keys before \
                 joining: a join on repeated keys grows as the product of their counts)",
            )
            .range("max_rows", Range::non_negative(f64::INFINITY))
            .example(
                "t | join names on src how left",
                "adds the columns of `names` matching on src",
            ),
        verb_join,
    );
    reg.register_fn(
        Signature::new(
            "unique",
            "drop duplicate rows (keeping the first), optionally by some columns",
        )
        .category("table")
        .input(Type::Table)
        .positional(Param {
            optional: true,
            many: true,
            ..Param::new("columns", Shape::Column, "columns that define a duplicate")
        })
        .example("t | unique src", "one row per src"),
        verb_unique,
    );
    reg.register_fn(
        Signature::new("drop", "remove columns")
            .category("table")
            .input(Type::Table)
            .columns("columns", "column names")
            .example(
                "t | drop src_kind, dst_kind",
                "the table without two columns",
            ),
        verb_drop,
    );
    reg.register_fn(
        Signature::new("rename", "rename columns")
            .category("table")
            .input(Type::Table)
            .columns("columns", "`new = old` pairs (or `old as new`)")
            .example("t | rename weight = score", "score is now called weight"),
        verb_rename,
    );
    reg.register_fn(
        Signature::new(
            "describe",
            "count, mean, std, min, max and null count of each numeric column",
        )
        .category("table")
        .piped("table", Type::Table, "the table")
        .example("t | describe", "summary statistics"),
        verb_describe,
    );
    reg.register_fn(
        Signature::new("columns", "the column names of a table")
            .category("table")
            .piped("table", Type::Table, "the table")
            .example("t | columns", "a list of names"),
        |_ctx, args| {
            let t = table_arg(&args, "table")?;
            let schema = t.schema().map_err(|e| EvalError::polars(e, args.span))?;
            Ok(Value::List(
                schema
                    .iter_names()
                    .map(|n| Value::Str(n.to_string()))
                    .collect(),
            ))
        },
    );
    for name in ["count", "len"] {
        reg.register_fn(
            Signature::new(
                name,
                "number of rows of a table, items of a list, or characters of a string",
            )
            .category("table")
            .piped("value", Type::Any, "a table, graph, list or string")
            .example(&format!("[1, 2, 3] | {name}"), "3"),
            verb_count,
        );
    }
}

fn table_arg(args: &Args, name: &str) -> EvalResult<Table> {
    args.table(name)
        .ok_or_else(|| EvalError::at(args.span, format!("`{}` needs a table", args.verb)))
}

fn schema_of(t: &Table, args: &Args) -> EvalResult<SchemaRef> {
    t.schema().map_err(|e| EvalError::polars(e, args.span))
}

fn verb_where(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    let mut predicate: Option<Expr> = None;
    for c in args.columns("predicate") {
        let p = ctx.compile_column(c, &schema)?;
        predicate = Some(match predicate {
            Some(acc) => acc.and(p),
            None => p,
        });
    }
    match predicate {
        Some(p) => Ok(t.lazy().filter(p).into()),
        None => Err(EvalError::at(
            args.span,
            "`where` needs a condition, like `where score > 0.1`",
        )),
    }
}

fn verb_drop(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    let names = column_names(&args, "columns", &schema)?;
    Ok(t.lazy().drop(cols(names)).into())
}

fn verb_rename(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for c in args.columns("columns") {
        let (crate::syntax::ExprKind::Var(from), Some(to)) = (&c.expr.kind, &c.alias) else {
            return Err(EvalError::at(
                c.span,
                "rename takes `new = old` pairs (or `old as new`)",
            ));
        };
        if !schema.contains(from) {
            return Err(unknown_column(from, &schema, c.span));
        }
        old.push(from.clone());
        new.push(to.clone());
    }
    Ok(t.lazy().rename(old, new, true).into())
}

/// Plain column names from a column-list parameter.
fn column_names(args: &Args, name: &str, schema: &Schema) -> EvalResult<Vec<String>> {
    let mut names = Vec::new();
    for c in args.columns(name) {
        match &c.expr.kind {
            crate::syntax::ExprKind::Var(n) if schema.contains(n) => names.push(n.clone()),
            crate::syntax::ExprKind::Var(n) => return Err(unknown_column(n, schema, c.span)),
            _ => {
                return Err(EvalError::at(
                    c.span,
                    format!("`{}` takes column names", args.verb),
                ))
            }
        }
    }
    Ok(names)
}

fn unknown_column(name: &str, schema: &Schema, span: crate::syntax::Span) -> EvalError {
    let cols: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    EvalError::at(span, format!("unknown column `{name}`"))
        .with_label("not a column of the input table")
        .with_help(crate::eval::error::suggestion(name, "column", &cols))
        .with_code(ErrorCode::Column)
}

fn compile_all(
    ctx: &EvalContext,
    args: &Args,
    name: &str,
    schema: &Schema,
) -> EvalResult<Vec<Expr>> {
    args.columns(name)
        .iter()
        .map(|c| ctx.compile_column(c, schema))
        .collect()
}

fn verb_select(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    let exprs = compile_all(ctx, &args, "columns", &schema)?;
    Ok(t.lazy().select(exprs).into())
}

fn verb_with(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let mut lf = t.lazy();
    // Each assignment sees the columns made by the ones before it: `with a = x * 2, b = a + 1`.
    for c in args.columns("columns") {
        let schema = Table::Lazy(lf.clone())
            .schema()
            .map_err(|e| EvalError::polars(e, c.span))?;
        let e = ctx.compile_column(c, &schema)?;
        lf = lf.with_columns([e]);
    }
    Ok(lf.into())
}

fn verb_sort(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    // `sort by a desc` and `sort a desc` are the same.
    let mut keys = args.columns("keys");
    keys.extend(args.columns("by"));
    if keys.is_empty() {
        return Err(EvalError::at(
            args.span,
            "`sort` needs keys, like `sort by score desc`",
        ));
    }
    let exprs = keys
        .iter()
        .map(|c| ctx.compile_column(c, &schema))
        .collect::<EvalResult<Vec<_>>>()?;
    let desc: Vec<bool> = keys.iter().map(|c| c.descending).collect();
    let opts = SortMultipleOptions::default()
        .with_order_descending_multi(desc)
        .with_nulls_last(true)
        .with_maintain_order(true);
    Ok(t.lazy().sort_by_exprs(exprs, opts).into())
}

/// The range of `top n` and `head n`.
const ROW_COUNT: Range = Range {
    min: 0.0,
    min_exclusive: false,
    max: f64::INFINITY,
    whole: true,
};

/// A row count (in [`ROW_COUNT`], checked at binding); more rows than polars can index mean all.
fn row_count(args: &Args, name: &str) -> EvalResult<IdxSize> {
    Ok(IdxSize::try_from(args.whole(name)?).unwrap_or(IdxSize::MAX))
}

fn verb_top(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let n = row_count(&args, "n")?;
    let mut lf = t.lazy();
    if let Some(by) = args.columns("by").first() {
        let schema = schema_of(&t, &args)?;
        let e = ctx.compile_column(by, &schema)?;
        let opts = SortMultipleOptions::default()
            .with_order_descending(true)
            .with_nulls_last(true)
            .with_maintain_order(true);
        lf = lf.sort_by_exprs([e], opts);
    }
    Ok(lf.limit(n).into())
}

fn verb_head(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let n = row_count(&args, "n")?;
    Ok(t.lazy().limit(n).into())
}

fn verb_table(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span_of("value");
    match args.value("value") {
        Some(Value::Table(t)) => Ok(Value::Table(t.clone())),
        Some(Value::Graph(g)) => Ok(g.table().map_err(|e| EvalError::polars(e, span))?.into()),
        Some(Value::List(items)) => {
            let mut frames = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                match v {
                    Value::Table(t) => frames.push(t.lazy()),
                    other => {
                        return Err(EvalError::at(
                            span,
                            format!("item {i} is a {}, not a table", other.type_name()),
                        )
                        .with_help("write rows as records: `table [{a: 1}, {a: 2}]`"))
                    }
                }
            }
            if frames.is_empty() {
                return Err(EvalError::at(span, "an empty list has no columns")
                    .with_help("give columns: `table {a: []}`"));
            }
            let args_union = UnionArgs {
                to_supertypes: true,
                diagonal: true,
                ..Default::default()
            };
            let stacked = guard_polars(|| concat(frames, args_union)?.collect())
                .map_err(|e| EvalError::polars(e, span))?;
            Ok(stacked.into())
        }
        Some(other) => Err(EvalError::at(
            span,
            format!(
                "`table` takes a table literal, a graph or a list of tables, got {}",
                other.type_name()
            ),
        )
        .with_help("e.g. `table {prompt: [\"a\", \"b\"], expected: [1, 2]}`")),
        None => Err(EvalError::at(args.span, "`table` needs a value")),
    }
}

fn verb_group(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    let keys = compile_all(ctx, &args, "by", &schema)?;
    let mut aggs = Vec::new();
    for c in args.columns("agg") {
        let mut e = ctx.compile_column(c, &schema)?;
        if c.alias.is_none() {
            if let Some(name) = default_agg_name(&c.expr) {
                e = e.alias(name.as_str());
            }
        }
        aggs.push(e);
    }
    if keys.is_empty() {
        return Ok(t.lazy().select(aggs).into());
    }
    Ok(t.lazy().group_by_stable(keys).agg(aggs).into())
}

fn verb_join(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let left = args.input_table()?;
    let right = table_arg(&args, "other")?;
    let (ls, rs) = (schema_of(&left, &args)?, schema_of(&right, &args)?);
    let mut left_on = Vec::new();
    let mut right_on = Vec::new();
    for c in args.columns("on") {
        // `on key` joins key to key; `on a = b` joins left a to right b.
        let right_expr = ctx.compile_expr(&c.expr, &rs)?;
        let left_expr = match &c.alias {
            Some(name) if ls.contains(name) => col(name.as_str()),
            Some(name) => {
                let cols: Vec<String> = ls.iter_names().map(|n| n.to_string()).collect();
                return Err(EvalError::at(
                    c.span,
                    format!("unknown column `{name}` in the left table"),
                )
                .with_help(crate::eval::error::suggestion(name, "column", &cols)));
            }
            None => ctx.compile_expr(&c.expr, &ls)?,
        };
        left_on.push(left_expr);
        right_on.push(right_expr);
    }
    let how = match args.word("how").unwrap_or("inner") {
        "inner" => JoinType::Inner,
        "left" => JoinType::Left,
        "right" => JoinType::Right,
        "full" | "outer" => JoinType::Full,
        other => {
            return Err(
                EvalError::at(args.span_of("how"), format!("unknown join `{other}`"))
                    .with_help("how: inner, left, right, full (or outer)"),
            )
        }
    };
    let max_rows = args.real("max_rows")?;
    let (left, right) = (left.lazy(), right.lazy());
    let rows = guard_polars(|| join_rows(&left, &right, &left_on, &right_on, &how))
        .map_err(|e| EvalError::polars(e, args.span))?;
    if rows > max_rows {
        return Err(EvalError::at(
            args.span,
            format!(
                "this join would give {rows:.0} rows, over the limit of max_rows {max_rows:.0} \
                 (its keys repeat on both sides)"
            ),
        )
        .with_help(format!(
            "join on more columns, drop repeated keys first (`unique`), or raise the limit: \
             `join … max_rows {:.0}`",
            rows.ceil()
        ))
        .with_code(ErrorCode::Limit));
    }
    let full = matches!(how, JoinType::Full);
    let mut join_args = JoinArgs::new(how);
    if full {
        join_args = join_args.with_coalesce(JoinCoalesce::CoalesceColumns);
    }
    Ok(left.join(right, left_on, right_on, join_args).into())
}

/// The row limit of one `join` unless `max_rows` says otherwise: 50 million rows is a few GB
/// for a handful of columns, the most a laptop session should allocate by accident.
const DEFAULT_MAX_JOIN_ROWS: f64 = 5e7;

/// The number of rows a join will give, from the key counts of each side (a group-by of each
/// input, linear in its rows): Σ over matched keys of left count × right count, plus the
/// unmatched rows a left, right or full join keeps. Null keys match nothing, as in the join.
fn join_rows(
    left: &LazyFrame,
    right: &LazyFrame,
    left_on: &[Expr],
    right_on: &[Expr],
    how: &JoinType,
) -> PolarsResult<f64> {
    let keys = |on: &[Expr]| -> Vec<Expr> {
        on.iter()
            .enumerate()
            .map(|(i, e)| e.clone().alias(format!("__key{i}")))
            .collect()
    };
    let names: Vec<Expr> = (0..left_on.len())
        .map(|i| col(format!("__key{i}")))
        .collect();
    let counts = |t: &LazyFrame, on: &[Expr], name: &str| {
        t.clone()
            .group_by(keys(on))
            .agg([len().cast(DataType::Float64).alias(name)])
    };
    let both = counts(left, left_on, "__left").join(
        counts(right, right_on, "__right"),
        names.clone(),
        names,
        JoinArgs::new(JoinType::Full),
    );
    let l = col("__left").fill_null(lit(0.0));
    let r = col("__right").fill_null(lit(0.0));
    let only = |this: Expr, other: Expr| {
        when(other.eq(lit(0.0)))
            .then(this)
            .otherwise(lit(0.0))
            .sum()
    };
    let df = both
        .select([
            (l.clone() * r.clone()).sum().alias("matched"),
            only(l.clone(), r.clone()).alias("left_only"),
            only(r, l).alias("right_only"),
        ])
        .collect()?;
    let get =
        |name: &str| -> PolarsResult<f64> { Ok(df.column(name)?.f64()?.get(0).unwrap_or(0.0)) };
    let (matched, left_only, right_only) = (get("matched")?, get("left_only")?, get("right_only")?);
    Ok(match how {
        JoinType::Left => matched + left_only,
        JoinType::Right => matched + right_only,
        JoinType::Full => matched + left_only + right_only,
        _ => matched,
    })
}

fn verb_unique(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = args.input_table()?;
    let schema = schema_of(&t, &args)?;
    let names = column_names(&args, "columns", &schema)?;
    let subset = if names.is_empty() {
        None
    } else {
        Some(cols(names))
    };
    Ok(t.lazy()
        .unique_stable(subset, UniqueKeepStrategy::First)
        .into())
}

fn verb_describe(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let t = table_arg(&args, "table")?;
    let df = t.collect().map_err(|e| EvalError::polars(e, args.span))?;
    let mut names = Vec::new();
    let (mut count, mut nulls) = (Vec::new(), Vec::new());
    let (mut mean, mut std, mut min, mut max) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in df.columns() {
        if !c.dtype().is_primitive_numeric() {
            continue;
        }
        let s = c
            .as_materialized_series()
            .cast(&DataType::Float64)
            .map_err(|e| EvalError::polars(e, args.span))?;
        let ca = s.f64().map_err(|e| EvalError::polars(e, args.span))?;
        names.push(c.name().to_string());
        count.push((ca.len() - ca.null_count()) as u64);
        nulls.push(ca.null_count() as u64);
        mean.push(ca.mean());
        std.push(ca.std(1));
        min.push(ca.min());
        max.push(ca.max());
    }
    let out = DataFrame::new_infer_height(vec![
        Column::new("column".into(), names),
        Column::new("count".into(), count),
        Column::new("mean".into(), mean),
        Column::new("std".into(), std),
        Column::new("min".into(), min),
        Column::new("max".into(), max),
        Column::new("null_count".into(), nulls),
    ])
    .map_err(|e| EvalError::polars(e, args.span))?;
    Ok(out.into())
}

fn verb_count(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let v = args.value("value").cloned().unwrap_or(Value::Null);
    let n = match &v {
        Value::Table(t) => t
            .collect()
            .map_err(|e| EvalError::polars(e, args.span))?
            .height(),
        Value::Graph(g) => g
            .table()
            .map_err(|e| EvalError::polars(e, args.span))?
            .height(),
        Value::List(items) => items.len(),
        Value::Str(s) => s.chars().count(),
        other => {
            return Err(EvalError::type_mismatch(
                "table, list or string",
                other.type_name(),
                args.span_of("value"),
            ))
        }
    };
    Ok(Value::Number(n as f64))
}
