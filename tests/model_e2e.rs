//! End to end on real checkpoints: loader (names, rope un-permutation, Gemma norm convention),
//! tokenizer, chat template and the hooked forward together must answer sensibly.
//! Each model is skipped with a notice when its file is absent (scripts/fetch-models.sh [all]).

use std::path::PathBuf;

use rlq::model::generate::{generate, GenerateOptions};
use rlq::model::hooked::HookedTransformer;
use rlq::model::{load, LoadOptions};

fn answer(file: &str, question: &str, max_tokens: usize) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} is absent (scripts/fetch-models.sh all)",
            path.display()
        );
        return None;
    }
    let m = load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let tf = HookedTransformer::new(&m).unwrap();
    let prompt = match &m.chat_template {
        Some(_) => m.apply_chat_template(&[("user", question)], true).unwrap(),
        None => question.to_string(),
    };
    let ids = m.tokenizer.encode(&prompt, true).unwrap();
    let opts = GenerateOptions {
        max_tokens,
        stop_tokens: m.tokenizer.eos_ids.clone(),
        ..Default::default()
    };
    let out = generate(&tf, &ids, &opts, &|| false).unwrap();
    Some(m.tokenizer.decode(&out, true).unwrap())
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let Some(a) = answer(
        "smollm2-135m-instruct.q4_1.gguf",
        "What is the capital of France?",
        12,
    ) else {
        return;
    };
    assert!(a.contains("Paris"), "{a:?}");
}

#[test]
fn qwen2_knows_the_capital_of_france() {
    let Some(a) = answer(
        "qwen2.5-coder-0.5b-instruct.gguf",
        "What is the capital of France?",
        12,
    ) else {
        return;
    };
    assert!(a.contains("Paris"), "{a:?}");
}

#[test]
fn gemma3_base_continues_coherently() {
    let Some(a) = answer("gemma-3-270m.q4_k_m.gguf", "The capital of France is", 12) else {
        return;
    };
    assert!(a.contains("France") || a.contains("Paris"), "{a:?}");
}

/// Perplexity of plain English for each real model: a trained model scores tens at most, random
/// weights about the vocabulary size (49k–262k). The bound 60 is far from both.
#[test]
fn real_models_have_trained_perplexity() {
    let text = "The history of science is the study of the development of science and scientific \
        knowledge, including both the natural and social sciences. Science is a body of \
        empirical, theoretical, and practical knowledge about the natural world.";
    for file in [
        "smollm2-135m-instruct.q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct.gguf",
        "gemma-3-270m.q4_k_m.gguf",
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(file);
        if !path.is_file() {
            eprintln!(
                "SKIPPED: {} is absent (scripts/fetch-models.sh all)",
                path.display()
            );
            continue;
        }
        let mut s = rlq::Session::new();
        s.eval(&format!("let m = load \"{}\"", path.display()))
            .unwrap();
        let ppl = s
            .eval(&format!("perplexity m on \"{text}\""))
            .unwrap()
            .as_number()
            .unwrap();
        println!("{file}: perplexity {ppl:.2}");
        assert!(ppl > 1.0 && ppl < 60.0, "{file}: {ppl}");
    }
}

// ---- hostile values to the model verbs (synthetic models; SmolLM2 where a real one is needed)

mod hostile {
    use candle_core::DType;
    use polars::prelude::*;
    use rlq::model::synthetic::random_model;
    use rlq::model::{Family, Model, TextTokenizer};
    use rlq::Session;

