//! Text in and out of token ids: the tokenizer (from `tokenizer.json` or GGUF metadata) and the
//! checkpoint's Jinja chat template. Knows no `Model` (`model::prompt` puts them on it).

pub mod chat;
pub mod tokenizer;
