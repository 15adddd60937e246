//! `tune`: GRPO, DPO or SFT from a loaded model, with checkpoints (METHOD.md §7). A thin layer
//! over [`crate::tuning::Tuner`]: it reads the questions table, encodes prompts and answers,
//! grades with [`crate::study::is_correct`], and returns the log as a table.

use std::path::PathBuf;

use polars::prelude::*;

use super::samples::string_column;
use crate::eval::context::EvalContext;
use crate::eval::error::{ErrorCode, EvalError, EvalResult};
use crate::eval::registry::{Args, Range, Registry, Signature, Type};
use crate::eval::value::{Table, Value};
use crate::syntax::Span;
use crate::tuning::log::{LogRow, COLUMNS};
use crate::tuning::{AdvantageNorm, Method, Scored, TuneHost, TuneItem, TuneSettings, Tuner};

pub(super) fn register(reg: &mut Registry) {
    let d = TuneSettings::defaults(Method::Grpo);
    let methods = Method::ALL
        .iter()
        .map(|(_, n, desc)| format!("{n} ({desc})"))
        .collect::<Vec<_>>()
        .join("; ");
    reg.register_fn(
        Signature::new(
            "tune",
            "fine-tune a model by GRPO, DPO or SFT (METHOD.md §7); returns the training log, \
             one row per step, and writes checkpoints `dir/step-NNNNNN/` that `load` and HF \
             transformers read",
        )
        .category("tuning")
        .required("model", Type::Model, "the start model (also the frozen reference)")
        .named_required(
            "on",
            Type::Table,
            "questions: `prompt` (or `prompt_ids`) and `expected`; DPO may give `chosen` and \
             `rejected` texts, SFT an `answer` text — else they are built from the start \
             model's own graded samples",
        )
        .word("method", Some("grpo"), &methods)
        .named_required("to", Type::Str, "the folder for checkpoints (new, or empty)")
        .named_default("steps", Type::Number, d.steps as f64, "optimiser steps")
        .range("steps", Range::whole(1.0, 1e6))
        .named_default(
            "batch",
            Type::Number,
            d.batch as f64,
            "questions (grpo), pairs (dpo) or answers (sft) per step",
        )
        .range("batch", Range::whole(1.0, 4096.0))
        .named_default(
            "group",
            Type::Number,
            d.group as f64,
            "answers sampled per question (grpo's G; also for building dpo/sft data)",
        )
        .range("group", Range::whole(1.0, 1024.0))
        .named_default("lr", Type::Number, d.lr, "peak learning rate (AdamW)")
        .named("beta", Type::Number, "KL coefficient (grpo, default 0.04) or DPO's β (default 0.1)")
        .named_default("clip", Type::Number, d.clip, "grpo's ratio clip ε")
        .named_default("inner", Type::Number, d.inner as f64, "grpo: updates per sampled batch")
        .range("inner", Range::whole(1.0, 64.0))
        .word(
            "advantage",
            Some("std"),
            "grpo advantages: std ((R−mean)/(std+1e-4)) or none (R−mean, Dr. GRPO)",
        )
        .named_default("temperature", Type::Number, d.temperature, "sampling temperature")
        .named_default("top_p", Type::Number, d.top_p, "nucleus sampling mass")
        .named_default("max_tokens", Type::Number, d.max_tokens as f64, "longest sampled answer")
        .range("max_tokens", Range::whole(1.0, 65_536.0))
        .named_default("min_tokens", Type::Number, d.min_tokens as f64, "no stop token before this many answer tokens (fixed-length answers)")
        .range("min_tokens", Range::whole(0.0, 65_536.0))
        .named_default("warmup", Type::Number, d.warmup, "fraction of steps of linear warmup (then cosine to 0)")
        .named_default("grad_clip", Type::Number, d.grad_clip, "global gradient-norm clip (0: none)")
        .named_default(
            "format_reward",
            Type::Number,
            d.format_reward,
            "added to the reward of an answer that stops by itself and holds a number",
        )
        .named_default("weight_decay", Type::Number, d.adamw.weight_decay, "AdamW weight decay (not on norms and biases)")
        .named_default("save_every", Type::Number, 10.0, "steps between checkpoints (and one at the end)")
        .range("save_every", Range::whole(0.0, 1e6))
        .named_default("seed", Type::Number, d.seed as f64, "seed of sampling and question order")
        .range("seed", Range::whole(0.0, f64::from(u32::MAX)))
        .word("dtype", Some("f32"), "f32, or f64 for exact checks")
        .named(
            "lora",
            Type::Number,
            "train rank-r LoRA adapters on q/k/v/o and the MLP projections instead of every \
             weight (checkpoints hold the merged model)",
        )
        .range("lora", Range::whole(1.0, 4096.0))
        .named(
            "lora_alpha",
            Type::Number,
            "LoRA's α: the update is scaled by α/r (default 8, PEFT's)",
        )
        .named_default("chat", Type::Bool, true, "apply the model's chat template to prompts")
        .named(
            "resume",
            Type::Str,
            "a checkpoint `dir/step-…` of this same run to continue (settings, start model and \
             questions must match; new checkpoints go beside it)",
        )
        .example(
            "tune m on (arith 16 seed 1) method grpo steps 2 batch 1 group 4 max_tokens 24 to \"out/tune-demo\"",
            "a 2-step GRPO log; checkpoints out/tune-demo/step-000002",
        ),
        verb_tune,
    );
}

