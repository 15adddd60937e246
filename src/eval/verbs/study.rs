//! Verbs for the paper's study (METHOD.md section 4): a seeded arithmetic question set,
//! grading of answers, seeded row sampling, and the question selection with T_cut.

use std::collections::HashMap;

use polars::prelude::*;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::samples::string_column;
use crate::eval::context::EvalContext;
use crate::eval::error::{EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::syntax::Span;

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "param",
            "a script parameter: the variable if it is set (`--set`), else a default",
        )
        .category("study")
        .required("name", Type::Str, "the variable's name")
        .required("default", Type::Any, "its value when not set")
        .example("let n = param \"n\" 100", "100 unless run with --set n=…"),
        verb_param,
    );
    reg.register_fn(
        Signature::new(
            "questions",
            "a math question set: `arith` (generated, seeded) or a table with question/answer \
             columns (GSM8K/MATH-style jsonl)",
        )
        .category("study")
        .required("source", Type::Any, "\"arith\" or a table")
        .named_default(
            "n",
            Type::Number,
            100.0,
            "how many (all of a table if fewer)",
        )
        .named_default("seed", Type::Number, 0.0, "seed for generation / sampling")
        .example("questions \"arith\" n 50", "prompt_id, prompt, expected")
        .example(
            "questions (read \"gsm8k.jsonl\") n 200",
            "GSM8K rows, answers after ####",
        ),
        verb_questions,
    );
    reg.register_fn(
        Signature::new(
            "summary",
            "write a markdown report: a title, notes, and each table under its name",
        )
        .category("study")
        .rest("tables", Type::Table, "tables to include, in order")
        .named_required("to", Type::Str, "the .md file")
        .named("title", Type::Str, "the heading")
        .named("notes", Type::Str, "a paragraph under the heading")
        .example(
            "summary cmp, by_layer to \"out/summary.md\" title \"RL vs base\"",
            "a report",
        ),
        verb_summary,
    );
    reg.register_fn(
        Signature::new(
            "arith",
            "n seeded arithmetic word problems with known answers",
        )
        .category("study")
        .required("n", Type::Number, "how many questions")
        .named_default("seed", Type::Number, 0.0, "the generator's seed")
        .named_default("max", Type::Number, 50.0, "largest operand")
        .example("arith 20 seed 1", "prompt_id, prompt, expected"),
        verb_arith,
    );
    reg.register_fn(
        Signature::new(
            "grade",
            "compare the last number of each `answer` with `expected`; adds extracted, correct \
             (an answer cut at max_tokens, `truncated` from `generate`, is never correct: its \
             last number is not its final answer)",
        )
        .category("study")
        .piped(
            "table",
            Type::Table,
            "answers with `answer` and `expected` columns",
        )
        .named_default("tolerance", Type::Number, 1e-6, "absolute tolerance")
        .example("generate m on qs | grade", "marks correct answers"),
        verb_grade,
    );
    reg.register_fn(
        Signature::new("sample", "n rows drawn without replacement, reproducibly")
            .category("table")
            .input(Type::Table)
            .required("n", Type::Number, "how many rows (all if fewer)")
            .named_default("seed", Type::Number, 0.0, "the draw's seed")
            .example("t | sample 100 seed 0", "100 random rows"),
        verb_sample,
    );
    reg.register_fn(
        Signature::new(
            "select_questions",
            "METHOD.md §4 steps 2-4: both correct, length filters, T_cut = max(⌊α·T̄⌋,1), N sampled",
        )
        .category("study")
        .required("base", Type::Table, "graded answers of the base model")
        .required("tuned", Type::Table, "graded answers of the tuned model")
        .named_default(
            "alpha",
            Type::Number,
            0.1,
            "T_cut fraction of the mean answer length",
        )
        .named_default("n", Type::Number, 100.0, "questions to keep")
        .named_default("seed", Type::Number, 0.0, "sampling seed")
        .range("alpha", Range::positive(1000.0))
        .named_default(
            "len_tolerance",
            Type::Number,
            0.5,
            "keep questions whose two answer lengths differ by at most this × their mean",
        )
        .named_default(
            "len_filter",
            Type::Bool,
            true,
            "apply step 3's length filters (off only for unrelated models whose answer styles differ)",
        )
        .example(
            "select_questions a0, a1 alpha 0.1 n 100",
            "prompt_id, prompt, answer_ids_base, answer_ids_tuned, n_base, n_tuned, t_cut",
        ),
        verb_select_questions,
    );
}

fn err(span: Span, e: impl std::fmt::Display) -> EvalError {
    EvalError::at(span, e.to_string()).with_code("rlq::study")
}

