//! Test group `attribution`. Attribution: edge scores against finite differences, the fused ops' gradients, the graph verbs, circuit evaluation.
//!
//! Each file of `tests/` is one module of a group (Cargo.toml: `autotests = false`): every
//! test binary links candle and polars, so five binaries build and link far faster than one
//! per file. Run one file's tests with `cargo test --test attribution <file>::`.

#[path = "../attribution_fd.rs"]
mod attribution_fd;
#[path = "../circuits.rs"]
mod circuits;
#[path = "../graph_verbs.rs"]
mod graph_verbs;
#[path = "../ops_grad.rs"]
mod ops_grad;