    /// A word-level tokenizer over the synthetic vocabulary: `t0` … `t31` are ids 0 … 31.
    fn tokenizer(vocab: usize) -> TextTokenizer {
        let words: Vec<String> = (0..vocab).map(|i| format!("\"t{i}\": {i}")).collect();
        let json = format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                "normalizer": null, "pre_tokenizer": {{"type": "WhitespaceSplit"}},
                "post_processor": null, "decoder": null,
                "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "t0"}}}}"#,
            words.join(", ")
        );
        TextTokenizer::from_json_bytes(json.as_bytes()).unwrap()
    }

    /// The synthetic Llama (vocab 32, context 128) with a tokenizer, as `m` in a session.
    fn model() -> Model {
        let mut m = random_model(Family::Llama, 5, DType::F32).unwrap();
        m.tokenizer = tokenizer(m.config.vocab_size);
        m
    }

    fn session_with(m: Model) -> Session {
        let mut s = Session::new();
        s.set("m", m);
        s.set("nan", f64::NAN);
        s.set("inf", f64::INFINITY);
        s
    }

    fn err(s: &mut Session, src: &str) -> String {
        match s.eval(src) {
            Ok(v) => panic!("`{src}` should fail, gave {v}"),
            // The message itself: the rendered report wraps long lines.
            Err(e) => e.to_string(),
        }
    }

    fn table(s: &mut Session, src: &str) -> DataFrame {
        match s.eval(src) {
            Ok(v) => v.as_table().unwrap(),
            Err(e) => panic!("`{src}`: {e:?}"),
        }
    }

    fn text(n: usize) -> String {
        (0..n)
            .map(|i| format!("t{}", 3 + i % 20))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn prompts(rows: &[Vec<i64>]) -> DataFrame {
        let ids: Vec<Series> = rows
            .iter()
            .map(|r| Series::new("".into(), r.clone()))
            .collect();
        DataFrame::new_infer_height(vec![Series::new("prompt_ids".into(), ids).into_column()])
            .unwrap()
    }

    /// `max_tokens 0` generated one token; NaN temperature and top_p were accepted. Each is
    /// refused with the keyword's range.
    #[test]
    fn generate_refuses_out_of_range_options() {
        let mut s = session_with(model());
        s.set("qs", prompts(&[vec![3, 4, 5]]));
        for (src, msg) in [
            (
                "generate m on qs max_tokens 0",
                "max_tokens must be a whole number from 1 to 128, not 0",
            ),
            (
                "generate m on qs max_tokens 2.5",
                "max_tokens must be a whole number from 1 to 128, not 2.5",
            ),
            (
                "generate m on qs max_tokens 4 temperature nan",
                "`temperature` of `generate` must be a finite number ≥ 0, got NaN",
            ),
            (
                "generate m on qs max_tokens 4 temperature inf",
                "`temperature` of `generate` must be a finite number ≥ 0, got inf",
            ),
            (
                "generate m on qs max_tokens 4 top_p nan",
                "`top_p` of `generate` must be a finite number > 0 and ≤ 1, got NaN",
            ),
            (
                "generate m on qs max_tokens 4 top_p 0",
                "`top_p` of `generate` must be a finite number > 0 and ≤ 1, got 0",
            ),
            (
                "logits m \"t3 t4\" top 0",
                "top must be a whole number from 1 to 32, not 0",
            ),
        ] {
            let e = err(&mut s, src);
            assert!(e.contains(msg), "{src}: {e}");
        }
    }

    /// Answers cut at max_tokens say so (`truncated`); one that ends with its stop token does
    /// not; the stop token is not part of the answer.
    #[test]
    fn generate_marks_truncated_answers() {
        let mut m = model();
        m.config.eos_token_ids.clear();
        let mut s = session_with(m);
        s.set("qs", prompts(&[vec![3, 4, 5], vec![7]]));
        let out = table(&mut s, "generate m on qs max_tokens 4");
        let n: Vec<_> = out
            .column("n_tokens")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(n, [Some(4), Some(4)]);
        let cut: Vec<_> = out
            .column("truncated")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(cut, [Some(true), Some(true)]);
        let stopped: Vec<_> = out
            .column("interrupted")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(stopped, [Some(false), Some(false)]);
        // Make the first greedy token of row 0 the stop token: it answers nothing, not cut.
        let first = out
            .column("answer_ids")
            .unwrap()
            .list()
            .unwrap()
            .get_as_series(0)
            .unwrap();
        let first = first.i64().unwrap().get(0).unwrap();
        let mut m = model();
        m.config.eos_token_ids = vec![u32::try_from(first).unwrap()];
        let mut s = session_with(m);
        s.set("qs", prompts(&[vec![3, 4, 5]]));
        let out = table(&mut s, "generate m on qs max_tokens 4");
        assert_eq!(
            out.column("n_tokens").unwrap().i64().unwrap().get(0),
            Some(0)
        );
        assert_eq!(
            out.column("truncated").unwrap().bool().unwrap().get(0),
            Some(false)
        );
    }

    fn with_nan_norm(mut m: Model) -> Model {
        let name = "model.norm.weight";
        let w = m.weights.get(name).unwrap();
        let nan = (w.ones_like().unwrap() * f64::NAN).unwrap();
        m.weights.insert(name, nan);
        m
    }

    /// A model whose logits are NaN made `generate` return token 0 over and over, and
    /// `logits`/`perplexity` print tables of NaN. Each now stops with a diagnostic.
    #[test]
    fn nan_logits_are_reported_not_printed() {
        let mut s = session_with(with_nan_norm(model()));
        s.set("qs", prompts(&[vec![3, 4, 5]]));
        let e = err(&mut s, "generate m on qs max_tokens 5");
        assert!(
            e.contains("the model's logits are not finite at answer token 0"),
            "{e}"
        );
        let e = err(&mut s, "logits m \"t3 t4 t5\"");
        assert!(
            e.contains("the model's logits are not finite: 32 of 32"),
            "{e}"
        );
        let e = err(&mut s, "perplexity m on \"t3 t4 t5\"");
        assert!(e.contains("the model's logits are not finite"), "{e}");
        s.set("texts", df!("text" => ["t3 t4", "t5 t6 t7"]).unwrap());
        let e = err(&mut s, "perplexity m on texts");
        assert!(
            e.contains("column `text`, row 0: the model's logits are not finite"),
            "{e}"
        );
    }

    /// Sequences past the model's context (128 tokens here; 8192 for SmolLM2) ran without a
    /// word. Every verb that feeds tokens refuses them, naming the context length.
    #[test]
    fn verbs_refuse_sequences_past_the_context() {
        let mut s = session_with(model());
        let e = err(&mut s, &format!("logits m \"{}\"", text(129)));
        assert!(
            e.contains("the text is 129 tokens, over the model's context of 128 tokens"),
            "{e}"
        );
        let e = err(&mut s, &format!("perplexity m on \"{}\"", text(200)));
        assert!(
            e.contains("200 tokens, over the model's context of 128"),
            "{e}"
        );
        s.set("qs", prompts(&[vec![3; 100]]));
        let e = err(&mut s, "generate m on qs max_tokens 50");
        assert!(
            e.contains("the prompt is 100 tokens; with max_tokens 50 that is over the model's context of 128 tokens"),
            "{e}"
        );
        let report = format!(
            "{:?}",
            s.eval("generate m on qs max_tokens 50").unwrap_err()
        );
        assert!(
            report.contains("lower max_tokens to 28 or less"),
            "{report}"
        );
        assert_eq!(
            table(&mut s, "generate m on qs max_tokens 28").height(),
            1,
            "exactly the context is fine"
        );
        let samples = df!(
            "prompt_ids" => [Series::new("".into(), vec![3i64; 130])],
            "answer_ids" => [Series::new("".into(), vec![4i64, 5])],
        )
        .unwrap();
        s.set("samples", samples);
        let e = err(&mut s, "patch m on samples t_cut 1");
        assert!(
            e.contains("row 0: the prompt is 130 tokens, over the model's context of 128"),
            "{e}"
        );
    }

    fn sample_table(column: &str, value: Series) -> DataFrame {
        let mut cols = vec![
            Series::new("prompt_ids".into(), [Series::new("".into(), [3i64, 4])]).into_column(),
            Series::new("answer_ids".into(), [Series::new("".into(), [5i64, 6])]).into_column(),
        ];
        cols.retain(|c| c.name().as_str() != column);
        cols.push(value.with_name(column.into()).into_column());
        DataFrame::new_infer_height(cols).unwrap()
    }

    /// Token ids from tables: 2^32+5 wrapped to 5, 28.7 became 28, a per-row t_cut of 0 became
    /// 1, and ids past the vocabulary surfaced candle's "index-select invalid index". Each is
    /// refused naming the column, the row, the id and the vocabulary size.
    #[test]
    fn token_ids_in_tables_are_checked() {
        let mut s = session_with(model());
        let list = |v: Vec<f64>| Series::new("".into(), [Series::new("".into(), v)]);
        let cases: Vec<(&str, DataFrame, &str, &str)> = vec![
            (
                "target_id",
                sample_table("target_id", Series::new("".into(), [4_294_967_301i64]))
                    .hstack(&[Column::new("wrong_id".into(), [7i64])])
                    .unwrap(),
                "loss logit_diff",
                "column `target_id`, row 0: 4294967301 is not a token id",
            ),
            (
                "answer_ids",
                sample_table("answer_ids", list(vec![28.7])),
                "t_cut 1",
                "column `answer_ids`, row 0: 28.7 is not a whole number",
            ),
            (
                "t_cut",
                sample_table("t_cut", Series::new("".into(), [0i64])),
                "",
                "column `t_cut`, row 0: t_cut must be a whole number ≥ 1, not 0",
            ),
            (
                "prompt_ids",
                sample_table("prompt_ids", list(vec![1.0, 4000.0])),
                "t_cut 1",
                "column `prompt_ids`, row 0: token id 4000 is outside the model's vocabulary (32 ids, 0 to 31)",
            ),
            (
                "answer_ids",
                sample_table("answer_ids", list(vec![99_999_999.0])),
                "t_cut 1",
                "column `answer_ids`, row 0: token id 99999999 is outside the model's vocabulary (32 ids",
            ),
            (
                "wrong_id",
                sample_table("target_id", Series::new("".into(), [4i64]))
                    .hstack(&[Column::new("wrong_id".into(), [32i64])])
                    .unwrap(),
                "loss logit_diff",
                "column `wrong_id`, row 0: token id 32 is outside the model's vocabulary (32 ids",
            ),
        ];
        for (what, t, extra, msg) in cases {
            s.set("samples", t);
            let e = err(&mut s, &format!("patch m on samples {extra}"));
            assert!(e.contains(msg), "{what}: {e}");
            assert!(!e.contains("invalid index"), "{what}: {e}");
        }
        // generate reads prompt_ids the same way.
        s.set("qs", prompts(&[vec![3], vec![3, 64]]));
        let e = err(&mut s, "generate m on qs max_tokens 2");
        assert!(
            e.contains(
                "column `prompt_ids`, row 1: token id 64 is outside the model's vocabulary (32 ids"
            ),
            "{e}"
        );
    }

    /// The real SmolLM2: ~8300 tokens ran past its 8192-token context without a word.
    #[test]
    fn smollm2_refuses_text_past_its_context() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models/smollm2-135m-instruct.q4_1.gguf");
        if !path.is_file() {
            eprintln!("SKIPPED: {} is absent", path.display());
            return;
        }
        let mut s = Session::new();
        s.eval(&format!("let m = load \"{}\"", path.display()))
            .unwrap();
        let words = "the cat sat on the mat ".repeat(1400); // ~8400 tokens
        let e = err(&mut s, &format!("logits m \"{words}\""));
        assert!(e.contains("over the model's context of 8192 tokens"), "{e}");
    }
}
