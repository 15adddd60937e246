//! Statistic verbs over graphs (METHOD.md §5), `compare`, per-edge views and `plot`.
//! Each verb takes graphs (or their saved tables); several graphs give one column each, named
//! after the expressions that produced them (`entropy g0, g1 by layer` → columns g0, g1).

use polars::prelude::*;

use crate::analysis::{
    self, By, CompareOpts, HistOpts, Normalize, NormalizedStat, Stat, StatOption, StatParams,
    StatSet, STATS,
};
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::plot;
use crate::syntax::Span;

/// The keywords a statistic's option family adds to its verb.
fn declare_option(sig: Signature, option: StatOption) -> Signature {
    match option {
        StatOption::Hist => sig
            .named_default("bins", Type::Number, 100.0, "histogram bins")
            .range("bins", Range::whole(1.0, 1e7))
            .named(
                "range",
                Type::List,
                "[lo, hi] of |score| (default [0, max])",
            )
            .named_default("zeros", Type::Bool, false, "count exact zeros")
            .named("base", Type::Number, "log base (default e; not 1)")
            .range("base", Range::positive(f64::INFINITY)),
        StatOption::Dense => sig.named_default(
            "dense",
            Type::Bool,
            false,
            "divide by the dense (1+2L)×(4L+1) matrix, as the paper's figure",
        ),
        StatOption::TopK => sig
            .named_default("k", Type::Number, 10.0, "how many edges")
            .range("k", Range::whole(1.0, f64::INFINITY)),
    }
}

/// The `normalize` keyword of the statistic verbs and `compare` (`analysis::normalize`).
fn declare_normalize(sig: Signature) -> Signature {
    sig.word(
        "normalize",
        Some("none"),
        "divide each sample's scores first: none (the paper's raw scores), mass (by the \
         sample's Σ|score|: shares of its attribution mass) or grad (by its loss-gradient norm \
         at logits); names become e.g. entropy/mass",
    )
    .choices("normalize", &NORMALIZE_CHOICES)
}

/// The `normalize` choices the verbs offer: all of the analysis layer's.
const NORMALIZE_CHOICES: [&str; 3] = analysis::NORMALIZE_NAMES;

