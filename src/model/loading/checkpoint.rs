//! What every file-format reader produces ([`Checkpoint`]) and the checks every reader and
//! writer applies to it: weights only in float types, tensors against the family's manifest.
//! Below the readers (`gguf`, `safetensors_dir`), the writer (`save`) and `load`, which all
//! import it; it imports none of them.

use std::collections::HashMap;

use candle_core::DType;

use crate::model::config::ModelConfig;
use crate::model::error::{ModelError, Result};
use crate::model::text::tokenizer::TextTokenizer;
use crate::model::weights::Weights;

/// What every file-format reader produces; `load` turns it into a [`Model`](crate::model::Model).
pub struct Checkpoint {
    pub config: ModelConfig,
    pub weights: Weights,
    pub tokenizer: TextTokenizer,
    pub chat_template: Option<String>,
}

/// Weights are only ever held in float types; the forward and attribution need them.
pub(crate) fn check_float_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F64 | DType::BF16 | DType::F16 => Ok(()),
        other => Err(ModelError::Device(format!(
            "unsupported dtype `{}` for weights: expected f32, f64, bf16 or f16",
            other.as_str()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// shape validation

/// Every weight the forward of `cfg.family` reads, with the shape it must have (HF names): the
/// architecture's manifest ([`crate::model::arch::manifest`]) as (name, shape) pairs.
pub fn expected_weights(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    crate::model::arch::manifest(cfg)
        .into_iter()
        .map(|w| (w.name, w.shape))
        .collect()
}

/// A tensor of a checkpoint as the manifest check sees it.
pub struct PresentTensor {
    /// The HF name it maps to, or `None` if it maps to no weight rlq knows.
    pub hf_name: Option<String>,
    /// Its name in the file, for messages.
    pub file_name: String,
    pub shape: Vec<usize>,
}

/// Checks a checkpoint's tensors against the manifest ([`expected_weights`]): every expected
/// weight present with its shape, and no tensor the architecture does not use (a file whose
/// metadata claims fewer layers than it holds is refused, not run as a smaller model).
/// A tied checkpoint may still carry `lm_head.weight` (some exporters write both); it must then
/// have the embedding's shape.
pub fn check_manifest(cfg: &ModelConfig, present: &[PresentTensor]) -> Result<()> {
    let by_hf: HashMap<&str, &PresentTensor> = present
        .iter()
        .filter_map(|t| Some((t.hf_name.as_deref()?, t)))
        .collect();
    let mut expected = expected_weights(cfg);
    if cfg.tie_embeddings && by_hf.contains_key("lm_head.weight") {
        expected.push(("lm_head.weight".into(), vec![cfg.vocab_size, cfg.d_model]));
    }
    for (name, shape) in &expected {
        let t = by_hf
            .get(name.as_str())
            .ok_or_else(|| ModelError::MissingWeight(name.clone()))?;
        if &t.shape != shape {
            return Err(ModelError::BadShape {
                name: name.clone(),
                got: t.shape.clone(),
                expected: shape.clone(),
            });
        }
    }
    let wanted: std::collections::HashSet<&str> =
        expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut unused: Vec<&str> = present
        .iter()
        .filter(|t| !t.hf_name.as_deref().is_some_and(|n| wanted.contains(n)))
        .map(|t| t.file_name.as_str())
        .collect();
    if !unused.is_empty() {
        unused.sort_unstable();
        const SHOWN: usize = 8;
        let more = unused.len().saturating_sub(SHOWN);
        let mut list = unused[..unused.len().min(SHOWN)].join(", ");
        if more > 0 {
            list += &format!(" and {more} more");
        }
        return Err(ModelError::Format(format!(
            "{} tensor(s) are not used by a {}-layer {} with this config: {list}; the metadata \
             (e.g. the layer count) does not describe these weights",
            unused.len(),
            cfg.n_layers,
            cfg.family.name()
        )));
    }
    Ok(())
}

/// Checks loaded weights against the manifest (see [`check_manifest`]).
pub fn validate_weights(cfg: &ModelConfig, weights: &Weights) -> Result<()> {
    let present = weights
        .names()
        .map(|n| -> Result<PresentTensor> {
            Ok(PresentTensor {
                hf_name: Some(n.clone()),
                file_name: n.clone(),
                shape: weights.shape(n)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_manifest(cfg, &present)
}
