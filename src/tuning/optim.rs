//! AdamW, the learning-rate schedule and gradient-norm clipping (METHOD.md §7.4), with state
//! that a checkpoint saves and a resume restores exactly.
//!
//! The update is PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments):
//! θ ← θ·(1 − lr·λ);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//! θ ← θ − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + ε).
//! As the HF Trainer does, biases and norm weights get no weight decay.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use rayon::prelude::*;

use crate::model::deferred::{self, Deferred};

/// AdamW's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The paper's Appendix B: β 0.9 / 0.99, weight decay 0.1; ε as PyTorch.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// Whether a weight is decayed: not biases, not norm weights (HF Trainer's
/// `get_decay_parameter_names`).
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("norm"))
}

/// Elements of a weight updated at once: the update's temporaries (new moments, denominator,
/// step, new values) exist per piece, not per weight; for SmolLM2's 113 MB embedding they were
/// ~0.9 GB on top of weights, moments and gradients, the peak of a full fine-tune's step.
const PIECE: usize = 1 << 20;

/// Moments and step count, one entry per trained weight (in the policy's name order).
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    decay: Vec<bool>,
    /// Where the moments are while parked ([`AdamW::park`]); `m` and `v` are then empty.
    parked: Option<Parked>,
}

/// The moments written out between updates: their raw values in one unnamed temporary file
/// (removed when dropped), `m` then `v`, each weight in order.
struct Parked {
    file: tempfile::NamedTempFile,
    shapes: Vec<Shape>,
    dtype: DType,
    device: Device,
}

fn io_err(e: std::io::Error) -> candle_core::Error {
    candle_core::Error::Msg(format!("adamw moments file: {e}"))
}

