//! Scalar builtins: `abs`, `sqrt`, `log`, `exp`, `round`, `min`, `max`, `sum`, `mean`, `range`,
//! `type`. Call them as `abs(x)`, `abs x` or `x | abs`.

use crate::eval::error::{EvalError, EvalResult};
use crate::eval::registry::{Args, Registry, Signature, Type};
use crate::eval::value::Value;

/// Most items `range` builds.
const MAX_RANGE: f64 = 1_000_000.0;

pub(super) fn register(reg: &mut Registry) {
    #[allow(clippy::type_complexity)] // a table of (name, help, function) rows
    let unary: [(&str, &str, fn(f64) -> f64); 4] = [
        ("abs", "absolute value", f64::abs),
        ("sqrt", "square root", f64::sqrt),
        ("exp", "e to the power x", f64::exp),
        ("floor", "largest whole number ≤ x", f64::floor),
    ];
    for (name, description, f) in unary {
        reg.register_fn(
            Signature::new(name, description)
                .category("scalar")
                .piped("x", Type::Number, "a number")
                .example(&format!("{name}(4)"), ""),
            move |_ctx, args| Ok(Value::Number(f(args.number("x").unwrap_or(f64::NAN)))),
        );
    }
    reg.register_fn(
        Signature::new("log", "natural logarithm, or logarithm to a base")
            .category("scalar")
            .piped("x", Type::Number, "a number")
            .optional("base", Type::Number, "the base (e by default)")
            .example("log(8, 2)", "3"),
        |_ctx, args| {
            let x = args.number("x").unwrap_or(f64::NAN);
            Ok(Value::Number(match args.number("base") {
                Some(b) => x.log(b),
                None => x.ln(),
            }))
        },
    );
    reg.register_fn(
        Signature::new("round", "round to a number of decimals (0 by default)")
            .category("scalar")
            .piped("x", Type::Number, "a number")
            .optional("digits", Type::Number, "decimals to keep")
            .example("round(3.14159, 2)", "3.14"),
        |_ctx, args| {
            let x = args.number("x").unwrap_or(f64::NAN);
            let d = args
                .number("digits")
                .unwrap_or(0.0)
                .clamp(0.0, 15.0)
                .trunc();
            let scale = 10f64.powi(d as i32);
            Ok(Value::Number((x * scale).round() / scale))
        },
    );
    for (name, description) in [
        ("min", "the smallest of numbers (or of one list)"),
        ("max", "the largest of numbers (or of one list)"),
        ("sum", "the sum of numbers (or of one list)"),
        ("mean", "the mean of numbers (or of one list)"),
    ] {
        reg.register_fn(
            Signature::new(name, description)
                .category("scalar")
                .rest("values", Type::Any, "numbers, or one list of numbers")
                .example(&format!("{name}(3, 1, 2)"), "")
                .example(&format!("{name}([3, 1, 2])"), ""),
            move |_ctx, args| fold_numbers(name, &args),
        );
    }
    reg.register_fn(
        Signature::new("range", "the list [0, 1, …, n-1], or [a, …, b-1]")
            .category("scalar")
            .required("a", Type::Number, "n, or the start")
            .optional("b", Type::Number, "the end (exclusive)")
            .example("range(3)", "[0, 1, 2]"),
        |_ctx, args| {
            let a = args.number("a").unwrap_or(0.0);
            let (start, end) = match args.number("b") {
                Some(b) => (a, b),
                None => (0.0, a),
            };
            if !start.is_finite() || !end.is_finite() || end - start > MAX_RANGE {
                return Err(EvalError::at(
                    args.span,
                    format!("range too large (at most {MAX_RANGE} items)"),
                ));
            }
            let first = start.ceil();
            let n = (end - first).ceil().max(0.0) as usize;
            let out: Vec<Value> = (0..n).map(|k| Value::Number(first + k as f64)).collect();
            Ok(Value::List(out))
        },
    );
    reg.register_fn(
        Signature::new("type", "the type name of a value")
            .category("scalar")
            .piped("value", Type::Any, "any value")
            .example("type(1)", "number"),
        |_ctx, args| {
            Ok(Value::from(
                args.value("value").map(Value::type_name).unwrap_or("null"),
            ))
        },
    );
}

fn fold_numbers(name: &str, args: &Args) -> EvalResult<Value> {
    let given: Vec<&Value> = args.values("values");
    let items: Vec<&Value> = match given.as_slice() {
        [Value::List(items)] => items.iter().collect(),
        _ => given,
    };
    let mut nums = Vec::with_capacity(items.len());
    for v in items {
        match v {
            Value::Number(n) => nums.push(*n),
            other => {
                return Err(EvalError::type_mismatch(
                    "number",
                    other.type_name(),
                    args.span_of("values"),
                ))
            }
        }
    }
    if nums.is_empty() {
        return match name {
            "sum" => Ok(Value::Number(0.0)),
            _ => Ok(Value::Null),
        };
    }
    let n = nums.len() as f64;
    Ok(Value::Number(match name {
        "min" => nums.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "sum" => nums.iter().sum(),
        _ => nums.iter().sum::<f64>() / n,
    }))
}
