//! Text ⇄ token ids. One type, [`TextTokenizer`], built either from an HF `tokenizer.json` or
//! from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! The GGUF path does not use candle's `Tokenizer::from_gguf`: that one adds a prefix space
//! (`Hello` → `ĠHello`) and does not treat chat control tokens as special. Instead we rebuild the
//! `tokenizer.json` the model was converted from (same vocab, merges, pre-tokenizer, decoder and
//! special tokens) and hand it to the `tokenizers` crate, so both paths share HF semantics.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value as GgufValue;
use serde_json::{json, Value as Json};

use crate::model::error::{ModelError, Result};

/// A tokenizer plus the ids the rest of rlq needs to know about.
/// [`TextTokenizer::empty`] stands in for models built without one (synthetic test models):
/// every text operation on it is an error saying so.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Option<tokenizers::Tokenizer>,
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Wraps an HF tokenizer; bos/eos ids are given by the caller (they live in config files).
    pub fn new(inner: tokenizers::Tokenizer, bos_id: Option<u32>, eos_ids: Vec<u32>) -> Self {
        Self {
            inner: Some(inner),
            bos_id,
            eos_ids,
        }
    }

    /// No tokenizer: for models made in code. Encoding/decoding fail with a clear error.
    pub fn empty() -> Self {
        Self {
            inner: None,
            bos_id: None,
            eos_ids: vec![],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    fn tok(&self) -> Result<&tokenizers::Tokenizer> {
        self.inner
            .as_ref()
            .ok_or_else(|| ModelError::Tokenizer("this model has no tokenizer".into()))
    }

    /// Reads an HF `tokenizer.json`.
    /// Only a regular file is read, and at most [`crate::model::files::TOKENIZER_MAX_BYTES`] of it.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !crate::model::files::exists(path) {
            return Err(ModelError::Tokenizer(format!(
                "tokenizer file {} not found",
                path.display()
            )));
        }
        let bytes = crate::model::files::read_capped(
            path,
            "tokenizer.json",
            crate::model::files::TOKENIZER_MAX_BYTES,
        )?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self::new(inner, None, vec![]))
    }

    /// Parses `tokenizer.json` contents.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(tok_err)?;
        Ok(Self::new(inner, None, vec![]))
    }

    /// Rebuilds the model's tokenizer from GGUF `tokenizer.ggml.*` metadata.
    pub fn from_gguf_metadata(md: &HashMap<String, GgufValue>) -> Result<Self> {
        let spec = tokenizer_json_from_gguf(md)?;
        let bytes = serde_json::to_vec(&spec).map_err(tok_err)?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| ModelError::Tokenizer(format!("rebuilding tokenizer from GGUF: {e}")))?;
        let bos_id = md_u32(md, "tokenizer.ggml.bos_token_id");
        let mut eos_ids = vec![];
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = md_u32(md, key) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        Ok(Self::new(inner, bos_id, eos_ids))
    }

    /// The wrapped HF tokenizer, for anything this type does not expose.
    pub fn inner(&self) -> Option<&tokenizers::Tokenizer> {
        self.inner.as_ref()
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor
    /// (e.g. a leading BOS); special tokens written literally in `text` are always recognised.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .tok()?
            .encode(text, add_special_tokens)
            .map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tok()?.decode(ids, skip_special).map_err(tok_err)
    }

    /// Each id decoded on its own: what a reader wants to see for "the token at position i".
    /// Ids outside the vocabulary show as `<unk:ID>`.
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        let Some(t) = &self.inner else {
            return ids.iter().map(|id| format!("<{id}>")).collect();
        };
        ids.iter()
            .map(|&id| {
                let raw = t.id_to_token(id);
                match t.decode(&[id], false) {
                    // SentencePiece decoders strip the space of a leading `▁`; keep it visible.
                    Ok(s)
                        if raw.as_deref().is_some_and(|r| r.starts_with('▁'))
                            && !s.starts_with(' ') =>
                    {
                        format!(" {s}")
                    }
                    Ok(s) if !s.is_empty() || raw.is_some() => s,
                    _ => format!("<unk:{id}>"),
                }
            })
            .collect()
    }

    /// Id of a vocabulary entry written in the tokenizer's own alphabet (`<|im_end|>`, `Ġthe`).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.inner.as_ref()?.token_to_id(piece)
    }

    /// Vocabulary entry of an id, in the tokenizer's own alphabet.
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        self.inner.as_ref()?.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.as_ref().map_or(0, |t| t.get_vocab_size(true))
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF metadata → tokenizer.json

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// GPT-2-style regexes that llama.cpp names via `tokenizer.ggml.pre`; copied from the
/// corresponding HF `tokenizer.json` `Split` pre-tokenizers.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const SUPPORTED_PRE: &str = "smollm, starcoder, refact, gpt-2, default, qwen2, llama-bpe, llama3";

