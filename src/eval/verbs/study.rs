//! Verbs for the paper's study (METHOD.md section 4): a seeded arithmetic question set,
//! grading of answers, seeded row sampling, and the question selection with T_cut.

use std::collections::HashMap;

use polars::prelude::*;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::samples::{int_column, string_column};
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::syntax::Span;

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "provenance",
            "what a base-vs-tuned study rests on, as a `setting | value` table: models and their \
             weights' hashes, questions kept at each stage, N, T̄, α, T_cut, the length filter, \
             the scoring settings, and warnings where the data are thin",
        )
        .category("study")
        .required("base", Type::Graph, "the base model's graph")
        .required("tuned", Type::Graph, "the tuned model's graph")
        .named_required(
            "selection",
            Type::Table,
            "the questions from `select_questions`",
        )
        .named("max_tokens", Type::Number, "the answers' token limit")
        .named("seed", Type::Number, "the questions' and sampling seed")
        .named(
            "resamples",
            Type::Number,
            "bootstrap resamples of `compare`",
        )
        .example(
            "provenance g0, g1 selection sel max_tokens 128 seed 0",
            "setting | value",
        ),
        verb_provenance,
    );
    reg.register_fn(
        Signature::new(
            "reuse",
            "a table saved by an earlier run with the same key, else `make()` saved for next \
             time: a failed study continues without regenerating; another key is refused",
        )
        .category("study")
        .required("path", Type::Str, "a .parquet file")
        .required(
            "make",
            Type::Func,
            "a function of no arguments making the table",
        )
        .named_required(
            "key",
            Type::List,
            "the values the table depends on (model path, questions, seed, max_tokens…)",
        )
        .example(
            "reuse \"qs.parquet\" make_qs key [\"arith\", 20, 1]",
            "with `fn make_qs() = arith 20 seed 1`: reads the file when its key matches, else \
             runs make_qs and saves it",
        ),
        verb_reuse,
    );
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
        .named_default(
            "max",
            Type::Number,
            ARITH_MAX as f64,
            "arith only: largest operand (smaller is easier); a table's questions are as given",
        )
        .range("n", Range::whole(0.0, 1e6))
        .range("seed", Range::SEED)
        .range("max", Range::whole(2.0, 1e6))
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
        .named(
            "provenance",
            Type::Table,
            "a `setting | value` table (from `provenance`): a settings section, its warnings first",
        )
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
        .named_default("max", Type::Number, ARITH_MAX as f64, "largest operand")
        .range("n", Range::whole(0.0, 1e6))
        .range("seed", Range::SEED)
        .range("max", Range::whole(2.0, 1e6))
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
        .range("tolerance", Range::non_negative(f64::INFINITY))
        .example("generate m on qs | grade", "marks correct answers"),
        verb_grade,
    );
    reg.register_fn(
        Signature::new(
            "paired_accuracy",
            "two graded answer sets of the same questions, question by question: each one's \
             accuracy, the questions right in both, only in the first, only in the second, in \
             neither, and the exact McNemar p-value of the difference (is a held-out gain more \
             than noise?)",
        )
        .category("study")
        .required(
            "first",
            Type::Table,
            "graded answers (`prompt_id`, `correct`), e.g. the start model's",
        )
        .required(
            "second",
            Type::Table,
            "graded answers of the same questions, e.g. a checkpoint's",
        )
        .example(
            "paired_accuracy (arith 20 seed 1 | with correct = prompt_id < 6), (arith 20 seed 1 | with correct = prompt_id < 15)",
            "20 questions: 6 right in both, 9 only in the second; p_mcnemar 0.0039",
        ),
        verb_paired_accuracy,
    );
    reg.register_fn(
        Signature::new("sample", "n rows drawn without replacement, reproducibly")
            .category("table")
            .input(Type::Table)
            .required("n", Type::Number, "how many rows (all if fewer)")
            .named_default("seed", Type::Number, 0.0, "the draw's seed")
            .range("n", Range::whole(0.0, 1e15))
            .range("seed", Range::SEED)
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
        .range("n", Range::whole(1.0, 1e9))
        .range("seed", Range::SEED)
        .named_default(
            "len_tolerance",
            Type::Number,
            0.5,
            "keep questions whose two answer lengths differ by at most this × their mean",
        )
        .range("len_tolerance", Range::non_negative(1e6))
        .named_default(
            "len_filter",
            Type::Bool,
            true,
            "apply step 3's length filters (off only for unrelated models whose answer styles differ)",
        )
        .example(
            "select_questions a0, a1 alpha 0.1 n 100",
            "prompt_id, prompt, answer_ids_base, answer_ids_tuned, n_base, n_tuned, t_bar, t_cut, \
             and what the selection rests on: alpha, asked, both_correct, length_kept, \
             len_filter, len_tolerance",
        ),
        verb_select_questions,
    );
}

