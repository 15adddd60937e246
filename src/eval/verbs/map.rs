//! `map`: a function applied to each element of a list, e.g. one evaluation per checkpoint
//! (`map checkpoints answers_at`), the results collected into a list (`concat` stacks a list of
//! tables).

use crate::eval::context::EvalContext;
use crate::eval::error::{EvalError, EvalResult};
use crate::eval::interp::materialize;
use crate::eval::registry::{Args, Registry, Signature, Type};
use crate::eval::value::Value;

/// Longest list an error shows as written (longer ones show as `list of n`).
const MAX_SHOWN: usize = 60;

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "map",
            "a function applied to each element of a list, in order: the list of results",
        )
        .category("scalar")
        .piped("list", Type::List, "the elements")
        .required(
            "f",
            Type::Func,
            "a function of one value: a `fn`'s name, a verb's name (the element is piped \
             into it), or `fn(x) = …`",
        )
        .example("map [1, 2, 3] (fn(x) = x * 10)", "[10, 20, 30]")
        .example(
            "[-1, 4] | map abs",
            "[1, 4]: a verb, each element piped into it",
        )
        .example(
            "concat (map [1, 2] (fn(s) = arith 2 seed s))",
            "4 rows: one table per element, stacked",
        ),
        verb_map,
    );
}

fn verb_map(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let Some(Value::List(items)) = args.value("list") else {
        return Err(EvalError::at(args.span_of("list"), "expected a list"));
    };
    let f = args.value("f").cloned().unwrap_or(Value::Null);
    let fspan = args.span_of("f");
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        ctx.check_interrupt(args.span)?;
        let v = ctx
            .call(&f, vec![item.clone()], fspan)
            .and_then(|v| materialize(v, fspan))
            .map_err(|e| at_element(e, i, items.len(), item))?;
        out.push(v);
    }
    Ok(Value::List(out))
}

/// The function's own error, told which element it failed on (index as `xs[i]` counts).
fn at_element(mut e: EvalError, i: usize, n: usize, item: &Value) -> EvalError {
    let shown = match item {
        Value::Str(s) => format!("{s:?}"),
        Value::Number(_) | Value::Bool(_) | Value::Null => item.to_string(),
        Value::List(_) => {
            let text = item.to_string();
            if text.chars().count() <= MAX_SHOWN {
                text
            } else {
                item.summary()
            }
        }
        other => other.summary(),
    };
    e.message = format!("map, element [{i}] of {n} ({shown}): {}", e.message);
    e
}
