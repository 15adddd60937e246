//! Named weight tensors, always under Hugging Face names (`model.layers.3.self_attn.q_proj.weight`),
//! whatever file they came from.

use std::collections::HashMap;

use candle_core::Tensor;

use super::{ModelError, Result};

#[derive(Clone, Default)]
pub struct Weights {
    map: HashMap<String, Tensor>,
}

impl Weights {
    pub fn new(map: HashMap<String, Tensor>) -> Self {
        Self { map }
    }
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map
            .get(name)
            .ok_or_else(|| ModelError::MissingWeight(name.to_string()))
    }
    /// The tensor under `name`, checked against the expected shape.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<&Tensor> {
        let t = self.get(name)?;
        if t.dims() != expected {
            return Err(ModelError::BadShape {
                name: name.to_string(),
                got: t.dims().to_vec(),
                expected: expected.to_vec(),
            });
        }
        Ok(t)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.map.insert(name.into(), t);
    }
    /// The underlying name → tensor map (e.g. for a candle `VarBuilder`).
    pub fn map(&self) -> &HashMap<String, Tensor> {
        &self.map
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
