//! Circuit verbs (METHOD.md §8): `evaluate` runs a circuit with every other edge ablated,
//! `faithfulness` draws the curve of a graph's top edges against random rankings, and
//! `faithfulness_summary` reads CPR, CMD and the log-count AUC off a curve table. Thin over
//! [`crate::circuit`].

use std::sync::Arc;

use polars::prelude::*;

use super::samples::{dtype_arg, samples_arg, t_cut_arg};
use crate::attribution::prepare::{prepare, PrepareOptions, TCut};
use crate::attribution::{Graph, LossKind, Sample};
use crate::circuit::faithfulness::MIB_GRID;
use crate::circuit::{
    ablation_values, evaluate, faithfulness, graph_granularity, summary, Ablation, Circuit,
    CircuitError, FaithOptions, Ranking,
};
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::model::hooked::HookedTransformer;
use crate::model::hooks::HookLayout;
use crate::model::Model;
use crate::syntax::Span;

/// The keywords `evaluate` and `faithfulness` share: samples, loss, ablation, precision.
fn common(sig: Signature) -> Signature {
    // "model": they run the model (and their examples need real weights).
    super::samples::positions_keyword(super::samples::model_run_keywords(sig.category("model")))
        .required("model", Type::Model, "a loaded model")
        .named_required(
            "on",
            Type::Table,
            "samples, as for `patch` (`prompt` [+ `answer`], or `prompt_ids` [+ `answer_ids`]; \
             `corrupt`/`corrupt_ids` for ablation corrupt)",
        )
        .word(
            "ablation",
            Some("zero"),
            "what an ablated edge delivers: zero, mean (over samples and positions), \
             mean_positional, or corrupt (the row's corrupted input)",
        )
        .word(
            "loss",
            None,
            "the loss on the answer window; the metric is −loss (default: the graph's loss)",
        )
        .named("alpha", Type::Number, "T_cut = max(⌊α·T̄⌋, 1)")
        .named(
            "t_cut",
            Type::Number,
            "answer tokens in the loss (default: the graph's T_cut)",
        )
        .range("alpha", Range::positive(1000.0))
        .range("t_cut", Range::whole(1.0, 1e6))
        .choices("loss", &LossKind::NAMES)
        .choices("ablation", &Ablation::NAMES)
        .named_default(
            "other_model",
            Type::Bool,
            false,
            "allow a graph scored on another model (same shape)",
        )
}

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        common(Signature::new(
            "evaluate",
            "run a circuit: one forward per sample with every edge outside it ablated \
             (EAP-IG's evaluate_graph); one row per sample with metric = −loss",
        ))
        .named_required(
            "circuit",
            Type::Graph,
            "the circuit: a graph or a `circuit` of one (its edges are kept, all others ablated)",
        )
        .named_default(
            "summary",
            Type::Bool,
            false,
            "one row instead: n_samples, n_edges, mean and sd of the metric, mean loss",
        )
        .example(
            "evaluate m on qs circuit (circuit g top 50)",
            "how well 50 edges reproduce the model's own answers",
        )
        .example(
            "evaluate m on pairs circuit (circuit g greedy 20 prune true) ablation corrupt loss logit_diff",
            "interchange ablation from each row's corrupted prompt",
        ),
        verb_evaluate,
    );
    reg.register_fn(
        common(Signature::new(
            "faithfulness",
            "faithfulness curve of a graph: f = (m(C) − m(∅)) / (m(N) − m(∅)) for the top p of \
             its edges; one row per p (one forward per sample per circuit; Ctrl-C keeps the \
             points done)",
        ))
        .named_required("graph", Type::Graph, "a scored graph (from `patch`)")
        .word("ranking", Some("abs"), "abs (|score|) or signed")
        .named(
            "at",
            Type::List,
            "edge fractions in (0, 1] (default MIB's 0.001 … 1)",
        )
        .named_default(
            "random",
            Type::Number,
            0.0,
            "k seeded random rankings as a baseline (columns random_f, random_f_sd, …)",
        )
        .range("random", Range::whole(0.0, 1000.0))
        .named_default("seed", Type::Number, 0.0, "seed of the random rankings")
        .range("seed", Range::whole(0.0, 1e15))
        .named_default(
            "prune",
            Type::Bool,
            true,
            "drop each circuit's dangling edges before evaluating it (as MIB)",
        )
        .example(
            "let c = faithfulness m on qs graph g at [0.01, 0.1, 1] random 3",
            "the curve with a 3-ranking random baseline",
        )
        .example(
            "plot lines (faithfulness m on qs graph g random 3) x \"p\" y [\"f\", \"random_f\"] to \"out/faith.svg\"",
            "the curve against its baseline",
        ),
        verb_faithfulness,
    );
    reg.register_fn(
        Signature::new(
            "faithfulness_summary",
            "areas of a faithfulness curve: CPR and CMD (MIB: trapezoids of f and |1 − f| over \
             p) and auto-circuit's AUC over log10 edge count; random_* of the mean random curve",
        )
        .category("model")
        .piped("curve", Type::Table, "a table from `faithfulness`")
        .example(
            "faithfulness_summary (faithfulness m on qs graph g random 3)",
            "one row: cpr, cmd, auc, random_cpr, …",
        ),
        verb_summary,
    );
}

