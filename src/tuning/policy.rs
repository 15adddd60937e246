//! The model being tuned, and two transformers over the same storage — one that builds a graph
//! through the trained weights (training), one over detached views of them (sampling, π_old),
//! so generation never records a graph.
//!
//! A full fine-tune trains every weight as a dense `Var`. With LoRA ([`super::lora`]) only the
//! factors are `Var`s: each adapted matrix is read as `x·W₀ᵀ + s·(x·Aᵀ)·Bᵀ`
//! ([`Linear::LowRank`]) over the frozen `W₀` as the start holds it (a GGUF's matrices stay
//! quantized), so `W₀ + s·B·A` is formed only when a checkpoint is saved, one weight at a time ([`Policy::weight_files`]),
//! and the frozen weights exist once: the same transformer over them is the frozen reference
//! ([`Policy::frozen`]). Either way an optimiser step writes the `Var`s in place and both
//! transformers see it at once (a detached view shares its tensor's storage).

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};

use super::lora::{self, LoraConfig};
use crate::model::deferred::{self, Deferred};
use crate::model::hooked::{ForwardInput, HookedTransformer, Hooks, Pieces};
use crate::model::linear::Linear;
use crate::model::packing::Packing;
use crate::model::{ops, Model, Weights};

/// Trainable weights of one model.
pub struct Policy {
    /// Names of the trained tensors, in the order of gradients, optimiser state and hashes:
    /// every weight, sorted (full fine-tune), or each target's `lora_A`, `lora_B` (LoRA).
    pub names: Vec<String>,
    pub vars: Vec<Var>,
    /// Differentiable in the trained tensors.
    pub train: HookedTransformer,
    /// The same weights, detached: forwards build no graph.
    pub infer: HookedTransformer,
    /// The start model's description (config, tokenizer, template), weights not used.
    pub start: Arc<Model>,
    pub dtype: DType,
    adapters: Option<Adapters>,
}

/// LoRA's frozen side.
struct Adapters {
    config: LoraConfig,
    /// The start's weights in the run's dtype (the start's own storage when the dtypes agree).
    frozen: Weights,
    /// The forward over `frozen` alone: the start model.
    frozen_tf: HookedTransformer,
    /// Adapted weight names (sorted); target `i`'s factors are `vars[2i]` (A) and `vars[2i+1]` (B).
    targets: Vec<String>,
}