fn err(span: Span, e: impl std::fmt::Display) -> EvalError {
    EvalError::at(span, e.to_string()).with_code(ErrorCode::Tune)
}

/// An error of the tuning layer (or of the model's tokenizer, or polars) at `span`, kept as
/// the source.
fn failed(span: Span, e: impl std::error::Error + Send + Sync + 'static) -> EvalError {
    EvalError::from_layer(span, ErrorCode::Tune, e)
}

fn settings_from(args: &Args) -> EvalResult<TuneSettings> {
    let method_name = args.word_choice("method", &Method::names())?;
    let method = Method::from_name(method_name).unwrap_or(Method::Grpo);
    let mut s = TuneSettings::defaults(method);
    // The whole numbers' ranges are the signature's (checked at binding); the real numbers'
    // are the library's `TuneSettings::validate`, below.
    s.steps = args.count("steps")?;
    s.batch = args.count("batch")?;
    s.group = args.count("group")?;
    s.inner = args.count("inner")?;
    s.max_tokens = args.count("max_tokens")?;
    s.min_tokens = args.count("min_tokens")?;
    s.seed = args.whole("seed")?;
    s.lr = args.real("lr")?;
    // beta's default depends on the method: `TuneSettings::defaults` set it.
    if let Some(beta) = args.real_if_given("beta")? {
        s.beta = beta;
    }
    s.clip = args.real("clip")?;
    s.temperature = args.real("temperature")?;
    s.top_p = args.real("top_p")?;
    s.warmup = args.real("warmup")?;
    s.grad_clip = args.real("grad_clip")?;
    s.format_reward = args.real("format_reward")?;
    s.adamw.weight_decay = args.real("weight_decay")?;
    let adv = args.word_choice("advantage", &AdvantageNorm::NAMES)?;
    s.advantage = AdvantageNorm::from_name(adv).unwrap_or(AdvantageNorm::Std);
    s.dtype = args.word_choice("dtype", &["f32", "f64"])?.to_string();
    if args.has("lora") {
        s.lora = Some(crate::tuning::LoraConfig {
            rank: args.count("lora")?,
            alpha: args
                .real_if_given("lora_alpha")?
                .unwrap_or(crate::tuning::lora::DEFAULT_ALPHA),
        });
    } else if args.has("lora_alpha") {
        return Err(err(args.span_of("lora_alpha"), "lora_alpha needs `lora r`"));
    }
    // The validation is the library's; the span is the verb's.
    s.validate().map_err(|m| {
        let field = m.split_whitespace().next().unwrap_or("");
        let span = if args.has(field) {
            args.span_of(field)
        } else {
            args.span
        };
        err(span, m)
    })?;
    if !(s.adamw.weight_decay.is_finite() && s.adamw.weight_decay >= 0.0) {
        return Err(err(
            args.span_of("weight_decay"),
            "weight_decay must be a finite number ≥ 0",
        ));
    }
    Ok(s)
}

