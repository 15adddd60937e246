//! Graph verbs: `patch` (attribution over samples), `edges`, `nodes`, `circuit`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use candle_core::DType;
use polars::prelude::*;

use super::samples::{dtype_arg, positions_keyword, samples_arg, t_cut_arg};
use crate::attribution::prepare::{prepare, PrepareError, PrepareOptions, SampleSpec, TCut};
use crate::attribution::settings::{ablation_of, differences, sample_hash, Purpose};
use crate::attribution::{run, Graph, GraphMeta, LossKind, Method};
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::model::hooked::HookedTransformer;
use crate::model::hooks::{Granularity, HookLayout};
use crate::model::Model;
use crate::syntax::Span;

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        positions_keyword(super::samples::model_run_keywords(Signature::new(
            "patch",
            "edge attribution over samples: one score per edge of the residual graph (METHOD.md)",
        )))
        .category("graph")
        .required("model", Type::Model, "a loaded model")
        .named_required(
            "on",
            Type::Table,
            "samples: `prompt` [+ `answer`] text, or `prompt_ids` [+ `answer_ids`]; optional \
             `corrupt`/`corrupt_ids`, `target`/`wrong` (one-token texts) or `target_id`/`wrong_id` \
             (token ids) for logit_diff, `prompt_id`",
        )
        .word(
            "loss",
            Some("self_entropy"),
            "the loss on the answer window (METHOD.md §3)",
        )
        .word("method", Some("eap"), "eap, eap_ig or patch (exact, slow)")
        .named_default(
            "steps",
            Type::Number,
            5.0,
            "integrated-gradient steps for eap_ig",
        )
        .word(
            "granularity",
            Some("block"),
            "block (the paper's) or head (a source per head; q per head, k/v per KV head)",
        )
        .word(
            "kv",
            Some("grouped"),
            "with head: grouped (k/v per KV head) or ungrouped (k/v per query head, as \
             EAP-IG/MIB count edges; the group's k/v scores sum to the grouped one)",
        )
        .named("alpha", Type::Number, "T_cut = max(⌊α·T̄⌋, 1) (default 0.1)")
        .named(
            "t_cut",
            Type::Number,
            "a fixed number of answer tokens in the loss",
        )
        .range("steps", Range::whole(1.0, 10_000.0))
        .range("alpha", Range::positive(1000.0))
        .range("t_cut", Range::whole(1.0, 1e6))
        .named_default(
            "per_sample",
            Type::Bool,
            false,
            "show one row per (sample, edge)",
        )
        .choices("loss", &LossKind::NAMES)
        .choices("method", &["eap", "eap_ig", "patch"])
        .choices("granularity", &["block", "head"])
        .named(
            "resume",
            Type::Any,
            "a partial graph (or a saved one, read back) to continue; refused, listing each \
             difference, unless its model, settings and samples' tokens are this run's",
        )
        .named_default(
            "per_position",
            Type::Bool,
            false,
            "also keep S[u,v,t] for every fed position t (eap, eap_ig): the graph shows one row \
             per (sample, position, edge) with `position` and `token`; summed over positions \
             they are the edge scores. Memory: 8 bytes × positions × edges per sample (SmolLM2 \
             block graph, 128 tokens: 3.8 MB; head granularity: 72 MB)",
        )
        .example(
            "let g = patch m on qs loss self_entropy",
            "the paper's graph: zero-ablation EAP on the model's own answers",
        )
        .example(
            "patch m on pairs method eap_ig steps 8",
            "EAP-IG from each row's `corrupt` prompt",
        )
        .example(
            "patch m on qs granularity head kv ungrouped",
            "EAP-IG's per-head graph (MIB's edge count)",
        )
        .example(
            "entropy (patch m on qs per_position true) by position",
            "a statistic per fed position",
        )
        .example(
            "patch m on qs positions \"last\"",
            "the loss on each answer's last token only (`samples g` shows which)",
        ),
        verb_patch,
    );
    reg.register_fn(
        Signature::new(
            "samples",
            "a graph's samples: one row each with the answer used, the tokens in the loss, the \
             clean loss and the loss-gradient norm at logits",
        )
        .category("graph")
        .piped("graph", Type::Graph, "a graph from `patch` (or piped in)")
        .named_columns("where", false, "a predicate on the sample columns")
        .example(
            "samples g",
            "prompt_id, answer, answer_ids, t_cut, loss_positions, loss_ids, loss, grad_norm \
             (‖∂L/∂H_logits‖ at the clean input)",
        ),
        verb_samples,
    );
    reg.register_fn(
        Signature::new(
            "merge",
            "join shards of one graph (disjoint samples, scored with the same model and settings)",
        )
        .category("graph")
        .rest(
            "graphs",
            Type::Any,
            "two or more graphs (or saved graphs read back)",
        )
        .example(
            "let whole = merge part1, part2",
            "shards scored apart (`read` them back from their files); refused, listing each \
             difference, unless every setting matches and no sample is in both",
        ),
        verb_merge,
    );
    reg.register_fn(
        Signature::new("edges", "a graph's edge table, optionally filtered")
            .category("graph")
            .piped("graph", Type::Graph, "a graph from `patch` (or piped in)")
            .named_columns("where", false, "a predicate on the edge columns")
            .example("edges g where abs_score > 0.01", "the strong edges"),
        verb_edges,
    );
    reg.register_fn(
        Signature::new(
            "nodes",
            "a graph's node table: in/out degree and |score| mass per node",
        )
        .category("graph")
        .piped("graph", Type::Graph, "a graph from `patch` (or piped in)")
        .named_columns("where", false, "a predicate on the node columns")
        .example(
            "nodes g | sort by out_abs desc | top 5",
            "the most influential sources",
        ),
        verb_nodes,
    );
    reg.register_fn(
        Signature::new(
            "circuit",
            "keep a subgraph: the top n edges, those over a threshold, EAP-IG's greedy n, or \
             those matching a predicate; optionally pruned of dangling nodes",
        )
        .category("graph")
        .piped("graph", Type::Graph, "a graph from `patch` (or piped in)")
        .named("top", Type::Number, "keep the n strongest edges")
        .named(
            "threshold",
            Type::Number,
            "keep the edges whose key (|score| or score) is ≥ t",
        )
        .named(
            "greedy",
            Type::Number,
            "grow n edges from `logits` backwards, always taking the strongest edge into a node \
             already reached (METHOD.md §8, EAP-IG's apply_greedy)",
        )
        .range("top", Range::whole(0.0, 1e12))
        .range("greedy", Range::whole(0.0, 1e12))
        .word(
            "ranking",
            Some("abs"),
            "rank by abs (|score|) or signed score",
        )
        .named_default(
            "prune",
            Type::Bool,
            false,
            "then drop edges on no path from `input` to `logits` (and their nodes)",
        )
        .named_columns("where", false, "keep the edges where this holds")
        .example("circuit g top 50", "a 50-edge circuit, still a graph")
        .example(
            "circuit g greedy 100 prune true",
            "EAP-IG's greedy circuit, without dangling nodes",
        ),
        verb_circuit,
    );
    reg.register_fn(
        Signature::new(
            "export",
            "write a circuit as Graphviz DOT (.dot), EAP-IG JSON (.json) or an MIB submission folder",
        )
        .category("graph")
        .piped("graph", Type::Graph, "a graph or circuit (or piped in)")
        .named_required(
            "to",
            Type::Str,
            "the file, .dot or .json (EAP-IG's `Graph.to_json` layout: needs `granularity head \
             kv ungrouped`); with `mib`, the submission folder",
        )
        .named(
            "mib",
            Type::Str,
            "write MIB's circuit-track folder `<to>/<task>_<model>/` (e.g. \"ioi_qwen2.5\")",
        )
        .word(
            "form",
            Some("circuits"),
            "with mib: circuits (nine files, top 0.1…50 % of edges by |score|) or importances \
             (one file of every edge's score)",
        )
        .example(
            "export (circuit g top 50) to \"out/c.dot\"",
            "render with `dot -Tsvg`",
        ),
        verb_export,
    );
    reg.register_fn(
        Signature::new(
            "read_graph",
            "a graph from EAP-IG's JSON (`Graph.to_json`, MIB's circuit files): its edges and scores",
        )
        .category("io")
        .required("path", Type::Str, "the .json file")
        .word(
            "edges",
            Some("in_graph"),
            "in_graph (the circuit: edges marked in_graph) or all (every edge with its score)",
        )
        .example(
            "let c = read_graph \"out/c.json\"",
            "a circuit written by EAP-IG or by `export`",
        )
        .example(
            "export (read_graph \"out/g.json\" edges all) to \"out/sub\" mib \"ioi_qwen2.5\"",
            "MIB's nine circuits (top 0.1 … 50 % of edges) from a scored graph",
        ),
        verb_read_graph,
    );
    reg.register_fn(
        Signature::new(
            "show",
            "a graph's summary: model, method, edges, samples, top edges",
        )
        .category("graph")
        .piped("graph", Type::Graph, "a graph (or piped in)")
        .named_default("top", Type::Number, 10.0, "how many top edges to list")
        .range("top", Range::whole(0.0, f64::INFINITY))
        .example("show g", "a short text summary"),
        verb_show,
    );
}

