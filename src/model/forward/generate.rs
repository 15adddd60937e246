//! Token generation with a KV cache: greedy by default, or temperature / top-p sampling with a
//! seed. Works on ids; text in and out is the caller's (tokenizer and chat template).

use candle_core::{DType, IndexOp, Result, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::hooked::{ForwardInput, HookedTransformer, Hooks, KvCache};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    /// Generation stops after any of these (the stop token is kept in the output).
    pub stop_tokens: Vec<u32>,
    /// No stop token is drawn before this many new tokens (their probability is 0 until then,
    /// as HF's `min_new_tokens` and vLLM's `min_tokens`): answers of a fixed length.
    pub min_tokens: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
            min_tokens: 0,
        }
    }
}

/// Continue `prompt` and return only the new tokens. `interrupted` is polled between tokens;
/// when it fires, the tokens so far are returned.
pub fn generate(
    tf: &HookedTransformer,
    prompt: &[u32],
    opts: &GenerateOptions,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<u32>> {
    let mut outs = generate_batch(tf, &[prompt.to_vec()], opts, interrupted)?;
    Ok(outs.pop().unwrap_or_default())
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It produced a stop token (kept as the last token).
    StopToken,
    /// It reached `max_tokens` without a stop token: the answer is cut short.
    MaxTokens,
    /// It reached the model's context length (`max_position`).
    Context,
    /// `interrupted` fired first (Ctrl-C); it may not have started at all (no tokens).
    Interrupted,
}

/// One continuation and why it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: Stop,
}