fn verb_tune(ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let m = args.model("model").ok_or_else(|| {
        EvalError::at(args.span_of("model"), "expected a model (from `load`)")
            .with_code(ErrorCode::Type)
    })?;
    let settings = settings_from(&args)?;
    let save_every = args.count("save_every")?;
    let span = args.span_of("on");
    let table = args
        .table("on")
        .ok_or_else(|| err(span, "expected a table of questions"))?
        .collect()
        .map_err(|e| failed(span, e))?;
    if table.height() == 0 {
        return Err(err(span, "the questions table has no rows"));
    }
    let chat = args.boolean("chat")?;
    let has = |c: &str| table.column(c).is_ok();
    let texts = |c: &str| -> EvalResult<Vec<Option<String>>> {
        if has(c) {
            string_column(&table, c).map_err(|e| err(span, e))
        } else {
            Ok(vec![None; table.height()])
        }
    };
    let prompts = texts("prompt")?;
    let prompt_ids = if has("prompt_ids") {
        super::samples::read_specs(&table)
            .map_err(|e| err(span, e))?
            .into_iter()
            .map(|s| s.prompt_ids)
            .collect()
    } else {
        vec![None; table.height()]
    };
    if !has("prompt") && !has("prompt_ids") {
        return Err(err(
            span,
            "the questions need a `prompt` (or `prompt_ids`) column",
        ));
    }
    let (chosen, rejected, answers) = (texts("chosen")?, texts("rejected")?, texts("answer")?);
    let expected: Vec<Option<f64>> = texts("expected")?
        .into_iter()
        .map(|e| e.as_deref().and_then(crate::study::last_number))
        .collect();
    let needs_grading = match settings.method {
        Method::Grpo => true,
        Method::Dpo => chosen
            .iter()
            .zip(&rejected)
            .any(|(c, r)| c.is_none() || r.is_none()),
        Method::Sft => answers.iter().any(Option::is_none),
    };
    if needs_grading {
        if let Some(row) = expected.iter().position(Option::is_none) {
            return Err(err(
                span,
                format!(
                    "row {row}: no `expected` number to grade the sampled answers against \
                     ({} needs it{})",
                    settings.method.name(),
                    match settings.method {
                        Method::Dpo => " unless every row gives `chosen` and `rejected`",
                        Method::Sft => " unless every row gives an `answer`",
                        Method::Grpo => "",
                    }
                ),
            ));
        }
    }
    let eos = m.config.eos_token_ids.first().copied();
    let encode_answer = |text: &str| -> EvalResult<Vec<u32>> {
        let mut ids = m
            .tokenizer
            .encode(text, false)
            .map_err(|e| failed(span, e))?;
        ids.extend(eos);
        Ok(ids)
    };
    let mut items = Vec::with_capacity(table.height());
    for row in 0..table.height() {
        let prompt = match (&prompt_ids[row], &prompts[row]) {
            (Some(ids), _) => ids.clone(),
            (None, Some(text)) => m.encode_prompt(text, chat).map_err(|e| failed(span, e))?,
            (None, None) => return Err(err(span, format!("row {row}: the prompt is missing"))),
        };
        let mut item = TuneItem::prompt(prompt);
        if settings.method == Method::Dpo {
            if let (Some(c), Some(r)) = (&chosen[row], &rejected[row]) {
                item.chosen = Some(encode_answer(c)?);
                item.rejected = Some(encode_answer(r)?);
            }
        }
        if settings.method == Method::Sft {
            if let Some(a) = &answers[row] {
                item.target = Some(encode_answer(a)?);
            }
        }
        items.push(item);
    }
    let tokenizer = m.tokenizer.clone();
    let format_reward = settings.format_reward;
    let reward = move |q: usize, ids: &[u32], finished: bool| -> Scored {
        let text = tokenizer.decode(ids, true).unwrap_or_default();
        let correct = expected[q].is_some_and(|e| crate::study::is_correct(&text, e, 1e-6));
        let formatted = finished && crate::study::last_number(&text).is_some();
        Scored {
            reward: f64::from(u8::from(correct)) + if formatted { format_reward } else { 0.0 },
            correct,
        }
    };
    let out_dir = ctx.resolve_path(args.str("to").unwrap_or_default());
    let tuner = match args.str("resume") {
        Some(r) => {
            let dir = ctx.resolve_path(r);
            Tuner::resume(
                m.clone(),
                settings.clone(),
                items,
                &reward,
                &dir,
                save_every,
            )
            .map_err(|e| failed(args.span_of("resume"), e))?
        }
        None => Tuner::new(
            m.clone(),
            settings.clone(),
            items,
            &reward,
            Some(&out_dir),
            save_every,
        )
        .map_err(|e| failed(args.span_of("to"), e))?,
    };
    let task = ctx.task(
        format!("tune {}", settings.method.name()),
        settings.steps,
        "steps",
    );
    let interrupted = || ctx.interrupted();
    let mut on_step = |row: &LogRow, _total: usize| {
        task.done(row.step);
        let mut msg = String::new();
        if let Some(r) = row.reward_mean {
            msg.push_str(&format!("reward {r:.3}  "));
        }
        if let Some(k) = row.kl {
            msg.push_str(&format!("kl {k:.4}  "));
        }
        msg.push_str(&format!("loss {:.4}", row.loss));
        task.status(msg);
    };
    let mut on_prepare = |done: usize, total: usize| {
        task.status(format!("start model answering {done}/{total}"));
    };
    let outcome = tuner
        .run(TuneHost {
            interrupted: &interrupted,
            on_step: &mut on_step,
            on_prepare: &mut on_prepare,
        })
        .map_err(|e| failed(args.span, e))?;
    drop(task);
    log_table(&outcome.log).map_err(|e| failed(args.span, e))
}

