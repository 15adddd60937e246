//! The hooked forward: one plain transformer forward for every supported family, which can
//! (a) record every source (embedding, attention blocks or heads, MLPs) and (b) give q, k, v, each
//! MLP and the final norm their *own* copy of the residual stream, to which the caller adds an
//! offset tensor. Differentiating the loss with respect to a zero offset gives the path-specific
//! gradient at each destination; adding `-O_u` to one destination ablates one edge exactly.
//!
//! Families differ only in data: the switches of [`ForwardTraits`] (where the norms sit, the q/k
//! norm, activation, embedding scale, per-layer rope and window), resolved once from the
//! family's `arch` file when the transformer is built, so they share this one file.

use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, IndexOp, Result, Tensor, Var, D};

use super::attention;
use super::hooks::HookLayout;
use super::mlp::glu_down;
use super::packing::Packing;
use super::tape::{self, HeadTape, LayerShape, LayerTape};
use crate::model::arch::{ForwardTraits, QkNorm};
use crate::model::config::ModelConfig;
use crate::model::error::ModelError;
use crate::model::kernels::decode_attention::{self, KvBuf};
use crate::model::kernels::ops;
use crate::model::weights::linear::Linear;
use crate::model::Model;

/// One decoder layer's weights, resolved and shape-checked once.
#[derive(Clone)]
pub(super) struct LayerWeights {
    /// Norm on the attention's input copies (none under post-norm).
    pub(super) input_norm: Option<Tensor>,
    pub(super) wq: Linear,
    pub(super) wk: Linear,
    pub(super) wv: Linear,
    pub(super) bq: Option<Tensor>,
    pub(super) bk: Option<Tensor>,
    pub(super) bv: Option<Tensor>,
    pub(super) q_norm: Option<Tensor>,
    pub(super) k_norm: Option<Tensor>,
    pub(super) wo: Linear,
    /// Norm applied to the attention output (sandwich and post-norm).
    pub(super) post_attn_norm: Option<Tensor>,
    /// Norm in front of the MLP (`post_attention_layernorm` for pre-norm models,
    /// `pre_feedforward_layernorm` for sandwich norms, none under post-norm).
    pub(super) mlp_norm: Option<Tensor>,
    /// Norm applied to the MLP output (sandwich and post-norm).
    pub(super) post_mlp_norm: Option<Tensor>,
    pub(super) w_gate: Linear,
    pub(super) w_up: Linear,
    pub(super) w_down: Linear,
    pub(super) rope_theta: f64,
    pub(super) rope_scaling: crate::model::config::RopeScaling,
    pub(super) window: Option<usize>,
}

/// A transformer ready for hooked forwards, holding (cheap, shared) handles to the weights.
#[derive(Clone)]
pub struct HookedTransformer {
    pub config: ModelConfig,
    /// The family's switches, resolved from `config` once.
    traits: ForwardTraits,
    embed: Linear,
    layers: Vec<LayerWeights>,
    final_norm: Tensor,
    lm_head: Linear,
    dtype: DType,
    device: Device,
    /// Whether [`Self::forward_pieces`] may take the hand-written layer backward
    /// ([`super::tape`]) where the layers fit it (the default); off, autograd pieces.
    taped: bool,
}

/// What to feed: token ids, or embeddings (already scaled) for integrated gradients.
pub enum ForwardInput<'a> {
    Ids(&'a [u32]),
    Embeds(Tensor),
}

/// Hooks for one forward. The default is a plain forward.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Slot layout; required when recording sources or adding destination offsets.
    pub layout: Option<&'a HookLayout>,
    /// Added to each destination's private residual copy.
    pub dest_offsets: Option<&'a DestOffsets>,
    /// Stack every source output into `ForwardOutput::sources`.
    pub record_sources: bool,
    /// Compute logits only for positions `logits_from..seq` (the loss window): the unembedding
    /// is a large share of a small model's cost, and positions before the window cannot affect
    /// a loss over it.
    pub logits_from: usize,
}

/// Offsets for the destinations, either as one `[n_dests, seq, d_model]` tensor or as one
/// tensor per group of slots that one projection reads (a layer's q, k, v, mlp; logits).
///
/// Gradients are taken with `Groups` of separate `Var`s: candle's backward of `narrow` pads the
/// gradient to the full parent shape, so narrowing one big `Var` per destination would cost a
/// full `[n_dests, seq, d]` tensor per destination.
pub enum DestOffsets {
    Stacked(Tensor),
    Groups {
        /// First slot of each group, ascending.
        starts: Vec<usize>,
        tensors: Vec<Tensor>,
    },
    /// Offsets computed during the forward from the sources it has produced so far (circuit
    /// evaluation ablates an edge relative to the *intervened* run's own source output). Needs
    /// `Hooks::record_sources`.
    FromSources(Box<dyn SourceOffsets>),
}

/// Offsets that depend on this forward's own sources: `offsets(start, count, sources)` gets the
/// chunks recorded so far (each `[k, seq, d]`, in slot order: every source before slots
/// `start..start+count` in the residual order) and returns `[count, seq, d]`.
pub trait SourceOffsets {
    fn offsets(&self, start: usize, count: usize, sources: &[Tensor]) -> Result<Tensor>;
}

impl DestOffsets {
    /// Slot groups of a layout as (first slot, slot count), in slot order.
    pub fn group_bounds(layout: &HookLayout) -> Vec<(usize, usize)> {
        let (nq, nk, nv) = layout.qkv_slots();
        let mut out = Vec::new();
        for l in 0..layout.n_layers {
            let s = layout.dest_layer_start(l);
            out.extend([
                (s, nq),
                (s + nq, nk),
                (s + nq + nk, nv),
                (s + nq + nk + nv, 1),
            ]);
        }
        out.push((layout.dest_logits(), 1));
        out
    }