fn verb_arith(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let n = args.number("n").unwrap_or(0.0);
    if !(0.0..=1e6).contains(&n) || n.fract() != 0.0 {
        return Err(err(args.span_of("n"), "n must be a whole number up to 1e6"));
    }
    let max = args.number("max").unwrap_or(50.0).clamp(2.0, 1e6) as i64;
    let seed = args.number("seed").unwrap_or(0.0) as u64;
    let qs = crate::study::arith_questions(n as usize, seed, max);
    let df = df!(
        "prompt_id" => qs.iter().map(|q| q.id).collect::<Vec<_>>(),
        "prompt" => qs.iter().map(|q| q.prompt.clone()).collect::<Vec<_>>(),
        "expected" => qs.iter().map(|q| q.expected).collect::<Vec<_>>()
    )
    .map_err(|e| err(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

pub(crate) use crate::study::last_number;

fn verb_grade(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span_of("table");
    let mut df = args
        .table("table")
        .ok_or_else(|| err(span, "expected a table"))?
        .collect()
        .map_err(|e| err(span, e))?;
    let tol = args.number("tolerance").unwrap_or(1e-6);
    let answers = string_column(&df, "answer").map_err(|m| err(span, m))?;
    let expected = string_column(&df, "expected").map_err(|m| err(span, m))?;
    // A truncated answer never reached its final number: grading its last one would count
    // "… 12 + 30 = 4" cut mid-number as an answer of 4.
    let truncated: Vec<bool> = match df.column("truncated") {
        Ok(c) => c
            .bool()
            .map_err(|_| err(span, "column `truncated` must be true/false (from `generate`)"))?
            .iter()
            .map(|t| t.unwrap_or(false))
            .collect(),
        Err(_) => vec![false; df.height()],
    };
    let extracted: Vec<Option<f64>> = answers
        .iter()
        .zip(&truncated)
        .map(|(a, &cut)| if cut { None } else { a.as_deref().and_then(last_number) })
        .collect();
    let correct: Vec<bool> = extracted
        .iter()
        .zip(&expected)
        .map(|(x, e)| match (x, e.as_deref().and_then(last_number)) {
            (Some(x), Some(e)) => (x - e).abs() <= tol,
            _ => false,
        })
        .collect();
    df.with_column(Column::new("extracted".into(), extracted))
        .and_then(|d| d.with_column(Column::new("correct".into(), correct)))
        .map_err(|e| err(span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn verb_sample(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let df = args
        .input_table()?
        .collect()
        .map_err(|e| err(args.span, e))?;
    let n = args.number("n").unwrap_or(0.0);
    if n < 0.0 || n.fract() != 0.0 {
        return Err(err(args.span_of("n"), "n must be a whole number"));
    }
    let mut rng = StdRng::seed_from_u64(args.number("seed").unwrap_or(0.0) as u64);
    let mut rows: Vec<IdxSize> = (0..df.height() as IdxSize).collect();
    rows.shuffle(&mut rng);
    rows.truncate(n as usize);
    rows.sort_unstable(); // keep the table's order
    let idx = IdxCa::from_vec("".into(), rows);
    let out = df.take(&idx).map_err(|e| err(args.span, e))?;
    Ok(Value::Table(Table::Eager(out)))
}

struct Answered {
    prompt: Option<String>,
    ids: Series,
    n: i64,
    correct: bool,
}

fn answered(df: &DataFrame, span: Span) -> EvalResult<HashMap<i64, Answered>> {
    for c in ["prompt_id", "answer_ids", "n_tokens", "correct"] {
        if df.column(c).is_err() {
            return Err(err(
                span,
                format!("needs column `{c}` (from `generate … | grade` on a table with prompt_id)"),
            ));
        }
    }
    let ids = df
        .column("prompt_id")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(|e| err(span, e))?;
    let ids = ids.i64().map_err(|e| err(span, e))?;
    let n = df
        .column("n_tokens")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(|e| err(span, e))?;
    let n = n.i64().map_err(|e| err(span, e))?;
    let ok = df
        .column("correct")
        .and_then(|c| c.bool().cloned())
        .map_err(|e| err(span, e))?;
    let lists = df
        .column("answer_ids")
        .and_then(|c| c.list().cloned())
        .map_err(|e| err(span, e))?;
    let prompts = if df.column("prompt").is_ok() {
        string_column(df, "prompt").map_err(|m| err(span, m))?
    } else {
        vec![None; df.height()]
    };
    let mut out = HashMap::new();
    for r in 0..df.height() {
        let (Some(id), Some(len)) = (ids.get(r), n.get(r)) else {
            continue;
        };
        out.insert(
            id,
            Answered {
                prompt: prompts[r].clone(),
                ids: lists.get_as_series(r).unwrap_or_default(),
                n: len,
                correct: ok.get(r).unwrap_or(false),
            },
        );
    }
    Ok(out)
}

fn verb_select_questions(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let get = |name: &str| -> EvalResult<DataFrame> {
        args.table(name)
            .ok_or_else(|| err(args.span_of(name), "expected a table"))?
            .collect()
            .map_err(|e| err(args.span_of(name), e))
    };
    let a0 = answered(&get("base")?, args.span_of("base"))?;
    let a1 = answered(&get("tuned")?, args.span_of("tuned"))?;
    // Finite, > 0 and ≤ 1000: the signature's range is checked at binding.
    let alpha = args.number("alpha").unwrap_or(0.1);
    // Step 2: both correct; T̄ = the smaller of the two mean lengths over those questions.
    let mut both: Vec<i64> = a0
        .iter()
        .filter(|(id, a)| a.correct && a1.get(id).is_some_and(|b| b.correct))
        .map(|(id, _)| *id)
        .collect();
    both.sort_unstable();
    if both.is_empty() {
        return Err(err(
            args.span,
            "no question was answered correctly by both models; nothing to compare",
        )
        .with_help("use more questions, easier ones, or larger max_tokens"));
    }
    let mean = |m: &HashMap<i64, Answered>| -> f64 {
        both.iter().map(|id| m[id].n as f64).sum::<f64>() / both.len() as f64
    };
    let t_bar = mean(&a0).min(mean(&a1));
    let t_cut = ((alpha * t_bar).floor() as i64).max(1);
    // Step 3: mean length within [⌊0.5·T̄⌋, ⌊1.5·T̄⌋], lengths within 0.5·m of each other
    // (METHOD.md; `len_tolerance` widens that for two models of different answer styles).
    let tolerance = args.number("len_tolerance").unwrap_or(0.5);
    let len_filter = args
        .value("len_filter")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (lo, hi) = ((0.5 * t_bar).floor(), (1.5 * t_bar).floor());
    let kept: Vec<i64> = both
        .into_iter()
        .filter(|id| {
            let (n0, n1) = (a0[id].n as f64, a1[id].n as f64);
            let m = 0.5 * (n0 + n1);
            !len_filter || (m >= lo && m <= hi && (n0 - n1).abs() <= tolerance * m)
        })
        .collect();
    if kept.is_empty() {
        return Err(err(
            args.span,
            format!(
                "no question survived the length filter (T̄ = {t_bar:.1}, window [{lo}, {hi}], \
                 lengths within {tolerance} × their mean)"
            ),
        )
        .with_help("use more questions (the filters keep questions of typical answer length)"));
    }
    // Step 4: the same N for both models, with a fixed seed.
    let n = args.number("n").unwrap_or(100.0).max(0.0) as usize;
    let mut rng = StdRng::seed_from_u64(args.number("seed").unwrap_or(0.0) as u64);
    let mut chosen = kept.clone();
    chosen.shuffle(&mut rng);
    chosen.truncate(n);
    chosen.sort_unstable();
    let col_list = |name: &str, m: &HashMap<i64, Answered>| -> Column {
        let s: Vec<Series> = chosen.iter().map(|id| m[id].ids.clone()).collect();
        Series::new(name.into(), s).into_column()
    };
    let df = DataFrame::new_infer_height(vec![
        Column::new("prompt_id".into(), chosen.clone()),
        Column::new(
            "prompt".into(),
            chosen
                .iter()
                .map(|id| a0[id].prompt.clone())
                .collect::<Vec<_>>(),
        ),
        col_list("answer_ids_base", &a0),
        col_list("answer_ids_tuned", &a1),
        Column::new(
            "n_base".into(),
            chosen.iter().map(|id| a0[id].n).collect::<Vec<_>>(),
        ),
        Column::new(
            "n_tuned".into(),
            chosen.iter().map(|id| a1[id].n).collect::<Vec<_>>(),
        ),
        Column::new("t_bar".into(), vec![t_bar; chosen.len()]),
        Column::new("t_cut".into(), vec![t_cut; chosen.len()]),
    ])
    .map_err(|e| err(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

#[cfg(test)]
mod tests {
    use super::last_number;

    #[test]
    fn last_number_reads_common_formats() {
        assert_eq!(last_number("so 3 + 4 = 7."), Some(7.0));
        assert_eq!(last_number("The answer is 1,234"), Some(1234.0));
        assert_eq!(last_number("#### -5"), Some(-5.0));
        assert_eq!(last_number("about 3.5 apples"), Some(3.5));
        assert_eq!(last_number("no numbers"), None);
        assert_eq!(last_number("12-3"), Some(3.0));
        assert_eq!(last_number("it is -3"), Some(-3.0));
    }
}

fn verb_param(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let name = args.str("name").unwrap_or_default();
    let default = args.value("default").cloned().unwrap_or(Value::Null);
    Ok(match ctx.lookup(name).cloned() {
        // `--set n=100` may arrive as text: follow the default's type when it parses.
        Some(Value::Str(s)) if matches!(default, Value::Number(_)) => match s.trim().parse::<f64>()
        {
            Ok(x) => Value::Number(x),
            Err(_) => {
                return Err(err(
                    args.span_of("name"),
                    format!("parameter `{name}` must be a number, got `{s}`"),
                ))
            }
        },
        Some(v) => v,
        None => default,
    })
}

fn verb_questions(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let n = args.number("n").unwrap_or(100.0);
    let seed = args.number("seed").unwrap_or(0.0);
    let span = args.span_of("source");
    match args.value("source") {
        Some(Value::Str(s)) if s == "arith" => {
            let mut a = Args {
                verb: "arith".into(),
                span: args.span,
                ..Default::default()
            };
            a.positional = vec![Value::Number(n)];
            a.named
                .insert("n".into(), vec![arg(Value::Number(n), span)]);
            a.named
                .insert("seed".into(), vec![arg(Value::Number(seed), span)]);
            verb_arith(ctx, a)
        }
        Some(Value::Str(s)) => {
            // A file: read it, then take it as a table.
            let mut a = Args {
                verb: "read".into(),
                span: args.span,
                ..Default::default()
            };
            a.named
                .insert("path".into(), vec![arg(Value::Str(s.clone()), span)]);
            let table = super::io::verb_read(ctx, a)?;
            let mut b = args.clone();
            b.named.insert("source".into(), vec![arg(table, span)]);
            verb_questions(ctx, b)
        }
        Some(v) => {
            let df = v.as_table().ok_or_else(|| {
                EvalError::type_mismatch("\"arith\" or a table", v.type_name(), span)
            })?;
            let pick = |names: &[&'static str]| -> Option<&'static str> {
                names.iter().find(|c| df.column(c).is_ok()).copied()
            };
            let q = pick(&["question", "prompt", "problem"]).ok_or_else(|| {
                err(
                    span,
                    "the table needs a `question` (or `prompt`/`problem`) column",
                )
            })?;
            let a = pick(&["expected", "answer", "solution"]).ok_or_else(|| {
                err(
                    span,
                    "the table needs an `answer` (or `expected`/`solution`) column",
                )
            })?;
            let prompts = string_column(&df, q).map_err(|m| err(span, m))?;
            let answers = string_column(&df, a).map_err(|m| err(span, m))?;
            let mut rows: Vec<usize> = (0..df.height())
                .filter(|&r| {
                    prompts[r].is_some() && answers[r].as_deref().and_then(last_number).is_some()
                })
                .collect();
            let mut rng = StdRng::seed_from_u64(seed as u64);
            rows.shuffle(&mut rng);
            rows.truncate(n.max(0.0) as usize);
            rows.sort_unstable();
            let out = df!(
                "prompt_id" => rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                "prompt" => rows.iter().map(|&r| prompts[r].clone()).collect::<Vec<_>>(),
                "expected" => rows.iter().map(|&r| answers[r].as_deref().and_then(last_number)).collect::<Vec<_>>(),
            )
            .map_err(|e| err(span, e))?;
            Ok(Value::Table(Table::Eager(out)))
        }
        None => Err(err(span, "questions needs a source")),
    }
}

fn arg(v: Value, span: Span) -> crate::eval::registry::Arg {
    crate::eval::registry::Arg {
        value: crate::eval::registry::ArgValue::Value(v),
        span,
    }
}

fn verb_summary(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let path = ctx.resolve_path(args.str("to").unwrap_or_default());
    let mut text = format!("# {}\n\n", args.str("title").unwrap_or("rlq report"));
    if let Some(notes) = args.str("notes") {
        text.push_str(notes);
        text.push_str("\n\n");
    }
    let src = ctx.current_source().text.clone();
    for (i, a) in args.all("tables").iter().enumerate() {
        let name = src
            .get(a.span.start..a.span.end)
            .map(str::trim)
            .filter(|s| s.chars().all(|c| c.is_alphanumeric() || c == '_') && !s.is_empty())
            .map_or(format!("table {}", i + 1), str::to_string);
        let df = match &a.value {
            crate::eval::registry::ArgValue::Value(v) => v
                .as_table()
                .ok_or_else(|| EvalError::type_mismatch("table", v.type_name(), a.span))?,
            _ => return Err(err(a.span, "expected a table")),
        };
        text.push_str(&format!(
            "## {name}\n\n{}\n",
            super::io::markdown_table(&df)
        ));
    }
    crate::files::write_text_atomic(&path, &text).map_err(|e| {
        err(
            args.span_of("to"),
            format!("cannot write `{}`: {e}", path.display()),
        )
    })?;
    Ok(Value::Null)
}
