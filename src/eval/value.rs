//! Runtime values and how they print.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use polars::prelude::*;

use super::error::SourceFile;
use crate::attribution::graph::Graph;
use crate::model::Model;
use crate::syntax::Expr;

/// A value in rlq. Cheap to clone (tables and handles are reference-counted).
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // a frame inline, as polars passes them; boxing adds a hop
pub enum Value {
    Null,
    Bool(bool),
    /// All numbers are f64; integral values print without a fraction.
    Number(f64),
    Str(String),
    List(Vec<Value>),
    Table(Table),
    Model(Arc<Model>),
    Graph(Arc<Graph>),
    Func(Arc<Function>),
}

/// A table: an eager frame, or a lazy plan built up inside one pipeline. Statement results are
/// always collected, so variables hold eager frames.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // a lazy plan only lives inside one pipeline
pub enum Table {
    Eager(DataFrame),
    Lazy(LazyFrame),
}

impl Table {
    pub fn lazy(&self) -> LazyFrame {
        match self {
            Table::Eager(df) => df.clone().lazy(),
            Table::Lazy(lf) => lf.clone(),
        }
    }
    /// The eager frame (runs the plan if lazy). Polars panics are turned into errors.
    pub fn collect(&self) -> PolarsResult<DataFrame> {
        match self {
            Table::Eager(df) => Ok(df.clone()),
            Table::Lazy(lf) => {
                let lf = lf.clone();
                guard_polars(move || lf.collect())
            }
        }
    }
    /// Column names and types (resolves a lazy plan without computing data).
    pub fn schema(&self) -> PolarsResult<SchemaRef> {
        match self {
            Table::Eager(df) => Ok(df.schema().clone()),
            Table::Lazy(lf) => {
                let lf = lf.clone();
                guard_polars(move || lf.clone().collect_schema())
            }
        }
    }
}

/// Runs a polars call, turning a panic inside polars into an error (user input must never
/// crash the session).
pub fn guard_polars<T>(f: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "internal polars panic".into());
        Err(PolarsError::ComputeError(msg.into()))
    })
}

/// A user function: `fn name(params) = body`, or a function value `fn(params) = body`.
pub struct Function {
    /// [`Function::ANONYMOUS`] for a function value.
    pub name: String,
    pub params: Vec<String>,
    pub body: Expr,
    /// The source the body's spans point into.
    pub source: Arc<SourceFile>,
    /// The parameters of the function a function value was written in, as they were then
    /// (empty for top-level functions: they read globals when called).
    pub captured: HashMap<String, Value>,
}

impl Function {
    /// The name of function values (`fn` is reserved, so no `fn name(…)` can take it).
    pub const ANONYMOUS: &'static str = "fn";

    /// How messages name it: `f`, or `fn(x)` for a function value.
    pub fn title(&self) -> String {
        if self.name == Function::ANONYMOUS {
            format!("fn({})", self.params.join(", "))
        } else {
            self.name.clone()
        }
    }
}

