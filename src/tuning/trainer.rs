//! The tuning loop: for each step, take a batch of items in a seeded order, form the method's
//! loss piece by piece (one answer or pair at a time, gradients summed, so memory is one
//! answer's or pair's activations; every backward is also taken a layer at a time, so only the
//! summed gradients exist in full), clip, update (the clip's scaling inside the update, a piece
//! at a time), log, and checkpoint every `save_every` steps.
//!
//! Everything random is derived from `(seed, step, item, sample)`, never from a running
//! generator, so a run resumed from a checkpoint draws exactly what the uninterrupted run drew.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::checkpoint::{self, Timing, TrainerState, STATE_FORMAT};
use super::log::LogRow;
use super::objective::{dpo_term_at_sums, group_advantages, grpo_term, sft_term, Method};
use super::optim::{clip_factor, grad_norm, lr_at, AdamW};
use super::policy::{runs_within, weights_hash, PackedAnswers, Policy};
use super::settings::TuneSettings;
use super::TuneError;
use crate::model::generate::{generate_batch_seeded, GenerateOptions};
use crate::model::hooked::{HookedTransformer, Pieces};
use crate::model::Model;

/// One training item: a prompt (ids as the chat template renders them) and, by method, what
/// is known about its answers.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneItem {
    pub prompt: Vec<u32>,
    /// DPO: the preferred and the dispreferred answer (ids, stop token included if any).
    pub chosen: Option<Vec<u32>>,
    pub rejected: Option<Vec<u32>>,
    /// SFT: the target answer.
    pub target: Option<Vec<u32>>,
}

impl TuneItem {
    pub fn prompt(prompt: Vec<u32>) -> Self {
        Self {
            prompt,
            chosen: None,
            rejected: None,
            target: None,
        }
    }
}

/// A graded answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub reward: f64,
    pub correct: bool,
}

/// The reward: item index, answer ids (stop token removed) and whether the answer stopped by
/// itself (a stop token before `max_tokens`).
pub type RewardFn<'a> = dyn Fn(usize, &[u32], bool) -> Scored + 'a;

/// What a finished (or interrupted) run returns.
pub struct TuneOutcome {
    pub log: Vec<LogRow>,
    pub checkpoints: Vec<PathBuf>,
    pub interrupted: bool,
    /// Items dropped while building DPO pairs / SFT targets from the start model's own answers
    /// (no correct, or no incorrect, answer among its samples).
    pub dropped: usize,
    pub n_items: usize,
}

/// Hooks the host gives the loop: interruption and per-step progress.
pub struct TuneHost<'a> {
    pub interrupted: &'a dyn Fn() -> bool,
    pub on_step: &'a mut dyn FnMut(&LogRow, usize),
    /// Progress while the start model answers the questions (DPO/SFT from own samples).
    pub on_prepare: &'a mut dyn FnMut(usize, usize),
}

/// A tuning run, ready to start (or to continue from a checkpoint).
pub struct Tuner<'a> {
    pub settings: TuneSettings,
    policy: Policy,
    reference: HookedTransformer,
    items: Vec<TuneItem>,
    reward: &'a RewardFn<'a>,
    stop_tokens: Vec<u32>,
    opt: AdamW,
    log: Vec<LogRow>,
    timing: Timing,
    start_hash: String,
    /// Hash and count of the items as given (before DPO/SFT data are built from samples).
    data_hash: String,
    n_given: usize,
    out: Option<PathBuf>,
    save_every: usize,
    first_step: usize,
    dropped: usize,
    /// Freed memory stays in the heap for the next step while the tuner lives (see
    /// [`crate::alloc`]). The last field, so dropped last: the pages it hands back then include
    /// the weights' and moments'.
    _alloc_policy: crate::alloc::PolicyGuard,
}

/// SplitMix64 over the parts: a seed for each `(seed, step, item, sample)` that does not depend
/// on how many draws came before.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        let mut z = h ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// Rows of one packed forward at most: a GRPO group's answers (which share their prompt's rows),
/// a DPO pair, or a run of SFT items go through one forward and one backward when they fit,
/// so each weight is read once for all of them instead of once per answer. Activations held
/// for a backward grow with the rows: with taped layers and head (`model::forward::tape`)
/// about 0.7 MB per row of layer tape plus 0.2 MB of logits for SmolLM2-135M in f32 (1.3 MB
/// through autograd). So a whole group of 8 answers of 128 tokens (1,061 rows with its prompt)
/// is one pack: 2 GRPO steps peaked at 2,646,080 KiB (2.71e9 B) and the backward took 6.5 s
/// instead of 10.4 s in 3 packs of ≤ 512 rows (one measurement each, 2026-12-03).
const PACK_ROWS: usize = 1100;