/// Largest EAP-IG JSON `read_graph` reads (Llama-3.1-8B's 1.6M edges take ~110 MB).
const GRAPH_JSON_LIMIT: u64 = 1 << 30;

fn verb_read_graph(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    use crate::attribution::export_json::{from_eap_ig_json, JsonEdges};
    let span = args.span_of("path");
    let path = ctx.resolve_path(args.str("path").unwrap_or_default());
    let which = match args.word_choice("edges", &["in_graph", "all"])? {
        "all" => JsonEdges::All,
        _ => JsonEdges::InGraph,
    };
    let text = crate::files::read_text_capped(&path, GRAPH_JSON_LIMIT).map_err(|e| {
        err(span, format!("cannot read `{}`: {e}", path.display()))
            .with_code(ErrorCode::Io)
            .with_cause(e)
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| err(span, format!("`{}` is not JSON: {e}", path.display())).with_cause(e))?;
    let g = from_eap_ig_json(&v, which).map_err(|e| failed(span, e))?;
    Ok(Value::Graph(Arc::new(g)))
}

fn verb_export(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g = graph_arg(&args)?;
    let given = args.str("to").unwrap_or_default().to_string();
    let path = ctx.resolve_path(&given);
    if let Some(folder) = args.str("mib") {
        use crate::attribution::export_json::{write_mib, MibForm};
        let form = match args.word_choice("form", &["circuits", "importances"])? {
            "importances" => MibForm::Importances,
            _ => MibForm::Circuits,
        };
        write_mib(&g, &path, folder, form).map_err(|e| err(args.span_of("mib"), e))?;
        return Ok(Value::Null);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = match ext.as_str() {
        "dot" | "gv" => crate::attribution::export::to_dot(&g),
        "json" => crate::attribution::export_json::to_eap_ig_json(&g, None)
            .map_err(|e| failed(args.span_of("to"), e))?
            .to_string(),
        _ => {
            return Err(err(args.span_of("to"), "export writes .dot or .json")
                .with_help("for tables use `save g to \"x.parquet\"`"))
        }
    };
    crate::files::write_text_atomic(&path, &text).map_err(|e| {
        let e = super::io::io_of(e);
        err(
            args.span_of("to"),
            format!("cannot write `{}`: {e}", path.display()),
        )
        .with_code(ErrorCode::Io)
        .with_cause(e)
    })?;
    Ok(Value::Null)
}

fn verb_show(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g = graph_arg(&args)?;
    let top = args.count("top")?;
    let mean = g.mean_scores();
    let mut order: Vec<usize> = (0..mean.len()).collect();
    order.sort_by(|&a, &b| mean[b].abs().total_cmp(&mean[a].abs()));
    let m = &g.meta;
    let mut out = format!(
        "graph of {} — {} edges, {} samples, {} layers\nmethod {}, loss {}, granularity {}, T_cut {}\n",
        if m.model.is_empty() { "(unknown model)" } else { &m.model },
        g.edges.len(),
        g.scores.len(),
        m.n_layers,
        m.method,
        m.loss,
        m.granularity,
        m.t_cut.map_or("-".to_string(), |t| t.to_string()),
    );
    if g.has_sample_records() {
        let r = &m.samples;
        let n = r.len() as f64;
        out.push_str(&format!(
            "loss mean {:.4e}, grad_norm mean {:.4e} (per sample: `samples g`)\n",
            r.iter().map(|x| x.loss).sum::<f64>() / n,
            r.iter().map(|x| x.grad_norm).sum::<f64>() / n,
        ));
        let one = r.iter().filter(|x| x.t_cut == Some(1)).count();
        if one > 0 {
            out.push_str(&format!(
                "warning: T_cut = 1 on {one} of {} samples: only the first answer token is scored\n",
                r.len()
            ));
        }
    }
    let total: f64 = mean.iter().map(|s| s.abs()).sum();
    out.push_str(&format!(
        "mean |score| {:.4e}, Σ|score| {:.4e}\ntop edges:\n",
        total / mean.len().max(1) as f64,
        total
    ));
    for &i in order.iter().take(top) {
        out.push_str(&format!(
            "  {:<18} {:+.4e}\n",
            format!("{}->{}", g.edges[i].src, g.edges[i].dst),
            mean[i]
        ));
    }
    Ok(Value::Str(out))
}

fn err(span: Span, e: impl std::fmt::Display) -> EvalError {
    EvalError::at(span, e.to_string()).with_code(ErrorCode::Attribution)
}

/// A lower layer's error (attribution, model, circuit, polars) at `span`, kept as the source.
fn failed(span: Span, e: impl std::error::Error + Send + Sync + 'static) -> EvalError {
    EvalError::from_layer(span, ErrorCode::Attribution, e)
}

/// Hashes of the models seen, by identity: hashing dequantizes every weight (about a second for
/// SmolLM2), so a session's many `patch` calls on one model pay it once.
fn model_hash(m: &Arc<Model>, span: Span) -> EvalResult<String> {
    static CACHE: Mutex<Vec<(Weak<Model>, String)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().map_err(|e| err(span, e))?;
    cache.retain(|(w, _)| w.strong_count() > 0);
    if let Some((_, h)) = cache
        .iter()
        .find(|(w, _)| w.upgrade().is_some_and(|x| Arc::ptr_eq(&x, m)))
    {
        return Ok(h.clone());
    }
    let h = crate::tuning::weights_hash(m).map_err(|e| failed(span, e))?;
    cache.push((Arc::downgrade(m), h.clone()));
    Ok(h)
}

/// The refusal of two graphs whose settings differ: every difference, one per line.
pub(crate) fn mismatch(span: Span, what: &str, diffs: &[String], help: &str) -> EvalError {
    let mut msg = format!("{what}: {} setting(s) differ", diffs.len());
    for d in diffs {
        msg.push_str("\n  - ");
        msg.push_str(d);
    }
    err(span, msg).with_help(help.to_string())
}

/// A graph argument that may also be a table read back without its settings: those are refused,
/// since nothing about them can be checked.
fn checked_graph(v: &Value, span: Span, what: &str) -> EvalResult<Arc<Graph>> {
    match v {
        Value::Graph(g) => Ok(g.clone()),
        Value::Table(_) => Err(err(
            span,
            format!("{what} is a table without graph settings: they cannot be checked"),
        )
        .with_help(
            "save graphs with `save g to \"g.parquet\"` (or .csv with its .rlq-graph.json \
             sidecar): `read` then gives the graph back with its settings",
        )),
        other => Err(EvalError::type_mismatch("graph", other.type_name(), span)),
    }
}

fn verb_patch(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span;
    let m = args
        .model("model")
        .ok_or_else(|| err(args.span_of("model"), "expected a model (from `load`)"))?;
    let on_span = args.span_of("on");
    let (table, specs) = samples_arg(&args)?;
    let loss = LossKind::parse(args.word_choice("loss", &LossKind::NAMES)?).expect("checked");
    let method = match args.word_choice("method", &["eap", "eap_ig", "patch"])? {
        "eap" => Method::Eap,
        "eap_ig" => Method::EapIg {
            steps: args.count("steps")?,
        },
        _ => Method::Patch,
    };
    if loss == LossKind::Kl && method == Method::Eap {
        // KL(clean ‖ run) has its minimum, and so a zero gradient, at the clean run: EAP's
        // first-order scores are all ~0 whatever the ablation (1e-8 on SmolLM2).
        return Err(err(
            args.span_of("loss"),
            "loss kl with method eap scores every edge ~0: the gradient of the KL is zero at the \
             clean input, where EAP takes it",
        )
        .with_help(
            "use `method eap_ig` (gradients along the path from the zero or corrupted input, \
             e.g. with a `corrupt` column) or `method patch`; or a loss with a gradient at the \
             clean point (self_entropy, nll, logit_diff)",
        ));
    }
    let granularity = match (
        args.word_choice("granularity", &["block", "head"])?,
        args.word_choice("kv", &["grouped", "ungrouped"])?,
    ) {
        ("head", "ungrouped") => Granularity::HeadUngrouped,
        ("head", _) => Granularity::Head,
        (_, "ungrouped") => {
            return Err(err(
                args.span_of("kv"),
                "kv ungrouped splits k/v per query head: it needs `granularity head`",
            ))
        }
        _ => Granularity::Block,
    };
    let per_position = args.boolean("per_position")?;
    if per_position && method == Method::Patch {
        return Err(err(
            args.span_of("per_position"),
            "per-position scores need method eap or eap_ig: an exact patch of one edge at one \
             position does not add up over positions",
        ));
    }
    let dtype = dtype_arg(&args)?;
    let t_cut = t_cut_arg(
        &args,
        if loss == LossKind::Nll {
            TCut::Full
        } else {
            TCut::Alpha(0.1)
        },
    )?;
    let resume = match args.value("resume") {
        None | Some(Value::Null) => None,
        Some(v) => Some(checked_graph(
            v,
            args.span_of("resume"),
            "the partial graph",
        )?),
    };

    let mut tf = HookedTransformer::new(&m).map_err(|e| failed(span, e))?;
    if tf.dtype() != dtype {
        tf = tf.to_dtype(dtype).map_err(|e| failed(span, e))?;
    }
    let c = &m.config;
    let layout = HookLayout::new(granularity, c.n_layers, c.n_heads, c.n_kv_heads);
    let interrupted = || ctx.interrupted();

    let chat = args.boolean("chat")?;
    let popts = PrepareOptions {
        loss,
        t_cut: t_cut.clone(),
        chat,
        // Generated answers also stop at the model's context.
        max_answer_tokens: args.count("max_tokens")?,
    };
    let task = ctx.task("answer", specs.len(), "samples");
    let prepared = prepare(
        &m,
        &tf,
        &specs,
        &popts,
        &mut |done, _| task.done(done),
        &mut |done, total| task.within(done, total, "tokens"),
        &interrupted,
    );
    drop(task);
    let prepared = match prepared {
        Ok(p) => p,
        Err(PrepareError::Interrupted { answers }) => {
            let kept = with_answers(&table, &specs, &answers).map_err(|e| failed(on_span, e))?;
            let generated = answers.len();
            let value = Value::Table(Table::Eager(kept));
            ctx.set_global("_answers", value.clone());
            ctx.warn(format!(
                "interrupted while generating answers: {generated} of {} generated; the samples \
                 table is returned (and kept in `_answers`) with `answer_ids` filled in for them \
                 — continue with `patch m on <it> …` and the same settings: those answers are \
                 not generated again",
                specs.len()
            ));
            return Ok(value);
        }
        Err(e) => return Err(err(on_span, &e).with_cause(e)),
    };

    // (`prepare` refused positions beside a t_cut column, or with logit_diff.)
    let t_cut_rule = if specs.iter().all(|s| s.t_cut.is_some()) {
        "t_cut column".to_string()
    } else if loss == LossKind::LogitDiff {
        "none".to_string()
    } else if let TCut::Positions(p) = &t_cut {
        format!("positions {p}")
    } else {
        match &t_cut {
            TCut::Alpha(a) => format!("alpha {a}"),
            TCut::Fixed(n) => format!("fixed {n}"),
            TCut::Full => "whole answer".to_string(),
            TCut::Positions(_) => unreachable!("handled above"),
        }
    };
    let answer_positions = match &t_cut {
        TCut::Positions(p) => Some(p.clone()),
        _ => None,
    };
    let model_hash = model_hash(&m, span)?;
    let mut meta = GraphMeta {
        model: m.source.clone(),
        model_hash,
        n_layers: c.n_layers,
        loss: loss.name().into(),
        method: method.name().into(),
        steps: match method {
            Method::EapIg { steps } => Some(steps),
            _ => None,
        },
        granularity: granularity.name().into(),
        t_cut: prepared.t_cut,
        t_cut_rule,
        answer_positions,
        dtype: if dtype == DType::F64 { "f64" } else { "f32" }.into(),
        ablation: ablation_of(&prepared.samples).into(),
        chat,
        per_sample: args.boolean("per_sample")?,
        per_position,
        n_heads: c.n_heads,
        d_model: c.d_model,
        ..GraphMeta::default()
    };
    if let Some(prev) = &resume {
        // This run's metadata lists every sample it would score, to check the partial graph's.
        let mut planned = meta.clone();
        planned.prompt_ids = prepared.samples.iter().map(|s| s.id).collect();
        planned.sample_hashes = prepared.samples.iter().map(sample_hash).collect();
        let diffs = differences(&prev.meta, &planned, Purpose::Resume);
        if !diffs.is_empty() {
            return Err(mismatch(
                args.span_of("resume"),
                "cannot resume: the partial graph was scored differently",
                &diffs,
                "resume with the partial graph's settings and samples, or start afresh without \
                 `resume`",
            ));
        }
        if prev.edges.len() != layout.edges().len() {
            return Err(err(
                args.span_of("resume"),
                format!(
                    "the partial graph has {} edges, this run {}: not the same model/granularity",
                    prev.edges.len(),
                    layout.edges().len()
                ),
            ));
        }
        meta.per_sample = prev.meta.per_sample || meta.per_sample;
    }
    let task = ctx.task("patch", prepared.samples.len(), "samples");
    let unit = match method {
        Method::EapIg { .. } => "steps",
        _ => "forwards",
    };
    let outcome = run(
        &tf,
        &layout,
        &prepared.samples,
        &prepared.windows,
        method,
        meta,
        resume.as_deref(),
        &mut |done, _| task.done(done),
        &mut |done, total| task.within(done, total, unit),
        &interrupted,
    );
    drop(task);
    let mut graph = outcome.graph;
    if let Some(p) = graph.positions.as_mut() {
        p.tokens = p
            .token_ids
            .iter()
            .map(|ids| m.tokenizer.pieces(ids))
            .collect();
    }
    let graph = Arc::new(graph);
    match outcome.stopped {
        None => Ok(Value::Graph(graph)),
        Some(crate::attribution::AttributionError::Interrupted) => {
            ctx.warn(format!(
                "interrupted: {} of {} samples scored; the partial graph is returned — continue \
                 with `patch … resume <it>`",
                graph.scores.len(),
                prepared.samples.len()
            ));
            Ok(Value::Graph(graph))
        }
        Some(e) => {
            // Keep what was done: the error says where it is.
            ctx.set_global("_partial", Value::Graph(graph.clone()));
            Err(err(span, &e).with_cause(e).with_help(format!(
                "{} samples were scored before this; they are in `_partial` (continue with \
                 `resume _partial`)",
                graph.scores.len()
            )))
        }
    }
}

/// The samples table with an `answer_ids` column: each row's given ids, else the answer
/// generated for it before an interrupt, else null (generated when the table is patched again).
fn with_answers(
    table: &DataFrame,
    specs: &[SampleSpec],
    generated: &[(i64, Vec<u32>)],
) -> PolarsResult<DataFrame> {
    let by_id: HashMap<i64, &Vec<u32>> = generated.iter().map(|(i, a)| (*i, a)).collect();
    let mut cells: Vec<Option<Series>> = vec![None; table.height()];
    for s in specs {
        let ids = s.answer_ids.as_ref().or_else(|| by_id.get(&s.id).copied());
        if let (Some(ids), Some(cell)) = (ids, cells.get_mut(s.row)) {
            let v: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
            *cell = Some(Series::new("".into(), v));
        }
    }
    let mut column = Series::new("answer_ids".into(), cells);
    if column.dtype() != &DataType::List(Box::new(DataType::Int64)) {
        column = column.cast(&DataType::List(Box::new(DataType::Int64)))?;
    }
    let mut out = table.clone();
    out.with_column(column.into_column())?;
    Ok(out)
}

fn verb_merge(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let shards = args.all("graphs");
    if shards.len() < 2 {
        return Err(err(args.span, "merge needs two or more shards"));
    }
    let mut graphs = Vec::with_capacity(shards.len());
    for (i, a) in shards.iter().enumerate() {
        let v = match &a.value {
            crate::eval::registry::ArgValue::Value(v) => v,
            _ => return Err(err(a.span, "expected a graph")),
        };
        graphs.push(checked_graph(v, a.span, &format!("shard {}", i + 1))?);
    }
    let first = &graphs[0];
    let mut merged = (**first).clone();
    for (g, a) in graphs.iter().zip(shards).skip(1) {
        let diffs = differences(&merged.meta, &g.meta, Purpose::Merge);
        if !diffs.is_empty() {
            return Err(mismatch(
                a.span,
                "cannot merge: this shard was scored differently",
                &diffs,
                "merge shards scored with the same model and settings (give T_cut explicitly, \
                 `t_cut n` or a t_cut column: `alpha` takes T̄ from each shard's own answers)",
            ));
        }
        if g.edges != merged.edges {
            return Err(err(
                a.span,
                "cannot merge: this shard's edges are not the first shard's",
            ));
        }
        // Sample records are all or none: a shard without them leaves the whole without them.
        let records = merged.has_sample_records() && g.has_sample_records();
        merged.scores.extend(g.scores.iter().cloned());
        // `differences` refused shards that differ in `per_position`: both have them or neither.
        if let (Some(p), Some(q)) = (merged.positions.as_mut(), g.positions.as_ref()) {
            p.token_ids.extend(q.token_ids.iter().cloned());
            p.tokens.extend(q.tokens.iter().cloned());
            p.scores.extend(q.scores.iter().cloned());
        }
        merged.meta.prompt_ids.extend(&g.meta.prompt_ids);
        merged
            .meta
            .sample_hashes
            .extend(g.meta.sample_hashes.iter().cloned());
        if records {
            merged.meta.samples.extend(g.meta.samples.iter().cloned());
        } else {
            merged.meta.samples.clear();
        }
    }
    Ok(Value::Graph(Arc::new(merged)))
}

fn graph_arg(args: &Args) -> EvalResult<Arc<Graph>> {
    args.graph("graph")
        .ok_or_else(|| err(args.span_of("graph"), "expected a graph (from `patch`)"))
}

fn filtered(ctx: &EvalContext, args: &Args, df: DataFrame) -> EvalResult<Value> {
    let preds = args.columns("where");
    if preds.is_empty() {
        return Ok(Value::Table(Table::Eager(df)));
    }
    let schema = df.schema().clone();
    let mut lf = df.lazy();
    for p in preds {
        lf = lf.filter(ctx.compile_column(p, &schema)?);
    }
    Ok(Value::Table(Table::Lazy(lf)))
}

fn verb_edges(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g = graph_arg(&args)?;
    let df = g.table().map_err(|e| failed(args.span, e))?;
    filtered(ctx, &args, df)
}

fn verb_samples(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g = graph_arg(&args)?;
    if g.scores.is_empty() {
        return Err(err(
            args.span_of("graph"),
            "the graph has no samples (0 scored)",
        ));
    }
    let df = g
        .sample_records_table()
        .ok_or_else(|| {
            err(
                args.span_of("graph"),
                "this graph keeps no sample records: it was saved before rlq kept them, read \
                 from EAP-IG's JSON, or merged/resumed with such a graph",
            )
            .with_help("score it again with `patch` to see its answers and losses")
        })?
        .map_err(|e| failed(args.span, e))?;
    filtered(ctx, &args, df)
}

fn verb_nodes(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g = graph_arg(&args)?;
    let mean = g.mean_scores();
    // name -> (layer, kind, in_degree, out_degree, in_abs, out_abs)
    let mut nodes: Vec<(String, i64, &'static str, i64, i64, f64, f64)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut touch = |name: &str, layer: i64, kind: &'static str| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            nodes.push((name.to_string(), layer, kind, 0, 0, 0.0, 0.0));
            nodes.len() - 1
        })
    };
    let mut updates = Vec::with_capacity(g.edges.len());
    for (e, s) in g.edges.iter().zip(&mean) {
        let u = touch(&e.src, e.src_layer, e.src_kind);
        let v = touch(&e.dst, e.dst_layer, e.dst_kind);
        updates.push((u, v, s.abs()));
    }
    for (u, v, a) in updates {
        nodes[u].4 += 1;
        nodes[u].6 += a;
        nodes[v].3 += 1;
        nodes[v].5 += a;
    }
    let df = df!(
        "node" => nodes.iter().map(|n| n.0.clone()).collect::<Vec<_>>(),
        "layer" => nodes.iter().map(|n| n.1).collect::<Vec<_>>(),
        "kind" => nodes.iter().map(|n| n.2).collect::<Vec<_>>(),
        "in_degree" => nodes.iter().map(|n| n.3).collect::<Vec<_>>(),
        "out_degree" => nodes.iter().map(|n| n.4).collect::<Vec<_>>(),
        "in_abs" => nodes.iter().map(|n| n.5).collect::<Vec<_>>(),
        "out_abs" => nodes.iter().map(|n| n.6).collect::<Vec<_>>(),
    )
    .map_err(|e| failed(args.span, e))?;
    filtered(ctx, &args, df)
}