fn to_model_err(e: crate::model::ModelError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// `start` with other weights (config, tokenizer and template shared).
fn model_with(start: &Model, weights: Weights, dtype: DType) -> Model {
    Model {
        config: start.config.clone(),
        weights,
        source: start.source.clone(),
        device: start.device.clone(),
        dtype,
        tokenizer: start.tokenizer.clone(),
        chat_template: start.chat_template.clone(),
    }
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
        drop(dense);
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

    /// LoRA adapters on `start` at PEFT's initialisation (`B` = 0: the start model's forward),
    /// target `i`'s `A` drawn from a generator seeded with `seed_of(i)`.
    pub fn with_lora(
        start: Arc<Model>,
        config: LoraConfig,
        seed_of: &dyn Fn(usize) -> u64,
        dtype: DType,
    ) -> Result<Self> {
        Self::lora_from(start, config, dtype, &|i, _, out, inp| {
            lora::init_factors(out, inp, config.rank, seed_of(i), dtype, &Device::Cpu)
        })
    }

    /// LoRA adapters with the given factors (names as [`lora::factor_names`]), e.g. a checkpoint's.
    pub fn with_lora_values(
        start: Arc<Model>,
        config: LoraConfig,
        factors: &HashMap<String, Tensor>,
        dtype: DType,
    ) -> Result<Self> {
        let n_targets = start.weights.names().filter(|n| lora::is_target(n)).count();
        if factors.len() != 2 * n_targets {
            candle_core::bail!(
                "the checkpoint holds {} lora factors, the start model has {n_targets} adapted \
                 weights (two factors each)",
                factors.len()
            );
        }
        Self::lora_from(start, config, dtype, &|_, target, out, inp| {
            let (an, bn) = lora::factor_names(target);
            let get = |name: &str, want: [usize; 2]| -> Result<Var> {
                let t = factors.get(name).ok_or_else(|| {
                    candle_core::Error::Msg(format!("the checkpoint has no lora factor `{name}`"))
                })?;
                if t.dims() != want {
                    candle_core::bail!(
                        "lora factor `{name}` has shape {:?}, expected {want:?}",
                        t.dims()
                    );
                }
                Var::from_tensor(&t.to_dtype(dtype)?)
            };
            Ok((get(&an, [config.rank, inp])?, get(&bn, [out, config.rank])?))
        })
    }

    /// `make(i, target, out, in)` gives target `i`'s factors (A, B).
    #[allow(clippy::type_complexity)] // `make` is one closure type, named once
    fn lora_from(
        start: Arc<Model>,
        config: LoraConfig,
        dtype: DType,
        make: &dyn Fn(usize, &str, usize, usize) -> Result<(Var, Var)>,
    ) -> Result<Self> {
        // In the start's own dtype the frozen weights are the start's (shared storage; a GGUF's
        // quantized matrices stay quantized); otherwise dense copies in `dtype`.
        let frozen = if start.dtype == dtype {
            start.weights.clone()
        } else {
            let dense = start.weights.dense_map().map_err(to_model_err)?;
            Weights::new(
                dense
                    .into_iter()
                    .map(|(n, t)| Ok((n, t.to_dtype(dtype)?)))
                    .collect::<Result<_>>()?,
            )
        };
        let mut targets: Vec<String> = frozen
            .names()
            .filter(|n| lora::is_target(n))
            .cloned()
            .collect();
        targets.sort();
        if targets.is_empty() {
            candle_core::bail!("the model has no q/k/v/o or MLP projection weights for lora");
        }
        let mut names = Vec::with_capacity(2 * targets.len());
        let mut vars = Vec::with_capacity(2 * targets.len());
        for (i, t) in targets.iter().enumerate() {
            let shape = frozen.shape(t).map_err(to_model_err)?;
            let [out, inp] = shape[..] else {
                candle_core::bail!("lora target `{t}` is not a matrix: shape {shape:?}");
            };
            let (a, b) = make(i, t, out, inp)?;
            let (an, bn) = lora::factor_names(t);
            names.extend([an, bn]);
            vars.push(Var::from_tensor(&a.as_tensor().to_device(&start.device)?)?);
            vars.push(Var::from_tensor(&b.as_tensor().to_device(&start.device)?)?);
        }
        let frozen_tf = HookedTransformer::new(&model_with(&start, frozen.clone(), dtype))
            .map_err(to_model_err)?;
        let index: HashMap<&str, usize> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let s = config.scaling();
        // `detach`: the sampling forward's view of the factors (same storage, no graph).
        let adapt = |detach: bool| -> Result<HookedTransformer> {
            let mut seen = 0usize;
            let tf = frozen_tf.map_projections(&mut |name, w| match index.get(name) {
                Some(&i) => {
                    seen += 1;
                    let (a, b) = (vars[2 * i].as_tensor(), vars[2 * i + 1].as_tensor());
                    let (a, b) = if detach {
                        (a.detach(), b.detach())
                    } else {
                        (a.clone(), b.clone())
                    };
                    Linear::low_rank(w.clone(), a, b, s)
                }
                None => Ok(w.clone()),
            })?;
            if seen != targets.len() {
                candle_core::bail!(
                    "lora: the forward reads {seen} of the {} adapted weights",
                    targets.len()
                );
            }
            Ok(tf)
        };
        let train = adapt(false)?;
        let infer = adapt(true)?;
        Ok(Self {
            names,
            vars,
            train,
            infer,
            start,
            dtype,
            adapters: Some(Adapters {
                config,
                frozen,
                frozen_tf,
                targets,
            }),
        })
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
            HookedTransformer::new(&model_with(&start, Weights::new(map), dtype))
                .map_err(to_model_err)
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
            adapters: None,
        })
    }

    /// The LoRA settings, if this policy trains adapters.
    pub fn lora(&self) -> Option<LoraConfig> {
        self.adapters.as_ref().map(|a| a.config)
    }

    /// The frozen start model over the weights a LoRA policy adapts (the same storage, held
    /// once): the reference forward of the KL term. `None` for a full fine-tune.
    pub fn frozen(&self) -> Option<&HookedTransformer> {
        self.adapters.as_ref().map(|a| &a.frozen_tf)
    }

    /// The model's weights under their HF names, each made when asked for (no graph): the
    /// trained ones, or with LoRA every weight with the adapters merged in (`W₀ + (B·A)·s`;
    /// quantized frozen weights dequantized) — a plain model that `load` and HF read. A
    /// checkpoint writes them one at a time, so LoRA's merged weights never exist all at once.
    pub fn weight_files(&self) -> Result<Vec<Deferred<'_>>> {
        let Some(ad) = &self.adapters else {
            return Ok(self
                .names
                .iter()
                .zip(&self.vars)
                .map(|(n, v)| Deferred::of(n.clone(), v.as_tensor()))
                .collect());
        };
        let s = ad.config.scaling();
        let mut names: Vec<&String> = ad.frozen.names().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let shape = ad.frozen.shape(n).map_err(to_model_err)?;
                let factors = ad.targets.binary_search(n).ok().map(|i| {
                    (
                        self.vars[2 * i].as_tensor(),
                        self.vars[2 * i + 1].as_tensor(),
                    )
                });
                Ok(Deferred::new(n.clone(), self.dtype, shape, move || {
                    let w = ad
                        .frozen
                        .dense(n)
                        .map_err(to_model_err)?
                        .to_dtype(self.dtype)?;
                    match factors {
                        Some((a, b)) => lora::merge(&w, a, b, s),
                        None => Ok(w),
                    }
                }))
            })
            .collect()
    }

    /// [`Policy::weight_files`] made, all at once.
    pub fn values(&self) -> Result<HashMap<String, Tensor>> {
        deferred::materialize(&self.weight_files()?)
    }

    /// The trained tensors under their names (shared storage, no graph): every weight of a full
    /// fine-tune, or the LoRA factors.
    pub fn trained(&self) -> HashMap<String, Tensor> {
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
    let hooks = Hooks {
        logits_from: prompt.len() - 1,
        ..Default::default()
    };
    let ids = answer_input(prompt, answer)?;
    let logits = tf.forward(ForwardInput::Ids(&ids), &hooks, None)?.logits;
    ops::log_softmax_pick(&logits, answer)
}

