//! Operators on plain values: arithmetic, concatenation, comparison, membership, indexing.

use super::error::{ErrorCode, EvalError, EvalResult};
use super::value::Value;
use crate::syntax::{BinaryOp, Span};

pub(crate) fn index_value(t: Value, i: Value, tspan: Span, ispan: Span) -> EvalResult<Value> {
    let idx = |n: f64, len: usize| -> EvalResult<usize> {
        if n.fract() != 0.0 || !n.is_finite() {
            return Err(EvalError::at(
                ispan,
                format!("index must be a whole number, got {n}"),
            ));
        }
        let k = if n < 0.0 { len as f64 + n } else { n };
        if k < 0.0 || k >= len as f64 {
            return Err(
                EvalError::at(ispan, format!("index {n} out of range (length {len})"))
                    .with_label("out of range"),
            );
        }
        Ok(k as usize)
    };
    match (t, i) {
        (Value::List(items), Value::Number(n)) => {
            let k = idx(n, items.len())?;
            Ok(items[k].clone())
        }
        (Value::Str(s), Value::Number(n)) => {
            let chars: Vec<char> = s.chars().collect();
            let k = idx(n, chars.len())?;
            Ok(Value::Str(chars[k].to_string()))
        }
        (Value::List(_) | Value::Str(_), other) => {
            Err(EvalError::type_mismatch("number", other.type_name(), ispan))
        }
        (other, _) => Err(EvalError::type_mismatch(
            "list or string",
            other.type_name(),
            tspan,
        )),
    }
}

/// Arithmetic, concatenation and comparison on plain values.
pub(crate) fn binary_values(
    op: BinaryOp,
    lv: Value,
    rv: Value,
    ls: Span,
    rs: Span,
    _span: Span,
) -> EvalResult<Value> {
    use BinaryOp::*;
    use Value::*;
    Ok(match (op, lv, rv) {
        (Eq, a, b) => Bool(a == b),
        (Ne, a, b) => Bool(a != b),
        (Add, Number(a), Number(b)) => Number(a + b),
        (Add, Str(a), Str(b)) => Str(a + &b),
        (Add, Str(a), b) if !matches!(b, Table(_) | Graph(_)) => Str(format!("{a}{b}")),
        (Add, a, Str(b)) if !matches!(a, Table(_) | Graph(_)) => Str(format!("{a}{b}")),
        (Add, List(mut a), List(b)) => {
            a.extend(b);
            List(a)
        }
        (Sub, Number(a), Number(b)) => Number(a - b),
        (Mul, Number(a), Number(b)) => Number(a * b),
        (Div | Rem, Number(_), Number(0.0)) => {
            return Err(EvalError::at(rs, "division by zero").with_label("this is zero"))
        }
        (Div, Number(a), Number(b)) => Number(a / b),
        (Rem, Number(a), Number(b)) => Number(a % b),
        (Lt | Le | Gt | Ge, Number(a), Number(b)) => Bool(compare(op, a.partial_cmp(&b))),
        (Lt | Le | Gt | Ge, Str(a), Str(b)) => Bool(compare(op, a.partial_cmp(&b))),
        (In, a, List(items)) => Bool(items.contains(&a)),
        (In, Str(a), Str(b)) => Bool(b.contains(&a)),
        (op, a, b) => {
            let want = match op {
                Add => "numbers, strings or lists",
                Lt | Le | Gt | Ge => "two numbers or two strings",
                In => "a list (or a string) on the right",
                _ => "numbers",
            };
            let (bad, bad_span) = if matches!(a, Number(_)) || matches!(a, Str(_)) && op == Add {
                (&b, rs)
            } else {
                (&a, ls)
            };
            return Err(EvalError::at(
                bad_span,
                format!(
                    "type error: `{}` needs {want}, got {} and {}",
                    op.symbol(),
                    a.type_name(),
                    b.type_name()
                ),
            )
            .with_label(format!("this is a {}", bad.type_name()))
            .with_code(ErrorCode::Type));
        }
    })
}

fn compare(op: BinaryOp, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match (op, ord) {
        (_, None) => false,
        (BinaryOp::Lt, Some(o)) => o == Less,
        (BinaryOp::Le, Some(o)) => o != Greater,
        (BinaryOp::Gt, Some(o)) => o == Greater,
        (BinaryOp::Ge, Some(o)) => o != Less,
        _ => false,
    }
}
