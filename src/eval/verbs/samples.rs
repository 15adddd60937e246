//! Reading sample tables (prompts, answers, exact ids).

use polars::prelude::*;

use crate::attribution::prepare::{SampleSpec, TCut};
use crate::attribution::AnswerPositions;
use crate::eval::args::{whole_number, Args};
use crate::eval::error::{EvalError, EvalResult};
use crate::eval::registry::{Range, Signature, Type};
use crate::eval::value::Value;
use crate::syntax::Span;

/// The sample table of keyword `on` (collected) and its samples; an empty table is refused.
/// Shared by the verbs that run samples through a model (`patch`, `evaluate`, `faithfulness`).
pub(crate) fn samples_arg(args: &Args) -> EvalResult<(DataFrame, Vec<SampleSpec>)> {
    let span = args.span_of("on");
    let table = args
        .table("on")
        .ok_or_else(|| EvalError::at(span, "expected a table of samples"))?
        .collect()
        .map_err(|e| EvalError::at(span, e.to_string()).with_cause(e))?;
    let specs = read_specs(&table).map_err(|msg| EvalError::at(span, msg))?;
    if specs.is_empty() {
        return Err(EvalError::at(span, "no samples: the table is empty"));
    }
    Ok((table, specs))
}

/// The keywords every verb that runs samples through a model takes beside `on`: precision, the
/// chat template, the longest generated answer (read by [`dtype_arg`] and the verbs).
pub(crate) fn model_run_keywords(sig: Signature) -> Signature {
    sig.word("dtype", Some("f32"), "compute in f32 or f64")
        .choices("dtype", &["f32", "f64"])
        .named_default(
            "chat",
            Type::Bool,
            true,
            "apply the chat template to text prompts",
        )
        .named_default(
            "max_tokens",
            Type::Number,
            256.0,
            "longest greedy answer generated",
        )
        .range("max_tokens", Range::whole(1.0, 1e6))
}

/// `dtype f32|f64` of the attribution verbs.
pub(crate) fn dtype_arg(args: &Args) -> EvalResult<candle_core::DType> {
    Ok(match args.word_choice("dtype", &["f32", "f64"])? {
        "f64" => candle_core::DType::F64,
        _ => candle_core::DType::F32,
    })
}

/// The `positions` keyword of the verbs that take `t_cut` ([`t_cut_arg`] reads it).
pub(crate) fn positions_keyword(sig: Signature) -> Signature {
    sig.named(
        "positions",
        Type::Any,
        "which answer tokens enter the loss instead of the first T_cut: indices into the answer \
         (`[0, 2]`, 0 the first answer token) or \"last\" (the last one before a final stop \
         token); the loss is their mean NLL, the answer fed up to the last of them \
         (self_entropy, nll). A position past a sample's answer is refused, naming the sample",
    )
}

/// `alpha a`, `t_cut n` or `positions …` (one of them; `alpha`/`t_cut` in range already: the
/// signature's ranges are checked at binding), else `fallback`.
pub(crate) fn t_cut_arg(args: &Args, fallback: TCut) -> EvalResult<TCut> {
    let given: Vec<&str> = ["alpha", "t_cut", "positions"]
        .into_iter()
        .filter(|k| args.value(k).is_some_and(|v| !matches!(v, Value::Null)))
        .collect();
    if given.len() > 1 {
        return Err(EvalError::at(
            args.span_of(given[1]),
            format!(
                "give one of `alpha`, `t_cut`, `positions`, not both (got {})",
                given.join(" and ")
            ),
        ));
    }
    if let Some(v) = args
        .value("positions")
        .filter(|v| !matches!(v, Value::Null))
    {
        return positions_value(v, args.span_of("positions")).map(TCut::Positions);
    }
    Ok(if args.has("alpha") {
        TCut::Alpha(args.real("alpha")?)
    } else if args.has("t_cut") {
        TCut::Fixed(args.count("t_cut")?)
    } else {
        fallback
    })
}