/// [`answer_logprobs`] (the same values, bit for bit with autograd pieces; up to rounding where
/// the layers are taped, [`HookedTransformer::taped_fits`]) with its forward cut at the layer
/// boundaries, so that [`Pieces::backward`] yields the weight gradients one layer at a time
/// rather than all at once: a full fine-tune then never holds a whole extra gradient set.
pub fn answer_logprobs_pieces(
    tf: &HookedTransformer,
    prompt: &[u32],
    answer: &[u32],
) -> Result<(Tensor, Pieces)> {
    let ids = answer_input(prompt, answer)?;
    if tf.taped_fits() {
        // One sequence is a packing of one tail (the taped path's head reads rows).
        let packing = Packing::new(0, vec![ids.len()])?;
        let rows = (prompt.len() - 1..ids.len())
            .map(row_id)
            .collect::<Result<Vec<_>>>()?;
        return tf.logprobs_pieces_packed(&ids, &packing, &rows, answer);
    }
    let (logits, pieces) = tf.forward_pieces(&ids, prompt.len() - 1)?;
    Ok((ops::log_softmax_pick(&logits, answer)?, pieces))
}

/// `prompt ++ answer[..n-1]`: the positions whose next token is an answer token.
fn answer_input(prompt: &[u32], answer: &[u32]) -> Result<Vec<u32>> {
    if prompt.is_empty() || answer.is_empty() {
        candle_core::bail!("answer_logprobs needs a non-empty prompt and answer");
    }
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(&answer[..answer.len() - 1]);
    Ok(ids)
}

/// Several answers scored in one packed forward ([`Packing`]): the weights are read once for
/// all their rows, and answers to one prompt share its rows (computed once, their gradients
/// summed). Each answer's log-probabilities are those of [`answer_logprobs`] on its own, up to
/// the matmuls' summation order.
pub struct PackedAnswers {
    ids: Vec<u32>,
    packing: Packing,
    /// For each answer token in order, the row whose logits predict it.
    rows: Vec<u32>,
    /// The answer tokens, answer after answer.
    targets: Vec<u32>,
    lens: Vec<usize>,
}

fn row_id(r: usize) -> Result<u32> {
    u32::try_from(r).map_err(|_| candle_core::Error::Msg(format!("row {r} of a packed forward")))
}