fn verb_circuit(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    use crate::circuit::{graph_edge_index, layout_of_graph, prune, Ranking};
    let g = graph_arg(&args)?;
    let mean = g.mean_scores();
    let ranking = match args.word_choice("ranking", &["abs", "signed"])? {
        "signed" => Ranking::Signed,
        _ => Ranking::Abs,
    };
    let preds = args.columns("where");
    let chosen = ["top", "threshold", "greedy"]
        .into_iter()
        .filter(|k| args.has(k))
        .collect::<Vec<_>>();
    if chosen.len() > 1 {
        return Err(err(
            args.span_of(chosen[1]),
            format!(
                "give one of top, threshold, greedy (got {})",
                chosen.join(" and ")
            ),
        ));
    }
    let do_prune = args.boolean("prune")?;
    if chosen.is_empty() && preds.is_empty() && !do_prune {
        return Err(err(
            args.span,
            "say which edges to keep: `top n`, `threshold t`, `greedy n`, `where …` or `prune true`",
        ));
    }
    // Candidates: every edge, or those matching `where`.
    let mut keep: Vec<usize> = (0..g.edges.len()).collect();
    if !preds.is_empty() {
        let mut df = g.edge_table().map_err(|e| failed(args.span, e))?;
        df.with_column(Column::new(
            "__edge".into(),
            (0..g.edges.len() as i64).collect::<Vec<_>>(),
        ))
        .map_err(|e| failed(args.span, e))?;
        let schema = df.schema().clone();
        let mut lf = df.lazy();
        for p in &preds {
            lf = lf.filter(ctx.compile_column(p, &schema)?);
        }
        let out = lf.collect().map_err(|e| failed(args.span, e))?;
        keep = out
            .column("__edge")
            .and_then(|c| c.i64().cloned())
            .map_err(|e| failed(args.span, e))?
            .iter()
            .flatten()
            .filter_map(|i| usize::try_from(i).ok()) // 0..edges, written just above
            .collect();
    }
    let keys: Vec<Option<f64>> = {
        let mut k = vec![None; g.edges.len()];
        for &i in &keep {
            k[i] = Some(ranking.key(mean[i]));
        }
        k
    };
    // Greedy and pruning need the graph's node structure: its layout, from the names.
    let needs_layout = do_prune || args.has("greedy");
    let layout = if needs_layout {
        Some(layout_of_graph(&g).map_err(|e| failed(args.span_of("graph"), e))?)
    } else {
        None
    };
    let index = match &layout {
        Some(l) => graph_edge_index(&g, l).map_err(|e| failed(args.span_of("graph"), e))?,
        None => Vec::new(),
    };
    keep = if args.has("top") {
        prune::top_n(&keys, args.count("top")?)
    } else if args.has("threshold") {
        prune::threshold(&keys, args.real("threshold")?)
    } else if args.has("greedy") {
        let lay = layout.as_ref().expect("built for greedy");
        let mut lk = vec![None; lay.edges().len()];
        for (gi, &li) in index.iter().enumerate() {
            lk[li] = keys[gi];
        }
        let back: std::collections::HashMap<usize, usize> =
            index.iter().enumerate().map(|(gi, &li)| (li, gi)).collect();
        prune::greedy(lay, &lk, args.count("greedy")?)
            .into_iter()
            .map(|li| back[&li])
            .collect()
    } else {
        keep
    };
    if do_prune {
        let lay = layout.as_ref().expect("built for prune");
        let mut mask = vec![false; lay.edges().len()];
        for &gi in &keep {
            mask[index[gi]] = true;
        }
        prune::prune(lay, &mut mask);
        keep.retain(|&gi| mask[index[gi]]);
    }
    keep.sort_unstable();
    Ok(Value::Graph(Arc::new(g.subset(&keep))))
}
