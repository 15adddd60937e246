//! The arguments a verb receives, resolved against its signature.

use std::collections::BTreeMap;

use super::error::{ErrorCode, EvalError, EvalResult};
use super::signature::Type;
use super::value::{Table, Value};
use crate::syntax::{Expr, Span};

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
    /// A keyword word that must be one of `choices` (the first is the default when absent).
    pub fn word_choice<'a>(&'a self, name: &str, choices: &[&'a str]) -> EvalResult<&'a str> {
        let w = self.word(name).unwrap_or(choices[0]);
        if choices.contains(&w) {
            Ok(w)
        } else {
            Err(
                EvalError::at(self.span_of(name), format!("unknown {name} `{w}`"))
                    .with_help(format!("choose one of: {}", choices.join(", ")))
                    .with_code(ErrorCode::Keyword),
            )
        }
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
                _ => Err(EvalError::type_mismatch(
                    "table",
                    other.type_name(),
                    self.span,
                )),
            },
            None => Err(EvalError::at(
                self.span,
                format!(
                    "`{}` needs a table piped into it, like `t | {} …`",
                    self.verb, self.verb
                ),
            )),
        }
    }
    /// A model-valued parameter.
    pub fn model(&self, name: &str) -> Option<std::sync::Arc<crate::model::Model>> {
        self.value(name).and_then(Value::as_model).cloned()
    }
    /// A graph-valued parameter.
    pub fn graph(&self, name: &str) -> Option<std::sync::Arc<crate::attribution::graph::Graph>> {
        self.value(name).and_then(Value::as_graph).cloned()
    }
    /// A table-valued parameter.
    pub fn table(&self, name: &str) -> Option<Table> {
        match self.value(name) {
            Some(Value::Table(t)) => Some(t.clone()),
            _ => None,
        }
    }
}