    /// Zero offsets as separate `Var`s per group, for gradients.
    pub fn zero_vars(
        layout: &HookLayout,
        seq: usize,
        d: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, Vec<candle_core::Var>)> {
        let bounds = Self::group_bounds(layout);
        let vars = bounds
            .iter()
            .map(|&(_, n)| candle_core::Var::zeros((n, seq, d), dtype, device))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            DestOffsets::Groups {
                starts: bounds.iter().map(|b| b.0).collect(),
                tensors: vars.iter().map(|v| v.as_tensor().clone()).collect(),
            },
            vars,
        ))
    }

    /// Gradients of `vars` (from `zero_vars`) stacked as `[n_dests, seq, d]`; a group the loss
    /// does not reach gets zeros.
    pub fn stack_grads(
        grads: &candle_core::backprop::GradStore,
        vars: &[candle_core::Var],
    ) -> Result<Tensor> {
        let parts = vars
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    fn slots(&self, start: usize, count: usize, sources: &[Tensor]) -> Result<Tensor> {
        match self {
            DestOffsets::FromSources(f) => f.offsets(start, count, sources),
            DestOffsets::Stacked(t) => t.narrow(0, start, count),
            DestOffsets::Groups { starts, tensors } => match starts.binary_search(&start) {
                Ok(i) if tensors[i].dim(0)? == count => Ok(tensors[i].clone()),
                _ => candle_core::bail!("no offset group for slots {start}..{}", start + count),
            },
        }
    }

    fn check_shape(&self, n_dests: usize, seq: usize, d: usize) -> Result<()> {
        match self {
            DestOffsets::Stacked(t) if t.dims() != [n_dests, seq, d] => candle_core::bail!(
                "destination offsets have shape {:?}, expected {:?}",
                t.dims(),
                [n_dests, seq, d]
            ),
            DestOffsets::Groups { tensors, .. } => {
                let n: usize = tensors.iter().map(|t| t.dim(0).unwrap_or(0)).sum();
                for t in tensors {
                    if t.dims()[1..] != [seq, d] {
                        candle_core::bail!("destination offset group has shape {:?}", t.dims());
                    }
                }
                if n != n_dests {
                    candle_core::bail!("offset groups cover {n} slots, expected {n_dests}");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

pub struct ForwardOutput {
    /// `[seq - logits_from, vocab]`.
    pub logits: Tensor,
    /// `[n_sources, seq, d_model]` when recorded.
    pub sources: Option<Tensor>,
}

/// Keys and values of earlier positions, per layer, for incremental decoding.
#[derive(Default, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
}

/// One layer's cached keys and values.
#[derive(Clone)]
enum LayerKv {
    /// `[kv, t, dh]` tensors: a prefill's, on any device and dtype.
    Tensors(Tensor, Tensor),
    /// Growable host buffers, appended in place: decoding on CPU in f32
    /// ([`decode_attention`]).
    Host(KvBuf, KvBuf),
}

impl LayerKv {
    /// As `[kv, t, dh]` tensors (a copy of host buffers).
    fn tensors(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            LayerKv::Tensors(k, v) => Ok((k.clone(), v.clone())),
            LayerKv::Host(k, v) => {
                let shape = (k.heads(), k.len(), k.head_dim());
                let t = |b: &KvBuf| {
                    Tensor::from_vec(b.to_rows(), shape, like.device())?.to_dtype(like.dtype())
                };
                Ok((t(k)?, t(v)?))
            }
        }
    }

    /// As host buffers with room to grow (converted once, on a sequence's first decoded token).
    fn into_host(self) -> Result<(KvBuf, KvBuf)> {
        match self {
            LayerKv::Host(k, v) => Ok((k, v)),
            LayerKv::Tensors(k, v) => {
                let (heads, len, dh) = k.dims3()?;
                let buf = |t: &Tensor| -> Result<KvBuf> {
                    let rows = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    Ok(KvBuf::from_rows(&rows, heads, len, dh, len.max(64)))
                };
                Ok((buf(&k)?, buf(&v)?))
            }
        }
    }
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }
    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a layer's keys and values go: nowhere, one sequence's cache, or one cache per row
/// (a batch of sequences decoded one token each).
enum LayerCache<'c> {
    None,
    One(&'c mut Option<LayerKv>),
    Rows(Vec<&'c mut Option<LayerKv>>),
}

/// A forward cut at its layer boundaries ([`HookedTransformer::forward_pieces`]).
pub struct Pieces {
    /// The embedding's output (graph to the embedding weight).
    embedded: Tensor,
    layers: PieceLayers,
    /// The final norm's input, a leaf.
    top: Var,
    /// A taped head ([`HookedTransformer::logprobs_pieces_packed`]): the log-probabilities as
    /// a leaf (the loss's graph starts there) and the head's tape.
    head: Option<(Var, HeadTape)>,
}

/// The layers of a [`Pieces`].
enum PieceLayers {
    /// Per layer: its input as a leaf, and its output (graph back to that leaf).
    Graph(Vec<(Var, Tensor)>),
    /// Per layer, its tape for the hand-written backward.
    Taped(Vec<LayerTape>),
}

impl Pieces {
    /// The gradients of `loss` (a function of the logits of the same `forward_pieces`), one
    /// piece at a time: `sink(grads)` gets first those of the final norm and unembedding, then
    /// each layer's from the last to the first, then the embedding's. Each piece's backward
    /// starts from the gradient its output received (`sum(out ⊙ g)` has gradient `g` exactly),
    /// and nodes inside a layer are visited in the same order as in one backward of the whole
    /// graph, so every piece's gradients equal the whole backward's bit for bit; a weight used
    /// in two pieces (tied embeddings) gets one gradient from each, in this order. Their sum can
    /// differ from the whole backward's in rounding: there the embedding's rows are index-added
    /// onto the unembedding's gradient, here summed first (rows of a repeated token). Taped
    /// layers ([`super::tape`]) give autograd's gradients up to rounding instead (their own
    /// order of sums). A layer's activations are freed once its piece is done.
    pub fn backward(
        self,
        loss: &Tensor,
        sink: &mut dyn FnMut(GradStore) -> Result<()>,
    ) -> Result<()> {
        let Pieces {
            embedded,
            layers,
            top,
            head,
        } = self;
        let mut grads = loss.backward()?;
        let mut upstream = match head {
            None => grads.remove(top.as_tensor()),
            Some((lp, tape)) => match grads.remove(lp.as_tensor()) {
                Some(dlp) => Some(tape.backward(&dlp, &mut grads)?),
                None => None,
            },
        };
        sink(grads)?;
        match layers {
            PieceLayers::Graph(mut layers) => {
                while let Some((input, out)) = layers.pop() {
                    let Some(g) = upstream.take() else {
                        return Ok(());
                    };
                    let mut grads = (out * g)?.sum_all()?.backward()?;
                    upstream = grads.remove(input.as_tensor());
                    sink(grads)?;
                }
            }
            PieceLayers::Taped(mut tapes) => {
                while let Some(tape) = tapes.pop() {
                    let Some(g) = upstream.take() else {
                        return Ok(());
                    };
                    let (g_in, grads) = tape.backward(&g)?;
                    upstream = Some(g_in);
                    sink(grads)?;
                }
            }
        }
        if let Some(g) = upstream {
            sink((embedded * g)?.sum_all()?.backward()?)?;
        }
        Ok(())
    }
}

/// Appends new keys and values `[kv, t, dh]` to a layer's cache; returns the whole of them.
fn extend_cache(slot: &mut Option<LayerKv>, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
    let (k, v) = match slot.as_ref() {
        Some(kv) => {
            let (pk, pv) = kv.tensors(&k)?;
            (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?)
        }
        None => (k, v),
    };
    *slot = Some(LayerKv::Tensors(k.clone(), v.clone()));
    Ok((k, v))
}

/// Appends row `i` of new keys and values `[kv, n, dh]` (as flat f32) to a layer's host cache.
fn push_host(
    slot: &mut Option<LayerKv>,
    k: &[f32],
    v: &[f32],
    n: usize,
    i: usize,
    dh: usize,
) -> Result<()> {
    let Some(kv) = slot.take() else {
        candle_core::bail!("decoding a sequence that was never prefilled");
    };
    let (mut kb, mut vb) = kv.into_host()?;
    let row = |h: usize| (h * n + i) * dh..(h * n + i + 1) * dh;
    kb.push(|h| &k[row(h)]);
    vb.push(|h| &v[row(h)]);
    *slot = Some(LayerKv::Host(kb, vb));
    Ok(())
}

/// Per-forward state shared by the layers.
struct Pass<'a> {
    hooks: &'a Hooks<'a>,
    seq: usize,
    offset: usize,
    /// Position of each row: `offset..offset+seq` for one sequence; for a batch of sequences
    /// decoded one token each, each row's own position.
    positions: Vec<usize>,
    sources: Vec<Tensor>,
    /// Rope tables per base frequency and masks per window, built once per forward: layers
    /// share them.
    rope: Vec<((f64, crate::model::config::RopeScaling), Tensor, Tensor)>,
    masks: Vec<(Option<usize>, usize, Tensor)>,
    /// Several sequences in this forward's rows (attention per segment), if packed.
    packing: Option<&'a Packing>,
}

impl Pass<'_> {
    fn rope_for(
        &mut self,
        theta: f64,
        scaling: &crate::model::config::RopeScaling,
        dh: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let key = (theta, scaling.clone());
        if let Some((_, c, s)) = self.rope.iter().find(|(k, _, _)| *k == key) {
            return Ok((c.clone(), s.clone()));
        }
        let inv_freq = scaling.inv_freq(theta, dh);
        let (c, s) = ops::rope_tables_at(&self.positions, &inv_freq, dtype, dev)?;
        self.rope.push((key, c.clone(), s.clone()));
        Ok((c, s))
    }

    fn mask_for(
        &mut self,
        window: Option<usize>,
        k_len: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        if let Some((_, _, m)) = self
            .masks
            .iter()
            .find(|(w, k, _)| *w == window && *k == k_len)
        {
            return Ok(m.clone());
        }
        let m = ops::causal_mask(self.seq, k_len, self.offset, window, dtype, dev)?;
        self.masks.push((window, k_len, m.clone()));
        Ok(m)
    }

    /// The normalised residual copy that `count` destination slots starting at `start` read:
    /// `rms_norm(h + offsets)`, `[count, seq, d]` (or `[1, seq, d]` with no offsets); without
    /// a norm (post-norm families) the raw `h + offsets`.
    fn normed_copy(
        &self,
        h: &Tensor,
        start: usize,
        count: usize,
        norm: Option<&Tensor>,
        eps: f64,
        norm_offset: f64,
    ) -> Result<Tensor> {
        let base = h.unsqueeze(0)?;
        match (self.hooks.dest_offsets, norm) {
            (Some(off), Some(norm)) => ops::rms_norm_of_sum(
                &base,
                &off.slots(start, count, &self.sources)?,
                norm,
                eps,
                norm_offset,
            ),
            (None, Some(norm)) => ops::rms_norm(&base, norm, eps, norm_offset),
            (Some(off), None) => base.broadcast_add(&off.slots(start, count, &self.sources)?),
            (None, None) => Ok(base),
        }
    }
}

fn weight(model: &Model, name: &str, shape: &[usize]) -> std::result::Result<Tensor, ModelError> {
    Ok(model.weights.get_shaped(name, shape)?.clone())
}

fn opt_weight(
    model: &Model,
    name: &str,
    shape: &[usize],
) -> std::result::Result<Option<Tensor>, ModelError> {
    if model.weights.contains(name) {
        weight(model, name, shape).map(Some)
    } else {
        Ok(None)
    }
}

impl HookedTransformer {
    /// Resolve and shape-check every weight the family's forward needs.
    pub fn new(model: &Model) -> std::result::Result<Self, ModelError> {
        let c = &model.config;
        let (d, dh, hq, hk, ff) = (c.d_model, c.head_dim, c.n_heads, c.n_kv_heads, c.d_ff);
        if hk == 0 || hq % hk != 0 {
            return Err(ModelError::Format(format!(
                "{hq} attention heads cannot share {hk} kv heads"
            )));
        }
        let traits = ForwardTraits::of(c);
        let (pre, post) = (
            traits.norms.normalises_inputs(),
            traits.norms.normalises_outputs(),
        );
        let (qn, kn) = match traits.qk_norm {
            QkNorm::None | QkNorm::PerHead => (dh, dh),
            QkNorm::Flat => (hq * dh, hk * dh),
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for (l, lt) in traits.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let w = |n: &str, s: &[usize]| weight(model, &format!("{p}.{n}"), s);
            let lin = |n: &str, s: &[usize]| model.weights.linear(&format!("{p}.{n}"), s);
            let ow = |n: &str, s: &[usize]| opt_weight(model, &format!("{p}.{n}"), s);
            // Read only if `on`: a weight the placement does not use is never looked up.
            let w_if = |on: bool, n: &str| on.then(|| w(n, &[d])).transpose();
            let qk = traits.qk_norm != QkNorm::None;
            layers.push(LayerWeights {
                input_norm: w_if(pre, "input_layernorm.weight")?,
                wq: lin("self_attn.q_proj.weight", &[hq * dh, d])?,
                wk: lin("self_attn.k_proj.weight", &[hk * dh, d])?,
                wv: lin("self_attn.v_proj.weight", &[hk * dh, d])?,
                bq: ow("self_attn.q_proj.bias", &[hq * dh])?,
                bk: ow("self_attn.k_proj.bias", &[hk * dh])?,
                bv: ow("self_attn.v_proj.bias", &[hk * dh])?,
                q_norm: qk
                    .then(|| w("self_attn.q_norm.weight", &[qn]))
                    .transpose()?,
                k_norm: qk
                    .then(|| w("self_attn.k_norm.weight", &[kn]))
                    .transpose()?,
                wo: lin("self_attn.o_proj.weight", &[d, hq * dh])?,
                post_attn_norm: w_if(post, "post_attention_layernorm.weight")?,
                mlp_norm: match traits.norms.mlp_input_norm() {
                    Some(n) => Some(w(&format!("{n}.weight"), &[d])?),
                    None => None,
                },
                post_mlp_norm: w_if(post, "post_feedforward_layernorm.weight")?,
                w_gate: lin("mlp.gate_proj.weight", &[ff, d])?,
                w_up: lin("mlp.up_proj.weight", &[ff, d])?,
                w_down: lin("mlp.down_proj.weight", &[d, ff])?,
                rope_theta: lt.rope_theta,
                rope_scaling: lt.rope_scaling.clone(),
                window: lt.window,
            });
        }
        let embed = model
            .weights
            .linear("model.embed_tokens.weight", &[c.vocab_size, d])?;
        let lm_head = if c.tie_embeddings || !model.weights.contains("lm_head.weight") {
            embed.clone()
        } else {
            model.weights.linear("lm_head.weight", &[c.vocab_size, d])?
        };
        Ok(Self {
            config: c.clone(),
            traits,
            final_norm: weight(model, "model.norm.weight", &[d])?,
            embed,
            lm_head,
            layers,
            dtype: model.dtype,
            device: model.device.clone(),
            taped: true,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The same transformer with every weight converted (e.g. to f64 for exact checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let cv = |t: &Tensor| t.to_dtype(dtype);
        let cl = |t: &Linear| t.to_dtype(dtype);
        let co = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_dtype(dtype)).transpose();
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerWeights {
                    input_norm: co(&l.input_norm)?,
                    wq: cl(&l.wq)?,
                    wk: cl(&l.wk)?,
                    wv: cl(&l.wv)?,
                    bq: co(&l.bq)?,
                    bk: co(&l.bk)?,
                    bv: co(&l.bv)?,
                    q_norm: co(&l.q_norm)?,
                    k_norm: co(&l.k_norm)?,
                    wo: cl(&l.wo)?,
                    post_attn_norm: co(&l.post_attn_norm)?,
                    mlp_norm: co(&l.mlp_norm)?,
                    post_mlp_norm: co(&l.post_mlp_norm)?,
                    w_gate: cl(&l.w_gate)?,
                    w_up: cl(&l.w_up)?,
                    w_down: cl(&l.w_down)?,
                    rope_theta: l.rope_theta,
                    rope_scaling: l.rope_scaling.clone(),
                    window: l.window,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: self.config.clone(),
            traits: self.traits.clone(),
            embed: cl(&self.embed)?,
            layers,
            final_norm: cv(&self.final_norm)?,
            lm_head: cl(&self.lm_head)?,
            dtype,
            device: self.device.clone(),
            taped: self.taped,
        })
    }

    /// The same transformer with each layer's projection weights (q/k/v/o, gate/up/down) passed
    /// through `f(hf_name, weight)` (e.g. `model.layers.3.self_attn.q_proj.weight`), every other
    /// weight shared as it is: how LoRA wraps frozen weights in [`Linear::LowRank`].
    pub fn map_projections(
        &self,
        f: &mut dyn FnMut(&str, &Linear) -> Result<Linear>,
    ) -> Result<Self> {
        let mut out = self.clone();
        for (l, lw) in out.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            for (name, w) in [
                ("self_attn.q_proj", &mut lw.wq),
                ("self_attn.k_proj", &mut lw.wk),
                ("self_attn.v_proj", &mut lw.wv),
                ("self_attn.o_proj", &mut lw.wo),
                ("mlp.gate_proj", &mut lw.w_gate),
                ("mlp.up_proj", &mut lw.w_up),
                ("mlp.down_proj", &mut lw.w_down),
            ] {
                let new = f(&format!("{p}.{name}.weight"), w)?;
                if new.dims()? != w.dims()? {
                    candle_core::bail!(
                        "{p}.{name}.weight: replaced by a weight of shape {:?}, was {:?}",
                        new.dims()?,
                        w.dims()?
                    );
                }
                *w = new;
            }
        }
        Ok(out)
    }

    /// The same transformer with [`Self::forward_pieces`] on autograd pieces only, never the
    /// hand-written layer backward (for comparing the two).
    pub fn with_autograd_pieces(mut self) -> Self {
        self.taped = false;
        self
    }

    /// Whether pieced forwards take the hand-written layer backward ([`super::tape`]): every
    /// layer fits it, and the family has no attention-score softcap and no flat q/k norm.
    pub fn taped_fits(&self) -> bool {
        self.taped
            && self.traits.attn_softcap.is_none()
            && self.traits.qk_norm != QkNorm::Flat
            && self.device.is_cpu()
            && matches!(&self.lm_head, Linear::Dense(w) if w.device().is_cpu() && w.dtype() == self.dtype)
            && self.layers.iter().all(|lw| tape::fits(lw, self.dtype))
    }

    fn layer_shape(&self) -> LayerShape {
        let c = &self.config;
        LayerShape {
            hq: c.n_heads,
            hk: c.n_kv_heads,
            dh: c.head_dim,
            eps: c.rms_norm_eps,
            norm_offset: self.norm_offset(),
            activation: self.traits.activation,
            attn_scale: self.traits.attn_scale,
        }
    }

    /// The family's switches this transformer runs with.
    pub fn traits(&self) -> &ForwardTraits {
        &self.traits
    }

    fn norm_offset(&self) -> f64 {
        self.traits.norm_offset
    }

    /// `cap·tanh(logits/cap)` when the family caps its final logits.
    fn cap_logits(&self, logits: Tensor) -> Result<Tensor> {
        match self.traits.final_softcap {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }

    /// Token embeddings as the first layer sees them (Gemma scales by sqrt(d_model)).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        // Checked here, not deep inside candle's gather, so the message names the id.
        let vocab = self.config.vocab_size;
        if let Some((pos, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| usize::try_from(id).map_or(true, |i| i >= vocab))
        {
            candle_core::bail!(
                "token id {id} (position {pos}) is outside the vocabulary: this model has \
                 {vocab} tokens (valid ids are below {vocab})"
            );
        }
        let e = self.embed.gather_rows(ids, &self.device)?;
        match self.traits.embed_scale {
            Some(scale) => {
                // HF casts the scale to the model dtype before multiplying; so do we.
                let s = Tensor::new(scale, &self.device)?.to_dtype(self.dtype)?;
                e.broadcast_mul(&s)
            }
            None => Ok(e),
        }
    }

    /// A plain forward: logits `[seq, vocab]`.
    pub fn logits(&self, ids: &[u32]) -> Result<Tensor> {
        Ok(self
            .forward(ForwardInput::Ids(ids), &Hooks::default(), None)?
            .logits)
    }

    /// The forward, with hooks and optionally a KV cache (positions continue after the cache).
    pub fn forward(
        &self,
        input: ForwardInput,
        hooks: &Hooks,
        mut cache: Option<&mut KvCache>,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        if (hooks.record_sources || hooks.dest_offsets.is_some()) && hooks.layout.is_none() {
            candle_core::bail!("hooks need a layout");
        }
        if let Some(lay) = hooks.layout {
            if lay.n_layers != c.n_layers
                || lay.n_heads != c.n_heads
                || lay.n_kv_heads != c.n_kv_heads
            {
                candle_core::bail!("hook layout does not match the model's shape");
            }
            if lay.granularity.per_head() {
                if let Some(why) = self.traits.head_split_refusal() {
                    candle_core::bail!(
                        "head granularity is not defined for {}: {why}",
                        c.family.name()
                    );
                }
            }
        }
        let mut h = match input {
            ForwardInput::Ids(ids) => self.embed(ids)?,
            ForwardInput::Embeds(e) => e,
        };
        let seq = h.dim(0)?;
        let offset = cache.as_ref().map_or(0, |c| c.len);
        if let Some(cache) = cache.as_mut() {
            cache.layers.resize(c.n_layers, None);
        }
        if let Some(off) = hooks.dest_offsets {
            let lay = hooks.layout.expect("checked above");
            off.check_shape(lay.n_dests(), seq, c.d_model)?;
        }
        let mut pass = Pass {
            hooks,
            seq,
            offset,
            positions: (offset..offset + seq).collect(),
            sources: Vec::new(),
            rope: Vec::new(),
            masks: Vec::new(),
            packing: None,
        };
        if hooks.record_sources {
            pass.sources.push(h.unsqueeze(0)?);
        }
        for (l, lw) in self.layers.iter().enumerate() {
            let layer_cache = match cache.as_mut() {
                Some(c) => LayerCache::One(&mut c.layers[l]),
                None => LayerCache::None,
            };
            h = self.layer(l, lw, &h, &mut pass, layer_cache)?;
        }
        if let Some(cache) = cache {
            cache.len += seq;
        }
        let x = match (hooks.dest_offsets, hooks.layout) {
            (Some(off), Some(lay)) => {
                h.broadcast_add(&off.slots(lay.dest_logits(), 1, &pass.sources)?.squeeze(0)?)?
            }
            _ => h,
        };
        let logits = self.unembed(&x, hooks.logits_from)?;
        let sources = if hooks.record_sources {
            Some(Tensor::cat(&pass.sources, 0)?)
        } else {
            None
        };
        Ok(ForwardOutput { logits, sources })
    }

    /// Logits `[seq - from, vocab]` of the last layer's output `x` `[seq, d_model]`, for
    /// positions `from..` (see [`Hooks::logits_from`]).
    fn unembed(&self, x: &Tensor, from: usize) -> Result<Tensor> {
        let seq = x.dim(0)?;
        let from = from.min(seq.saturating_sub(1));
        let x = if from > 0 {
            x.narrow(0, from, seq - from)?
        } else {
            x.clone()
        };
        self.head(&x)
    }

    /// The final norm, the unembedding and the logit cap over rows of the last layer's output.
    fn head(&self, x: &Tensor) -> Result<Tensor> {
        let xn = ops::rms_norm(
            x,
            &self.final_norm,
            self.config.rms_norm_eps,
            self.norm_offset(),
        )?;
        self.cap_logits(self.lm_head.forward(&xn)?)
    }

    /// The plain forward of `ids` (logits for positions `logits_from..`), its graph cut at every
    /// layer boundary so that [`Pieces::backward`] can hand out the weight gradients one layer at
    /// a time: each layer reads a leaf copy of the residual stream instead of the previous
    /// layer's output. With autograd pieces the logits are the plain forward's bit for bit; taped
    /// layers ([`Self::taped_fits`]) run no graph and keep a tape instead, their products
    /// possibly by other kernels (equal up to rounding).
    pub fn forward_pieces(&self, ids: &[u32], logits_from: usize) -> Result<(Tensor, Pieces)> {
        let (top, pieces) = self.layers_over(ids, None, true)?;
        let logits = self.unembed(&top, logits_from)?;
        Ok((logits, pieces.expect("asked for pieces")))
    }

    /// A packed forward of `ids` (rows laid out by `packing`): the logits of the rows `rows`
    /// (in that order; a row may repeat), `[rows.len(), vocab]`. No graph is cut: for forwards
    /// whose weights track no gradient (a reference model, sampling).
    pub fn forward_packed(&self, ids: &[u32], packing: &Packing, rows: &[u32]) -> Result<Tensor> {
        let (top, _) = self.layers_over(ids, Some(packing), false)?;
        self.unembed_rows(&top, rows)
    }

    /// [`Self::forward_packed`] with its graph cut at the layer boundaries, as
    /// [`Self::forward_pieces`].
    pub fn forward_pieces_packed(
        &self,
        ids: &[u32],
        packing: &Packing,
        rows: &[u32],
    ) -> Result<(Tensor, Pieces)> {
        let (top, pieces) = self.layers_over(ids, Some(packing), true)?;
        let logits = self.unembed_rows(&top, rows)?;
        Ok((logits, pieces.expect("asked for pieces")))
    }

    /// `log_softmax(logits)[target]` at each row of `rows` (`[rows.len()]`, one per target) of a
    /// pieced packed forward ([`Self::forward_pieces_packed`]). Where the layers are taped the
    /// head is too ([`tape::HeadTape`]): the result is then a leaf whose gradient
    /// [`Pieces::backward`] carries through the head by hand.
    pub fn logprobs_pieces_packed(
        &self,
        ids: &[u32],
        packing: &Packing,
        rows: &[u32],
        targets: &[u32],
    ) -> Result<(Tensor, Pieces)> {
        if !self.taped_fits() {
            let (logits, pieces) = self.forward_pieces_packed(ids, packing, rows)?;
            return Ok((ops::log_softmax_pick(&logits, targets)?, pieces));
        }
        let (top, pieces) = self.layers_over(ids, Some(packing), true)?;
        let mut pieces = pieces.expect("asked for pieces");
        let (lp, tape) = tape::head_forward(
            self.layer_shape(),
            &top,
            rows,
            targets,
            (&self.final_norm, &self.lm_head, self.traits.final_softcap),
        )?;
        let lp = Var::from_tensor(&lp)?;
        let out = lp.as_tensor().clone();
        pieces.head = Some((lp, tape));
        Ok((out, pieces))
    }

    /// The embedding and every layer over `ids` (one sequence, or packed): the last layer's
    /// output, and with `pieces` the graph cut at each layer boundary (the output is then the
    /// final norm's leaf input).
    fn layers_over(
        &self,
        ids: &[u32],
        packing: Option<&Packing>,
        pieces: bool,
    ) -> Result<(Tensor, Option<Pieces>)> {
        let hooks = Hooks::default();
        let embedded = self.embed(ids)?;
        let seq = embedded.dim(0)?;
        let positions = match packing {
            Some(p) if p.rows() != seq => candle_core::bail!(
                "packed forward: {seq} ids for a packing of {} rows",
                p.rows()
            ),
            Some(p) => p.positions(),
            None => (0..seq).collect(),
        };
        let mut pass = Pass {
            hooks: &hooks,
            seq,
            offset: 0,
            positions,
            sources: Vec::new(),
            rope: Vec::new(),
            masks: Vec::new(),
            packing,
        };
        let mut h = embedded.clone();
        if !pieces {
            for (l, lw) in self.layers.iter().enumerate() {
                h = self.layer(l, lw, &h, &mut pass, LayerCache::None)?;
            }
            return Ok((h, None));
        }
        if self.taped_fits() {
            // One sequence is a packing of one tail with no prefix (plain causal attention).
            let packing = Arc::new(match packing {
                Some(p) => p.clone(),
                None => Packing::new(0, vec![seq])?,
            });
            let shape = self.layer_shape();
            let mut tapes = Vec::with_capacity(self.layers.len());
            for lw in &self.layers {
                let (cos, sin) = pass.rope_for(
                    lw.rope_theta,
                    &lw.rope_scaling,
                    shape.dh,
                    self.dtype,
                    &self.device,
                )?;
                let (out, t) = tape::forward(lw, shape, packing.clone(), cos, sin, &h)?;
                tapes.push(t);
                h = out;
            }
            let top = Var::from_tensor(&h)?;
            return Ok((
                top.as_tensor().clone(),
                Some(Pieces {
                    embedded,
                    layers: PieceLayers::Taped(tapes),
                    top,
                    head: None,
                }),
            ));
        }
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, lw) in self.layers.iter().enumerate() {
            let input = Var::from_tensor(&h.detach())?;
            h = self.layer(l, lw, input.as_tensor(), &mut pass, LayerCache::None)?;
            layers.push((input, h.clone()));
        }
        let top = Var::from_tensor(&h.detach())?;
        Ok((
            top.as_tensor().clone(),
            Some(Pieces {
                embedded,
                layers: PieceLayers::Graph(layers),
                top,
                head: None,
            }),
        ))
    }

    /// Logits of the rows `rows` of the last layer's output `x` (`[rows.len(), vocab]`).
    fn unembed_rows(&self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let seq = x.dim(0)?;
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= seq) {
            candle_core::bail!("unembed: row {bad} of {seq}");
        }
        self.head(&x.index_select(&Tensor::new(rows, x.device())?, 0)?)
    }

    /// Project `[n, seq, d]` residual copies to `[heads, seq, dh]`: with one copy, the usual
    /// matmul; with one copy per output head, head `i` reads copy `i`. `w` holds `w_heads`
    /// heads; with more copies than that (k/v per query head, `HeadUngrouped`), copy `i` is
    /// projected by weight head `i / (n / w_heads)`, its GQA group's.
    fn project(
        &self,
        x: &Tensor,
        w: &Linear,
        b: Option<&Tensor>,
        w_heads: usize,
    ) -> Result<Tensor> {
        let (n, seq, d) = x.dims3()?;
        let dh = self.config.head_dim;
        if n > 1 && n != w_heads {
            return self.project_grouped(x, w, b, w_heads);
        }
        let heads = w_heads;
        let out = if n == 1 {
            let y = w.forward(&x.squeeze(0)?)?;
            let y = match b {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            };
            y.reshape((seq, heads, dh))?.transpose(0, 1)?.contiguous()?
        } else {
            let y = match w {
                Linear::Dense(w) => {
                    let wh = w.reshape((heads, dh, d))?.transpose(1, 2)?;
                    ops::matmul_const(x, &wh)?
                }
                // Head i's rows of W, applied to copy i.
                Linear::Quant(_) | Linear::LowRank(_) => Tensor::stack(
                    &(0..heads)
                        .map(|i| w.rows(i * dh, dh)?.forward(&x.get(i)?))
                        .collect::<Result<Vec<_>>>()?,
                    0,
                )?,
            };
            match b {
                Some(b) => y.broadcast_add(&b.reshape((heads, 1, dh))?)?,
                None => y,
            }
        };
        Ok(out)
    }

    /// `project` for `n` copies read through `w_heads < n` weight heads (each weight head serves
    /// `n / w_heads` consecutive copies).
    fn project_grouped(
        &self,
        x: &Tensor,
        w: &Linear,
        b: Option<&Tensor>,
        w_heads: usize,
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let dh = self.config.head_dim;
        if w_heads == 0 || n % w_heads != 0 {
            candle_core::bail!("{n} residual copies cannot share {w_heads} projection heads");
        }
        let group = n / w_heads;
        let y = Tensor::stack(
            &(0..n)
                .map(|i| w.rows((i / group) * dh, dh)?.forward(&x.get(i)?))
                .collect::<Result<Vec<_>>>()?,
            0,
        )?;
        match b {
            Some(b) => {
                let bs = (0..n)
                    .map(|i| b.narrow(0, (i / group) * dh, dh))
                    .collect::<Result<Vec<_>>>()?;
                y.broadcast_add(&Tensor::stack(&bs, 0)?.unsqueeze(1)?)
            }
            None => Ok(y),
        }
    }

    fn layer(
        &self,
        l: usize,
        lw: &LayerWeights,
        h: &Tensor,
        pass: &mut Pass,
        cache: LayerCache,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (hq, hk, dh) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let eps = c.rms_norm_eps;
        let noff = self.norm_offset();
        let seq = pass.seq;
        let (nq, nk, nv) = pass.hooks.layout.map_or((1, 1, 1), |lay| lay.qkv_slots());
        let start = pass.hooks.layout.map_or(0, |lay| lay.dest_layer_start(l));

        // Attention: q, k and v each read their own (normalised) residual copy. Without
        // offsets the three copies are one tensor: normalised once (one node in a training
        // graph, whose backward sums the three projections' gradients before the norm's).
        let w_in = lw.input_norm.as_ref();
        let shared = match pass.hooks.dest_offsets {
            None => Some(pass.normed_copy(h, start, 1, w_in, eps, noff)?),
            Some(_) => None,
        };
        let copy = |slot: usize, count: usize| match &shared {
            Some(x) => Ok(x.clone()),
            None => pass.normed_copy(h, slot, count, w_in, eps, noff),
        };
        let mut q = self.project(&copy(start, nq)?, &lw.wq, lw.bq.as_ref(), hq)?;
        let mut k = self.project(&copy(start + nq, nk)?, &lw.wk, lw.bk.as_ref(), hk)?;
        let v = self.project(&copy(start + nq + nk, nv)?, &lw.wv, lw.bv.as_ref(), hk)?;
        if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
            match self.traits.qk_norm {
                QkNorm::Flat => {
                    q = flat_rms_norm(&q, qn, eps, noff)?;
                    k = flat_rms_norm(&k, kn, eps, noff)?;
                }
                _ => {
                    q = ops::rms_norm(&q, qn, eps, noff)?;
                    k = ops::rms_norm(&k, kn, eps, noff)?;
                }
            }
        }
        let (cos, sin) = pass.rope_for(
            lw.rope_theta,
            &lw.rope_scaling,
            dh,
            self.dtype,
            &self.device,
        )?;
        q = ops::rope(&q, &cos, &sin)?;
        k = ops::rope(&k, &cos, &sin)?;
        let scale = self.traits.attn_scale;
        let z = match cache {
            // One new token per sequence (row), each attending to its own cache: on CPU in f32
            // as one kernel over caches grown in place.
            LayerCache::Rows(mut slots)
                if self.device.is_cpu()
                    && self.dtype == DType::F32
                    && self.traits.attn_softcap.is_none() =>
            {
                let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
                let (kf, vf) = (flat(&k)?, flat(&v)?);
                let n = slots.len();
                for (i, slot) in slots.iter_mut().enumerate() {
                    push_host(slot, &kf, &vf, n, i, dh)?;
                }
                let mut keys = Vec::with_capacity(n);
                let mut values = Vec::with_capacity(n);
                for slot in &slots {
                    let Some(LayerKv::Host(kb, vb)) = slot.as_ref() else {
                        candle_core::bail!("decode cache was not moved to host buffers");
                    };
                    keys.push(kb);
                    values.push(vb);
                }
                let z = decode_attention::attend_rows(
                    &flat(&q)?,
                    hq,
                    &keys,
                    &values,
                    lw.window,
                    scale as f32,
                );
                Tensor::from_vec(z, (hq, n, dh), &self.device)?
            }
            LayerCache::Rows(slots) => {
                let zs = slots
                    .into_iter()
                    .enumerate()
                    .map(|(i, slot)| {
                        let (k, v) = extend_cache(slot, k.narrow(1, i, 1)?, v.narrow(1, i, 1)?)?;
                        let pos = pass.positions[i];
                        let mask = ops::causal_mask(
                            1,
                            k.dim(1)?,
                            pos,
                            lw.window,
                            self.dtype,
                            &self.device,
                        )?;
                        self.attend(&q.narrow(1, i, 1)?, &k, &v, &mask, scale)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&zs, 1)?
            }
            LayerCache::None if pass.packing.is_some() => {
                let packing = pass.packing.expect("checked by the guard");
                self.attend_packed(&q, &k, &v, packing, lw.window, scale)?
            }
            one => {
                let (k, v) = match one {
                    LayerCache::One(slot) => extend_cache(slot, k, v)?,
                    _ => (k, v),
                };
                let mask = pass.mask_for(lw.window, k.dim(1)?, self.dtype, &self.device)?;
                self.attend(&q, &k, &v, &mask, scale)?
            }
        }; // [hq, seq, dh]

        let per_head = pass
            .hooks
            .layout
            .is_some_and(|lay| lay.granularity.per_head());
        let mut attn = if per_head {
            // Head i's share of o_proj: z_i · W_o[:, i·dh .. (i+1)·dh]ᵀ.
            let heads_out = match &lw.wo {
                Linear::Dense(wo) => {
                    let wo_heads = wo.t()?.reshape((hq, dh, c.d_model))?;
                    ops::matmul_const(&z, &wo_heads)? // [hq, seq, d]
                }
                Linear::Quant(_) | Linear::LowRank(_) => Tensor::stack(
                    &(0..hq)
                        .map(|i| lw.wo.cols(i * dh, dh)?.forward(&z.get(i)?))
                        .collect::<Result<Vec<_>>>()?,
                    0,
                )?,
            };
            if pass.hooks.record_sources {
                pass.sources.push(heads_out.clone());
            }
            heads_out.sum(0)?
        } else {
            let zf = z.transpose(0, 1)?.reshape((seq, hq * dh))?;
            lw.wo.forward(&zf)?
        };
        if let Some(n) = &lw.post_attn_norm {
            attn = ops::rms_norm(&attn, n, eps, noff)?;
        }
        if pass.hooks.record_sources && !per_head {
            pass.sources.push(attn.unsqueeze(0)?);
        }
        let h = (h + &attn)?;

        // MLP, reading its own (normalised) copy.
        let xm = pass
            .normed_copy(&h, start + nq + nk + nv, 1, lw.mlp_norm.as_ref(), eps, noff)?
            .squeeze(0)?;
        let gate = lw.w_gate.forward(&xm)?;
        let up = lw.w_up.forward(&xm)?;
        let mut mlp = glu_down(&gate, &up, self.traits.activation, &lw.w_down)?;
        if let Some(n) = &lw.post_mlp_norm {
            mlp = ops::rms_norm(&mlp, n, eps, noff)?;
        }
        if pass.hooks.record_sources {
            pass.sources.push(mlp.unsqueeze(0)?);
        }
        &h + &mlp
    }

    /// `softmax(q·kᵀ·scale + mask)·v` with GQA (and Gemma's score softcapping when set).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        match self.traits.attn_softcap {
            None => attention::attention(q, k, v, mask, scale),
            Some(cap) => {
                // From the shapes: k/v per query head (`HeadUngrouped`) need no repeat.
                let n_rep = q.dim(0)? / k.dim(0)?.max(1);
                let k = ops::repeat_kv(k, n_rep)?;
                let v = ops::repeat_kv(v, n_rep)?;
                let scores = (q.matmul(&k.t()?)? * scale)?;
                let scores = ((scores / cap)?.tanh()? * cap)?;
                ops::softmax_last_dim(&scores.broadcast_add(mask)?)?.matmul(&v)
            }
        }
    }

    /// [`Self::attend`] over a packed forward's segments.
    fn attend_packed(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        packing: &Packing,
        window: Option<usize>,
        scale: f64,
    ) -> Result<Tensor> {
        if self.traits.attn_softcap.is_none() {
            return attention::attention_packed(q, k, v, packing, window, scale);
        }
        // Softcapped scores (Gemma 2 style) have no fused op: each segment on its own.
        attention::per_segment(q, k, v, packing, window, &|qs, ks, vs, mask| {
            self.attend(qs, ks, vs, mask, scale)
        })
    }

    /// One decoding step for several sequences at once: `tokens[i]` continues the sequence
    /// cached in `caches[i]` (filled by [`HookedTransformer::forward`] with a cache, or by
    /// earlier steps). Returns next-token logits `[n, vocab]`. The weight matrices are applied
    /// to all rows together (one pass over the weights per step instead of one per sequence);
    /// attention runs per sequence. Each row's logits equal a single-sequence step's up to the
    /// matmul's summation order (exactly with dense f32 weights and up to 16 rows, or quantized
    /// weights and up to 8).
    pub fn decode_step(&self, tokens: &[u32], caches: &mut [KvCache]) -> Result<Tensor> {
        let c = &self.config;
        if tokens.len() != caches.len() || tokens.is_empty() {
            candle_core::bail!("decode_step needs one token per cache");
        }
        let hooks = Hooks::default();
        let mut pass = Pass {
            hooks: &hooks,
            seq: tokens.len(),
            offset: 0,
            positions: caches.iter().map(|k| k.len).collect(),
            sources: Vec::new(),
            rope: Vec::new(),
            masks: Vec::new(),
            packing: None,
        };
        for cache in caches.iter_mut() {
            cache.layers.resize(c.n_layers, None);
        }
        let mut h = self.embed(tokens)?;
        for (l, lw) in self.layers.iter().enumerate() {
            let slots = caches.iter_mut().map(|k| &mut k.layers[l]).collect();
            h = self.layer(l, lw, &h, &mut pass, LayerCache::Rows(slots))?;
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        self.head(&h)
    }

    /// Greedy next-token id from the last row of `[seq, vocab]` logits.
    pub fn argmax_last(logits: &Tensor) -> Result<u32> {
        let last = logits.i(logits.dim(0)? - 1)?;
        last.argmax(D::Minus1)?.to_scalar::<u32>()
    }
}

/// RMSNorm over all heads of a projection `[heads, seq, dh]` together (OLMo 2's q/k norm, weight
/// `[heads·dh]`): the heads are flattened per position, normalised and split again.
fn flat_rms_norm(x: &Tensor, w: &Tensor, eps: f64, offset: f64) -> Result<Tensor> {
    let (heads, seq, dh) = x.dims3()?;
    let flat = x.transpose(0, 1)?.reshape((seq, heads * dh))?;
    ops::rms_norm(&flat, w, eps, offset)?
        .reshape((seq, heads, dh))?
        .transpose(0, 1)?
        .contiguous()
}