pub(super) fn register(reg: &mut Registry) {
    // One verb per statistic of the table, with the keywords of its options.
    for def in STATS {
        let mut sig = Signature::new(def.name, def.description)
            .category("statistics")
            .rest("graphs", Type::Any, "one or more graphs (or their tables)")
            .word(
                "by",
                None,
                "layer (destination), src_layer, kind, src_kind, edge, depth (relative depth of the \
                 destination in 10 bins, then logits: graphs of different depth) or position (a \
                 per-position graph: one row per fed position, with the samples that reach it)",
            );
        for &option in def.options {
            sig = declare_option(sig, option);
        }
        sig = declare_normalize(sig);
        let example = format!("{} g0, g1 by layer", def.name);
        sig = sig.example(&example, "one row per layer, one column per graph");
        if def.name == "entropy" {
            sig = sig.example(
                "entropy g0, g1 by layer normalize mass",
                "the same on each sample's shares of its Σ|score|: column names say /mass",
            );
        }
        reg.register_fn(sig, verb_stat);
    }
    reg.register_fn(
        declare_normalize(Signature::new(
            "compare",
            "every statistic for two graphs: base, tuned, delta, pct and a paired bootstrap 95% CI",
        )
        .category("statistics")
        .required("base", Type::Any, "the base model's graph")
        .required(
            "tuned",
            Type::Any,
            "the tuned model's graph (same samples for paired CIs)",
        )
        .named_default(
            "resamples",
            Type::Number,
            1000.0,
            "bootstrap resamples (0: no interval)",
        )
        .range("resamples", Range::whole(0.0, 1e6))
        .named_default("seed", Type::Number, 0.0, "bootstrap seed")
        .range("seed", Range::SEED)
        .named_default(
            "paired",
            Type::Bool,
            true,
            "resample the same prompts in both",
        )
        .word(
            "by",
            None,
            "layer, src_layer, kind, src_kind or depth (relative depth, 10 bins: graphs of \
             different depth)",
        )
        .named_default("k", Type::Number, 10.0, "k of topk_mass")
        .range("k", Range::whole(1.0, f64::INFINITY)))
        .word(
            "stats",
            Some("default"),
            "default (the nine statistics of METHOD.md §5) or all (adds the rank-based \
             rank_diversity and half_mass_fraction)",
        )
        .choices("stats", &["default", "all"])
        .named_default(
            "same_tokens",
            Type::Bool,
            false,
            "refuse unless both graphs scored the same tokens for every prompt (the same-token \
             control: each model scored on the other's answers), listing the prompts that differ",
        )
        .example(
            "compare g0, g1",
            "metric | base | tuned | delta | pct | ci_low | ci_high",
        )
        .example(
            "compare g0, g1 normalize mass stats all",
            "every statistic on shares of each sample's Σ|score| (whole-graph intensity/mass, \
             1/n_edges in both, left out)",
        ),
        verb_compare,
    );
    reg.register_fn(
        Signature::new("rel_change", "per edge: (|S̄_tuned| − |S̄_base|) / |S̄_base|")
            .category("statistics")
            .required("base", Type::Any, "base graph")
            .required("tuned", Type::Any, "tuned graph")
            .example(
                "rel_change g0, g1 | sort by rel_change desc | top 10",
                "biggest gains",
            ),
        verb_rel_change,
    );
    reg.register_fn(
        Signature::new(
            "overlap",
            "agreement of two graphs: shared edges and Jaccard among each one's top n, \
             spearman_top over the union of the tops; spearman, spearman_abs, kendall (τ-b) and \
             pearson over all edges",
        )
        .category("statistics")
        .required("a", Type::Any, "a graph")
        .required("b", Type::Any, "another graph")
        .named_default("top", Type::Number, 100.0, "n strongest edges of each")
        .range("top", Range::whole(1.0, f64::INFINITY))
        .example("overlap g0, g1 top 50", "one row"),
        verb_overlap,
    );
    reg.register_fn(
        Signature::new(
            "node_entropy",
            "per source node: entropy of its outgoing |score| mass",
        )
        .category("statistics")
        .required("graph", Type::Any, "a graph")
        .example(
            "node_entropy g | sort by node_entropy",
            "one row per source",
        ),
        verb_node_entropy,
    );
    reg.register_fn(
        Signature::new(
            "plot",
            "draw a chart to .svg or .png: heatmap, bars, hist or lines",
        )
        .category("plot")
        .positional(crate::eval::registry::Param::new(
            "kind",
            crate::eval::registry::Shape::Word,
            "heatmap | bars | hist | lines",
        ))
        .required("data", Type::Any, "a graph or a table")
        .optional(
            "other",
            Type::Any,
            "heatmap: a second graph, drawn beside the first on one colour scale (or their \
             difference with `diff true`)",
        )
        .named_required("to", Type::Str, "output file (.svg or .png)")
        .named(
            "x",
            Type::Str,
            "x column (bars, lines; default the first column)",
        )
        .named(
            "y",
            Type::List,
            "y columns (default every other numeric column but intervals: a column's `{y}_lo`/`{y}_hi`, \
             `{y}_low`/`{y}_high`, or `ci_low`/`ci_high` of `delta` or a sole line, draw a band)",
        )
        .named("title", Type::Str, "chart title")
        .named_default("log", Type::Bool, false, "log-scale counts (hist)")
        .named_default(
            "diff",
            Type::Bool,
            false,
            "heatmap of two graphs: one panel of other − data per edge",
        )
        .word(
            "by",
            None,
            "heatmap only: position (edge × fed position of a per-position graph, the 40 \
             strongest edges)",
        )
        .example(
            "plot heatmap g to \"out/g.svg\"",
            "source × destination mean scores",
        )
        .example(
            "plot bars (entropy g0, g1 by layer) to \"out/entropy.png\"",
            "a statistic by layer for two graphs, the legend naming their models",
        )
        .example(
            "plot heatmap g0, g1 to \"out/pair.svg\"",
            "two graphs side by side, one colour scale (its ±max stated)",
        )
        .example(
            "plot heatmap g0, g1 diff true to \"out/diff.svg\"",
            "g1 − g0 per edge",
        )
        .example(
            "plot lines (compare g0, g1 by layer | where metric == \"entropy\" | select dst_layer, delta, ci_low, ci_high) to \"out/d.svg\"",
            "delta by layer with its ci_low..ci_high band",
        ),
        verb_plot,
    );
}

