//! Column expressions → polars expressions.
//!
//! The rule for names inside table verbs (`where`, `select`, `with`, `by`, `agg`): a bare name
//! that is a column of the input table is that column; otherwise, a variable in scope becomes a
//! literal (`let k = 4; t | where layer < k`); otherwise it is an error that lists the columns.
//! `x in [a, b]` (or `x in some_list_variable`) tests membership.

use polars::prelude::{self as pl, lit, Expr as PlExpr, NamedFrom, RoundMode, Schema};

use super::context::EvalContext;
use super::error::{suggestion, ErrorCode, EvalError, EvalResult};
use super::registry::ColumnArg;
use super::value::Value;
use crate::syntax::{BinaryOp, Command, Expr, ExprKind, UnaryOp};

/// Aggregations usable inside `agg` (and anywhere a column expression is).
pub const AGG_FUNCTIONS: &[&str] = &[
    "sum", "mean", "avg", "min", "max", "std", "var", "median", "first", "last", "count",
    "n_unique", "len", "pearson", "spearman", "kendall",
];
/// Element-wise functions usable in column expressions.
pub const SCALAR_FUNCTIONS: &[&str] = &[
    "abs", "sqrt", "exp", "log", "round", "col", "is_null", "not_null",
];

impl EvalContext {
    /// Compiles a column argument (with its `as` name) against a table's schema.
    pub fn compile_column(&self, arg: &ColumnArg, schema: &Schema) -> EvalResult<PlExpr> {
        let e = self.compile_expr(&arg.expr, schema)?;
        Ok(match &arg.alias {
            Some(name) => e.alias(name.as_str()),
            None => e,
        })
    }

