//! The verb registry (nushell-style): every verb declares its signature once, and that one
//! declaration drives argument resolution, `help`, completion and `rlq check`.
//!
//! # Adding a verb
//! Either implement [`Verb`] on a type, or register a plain function with a [`Signature`]:
//! ```
//! use rlq::eval::{Registry, Signature, Type, Value};
//! let mut registry = Registry::default();
//! registry.register_fn(
//!     Signature::new("double", "twice a number")
//!         .required("x", Type::Number, "the number")
//!         .example("double 21", "42"),
//!     |_ctx, args| Ok(Value::Number(args.number("x").unwrap_or(0.0) * 2.0)),
//! );
//! assert!(registry.get("double").is_some());
//! ```
//! or, for a verb with more to it, a type:
//! ```
//! use rlq::eval::{Args, EvalContext, EvalResult, Signature, Type, Value, Verb};
//!
//! /// `t | sample 5`: the first n rows (a stand-in for something cleverer).
//! struct Sample;
//!
//! impl Verb for Sample {
//!     fn signature(&self) -> Signature {
//!         Signature::new("sample", "n rows of a table")
//!             .category("table")
//!             .input(Type::Table)
//!             .required("n", Type::Number, "how many rows")
//!             .example("t | sample 5", "five rows")
//!     }
//!     fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
//!         ctx.check_interrupt(args.span)?; // long loops poll this (Ctrl-C)
//!         let n = args.number("n").unwrap_or(0.0) as u32;
//!         Ok(args.input_table()?.lazy().limit(n.into()).into())
//!     }
//! }
//!
//! let mut s = rlq::Session::new();
//! s.register_verb(Box::new(Sample));
//! s.set("t", polars::prelude::df!("a" => [1, 2, 3]).unwrap());
//! assert_eq!(s.eval("t | sample 2 | count").unwrap().as_number(), Some(2.0));
//! ```
//! Built-in verbs are added in [`crate::eval::verbs::register_builtins`]; a layer with its own
//! verbs (e.g. `analysis`) exposes `fn register(reg: &mut Registry)` and gets one line there.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context::EvalContext;
use super::error::EvalResult;
use super::value::{Table, Value};
use crate::syntax::{Expr, Span};

/// The type a value-argument must have. `Table` also accepts a graph (as its edge table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Any,
    Number,
    Str,
    Bool,
    List,
    Table,
    Model,
    Graph,
    Func,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Any => "any",
            Type::Number => "number",
            Type::Str => "string",
            Type::Bool => "bool",
            Type::List => "list",
            Type::Table => "table",
            Type::Model => "model",
            Type::Graph => "graph",
            Type::Func => "function",
        }
    }
    /// Checks (and, for graph → table, converts) a value.
    pub fn coerce(self, v: Value) -> Result<Value, Value> {
        match (self, v) {
            (Type::Any, v) => Ok(v),
            (Type::Number, v @ Value::Number(_)) => Ok(v),
            (Type::Str, v @ Value::Str(_)) => Ok(v),
            (Type::Bool, v @ Value::Bool(_)) => Ok(v),
            (Type::List, v @ Value::List(_)) => Ok(v),
            (Type::Table, v @ Value::Table(_)) => Ok(v),
            (Type::Table, Value::Graph(g)) => match g.table() {
                Ok(df) => Ok(Value::Table(Table::Eager(df))),
                Err(_) => Err(Value::Graph(g)),
            },
            (Type::Model, v @ Value::Model(_)) => Ok(v),
            (Type::Graph, v @ Value::Graph(_)) => Ok(v),
            (Type::Func, v @ Value::Func(_)) => Ok(v),
            (_, v) => Err(v),
        }
    }
}

/// How an argument is taken from the source.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Evaluated to a value of this type.
    Value(Type),
    /// Kept as syntax and compiled against the input table's columns (`where`, `select`, `by`…):
    /// bare names are columns; variables that are not columns become literals.
    Column,
    /// A bare word or a string: `loss self_entropy`, `how left`.
    Word,
    /// A keyword with no value: its presence is the value.
    Flag,
}