fn err(span: Span, e: impl std::fmt::Display) -> EvalError {
    EvalError::at(span, e.to_string()).with_code(ErrorCode::Analysis)
}

/// An error of the analysis layer (or of polars, or of a plot) at `span`, kept as the source.
fn failed(span: Span, e: impl std::error::Error + Send + Sync + 'static) -> EvalError {
    EvalError::from_layer(span, ErrorCode::Analysis, e)
}

/// The long (per-sample) table of a graph, or a table as given.
fn long_table(v: &Value, span: Span) -> EvalResult<DataFrame> {
    match v {
        Value::Graph(g) => g.sample_table().map_err(|e| failed(span, e)),
        Value::Table(t) => t.collect().map_err(|e| failed(span, e)),
        other => Err(EvalError::type_mismatch(
            "graph or table",
            other.type_name(),
            span,
        )),
    }
}

/// The long table a normalisation needs ([`with_grad_norms`]).
fn scaled_table(v: &Value, span: Span, normalize: Normalize) -> EvalResult<DataFrame> {
    with_grad_norms(long_table(v, span)?, v, span, normalize)
}

/// For `normalize grad`, a graph's table gains each sample's gradient norm at `logits` as the
/// `grad_norm` column, by prompt_id (long and per-position tables alike); a table is taken as
/// given (it may carry one).
fn with_grad_norms(
    table: DataFrame,
    v: &Value,
    span: Span,
    normalize: Normalize,
) -> EvalResult<DataFrame> {
    let Value::Graph(g) = v else {
        return Ok(table);
    };
    if normalize != Normalize::Grad {
        return Ok(table);
    }
    let Some(norms) = g.grad_norms() else {
        return Err(err(
            span,
            "this graph keeps no per-sample gradient norms, so it cannot be normalised by grad",
        )
        .with_help(
            "score it again with this version's patch (graphs saved before per-sample records, \
             or read from EAP-IG JSON, have none), or use normalize mass",
        ));
    };
    let of: std::collections::HashMap<i64, f64> =
        g.meta.prompt_ids.iter().copied().zip(norms).collect();
    let ids = table
        .column("prompt_id")
        .and_then(|c| c.i64().cloned())
        .map_err(|e| failed(span, e))?;
    let column: Vec<Option<f64>> = ids
        .iter()
        .map(|id| id.and_then(|id| of.get(&id).copied()))
        .collect();
    let mut table = table;
    table
        .with_column(Column::new(
            analysis::matrix::GRAD_NORM_COLUMN.into(),
            column,
        ))
        .map_err(|e| failed(span, e))?;
    Ok(table)
}

/// The model a graph was scored with, when the value is a graph that knows it.
fn model_of(v: &Value) -> Option<&str> {
    match v {
        Value::Graph(g) if !g.meta.model.trim().is_empty() => Some(g.meta.model.as_str()),
        _ => None,
    }
}

/// A column name for an argument: its source text when that is a plain name.
fn arg_name(ctx: &EvalContext, span: Span, i: usize) -> String {
    let text = &ctx.current_source().text;
    let s = text.get(span.start..span.end).unwrap_or("").trim();
    if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_') {
        s.to_string()
    } else {
        format!("graph{}", i + 1)
    }
}

fn parse_by(args: &Args) -> EvalResult<By> {
    match args.word("by") {
        None => Ok(By::None),
        Some(w) => w.parse::<By>().map_err(|_| {
            err(args.span_of("by"), format!("cannot group by `{w}`"))
                .with_help("use layer, src_layer, kind, src_kind, depth or edge")
        }),
    }
}

/// The histogram keywords of a statistic that declares them ([`StatOption::Hist`]).
fn hist_opts(args: &Args) -> EvalResult<HistOpts> {
    let mut h = HistOpts {
        bins: args.count("bins")?,
        include_zeros: args.boolean("zeros")?,
        ..HistOpts::default()
    };
    if let Some(Value::List(r)) = args.value("range") {
        match r.as_slice() {
            [Value::Number(lo), Value::Number(hi)] if lo < hi => h.range = Some((*lo, *hi)),
            _ => return Err(err(args.span_of("range"), "range is [lo, hi] with lo < hi")),
        }
    }
    if args.has("base") {
        // > 0 is the declared range; base 1 has no logarithm.
        let b = args.real("base")?;
        if b == 1.0 {
            return Err(err(
                args.span_of("base"),
                "the log base must be > 0 and ≠ 1",
            ));
        }
        h.base = Some(b);
    }
    Ok(h)
}

