//! Model verbs: `load`, `info`, `tokens`, `logits`, `perplexity`, `generate`.

use std::sync::Arc;

use candle_core::{DType, IndexOp};
use polars::prelude::*;

use super::samples::{read_specs, string_column};
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::model::generate::{generate_batch_observed, GenerateOptions, Stop};
use crate::model::hooked::HookedTransformer;
use crate::model::hooks::Granularity;
use crate::model::{device_from_str, dtype_from_str, load, LoadOptions, Model};

pub(super) fn register(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "load",
            "load a model: a .gguf file, a folder (config.json + safetensors), or an hf-hub id",
        )
        .category("model")
        .required("source", Type::Str, "path or `owner/name[@revision]`")
        .word("device", Some("cpu"), "cpu, cuda or cuda:N")
        .word("dtype", Some("f32"), "f32, f64, bf16 or f16")
        .word(
            "weights",
            Some("quantized"),
            "quantized (a GGUF's quantized matrices stay so in memory, dequantized inside each \
             matmul; same f32 values, ~6× less memory; CPU f32 only) or dense",
        )
        .example(
            "let m = load \"models/smollm2-135m-instruct.q4_1.gguf\"",
            "the SmolLM2 GGUF that scripts/fetch-models.sh brings",
        )
        .example(
            "let m = load \"HuggingFaceTB/SmolLM2-135M-Instruct\" dtype bf16",
            "from the HF cache / hub",
        ),
        verb_load,
    );
    reg.register_fn(
        Signature::new(
            "info",
            "a model's shape: family, layers, heads, d_model, vocab, params, edges at block and \
             head granularity",
        )
        .category("model")
        .required("model", Type::Model, "a loaded model")
        .example("info m", "one row"),
        verb_info,
    );
    reg.register_fn(
        Signature::new(
            "tokens",
            "how a model's tokenizer splits a text (no special tokens added)",
        )
        .category("model")
        .required("model", Type::Model, "a loaded model")
        .required("text", Type::Str, "the text")
        .example(
            "tokens m \"Hello world\"",
            "one row per token: position, id, piece",
        ),
        verb_tokens,
    );
    reg.register_fn(
        Signature::new("logits", "the next-token distribution after a text")
            .category("model")
            .required("model", Type::Model, "a loaded model")
            .required("text", Type::Str, "the text, fed as is")
            .named_default("top", Type::Number, 10.0, "how many tokens to show")
            .example(
                "logits m \"The capital of France is\" top 5",
                "the 5 likeliest next tokens",
            ),
        verb_logits,
    );
    reg.register_fn(
        Signature::new(
            "perplexity",
            "exp(mean next-token loss) of a text or a table's `text` column",
        )
        .category("model")
        .required("model", Type::Model, "a loaded model")
        .named_required("on", Type::Any, "a string, or a table with a `text` column")
        .example("perplexity m on \"The cat sat on the mat.\"", "a number"),
        verb_perplexity,
    );
    reg.register_fn(
        Signature::new(
            "generate",
            "answer each row's `prompt` (chat template applied); adds answer, answer_ids, \
             n_tokens, truncated (stopped at max_tokens, no stop token) and interrupted (cut \
             short by Ctrl-C, or never started: answer null)",
        )
        .category("model")
        .required("model", Type::Model, "a loaded model")
        .named_required(
            "on",
            Type::Table,
            "a table with `prompt` (text) or `prompt_ids`",
        )
        .named_default(
            "max_tokens",
            Type::Number,
            256.0,
            "longest answer (1 up to the model's context less the prompt)",
        )
        .named_default("temperature", Type::Number, 0.0, "0 is greedy")
        .named_default("top_p", Type::Number, 1.0, "nucleus sampling mass")
        .named_default("seed", Type::Number, 0.0, "sampling seed")
        .named_default("chat", Type::Bool, true, "apply the model's chat template")
        .named_default(
            "batch",
            Type::Number,
            8.0,
            "prompts decoded together (same answers as one at a time; faster)",
        )
        .range("temperature", Range::non_negative(f64::INFINITY))
        .range("top_p", Range::positive(1.0))
        .range("seed", Range::SEED)
        .range("batch", Range::whole(1.0, 4096.0))
        .example(
            "generate m on (arith 4 seed 1) max_tokens 64 | grade",
            "greedy answers to 4 seeded word problems, graded",
        ),
        verb_generate,
    );
}

