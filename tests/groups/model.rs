//! Test group `model`. Models: loading (GGUF, safetensors, hub), tokenizers and chat templates, the hooked forward, parity with candle-transformers, real SmolLM2, CPU vs CUDA.
//!
//! Each file of `tests/` is one module of a group (Cargo.toml: `autotests = false`): every
//! test binary links candle and polars, so five binaries build and link far faster than one
//! per file. Run one file's tests with `cargo test --test model <file>::`.

#[path = "../cuda_parity.rs"]
mod cuda_parity;
#[path = "../hooked_forward.rs"]
mod hooked_forward;
#[path = "../model_e2e.rs"]
mod model_e2e;
#[path = "../model_load.rs"]
mod model_load;
#[path = "../parity.rs"]
mod parity;
#[path = "../real_smollm2.rs"]
mod real_smollm2;
#[path = "../tokenizer.rs"]
mod tokenizer;