fn md_u32(md: &HashMap<String, GgufValue>, key: &str) -> Option<u32> {
    md.get(key)
        .and_then(value_as_i64)
        .and_then(|x| u32::try_from(x).ok())
}

fn md_bool(md: &HashMap<String, GgufValue>, key: &str) -> Option<bool> {
    md.get(key).and_then(|v| v.to_bool().ok())
}

fn md_str<'a>(md: &'a HashMap<String, GgufValue>, key: &str) -> Option<&'a str> {
    md.get(key)
        .and_then(|v| v.to_string().ok())
        .map(|s| s.as_str())
}

fn md_array<'a>(md: &'a HashMap<String, GgufValue>, key: &str) -> Result<&'a Vec<GgufValue>> {
    md.get(key)
        .ok_or_else(|| ModelError::Tokenizer(format!("GGUF has no `{key}`")))?
        .to_vec()
        .map_err(|_| ModelError::Tokenizer(format!("GGUF `{key}` is not an array")))
}

/// An integer metadata value; `None` for other types and for a u64 beyond i64 (never wrapped).
pub(crate) fn value_as_i64(v: &GgufValue) -> Option<i64> {
    Some(match v {
        GgufValue::U8(x) => i64::from(*x),
        GgufValue::I8(x) => i64::from(*x),
        GgufValue::U16(x) => i64::from(*x),
        GgufValue::I16(x) => i64::from(*x),
        GgufValue::U32(x) => i64::from(*x),
        GgufValue::I32(x) => i64::from(*x),
        GgufValue::U64(x) => i64::try_from(*x).ok()?,
        GgufValue::I64(x) => *x,
        _ => return None,
    })
}

fn string_list(md: &HashMap<String, GgufValue>, key: &str) -> Result<Vec<String>> {
    md_array(md, key)?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| ModelError::Tokenizer(format!("GGUF `{key}` holds a non-string")))
        })
        .collect()
}

fn added_token(id: usize, content: &str, special: bool) -> Json {
    json!({
        "id": id, "content": content, "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": special,
    })
}

/// The HF `tokenizer.json` equivalent of a GGUF file's tokenizer metadata.
pub fn tokenizer_json_from_gguf(md: &HashMap<String, GgufValue>) -> Result<Json> {
    let model = md_str(md, "tokenizer.ggml.model")
        .ok_or_else(|| ModelError::Tokenizer("GGUF has no `tokenizer.ggml.model`".into()))?;
    let tokens = string_list(md, "tokenizer.ggml.tokens")?;
    let types: Vec<i64> = match md.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(tok_err)?
            .iter()
            .map(|t| value_as_i64(t).unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(ModelError::Tokenizer(format!(
            "GGUF has {} tokens but {} token types",
            tokens.len(),
            types.len()
        )));
    }
    match model {
        "gpt2" => byte_level_bpe_json(md, &tokens, &types),
        "llama" => sentencepiece_json(md, &tokens, &types),
        other => Err(ModelError::Tokenizer(format!(
            "GGUF tokenizer model `{other}` is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece)"
        ))),
    }
}