/// [`PACK_ROWS`] for a LoRA run, whose rows hold more for the backward (each adapted projection
/// keeps its frozen output, its low-rank output and their sum, and the MLP's product is not
/// recomputed): 2 GRPO steps of G 8 × 64 tokens on SmolLM2-135M peaked at 2.08e9 B with 512
/// rows and 1.10e9 B with 256 (one measurement each). LoRA is what a user picks for memory.
const LORA_PACK_ROWS: usize = 256;

/// Rows of one packed forward that keeps no graph (the frozen reference's log-probabilities):
/// its activations are freed layer by layer, so only the logits grow with the rows (~0.2 MB per
/// row for a 49k vocabulary), and a whole group of 8 answers of 128 tokens goes through one
/// forward: its prompt is computed once instead of once per backward pack (with 256-row packs
/// the reference took 3.9 s per step of 1 question × 8 × 128 tokens instead of 5.3 s).
const NO_GRAD_ROWS: usize = 1536;

/// Answers `ks` (indices into a step's answers) and their packed forward.
type AnswerPack = (std::ops::Range<usize>, PackedAnswers);

/// Phase tags inside seeds.
const PHASE_TRAIN: u64 = 1;
const PHASE_PREPARE: u64 = 2;
const PHASE_ORDER: u64 = 3;
const PHASE_LORA: u64 = 4;

fn cerr(e: candle_core::Error) -> TuneError {
    TuneError::Compute(e.to_string())
}

impl<'a> Tuner<'a> {
    /// A fresh run from `start`. `out`: where checkpoints go (must not hold another run's).
    pub fn new(
        start: Arc<Model>,
        settings: TuneSettings,
        items: Vec<TuneItem>,
        reward: &'a RewardFn<'a>,
        out: Option<&Path>,
        save_every: usize,
    ) -> Result<Self, TuneError> {
        // Before the policy's dense copies are made: those are the first large blocks.
        let alloc_policy = crate::alloc::Policy::HoldHeap.scoped();
        settings.validate().map_err(TuneError::Settings)?;
        if items.is_empty() {
            return Err(TuneError::Settings("no training questions".into()));
        }
        if let Some(bad) = items.iter().position(|i| i.prompt.is_empty()) {
            return Err(TuneError::Settings(format!(
                "item {bad} has an empty prompt"
            )));
        }
        check_item_ids(&items, start.config.vocab_size)?;
        if let Some(dir) = out {
            if dir.exists() && !dir.is_dir() {
                return Err(TuneError::Checkpoint(format!(
                    "`{}` is not a folder",
                    dir.display()
                )));
            }
            if let Some(first) = checkpoint::existing(dir).first() {
                return Err(TuneError::Checkpoint(format!(
                    "`{}` already holds checkpoints of a run (`{}`); choose another folder, or \
                     continue that run with `resume`",
                    dir.display(),
                    first.display()
                )));
            }
        }
        let dtype = dtype_of(&settings.dtype)?;
        let start_hash = weights_hash(&start).map_err(|e| TuneError::Model(e.to_string()))?;
        let seed = settings.seed;
        let policy = match settings.lora {
            Some(c) => Policy::with_lora(
                start.clone(),
                c,
                &|i| mix_seed(&[seed, PHASE_LORA, i as u64]),
                dtype,
            ),
            None => Policy::new(start.clone(), dtype),
        }
        .map_err(cerr)?;
        let reference = reference_of(&start, &policy, dtype)?;
        let opt = AdamW::new(settings.adamw, &policy.names, &policy.vars).map_err(cerr)?;
        let stop_tokens = start.config.eos_token_ids.clone();
        Ok(Self {
            data_hash: items_hash(&items),
            n_given: items.len(),
            settings,
            policy,
            reference,
            items,
            reward,
            stop_tokens,
            opt,
            log: Vec::new(),
            timing: Timing::default(),
            start_hash,
            out: out.map(Path::to_path_buf),
            save_every,
            first_step: 0,
            dropped: 0,
            _alloc_policy: alloc_policy,
        })
    }

