//! Tokenizer exactness: SmolLM2's tokenizer rebuilt from GGUF metadata must match HF's, plus
//! tokenizer.json loading and the SentencePiece (GGUF `llama` model) path on a synthetic vocab.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use rlq::model::{load, LoadOptions, Model, TextTokenizer};

fn smollm2() -> Option<Arc<Model>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct.q4_1.gguf");
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} is absent (run scripts/fetch-models.sh)",
            path.display()
        );
        return None;
    }
    Some(load(path.to_str().unwrap(), &LoadOptions::default()).expect("SmolLM2 loads"))
}

const CHAT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn smollm2_chat_text_encodes_exactly_like_hf() {
    let Some(m) = smollm2() else { return };
    let ids = m.tokenizer.encode(CHAT, false).unwrap();
    assert_eq!(
        ids,
        vec![1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
    );
    assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), CHAT);
    // Skipping special tokens drops exactly the control tokens.
    assert_eq!(
        m.tokenizer.decode(&ids, true).unwrap(),
        "user\nWhat is the capital of France?\nassistant\n"
    );
}

#[test]
fn smollm2_no_prefix_space_and_special_ids() {
    let Some(m) = smollm2() else { return };
    let t = &m.tokenizer;
    let hello = t.encode("Hello", false).unwrap();
    assert_eq!(hello, vec![t.token_id("Hello").unwrap()], "no `ĠHello`");
    assert_eq!(t.pieces(&hello), vec!["Hello".to_string()]);
    assert_eq!(
        t.encode(" Hello", false).unwrap(),
        vec![t.token_id("ĠHello").unwrap()]
    );
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_id("<|im_end|>"), Some(2));
    assert_eq!(t.token_id("<|endoftext|>"), Some(0));
    assert_eq!(t.encode("<|endoftext|>", false).unwrap(), vec![0]);
    assert_eq!(t.bos_id, Some(1));
    assert_eq!(t.eos_ids, vec![2]);
    assert_eq!(t.vocab_size(), 49152);
    // SmolLM2 adds no BOS.
    assert_eq!(
        t.encode("Hi", true).unwrap(),
        t.encode("Hi", false).unwrap()
    );
}

#[test]
fn smollm2_digits_are_split_one_per_token() {
    let Some(m) = smollm2() else { return };
    let t = &m.tokenizer;
    let ids = t.encode("12345", false).unwrap();
    let digits: Vec<u32> = "12345"
        .chars()
        .map(|c| t.token_id(&c.to_string()).unwrap())
        .collect();
    assert_eq!(ids, digits);
    assert_eq!(t.decode(&ids, false).unwrap(), "12345");
    let ids = t.encode("x = 3.14 + 2025", false).unwrap();
    assert_eq!(t.decode(&ids, false).unwrap(), "x = 3.14 + 2025");
    assert_eq!(
        t.pieces(&t.encode("2025", false).unwrap()),
        vec!["2", "0", "2", "5"]
    );
}

#[test]
fn smollm2_unicode_round_trips() {
    let Some(m) = smollm2() else { return };
    for text in [
        "héllo wörld — “quotes” naïve façade",
        "日本語のテキスト 你好，世界！",
        "emoji 🙂👍🏽 and tabs\tand\nnewlines\r\n  spaces  ",
        "Привет, мир; مرحبا",
        "",
    ] {
        let ids = m.tokenizer.encode(text, false).unwrap();
        assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), text, "{text:?}");
    }
    // Pieces of multi-byte characters split across tokens still decode to something printable.
    let ids = m.tokenizer.encode("🙂", false).unwrap();
    assert_eq!(m.tokenizer.pieces(&ids).len(), ids.len());
}