/// One positional parameter or keyword.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub shape: Shape,
    pub description: String,
    pub optional: bool,
    /// Takes every remaining item (comma-separated or not).
    pub many: bool,
    /// (First positional only) filled by the piped value when there is one.
    pub piped: bool,
    /// Column lists only: a trailing `desc` / `asc` word marks the previous item's order.
    pub ordered: bool,
    pub default: Option<Value>,
}

impl Param {
    pub fn new(name: &str, shape: Shape, description: &str) -> Param {
        Param {
            name: name.into(),
            shape,
            description: description.into(),
            optional: false,
            many: false,
            piped: false,
            ordered: false,
            default: None,
        }
    }
    fn usage(&self) -> String {
        let core = match &self.shape {
            Shape::Flag => return format!("[{}]", self.name),
            Shape::Column => "expr".to_string(),
            Shape::Word => "word".to_string(),
            Shape::Value(t) => t.name().to_string(),
        };
        let core = if self.many {
            format!("{}:{core}…", self.name)
        } else {
            format!("{}:{core}", self.name)
        };
        if self.optional {
            format!("[{core}]")
        } else {
            format!("<{core}>")
        }
    }
}

/// A worked example: source and what it shows. Examples are checked by the test suite.
#[derive(Debug, Clone)]
pub struct Example {
    pub source: String,
    pub note: String,
}

/// What a verb accepts. Built with the chained methods below.
#[derive(Debug, Clone)]
pub struct Signature {
    pub name: String,
    pub description: String,
    /// Grouping in `help`: `table`, `io`, `scalar`, `graph`, …
    pub category: String,
    /// Piped input this verb requires (`t | where …`), if any.
    pub input: Option<Type>,
    pub positional: Vec<Param>,
    pub keywords: Vec<Param>,
    pub examples: Vec<Example>,
}