impl AdamW {
    pub fn new(config: AdamWConfig, names: &[String], vars: &[Var]) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            config,
            step: 0,
            m: vars.iter().map(zeros).collect::<Result<_>>()?,
            v: vars.iter().map(zeros).collect::<Result<_>>()?,
            decay: names.iter().map(|n| decays(n)).collect(),
            parked: None,
        })
    }

    /// Writes the moments to a temporary file in `dir` and frees them until the next update
    /// (which reads them back, [`AdamW::step`]), so that between updates — sampling and the
    /// backward, where a full fine-tune's memory peaks — they take no memory: two f32 copies of
    /// the weights, 1.08 GB for SmolLM2-135M. Optimizer-state offload, as DeepSpeed's
    /// ZeRO-Infinity does to NVMe; read back bit for bit. On CPU in f32/f64 the update then
    /// streams the file in place ([`AdamW::step_parked`]) and the moments stay parked; elsewhere
    /// it reads them back and the next call writes them again.
    pub fn park(&mut self, dir: &Path) -> Result<()> {
        if self.parked.is_some() || self.m.is_empty() {
            return Ok(());
        }
        let file = tempfile::Builder::new()
            .prefix(".rlq-adamw-moments-")
            .tempfile_in(dir)
            .map_err(io_err)?;
        let dtype = self.m[0].dtype();
        let device = self.m[0].device().clone();
        let shapes = self.m.iter().map(|t| t.shape().clone()).collect();
        {
            let mut w = BufWriter::with_capacity(1 << 20, file.as_file());
            for t in self.m.iter().chain(&self.v) {
                // A piece of rows at a time: no whole copy of a moment as bytes.
                for_row_pieces(t, |piece| {
                    let flat = piece.flatten_all()?;
                    let bytes: Vec<u8> = match dtype {
                        DType::F64 => flat
                            .to_vec1::<f64>()?
                            .iter()
                            .flat_map(|x| x.to_le_bytes())
                            .collect(),
                        _ => flat
                            .to_dtype(DType::F32)?
                            .to_vec1::<f32>()?
                            .iter()
                            .flat_map(|x| x.to_le_bytes())
                            .collect(),
                    };
                    w.write_all(&bytes).map_err(io_err)
                })?;
            }
            w.flush().map_err(io_err)?;
        }
        self.m = Vec::new();
        self.v = Vec::new();
        self.parked = Some(Parked {
            file,
            shapes,
            dtype,
            device,
        });
        Ok(())
    }

    /// Reads parked moments back (nothing to do when they are in memory).
    fn unpark(&mut self) -> Result<()> {
        let Some(p) = self.parked.take() else {
            return Ok(());
        };
        let (m, v) = read_parked(&p)?;
        self.m = m;
        self.v = v;
        Ok(())
    }

    /// One update with learning rate `lr` and gradients `grads` times `scale` (the clip factor,
    /// [`clip_factor`]), scaled a piece at a time: a scaled copy of the gradients never exists
    /// in full. Elementwise, so each element is what scaling the whole gradient first gives.
    pub fn step(
        &mut self,
        vars: &[Var],
        grads: &[Tensor],
        scale: Option<f64>,
        lr: f64,
    ) -> Result<()> {
        if grads.len() != vars.len() {
            candle_core::bail!(
                "adamw: {} gradients for {} weights",
                grads.len(),
                vars.len()
            );
        }
        let parked_on_cpu = self.parked.as_ref().is_some_and(|p| {
            vars.iter().all(|v| {
                let t = v.as_tensor();
                t.device().is_cpu()
                    && t.dtype() == p.dtype
                    && matches!(p.dtype, DType::F32 | DType::F64)
            })
        });
        if parked_on_cpu {
            self.step += 1;
            return self.step_parked(vars, grads, scale, lr);
        }
        self.unpark()?;
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for i in 0..vars.len() {
            let theta = vars[i].as_tensor();
            let whole = theta.rank() == 0;
            for_weight_pieces(theta, |r, piece| {
                let g = match scale {
                    Some(f) => (piece(&grads[i])? * f)?,
                    None => piece(&grads[i])?,
                };
                let m = ((piece(&self.m[i])? * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                let v = ((piece(&self.v[i])? * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                let theta_r = piece(theta)?;
                let decayed = if self.decay[i] && c.weight_decay != 0.0 {
                    (theta_r * (1.0 - lr * c.weight_decay))?
                } else {
                    theta_r.detach()
                };
                let denom = ((&v / bc2)?.sqrt()? + c.eps)?;
                let update = ((&m / bc1)? / denom)?;
                let new = (decayed - (update * lr)?)?.contiguous()?;
                // In place: every op above is elementwise, so a piece's values are those of
                // the whole weight's update, bit for bit.
                if whole {
                    vars[i].set(&new)?;
                    self.m[i] = m;
                    self.v[i] = v;
                } else {
                    theta.slice_set(&new, 0, r)?;
                    self.m[i].slice_set(&m.contiguous()?, 0, r)?;
                    self.v[i].slice_set(&v.contiguous()?, 0, r)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// [`AdamW::step`] with the moments parked, on CPU in f32/f64: each piece of a weight's
    /// moments is read from the file, updated with the weight's piece ([`update_piece`], the
    /// same bits as the tensor-op update) and written back in place, so the moments never
    /// come back into memory (the update's peak is the weights and their gradients) and the
    /// file needs no rewrite before the next phase. One sequential pass over the file, beside
    /// the tensor-op update's dozen passes over every weight.
    fn step_parked(
        &mut self,
        vars: &[Var],
        grads: &[Tensor],
        scale: Option<f64>,
        lr: f64,
    ) -> Result<()> {
        let c = self.config;
        let t = self.step as i32;
        let coefs = |decay: bool| Coefs {
            scale,
            beta1: c.beta1,
            beta2: c.beta2,
            inv_bc1: 1.0 / (1.0 - c.beta1.powi(t)),
            inv_bc2: 1.0 / (1.0 - c.beta2.powi(t)),
            eps: c.eps,
            lr,
            keep: (decay && c.weight_decay != 0.0).then_some(1.0 - lr * c.weight_decay),
        };
        let Some(p) = self.parked.as_ref() else {
            candle_core::bail!("adamw: the moments are not parked");
        };
        let width = p.dtype.size_in_bytes() as u64;
        let total: u64 = p.shapes.iter().map(|s| s.elem_count() as u64).sum();
        // Every piece of every weight, with where its moments start in the file (elements).
        let mut pieces = Vec::new();
        let mut at = 0u64; // elements of the weights before this one
        for (i, var) in vars.iter().enumerate() {
            let theta = var.as_tensor();
            if p.shapes.get(i).map(Shape::dims) != Some(theta.dims()) {
                candle_core::bail!("adamw: parked moments do not fit weight {i}");
            }
            if grads[i].dims() != theta.dims() {
                candle_core::bail!(
                    "adamw: gradient {i} has shape {:?}, its weight {:?}",
                    grads[i].dims(),
                    theta.dims()
                );
            }
            let per_row = per_row(theta);
            for rows in weight_pieces(theta) {
                let first = at + (rows.start * per_row) as u64;
                pieces.push((i, rows, first));
            }
            at += theta.elem_count() as u64;
        }
        // The pieces are disjoint in the weights and in the file (positional reads and writes),
        // and each is updated elementwise, so updating them on rayon's threads in any order
        // gives the bits of the sequential pass.
        let file = p.file.as_file();
        let decay = &self.decay;
        pieces.into_par_iter().try_for_each(|(i, rows, start)| {
            let (var, theta) = (&vars[i], vars[i].as_tensor());
            let (th, g) = (
                piece_of(theta, theta, &rows)?,
                piece_of(theta, &grads[i], &rows)?,
            );
            let count = th.elem_count() as u64;
            let offsets = [start * width, (total + start) * width];
            let k = coefs(decay[i]);
            let new = if p.dtype == DType::F64 {
                stream_f64(file, offsets, count, &th, &g, &k)?
            } else {
                stream_f32(file, offsets, count, &th, &g, &k)?
            };
            if theta.rank() == 0 {
                var.set(&new)
            } else {
                theta.slice_set(&new, 0, rows.start)
            }
        })
    }

    /// The moments as named tensors (`m.<name>`, `v.<name>`) for a checkpoint, each made when
    /// asked for: parked moments are read from their file one at a time as the checkpoint is
    /// written, so saving never brings them all back into memory.
    pub fn state_files(&self, names: &[String]) -> Result<Vec<Deferred<'_>>> {
        let n = match &self.parked {
            Some(p) => p.shapes.len(),
            None => self.m.len(),
        };
        if names.len() != n {
            candle_core::bail!(
                "adamw: {} names for the moments of {n} weights",
                names.len()
            );
        }
        let mut out = Vec::with_capacity(2 * n);
        let Some(p) = &self.parked else {
            for (i, name) in names.iter().enumerate() {
                out.push(Deferred::of(format!("m.{name}"), &self.m[i]));
                out.push(Deferred::of(format!("v.{name}"), &self.v[i]));
            }
            return Ok(out);
        };
        let total: u64 = p.shapes.iter().map(|s| s.elem_count() as u64).sum();
        let mut at = 0u64; // elements of the weights before this one
        for (name, shape) in names.iter().zip(&p.shapes) {
            for (key, first) in [("m", at), ("v", total + at)] {
                let read = move || -> Result<Tensor> {
                    let count = shape.elem_count() as u64;
                    let file = p.file.as_file();
                    if p.dtype == DType::F64 {
                        let vals = read_f64s(file, first * 8, count)?;
                        Tensor::from_vec(vals, shape, &p.device)
                    } else {
                        let vals = read_f32s(file, first * 4, count)?;
                        Tensor::from_vec(vals, shape, &p.device)?.to_dtype(p.dtype)
                    }
                };
                out.push(Deferred::new(
                    format!("{key}.{name}"),
                    p.dtype,
                    shape.dims().to_vec(),
                    read,
                ));
            }
            at += shape.elem_count() as u64;
        }
        Ok(out)
    }

    /// [`AdamW::state_files`] made, all at once.
    pub fn state(&self, names: &[String]) -> Result<HashMap<String, Tensor>> {
        deferred::materialize(&self.state_files(names)?)
    }

    /// Restore moments saved by [`AdamW::state`] and the step count.
    pub fn restore(
        &mut self,
        names: &[String],
        state: &HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        self.unpark()?;
        for (i, n) in names.iter().enumerate() {
            for (key, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let name = format!("{key}.{n}");
                let t = state.get(&name).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state has no `{name}`"))
                })?;
                if t.dims() != slot.dims() {
                    candle_core::bail!("optimizer state `{name}` has shape {:?}", t.dims());
                }
                *slot = t.to_dtype(slot.dtype())?.to_device(slot.device())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Elements per row of a weight (a scalar is one row of one).
fn per_row(theta: &Tensor) -> usize {
    let rows = if theta.rank() == 0 {
        1
    } else {
        theta.dims()[0]
    };
    theta.elem_count() / rows.max(1)
}

/// The row ranges of a weight's pieces of about [`PIECE`] elements each, in order (a scalar
/// is one whole piece, `0..1`; a weight of no rows has none).
fn weight_pieces(theta: &Tensor) -> Vec<std::ops::Range<usize>> {
    let rows = if theta.rank() == 0 {
        1
    } else {
        theta.dims()[0]
    };
    let step_rows = (PIECE / per_row(theta).max(1)).max(1);
    (0..rows)
        .step_by(step_rows)
        .map(|r| r..(r + step_rows).min(rows))
        .collect()
}

/// Rows `rows` of `t`, a tensor of the weight `theta`'s shape (all of it for a scalar).
fn piece_of(theta: &Tensor, t: &Tensor, rows: &std::ops::Range<usize>) -> Result<Tensor> {
    if theta.rank() == 0 {
        Ok(t.clone())
    } else {
        t.narrow(0, rows.start, rows.len())
    }
}

/// `f(first_row, piece)` for each piece of [`weight_pieces`], where `piece(t)` cuts any tensor
/// of the weight's shape the same way.
fn for_weight_pieces(
    theta: &Tensor,
    mut f: impl FnMut(usize, &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<()>,
) -> Result<()> {
    for rows in weight_pieces(theta) {
        f(rows.start, &|t: &Tensor| piece_of(theta, t, &rows))?;
    }
    Ok(())
}

/// One update's constants, in f64 (each becomes the weight's dtype where the tensor-op update
/// hands it to candle).
struct Coefs {
    scale: Option<f64>,
    beta1: f64,
    beta2: f64,
    inv_bc1: f64,
    inv_bc2: f64,
    eps: f64,
    lr: f64,
    /// `1 − lr·λ` for a decayed weight.
    keep: Option<f64>,
}

/// AdamW on one piece, in place, elementwise in `$t` with the operations of the tensor-op
/// update in [`AdamW::step`] in its order and rounding — candle's `t * c` is `t·c + 0`,
/// `t / c` is `t·(1/c) + 0`, `t + c` is `t·1 + c` (the `+ 0` turns −0 into +0) — so both
/// give the same bits (tested).
macro_rules! update_piece {
    ($name:ident, $t:ty) => {
        fn $name(theta: &mut [$t], g: &[$t], m: &mut [$t], v: &mut [$t], k: &Coefs) {
            let zero: $t = 0.0;
            let one: $t = 1.0;
            let (b1, nb1) = (k.beta1 as $t, (1.0 - k.beta1) as $t);
            let (b2, nb2) = (k.beta2 as $t, (1.0 - k.beta2) as $t);
            let (ib1, ib2, eps, lr) = (k.inv_bc1 as $t, k.inv_bc2 as $t, k.eps as $t, k.lr as $t);
            let scale = k.scale.map(|s| s as $t);
            let keep = k.keep.map(|s| s as $t);
            for (((th, &gr), mi), vi) in theta.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
            {
                let g = match scale {
                    Some(s) => gr * s + zero,
                    None => gr,
                };
                let m_new = (*mi * b1 + zero) + (g * nb1 + zero);
                let v_new = (*vi * b2 + zero) + ((g * g) * nb2 + zero);
                let decayed = match keep {
                    Some(f) => *th * f + zero,
                    None => *th,
                };
                let denom = (v_new * ib2 + zero).sqrt() * one + eps;
                let update = (m_new * ib1 + zero) / denom;
                *th = decayed - (update * lr + zero);
                *mi = m_new;
                *vi = v_new;
            }
        }
    };
}
update_piece!(update_piece_f32, f32);
update_piece!(update_piece_f64, f64);

/// `buf.len()` bytes of `f` from byte `offset`, without moving (or sharing) a file cursor.
fn read_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match std::os::windows::fs::FileExt::seek_read(f, &mut buf[done..], at)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// `buf` written to `f` at byte `offset`, without moving (or sharing) a file cursor.
fn write_at(f: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match std::os::windows::fs::FileExt::seek_write(f, &buf[done..], at)? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// `count` values of a parked file from byte `offset`, and their writing back (positional:
/// pieces are read and written from several threads at once).
macro_rules! parked_io {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(f: &std::fs::File, offset: u64, count: u64) -> Result<Vec<$t>> {
            const W: usize = std::mem::size_of::<$t>();
            let n = usize::try_from(count)
                .map_err(|_| candle_core::Error::Msg("adamw: piece too large".into()))?;
            let mut bytes = vec![0u8; n * W];
            read_at(f, &mut bytes, offset).map_err(io_err)?;
            Ok(bytes
                .chunks_exact(W)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; W])))
                .collect())
        }
        fn $write(f: &std::fs::File, offset: u64, values: &[$t]) -> Result<()> {
            let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            write_at(f, &bytes, offset).map_err(io_err)
        }
    };
}
parked_io!(read_f32s, write_f32s, f32);
parked_io!(read_f64s, write_f64s, f64);

/// One piece of [`AdamW::step_parked`]: the piece's moments read from the file at `offsets`
/// (m, v), updated with the weight's piece `th` and gradient `g`, written back; the new weight
/// values returned.
macro_rules! stream_piece {
    ($name:ident, $read:ident, $write:ident, $update:ident, $t:ty) => {
        fn $name(
            file: &std::fs::File,
            offsets: [u64; 2],
            count: u64,
            th: &Tensor,
            g: &Tensor,
            k: &Coefs,
        ) -> Result<Tensor> {
            let mut th_v = th.flatten_all()?.to_vec1::<$t>()?;
            let g_v = g.flatten_all()?.to_vec1::<$t>()?;
            let mut m = $read(file, offsets[0], count)?;
            let mut v = $read(file, offsets[1], count)?;
            $update(&mut th_v, &g_v, &mut m, &mut v, k);
            $write(file, offsets[0], &m)?;
            $write(file, offsets[1], &v)?;
            Tensor::from_vec(th_v, th.shape(), th.device())
        }
    };
}
stream_piece!(stream_f32, read_f32s, write_f32s, update_piece_f32, f32);
stream_piece!(stream_f64, read_f64s, write_f64s, update_piece_f64, f64);

/// The moments in a parked file, as [`AdamW::park`] wrote them.
fn read_parked(p: &Parked) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let mut f = p.file.as_file();
    f.rewind().map_err(io_err)?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut read_one = |shape: &Shape| -> Result<Tensor> {
        let n = shape.elem_count();
        let width = p.dtype.size_in_bytes().max(4);
        let mut bytes = vec![0u8; (PIECE * width).min(n * width).max(width)];
        let t = if p.dtype == DType::F64 {
            let mut out: Vec<f64> = Vec::with_capacity(n);
            while out.len() < n {
                let k = (n - out.len()).min(bytes.len() / 8);
                r.read_exact(&mut bytes[..k * 8]).map_err(io_err)?;
                out.extend(
                    bytes[..k * 8]
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
                );
            }
            Tensor::from_vec(out, shape, &p.device)?
        } else {
            let mut out: Vec<f32> = Vec::with_capacity(n);
            while out.len() < n {
                let k = (n - out.len()).min(bytes.len() / 4);
                r.read_exact(&mut bytes[..k * 4]).map_err(io_err)?;
                out.extend(
                    bytes[..k * 4]
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))),
                );
            }
            Tensor::from_vec(out, shape, &p.device)?.to_dtype(p.dtype)?
        };
        Ok(t)
    };
    let m = p
        .shapes
        .iter()
        .map(&mut read_one)
        .collect::<Result<Vec<_>>>()?;
    let v = p
        .shapes
        .iter()
        .map(&mut read_one)
        .collect::<Result<Vec<_>>>()?;
    Ok((m, v))
}

/// The learning rate at optimiser step `step` (0-based) of `total`: linear warmup over the first
/// ⌈warmup·total⌉ steps, then cosine to 0 — `transformers.get_cosine_schedule_with_warmup`
/// exactly, including its lr of 0 at step 0 when there is a warmup.
pub fn lr_at(base: f64, step: usize, total: usize, warmup: f64) -> f64 {
    let w = (warmup * total as f64).ceil() as usize;
    if step < w {
        return base * step as f64 / w.max(1) as f64;
    }
    let progress = (step - w) as f64 / (total.saturating_sub(w)).max(1) as f64;
    base * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
}

/// The global L2 norm of `grads`, accumulated in f64: `clip_grad_norm_`'s norm (PyTorch sums
/// in the gradients' dtype; f64 here, so the norm does not depend on how many weights there
/// are). Read a piece of rows at a time, never as an f64 copy of a whole gradient (that copy
/// and its square were ~0.45 GB on SmolLM2's embedding, at the step's peak). The squares are
/// summed in one running f64 sum in row-major order, exactly as converting each gradient to
/// f64 and `sqr().sum_all()` did (candle's CPU sum is that sequential loop; squaring an f32 in
/// f64 is exact), so the norm is the same bit for bit.
pub fn grad_norm(grads: &[Tensor]) -> Result<f64> {
    // Each weight's sum on its own thread, then the sums added in order: the same bits as
    // one thread doing both.
    let parts = grads
        .par_iter()
        .map(|g| {
            let mut part = 0.0f64;
            for_row_pieces(g, |piece| {
                let values = piece
                    .flatten_all()?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?;
                for x in values {
                    part += x * x;
                }
                Ok(())
            })?;
            Ok(part)
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(parts.iter().fold(0.0f64, |sq, part| sq + part).sqrt())
}

/// The factor `torch.nn.utils.clip_grad_norm_` scales the gradients by, when it does:
/// max_norm / (norm + 1e-6) when the norm exceeds `max_norm`; `None` when it does not, or when
/// `max_norm` ≤ 0 (no clipping). [`AdamW::step`] applies it a piece at a time.
pub fn clip_factor(norm: f64, max_norm: f64) -> Option<f64> {
    (max_norm > 0.0 && norm > max_norm).then(|| max_norm / (norm + 1e-6))
}

/// `f(piece)` for consecutive pieces of `t`'s first dimension of about [`PIECE`] elements each
/// (the whole tensor for a scalar).
fn for_row_pieces(t: &Tensor, mut f: impl FnMut(Tensor) -> Result<()>) -> Result<()> {
    for_weight_pieces(t, |_, piece| f(piece(t)?))
}