/// `[0, 2]`, a single index, or "last": ascending and unique (a repeated index would weigh a
/// token twice without saying so, so it is refused rather than merged).
fn positions_value(v: &Value, span: Span) -> EvalResult<AnswerPositions> {
    let index = |x: &Value| -> EvalResult<usize> {
        let refused = |what: String| {
            EvalError::at(
                span,
                format!("positions: {what} is not an answer-token index (a whole number ≥ 0)"),
            )
        };
        match x {
            Value::Number(n) => whole_number(*n)
                .filter(|&i| i < 1_000_000_000)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| refused(n.to_string())),
            other => Err(refused(format!("a {}", other.type_name()))),
        }
    };
    let mut out = match v {
        Value::Str(s) if s == "last" => return Ok(AnswerPositions::Last),
        Value::Str(s) => {
            return Err(EvalError::at(
                span,
                format!("positions: `{s}` is not \"last\" or a list of indices"),
            ))
        }
        Value::List(items) => items.iter().map(index).collect::<EvalResult<Vec<_>>>()?,
        other => vec![index(other)?],
    };
    if out.is_empty() {
        return Err(EvalError::at(
            span,
            "positions: the list is empty; name at least one answer token",
        ));
    }
    let n = out.len();
    out.sort_unstable();
    out.dedup();
    if out.len() != n {
        return Err(EvalError::at(span, "positions: an index appears twice"));
    }
    Ok(AnswerPositions::Indices(out))
}