fn err(span: Span, e: impl std::fmt::Display) -> EvalError {
    EvalError::at(span, e.to_string()).with_code(ErrorCode::Circuit)
}

/// A lower layer's error (model, attribution, polars) at `span`, kept as the source.
fn failed(span: Span, e: impl std::error::Error + Send + Sync + 'static) -> EvalError {
    EvalError::from_layer(span, ErrorCode::Circuit, e)
}

/// What both model verbs set up: the transformer, the graph's layout, the prepared samples and
/// the ablated values.
struct Setup {
    tf: HookedTransformer,
    layout: HookLayout,
    samples: Vec<Sample>,
    ablation: Ablation,
    loss: LossKind,
}

fn setup(ctx: &EvalContext, args: &Args, graph: &Graph, graph_key: &str) -> EvalResult<Setup> {
    let span = args.span;
    let m: Arc<Model> = args
        .model("model")
        .ok_or_else(|| err(args.span_of("model"), "expected a model (from `load`)"))?;
    let gspan = args.span_of(graph_key);
    let other_ok = args.boolean("other_model")?;
    if !graph.meta.model.is_empty() && graph.meta.model != m.source && !other_ok {
        return Err(err(
            gspan,
            format!(
                "the graph was scored on `{}`, this model is `{}`",
                graph.meta.model, m.source
            ),
        )
        .with_help("give `other_model true` to evaluate it on this model anyway"));
    }
    let on_span = args.span_of("on");
    let (_, specs) = samples_arg(args)?;
    let loss = match args.word("loss") {
        Some(_) => LossKind::parse(args.word_choice("loss", &LossKind::NAMES)?).expect("checked"),
        None => LossKind::parse(&graph.meta.loss).unwrap_or(LossKind::SelfEntropy),
    };
    let ablation =
        Ablation::parse(args.word_choice("ablation", &Ablation::NAMES)?).expect("checked");
    let dtype = dtype_arg(args)?;
    // The graph's own setting by default, so the circuit is judged on the loss it was found with.
    let t_cut = t_cut_arg(
        args,
        match (&graph.meta.answer_positions, graph.meta.t_cut, loss) {
            (Some(p), _, _) => TCut::Positions(p.clone()),
            (None, Some(t), _) => TCut::Fixed(t),
            (None, None, LossKind::Nll) => TCut::Full,
            (None, None, _) => TCut::Alpha(0.1),
        },
    )?;
    let mut tf = HookedTransformer::new(&m).map_err(|e| failed(span, e))?;
    if tf.dtype() != dtype {
        tf = tf.to_dtype(dtype).map_err(|e| failed(span, e))?;
    }
    let c = &m.config;
    let layout = HookLayout::new(
        graph_granularity(graph),
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
    );
    let popts = PrepareOptions {
        loss,
        t_cut,
        chat: args.boolean("chat")?,
        max_answer_tokens: args.count("max_tokens")?,
    };
    let interrupted = || ctx.interrupted();
    let task = ctx.task("answer", specs.len(), "samples");
    let prepared = prepare(
        &m,
        &tf,
        &specs,
        &popts,
        &mut |done, _| task.done(done),
        &mut |done, total| task.within(done, total, "tokens"),
        &interrupted,
    )
    .map_err(|e| failed(on_span, e))?;
    drop(task);
    Ok(Setup {
        tf,
        layout,
        samples: prepared.samples,
        ablation,
        loss,
    })
}

