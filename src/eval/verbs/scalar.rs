//! Scalar builtins: `abs`, `sqrt`, `log`, `exp`, `round`, `min`, `max`, `sum`, `mean`, `range`,
//! `type`. Call them as `abs(x)`, `abs x` or `x | abs`.

use crate::eval::args::whole_number;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Param, Range, Registry, Shape, Signature, Type};
use crate::eval::value::Value;

/// Most items `range` builds.
const MAX_RANGE: u64 = 1_000_000;

/// Most decimals `round` keeps (an f64 holds about 15 significant digits).
const MAX_DIGITS: f64 = 15.0;

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
            move |_ctx, args| Ok(Value::Number(f(args.real("x")?))),
        );
    }
    reg.register_fn(
        Signature::new("log", "natural logarithm, or logarithm to a base")
            .category("scalar")
            .piped("x", Type::Number, "a number")
            .optional("base", Type::Number, "the base (e by default)")
            .example("log(8, 2)", "3"),
        |_ctx, args| {
            let x = args.real("x")?;
            Ok(Value::Number(match args.real_if_given("base")? {
                Some(b) => x.log(b),
                None => x.ln(),
            }))
        },
    );
    reg.register_fn(
        Signature::new("round", "round to a number of decimals (0 by default)")
            .category("scalar")
            .piped("x", Type::Number, "a number")
            .positional(Param {
                optional: true,
                default: Some(Value::Number(0.0)),
                ..Param::new("digits", Shape::Value(Type::Number), "decimals to keep")
            })
            .range("digits", Range::whole(0.0, MAX_DIGITS))
            .example("round(3.14159, 2)", "3.14"),
        |_ctx, args| {
            let x = args.real("x")?;
            // 0 to MAX_DIGITS, checked where the arguments were bound.
            let d = i32::try_from(args.whole("digits")?).unwrap_or(0);
            let scale = 10f64.powi(d);
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
        Signature::new(
            "range",
            "the list [0, 1, …, n-1], or [a, a+1, …] up to b (exclusive), or [a, a+step, …] \
             up to b (exclusive; a negative step counts down)",
        )
        .category("scalar")
        .required("a", Type::Number, "n, or the start")
        .optional("b", Type::Number, "the end (exclusive)")
        .optional(
            "step",
            Type::Number,
            "the difference between neighbours (1 by default)",
        )
        .example("range(3)", "[0, 1, 2]")
        .example("range(8, 17, 8)", "[8, 16]: every 8th step up to 16")
        .example("range(3, 0, -1)", "[3, 2, 1]"),
        |_ctx, args| range_list(&args),
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

/// `range a [b] [step]`. Without a step the items are the whole numbers from ⌈a⌉ (as before a
/// step existed); with one, a, a+step, … exactly, as numpy's `arange`.
fn range_list(args: &Args) -> EvalResult<Value> {
    let a = args.real("a")?;
    let (start, end) = match args.real_if_given("b")? {
        Some(b) => (a, b),
        None => (0.0, a),
    };
    let (start, step) = match args.real_if_given("step")? {
        Some(step) => (start, step),
        None => (start.ceil(), 1.0),
    };
    if step == 0.0 || !step.is_finite() {
        return Err(EvalError::at(
            args.span_of("step"),
            format!("the step of `range` must be a finite number other than 0, got {step}"),
        )
        .with_code(ErrorCode::Args));
    }
    // Items: the k ≥ 0 with start + k·step short of `end`; ⌈(end − start) / step⌉ of them.
    let count = ((end - start) / step).ceil().max(0.0);
    let n = whole_number(count)
        .filter(|n| *n <= MAX_RANGE)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            EvalError::at(
                args.span,
                format!("range too large (at most {MAX_RANGE} items, this one has {count})"),
            )
            .with_code(ErrorCode::Limit)
        })?;
    Ok(Value::List(
        (0..n)
            .map(|k| Value::Number(start + step * k as f64))
            .collect(),
    ))
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