impl PackedAnswers {
    /// Answers to one prompt: rows `prompt ++ a₁[..n₁-1] ++ a₂[..n₂-1] ++ …`.
    pub fn shared(prompt: &[u32], answers: &[&[u32]]) -> Result<Self> {
        if prompt.is_empty() || answers.is_empty() || answers.iter().any(|a| a.is_empty()) {
            candle_core::bail!("packed answers need a non-empty prompt and non-empty answers");
        }
        let packing = Packing::new(prompt.len(), answers.iter().map(|a| a.len() - 1).collect())?;
        let mut ids = prompt.to_vec();
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for (a, start) in answers.iter().zip(packing.tail_starts()) {
            ids.extend_from_slice(&a[..a.len() - 1]);
            // The prompt's last row predicts every answer's first token.
            rows.push(row_id(prompt.len() - 1)?);
            for t in 0..a.len() - 1 {
                rows.push(row_id(start + t)?);
            }
            targets.extend_from_slice(a);
        }
        Ok(Self {
            ids,
            packing,
            rows,
            targets,
            lens: answers.iter().map(|a| a.len()).collect(),
        })
    }

    /// Answers to different prompts, `(prompt, answer)` each: independent sequences side by side.
    pub fn separate(pairs: &[(&[u32], &[u32])]) -> Result<Self> {
        if pairs.is_empty() {
            candle_core::bail!("packed answers need at least one answer");
        }
        let mut ids = Vec::new();
        let (mut rows, mut targets, mut tails) = (Vec::new(), Vec::new(), Vec::new());
        for (prompt, answer) in pairs {
            let seq = answer_input(prompt, answer)?;
            let start = ids.len();
            for t in 0..answer.len() {
                rows.push(row_id(start + prompt.len() - 1 + t)?);
            }
            tails.push(seq.len());
            ids.extend(seq);
            targets.extend_from_slice(answer);
        }
        Ok(Self {
            ids,
            packing: Packing::new(0, tails)?,
            rows,
            targets,
            lens: pairs.iter().map(|(_, a)| a.len()).collect(),
        })
    }

    /// Rows of the packed forward.
    pub fn rows(&self) -> usize {
        self.packing.rows()
    }

    /// The log-probabilities of the answers, one `[len]` tensor each, with no graph cut
    /// (`tf` without trained weights: the reference, π_old).
    pub fn logprobs(&self, tf: &HookedTransformer) -> Result<Vec<Tensor>> {
        let logits = tf.forward_packed(&self.ids, &self.packing, &self.rows)?;
        self.split(&ops::log_softmax_pick(&logits, &self.targets)?)
    }

    /// [`Self::logprobs`] with the forward cut at the layer boundaries (see
    /// [`answer_logprobs_pieces`]): differentiable in a policy's trained weights.
    pub fn logprobs_pieces(&self, tf: &HookedTransformer) -> Result<(Vec<Tensor>, Pieces)> {
        let (lp, pieces) =
            tf.logprobs_pieces_packed(&self.ids, &self.packing, &self.rows, &self.targets)?;
        Ok((self.split(&lp)?, pieces))
    }

    fn split(&self, lp: &Tensor) -> Result<Vec<Tensor>> {
        let mut start = 0;
        self.lens
            .iter()
            .map(|&n| {
                let t = lp.narrow(0, start, n);
                start += n;
                t
            })
            .collect()
    }
}

/// Consecutive runs of items (ranges of indices into `rows`, each item's own rows in a packed
/// forward) that fit in `budget` rows together with `base` shared rows (a prompt), each run at
/// least one item: a packed backward's memory grows with its rows.
pub fn runs_within(base: usize, rows: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut total = base;
    for (i, &n) in rows.iter().enumerate() {
        if i > start && total + n > budget {
            out.push(start..i);
            start = i;
            total = base;
        }
        total += n;
    }
    if start < rows.len() {
        out.push(start..rows.len());
    }
    out
}

/// Hash of a model's weights (names, shapes and dense f32 values, in name order): identifies the
/// start of a run, so a resume or a comparison can check it was given the same model. One
/// weight at a time (a GGUF's dequantized, its bytes fed in slices): the f32 copy of the whole
/// model it once made was a LoRA run's peak. The bytes hashed, and so the hash, are unchanged.
pub fn weights_hash(model: &Model) -> std::result::Result<String, crate::model::ModelError> {
    let mut names: Vec<&String> = model.weights.names().collect();
    names.sort();
    let mut h = blake3::Hasher::new();
    for n in names {
        let t = model.weights.dense(n)?;
        h.update(n.as_bytes());
        for d in t.dims() {
            h.update(&(*d as u64).to_le_bytes());
        }
        let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        drop(t);
        for part in v.chunks(1 << 16) {
            let bytes: Vec<u8> = part.iter().flat_map(|x| x.to_le_bytes()).collect();
            h.update(&bytes);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}