/// The values of a string column (nulls as None); an error names the columns there are.
pub(crate) fn string_column(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, String> {
    let c = column(df, name)?;
    let s = c
        .cast(&DataType::String)
        .map_err(|e| format!("column `{name}`: {e}"))?;
    let ca = s
        .str()
        .map_err(|e| format!("column `{name}`: {e}"))?
        .clone();
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column, String> {
    df.column(name).map_err(|_| {
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        format!("no column `{name}`; the table has {}", names.join(", "))
    })
}

/// A token id from a table cell: a whole number in u32's range (the vocabulary is checked
/// against the model later, in `prepare`). Never a cast: 2^32+5 must not become 5.
fn token_id(name: &str, row: usize, x: i64) -> Result<u32, String> {
    u32::try_from(x).map_err(|_| {
        format!("column `{name}`, row {row}: {x} is not a token id (ids are whole numbers ≥ 0)")
    })
}

/// A series' values as whole numbers: integer types as they are, floats only when whole and
/// finite (28.7 is refused, not truncated to 28), strings parsed. `row` names the table row
/// for list cells; `None` means one value per row.
fn whole_numbers(s: &Series, name: &str, row: Option<usize>) -> Result<Vec<Option<i64>>, String> {
    let at = |i: usize| format!("column `{name}`, row {}", row.unwrap_or(i));
    let dtype = s.dtype().clone();
    if dtype.is_integer() {
        let c = s
            .strict_cast(&DataType::Int64)
            .map_err(|_| format!("column `{name}`: a value is too large for a whole number"))?;
        return Ok(c.i64().map_err(|e| e.to_string())?.iter().collect());
    }
    if dtype.is_float() {
        let c = s.cast(&DataType::Float64).map_err(|e| e.to_string())?;
        let ca = c.f64().map_err(|e| e.to_string())?;
        return ca
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Ok(None),
                // ±2^63 are exactly representable; beyond them i64 has no value.
                Some(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.2e18 => {
                    Ok(Some(x as i64))
                }
                Some(x) => Err(format!("{}: {x} is not a whole number", at(i))),
            })
            .collect();
    }
    match dtype {
        DataType::Null => Ok(vec![None; s.len()]),
        DataType::String => {
            let ca = s.str().map_err(|e| e.to_string())?;
            ca.iter()
                .enumerate()
                .map(|(i, v)| match v {
                    None => Ok(None),
                    Some(t) => t
                        .trim()
                        .parse::<i64>()
                        .map(Some)
                        .map_err(|_| format!("{}: `{t}` is not a whole number", at(i))),
                })
                .collect()
        }
        other => Err(format!(
            "column `{name}` holds {other}; it must hold whole numbers"
        )),
    }
}

/// An integer-list column (token ids) as vectors; a string column like "1,2,3" also works.
fn ids_column(df: &DataFrame, name: &str) -> Result<Vec<Option<Vec<u32>>>, String> {
    let c = column(df, name)?;
    match c.dtype() {
        DataType::List(_) => {
            let ca = c.list().map_err(|e| e.to_string())?;
            let mut out = Vec::with_capacity(ca.len());
            for row in 0..ca.len() {
                out.push(match ca.get_as_series(row) {
                    None => None,
                    Some(s) => Some(
                        whole_numbers(&s, name, Some(row))?
                            .into_iter()
                            .map(|x| match x {
                                Some(x) => token_id(name, row, x),
                                None => Err(format!(
                                    "column `{name}`, row {row}: a token id is missing (null)"
                                )),
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                })
            }
            Ok(out)
        }
        DataType::String => {
            let mut out = Vec::new();
            for (row, v) in string_column(df, name)?.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(s) => Some(
                        s.trim_matches(|c| c == '[' || c == ']')
                            .split(',')
                            .filter(|x| !x.trim().is_empty())
                            .map(|x| match x.trim().parse::<i64>() {
                                Ok(x) => token_id(name, row, x),
                                Err(_) => Err(format!(
                                    "column `{name}`, row {row}: `{}` is not a token id",
                                    x.trim()
                                )),
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                })
            }
            Ok(out)
        }
        other => Err(format!(
            "column `{name}` holds {other}; token ids must be a list of integers"
        )),
    }
}

pub(crate) fn int_column(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, String> {
    let c = column(df, name)?;
    whole_numbers(c.as_materialized_series(), name, None)
}

/// Sample descriptions from a table. Recognised columns: `prompt`, `prompt_ids`, `answer`,
/// `answer_ids`, `corrupt`, `corrupt_ids`, `target`, `wrong`, `target_id`, `wrong_id`, and
/// `t_cut` (per-sample T_cut), and `prompt_id` (or `id`) to name the samples (else the row
/// number).
pub(crate) fn read_specs(df: &DataFrame) -> Result<Vec<SampleSpec>, String> {
    let n = df.height();
    let has = |c: &str| df.column(c).is_ok();
    if !has("prompt") && !has("prompt_ids") {
        return column(df, "prompt").map(|_| Vec::new());
    }
    let strings = |c: &str| -> Result<Vec<Option<String>>, String> {
        if has(c) {
            string_column(df, c)
        } else {
            Ok(vec![None; n])
        }
    };
    let ids = |c: &str| -> Result<Vec<Option<Vec<u32>>>, String> {
        if has(c) {
            ids_column(df, c)
        } else {
            Ok(vec![None; n])
        }
    };
    let ints = |c: &str| -> Result<Vec<Option<i64>>, String> {
        if has(c) {
            int_column(df, c)
        } else {
            Ok(vec![None; n])
        }
    };
    let row_ids = if has("prompt_id") {
        ints("prompt_id")?
    } else {
        ints("id")?
    };
    let (prompt, prompt_ids) = (strings("prompt")?, ids("prompt_ids")?);
    let (answer, answer_ids) = (strings("answer")?, ids("answer_ids")?);
    let (corrupt, corrupt_ids) = (strings("corrupt")?, ids("corrupt_ids")?);
    let (target, wrong) = (strings("target")?, strings("wrong")?);
    let (target_id, wrong_id) = (ints("target_id")?, ints("wrong_id")?);
    let t_cut = ints("t_cut")?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = row_ids[i].unwrap_or(i as i64);
        if !seen.insert(id) {
            return Err(format!(
                "prompt_id {id} appears twice; sample ids must be unique"
            ));
        }
        out.push(SampleSpec {
            id,
            prompt: prompt[i].clone(),
            prompt_ids: prompt_ids[i].clone(),
            answer: answer[i].clone(),
            answer_ids: answer_ids[i].clone(),
            corrupt: corrupt[i].clone(),
            corrupt_ids: corrupt_ids[i].clone(),
            target: target[i].clone(),
            wrong: wrong[i].clone(),
            target_id: target_id[i]
                .map(|x| token_id("target_id", i, x))
                .transpose()?,
            wrong_id: wrong_id[i]
                .map(|x| token_id("wrong_id", i, x))
                .transpose()?,
            t_cut: t_cut[i]
                .map(|x| match usize::try_from(x) {
                    Ok(t) if t >= 1 => Ok(t),
                    _ => Err(format!(
                        "column `t_cut`, row {i}: t_cut must be a whole number ≥ 1, not {x}"
                    )),
                })
                .transpose()?,
            row: i,
        });
    }
    Ok(out)
}
