//! `--set name=value`: a variable bound from the command line.

use crate::eval::Value;

/// One `--set`. The value is kept as a number, bool or string (clap needs `Clone + Send + Sync`).
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub name: String,
    pub value: Scalar,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Number(f64),
    Bool(bool),
    Str(String),
}

impl From<Scalar> for Value {
    fn from(s: Scalar) -> Value {
        match s {
            Scalar::Number(n) => Value::Number(n),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Str(s) => Value::Str(s),
        }
    }
}

impl Binding {
    /// Parses `name=value`.
    ///
    /// ```
    /// use rlq::cli::bindings::{Binding, Scalar};
    /// assert_eq!(Binding::parse("n=3").unwrap().value, Scalar::Number(3.0));
    /// assert_eq!(Binding::parse("on=true").unwrap().value, Scalar::Bool(true));
    /// assert_eq!(Binding::parse("p=a=b").unwrap().value, Scalar::Str("a=b".into()));
    /// assert_eq!(Binding::parse("s=inf").unwrap().value, Scalar::Str("inf".into()));
    /// assert!(Binding::parse("1x=2").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Binding, String> {
        let (name, raw) = text
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))?;
        let name = name.trim();
        let is_identifier = name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !is_identifier {
            return Err(format!("`{name}` is not a variable name"));
        }
        Ok(Binding {
            name: name.to_string(),
            value: Scalar::parse(raw),
        })
    }
}

impl Scalar {
    /// A number if it looks like one (digits, not `inf`/`nan`), `true`/`false`, else the text.
    fn parse(raw: &str) -> Scalar {
        let looks_numeric = raw
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit() || c == '.');
        match raw {
            "true" => Scalar::Bool(true),
            "false" => Scalar::Bool(false),
            _ => match raw.parse::<f64>() {
                Ok(n) if looks_numeric && n.is_finite() => Scalar::Number(n),
                _ => Scalar::Str(raw.to_string()),
            },
        }
    }
}