/// The log as a table, columns in [`COLUMNS`] order.
pub(crate) fn log_table(log: &[LogRow]) -> PolarsResult<Value> {
    let f = |g: fn(&LogRow) -> Option<f64>| log.iter().map(g).collect::<Vec<Option<f64>>>();
    // In COLUMNS order; the names come from there.
    let values: Vec<Series> = vec![
        Series::new(
            "".into(),
            log.iter().map(|r| r.step as i64).collect::<Vec<_>>(),
        ),
        Series::new("".into(), f(|r| r.reward_mean)),
        Series::new("".into(), f(|r| r.reward_std)),
        Series::new("".into(), f(|r| r.accuracy)),
        Series::new("".into(), f(|r| r.kl)),
        Series::new("".into(), f(|r| Some(r.loss))),
        Series::new("".into(), f(|r| Some(r.grad_norm))),
        Series::new("".into(), f(|r| Some(r.lr))),
        Series::new(
            "".into(),
            log.iter()
                .map(|r| r.zero_adv_groups.map(|z| z as i64))
                .collect::<Vec<_>>(),
        ),
        Series::new("".into(), f(|r| r.clip_frac)),
        Series::new("".into(), f(|r| Some(r.answer_len))),
        Series::new("".into(), f(|r| r.tokens_per_s)),
        Series::new("".into(), f(|r| r.seconds)),
        Series::new("".into(), f(|r| r.sample_s)),
    ];
    let cols: Vec<Column> = values
        .into_iter()
        .zip(COLUMNS)
        .map(|(s, name)| s.with_name(name.into()).into_column())
        .collect();
    let df = DataFrame::new(log.len(), cols)?;
    Ok(Value::Table(Table::Eager(df)))
}

pub(super) fn register_paths(reg: &mut Registry) {
    reg.register_fn(
        Signature::new(
            "checkpoint",
            "the path of a tuning run's checkpoint at a step: `dir/step-NNNNNN`",
        )
        .category("tuning")
        .required("dir", Type::Str, "the run's folder (`tune … to`)")
        .required("step", Type::Number, "the step")
        .range("step", Range::whole(0.0, 1e6))
        .example(
            "checkpoint \"out/grpo\" 10",
            "\"out/grpo/step-000010\"; `load` it for the model at step 10",
        ),
        verb_checkpoint,
    );
}

fn verb_checkpoint(_ctx: &mut EvalContext, args: Args) -> EvalResult<Value> {
    let step = args.count("step")?;
    let dir = PathBuf::from(args.str("dir").unwrap_or_default());
    Ok(Value::Str(
        dir.join(crate::tuning::checkpoint::step_dir_name(step))
            .display()
            .to_string(),
    ))
}
