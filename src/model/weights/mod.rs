//! Named weight tensors, always under Hugging Face names (`model.layers.3.self_attn.q_proj.weight`),
//! whatever file they came from. Weight matrices of a GGUF may stay quantized ([`QMatrix`]); the
//! forward then dequantizes them block by block inside each matmul (see [`Linear`]).
//! `linear` is the matmul over a dense or quantized weight, `qmatrix` the quantized view; both
//! read `kernels` only.

pub mod linear;
pub mod qmatrix;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;

use crate::model::error::{ModelError, Result};
use linear::Linear;
use qmatrix::QMatrix;

#[derive(Clone, Default)]
pub struct Weights {
    dense: HashMap<String, Tensor>,
    quant: HashMap<String, Arc<QMatrix>>,
}

impl Weights {
    pub fn new(map: HashMap<String, Tensor>) -> Self {
        Self {
            dense: map,
            quant: HashMap::new(),
        }
    }

    /// A dense weight. Quantized ones are not tensors: use [`Weights::dense`] or
    /// [`Weights::linear`] for those.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        if self.quant.contains_key(name) {
            return Err(ModelError::Format(format!(
                "weight `{name}` is kept quantized; it has no dense tensor"
            )));
        }
        self.dense
            .get(name)
            .ok_or_else(|| ModelError::MissingWeight(name.to_string()))
    }

    /// The dense weight under `name`, checked against the expected shape.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<&Tensor> {
        self.check_shape(name, expected)?;
        self.get(name)
    }

    /// The weight's shape, dense or quantized.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        if let Some(q) = self.quant.get(name) {
            return Ok(vec![q.rows(), q.cols()]);
        }
        Ok(self.get(name)?.dims().to_vec())
    }

    pub fn check_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        let got = self.shape(name)?;
        if got != expected {
            return Err(ModelError::BadShape {
                name: name.to_string(),
                got,
                expected: expected.to_vec(),
            });
        }
        Ok(())
    }

    /// The weight as a tensor: dense weights as stored, quantized ones dequantized to f32.
    pub fn dense(&self, name: &str) -> Result<Tensor> {
        match self.quant.get(name) {
            Some(q) => Ok(q.dequantize()?),
            None => Ok(self.get(name)?.clone()),
        }
    }

    /// A weight matrix for the forward, checked against the expected `[out, in]` shape.
    pub fn linear(&self, name: &str, expected: &[usize]) -> Result<Linear> {
        self.check_shape(name, expected)?;
        match self.quant.get(name) {
            Some(q) => Ok(Linear::quantized(q.clone())),
            None => Ok(Linear::Dense(self.get(name)?.clone())),
        }
    }

    pub fn is_quantized(&self, name: &str) -> bool {
        self.quant.contains_key(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.dense.contains_key(name) || self.quant.contains_key(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.dense.keys().chain(self.quant.keys())
    }
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        let name = name.into();
        self.quant.remove(&name);
        self.dense.insert(name, t);
    }
    pub fn insert_quantized(&mut self, name: impl Into<String>, q: QMatrix) {
        let name = name.into();
        self.dense.remove(&name);
        self.quant.insert(name, Arc::new(q));
    }
    /// Every weight as a tensor, quantized ones dequantized (e.g. for a candle `VarBuilder`).
    pub fn dense_map(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.dense.clone();
        for (name, q) in &self.quant {
            out.insert(name.clone(), q.dequantize()?);
        }
        Ok(out)
    }
    /// Bytes the weights occupy (quantized ones at their stored size).
    pub fn storage_bytes(&self) -> usize {
        let dense: usize = self
            .dense
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        dense
            + self
                .quant
                .values()
                .map(|q| q.storage_bytes())
                .sum::<usize>()
    }
    pub fn len(&self) -> usize {
        self.dense.len() + self.quant.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