/// GPT-2-style byte-level BPE (SmolLM2, Qwen2/3, Llama 3).
fn byte_level_bpe_json(
    md: &HashMap<String, GgufValue>,
    tokens: &[String],
    types: &[i64],
) -> Result<Json> {
    let merges = string_list(md, "tokenizer.ggml.merges")?;
    let pre = md_str(md, "tokenizer.ggml.pre").unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    // Mirrors the pre_tokenizer of the HF tokenizer.json each llama.cpp `pre` name stands for.
    let (normalizer, pre_tokenizer, ignore_merges) = match pre {
        "smollm" | "starcoder" | "refact" => (
            Json::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        "gpt-2" | "gpt2" | "default" => (Json::Null, byte_level(true), false),
        "qwen2" | "deepseek-r1-qwen" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
            false,
        ),
        "llama-bpe" | "llama3" | "smaug-bpe" => (
            Json::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
            true,
        ),
        other => {
            return Err(ModelError::Tokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported; supported: {SUPPORTED_PRE}"
            )))
        }
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = vec![];
    for (id, (tok, &ty)) in tokens.iter().zip(types).enumerate() {
        vocab.insert(tok.clone(), json!(id));
        match ty {
            TOKEN_TYPE_CONTROL => added.push(added_token(id, tok, true)),
            TOKEN_TYPE_USER_DEFINED => added.push(added_token(id, tok, false)),
            _ => {}
        }
    }
    let post_processor = bos_post_processor(md, tokens);
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges,
        },
    }))
}

/// `add_special_tokens = true` puts BOS in front when the GGUF says the model wants it.
fn bos_post_processor(md: &HashMap<String, GgufValue>, tokens: &[String]) -> Json {
    let add_bos = md_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(false);
    let bos = md_u32(md, "tokenizer.ggml.bos_token_id")
        .and_then(|id| tokens.get(id as usize).map(|t| (id, t.clone())));
    match (add_bos, bos) {
        (true, Some((id, tok))) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tok.clone(): {"id": tok, "ids": [id], "tokens": [tok]}},
        }),
        _ => Json::Null,
    }
}

/// SentencePiece vocabularies (Llama 2, Mistral v0.1, Gemma) as an HF BPE with byte fallback,
/// the way HF's `SpmConverter` does it: merges ranked by the score of the merged piece.
fn sentencepiece_json(
    md: &HashMap<String, GgufValue>,
    tokens: &[String],
    types: &[i64],
) -> Result<Json> {
    let scores: Vec<f64> = match md.get("tokenizer.ggml.scores") {
        Some(v) => v
            .to_vec()
            .map_err(tok_err)?
            .iter()
            .map(|s| match s {
                GgufValue::F32(x) => *x as f64,
                GgufValue::F64(x) => *x,
                _ => 0.0,
            })
            .collect(),
        None => {
            return Err(ModelError::Tokenizer(
                "SentencePiece GGUF has no `tokenizer.ggml.scores`".into(),
            ))
        }
    };
    if scores.len() != tokens.len() {
        return Err(ModelError::Tokenizer(format!(
            "GGUF has {} tokens but {} scores",
            tokens.len(),
            scores.len()
        )));
    }
    let add_space_prefix = md_bool(md, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut added = vec![];
    let mut unk = md_u32(md, "tokenizer.ggml.unknown_token_id")
        .and_then(|id| tokens.get(id as usize).cloned());
    for (id, (tok, &ty)) in tokens.iter().zip(types).enumerate() {
        vocab.insert(tok.clone(), json!(id));
        ids.insert(tok.as_str(), id);
        match ty {
            TOKEN_TYPE_CONTROL => added.push(added_token(id, tok, true)),
            TOKEN_TYPE_USER_DEFINED => added.push(added_token(id, tok, false)),
            TOKEN_TYPE_UNKNOWN => {
                unk.get_or_insert(tok.clone());
                added.push(added_token(id, tok, true));
            }
            _ => {}
        }
    }
    // Every split of a normal piece into two vocabulary pieces is a merge; the merged piece's
    // score orders them (higher first), ties by the pair's ids.
    let mut merges: Vec<(f64, usize, usize, &str, &str)> = vec![];
    for (id, tok) in tokens.iter().enumerate() {
        if types[id] != 1 {
            continue;
        }
        for (cut, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                if types[li] == TOKEN_TYPE_BYTE || types[ri] == TOKEN_TYPE_BYTE {
                    continue;
                }
                merges.push((scores[id], li, ri, l, r));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    let merges: Vec<Json> = merges.iter().map(|m| json!([m.3, m.4])).collect();
    let mut normalizers = vec![];
    if add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let post_processor = bos_post_processor(md, tokens);
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    }))
}