/// `arith`'s default largest operand (also what `questions "arith"` uses).
const ARITH_MAX: i64 = 50;

fn err(span: Span, e: impl std::fmt::Display) -> EvalError {
    EvalError::at(span, e.to_string()).with_code(ErrorCode::Study)
}

/// A lower layer's error (polars, mostly) at `span`, kept as the source.
fn failed(span: Span, e: impl std::error::Error + Send + Sync + 'static) -> EvalError {
    EvalError::from_layer(span, ErrorCode::Study, e)
}

fn verb_arith(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let (n, seed) = (args.count("n")?, args.whole("seed")?);
    let max = i64::try_from(args.whole("max")?).unwrap_or(i64::MAX);
    arith_table(n, seed, max, args.span)
}

/// The seeded arithmetic questions as a table (`arith`, and `questions "arith"`).
fn arith_table(n: usize, seed: u64, max: i64, span: Span) -> EvalResult<Value> {
    let qs = crate::study::arith_questions(n, seed, max);
    let df = df!(
        "prompt_id" => qs.iter().map(|q| q.id).collect::<Vec<_>>(),
        "prompt" => qs.iter().map(|q| q.prompt.clone()).collect::<Vec<_>>(),
        "expected" => qs.iter().map(|q| q.expected).collect::<Vec<_>>()
    )
    .map_err(|e| failed(span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

pub(crate) use crate::study::last_number;

fn verb_grade(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span_of("table");
    let mut df = args
        .table("table")
        .ok_or_else(|| err(span, "expected a table"))?
        .collect()
        .map_err(|e| failed(span, e))?;
    let tol = args.real("tolerance")?;
    let answers = string_column(&df, "answer").map_err(|m| err(span, m))?;
    let expected = string_column(&df, "expected").map_err(|m| err(span, m))?;
    // A truncated answer never reached its final number: grading its last one would count
    // "… 12 + 30 = 4" cut mid-number as an answer of 4.
    let truncated: Vec<bool> = match df.column("truncated") {
        Ok(c) => c
            .bool()
            .map_err(|_| {
                err(
                    span,
                    "column `truncated` must be true/false (from `generate`)",
                )
            })?
            .iter()
            .map(|t| t.unwrap_or(false))
            .collect(),
        Err(_) => vec![false; df.height()],
    };
    let extracted: Vec<Option<f64>> = answers
        .iter()
        .zip(&truncated)
        .map(|(a, &cut)| {
            if cut {
                None
            } else {
                a.as_deref().and_then(last_number)
            }
        })
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
        .map_err(|e| failed(span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

/// `(prompt_id, correct)` of a graded answer table.
fn graded_rows(df: &DataFrame, side: &str) -> Result<Vec<(i64, bool)>, String> {
    let ids = int_column(df, "prompt_id").map_err(|m| format!("the {side} answers: {m}"))?;
    let correct = df
        .column("correct")
        .map_err(|_| format!("the {side} answers have no `correct` column (from `grade`)"))?
        .bool()
        .map_err(|_| format!("the {side} answers' `correct` column must be true/false"))?;
    ids.into_iter()
        .zip(correct.iter())
        .enumerate()
        .map(|(row, pair)| match pair {
            (Some(id), Some(ok)) => Ok((id, ok)),
            _ => Err(format!(
                "the {side} answers: row {row} has no prompt_id or no grade"
            )),
        })
        .collect()
}

fn verb_paired_accuracy(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let mut rows = Vec::with_capacity(2);
    for side in ["first", "second"] {
        let span = args.span_of(side);
        let df = args
            .table(side)
            .ok_or_else(|| err(span, "expected a table"))?
            .collect()
            .map_err(|e| failed(span, e))?;
        rows.push(graded_rows(&df, side).map_err(|m| err(span, m))?);
    }
    let p = crate::study::paired_accuracy(&rows[0], &rows[1]).map_err(|e| err(args.span, e))?;
    let count = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
    let df = df!(
        "questions" => [count(p.questions)],
        "accuracy_first" => [p.accuracy_first()],
        "accuracy_second" => [p.accuracy_second()],
        "both" => [count(p.both)],
        "only_first" => [count(p.only_first)],
        "only_second" => [count(p.only_second)],
        "neither" => [count(p.neither)],
        "p_mcnemar" => [p.p_value],
    )
    .map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn verb_sample(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let df = args
        .input_table()?
        .collect()
        .map_err(|e| failed(args.span, e))?;
    let n = args.count("n")?;
    let mut rng = StdRng::seed_from_u64(args.whole("seed")?);
    let mut rows: Vec<IdxSize> = (0..df.height() as IdxSize).collect();
    rows.shuffle(&mut rng);
    rows.truncate(n);
    rows.sort_unstable(); // keep the table's order
    let idx = IdxCa::from_vec("".into(), rows);
    let out = df.take(&idx).map_err(|e| failed(args.span, e))?;
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
        .map_err(|e| failed(span, e))?;
    let ids = ids.i64().map_err(|e| failed(span, e))?;
    let n = df
        .column("n_tokens")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(|e| failed(span, e))?;
    let n = n.i64().map_err(|e| failed(span, e))?;
    let ok = df
        .column("correct")
        .and_then(|c| c.bool().cloned())
        .map_err(|e| failed(span, e))?;
    let lists = df
        .column("answer_ids")
        .and_then(|c| c.list().cloned())
        .map_err(|e| failed(span, e))?;
    let prompts = if df.column("prompt").is_ok() {
        string_column(df, "prompt").map_err(|m| err(span, m))?
    } else {
        vec![None; df.height()]
    };
    let mut out = HashMap::new();
    #[allow(clippy::needless_range_loop)] // r indexes five columns, not only `prompts`
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
            .map_err(|e| failed(args.span_of(name), e))
    };
    let a0 = answered(&get("base")?, args.span_of("base"))?;
    let a1 = answered(&get("tuned")?, args.span_of("tuned"))?;
    // Finite, > 0 and ≤ 1000: the signature's range is checked at binding.
    let alpha = args.real("alpha")?;
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
    let asked = a0.keys().filter(|id| a1.contains_key(id)).count();
    let both_correct = both.len();
    let mean = |m: &HashMap<i64, Answered>| -> f64 {
        both.iter().map(|id| m[id].n as f64).sum::<f64>() / both.len() as f64
    };
    let t_bar = mean(&a0).min(mean(&a1));
    let t_cut = ((alpha * t_bar).floor() as i64).max(1);
    // Step 3: mean length within [⌊0.5·T̄⌋, ⌊1.5·T̄⌋], lengths within 0.5·m of each other
    // (METHOD.md; `len_tolerance` widens that for two models of different answer styles).
    let tolerance = args.real("len_tolerance")?;
    let len_filter = args.boolean("len_filter")?;
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
    let n = args.count("n")?;
    let mut rng = StdRng::seed_from_u64(args.whole("seed")?);
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
        // What the selection rests on, one value per column (the report's provenance).
        Column::new("alpha".into(), vec![alpha; chosen.len()]),
        Column::new("asked".into(), vec![asked as i64; chosen.len()]),
        Column::new(
            "both_correct".into(),
            vec![both_correct as i64; chosen.len()],
        ),
        Column::new("length_kept".into(), vec![kept.len() as i64; chosen.len()]),
        Column::new("len_filter".into(), vec![len_filter; chosen.len()]),
        Column::new("len_tolerance".into(), vec![tolerance; chosen.len()]),
    ])
    .map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

#[cfg(test)]
#[allow(clippy::items_after_test_module)] // kept next to `last_number`, which it tests
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
    let (n, seed) = (args.count("n")?, args.whole("seed")?);
    let span = args.span_of("source");
    match args.value("source") {
        Some(Value::Str(s)) if s == "arith" => {
            let max = i64::try_from(args.whole("max")?).unwrap_or(i64::MAX);
            arith_table(n, seed, max, args.span)
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
            let mut rng = StdRng::seed_from_u64(seed);
            rows.shuffle(&mut rng);
            rows.truncate(n);
            rows.sort_unstable();
            let out = df!(
                "prompt_id" => rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                "prompt" => rows.iter().map(|&r| prompts[r].clone()).collect::<Vec<_>>(),
                "expected" => rows.iter().map(|&r| answers[r].as_deref().and_then(last_number)).collect::<Vec<_>>(),
            )
            .map_err(|e| failed(span, e))?;
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
    if let Some(t) = args.table("provenance") {
        let df = t
            .collect()
            .map_err(|e| failed(args.span_of("provenance"), e))?;
        text.push_str(&provenance_section(&df).map_err(|m| err(args.span_of("provenance"), m))?);
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
        let e = super::io::io_of(e);
        err(
            args.span_of("to"),
            format!("cannot write `{}`: {e}", path.display()),
        )
        .with_cause(e)
    })?;
    Ok(Value::Null)
}

/// The values of a `key` list as JSON (numbers, text, booleans, lists); anything else by type.
fn key_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Number(x) => {
            serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Str(s) => s.clone().into(),
        Value::List(items) => items.iter().map(key_json).collect(),
        other => format!("<{}>", other.type_name()).into(),
    }
}

/// The parquet metadata key under which `reuse` stores its key.
const REUSE_KEY: &str = "rlq.reuse";

fn verb_reuse(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let path = ctx.resolve_path(args.str("path").unwrap_or_default());
    let pspan = args.span_of("path");
    if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
        return Err(err(
            pspan,
            "reuse keeps its table in a .parquet file (it holds list columns \
                               such as answer_ids, and the key)",
        ));
    }
    let key = key_json(args.value("key").unwrap_or(&Value::Null));
    if path.is_file() {
        let (df, saved) = super::io::read_parquet_with(&path, REUSE_KEY).map_err(|e| {
            let message = format!("cannot read `{}`: {e}", path.display());
            e.source_of(err(pspan, message))
        })?;
        let Some(saved) = saved else {
            return Err(err(
                pspan,
                format!(
                    "`{}` was not saved by `reuse`: its key is unknown",
                    path.display()
                ),
            )
            .with_help("delete it, or give another path"));
        };
        let saved: serde_json::Value = serde_json::from_str(&saved).unwrap_or_default();
        if saved != key {
            let (a, b) = (
                saved.as_array().cloned().unwrap_or_default(),
                key.as_array().cloned().unwrap_or_default(),
            );
            let mut diffs = Vec::new();
            for i in 0..a.len().max(b.len()) {
                let (x, y) = (a.get(i), b.get(i));
                if x != y {
                    let show = |v: Option<&serde_json::Value>| {
                        v.map_or("(none)".to_string(), |v| v.to_string())
                    };
                    diffs.push(format!("key {}: {} saved, {} now", i + 1, show(x), show(y)));
                }
            }
            return Err(super::graph::mismatch(
                args.span_of("key"),
                &format!("`{}` was made with another key", path.display()),
                &diffs,
                "delete the file to make it again, or write to another `out`",
            ));
        }
        ctx.info(format!(
            "reusing `{}` (saved with the same key)",
            path.display()
        ));
        return Ok(Value::Table(Table::Eager(df)));
    }
    let make = args.value("make").cloned().unwrap_or(Value::Null);
    let made = ctx.call(&make, Vec::new(), args.span_of("make"))?;
    let mut df = made
        .as_table()
        .ok_or_else(|| EvalError::type_mismatch("table", made.type_name(), args.span_of("make")))?;
    super::io::save_parquet(
        &path,
        &mut df,
        vec![(REUSE_KEY.to_string(), key.to_string())],
    )
    .map_err(|e| {
        let message = format!("cannot save to `{}`: {e}", path.display());
        e.source_of(err(pspan, message))
    })?;
    Ok(Value::Table(Table::Eager(df)))
}

/// The first value of a column of the selection (they are constant), as text.
fn first_value(df: &DataFrame, column: &str) -> Option<String> {
    let v = df.column(column).ok()?.get(0).ok()?;
    Some(match v {
        AnyValue::Float64(x) => super::io::fmt_float(x),
        AnyValue::String(s) => s.to_string(),
        other => other.to_string(),
    })
}

fn verb_provenance(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g0 = args
        .graph("base")
        .ok_or_else(|| err(args.span_of("base"), "expected the base graph"))?;
    let g1 = args
        .graph("tuned")
        .ok_or_else(|| err(args.span_of("tuned"), "expected the tuned graph"))?;
    let sel = args
        .table("selection")
        .ok_or_else(|| err(args.span_of("selection"), "expected the selection table"))?
        .collect()
        .map_err(|e| failed(args.span_of("selection"), e))?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
    let hash = |h: &str| {
        if h.is_empty() {
            "(unknown)".to_string()
        } else {
            h[..h.len().min(16)].to_string()
        }
    };
    row("base model", g0.meta.model.clone());
    row("base weights (blake3)", hash(&g0.meta.model_hash));
    row("tuned model", g1.meta.model.clone());
    row("tuned weights (blake3)", hash(&g1.meta.model_hash));
    if !g0.meta.model_hash.is_empty() && g0.meta.model_hash == g1.meta.model_hash {
        warnings.push("base and tuned have the same weights: every paired delta is 0".into());
    }
    let stage = |c: &str| first_value(&sel, c).unwrap_or_else(|| "(not recorded)".into());
    row("questions both models answered", stage("asked"));
    row("answered correctly by both", stage("both_correct"));
    let filter_on = first_value(&sel, "len_filter").as_deref() != Some("false");
    if filter_on {
        row("kept by the length filter", stage("length_kept"));
        row(
            "length filter",
            format!(
                "on: mean length in [⌊0.5·T̄⌋, ⌊1.5·T̄⌋], the two lengths within {} × their mean",
                stage("len_tolerance")
            ),
        );
    } else {
        row("length filter", "OFF (METHOD.md §4 step 3 skipped)".into());
        warnings.push(
            "the length filter was off: the questions' answer lengths are not matched".into(),
        );
    }
    let n = sel.height();
    row("N (questions sampled)", n.to_string());
    row(
        "samples scored (base, tuned)",
        format!("{}, {}", g0.scores.len(), g1.scores.len()),
    );
    if g0.scores.len() != n || g1.scores.len() != n {
        warnings.push(format!(
            "the graphs hold {} and {} samples, the selection {n}: not every question was scored",
            g0.scores.len(),
            g1.scores.len()
        ));
    }
    row("T̄ (mean answer tokens, the shorter model)", stage("t_bar"));
    row("α", stage("alpha"));
    let t_cut = first_value(&sel, "t_cut");
    row(
        "T_cut = max(⌊α·T̄⌋, 1)",
        t_cut.clone().unwrap_or_else(|| "(not recorded)".into()),
    );
    for (name, key) in [
        ("max_tokens", "max_tokens"),
        ("seed", "seed"),
        ("bootstrap resamples", "resamples"),
    ] {
        if args.has(key) {
            row(name, super::io::fmt_float(args.real(key)?));
        }
    }
    let m = &g0.meta;
    row("loss", m.loss.clone());
    row(
        "method",
        match m.steps {
            Some(s) => format!("{} ({s} steps)", m.method),
            None => m.method.clone(),
        },
    );
    row("granularity", m.granularity.clone());
    row("T_cut rule", m.t_cut_rule.clone());
    row("dtype", m.dtype.clone());
    row("ablation", m.ablation.clone());
    row("chat template", m.chat.to_string());
    let diffs = crate::attribution::settings::differences(
        &g0.meta,
        &g1.meta,
        crate::attribution::settings::Purpose::Compare,
    );
    warnings.extend(
        diffs
            .into_iter()
            .map(|d| format!("the graphs differ in {d}")),
    );
    if n < 30 {
        warnings.push(format!(
            "N = {n} < 30: the bootstrap intervals are unreliable"
        ));
    }
    if t_cut.as_deref() == Some("1") {
        warnings.push("T_cut = 1: only the first answer token is scored".into());
    }
    rows.extend(warnings.into_iter().map(|w| ("warning".to_string(), w)));
    let df = df!(
        "setting" => rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        "value" => rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
    )
    .map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

/// The report's warnings (rows `warning`) as a list, then every other setting as a table.
fn provenance_section(df: &DataFrame) -> Result<String, String> {
    let setting = string_column(df, "setting")?;
    let value = string_column(df, "value")?;
    let mut warnings = String::new();
    let (mut names, mut values) = (Vec::new(), Vec::new());
    for (k, v) in setting.into_iter().zip(value) {
        let (k, v) = (k.unwrap_or_default(), v.unwrap_or_default());
        if k == "warning" {
            warnings.push_str(&format!("- **{v}**\n"));
        } else {
            names.push(k);
            values.push(v);
        }
    }
    let mut out = String::new();
    if !warnings.is_empty() {
        out.push_str(&format!("## Warnings\n\n{warnings}\n"));
    }
    let table = df!("setting" => names, "value" => values).map_err(|e| e.to_string())?;
    out.push_str(&format!(
        "## Settings and provenance\n\n{}\n",
        super::io::markdown_table(&table)
    ));
    Ok(out)
}
