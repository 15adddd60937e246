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
#[allow(clippy::large_enum_variant)] // holds a `Value`, like `Value` itself (see there)
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

    // ---- typed accessors: the bound value (the declared default when not given) ----
    //
    // A verb declares a keyword's default and range once, in its Signature; binding fills the
    // default and checks the range. These read the result, so a verb body neither restates a
    // default nor re-checks a count, and no user number reaches an `as` cast unchecked.

    /// A number parameter: the given value or its declared default. A parameter declared with
    /// neither is a verb's bug, reported as such.
    pub fn real(&self, name: &str) -> EvalResult<f64> {
        match self.value(name) {
            Some(v) => v.as_number().ok_or_else(|| {
                EvalError::type_mismatch("number", v.type_name(), self.span_of(name))
            }),
            None => Err(self.undeclared(name)),
        }
    }

    /// A whole-number parameter as `u64`. Binding checked the declared range; this refuses what
    /// a range declared without one would let through: a fraction, a negative number, or one
    /// past 2^53 (where an f64 stops holding every whole number).
    pub fn whole(&self, name: &str) -> EvalResult<u64> {
        let x = self.real(name)?;
        whole_number(x).ok_or_else(|| {
            EvalError::at(
                self.span_of(name),
                format!("{name} must be a whole number from 0 to 2^53, got {x}"),
            )
            .with_code(ErrorCode::Args)
        })
    }

    /// A whole-number parameter as a count or index (`usize`).
    pub fn count(&self, name: &str) -> EvalResult<usize> {
        let x = self.whole(name)?;
        usize::try_from(x).map_err(|_| {
            EvalError::at(
                self.span_of(name),
                format!("{name} = {x} does not fit this machine's word size"),
            )
            .with_code(ErrorCode::Args)
        })
    }

    /// A whole-number parameter whose bounds depend on the data (a model's vocabulary or
    /// context length), so no Signature can declare them: checked here, naming both bounds.
    pub fn count_within(&self, name: &str, lo: usize, hi: usize) -> EvalResult<usize> {
        let x = self.real(name)?;
        match whole_number(x).and_then(|w| usize::try_from(w).ok()) {
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(EvalError::at(
                self.span_of(name),
                format!("{name} must be a whole number from {lo} to {hi}, not {x}"),
            )
            .with_code(ErrorCode::Args)),
        }
    }

    /// A number parameter that has no default: `None` when it was not given (its default
    /// depends on other settings, or leaving it out means something else).
    pub fn real_if_given(&self, name: &str) -> EvalResult<Option<f64>> {
        if self.has(name) {
            self.real(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A boolean parameter: the given value or its declared default.
    pub fn boolean(&self, name: &str) -> EvalResult<bool> {
        match self.value(name) {
            Some(v) => v
                .as_bool()
                .ok_or_else(|| EvalError::type_mismatch("bool", v.type_name(), self.span_of(name))),
            None => Err(self.undeclared(name)),
        }
    }

    fn undeclared(&self, name: &str) -> EvalError {
        EvalError::at(
            self.span,
            format!(
                "internal: `{}` reads `{name}`, which it declares without a default",
                self.verb
            ),
        )
        .with_code(ErrorCode::Error)
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

/// `x` as a u64 when it is a whole number in 0..=2^53 (every such f64 converts exactly).
pub fn whole_number(x: f64) -> Option<u64> {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.is_finite() && x.fract() == 0.0 && (0.0..=MAX_EXACT).contains(&x) {
        // Checked just above: whole, non-negative and exactly representable.
        Some(x as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_convert_exactly_and_nothing_else_does() {
        assert_eq!(whole_number(0.0), Some(0));
        assert_eq!(whole_number(9_007_199_254_740_992.0), Some(1 << 53));
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 9_007_199_254_740_994.0] {
            assert_eq!(whole_number(bad), None, "{bad}");
        }
    }

    fn args_with(name: &str, v: Value) -> Args {
        let mut a = Args {
            verb: "v".into(),
            ..Args::default()
        };
        a.named.insert(
            name.into(),
            vec![Arg {
                value: ArgValue::Value(v),
                span: Span::default(),
            }],
        );
        a
    }

    #[test]
    fn typed_accessors_read_the_bound_value_and_refuse_what_they_cannot_hold() {
        let a = args_with("n", Value::Number(12.0));
        assert_eq!(a.count("n").unwrap(), 12);
        assert_eq!(a.real("n").unwrap(), 12.0);
        assert!(a.count_within("n", 1, 10).is_err());
        assert!(args_with("n", Value::Number(2.5)).whole("n").is_err());
        assert!(args_with("n", Value::Number(-3.0)).count("n").is_err());
        // A missing parameter without a declared default is the verb's bug, said so.
        let msg = format!("{:?}", a.real("m").unwrap_err());
        assert!(msg.contains("declares without a default"), "{msg}");
    }
}