fn circuit_err(span: Span, e: CircuitError) -> EvalError {
    match e {
        CircuitError::Interrupted => err(span, "interrupted").with_code(ErrorCode::Interrupted),
        e => err(span, &e).with_cause(e),
    }
}

fn verb_evaluate(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span;
    let g = args
        .graph("circuit")
        .ok_or_else(|| err(args.span_of("circuit"), "expected a graph or circuit"))?;
    let s = setup(ctx, &args, &g, "circuit")?;
    let circuit =
        Circuit::from_graph(&g, &s.layout).map_err(|e| failed(args.span_of("circuit"), e))?;
    let interrupted = || ctx.interrupted();
    let values = ablation_values(&s.tf, &s.layout, &s.samples, s.ablation, &interrupted)
        .map_err(|e| circuit_err(span, e))?;
    let task = ctx.task("evaluate", s.samples.len(), "samples");
    let ev = evaluate(
        &s.tf,
        &s.layout,
        &circuit,
        &s.samples,
        &values,
        &mut |done, _| task.done(done),
        &interrupted,
    )
    .map_err(|e| circuit_err(span, e))?;
    drop(task);
    let n = ev.metric.len();
    let df = if args.boolean("summary")? {
        let m = ev.mean();
        let sd = if n > 1 {
            (ev.metric.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        df!(
            "n_samples" => [n as i64],
            "n_edges" => [ev.n_edges as i64],
            "ablation" => [s.ablation.name()],
            "loss_kind" => [s.loss.name()],
            "metric" => [m],
            "metric_sd" => [sd],
            "loss" => [ev.loss.iter().sum::<f64>() / n.max(1) as f64],
        )
    } else {
        df!(
            "prompt_id" => ev.ids.clone(),
            "n_edges" => vec![ev.n_edges as i64; n],
            "ablation" => vec![s.ablation.name(); n],
            "metric" => ev.metric.clone(),
            "loss" => ev.loss.clone(),
        )
    }
    .map_err(|e| failed(span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn verb_faithfulness(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span;
    let g = args
        .graph("graph")
        .ok_or_else(|| err(args.span_of("graph"), "expected a graph (from `patch`)"))?;
    let at = match args.value("at") {
        None | Some(Value::Null) => MIB_GRID.to_vec(),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| v.as_number().filter(|p| *p > 0.0 && *p <= 1.0))
            .collect::<Option<Vec<f64>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                err(
                    args.span_of("at"),
                    "`at` is a list of edge fractions, each in (0, 1]",
                )
            })?,
        Some(other) => {
            return Err(err(
                args.span_of("at"),
                format!("`at` takes a list of fractions, got {}", other.type_name()),
            ))
        }
    };
    let opts = FaithOptions {
        ranking: match args.word_choice("ranking", &["abs", "signed"])? {
            "signed" => Ranking::Signed,
            _ => Ranking::Abs,
        },
        at,
        // Whole numbers in range: checked at binding.
        random: args.count("random")?,
        seed: args.whole("seed")?,
        prune: args.boolean("prune")?,
    };
    let s = setup(ctx, &args, &g, "graph")?;
    let interrupted = || ctx.interrupted();
    let values = ablation_values(&s.tf, &s.layout, &s.samples, s.ablation, &interrupted)
        .map_err(|e| circuit_err(span, e))?;
    let task = ctx.task("faithfulness", opts.at.len(), "points");
    let curve = faithfulness(
        &s.tf,
        &s.layout,
        &g,
        &s.samples,
        &values,
        &opts,
        &mut |done, _| task.done(done),
        &interrupted,
    )
    .map_err(|e| circuit_err(span, e))?;
    drop(task);
    if curve.stopped {
        ctx.warn(format!(
            "interrupted: {} of {} points done; the partial curve is returned",
            curve.points.len(),
            opts.at.len()
        ));
    }
    let pts = &curve.points;
    let n = pts.len();
    let mut cols = vec![
        Column::new("p".into(), pts.iter().map(|p| p.p).collect::<Vec<_>>()),
        Column::new(
            "n_top".into(),
            pts.iter().map(|p| p.n_top as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "n_edges".into(),
            pts.iter().map(|p| p.n_edges as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            pts.iter().map(|p| p.metric).collect::<Vec<_>>(),
        ),
        Column::new("f".into(), pts.iter().map(|p| p.f).collect::<Vec<_>>()),
    ];
    if opts.random > 0 {
        let r = |f: &dyn Fn(&crate::circuit::faithfulness::RandomPoint) -> f64| -> Vec<f64> {
            pts.iter()
                .map(|p| p.random.as_ref().map_or(f64::NAN, f))
                .collect()
        };
        cols.push(Column::new("random_f".into(), r(&|x| x.f_mean())));
        cols.push(Column::new("random_f_sd".into(), r(&|x| x.f_sd())));
        cols.push(Column::new(
            "random_n_edges".into(),
            r(&|x| x.n_edges_mean()),
        ));
        cols.push(Column::new("random_metric".into(), r(&|x| x.metric_mean())));
    }
    cols.push(Column::new("metric_full".into(), vec![curve.full; n]));
    cols.push(Column::new("metric_empty".into(), vec![curve.empty; n]));
    cols.push(Column::new("ablation".into(), vec![s.ablation.name(); n]));
    let df = DataFrame::new_infer_height(cols).map_err(|e| failed(span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>, String> {
    let c = df
        .column(name)
        .map_err(|_| format!("a faithfulness curve has a `{name}` column (from `faithfulness`)"))?;
    let c = c
        .cast(&DataType::Float64)
        .map_err(|e| format!("column `{name}`: {e}"))?;
    Ok(c.f64()
        .map_err(|e| format!("column `{name}`: {e}"))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

fn verb_summary(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span_of("curve");
    let df = match args.value("curve") {
        Some(Value::Table(t)) => t.collect().map_err(|e| failed(span, e))?,
        _ => return Err(err(span, "expected a table from `faithfulness`")),
    };
    let col = |n: &str| f64_column(&df, n).map_err(|m| err(span, m));
    let (p, n, f) = (col("p")?, col("n_edges")?, col("f")?);
    let pts: Vec<(f64, f64, f64)> = (0..p.len()).map(|i| (p[i], n[i], f[i])).collect();
    let s = summary(&pts);
    let mut cols = vec![
        Column::new("n_points".into(), [pts.len() as i64]),
        Column::new("cpr".into(), [s.cpr]),
        Column::new("cmd".into(), [s.cmd]),
        Column::new("auc".into(), [s.auc]),
    ];
    if df.column("random_f").is_ok() {
        let (rf, rn) = (col("random_f")?, col("random_n_edges")?);
        let rp: Vec<(f64, f64, f64)> = (0..p.len()).map(|i| (p[i], rn[i], rf[i])).collect();
        let r = summary(&rp);
        cols.push(Column::new("random_cpr".into(), [r.cpr]));
        cols.push(Column::new("random_cmd".into(), [r.cmd]));
        cols.push(Column::new("random_auc".into(), [r.auc]));
    }
    let out = DataFrame::new_infer_height(cols).map_err(|e| failed(span, e))?;
    Ok(Value::Table(Table::Eager(out)))
}