fn n_layers_of(v: &Value) -> Option<usize> {
    match v {
        Value::Graph(g) => Some(g.meta.n_layers),
        _ => None,
    }
}

/// The per-position table of a graph scored with `per_position true`, or a table as given.
fn position_table(v: &Value, span: Span) -> EvalResult<DataFrame> {
    match v {
        Value::Graph(g) => match g.position_table() {
            Some(t) => t.map_err(|e| failed(span, e)),
            None => Err(err(span, "this graph has no per-position scores")
                .with_help("score it with `patch … per_position true`")),
        },
        other => long_table(other, span),
    }
}

fn normalize_arg(args: &Args) -> EvalResult<Normalize> {
    let w = args.word_choice("normalize", &NORMALIZE_CHOICES)?;
    w.parse::<Normalize>()
        .map_err(|e| failed(args.span_of("normalize"), e))
}

fn verb_stat(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let name = args.verb.clone();
    let by = if args.word("by") == Some("position") {
        By::None
    } else {
        parse_by(&args)?
    };
    let graphs = args.all("graphs").to_vec();
    if graphs.is_empty() {
        return Err(err(args.span, format!("`{name}` needs at least one graph")));
    }
    let values: Vec<Value> = args.values("graphs").into_iter().cloned().collect();
    // An option's keywords exist only on the statistics that take it; the others get the
    // analysis layer's defaults, which they never read.
    let takes = |option: StatOption| {
        STATS
            .iter()
            .any(|d| d.name == name && d.options.contains(&option))
    };
    let defaults = StatParams::default();
    let k = if takes(StatOption::TopK) {
        args.count("k")?
    } else {
        defaults.topk
    };
    let hist = if takes(StatOption::Hist) {
        hist_opts(&args)?
    } else {
        defaults.hist
    };
    let dense = takes(StatOption::Dense) && args.boolean("dense")?;
    let dense_layers = if dense {
        match n_layers_of(&values[0]) {
            Some(l) => Some(l),
            None => {
                return Err(err(
                    args.span,
                    "dense intensity needs a graph (its layer count), not a table",
                ))
            }
        }
    } else {
        None
    };
    let stat = Stat::from_name(&name, hist, k, dense_layers).map_err(|e| failed(args.span, e))?;
    let stat = NormalizedStat::new(stat, normalize_arg(&args)?);
    let mut tables = Vec::with_capacity(values.len());
    let mut names = Vec::with_capacity(values.len());
    let by_position = args.word("by") == Some("position");
    for (i, (v, a)) in values.iter().zip(&graphs).enumerate() {
        tables.push(if by_position {
            with_grad_norms(position_table(v, a.span)?, v, a.span, stat.normalize)?
        } else {
            scaled_table(v, a.span, stat.normalize)?
        });
        names.push(arg_name(ctx, a.span, i));
    }
    if by_position {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let df = analysis::statistic_by_position(&refs, &tables, stat)
            .map_err(|e| failed(args.span, e))?;
        return Ok(Value::Table(Table::Eager(df)));
    }
    let df = if tables.len() == 1 {
        analysis::statistic(&tables[0], stat, by)
    } else {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        analysis::side_by_side(&refs, &tables, stat, by)
    }
    .map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn two_tables(args: &Args, a: &str, b: &str) -> EvalResult<(DataFrame, DataFrame, Option<usize>)> {
    two_scaled_tables(args, a, b, Normalize::None)
}

fn two_scaled_tables(
    args: &Args,
    a: &str,
    b: &str,
    normalize: Normalize,
) -> EvalResult<(DataFrame, DataFrame, Option<usize>)> {
    let va = args.value(a).cloned().unwrap_or(Value::Null);
    let vb = args.value(b).cloned().unwrap_or(Value::Null);
    let layers = n_layers_of(&va);
    Ok((
        scaled_table(&va, args.span_of(a), normalize)?,
        scaled_table(&vb, args.span_of(b), normalize)?,
        layers,
    ))
}

fn verb_compare(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    // Two graphs (in memory or read back from their files) must have been scored alike.
    if let (Some(Value::Graph(b)), Some(Value::Graph(t))) =
        (args.value("base"), args.value("tuned"))
    {
        use crate::attribution::settings::{differences, Purpose};
        let diffs = differences(&b.meta, &t.meta, Purpose::Compare);
        if !diffs.is_empty() {
            return Err(super::graph::mismatch(
                args.span_of("tuned"),
                "cannot compare: the two graphs were scored differently",
                &diffs,
                "score both with the same loss, method, steps, granularity, T_cut, dtype, \
                 ablation and chat setting (the study's T_cut column gives both one T_cut)",
            ));
        }
    }
    if args.boolean("same_tokens")? {
        check_same_tokens(&args)?;
    }
    let normalize = normalize_arg(&args)?;
    let (t0, t1, _) = two_scaled_tables(&args, "base", "tuned", normalize)?;
    let by = parse_by(&args)?;
    if by == By::Edge {
        return Err(err(args.span_of("by"), "compare is not per edge")
            .with_help("use `rel_change g0, g1` for per-edge changes"));
    }
    let opts = CompareOpts {
        resamples: args.count("resamples")?,
        seed: args.whole("seed")?,
        paired: args.boolean("paired")?,
        topk: args.count("k")?,
        by,
        normalize,
        statistics: match args.word_choice("stats", &["default", "all"])? {
            "all" => StatSet::All,
            _ => StatSet::Default,
        },
        // Two different models have different edge sets: whole-graph statistics stay valid.
        require_same_edges: false,
        ..CompareOpts::default()
    };
    let df = analysis::compare(&t0, &t1, &opts).map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

/// `same_tokens true`: both graphs must have scored each prompt on the same tokens.
fn check_same_tokens(args: &Args) -> EvalResult<()> {
    let (Some(Value::Graph(b)), Some(Value::Graph(t))) = (args.value("base"), args.value("tuned"))
    else {
        return Err(err(
            args.span_of("same_tokens"),
            "same_tokens needs two graphs (their per-sample token hashes), not tables",
        )
        .with_help("pass the graphs, or read them back from their saved files"));
    };
    analysis::check_same_tokens(
        &b.meta.prompt_ids,
        &b.meta.sample_hashes,
        &t.meta.prompt_ids,
        &t.meta.sample_hashes,
    )
    .map_err(|e| {
        failed(args.span_of("tuned"), e).with_help(
            "score both models on the same answers (e.g. the tuned model on the base model's \
             answer tokens), or drop same_tokens to compare each model on its own answers",
        )
    })
}

fn verb_rel_change(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let (t0, t1, _) = two_tables(&args, "base", "tuned")?;
    let df = analysis::rel_change(&t0, &t1).map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn verb_overlap(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let (t0, t1, _) = two_tables(&args, "a", "b")?;
    let df = analysis::overlap(&t0, &t1, args.count("top")?).map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn verb_node_entropy(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let v = args.value("graph").cloned().unwrap_or(Value::Null);
    let t = long_table(&v, args.span_of("graph"))?;
    let df = analysis::node_entropy(&t).map_err(|e| failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn verb_plot(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let kind = args.word("kind").unwrap_or("").to_string();
    let path = ctx.resolve_path(args.str("to").unwrap_or_default());
    let data = args.value("data").cloned().unwrap_or(Value::Null);
    let span = args.span_of("data");
    let title = args.str("title").map(str::to_string);
    let opts = plot::PlotOpts {
        title: title.clone(),
        ..plot::PlotOpts::default()
    };
    if args.word("by").is_some() && kind != "heatmap" {
        return Err(err(args.span_of("by"), "only `plot heatmap` takes `by`"));
    }
    let other = args.value("other").cloned();
    let diff = args.boolean("diff")?;
    if other.is_some() && (kind != "heatmap" || args.word("by").is_some()) {
        return Err(err(
            args.span_of("other"),
            "only `plot heatmap` (without `by`) takes a second graph",
        )
        .with_help("for a statistic of two graphs: plot bars (entropy g0, g1 by layer) to …"));
    }
    if diff && other.is_none() {
        return Err(
            err(args.span_of("diff"), "`diff true` needs a second graph")
                .with_help("plot heatmap g0, g1 diff true to \"out/diff.svg\""),
        );
    }
    let result = match kind.as_str() {
        "heatmap" => {
            let mut h = plot::HeatmapOpts::default();
            h.plot.title = title.or(h.plot.title);
            match (args.word("by"), &other) {
                (None, Some(b)) => {
                    let b_span = args.span_of("other");
                    // A difference pairs edges by node name, so by absolute layer index.
                    if let (true, Some(la), Some(lb)) = (
                        diff,
                        n_layers_of(&data).filter(|&l| l > 0),
                        n_layers_of(b).filter(|&l| l > 0),
                    ) {
                        if la != lb {
                            return Err(err(
                                args.span_of("diff"),
                                format!(
                                    "cannot subtract graphs of different depth ({la} and {lb} \
                                     layers): edges would pair by absolute layer index"
                                ),
                            )
                            .with_help(
                                "draw them side by side on one scale (without `diff`), or \
                                 compare by relative depth: compare g0, g1 by depth",
                            ));
                        }
                    }
                    let names = plot::series_names(
                        &[model_of(&data), model_of(b)],
                        &[arg_name(ctx, span, 0), arg_name(ctx, b_span, 1)],
                    );
                    plot::heatmap_pair(
                        &long_table(&data, span)?,
                        &long_table(b, b_span)?,
                        [&names[0], &names[1]],
                        diff,
                        &path,
                        &h,
                    )
                }
                (None, None) => plot::heatmap(&long_table(&data, span)?, &path, &h),
                (Some("position"), _) => {
                    plot::heatmap_by_position(&position_table(&data, span)?, &path, &h)
                }
                (Some(w), _) => {
                    return Err(err(args.span_of("by"), format!("cannot plot by `{w}`"))
                        .with_help("a heatmap takes `by position`"))
                }
            }
        }
        "hist" => {
            let t = long_table(&data, span)?;
            let mut h = plot::HistPlotOpts::default();
            h.plot.title = title.or(h.plot.title);
            h.log_y = args.boolean("log")?;
            plot::hist(&t, &path, &h)
        }
        "bars" | "lines" => {
            let t = match &data {
                Value::Graph(g) => g.edge_table().map_err(|e| failed(span, e))?,
                other => other
                    .as_table()
                    .ok_or_else(|| EvalError::type_mismatch("table", other.type_name(), span))?,
            };
            let names: Vec<String> = t.get_column_names().iter().map(|n| n.to_string()).collect();
            let x = match args.str("x") {
                Some(x) => x.to_string(),
                None => names.first().cloned().unwrap_or_default(),
            };
            let ys: Vec<String> = match args.value("y") {
                Some(Value::List(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err(args.span_of("y"), "y is a list of column names"))?,
                _ => {
                    let numeric: Vec<String> = t
                        .columns()
                        .iter()
                        .filter(|c| c.name().as_str() != x && c.dtype().is_primitive_numeric())
                        .map(|c| c.name().to_string())
                        .collect();
                    // A line's interval columns are its band, not lines of their own.
                    let bands: Vec<String> = numeric
                        .iter()
                        .filter_map(|y| plot::interval_columns(&t, y, false))
                        .flat_map(|(lo, hi)| [lo, hi])
                        .collect();
                    numeric.into_iter().filter(|c| !bands.contains(c)).collect()
                }
            };
            let refs: Vec<&str> = ys.iter().map(String::as_str).collect();
            // Columns named after graph variables (`entropy g0, g1 by layer`) are labelled
            // with those graphs' models.
            let models: Vec<Option<String>> = ys
                .iter()
                .map(|c| ctx.lookup(c).and_then(model_of).map(str::to_string))
                .collect();
            let models: Vec<Option<&str>> = models.iter().map(Option::as_deref).collect();
            let opts = plot::PlotOpts {
                series_names: plot::series_names(&models, &ys),
                ..opts
            };
            if kind == "bars" {
                plot::bars(&t, &x, &refs, &path, &opts)
            } else {
                plot::lines(&t, &x, &refs, &path, &opts)
            }
        }
        other => {
            return Err(err(args.span_of("kind"), format!("unknown plot `{other}`"))
                .with_help("heatmap, bars, hist or lines"))
        }
    };
    result.map_err(|e| failed(args.span, e))?;
    Ok(Value::Null)
}