fn model_arg(args: &Args, name: &str) -> EvalResult<Arc<Model>> {
    args.model(name).ok_or_else(|| {
        EvalError::at(args.span_of(name), "expected a model (from `load`)")
            .with_code(ErrorCode::Type)
    })
}

/// An error of the model layer (or candle, or polars) at `span`, kept as the source.
fn model_failed(
    span: crate::syntax::Span,
    e: impl std::error::Error + Send + Sync + 'static,
) -> EvalError {
    EvalError::from_layer(span, ErrorCode::Model, e)
}

fn verb_load(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let source = args.str("source").unwrap_or_default().to_string();
    // Relative paths resolve against the script's folder; hub ids stay as they are.
    let resolved = ctx.resolve_path(&source);
    let source = if resolved.exists() {
        resolved.display().to_string()
    } else {
        source
    };
    let device = device_from_str(args.word("device").unwrap_or("cpu"))
        .map_err(|e| model_failed(args.span_of("device"), e))?;
    let dtype = dtype_from_str(args.word("dtype").unwrap_or("f32"))
        .map_err(|e| model_failed(args.span_of("dtype"), e))?;
    let keep_quantized = args.word_choice("weights", &["quantized", "dense"])? == "quantized";
    let opts = LoadOptions {
        device,
        dtype,
        keep_quantized,
    };
    let m = load(&source, &opts).map_err(|e| model_failed(args.span_of("source"), e))?;
    Ok(Value::Model(m))
}