/// Continue several prompts together; see [`generate_batch_detailed`] (this drops the reasons).
pub fn generate_batch(
    tf: &HookedTransformer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Vec<u32>>> {
    Ok(generate_batch_detailed(tf, prompts, opts, interrupted)?
        .into_iter()
        .map(|g| g.tokens)
        .collect())
}

/// Continue several prompts together. Each distinct prompt is prefilled once; then every unfinished
/// sequence advances one token per step through [`HookedTransformer::decode_step`], so the
/// weights are read once per step for all of them. Each sequence gets its own sampler seeded
/// with `opts.seed`, exactly as [`generate`] would give it alone, so batching changes no
/// sampling decision; logits agree with one-at-a-time decoding exactly with dense f32 weights
/// and up to 16 sequences, or quantized weights and up to 8 (the few-rows products sum each row
/// on its own), else up to the matmul's summation order.
///
/// Errors: an empty prompt, a prompt longer than the model's context, a token id outside the
/// vocabulary, logits that are not finite (NaN or ±inf: the model computes no distribution, and
/// greedy decoding would repeat token 0 for ever).
pub fn generate_batch_detailed(
    tf: &HookedTransformer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Generation>> {
    let seeds = vec![opts.seed; prompts.len()];
    generate_batch_detailed_seeded(tf, prompts, opts, &seeds, interrupted)
}

/// [`generate_batch`] with one sampler seed per prompt (`opts.seed` is ignored): several samples
/// of the same prompt (GRPO's group) then differ, and each is still reproducible on its own.
pub fn generate_batch_seeded(
    tf: &HookedTransformer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    seeds: &[u64],
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Vec<u32>>> {
    Ok(
        generate_batch_detailed_seeded(tf, prompts, opts, seeds, interrupted)?
            .into_iter()
            .map(|g| g.tokens)
            .collect(),
    )
}

/// [`generate_batch_detailed`] with one sampler seed per prompt.
pub fn generate_batch_detailed_seeded(
    tf: &HookedTransformer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    seeds: &[u64],
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Generation>> {
    generate_batch_observed(tf, prompts, opts, seeds, interrupted, &mut |_, _| {})
}

/// [`generate_batch_detailed_seeded`], telling `on_token(longest answer so far, max_tokens)`
/// after each token step, so a host can show a long generation moving.
pub fn generate_batch_observed(
    tf: &HookedTransformer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    seeds: &[u64],
    interrupted: &dyn Fn() -> bool,
    on_token: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Generation>> {
    let max_position = tf.config.max_position;
    let vocab = tf.config.vocab_size;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            candle_core::bail!("cannot generate from an empty prompt");
        }
        if p.len() > max_position {
            candle_core::bail!(
                "prompt {i} has {} tokens, over the model's context of {max_position}",
                p.len()
            );
        }
        if let Some(&id) = p.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("prompt {i}: token id {id} is outside the vocabulary ({vocab} ids)");
        }
    }
    if seeds.len() != prompts.len() {
        candle_core::bail!(
            "generate: {} seeds for {} prompts",
            seeds.len(),
            prompts.len()
        );
    }
    let n = prompts.len();
    let mut rngs: Vec<StdRng> = seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
    let mut caches = vec![KvCache::new(); n];
    let mut outs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut stops: Vec<Option<Stop>> = vec![None; n];
    // Why sequence i cannot take another token, if it cannot. A prompt of exactly the context
    // length still predicts one token (from its last position); nothing is fed past it.
    let finished = |i: usize, out: &[u32]| -> Option<Stop> {
        if out.last().is_some_and(|t| opts.stop_tokens.contains(t)) {
            Some(Stop::StopToken)
        } else if out.len() >= opts.max_tokens {
            Some(Stop::MaxTokens)
        } else if !out.is_empty() && prompts[i].len() + out.len() > max_position {
            Some(Stop::Context)
        } else {
            None
        }
    };
    // Prefill: only the last position's logits are needed. A prompt met before (a GRPO group's
    // G samples of one question) reuses that prefill: its cache (shared tensors; decoding
    // appends copies) and its last logits, the same values a second prefill would give.
    let mut prefilled: std::collections::HashMap<&[u32], (usize, Tensor)> =
        std::collections::HashMap::new();
    for i in 0..n {
        if interrupted() {
            break;
        }
        if opts.max_tokens == 0 {
            stops[i] = Some(Stop::MaxTokens);
            continue;
        }
        let seen = prefilled
            .get(prompts[i].as_slice())
            .map(|(j, last)| (*j, last.clone()));
        let last = match seen {
            Some((j, last)) => {
                caches[i] = caches[j].clone();
                last
            }
            None => {
                let hooks = Hooks {
                    logits_from: prompts[i].len() - 1,
                    ..Default::default()
                };
                let logits = tf
                    .forward(ForwardInput::Ids(&prompts[i]), &hooks, Some(&mut caches[i]))?
                    .logits;
                let last = logits.i(logits.dim(0)? - 1)?.to_dtype(DType::F64)?;
                prefilled.insert(prompts[i].as_slice(), (i, last.clone()));
                last
            }
        };
        outs[i].push(pick(&last, opts, &mut rngs[i], 0)?);
        stops[i] = finished(i, &outs[i]);
    }
    let longest = |outs: &[Vec<u32>]| outs.iter().map(Vec::len).max().unwrap_or(0);
    on_token(longest(&outs), opts.max_tokens);
    loop {
        if interrupted() {
            break;
        }
        let active: Vec<usize> = (0..n)
            .filter(|&i| !outs[i].is_empty() && stops[i].is_none())
            .collect();
        if active.is_empty() {
            break;
        }
        let tokens: Vec<u32> = active
            .iter()
            .map(|&i| *outs[i].last().expect("non-empty"))
            .collect();
        let mut step: Vec<KvCache> = active
            .iter()
            .map(|&i| std::mem::take(&mut caches[i]))
            .collect();
        // On one of rayon's threads: a step dispatches some 250 parallel products and
        // attentions (SmolLM2, 30 layers), and each dispatched from outside the pool wakes a
        // worker and then this thread again. From inside, the caller sleeps once per step:
        // GRPO's sampling of 8 × 128 tokens on 2 cores took 4.5 s instead of 5.2 and 5.1
        // instead of 5.8 (two sets of 6 runs each way, alternated). The same work, so the
        // same bits.
        let logits = rayon::scope(|_| tf.decode_step(&tokens, &mut step))?.to_dtype(DType::F64)?;
        for (row, (&i, cache)) in active.iter().zip(step).enumerate() {
            caches[i] = cache;
            let tok = pick(&logits.i(row)?, opts, &mut rngs[i], outs[i].len())?;
            outs[i].push(tok);
            stops[i] = finished(i, &outs[i]);
        }
        on_token(longest(&outs), opts.max_tokens);
    }
    Ok(outs
        .into_iter()
        .zip(stops)
        .map(|(tokens, stop)| Generation {
            tokens,
            stop: stop.unwrap_or(Stop::Interrupted),
        })
        .collect())
}

/// The next token from one position's logits; `step` (answer tokens so far) is for messages.
fn pick(logits: &Tensor, opts: &GenerateOptions, rng: &mut StdRng, step: usize) -> Result<u32> {
    let mut v = logits.to_vec1::<f64>()?;
    if let Some((id, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        candle_core::bail!(
            "the model's logits are not finite at answer token {step}: {bad} of {} are NaN or \
             infinite (first: id {id} is {x}); its weights or configuration give no usable \
             distribution",
            v.len()
        );
    }
    if !(opts.temperature.is_finite() && opts.top_p.is_finite()) {
        candle_core::bail!(
            "temperature ({}) and top_p ({}) must be finite",
            opts.temperature,
            opts.top_p
        );
    }
    if step < opts.min_tokens {
        for &id in &opts.stop_tokens {
            if let Some(x) = v.get_mut(id as usize) {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    if opts.temperature <= 0.0 {
        // Greedy; ties go to the lowest id, as argmax does everywhere else.
        let mut best = 0;
        for (i, x) in v.iter().enumerate() {
            if *x > v[best] {
                best = i;
            }
        }
        return Ok(best as u32);
    }
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = v
        .iter()
        .map(|x| ((x - m) / opts.temperature).exp())
        .collect();
    let z: f64 = e.iter().sum();
    if opts.top_p >= 1.0 {
        // The whole distribution: the inverse CDF in id order, one pass (no sort of the
        // vocabulary per token: that was most of sampling's own time).
        let r: f64 = rng.gen::<f64>() * z;
        let mut acc = 0.0;
        for (i, p) in e.iter().enumerate() {
            acc += p;
            if acc >= r && *p > 0.0 {
                return Ok(i as u32);
            }
        }
        return Ok(e.iter().rposition(|p| *p > 0.0).unwrap_or(0) as u32);
    }
    let probs = e.iter().map(|p| p / z).enumerate();
    // Nucleus: the smallest set of most likely tokens whose mass reaches top_p. It is a prefix
    // of the tokens sorted by probability, so when the tokens above a small floor already reach
    // top_p it lies among them and only they are sorted (stable: ties in id order, as a sort of
    // the whole vocabulary gives); otherwise the whole vocabulary is.
    const FLOOR: f64 = 1e-7;
    // The sorted prefix reaching top_p and its mass, and whether it reached it (else all of
    // `cand`: top_p above what the rounded mass reaches).
    let nucleus = |mut cand: Vec<(usize, f64)>| -> (Vec<(usize, f64)>, f64, bool) {
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut mass = 0.0;
        let mut end = None;
        for (n, p) in cand.iter().enumerate() {
            mass += p.1;
            if mass >= opts.top_p {
                end = Some(n + 1);
                break;
            }
        }
        match end {
            Some(n) => {
                cand.truncate(n);
                (cand, mass, true)
            }
            None => (cand, mass, false),
        }
    };
    let (kept, mass) = match nucleus(probs.clone().filter(|p| p.1 >= FLOOR).collect()) {
        (kept, mass, true) => (kept, mass),
        _ => {
            let (kept, mass, _) = nucleus(probs.collect());
            (kept, mass)
        }
    };
    let r: f64 = rng.gen::<f64>() * mass;
    let mut acc = 0.0;
    for (i, p) in &kept {
        acc += p;
        if acc >= r {
            return Ok(*i as u32);
        }
    }
    Ok(kept.last().map_or(0, |p| p.0 as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The nucleus sampler before the candidate floor: every token sorted.
    fn pick_sorting_all(v: &[f64], opts: &GenerateOptions, rng: &mut StdRng) -> u32 {
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut probs: Vec<(usize, f64)> = v
            .iter()
            .enumerate()
            .map(|(i, x)| (i, ((x - m) / opts.temperature).exp()))
            .collect();
        let z: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= z);
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (mut kept, mut mass) = (Vec::new(), 0.0);
        for p in probs {
            kept.push(p);
            mass += p.1;
            if mass >= opts.top_p {
                break;
            }
        }
        let r: f64 = rng.gen::<f64>() * mass;
        let mut acc = 0.0;
        for (i, p) in &kept {
            acc += p;
            if acc >= r {
                return *i as u32;
            }
        }
        kept.last().map_or(0, |p| p.0 as u32)
    }

    /// Nucleus sampling sorts only the tokens above the floor when they reach top_p: the same
    /// token as sorting the whole vocabulary, draw for draw (exact), for flat and peaked
    /// distributions and top_p up to 0.999 (where the floor is often not enough).
    #[test]
    fn nucleus_with_a_candidate_floor_draws_what_sorting_everything_draws() {
        let mut gen = StdRng::seed_from_u64(5);
        for case in 0..60 {
            let vocab = 2000;
            let spread = [0.5, 3.0, 12.0][case % 3];
            let v: Vec<f64> = (0..vocab).map(|_| gen.gen::<f64>() * spread).collect();
            let t = Tensor::new(v.as_slice(), &Device::Cpu).unwrap();
            for top_p in [0.5, 0.9, 0.999] {
                let opts = GenerateOptions {
                    temperature: [0.7, 1.0, 1.3][case % 3],
                    top_p,
                    ..Default::default()
                };
                let (mut a, mut b) = (
                    StdRng::seed_from_u64(case as u64),
                    StdRng::seed_from_u64(case as u64),
                );
                for _ in 0..20 {
                    let want = pick_sorting_all(&v, &opts, &mut a);
                    assert_eq!(
                        pick(&t, &opts, &mut b, 0).unwrap(),
                        want,
                        "case {case} top_p {top_p}"
                    );
                }
            }
        }
    }

    /// With top_p 1 the draw is from the whole distribution: frequencies over 40 000 draws
    /// within 5 standard errors of the probabilities (a wrong CDF walk is off by far more).
    #[test]
    fn full_distribution_sampling_has_the_right_frequencies() {
        let v = [2.0f64, 0.0, 1.0, -30.0, 0.5];
        let t = Tensor::new(&v[..], &Device::Cpu).unwrap();
        let opts = GenerateOptions {
            temperature: 1.0,
            top_p: 1.0,
            ..Default::default()
        };
        let e: Vec<f64> = v.iter().map(|x| x.exp()).collect();
        let z: f64 = e.iter().sum();
        let n = 40_000;
        let mut counts = [0usize; 5];
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..n {
            counts[pick(&t, &opts, &mut rng, 0).unwrap() as usize] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            let p = e[i] / z;
            let se = (p * (1.0 - p) / n as f64).sqrt().max(1e-4);
            let f = *c as f64 / n as f64;
            assert!(
                (f - p).abs() <= 5.0 * se,
                "token {i}: frequency {f} vs probability {p}"
            );
        }
    }
}
