//! The fused CPU ops with their hand-written backward (`fused`), the differentiable building
//! blocks over them, with the composed references (`ops`), and the few-rows matmul of decoding
//! (`few_rows`), decoding's attention over caches grown in place (`decode_attention`) and an
//! optional CBLAS loaded at run time for dense layers' products (`blas`). Reads only `config`
//! (rope scaling).

pub mod blas;
pub mod decode_attention;
pub mod few_rows;
pub mod fused;
pub mod ops;