impl Value {
    /// The name users see in type errors: `number`, `table`, …
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Table(_) => "table",
            Value::Model(_) => "model",
            Value::Graph(_) => "graph",
            Value::Func(_) => "function",
        }
    }

    /// The value as an eager table: a table, or a graph's edge table.
    pub fn as_table(&self) -> Option<DataFrame> {
        match self {
            Value::Table(t) => t.collect().ok(),
            Value::Graph(g) => g.table().ok(),
            _ => None,
        }
    }
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_model(&self) -> Option<&Arc<Model>> {
        match self {
            Value::Model(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_graph(&self) -> Option<&Arc<Graph>> {
        match self {
            Value::Graph(g) => Some(g),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The type and size, as `:vars` lists it: `table 20 × 5`, `graph 3691 edges × 8 samples`.
    pub fn summary(&self) -> String {
        match self {
            Value::Table(Table::Eager(df)) => {
                format!("table {} × {}", df.height(), df.width())
            }
            // A lazy plan's height is unknown until it runs; its width is not.
            Value::Table(t) => match t.schema() {
                Ok(schema) => format!("table ? × {}", schema.len()),
                Err(_) => "table".into(),
            },
            Value::Graph(g) => format!(
                "graph {} edges × {} samples ({}, {})",
                g.edges.len(),
                g.scores.len(),
                if g.meta.method.is_empty() {
                    "?"
                } else {
                    &g.meta.method
                },
                if g.meta.granularity.is_empty() {
                    "?"
                } else {
                    &g.meta.granularity
                },
            ),
            Value::List(items) => format!("list of {}", items.len()),
            Value::Model(m) => format!(
                "model {} ({}, {} layers)",
                m.source,
                m.config.family.name(),
                m.config.n_layers
            ),
            Value::Str(s) => format!("string of {} chars", s.chars().count()),
            Value::Func(func) => format!("fn({})", func.params.join(", ")),
            other => format!("{} {other}", other.type_name()),
        }
    }
}

fn fmt_number(n: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 {
        write!(f, "{}", n as i64)
    } else {
        write!(f, "{n}")
    }
}

/// Strings print raw at top level (so `help` reads well) and quoted inside lists.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => fmt_number(*n, f),
            Value::Str(s) => f.write_str(s),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match v {
                        Value::Str(s) => write!(f, "{s:?}")?,
                        other => write!(f, "{other}")?,
                    }
                }
                f.write_str("]")
            }
            Value::Table(t) => match t.collect() {
                Ok(df) => write!(f, "{df}"),
                Err(e) => write!(f, "<table that failed to compute: {e}>"),
            },
            Value::Model(m) => write!(
                f,
                "model {} ({}, {} layers)",
                m.source,
                m.config.family.name(),
                m.config.n_layers
            ),
            // Its edge table would show every score as 0: say what it is instead.
            Value::Graph(g) if g.scores.is_empty() => write!(
                f,
                "graph with 0 samples: {} edges and no scores (an interrupted or empty run; \
                 continue it with `patch … resume <it>`)",
                g.edges.len()
            ),
            Value::Graph(g) => match g.table() {
                Ok(df) => write!(f, "{df}"),
                Err(e) => write!(f, "<graph whose table failed: {e}>"),
            },
            Value::Func(func) if func.name == Function::ANONYMOUS => f.write_str(&func.title()),
            Value::Func(func) => write!(f, "fn {}({})", func.name, func.params.join(", ")),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Table(_) | Value::Graph(_) => write!(f, "<{}>\n{self}", self.type_name()),
            other => write!(f, "{other}"),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Table(a), Value::Table(b)) => match (a.collect(), b.collect()) {
                (Ok(a), Ok(b)) => a.equals_missing(&b),
                _ => false,
            },
            (Value::Model(a), Value::Model(b)) => Arc::ptr_eq(a, b),
            (Value::Graph(a), Value::Graph(b)) => Arc::ptr_eq(a, b),
            (Value::Func(a), Value::Func(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl From<DataFrame> for Value {
    fn from(df: DataFrame) -> Value {
        Value::Table(Table::Eager(df))
    }
}
impl From<LazyFrame> for Value {
    fn from(lf: LazyFrame) -> Value {
        Value::Table(Table::Lazy(lf))
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Number(n as f64)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Number(n as f64)
    }
}
impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::Number(n as f64)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}
impl From<Arc<Model>> for Value {
    fn from(m: Arc<Model>) -> Value {
        Value::Model(m)
    }
}
impl From<Model> for Value {
    fn from(m: Model) -> Value {
        Value::Model(Arc::new(m))
    }
}
impl From<Arc<Graph>> for Value {
    fn from(g: Arc<Graph>) -> Value {
        Value::Graph(g)
    }
}
impl From<Graph> for Value {
    fn from(g: Graph) -> Value {
        Value::Graph(Arc::new(g))
    }
}
impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}
