//! `claims`: the paper's claims (METHOD.md §6) checked against comparison rows (`compare`
//! output, optionally tagged with `method` and `step`), one row per claim and comparison.

use polars::prelude::*;

use super::samples::string_column;
use crate::analysis::claims::{judge_full, PAPER_CLAIMS};
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Registry, Signature, Type};
use crate::eval::value::{Table, Value};

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "claims",
            "the paper's claims for online RL (intensity up, entropy up, kurtosis down, diversity \
             up) read from comparison intervals: agrees, contradicts or inconclusive",
        )
        .category("analysis")
        .required(
            "comparisons",
            Type::Table,
            "`compare` rows (metric, base, delta, pct, ci_low, ci_high), optionally with method, step and n (questions)",
        )
        .example("claims (compare g0, g1)", "one row per claim"),
        verb_claims,
    );
}

fn verb_claims(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span_of("comparisons");
    let df = args
        .table("comparisons")
        .ok_or_else(|| EvalError::at(span, "expected a table of comparisons"))?
        .collect()
        .map_err(|e| EvalError::at(span, e.to_string()).with_cause(e))?;
    let bad = |e: String| EvalError::at(span, e).with_code(ErrorCode::Column);
    let metric = string_column(&df, "metric").map_err(bad)?;
    let num = |c: &str| -> EvalResult<Vec<Option<f64>>> {
        let col = df.column(c).map_err(|_| {
            bad(format!(
                "the comparisons need a `{c}` column (from `compare`)"
            ))
        })?;
        let s = col
            .cast(&DataType::Float64)
            .map_err(|e| bad(format!("column `{c}`: {e}")).with_cause(e))?;
        Ok(s.f64()
            .map_err(|e| bad(e.to_string()).with_cause(e))?
            .iter()
            .collect())
    };
    let (delta, pct, lo, hi) = (num("delta")?, num("pct")?, num("ci_low")?, num("ci_high")?);
    let base = num("base")?;
    let n_col = if df.column("n").is_ok() {
        num("n")?
    } else {
        vec![None; df.height()]
    };
    let method = if df.column("method").is_ok() {
        string_column(&df, "method").map_err(bad)?
    } else {
        vec![None; df.height()]
    };
    let step = if df.column("step").is_ok() {
        num("step")?
    } else {
        vec![None; df.height()]
    };
    let mut out: (Vec<String>, Vec<Option<String>>, Vec<Option<f64>>) = Default::default();
    let mut ns: Vec<Option<i64>> = Vec::new();
    let (mut m_col, mut d, mut p, mut l, mut h, mut f) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for claim in &PAPER_CLAIMS {
        for r in 0..df.height() {
            if metric[r].as_deref() != Some(claim.metric) {
                continue;
            }
            let a = lo[r].unwrap_or(f64::NAN);
            let b = hi[r].unwrap_or(f64::NAN);
            let n = n_col[r]
                .and_then(crate::eval::args::whole_number)
                .and_then(|x| usize::try_from(x).ok());
            out.0.push(claim.statement.to_string());
            out.1.push(method[r].clone());
            out.2.push(step[r]);
            m_col.push(claim.metric.to_string());
            d.push(delta[r]);
            p.push(pct[r]);
            l.push(a);
            h.push(b);
            f.push(
                judge_full(claim, base[r].unwrap_or(f64::NAN), a, b, n)
                    .name()
                    .to_string(),
            );
            ns.push(n.and_then(|x| i64::try_from(x).ok()));
        }
    }
    let table = df!(
        "claim" => out.0,
        "metric" => m_col,
        "method" => out.1,
        "step" => out.2,
        "delta" => d,
        "pct" => p,
        "ci_low" => l,
        "ci_high" => h,
        "n" => ns,
        "finding" => f
    )
    .map_err(|e| EvalError::at(span, e.to_string()).with_cause(e))?;
    Ok(Value::Table(Table::Eager(table)))
}