impl Signature {
    pub fn new(name: &str, description: &str) -> Signature {
        Signature {
            name: name.into(),
            description: description.into(),
            category: "other".into(),
            input: None,
            positional: Vec::new(),
            keywords: Vec::new(),
            examples: Vec::new(),
        }
    }
    pub fn category(mut self, category: &str) -> Self {
        self.category = category.into();
        self
    }
    /// The verb needs a piped value of this type.
    pub fn input(mut self, ty: Type) -> Self {
        self.input = Some(ty);
        self
    }
    /// Adds any positional parameter.
    pub fn positional(mut self, p: Param) -> Self {
        self.positional.push(p);
        self
    }
    /// Adds any keyword.
    pub fn keyword(mut self, p: Param) -> Self {
        self.keywords.push(p);
        self
    }
    /// A required positional value.
    pub fn required(self, name: &str, ty: Type, description: &str) -> Self {
        self.positional(Param::new(name, Shape::Value(ty), description))
    }
    /// An optional positional value.
    pub fn optional(self, name: &str, ty: Type, description: &str) -> Self {
        self.positional(Param {
            optional: true,
            ..Param::new(name, Shape::Value(ty), description)
        })
    }
    /// Every remaining positional value.
    pub fn rest(self, name: &str, ty: Type, description: &str) -> Self {
        self.positional(Param {
            optional: true,
            many: true,
            ..Param::new(name, Shape::Value(ty), description)
        })
    }
    /// A first positional value that the piped value fills when present: `t | save to "x"` and
    /// `save t to "x"` both work.
    pub fn piped(self, name: &str, ty: Type, description: &str) -> Self {
        self.positional(Param {
            piped: true,
            ..Param::new(name, Shape::Value(ty), description)
        })
    }
    /// One positional column expression.
    pub fn column(self, name: &str, description: &str) -> Self {
        self.positional(Param::new(name, Shape::Column, description))
    }
    /// Every remaining positional item, as column expressions.
    pub fn columns(self, name: &str, description: &str) -> Self {
        self.positional(Param {
            many: true,
            ..Param::new(name, Shape::Column, description)
        })
    }
    /// An optional keyword taking one value.
    pub fn named(self, name: &str, ty: Type, description: &str) -> Self {
        self.keyword(Param {
            optional: true,
            ..Param::new(name, Shape::Value(ty), description)
        })
    }
    /// A required keyword taking one value.
    pub fn named_required(self, name: &str, ty: Type, description: &str) -> Self {
        self.keyword(Param::new(name, Shape::Value(ty), description))
    }
    /// An optional keyword with a default value.
    pub fn named_default(
        self,
        name: &str,
        ty: Type,
        default: impl Into<Value>,
        description: &str,
    ) -> Self {
        self.keyword(Param {
            optional: true,
            default: Some(default.into()),
            ..Param::new(name, Shape::Value(ty), description)
        })
    }
    /// An optional keyword taking a bare word (`how left`), with a default.
    pub fn word(self, name: &str, default: Option<&str>, description: &str) -> Self {
        self.keyword(Param {
            optional: true,
            default: default.map(Value::from),
            ..Param::new(name, Shape::Word, description)
        })
    }
    /// A keyword taking column expressions (`by a, b`).
    pub fn named_columns(self, name: &str, required: bool, description: &str) -> Self {
        self.keyword(Param {
            optional: !required,
            many: true,
            ..Param::new(name, Shape::Column, description)
        })
    }
    /// A keyword with no value.
    pub fn flag(self, name: &str, description: &str) -> Self {
        self.keyword(Param {
            optional: true,
            ..Param::new(name, Shape::Flag, description)
        })
    }
    pub fn example(mut self, source: &str, note: &str) -> Self {
        self.examples.push(Example {
            source: source.into(),
            note: note.into(),
        });
        self
    }
    pub fn keyword_param(&self, name: &str) -> Option<&Param> {
        self.keywords.iter().find(|k| k.name == name)
    }
    pub fn keyword_names(&self) -> Vec<String> {
        self.keywords.iter().map(|k| k.name.clone()).collect()
    }
    /// `top <n:number> [by:expr]`
    pub fn usage(&self) -> String {
        let mut out = self.name.clone();
        if let Some(t) = self.input {
            out = format!("<{}> | {out}", t.name());
        }
        for p in &self.positional {
            out.push(' ');
            out.push_str(&p.usage());
        }
        for k in &self.keywords {
            out.push(' ');
            match k.shape {
                Shape::Flag => out.push_str(&k.usage()),
                _ => {
                    let inner = k.usage();
                    let inner = inner
                        .trim_start_matches(['<', '['])
                        .trim_end_matches(['>', ']']);
                    let value = inner.split_once(':').map(|(_, t)| t).unwrap_or(inner);
                    if k.optional {
                        out.push_str(&format!("[{} {value}]", k.name));
                    } else {
                        out.push_str(&format!("{} <{value}>", k.name));
                    }
                }
            }
        }
        out
    }
}

/// A column-expression argument: the syntax, its `as` name, and `desc` for sort keys.
#[derive(Debug, Clone)]
pub struct ColumnArg {
    pub expr: Expr,
    pub alias: Option<String>,
    pub descending: bool,
    pub span: Span,
}

/// One resolved argument.
#[derive(Debug, Clone)]
pub enum ArgValue {
    Value(Value),
    Column(ColumnArg),
    Word(String),
    Flag,
}

#[derive(Debug, Clone)]
pub struct Arg {
    pub value: ArgValue,
    pub span: Span,
}

/// The arguments a verb receives, by parameter name (positional and keyword alike).
/// Types are already checked against the signature; defaults are filled in.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub verb: String,
    /// The whole command, for errors.
    pub span: Span,
    /// The piped value, when the signature declares `input`.
    pub input: Option<Value>,
    pub named: BTreeMap<String, Vec<Arg>>,
    /// Positional values in order (for simple host functions).
    pub positional: Vec<Value>,
}

