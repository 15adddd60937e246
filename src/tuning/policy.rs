//! The model being tuned: every weight a dense `Var`, and two transformers over the same storage
//! — one that builds a graph through the weights (training), one over detached views of them
//! (sampling, π_old), so generation never records a graph. An optimiser step writes the `Var`s
//! in place and both see it at once.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};

use crate::model::hooked::{ForwardInput, HookedTransformer, Hooks};
use crate::model::{ops, Model, Weights};

/// Trainable weights of one model.
pub struct Policy {
    /// Weight names, sorted (the order of gradients, optimiser state and hashes).
    pub names: Vec<String>,
    pub vars: Vec<Var>,
    /// Differentiable in the weights.
    pub train: HookedTransformer,
    /// The same weights, detached: forwards build no graph.
    pub infer: HookedTransformer,
    /// The start model's description (config, tokenizer, template), weights not used.
    pub start: Arc<Model>,
    pub dtype: DType,
}

fn to_model_err(e: crate::model::ModelError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl Policy {
    /// Dense copies of `start`'s weights in `dtype` (a GGUF's quantized matrices are
    /// dequantized: the same f32 values a dense load gives).
    pub fn new(start: Arc<Model>, dtype: DType) -> Result<Self> {
        let dense = start.weights.dense_map().map_err(to_model_err)?;
        let mut names: Vec<String> = dense.keys().cloned().collect();
        names.sort();
        let vars = names
            .iter()
            .map(|n| Var::from_tensor(&dense[n].to_dtype(dtype)?.to_device(&start.device)?))
            .collect::<Result<Vec<_>>>()?;
        Self::assemble(start, names, vars, dtype)
    }

    /// A policy whose weights are `values` (same names as `start`'s), e.g. a checkpoint.
    pub fn with_values(
        start: Arc<Model>,
        values: &HashMap<String, Tensor>,
        dtype: DType,
    ) -> Result<Self> {
        let expected: Vec<String> = {
            let mut v: Vec<String> = start.weights.names().cloned().collect();
            v.sort();
            v
        };
        let mut names: Vec<String> = values.keys().cloned().collect();
        names.sort();
        if names != expected {
            candle_core::bail!(
                "the checkpoint's weights ({} tensors) are not the start model's ({} tensors)",
                names.len(),
                expected.len()
            );
        }
        let vars = names
            .iter()
            .map(|n| {
                let want = start.weights.shape(n).map_err(to_model_err)?;
                let t = &values[n];
                if t.dims() != want.as_slice() {
                    candle_core::bail!(
                        "checkpoint weight `{n}` has shape {:?}, expected {want:?}",
                        t.dims()
                    );
                }
                Var::from_tensor(&t.to_dtype(dtype)?.to_device(&start.device)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::assemble(start, names, vars, dtype)
    }

    fn assemble(
        start: Arc<Model>,
        names: Vec<String>,
        vars: Vec<Var>,
        dtype: DType,
    ) -> Result<Self> {
        let build = |detach: bool| -> Result<HookedTransformer> {
            let map: HashMap<String, Tensor> = names
                .iter()
                .zip(&vars)
                .map(|(n, v)| {
                    let t = if detach {
                        v.as_tensor().detach()
                    } else {
                        v.as_tensor().clone()
                    };
                    (n.clone(), t)
                })
                .collect();
            let m = Model {
                config: start.config.clone(),
                weights: Weights::new(map),
                source: start.source.clone(),
                device: start.device.clone(),
                dtype,
                tokenizer: start.tokenizer.clone(),
                chat_template: start.chat_template.clone(),
            };
            HookedTransformer::new(&m).map_err(to_model_err)
        };
        let train = build(false)?;
        let infer = build(true)?;
        Ok(Self {
            names,
            vars,
            train,
            infer,
            start,
            dtype,
        })
    }

    /// The current weights as plain tensors under their names (shared storage, no graph).
    pub fn values(&self) -> HashMap<String, Tensor> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
            .collect()
    }

    /// Number of trained scalars.
    pub fn n_params(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    pub fn device(&self) -> &Device {
        &self.start.device
    }
}

/// `log π(answer_t | prompt, answer_<t)` for every answer token, `[answer.len()]`: one forward
/// over `prompt ++ answer[..n-1]`, logits only over the answer's positions. Differentiable in
/// the weights when `tf` is a policy's `train` transformer.
pub fn answer_logprobs(tf: &HookedTransformer, prompt: &[u32], answer: &[u32]) -> Result<Tensor> {
    if prompt.is_empty() || answer.is_empty() {
        candle_core::bail!("answer_logprobs needs a non-empty prompt and answer");
    }
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(&answer[..answer.len() - 1]);
    let hooks = Hooks {
        logits_from: prompt.len() - 1,
        ..Default::default()
    };
    let logits = tf.forward(ForwardInput::Ids(&ids), &hooks, None)?.logits;
    let lp = ops::log_softmax_last_dim(&logits)?;
    let idx = Tensor::new(answer, tf.device())?.unsqueeze(1)?;
    lp.gather(&idx, 1)?.squeeze(1)
}

/// Hash of a model's weights (names, shapes and dense f32 values, in name order): identifies the
/// start of a run, so a resume or a comparison can check it was given the same model.
pub fn weights_hash(model: &Model) -> std::result::Result<String, crate::model::ModelError> {
    let dense = model.weights.dense_map()?;
    let mut names: Vec<&String> = dense.keys().collect();
    names.sort();
    let mut h = blake3::Hasher::new();
    for n in names {
        let t = dense[n].to_dtype(DType::F32)?.flatten_all()?;
        h.update(n.as_bytes());
        for d in dense[n].dims() {
            h.update(&(*d as u64).to_le_bytes());
        }
        let v = t.to_vec1::<f32>()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex().to_string())
}
