//! `--set name=value`: a variable bound from the command line.

use crate::eval::Value;

/// One `--set`. The value is kept as a number, bool, string or list of them (clap needs
/// `Clone + Send + Sync`).
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub name: String,
    pub value: SetValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Number(f64),
    Bool(bool),
    Str(String),
    /// `[8, 16]`: numbers, bools or strings (no nested lists).
    List(Vec<SetValue>),
}

impl From<SetValue> for Value {
    fn from(s: SetValue) -> Value {
        match s {
            SetValue::Number(n) => Value::Number(n),
            SetValue::Bool(b) => Value::Bool(b),
            SetValue::Str(s) => Value::Str(s),
            SetValue::List(items) => Value::List(items.into_iter().map(Value::from).collect()),
        }
    }
}

impl Binding {
    /// Parses `name=value`.
    ///
    /// ```
    /// use rlq::cli::bindings::{Binding, SetValue};
    /// assert_eq!(Binding::parse("n=3").unwrap().value, SetValue::Number(3.0));
    /// assert_eq!(Binding::parse("on=true").unwrap().value, SetValue::Bool(true));
    /// assert_eq!(Binding::parse("p=a=b").unwrap().value, SetValue::Str("a=b".into()));
    /// assert_eq!(Binding::parse("s=inf").unwrap().value, SetValue::Str("inf".into()));
    /// assert_eq!(
    ///     Binding::parse("ck=[8, 16]").unwrap().value,
    ///     SetValue::List(vec![SetValue::Number(8.0), SetValue::Number(16.0)])
    /// );
    /// assert_eq!(
    ///     Binding::parse("m=[\"a, b\", c]").unwrap().value,
    ///     SetValue::List(vec![SetValue::Str("a, b".into()), SetValue::Str("c".into())])
    /// );
    /// assert_eq!(Binding::parse("none=[]").unwrap().value, SetValue::List(vec![]));
    /// assert!(Binding::parse("x=[[1]]").is_err());
    /// assert!(Binding::parse("x=[1,,2]").is_err());
    /// assert!(Binding::parse("x=[1, \"2]").is_err());
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
        let value = match raw.trim().strip_prefix('[') {
            Some(rest) => SetValue::list(rest.strip_suffix(']').ok_or_else(|| {
                format!("`{raw}` opens a list with `[` but does not close it with `]`")
            })?)?,
            None => SetValue::parse(raw),
        };
        Ok(Binding {
            name: name.to_string(),
            value,
        })
    }
}

impl SetValue {
    /// A number if it looks like one (digits, not `inf`/`nan`), `true`/`false`, else the text.
    fn parse(raw: &str) -> SetValue {
        let looks_numeric = raw
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit() || c == '.');
        match raw {
            "true" => SetValue::Bool(true),
            "false" => SetValue::Bool(false),
            _ => match raw.parse::<f64>() {
                Ok(n) if looks_numeric && n.is_finite() => SetValue::Number(n),
                _ => SetValue::Str(raw.to_string()),
            },
        }
    }

    /// The inside of `[…]`: comma-separated items, each parsed as a single value (trimmed);
    /// an item in quotes is that text as it is (commas included).
    fn list(inner: &str) -> Result<SetValue, String> {
        let mut items = Vec::new();
        let mut rest = inner.trim();
        while !rest.is_empty() {
            let (item, after) = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &rest[1..];
                    let end = body
                        .find(q)
                        .ok_or_else(|| format!("unclosed {q} in the list `[{inner}]`"))?;
                    (SetValue::Str(body[..end].to_string()), &body[end + 1..])
                }
                _ => {
                    let end = rest.find(',').unwrap_or(rest.len());
                    let text = rest[..end].trim();
                    if text.is_empty() {
                        return Err(format!("an empty item in the list `[{inner}]`"));
                    }
                    if text.contains(['[', ']']) {
                        return Err(format!(
                            "`--set` lists hold numbers, true/false or strings, not lists: `[{inner}]`"
                        ));
                    }
                    (SetValue::parse(text), &rest[end..])
                }
            };
            items.push(item);
            let after = after.trim_start();
            rest = match after.strip_prefix(',') {
                Some(next) => next.trim_start(),
                None if after.is_empty() => after,
                None => return Err(format!("expected `,` between the items of `[{inner}]`")),
            };
        }
        Ok(SetValue::List(items))
    }
}