    /// Continue the run saved in `checkpoint_dir` (a `step-…` folder). `start` must be the run's
    /// start model and `settings` and `items` its own: any difference is refused, listed.
    /// New checkpoints go to the checkpoint's parent folder.
    pub fn resume(
        start: Arc<Model>,
        settings: TuneSettings,
        items: Vec<TuneItem>,
        reward: &'a RewardFn<'a>,
        checkpoint_dir: &Path,
        save_every: usize,
    ) -> Result<Self, TuneError> {
        // Before the policy's dense copies are made: those are the first large blocks.
        let alloc_policy = crate::alloc::Policy::HoldHeap.scoped();
        settings.validate().map_err(TuneError::Settings)?;
        let loaded = checkpoint::load(checkpoint_dir, &start.device)?;
        let st = &loaded.state;
        let mut diffs = settings.differences(&st.settings);
        let hash = weights_hash(&start).map_err(|e| TuneError::Model(e.to_string()))?;
        if hash != st.start_hash {
            diffs.push(format!(
                "start model: `{}` (weights {}) now vs `{}` (weights {}) in the checkpoint",
                start.source,
                &hash[..12],
                st.start_source,
                &st.start_hash[..12.min(st.start_hash.len())]
            ));
        }
        let data_hash = items_hash(&items);
        if data_hash != st.data_hash {
            diffs.push(format!(
                "training questions: {} items now vs {} in the checkpoint (or different ones)",
                items.len(),
                st.n_items
            ));
        }
        if !diffs.is_empty() {
            return Err(TuneError::ResumeMismatch(diffs));
        }
        if st.step >= settings.steps {
            return Err(TuneError::Settings(format!(
                "the checkpoint is at step {} of {}: the run is finished",
                st.step, settings.steps
            )));
        }
        let out = checkpoint_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dtype = dtype_of(&settings.dtype)?;
        let policy = match (settings.lora, &loaded.adapters) {
            (Some(c), Some(factors)) => Policy::with_lora_values(start.clone(), c, factors, dtype),
            (Some(_), None) => {
                return Err(TuneError::Checkpoint(format!(
                    "`{}` has no lora factors",
                    checkpoint_dir.display()
                )))
            }
            (None, _) => Policy::with_values(start.clone(), &loaded.weights, dtype),
        }
        .map_err(cerr)?;
        let reference = reference_of(&start, &policy, dtype)?;
        let mut opt = AdamW::new(settings.adamw, &policy.names, &policy.vars).map_err(cerr)?;
        opt.restore(
            &policy.names,
            &loaded.optimizer,
            (st.step * settings.inner) as u64,
        )
        .map_err(cerr)?;
        let mut log = st.log.clone();
        for (i, row) in log.iter_mut().enumerate() {
            row.seconds = loaded.timing.seconds.get(i).copied();
            row.tokens_per_s = loaded.timing.tokens_per_s.get(i).copied();
            row.sample_s = loaded.timing.sample_s.get(i).copied().flatten();
        }
        let stop_tokens = start.config.eos_token_ids.clone();
        Ok(Self {
            data_hash,
            n_given: items.len(),
            first_step: st.step,
            settings,
            policy,
            reference,
            items,
            reward,
            stop_tokens,
            opt,
            log,
            timing: loaded.timing,
            start_hash: hash,
            out: Some(out),
            save_every,
            dropped: 0,
            _alloc_policy: alloc_policy,
        })
    }

    /// The policy (current weights).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Run to the last step, or until interrupted (the step under way finishes and is saved).
    pub fn run(mut self, host: TuneHost) -> Result<TuneOutcome, TuneError> {
        let s = self.settings.clone();
        if s.method != Method::Grpo {
            self.prepare_offline(host.on_prepare)?;
        }
        let n_items = self.items.len();
        let mut checkpoints = Vec::new();
        let mut interrupted = false;
        for step in self.first_step..s.steps {
            let t0 = Instant::now();
            self.park_moments()?;
            let (mut row, tokens) = match s.method {
                Method::Grpo => self.grpo_step(step)?,
                Method::Dpo => self.dpo_step(step)?,
                Method::Sft => self.sft_step(step)?,
            };
            let secs = t0.elapsed().as_secs_f64();
            row.seconds = Some(secs);
            row.tokens_per_s = Some(tokens as f64 / secs.max(1e-9));
            self.timing.seconds.push(secs);
            self.timing
                .tokens_per_s
                .push(tokens as f64 / secs.max(1e-9));
            self.timing.sample_s.push(row.sample_s);
            self.log.push(row.clone());
            (host.on_step)(&row, s.steps);
            let done = step + 1;
            interrupted = (host.interrupted)();
            let due = self.save_every > 0 && done % self.save_every == 0;
            if due || done == s.steps || interrupted {
                if let Some(p) = self.save(done)? {
                    checkpoints.push(p);
                }
            }
            if interrupted {
                break;
            }
        }
        Ok(TuneOutcome {
            log: self.log,
            checkpoints,
            interrupted,
            dropped: self.dropped,
            n_items,
        })
    }