    /// Compiles an expression in which bare names are columns.
    pub fn compile_expr(&self, e: &Expr, schema: &Schema) -> EvalResult<PlExpr> {
        match &e.kind {
            ExprKind::Null => Ok(lit(pl::Null {})),
            ExprKind::Bool(b) => Ok(lit(*b)),
            ExprKind::Number { value, is_int } => Ok(number_lit(*value, *is_int)),
            ExprKind::Str(s) => Ok(lit(s.as_str())),
            ExprKind::Var(name) => {
                if schema.contains(name) {
                    return Ok(pl::col(name.as_str()));
                }
                if let Some(v) = self.lookup(name) {
                    return value_lit(v).ok_or_else(|| {
                        EvalError::at(e.span, format!("`{name}` is a {}; only numbers, strings and bools can be used in a column expression", v.type_name()))
                            .with_code(ErrorCode::Type)
                    });
                }
                let columns: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
                Err(EvalError::at(e.span, format!("unknown column `{name}`"))
                    .with_label("not a column of the input table")
                    .with_help(suggestion(name, "column", &columns))
                    .with_code(ErrorCode::Column))
            }
            ExprKind::Unary(UnaryOp::Neg, inner) => Ok(-self.compile_expr(inner, schema)?),
            ExprKind::Unary(UnaryOp::Not, inner) => Ok(self.compile_expr(inner, schema)?.not()),
            ExprKind::Binary(BinaryOp::In, l, r) => {
                let a = self.compile_expr(l, schema)?;
                let values = match &r.kind {
                    ExprKind::List(items) => items.iter().map(|i| self.literal_value(i)).collect::<EvalResult<Vec<_>>>()?,
                    ExprKind::Var(name) if !schema.contains(name) => match self.lookup(name) {
                        Some(Value::List(items)) => items.clone(),
                        _ => return Err(EvalError::at(r.span, "`in` needs a list on the right, like `x in [1, 2]`")),
                    },
                    _ => return Err(EvalError::at(r.span, "`in` needs a list on the right, like `x in [1, 2]`")),
                };
                let series = list_series(&values).ok_or_else(|| {
                    EvalError::at(r.span, "`in` needs a list of numbers, strings or bools (all the same type)")
                })?;
                Ok(a.is_in(lit(series).implode(false), false))
            }
            ExprKind::Binary(op, l, r) => {
                let (a, b) = (self.compile_expr(l, schema)?, self.compile_expr(r, schema)?);
                Ok(match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Sub => a - b,
                    BinaryOp::Mul => a * b,
                    BinaryOp::Div => a.true_div(b),
                    BinaryOp::Rem => a % b,
                    BinaryOp::Eq => a.eq(b),
                    BinaryOp::Ne => a.neq(b),
                    BinaryOp::Lt => a.lt(b),
                    BinaryOp::Le => a.lt_eq(b),
                    BinaryOp::Gt => a.gt(b),
                    BinaryOp::Ge => a.gt_eq(b),
                    BinaryOp::And => a.and(b),
                    BinaryOp::In => a.is_in(b, false),
                    BinaryOp::Or => a.or(b),
                })
            }
            ExprKind::Command(cmd) => self.compile_call(cmd, schema),
            ExprKind::List(_)
            | ExprKind::Record(_)
            | ExprKind::Index(..)
            | ExprKind::Lambda { .. }
            | ExprKind::Pipeline(_) => {
                Err(EvalError::at(e.span, "not allowed in a column expression")
                    .with_help("column expressions use columns, literals, operators and functions like sum(x), abs(x)"))
            }
        }
    }

    /// A literal (or a variable) inside a column expression's list.
    fn literal_value(&self, e: &Expr) -> EvalResult<Value> {
        match &e.kind {
            ExprKind::Number { value, .. } => Ok(Value::Number(*value)),
            ExprKind::Str(s) => Ok(Value::Str(s.clone())),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::Null => Ok(Value::Null),
            ExprKind::Var(name) => self.lookup(name).cloned().ok_or_else(|| {
                EvalError::at(e.span, format!("unknown variable `{name}` in a list"))
            }),
            _ => Err(EvalError::at(
                e.span,
                "lists in column expressions hold literals",
            )),
        }
    }

    fn compile_call(&self, cmd: &Command, schema: &Schema) -> EvalResult<PlExpr> {
        let name = cmd.verb.name.as_str();
        let mut args = Vec::new();
        for item in &cmd.items {
            if let Some(alias) = item.alias() {
                return Err(EvalError::at(
                    alias.span,
                    "put `as name` after the whole expression",
                ));
            }
            args.push(item.expr());
        }
        // `col("odd name")`
        if name == "col" {
            return match args.as_slice() {
                [a] => match &a.kind {
                    ExprKind::Str(s) if schema.contains(s) => Ok(pl::col(s.as_str())),
                    ExprKind::Str(s) => {
                        let columns: Vec<String> =
                            schema.iter_names().map(|n| n.to_string()).collect();
                        Err(EvalError::at(a.span, format!("unknown column `{s}`"))
                            .with_help(suggestion(s, "column", &columns)))
                    }
                    _ => Err(EvalError::at(a.span, "col takes a column name as a string")),
                },
                _ => Err(EvalError::at(cmd.span, "col takes one column name")),
            };
        }
        let compiled = args
            .iter()
            .map(|a| self.compile_expr(a, schema))
            .collect::<EvalResult<Vec<_>>>()?;
        let arity = |n: usize| -> EvalResult<()> {
            if compiled.len() == n {
                Ok(())
            } else {
                Err(EvalError::at(
                    cmd.span,
                    format!(
                        "`{name}` takes {n} argument(s) here, got {}",
                        compiled.len()
                    ),
                ))
            }
        };
        let one = || compiled.first().cloned();
        Ok(match (name, compiled.len()) {
            ("count" | "len", 0) => pl::len(),
            ("count", 1) => one().map(|e| e.count()).unwrap_or_else(pl::len),
            ("len", 1) => one().map(|e| e.len()).unwrap_or_else(pl::len),
            ("sum", _) => {
                arity(1)?;
                one().map(|e| e.sum()).unwrap_or_else(pl::len)
            }
            (
                "mean" | "avg" | "min" | "max" | "std" | "var" | "median" | "first" | "last"
                | "n_unique" | "abs" | "sqrt" | "exp" | "is_null" | "not_null",
                _,
            ) => {
                arity(1)?;
                let e = one().unwrap_or_else(pl::len);
                match name {
                    "mean" | "avg" => e.mean(),
                    "min" => e.min(),
                    "max" => e.max(),
                    "std" => e.std(1),
                    "var" => e.var(1),
                    "median" => e.median(),
                    "first" => e.first(),
                    "last" => e.last(),
                    "n_unique" => e.n_unique(),
                    "abs" => e.abs(),
                    "sqrt" => e.sqrt(),
                    "exp" => e.exp(),
                    "is_null" => e.is_null(),
                    _ => e.is_not_null(),
                }
            }
            ("pearson" | "spearman" | "kendall", _) => {
                arity(2)?;
                correlation(name, compiled[0].clone(), compiled[1].clone())
            }
            ("log", 1) => one()
                .map(|e| e.log(lit(std::f64::consts::E)))
                .unwrap_or_else(pl::len),
            ("log", 2) => compiled[0].clone().log(compiled[1].clone()),
            ("round", 1 | 2) => {
                let digits = match args.get(1).map(|a| &a.kind) {
                    None => Some(0),
                    Some(ExprKind::Number { value, .. }) => {
                        crate::eval::args::whole_number(*value).and_then(|d| u32::try_from(d).ok())
                    }
                    _ => None,
                };
                let Some(digits) = digits else {
                    return Err(EvalError::at(
                        cmd.span,
                        "round(x, digits): digits must be a whole number",
                    ));
                };
                compiled[0]
                    .clone()
                    .round(digits, RoundMode::HalfAwayFromZero)
            }
            _ => {
                let mut known: Vec<String> = AGG_FUNCTIONS
                    .iter()
                    .chain(SCALAR_FUNCTIONS)
                    .map(|s| s.to_string())
                    .collect();
                known.sort();
                return Err(EvalError::at(
                    cmd.verb.span,
                    format!("`{name}` is not a column function"),
                )
                .with_label("unknown here")
                .with_help(suggestion(name, "column function", &known))
                .with_code(ErrorCode::Column));
            }
        })
    }
}

