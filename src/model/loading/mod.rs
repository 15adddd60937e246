//! Getting a [`Model`](crate::model::Model): `load` picks a reader for a source (a GGUF file
//! via `gguf` and `gguf_header`, a safetensors folder via `safetensors_dir`, an hf-hub id via
//! `hub` then the folder reader); `save` writes an HF folder; `synthetic` draws random models
//! from a family's manifest; `deferred` writes a safetensors file one tensor at a time. Every reader and writer shares `checkpoint` (what a reader returns
//! and the manifest checks); none of them imports `load`.

pub mod checkpoint;
pub mod deferred;
pub mod gguf;
pub mod gguf_header;
pub mod hub;
pub mod load;
pub mod safetensors_dir;
pub mod save;
#[cfg(any(test, feature = "test-support"))]
pub mod synthetic;