    /// A full fine-tune's moments wait on disk, beside the checkpoints, until the next update
    /// reads them back: called before every phase that samples or differentiates (each step,
    /// and each further `inner` update of a GRPO batch), so no backward runs beside them.
    /// Nothing to do without an output folder, for LoRA (small moments), or when parked.
    fn park_moments(&mut self) -> Result<(), TuneError> {
        if let (Some(out), None) = (&self.out, self.policy.lora()) {
            std::fs::create_dir_all(out)
                .map_err(|e| TuneError::Checkpoint(format!("`{}`: {e}", out.display())))?;
            self.opt.park(out).map_err(cerr)?;
        }
        Ok(())
    }

    fn save(&self, step: usize) -> Result<Option<PathBuf>, TuneError> {
        let Some(out) = &self.out else {
            return Ok(None);
        };
        let state = TrainerState {
            format: STATE_FORMAT.into(),
            settings: self.settings.clone(),
            step,
            start_source: self.policy.start.source.clone(),
            start_hash: self.start_hash.clone(),
            data_hash: self.data_hash.clone(),
            n_items: self.n_given,
            log: self.log.iter().map(LogRow::without_timing).collect(),
        };
        let adapters = self.policy.lora().map(|_| self.policy.trained());
        let p = checkpoint::save(
            out,
            &self.policy.start,
            &self.policy.weight_files().map_err(cerr)?,
            &self.opt.state_files(&self.policy.names).map_err(cerr)?,
            adapters.as_ref(),
            &state,
            &self.timing,
        )?;
        Ok(Some(p))
    }

    /// The items of step `step`: a seeded permutation of all items per epoch, read in order.
    fn batch_items(&self, step: usize) -> Vec<usize> {
        let n = self.items.len();
        let b = self.settings.batch;
        (0..b)
            .map(|k| {
                let pos = step * b + k;
                let epoch = pos / n;
                let mut perm: Vec<usize> = (0..n).collect();
                let mut rng = StdRng::seed_from_u64(mix_seed(&[
                    self.settings.seed,
                    PHASE_ORDER,
                    epoch as u64,
                ]));
                perm.shuffle(&mut rng);
                perm[pos % n]
            })
            .collect()
    }

    /// Rows of one packed forward with a graph ([`PACK_ROWS`], [`LORA_PACK_ROWS`]).
    fn pack_rows(&self) -> usize {
        match self.policy.lora() {
            Some(_) => LORA_PACK_ROWS,
            None => PACK_ROWS,
        }
    }