#[test]
fn tokenizer_json_is_read_directly() {
    let json = r#"{"version":"1.0","truncation":null,"padding":null,
      "added_tokens":[{"id":3,"content":"<eos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
      "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
      "model":{"type":"WordLevel","vocab":{"<unk>":0,"hello":1,"world":2,"<eos>":3},"unk_token":"<unk>"}}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    let t = TextTokenizer::from_file(&path).unwrap();
    assert_eq!(t.encode("hello world<eos>", false).unwrap(), vec![1, 2, 3]);
    assert_eq!(t.encode("hello zzz", false).unwrap(), vec![1, 0]);
    assert_eq!(t.token_id("world"), Some(2));
    assert_eq!(t.vocab_size(), 4);
    assert_eq!(t.pieces(&[1, 2, 99]), vec!["hello", "world", "<unk:99>"]);
    // Missing and broken files are errors, not panics.
    let err = TextTokenizer::from_file(&dir.path().join("nope.json"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("not found"), "{err}");
    std::fs::write(&path, "{not json").unwrap();
    assert!(TextTokenizer::from_file(&path).is_err());
}

fn strings(xs: &[&str]) -> Value {
    Value::Array(xs.iter().map(|s| Value::String(s.to_string())).collect())
}

/// A tiny SentencePiece vocabulary the way llama.cpp stores it: pieces, scores, token types
/// (1 normal, 2 unknown, 3 control, 6 byte), `▁` for spaces.
fn spm_metadata(add_space_prefix: bool) -> HashMap<String, Value> {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut types = vec![2i32, 3, 3];
    let mut scores = vec![0f32, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let normal = [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("r", -2.0),
        ("d", -2.0),
        ("ld", -2.5),
        ("he", -3.0),
        ("ll", -3.0),
        ("▁he", -4.0),
        ("llo", -5.0),
        ("▁hello", -6.0),
        ("or", -7.0),
        ("▁w", -8.0),
        ("▁wor", -9.0),
        ("▁world", -10.0),
    ];
    for (p, s) in normal {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(s);
    }
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    md.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    );
    md.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array(scores.into_iter().map(Value::F32).collect()),
    );
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    md.insert(
        "tokenizer.ggml.add_space_prefix".into(),
        Value::Bool(add_space_prefix),
    );
    md
}

#[test]
fn sentencepiece_gguf_vocab_becomes_a_byte_fallback_bpe() {
    let t = TextTokenizer::from_gguf_metadata(&spm_metadata(true)).unwrap();
    let id = |p: &str| t.token_id(p).unwrap();
    // Llama-style: a space is prepended, so "hello world" is "▁hello▁world".
    let ids = t.encode("hello world", false).unwrap();
    assert_eq!(ids, vec![id("▁hello"), id("▁world")]);
    assert_eq!(t.decode(&ids, false).unwrap(), "hello world");
    // Pieces keep the word-initial space the decoder strips from a lone `▁hello`.
    assert_eq!(t.pieces(&ids), vec![" hello", " world"]);
    // add_bos_token puts <s> first when special tokens are requested.
    assert_eq!(t.encode("hello", true).unwrap(), vec![1, id("▁hello")]);
    // Unknown characters fall back to their UTF-8 bytes and decode back.
    let ids = t.encode("hé", false).unwrap();
    assert_eq!(ids, vec![id("▁"), id("h"), id("<0xC3>"), id("<0xA9>")]);
    assert_eq!(t.decode(&ids, false).unwrap(), "hé");
    assert_eq!(t.encode("</s>", false).unwrap(), vec![2]);
    assert_eq!(t.eos_ids, vec![2]);

    // Gemma-style: no space prefix.
    let t = TextTokenizer::from_gguf_metadata(&spm_metadata(false)).unwrap();
    let ids = t.encode("hello world", false).unwrap();
    assert_eq!(t.pieces(&ids).concat(), "hello world");
    assert_eq!(t.decode(&ids, false).unwrap(), "hello world");
}

#[test]
fn gguf_tokenizer_metadata_errors_are_clear() {
    let mut md = spm_metadata(true);
    md.insert("tokenizer.ggml.model".into(), Value::String("rwkv".into()));
    let err = TextTokenizer::from_gguf_metadata(&md)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("rwkv") && err.contains("gpt2"), "{err}");

    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.tokens".into(), strings(&["a", "b", "ab"]));
    md.insert("tokenizer.ggml.merges".into(), strings(&["a b"]));
    md.insert("tokenizer.ggml.pre".into(), Value::String("mystery".into()));
    let err = TextTokenizer::from_gguf_metadata(&md)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("mystery") && err.contains("smollm"), "{err}");

    md.insert("tokenizer.ggml.pre".into(), Value::String("gpt-2".into()));
    let t = TextTokenizer::from_gguf_metadata(&md).unwrap();
    assert_eq!(t.encode("ab", false).unwrap(), vec![2]);

    md.remove("tokenizer.ggml.tokens");
    let err = TextTokenizer::from_gguf_metadata(&md)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.ggml.tokens"), "{err}");
}

#[test]
fn gemma3_sentencepiece_tokenizer_from_gguf() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m.q4_k_m.gguf");
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} is absent (scripts/fetch-models.sh gemma)",
            path.display()
        );
        return;
    }
    let m = load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let t = &m.tokenizer;
    assert_eq!(t.vocab_size(), 262144);
    let text = "<start_of_turn>user\nHello, world! 12345 héllo 日本語<end_of_turn>\n";
    let ids = t.encode(text, false).unwrap();
    assert_eq!(ids[0], 105);
    assert_eq!(ids[ids.len() - 2..], [106, 107]);
    assert_eq!(t.decode(&ids, false).unwrap(), text);
    // add_bos_token: BOS (2) first.
    assert_eq!(t.encode("Hi", true).unwrap()[0], 2);
    // No space prefix for Gemma: "Hello" is the bare piece.
    assert_eq!(
        t.encode("Hello", false).unwrap(),
        vec![t.token_id("Hello").unwrap()]
    );
    assert_eq!(
        t.encode(" Hello", false).unwrap(),
        vec![t.token_id("▁Hello").unwrap()]
    );
}

#[test]
fn qwen2_byte_level_tokenizer_and_chat_template_from_gguf() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5-coder-0.5b-instruct.gguf");
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} is absent (scripts/fetch-models.sh qwen)",
            path.display()
        );
        return;
    }
    let m = load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let t = &m.tokenizer;
    assert_eq!(
        t.encode("Hello, world!", false).unwrap(),
        vec![9707, 11, 1879, 0]
    );
    // Qwen2 splits numbers into single digits ('0' is id 15).
    assert_eq!(t.encode("12345", false).unwrap(), vec![16, 17, 18, 19, 20]);
    let chat = m.apply_chat_template(&[("user", "hi")], true).unwrap();
    assert_eq!(
        chat,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = t.encode(&chat, false).unwrap();
    assert_eq!(ids[0], 151644);
    assert_eq!(ids[ids.len() - 3..], [151644, 77091, 198]);
    assert_eq!(t.decode(&ids, false).unwrap(), chat);
    assert_eq!(t.eos_ids, vec![151645]);
    for text in ["naïve café 日本語 🙂", "  indented\n\n\tcode()  "] {
        let ids = t.encode(text, false).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn empty_tokenizer_errors_instead_of_panicking() {
    let t = TextTokenizer::empty();
    assert!(t.is_empty());
    let e = t.encode("hi", false).unwrap_err().to_string();
    assert!(e.contains("no tokenizer"), "{e}");
    assert!(t.decode(&[1], false).is_err());
    assert_eq!(t.pieces(&[7]), vec!["<7>"]);
    assert_eq!(t.token_id("a"), None);
    assert_eq!(t.vocab_size(), 0);
}
