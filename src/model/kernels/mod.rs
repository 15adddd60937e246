//! The fused CPU ops with their hand-written backward (`fused`) and the differentiable building
//! blocks over them, with the composed references (`ops`). Reads only `config` (rope scaling).

pub mod fused;
pub mod ops;