    fn gen_opts(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.settings.max_tokens,
            temperature: self.settings.temperature,
            top_p: self.settings.top_p,
            seed: 0,
            stop_tokens: self.stop_tokens.clone(),
            min_tokens: self.settings.min_tokens,
        }
    }

    /// Split a sampled answer into (ids to train on, ids to grade, stopped by itself).
    fn split_answer(&self, out: Vec<u32>) -> (Vec<u32>, Vec<u32>, bool) {
        let finished = out.last().is_some_and(|t| self.stop_tokens.contains(t));
        let graded = if finished {
            out[..out.len() - 1].to_vec()
        } else {
            out.clone()
        };
        (out, graded, finished)
    }

    /// Sum the weight gradients of `loss`, a loss over one sequence's forward cut into `pieces`,
    /// into `acc` (one slot per trained weight): the gradients come a layer at a time and each
    /// is added to `acc` as it comes, so beside `acc` only one layer's gradients (and the
    /// unembedding's) exist, not a whole second set. Per weight the sum is formed in the same
    /// order as from one backward (a tied embedding's unembedding and embedding gradients are
    /// added together first), so `acc` is bit for bit what adding one `loss.backward()`'s
    /// gradients gives, except a tied embedding's rows of tokens that occur
    /// more than once in the sequence: rounding-level (≤ 1 ulp per row addition; see
    /// [`Pieces::backward`]).
    fn accumulate_pieces(
        &self,
        loss: &Tensor,
        pieces: Pieces,
        acc: &mut [Option<Tensor>],
    ) -> Result<(), TuneError> {
        let vars = &self.policy.vars;
        // The first piece's gradients, kept until the last piece may have added to them.
        let mut held: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut first = true;
        let mut sink = |mut grads: candle_core::backprop::GradStore| -> candle_core::Result<()> {
            for (i, v) in vars.iter().enumerate() {
                let Some(g) = grads.remove(v.as_tensor()) else {
                    continue;
                };
                if first {
                    held[i] = Some(g);
                } else if let Some(h) = held[i].take() {
                    held[i] = Some((h + g)?);
                } else {
                    add_into(&mut acc[i], g)?;
                }
            }
            first = false;
            Ok(())
        };
        pieces.backward(loss, &mut sink).map_err(cerr)?;
        for (slot, h) in acc.iter_mut().zip(held) {
            if let Some(g) = h {
                add_into(slot, g).map_err(cerr)?;
            }
        }
        Ok(())
    }

    /// Clip and apply accumulated gradients at optimiser update `update` (0-based).
    fn update(&mut self, acc: Vec<Option<Tensor>>, update: usize) -> Result<(f64, f64), TuneError> {
        let grads = acc
            .into_iter()
            .zip(&self.policy.vars)
            .map(|(g, v)| match g {
                Some(g) => Ok(g),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(cerr)?;
        let norm = grad_norm(&grads).map_err(cerr)?;
        if !norm.is_finite() {
            return Err(TuneError::Compute(format!(
                "the gradient norm is {norm} at update {}: the loss diverged (lower lr?)",
                update + 1
            )));
        }
        let total = self.settings.steps * self.settings.inner;
        let lr = lr_at(self.settings.lr, update, total, self.settings.warmup);
        let scale = clip_factor(norm, self.settings.grad_clip);
        self.opt
            .step(&self.policy.vars, &grads, scale, lr)
            .map_err(cerr)?;
        Ok((norm, lr))
    }

    fn grpo_step(&mut self, step: usize) -> Result<(LogRow, usize), TuneError> {
        let s = self.settings.clone();
        let idx = self.batch_items(step);
        let g = s.group;
        let mut prompts = Vec::with_capacity(idx.len() * g);
        let mut seeds = Vec::with_capacity(idx.len() * g);
        for &q in &idx {
            for j in 0..g {
                prompts.push(self.items[q].prompt.clone());
                seeds.push(mix_seed(&[
                    s.seed,
                    PHASE_TRAIN,
                    step as u64,
                    q as u64,
                    j as u64,
                ]));
            }
        }
        let never = || false;
        let sampling = Instant::now();
        let outs = generate_batch_seeded(
            &self.policy.infer,
            &prompts,
            &self.gen_opts(),
            &seeds,
            &never,
        )
        .map_err(cerr)?;
        let sample_s = sampling.elapsed().as_secs_f64();
        // Rewards and advantages per group.
        let mut answers = Vec::with_capacity(outs.len());
        let mut rewards = Vec::with_capacity(outs.len());
        let mut correct = 0usize;
        for (k, out) in outs.into_iter().enumerate() {
            let q = idx[k / g];
            let (train_ids, graded, finished) = self.split_answer(out);
            let sc = (self.reward)(q, &graded, finished);
            correct += usize::from(sc.correct);
            rewards.push(sc.reward);
            answers.push(train_ids);
        }
        let mut advantages = Vec::with_capacity(rewards.len());
        let mut zero_groups = 0;
        let mut group_std_sum = 0.0;
        for chunk in rewards.chunks(g) {
            let a = group_advantages(chunk, s.advantage);
            if a.iter().all(|x| *x == 0.0) {
                zero_groups += 1;
            }
            let m = chunk.iter().sum::<f64>() / g as f64;
            group_std_sum +=
                (chunk.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (g as f64 - 1.0)).sqrt();
            advantages.extend(a);
        }
        // Each group's answers in runs that fit one packed forward: with a graph for the
        // backward (`packs`), and without one for the reference (`reference_packs`, larger).
        let group_packs = |budget: usize| -> Result<Vec<AnswerPack>, TuneError> {
            let mut packs = Vec::new();
            for (gi, &q) in idx.iter().enumerate() {
                let prompt = &self.items[q].prompt;
                let group = gi * g..(gi + 1) * g;
                let rows: Vec<usize> = answers[group.clone()]
                    .iter()
                    .map(|a| a.len().saturating_sub(1))
                    .collect();
                for run in runs_within(prompt.len(), &rows, budget) {
                    let ks = group.start + run.start..group.start + run.end;
                    let refs: Vec<&[u32]> = answers[ks.clone()].iter().map(Vec::as_slice).collect();
                    packs.push((ks, PackedAnswers::shared(prompt, &refs).map_err(cerr)?));
                }
            }
            Ok(packs)
        };
        let packs = group_packs(self.pack_rows())?;
        let reference_packs = group_packs(NO_GRAD_ROWS)?;
        let to_f64 = |t: &Tensor| -> Result<Vec<f64>, TuneError> {
            t.to_dtype(DType::F64)
                .and_then(|t| t.to_vec1::<f64>())
                .map_err(cerr)
        };
        // The frozen start's log-probabilities (for the KL; measured for the log even at β 0).
        let mut reference: Vec<Vec<f64>> = vec![Vec::new(); answers.len()];
        for (ks, pack) in &reference_packs {
            let lps = pack.logprobs(&self.reference).map_err(cerr)?;
            for (k, lp) in ks.clone().zip(&lps) {
                reference[k] = to_f64(lp)?;
            }
        }
        let n_seq = answers.len() as f64;
        let mut old: Vec<Option<Vec<f64>>> = vec![None; answers.len()];
        let (mut loss_sum, mut kl_sum, mut clipped, mut tokens) = (0.0, 0.0, 0usize, 0usize);
        let (mut norm, mut lr) = (0.0, 0.0);
        for inner in 0..s.inner {
            // The previous inner update read the moments back (the first finds them parked).
            self.park_moments()?;
            let mut acc: Vec<Option<Tensor>> = vec![None; self.policy.vars.len()];
            (loss_sum, kl_sum, clipped, tokens) = (0.0, 0.0, 0, 0);
            for (ks, pack) in &packs {
                let (lps, pieces) = pack.logprobs_pieces(&self.policy.train).map_err(cerr)?;
                let mut run_loss: Option<Tensor> = None;
                for (k, lp) in ks.clone().zip(&lps) {
                    let ans = &answers[k];
                    let lp_vals = to_f64(lp)?;
                    // π_old is the policy that sampled the batch: at the first inner update it
                    // is the current policy itself (ratio exactly 1).
                    let old_k = old[k].get_or_insert_with(|| lp_vals.clone()).clone();
                    let weight = 1.0 / (n_seq * ans.len() as f64);
                    let term = grpo_term(
                        lp,
                        &old_k,
                        Some(&reference[k]),
                        advantages[k],
                        s.clip,
                        s.beta,
                        weight,
                    )
                    .map_err(cerr)?;
                    loss_sum += term
                        .loss
                        .to_dtype(DType::F64)
                        .and_then(|t| t.to_scalar::<f64>())
                        .map_err(cerr)?;
                    kl_sum += term.kl_sum;
                    clipped += term.clipped;
                    tokens += ans.len();
                    // An answer with no advantage and no KL term has no gradient.
                    if advantages[k] != 0.0 || s.beta != 0.0 {
                        add_into(&mut run_loss, term.loss).map_err(cerr)?;
                    }
                }
                if let Some(loss) = run_loss {
                    self.accumulate_pieces(&loss, pieces, &mut acc)?;
                }
            }
            (norm, lr) = self.update(acc, step * s.inner + inner)?;
        }
        let n_groups = idx.len() as f64;
        let row = LogRow {
            step: step + 1,
            reward_mean: Some(rewards.iter().sum::<f64>() / n_seq),
            reward_std: Some(group_std_sum / n_groups),
            accuracy: Some(correct as f64 / n_seq),
            kl: Some(kl_sum / tokens.max(1) as f64),
            loss: loss_sum,
            grad_norm: norm,
            lr,
            zero_adv_groups: Some(zero_groups),
            clip_frac: Some(clipped as f64 / tokens.max(1) as f64),
            answer_len: tokens as f64 / n_seq,
            tokens_per_s: None,
            seconds: None,
            sample_s: Some(sample_s),
        };
        Ok((row, tokens * s.inner))
    }

    fn dpo_step(&mut self, step: usize) -> Result<(LogRow, usize), TuneError> {
        let s = self.settings.clone();
        let idx = self.batch_items(step);
        let mut acc: Vec<Option<Tensor>> = vec![None; self.policy.vars.len()];
        let (mut loss_sum, mut tokens) = (0.0, 0usize);
        let mut margins = Vec::with_capacity(idx.len());
        let n = idx.len() as f64;
        for &q in &idx {
            let item = &self.items[q];
            let (Some(w), Some(l)) = (&item.chosen, &item.rejected) else {
                return Err(TuneError::Settings(format!(
                    "item {q} has no chosen/rejected pair"
                )));
            };
            // The pair in one packed forward (they share the prompt's rows).
            let pack = PackedAnswers::shared(&item.prompt, &[w, l]).map_err(cerr)?;
            let ref_sum = |lp: &Tensor| -> Result<f64, TuneError> {
                lp.to_dtype(DType::F64)
                    .and_then(|t| t.sum_all()?.to_scalar::<f64>())
                    .map_err(cerr)
            };
            let refs = pack.logprobs(&self.reference).map_err(cerr)?;
            let (rw, rl) = (ref_sum(&refs[0])?, ref_sum(&refs[1])?);
            let (lps, pieces) = pack.logprobs_pieces(&self.policy.train).map_err(cerr)?;
            // Differentiated in two stages (see `dpo_term_at_sums`): the pair's forward is
            // backpropagated, a layer at a time, from `Σlp_w · ∂L/∂Σlp_w + Σlp_l · ∂L/∂Σlp_l`
            // (each `sum · g` has gradient `g` at `sum` exactly), so no whole second set of
            // weight gradients exists.
            let (sum_w, sum_l) = (
                lps[0].sum_all().map_err(cerr)?,
                lps[1].sum_all().map_err(cerr)?,
            );
            let (term, gw, gl) =
                dpo_term_at_sums(&sum_w, &sum_l, rw, rl, s.beta, 1.0 / n).map_err(cerr)?;
            loss_sum += term
                .loss
                .to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(cerr)?;
            margins.push(term.margin);
            tokens += w.len() + l.len();
            let surrogate =
                ((sum_w * gw).map_err(cerr)? + (sum_l * gl).map_err(cerr)?).map_err(cerr)?;
            self.accumulate_pieces(&surrogate, pieces, &mut acc)?;
        }
        let (norm, lr) = self.update(acc, step)?;
        let mean = margins.iter().sum::<f64>() / n;
        let std = if margins.len() > 1 {
            (margins.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let row = LogRow {
            step: step + 1,
            reward_mean: Some(mean),
            reward_std: Some(std),
            accuracy: Some(margins.iter().filter(|m| **m > 0.0).count() as f64 / n),
            loss: loss_sum,
            grad_norm: norm,
            lr,
            answer_len: tokens as f64 / (2.0 * n),
            ..Default::default()
        };
        Ok((row, tokens))
    }

    fn sft_step(&mut self, step: usize) -> Result<(LogRow, usize), TuneError> {
        let idx = self.batch_items(step);
        let targets: Vec<&Vec<u32>> =
            idx.iter()
                .map(|&q| {
                    self.items[q].target.as_ref().ok_or_else(|| {
                        TuneError::Settings(format!("item {q} has no target answer"))
                    })
                })
                .collect::<Result<_, _>>()?;
        let total: usize = targets.iter().map(|t| t.len()).sum();
        let mut acc: Vec<Option<Tensor>> = vec![None; self.policy.vars.len()];
        let mut loss_sum = 0.0;
        // Runs of items side by side, one packed forward each.
        let rows: Vec<usize> = idx
            .iter()
            .zip(&targets)
            .map(|(&q, t)| self.items[q].prompt.len() + t.len() - 1)
            .collect();
        for run in runs_within(0, &rows, self.pack_rows()) {
            let pairs: Vec<(&[u32], &[u32])> = run
                .map(|i| (self.items[idx[i]].prompt.as_slice(), targets[i].as_slice()))
                .collect();
            let pack = PackedAnswers::separate(&pairs).map_err(cerr)?;
            let (lps, pieces) = pack.logprobs_pieces(&self.policy.train).map_err(cerr)?;
            let mut run_loss: Option<Tensor> = None;
            for lp in &lps {
                let loss = sft_term(lp, 1.0 / total as f64).map_err(cerr)?;
                loss_sum += loss
                    .to_dtype(DType::F64)
                    .and_then(|t| t.to_scalar::<f64>())
                    .map_err(cerr)?;
                add_into(&mut run_loss, loss).map_err(cerr)?;
            }
            if let Some(loss) = run_loss {
                self.accumulate_pieces(&loss, pieces, &mut acc)?;
            }
        }
        let (norm, lr) = self.update(acc, step)?;
        let row = LogRow {
            step: step + 1,
            loss: loss_sum,
            grad_norm: norm,
            lr,
            answer_len: total as f64 / idx.len() as f64,
            ..Default::default()
        };
        Ok((row, total))
    }

    /// DPO pairs / SFT targets from the start model's own graded samples, for items that lack
    /// them: `group` samples per question; DPO keeps the first correct and the first incorrect
    /// answer, SFT the first correct one (rejection sampling). Items with neither are dropped.
    fn prepare_offline(&mut self, progress: &mut dyn FnMut(usize, usize)) -> Result<(), TuneError> {
        let s = self.settings.clone();
        let needs = |it: &TuneItem| match s.method {
            Method::Dpo => it.chosen.is_none() || it.rejected.is_none(),
            Method::Sft => it.target.is_none(),
            Method::Grpo => false,
        };
        let todo: Vec<usize> = (0..self.items.len())
            .filter(|&i| needs(&self.items[i]))
            .collect();
        let opts = self.gen_opts();
        let never = || false;
        for (done, &q) in todo.iter().enumerate() {
            let prompts = vec![self.items[q].prompt.clone(); s.group];
            let seeds: Vec<u64> = (0..s.group)
                .map(|j| mix_seed(&[s.seed, PHASE_PREPARE, q as u64, j as u64]))
                .collect();
            let outs = generate_batch_seeded(&self.reference, &prompts, &opts, &seeds, &never)
                .map_err(cerr)?;
            let (mut good, mut bad) = (None, None);
            for out in outs {
                let (train_ids, graded, finished) = self.split_answer(out);
                let sc = (self.reward)(q, &graded, finished);
                if sc.correct {
                    good.get_or_insert(train_ids);
                } else {
                    bad.get_or_insert(train_ids);
                }
            }
            let item = &mut self.items[q];
            match s.method {
                Method::Dpo => {
                    item.chosen = good;
                    item.rejected = bad;
                }
                Method::Sft => item.target = good,
                Method::Grpo => {}
            }
            progress(done + 1, todo.len());
        }
        let before = self.items.len();
        self.items.retain(|it| !needs(it));
        self.dropped = before - self.items.len();
        if self.items.is_empty() {
            return Err(TuneError::Settings(format!(
                "no {} data: none of the {before} questions gave the start model {}",
                s.method.name(),
                match s.method {
                    Method::Dpo => "both a correct and an incorrect answer",
                    _ => "a correct answer",
                }
            )));
        }
        Ok(())
    }
}

/// `slot += g` (`slot = g` when empty).
fn add_into(slot: &mut Option<Tensor>, g: Tensor) -> candle_core::Result<()> {
    *slot = Some(match slot.take() {
        Some(a) => (a + g)?,
        None => g,
    });
    Ok(())
}

/// The frozen start as the reference forward, in the run's compute dtype (a GGUF's quantized
/// matrices stay quantized for f32: the same values as the policy's dense copy). A LoRA policy
/// already holds it: its frozen weights, not a second copy.
fn reference_of(
    start: &Model,
    policy: &Policy,
    dtype: DType,
) -> Result<HookedTransformer, TuneError> {
    if let Some(frozen) = policy.frozen() {
        return Ok(frozen.clone());
    }
    let reference = HookedTransformer::new(start).map_err(|e| TuneError::Model(e.to_string()))?;
    if reference.dtype() == dtype {
        Ok(reference)
    } else {
        reference.to_dtype(dtype).map_err(cerr)
    }
}

fn dtype_of(s: &str) -> Result<DType, TuneError> {
    match s {
        "f32" => Ok(DType::F32),
        "f64" => Ok(DType::F64),
        other => Err(TuneError::Settings(format!(
            "dtype must be f32 or f64, not {other}"
        ))),
    }
}

fn check_item_ids(items: &[TuneItem], vocab: usize) -> Result<(), TuneError> {
    for (i, it) in items.iter().enumerate() {
        let lists = [
            ("prompt", Some(&it.prompt)),
            ("chosen", it.chosen.as_ref()),
            ("rejected", it.rejected.as_ref()),
            ("target", it.target.as_ref()),
        ];
        for (what, ids) in lists {
            if let Some(bad) = ids.and_then(|v| v.iter().find(|&&t| t as usize >= vocab)) {
                return Err(TuneError::Settings(format!(
                    "item {i}: {what} holds token id {bad}, beyond the vocabulary ({vocab} ids)"
                )));
            }
            if what != "prompt" && ids.is_some_and(|v| v.is_empty()) {
                return Err(TuneError::Settings(format!(
                    "item {i}: the {what} answer is empty"
                )));
            }
        }
    }
    Ok(())
}

/// Hash of the items' ids (prompts and given answers, in order).
pub fn items_hash(items: &[TuneItem]) -> String {
    let mut h = blake3::Hasher::new();
    let mut put = |tag: u8, ids: Option<&Vec<u32>>| {
        h.update(&[tag]);
        if let Some(ids) = ids {
            h.update(&(ids.len() as u64).to_le_bytes());
            for t in ids {
                h.update(&t.to_le_bytes());
            }
        }
    };
    for it in items {
        put(0, Some(&it.prompt));
        put(1, it.chosen.as_ref());
        put(2, it.rejected.as_ref());
        put(3, it.target.as_ref());
    }
    h.finalize().to_hex().to_string()
}
