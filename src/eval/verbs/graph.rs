//! Graph verbs: `patch` (attribution over samples), `edges`, `nodes`, `circuit`.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::DType;
use polars::prelude::*;

use super::samples::{progress_bar, read_specs};
use crate::attribution::prepare::{prepare, PrepareOptions, TCut};
use crate::attribution::{run, Graph, GraphMeta, LossKind, Method};
use crate::eval::context::EvalContext;
use crate::eval::error::{EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::model::hooked::HookedTransformer;
use crate::model::hooks::{Granularity, HookLayout};
use crate::syntax::Span;

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "patch",
            "edge attribution over samples: one score per edge of the residual graph (METHOD.md)",
        )
        .category("graph")
        .required("model", Type::Model, "a loaded model")
        .named_required(
            "on",
            Type::Table,
            "samples: `prompt` [+ `answer`] text, or `prompt_ids` [+ `answer_ids`]; optional \
             `corrupt`/`corrupt_ids`, `target`/`wrong`, `prompt_id`",
        )
        .word(
            "loss",
            Some("self_entropy"),
            "self_entropy, nll, logit_diff or kl",
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
        .word("dtype", Some("f32"), "compute in f32 or f64")
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
        .named(
            "resume",
            Type::Any,
            "a partial graph (or its saved table) to continue",
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
        ),
        verb_patch,
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
    let text = crate::files::read_text_capped(&path, GRAPH_JSON_LIMIT)
        .map_err(|e| err(span, format!("cannot read `{}`: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| err(span, format!("`{}` is not JSON: {e}", path.display())))?;
    let g = from_eap_ig_json(&v, which).map_err(|e| err(span, e))?;
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
            .map_err(|e| err(args.span_of("to"), e))?
            .to_string(),
        _ => {
            return Err(err(args.span_of("to"), "export writes .dot or .json")
                .with_help("for tables use `save g to \"x.parquet\"`"))
        }
    };
    crate::files::write_text_atomic(&path, &text).map_err(|e| {
        err(
            args.span_of("to"),
            format!("cannot write `{}`: {e}", path.display()),
        )
    })?;
    Ok(Value::Null)
}

fn verb_show(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let g = graph_arg(&args)?;
    let top = args.number("top").unwrap_or(10.0).max(0.0) as usize;
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
    EvalError::at(span, e.to_string()).with_code("rlq::attribution")
}

fn verb_patch(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let span = args.span;
    let m = args
        .model("model")
        .ok_or_else(|| err(args.span_of("model"), "expected a model (from `load`)"))?;
    let on_span = args.span_of("on");
    let table = args
        .table("on")
        .ok_or_else(|| err(on_span, "expected a table of samples"))?
        .collect()
        .map_err(|e| err(on_span, e))?;
    let specs = read_specs(&table).map_err(|msg| err(on_span, msg))?;
    if specs.is_empty() {
        return Err(err(on_span, "no samples: the table is empty"));
    }
    let loss = LossKind::parse(args.word_choice("loss", &LossKind::NAMES)?).expect("checked");
    let method = match args.word_choice("method", &["eap", "eap_ig", "patch"])? {
        "eap" => Method::Eap,
        "eap_ig" => {
            // A whole number in 1..=10000: the signature's range is checked at binding.
            let steps = args.number("steps").unwrap_or(5.0);
            Method::EapIg {
                steps: steps as usize,
            }
        }
        _ => Method::Patch,
    };
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
    let per_position = args
        .value("per_position")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if per_position && method == Method::Patch {
        return Err(err(
            args.span_of("per_position"),
            "per-position scores need method eap or eap_ig: an exact patch of one edge at one \
             position does not add up over positions",
        ));
    }
    let dtype = match args.word_choice("dtype", &["f32", "f64"])? {
        "f64" => DType::F64,
        _ => DType::F32,
    };
    let t_cut = match (args.number("alpha"), args.number("t_cut")) {
        (Some(_), Some(_)) => {
            return Err(err(
                args.span_of("t_cut"),
                "give `alpha` or `t_cut`, not both",
            ))
        }
        // Both in range already (the signature's ranges are checked at binding).
        (Some(a), None) => TCut::Alpha(a),
        (None, Some(t)) => TCut::Fixed(t as usize),
        (None, None) if loss == LossKind::Nll => TCut::Full,
        (None, None) => TCut::Alpha(0.1),
    };
    let resume = match args.value("resume") {
        None | Some(Value::Null) => None,
        Some(Value::Graph(g)) => Some((**g).clone()),
        Some(Value::Table(t)) => {
            let df = t.collect().map_err(|e| err(args.span_of("resume"), e))?;
            Some(graph_from_sample_table(&df).map_err(|e| err(args.span_of("resume"), e))?)
        }
        Some(other) => {
            return Err(err(
                args.span_of("resume"),
                format!(
                    "resume takes a graph or its saved table, got {}",
                    other.type_name()
                ),
            ))
        }
    };

    let mut tf = HookedTransformer::new(&m).map_err(|e| err(span, e))?;
    if tf.dtype() != dtype {
        tf = tf.to_dtype(dtype).map_err(|e| err(span, e))?;
    }
    let c = &m.config;
    let layout = HookLayout::new(granularity, c.n_layers, c.n_heads, c.n_kv_heads);
    let interrupted = || ctx.interrupted();

    let popts = PrepareOptions {
        loss,
        t_cut,
        chat: args.value("chat").and_then(Value::as_bool).unwrap_or(true),
        // Generated answers also stop at the model's context.
        max_answer_tokens: super::model::whole_arg(&args, "max_tokens", 256.0, 1.0, 1e6)? as usize,
    };
    let gen_bar = progress_bar(specs.len(), "answer");
    let prepared = prepare(
        &m,
        &tf,
        &specs,
        &popts,
        &mut |done, _| gen_bar.set_position(done as u64),
        &interrupted,
    )
    .map_err(|e| err(on_span, e))?;
    gen_bar.finish_and_clear();

    let meta = GraphMeta {
        model: m.source.clone(),
        n_layers: c.n_layers,
        loss: loss.name().into(),
        method: method.name().into(),
        granularity: granularity.name().into(),
        t_cut: prepared.t_cut,
        prompt_ids: Vec::new(),
        per_sample: args
            .value("per_sample")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        per_position,
        n_heads: c.n_heads,
        d_model: c.d_model,
    };
    if let Some(prev) = &resume {
        if prev.positions.is_some() != per_position {
            return Err(err(
                args.span_of("resume"),
                format!(
                    "the partial graph was scored with per_position {}, this run with {}",
                    prev.positions.is_some(),
                    per_position
                ),
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
    }
    let bar = progress_bar(prepared.samples.len(), "patch");
    let outcome = run(
        &tf,
        &layout,
        &prepared.samples,
        method,
        meta,
        resume.as_ref(),
        &mut |done, _| bar.set_position(done as u64),
        &interrupted,
    );
    bar.finish_and_clear();
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
            eprintln!(
                "interrupted: {} of {} samples scored; the partial graph is returned — continue \
                 with `patch … resume <it>`",
                graph.scores.len(),
                prepared.samples.len()
            );
            Ok(Value::Graph(graph))
        }
        Some(e) => {
            // Keep what was done: the error says where it is.
            ctx.set_global("_partial", Value::Graph(graph.clone()));
            Err(err(span, e).with_help(format!(
                "{} samples were scored before this; they are in `_partial` (continue with \
                 `resume _partial`)",
                graph.scores.len()
            )))
        }
    }
}

/// Rebuild a graph from a saved per-sample table (`prompt_id, src, dst, …, score`).
fn graph_from_sample_table(df: &DataFrame) -> Result<Graph, String> {
    let need = [
        "prompt_id",
        "src",
        "dst",
        "src_layer",
        "dst_layer",
        "src_kind",
        "dst_kind",
        "score",
    ];
    if df.column("position").is_ok() {
        return Err(
            "this is a per-position table: resume from the graph value itself (or save \
                    it with per_position false)"
                .into(),
        );
    }
    for c in need {
        if df.column(c).is_err() {
            return Err(format!(
                "a saved graph table needs column `{c}` (save it from a graph with per_sample true)"
            ));
        }
    }
    let s = |c: &str| -> Result<Vec<String>, String> {
        Ok(df
            .column(c)
            .and_then(|c| c.cast(&DataType::String))
            .map_err(|e| e.to_string())?
            .str()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let i = |c: &str| -> Result<Vec<i64>, String> {
        Ok(df
            .column(c)
            .and_then(|c| c.cast(&DataType::Int64))
            .map_err(|e| e.to_string())?
            .i64()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let score: Vec<f64> = df
        .column("score")
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(|e| e.to_string())?
        .f64()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let (pid, src, dst) = (i("prompt_id")?, s("src")?, s("dst")?);
    let (sl, dl, sk, dk) = (
        i("src_layer")?,
        i("dst_layer")?,
        s("src_kind")?,
        s("dst_kind")?,
    );
    let kind = |k: &str| -> &'static str {
        match k {
            "embed" => "embed",
            "attn" => "attn",
            "head" => "head",
            "mlp" => "mlp",
            "q" => "q",
            "k" => "k",
            "v" => "v",
            _ => "logits",
        }
    };
    let mut edge_index: HashMap<(String, String), usize> = HashMap::new();
    let mut edges = Vec::new();
    let mut sample_index: HashMap<i64, usize> = HashMap::new();
    let mut ids = Vec::new();
    let mut rows: Vec<(usize, usize, f64)> = Vec::with_capacity(df.height());
    for r in 0..df.height() {
        let key = (src[r].clone(), dst[r].clone());
        let e = *edge_index.entry(key).or_insert_with(|| {
            edges.push(crate::attribution::EdgeInfo {
                src: src[r].clone(),
                dst: dst[r].clone(),
                src_layer: sl[r],
                dst_layer: dl[r],
                src_kind: kind(&sk[r]),
                dst_kind: kind(&dk[r]),
            });
            edges.len() - 1
        });
        let sidx = *sample_index.entry(pid[r]).or_insert_with(|| {
            ids.push(pid[r]);
            ids.len() - 1
        });
        rows.push((sidx, e, score[r]));
    }
    let mut scores = vec![vec![f64::NAN; edges.len()]; ids.len()];
    for (s, e, v) in rows {
        scores[s][e] = v;
    }
    if scores.iter().flatten().any(|v| v.is_nan()) {
        return Err("the saved table is missing some (sample, edge) rows".into());
    }
    let n_layers = dl.iter().copied().max().unwrap_or(0).max(0) as usize;
    Ok(Graph {
        edges,
        scores,
        meta: GraphMeta {
            model: String::new(),
            n_layers,
            loss: String::new(),
            method: String::new(),
            granularity: String::new(),
            t_cut: None,
            prompt_ids: ids,
            per_sample: true,
            per_position: false,
            n_heads: 0,
            d_model: 0,
        },
        positions: None,
    })
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
    let df = g.table().map_err(|e| err(args.span, e))?;
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
    .map_err(|e| err(args.span, e))?;
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
    let do_prune = args
        .value("prune")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if chosen.is_empty() && preds.is_empty() && !do_prune {
        return Err(err(
            args.span,
            "say which edges to keep: `top n`, `threshold t`, `greedy n`, `where …` or `prune true`",
        ));
    }
    // Candidates: every edge, or those matching `where`.
    let mut keep: Vec<usize> = (0..g.edges.len()).collect();
    if !preds.is_empty() {
        let mut df = g.edge_table().map_err(|e| err(args.span, e))?;
        df.with_column(Column::new(
            "__edge".into(),
            (0..g.edges.len() as i64).collect::<Vec<_>>(),
        ))
        .map_err(|e| err(args.span, e))?;
        let schema = df.schema().clone();
        let mut lf = df.lazy();
        for p in &preds {
            lf = lf.filter(ctx.compile_column(p, &schema)?);
        }
        let out = lf.collect().map_err(|e| err(args.span, e))?;
        keep = out
            .column("__edge")
            .and_then(|c| c.i64().cloned())
            .map_err(|e| err(args.span, e))?
            .iter()
            .flatten()
            .map(|i| i as usize)
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
        Some(layout_of_graph(&g).map_err(|e| err(args.span_of("graph"), e))?)
    } else {
        None
    };
    let index = match &layout {
        Some(l) => graph_edge_index(&g, l).map_err(|e| err(args.span_of("graph"), e))?,
        None => Vec::new(),
    };
    let whole = |args: &Args, k: &str| args.number(k).unwrap_or(0.0) as usize; // ranges checked
    keep = if args.has("top") {
        prune::top_n(&keys, whole(&args, "top"))
    } else if let Some(t) = args.number("threshold") {
        prune::threshold(&keys, t)
    } else if args.has("greedy") {
        let lay = layout.as_ref().expect("built for greedy");
        let mut lk = vec![None; lay.edges().len()];
        for (gi, &li) in index.iter().enumerate() {
            lk[li] = keys[gi];
        }
        let back: std::collections::HashMap<usize, usize> =
            index.iter().enumerate().map(|(gi, &li)| (li, gi)).collect();
        prune::greedy(lay, &lk, whole(&args, "greedy"))
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