fn verb_info(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let m = model_arg(&args, "model")?;
    let i = m.info();
    let df = df!(
        "source" => [i.source.as_str()],
        "family" => [i.family.name()],
        "layers" => [i.n_layers as i64],
        "heads" => [i.n_heads as i64],
        "kv_heads" => [i.n_kv_heads as i64],
        "d_model" => [i.d_model as i64],
        "vocab" => [i.vocab_size as i64],
        "params" => [i.n_params as i64],
        "dtype" => [i.dtype.as_str()],
        "device" => [i.device.as_str()],
        "weights_mb" => [i.weight_bytes as f64 / 1e6],
        "quantized" => [i.quantized],
        "edges_block" => [edge_count(Granularity::Block, &m)],
        "edges_head" => [edge_count(Granularity::Head, &m)],
    )
    .map_err(|e| model_failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

/// The number of edges `patch … granularity g` scores on this model.
fn edge_count(g: Granularity, m: &Model) -> i64 {
    let c = &m.config;
    let layout = crate::model::hooks::HookLayout::new(g, c.n_layers, c.n_heads, c.n_kv_heads);
    i64::try_from(layout.edges().len()).unwrap_or(i64::MAX)
}

fn verb_tokens(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let m = model_arg(&args, "model")?;
    let text = args.str("text").unwrap_or_default();
    let ids = m
        .tokenizer
        .encode(text, false)
        .map_err(|e| model_failed(args.span_of("text"), e))?;
    let pieces = m.tokenizer.pieces(&ids);
    let df = df!(
        "position" => (0..ids.len() as i64).collect::<Vec<_>>(),
        "id" => ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
        "piece" => pieces,
    )
    .map_err(|e| model_failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

fn transformer(m: &Model, span: crate::syntax::Span) -> EvalResult<HookedTransformer> {
    HookedTransformer::new(m).map_err(|e| model_failed(span, e))
}

/// A sequence of `len` tokens must fit the model's context (`max_position`, from GGUF
/// `context_length` or config.json `max_position_embeddings`): past it the model was never
/// trained and its positions mean nothing.
fn check_context(m: &Model, span: crate::syntax::Span, what: &str, len: usize) -> EvalResult<()> {
    let context = m.config.max_position;
    if len > context {
        return Err(EvalError::at(
            span,
            format!("{what} is {len} tokens, over the model's context of {context} tokens"),
        )
        .with_help("shorten the text; the model cannot read past its context length")
        .with_code(ErrorCode::Model));
    }
    Ok(())
}

/// An error when `logits` holds NaN or ±inf (a broken checkpoint: NaN weights, rope base 0, …):
/// a table of NaN is no answer.
fn check_finite(
    logits: &candle_core::Tensor,
    span: crate::syntax::Span,
    what: &str,
) -> EvalResult<()> {
    // x − x is 0 for every finite x and NaN otherwise: one reduction, no copy to the host.
    #[allow(clippy::eq_op)] // x − x on purpose (see above)
    let check = || -> candle_core::Result<f64> {
        (logits - logits)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    };
    match check() {
        Ok(0.0) => Ok(()),
        Ok(_) => Err(EvalError::at(
            span,
            format!(
                "{what}: the model's logits are not finite (NaN or infinite); its weights or \
                 configuration give no usable distribution"
            ),
        )
        .with_code(ErrorCode::Model)),
        Err(e) => Err(model_failed(span, e)),
    }
}

fn verb_logits(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let m = model_arg(&args, "model")?;
    let text = args.str("text").unwrap_or_default();
    let top = args.count_within("top", 1, m.config.vocab_size)?;
    let ids = m
        .tokenizer
        .encode(text, false)
        .map_err(|e| model_failed(args.span_of("text"), e))?;
    if ids.is_empty() {
        return Err(EvalError::at(
            args.span_of("text"),
            "the text has no tokens",
        ));
    }
    check_context(&m, args.span_of("text"), "the text", ids.len())?;
    let tf = transformer(&m, args.span)?;
    let run = || -> candle_core::Result<Vec<f64>> {
        let l = tf.logits(&ids)?;
        l.i(ids.len() - 1)?.to_dtype(DType::F64)?.to_vec1::<f64>()
    };
    let logits = run().map_err(|e| model_failed(args.span, e))?;
    if let Some(bad) = logits.iter().position(|x| !x.is_finite()) {
        return Err(EvalError::at(
            args.span,
            format!(
                "the model's logits are not finite: {} of {} are NaN or infinite (first: id \
                 {bad} is {}); its weights or configuration give no usable distribution",
                logits.iter().filter(|x| !x.is_finite()).count(),
                logits.len(),
                logits[bad]
            ),
        )
        .with_code(ErrorCode::Model));
    }
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|x| (x - max).exp()).sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(top);
    // Positions in a vocabulary that was checked to fit u32 at load.
    let ids_out: Vec<u32> = order
        .iter()
        .filter_map(|&i| u32::try_from(i).ok())
        .collect();
    let df = df!(
        "rank" => (1..=order.len() as i64).collect::<Vec<_>>(),
        "id" => ids_out.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
        "piece" => m.tokenizer.pieces(&ids_out),
        "logit" => order.iter().map(|&i| logits[i]).collect::<Vec<_>>(),
        "prob" => order.iter().map(|&i| (logits[i] - max).exp() / z).collect::<Vec<_>>(),
    )
    .map_err(|e| model_failed(args.span, e))?;
    Ok(Value::Table(Table::Eager(df)))
}

/// Mean next-token negative log-likelihood of `ids` and the number of predictions.
fn mean_nll(
    tf: &HookedTransformer,
    ids: &[u32],
    span: crate::syntax::Span,
    what: &str,
) -> EvalResult<(f64, usize)> {
    let logits = tf
        .logits(ids)
        .and_then(|l| l.to_dtype(DType::F64))
        .map_err(|e| model_failed(span, e))?;
    check_finite(&logits, span, what)?;
    let run = || -> candle_core::Result<f64> {
        let lp = crate::model::ops::log_softmax_last_dim(&logits)?;
        let mut total = 0.0;
        for t in 0..ids.len() - 1 {
            total -= lp.i((t, ids[t + 1] as usize))?.to_scalar::<f64>()?;
        }
        Ok(total)
    };
    let total = run().map_err(|e| model_failed(span, e))?;
    Ok((total / (ids.len() - 1) as f64, ids.len() - 1))
}

fn verb_perplexity(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let m = model_arg(&args, "model")?;
    let tf = transformer(&m, args.span)?;
    let span = args.span_of("on");
    let encode = |text: &str, what: &str| -> EvalResult<Vec<u32>> {
        let ids = m
            .tokenizer
            .encode(text, false)
            .map_err(|e| model_failed(span, e))?;
        if ids.len() < 2 {
            return Err(EvalError::at(
                span,
                format!(
                    "perplexity needs a text of at least two tokens ({what} has {})",
                    ids.len()
                ),
            ));
        }
        check_context(&m, span, what, ids.len())?;
        Ok(ids)
    };
    match args.value("on") {
        Some(Value::Str(s)) => {
            let ids = encode(s, "the text")?;
            let (nll, _) = mean_nll(&tf, &ids, span, "the text")?;
            Ok(Value::Number(nll.exp()))
        }
        Some(v) => {
            let t = match v {
                Value::Table(t) => t.collect(),
                Value::Graph(g) => g.table(),
                other => {
                    return Err(EvalError::at(
                        span,
                        format!("expected a string or a table, got {}", other.type_name()),
                    )
                    .with_code(ErrorCode::Type))
                }
            }
            .map_err(|e| model_failed(span, e))?;
            let texts = string_column(&t, "text").map_err(|msg| EvalError::at(span, msg))?;
            let mut ppl = Vec::with_capacity(texts.len());
            let mut n_tokens = Vec::with_capacity(texts.len());
            for (row, text) in texts.iter().enumerate() {
                ctx.check_interrupt(args.span)?;
                let what = format!("column `text`, row {row}");
                let ids = encode(text.as_deref().unwrap_or(""), &what)?;
                let (nll, n) = mean_nll(&tf, &ids, span, &what)?;
                ppl.push(nll.exp());
                n_tokens.push(n as i64);
            }
            let mut out = t.clone();
            out.with_column(Column::new("perplexity".into(), ppl))
                .and_then(|o| o.with_column(Column::new("n_tokens".into(), n_tokens)))
                .map_err(|e| model_failed(span, e))?;
            Ok(Value::Table(Table::Eager(out)))
        }
        None => Err(EvalError::at(args.span, "perplexity needs `on`")),
    }
}

/// Generation options from `generate`'s keywords, each refused outside its range (never
/// clamped: `max_tokens 0` does not mean 1, `temperature NaN` is no temperature).
fn generate_options(m: &Model, args: &Args) -> EvalResult<GenerateOptions> {
    // temperature, top_p and seed: ranges declared in the Signature, checked at binding.
    let max_tokens = args.count_within("max_tokens", 1, m.config.max_position)?;
    let temperature = args.real("temperature")?;
    let top_p = args.real("top_p")?;
    let seed = args.whole("seed")?;
    Ok(GenerateOptions {
        max_tokens,
        temperature,
        top_p,
        seed,
        stop_tokens: m.config.eos_token_ids.clone(),
        min_tokens: 0,
    })
}

fn verb_generate(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let m = model_arg(&args, "model")?;
    let span = args.span_of("on");
    let table = args
        .table("on")
        .ok_or_else(|| EvalError::at(span, "expected a table of prompts"))?
        .collect()
        .map_err(|e| model_failed(span, e))?;
    let chat = args.boolean("chat")?;
    let specs = read_specs(&table).map_err(|msg| EvalError::at(span, msg))?;
    let opts = generate_options(&m, &args)?;
    let batch = args.count("batch")?;
    let tf = transformer(&m, args.span)?;
    let vocab = m.config.vocab_size;
    let context = m.config.max_position;
    let mut prompts = Vec::with_capacity(specs.len());
    for (row, s) in specs.iter().enumerate() {
        let (prompt, column) = match (&s.prompt_ids, &s.prompt) {
            (Some(ids), _) => (ids.clone(), "prompt_ids"),
            (None, Some(text)) => {
                let rendered = if chat && m.chat_template.is_some() {
                    m.apply_chat_template(&[("user", text)], true)
                        .map_err(|e| model_failed(span, e))?
                } else {
                    text.clone()
                };
                let ids = m
                    .tokenizer
                    .encode(&rendered, false)
                    .map_err(|e| model_failed(span, e))?;
                (ids, "prompt")
            }
            (None, None) => {
                return Err(EvalError::at(
                    span,
                    "the table needs a `prompt` or `prompt_ids` column",
                ))
            }
        };
        if prompt.is_empty() {
            return Err(EvalError::at(
                span,
                format!("column `{column}`, row {row}: the prompt is empty"),
            ));
        }
        if let Some(id) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(EvalError::at(
                span,
                format!(
                    "column `{column}`, row {row}: token id {id} is outside the model's \
                     vocabulary ({vocab} ids, 0 to {})",
                    vocab.saturating_sub(1)
                ),
            )
            .with_code(ErrorCode::Model));
        }
        if prompt.len() + opts.max_tokens > context {
            return Err(EvalError::at(
                span,
                format!(
                    "column `{column}`, row {row}: the prompt is {} tokens; with max_tokens {} \
                     that is over the model's context of {context} tokens",
                    prompt.len(),
                    opts.max_tokens
                ),
            )
            .with_help(match context.checked_sub(prompt.len()) {
                Some(room) if room >= 1 => format!("lower max_tokens to {room} or less"),
                _ => "shorten the prompt".to_string(),
            })
            .with_code(ErrorCode::Model));
        }
        prompts.push(prompt);
    }
    let task = ctx.task("generate", specs.len(), "samples");
    let n = specs.len();
    let mut answers: Vec<Option<String>> = Vec::with_capacity(n);
    let mut answer_ids: Vec<Option<Series>> = Vec::with_capacity(n);
    let mut n_tokens: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut truncated = Vec::with_capacity(n);
    let mut interrupted_rows = Vec::with_capacity(n);
    for chunk in prompts.chunks(batch) {
        // After Ctrl-C the remaining rows are not started: null answers, marked interrupted.
        let interrupted = || ctx.interrupted();
        let outs = if interrupted() {
            Vec::new()
        } else {
            // A batch's sequences take their tokens together: its longest answer so far.
            let seeds = vec![opts.seed; chunk.len()];
            generate_batch_observed(&tf, chunk, &opts, &seeds, &interrupted, &mut |d, t| {
                task.within(d, t, "tokens")
            })
            .map_err(|e| model_failed(span, e))?
        };
        for i in 0..chunk.len() {
            let Some(out) = outs.get(i) else {
                answers.push(None);
                answer_ids.push(None);
                n_tokens.push(None);
                truncated.push(false);
                interrupted_rows.push(true);
                continue;
            };
            let mut tokens = out.tokens.clone();
            // The stop token ends the answer; it is not part of it.
            if out.stop == Stop::StopToken {
                tokens.pop();
            }
            answers.push(Some(
                m.tokenizer
                    .decode(&tokens, true)
                    .map_err(|e| model_failed(span, e))?,
            ));
            n_tokens.push(Some(tokens.len() as i64));
            answer_ids.push(Some(Series::new(
                "".into(),
                tokens.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
            )));
            truncated.push(matches!(out.stop, Stop::MaxTokens | Stop::Context));
            interrupted_rows.push(out.stop == Stop::Interrupted);
        }
        task.done(answers.len());
    }
    drop(task);
    let mut out = table;
    let ids_col = Series::new("answer_ids".into(), answer_ids);
    out.with_column(Column::new("answer".into(), answers))
        .and_then(|o| o.with_column(ids_col.into_column()))
        .and_then(|o| o.with_column(Column::new("n_tokens".into(), n_tokens)))
        .and_then(|o| o.with_column(Column::new("truncated".into(), truncated)))
        .and_then(|o| o.with_column(Column::new("interrupted".into(), interrupted_rows)))
        .map_err(|e| model_failed(span, e))?;
    Ok(Value::Table(Table::Eager(out)))
}
