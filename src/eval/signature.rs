//! What a verb accepts: parameter types and shapes, keywords, defaults, examples.

use super::value::{Table, Value};

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

/// The numbers a number parameter accepts. Declared with the parameter
/// ([`Signature::range`]) and checked in one place, where arguments are bound, so every verb's
/// message states the same facts: finiteness, whole or not, and both bounds.
///
/// ```
/// use rlq::eval::Range;
/// assert!(Range::whole(1.0, 10_000.0).check(5.0).is_ok());
/// assert_eq!(
///     Range::whole(1.0, 10_000.0).check(1e9).unwrap_err(),
///     "a whole number from 1 to 10000, got 1000000000"
/// );
/// assert_eq!(
///     Range::positive(1000.0).check(f64::INFINITY).unwrap_err(),
///     "a finite number > 0 and ≤ 1000, got inf"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    /// `min` itself is refused (`> 0` rather than `≥ 0`).
    pub min_exclusive: bool,
    pub max: f64,
    /// Only whole numbers.
    pub whole: bool,
}

impl Range {
    /// Seeds: any whole number an f64 holds exactly (0 to 2^53).
    pub const SEED: Range = Range {
        min: 0.0,
        min_exclusive: false,
        max: 9_007_199_254_740_992.0,
        whole: true,
    };

    /// Whole numbers from `min` to `max`, both included.
    pub fn whole(min: f64, max: f64) -> Range {
        Range {
            min,
            min_exclusive: false,
            max,
            whole: true,
        }
    }
    /// Finite numbers from 0 to `max`, both included.
    pub fn non_negative(max: f64) -> Range {
        Range {
            min: 0.0,
            min_exclusive: false,
            max,
            whole: false,
        }
    }
    /// Finite numbers above 0, up to `max` included.
    pub fn positive(max: f64) -> Range {
        Range {
            min: 0.0,
            min_exclusive: true,
            max,
            whole: false,
        }
    }
    /// What the range holds, in words: `a whole number from 1 to 10000`.
    pub fn describe(&self) -> String {
        let (min, max) = (Value::Number(self.min), Value::Number(self.max));
        if self.max == f64::INFINITY {
            let kind = if self.whole { "whole" } else { "finite" };
            let op = if self.min_exclusive { ">" } else { "≥" };
            return format!("a {kind} number {op} {min}");
        }
        match (self.whole, self.min_exclusive) {
            (true, false) => format!("a whole number from {min} to {max}"),
            (true, true) => format!("a whole number > {min} and ≤ {max}"),
            (false, false) => format!("a finite number from {min} to {max}"),
            (false, true) => format!("a finite number > {min} and ≤ {max}"),
        }
    }
    /// `Err(what the range holds, and the value)` when `v` is outside (NaN and ±inf always are).
    pub fn check(&self, v: f64) -> Result<(), String> {
        let above_min = if self.min_exclusive {
            v > self.min
        } else {
            v >= self.min
        };
        let ok = v.is_finite() && above_min && v <= self.max && (!self.whole || v.fract() == 0.0);
        if ok {
            Ok(())
        } else {
            Err(format!("{}, got {}", self.describe(), Value::Number(v)))
        }
    }
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
    /// Number parameters only: the values accepted.
    pub range: Option<Range>,
    /// Word parameters: the values accepted, for completion (the verb still checks them).
    pub choices: Vec<String>,
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
            range: None,
            choices: Vec::new(),
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
    /// The values a word keyword takes, offered by tab completion after the keyword.
    pub fn choices(mut self, name: &str, values: &[&str]) -> Self {
        if let Some(p) = self.keywords.iter_mut().find(|p| p.name == name) {
            p.choices = values.iter().map(|v| v.to_string()).collect();
        }
        self
    }
    /// The values `keyword` takes, if the signature lists them.
    pub fn choices_of(&self, keyword: &str) -> &[String] {
        self.keywords
            .iter()
            .find(|p| p.name == keyword)
            .map_or(&[], |p| p.choices.as_slice())
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
    /// Restricts the number parameter `name` (declared before this call) to `range`.
    pub fn range(mut self, name: &str, range: Range) -> Self {
        let param = self
            .positional
            .iter_mut()
            .chain(self.keywords.iter_mut())
            .find(|p| p.name == name);
        debug_assert!(param.is_some(), "`{}` has no parameter `{name}`", self.name);
        if let Some(p) = param {
            p.range = Some(range);
        }
        self
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