/// `pearson(a, b)`, `spearman(a, b)`, `kendall(a, b)` (τ-b) of two columns: one number per
/// group inside `group … agg`, or for the whole table. The values are the analysis layer's
/// implementations (`analysis::measures`), the ones `overlap` reports, so a correlation means the
/// same everywhere. Rows where either side is null are left out (pairwise complete); a NaN on
/// either side makes the result NaN, as an undefined correlation (a constant side) does.
fn correlation(name: &str, a: PlExpr, b: PlExpr) -> PlExpr {
    use crate::analysis::measures::{kendall, pearson, spearman};
    let measure: fn(&[f64], &[f64]) -> f64 = match name {
        "pearson" => pearson,
        "spearman" => spearman,
        _ => kendall,
    };
    let out_name = pl::PlSmallStr::from(name);
    pl::apply_multiple(
        move |columns: &mut [pl::Column]| {
            let f64s = |c: &pl::Column| -> pl::PolarsResult<Vec<Option<f64>>> {
                Ok(c.cast(&pl::DataType::Float64)?.f64()?.iter().collect())
            };
            let (x, y) = (f64s(&columns[0])?, f64s(&columns[1])?);
            let (mut xs, mut ys) = (Vec::with_capacity(x.len()), Vec::with_capacity(y.len()));
            for (u, v) in x.iter().zip(&y) {
                if let (Some(u), Some(v)) = (u, v) {
                    xs.push(*u);
                    ys.push(*v);
                }
            }
            let r = if xs.iter().chain(&ys).any(|v| v.is_nan()) {
                f64::NAN
            } else {
                measure(&xs, &ys)
            };
            Ok(pl::Column::new(columns[0].name().clone(), [r]))
        },
        [a, b],
        move |_, fields: &[pl::Field]| {
            let name = fields
                .first()
                .map_or(out_name.clone(), |f| f.name().clone());
            Ok(pl::Field::new(name, pl::DataType::Float64))
        },
        true,
    )
}

/// A series of list values: integers stay integers, so `layer in [1, 2]` matches an i64 column.
fn list_series(values: &[Value]) -> Option<pl::Series> {
    let name = pl::PlSmallStr::from_static("values");
    if values
        .iter()
        .all(|v| matches!(v, Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15))
    {
        let ints: Vec<i64> = values
            .iter()
            .filter_map(Value::as_number)
            .map(|n| n as i64)
            .collect();
        return Some(pl::Series::new(name, ints));
    }
    if values.iter().all(|v| matches!(v, Value::Number(_))) {
        return Some(pl::Series::new(
            name,
            values
                .iter()
                .filter_map(Value::as_number)
                .collect::<Vec<f64>>(),
        ));
    }
    if values.iter().all(|v| matches!(v, Value::Str(_))) {
        return Some(pl::Series::new(
            name,
            values
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<&str>>(),
        ));
    }
    if values.iter().all(|v| matches!(v, Value::Bool(_))) {
        return Some(pl::Series::new(
            name,
            values
                .iter()
                .filter_map(Value::as_bool)
                .collect::<Vec<bool>>(),
        ));
    }
    None
}

fn number_lit(value: f64, is_int: bool) -> PlExpr {
    if is_int && value.abs() < 9.0e15 {
        lit(value as i64)
    } else {
        lit(value)
    }
}

fn value_lit(v: &Value) -> Option<PlExpr> {
    Some(match v {
        Value::Null => lit(pl::Null {}),
        Value::Bool(b) => lit(*b),
        Value::Number(n) => number_lit(*n, n.fract() == 0.0),
        Value::Str(s) => lit(s.as_str()),
        _ => return None,
    })
}

/// The output name `group … agg` gives an unnamed aggregation: `sum(score)` → `sum_score`,
/// `count()` → `count`, `spearman(a, b)` → `spearman_a_b`.
pub fn default_agg_name(e: &Expr) -> Option<String> {
    let ExprKind::Command(cmd) = &e.kind else {
        return None;
    };
    match cmd.items.as_slice() {
        [] => Some(cmd.verb.name.clone()),
        [item] => match &item.expr().kind {
            ExprKind::Var(col) => Some(format!("{}_{col}", cmd.verb.name)),
            _ => None,
        },
        [a, b] => match (&a.expr().kind, &b.expr().kind) {
            (ExprKind::Var(x), ExprKind::Var(y)) => Some(format!("{}_{x}_{y}", cmd.verb.name)),
            _ => None,
        },
        _ => None,
    }
}
