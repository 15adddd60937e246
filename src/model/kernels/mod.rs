//! The fused CPU ops with their hand-written backward (`fused`), the differentiable building
//! blocks over them, with the composed references (`ops`), and the few-rows matmul of decoding
//! (`few_rows`). Reads only `config` (rope scaling).

pub mod few_rows;
pub mod fused;
pub mod ops;