impl Args {
    pub fn has(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }
    pub fn all(&self, name: &str) -> &[Arg] {
        self.named.get(name).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// The (first) value of a parameter.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.all(name).iter().find_map(|a| match &a.value {
            ArgValue::Value(v) => Some(v),
            _ => None,
        })
    }
    pub fn values(&self, name: &str) -> Vec<&Value> {
        self.all(name)
            .iter()
            .filter_map(|a| match &a.value {
                ArgValue::Value(v) => Some(v),
                _ => None,
            })
            .collect()
    }
    pub fn number(&self, name: &str) -> Option<f64> {
        self.value(name).and_then(Value::as_number)
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(Value::as_str)
    }
    /// A word argument (or a string given in its place).
    pub fn word(&self, name: &str) -> Option<&str> {
        self.all(name).iter().find_map(|a| match &a.value {
            ArgValue::Word(w) => Some(w.as_str()),
            ArgValue::Value(Value::Str(s)) => Some(s.as_str()),
            _ => None,
        })
    }
    pub fn flag(&self, name: &str) -> bool {
        self.all(name)
            .iter()
            .any(|a| matches!(a.value, ArgValue::Flag))
    }
    pub fn columns(&self, name: &str) -> Vec<&ColumnArg> {
        self.all(name)
            .iter()
            .filter_map(|a| match &a.value {
                ArgValue::Column(c) => Some(c),
                _ => None,
            })
            .collect()
    }
    pub fn span_of(&self, name: &str) -> Span {
        let all = self.all(name);
        match (all.first(), all.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => self.span,
        }
    }
    /// The piped table (a graph counts as its table).
    pub fn input_table(&self) -> EvalResult<Table> {
        match &self.input {
            Some(Value::Table(t)) => Ok(t.clone()),
            Some(other) => match Type::Table.coerce(other.clone()) {
                Ok(Value::Table(t)) => Ok(t),
                _ => Err(super::error::EvalError::type_mismatch(
                    "table",
                    other.type_name(),
                    self.span,
                )),
            },
            None => Err(super::error::EvalError::at(
                self.span,
                format!(
                    "`{}` needs a table piped into it, like `t | {} …`",
                    self.verb, self.verb
                ),
            )),
        }
    }
    /// A table-valued parameter.
    pub fn table(&self, name: &str) -> Option<Table> {
        match self.value(name) {
            Some(Value::Table(t)) => Some(t.clone()),
            _ => None,
        }
    }
}

/// A verb: one type per verb, or a function registered with [`Registry::register_fn`].
pub trait Verb: Send + Sync {
    fn signature(&self) -> Signature;
    /// Examples for `help`; they default to the ones in the signature.
    fn examples(&self) -> Vec<Example> {
        self.signature().examples
    }
    fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value>;
}

/// The function type host-defined verbs use.
pub type VerbFn = dyn Fn(&mut EvalContext, Args) -> EvalResult<Value> + Send + Sync;

/// A verb made of a signature and a function.
pub struct FnVerb {
    pub signature: Signature,
    pub run: Arc<VerbFn>,
}

impl Verb for FnVerb {
    fn signature(&self) -> Signature {
        self.signature.clone()
    }
    fn run(&self, ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
        (self.run)(ctx, args)
    }
}

/// A registered verb with its signature computed once.
#[derive(Clone)]
pub struct Entry {
    pub verb: Arc<dyn Verb>,
    pub signature: Arc<Signature>,
}

/// All verbs by name. Registering a name again replaces the old verb.
#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl Registry {
    pub fn register(&mut self, verb: Box<dyn Verb>) {
        let mut signature = verb.signature();
        signature.examples = verb.examples();
        self.entries.insert(
            signature.name.clone(),
            Entry {
                verb: Arc::from(verb),
                signature: Arc::new(signature),
            },
        );
    }
    pub fn register_fn(
        &mut self,
        signature: Signature,
        run: impl Fn(&mut EvalContext, Args) -> EvalResult<Value> + Send + Sync + 'static,
    ) {
        self.register(Box::new(FnVerb {
            signature,
            run: Arc::new(run),
        }));
    }
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
    pub fn signatures(&self) -> impl Iterator<Item = &Signature> {
        self.entries.values().map(|e| e.signature.as_ref())
    }
}
