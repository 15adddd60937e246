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
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
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
    if prompt.is_empty() {
        candle_core::bail!("cannot generate from an empty prompt");
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut cache = KvCache::new();
    let mut out = Vec::new();
    let mut next_input: Vec<u32> = prompt.to_vec();
    let limit = tf.config.max_position.max(prompt.len() + 1);
    while out.len() < opts.max_tokens && prompt.len() + out.len() < limit {
        if interrupted() {
            break;
        }
        let logits = tf
            .forward(
                ForwardInput::Ids(&next_input),
                &Hooks::default(),
                Some(&mut cache),
            )?
            .logits;
        let last = logits.i(logits.dim(0)? - 1)?.to_dtype(DType::F64)?;
        let tok = pick(&last, opts, &mut rng)?;
        out.push(tok);
        if opts.stop_tokens.contains(&tok) {
            break;
        }
        next_input = vec![tok];
    }
    Ok(out)
}

fn pick(logits: &Tensor, opts: &GenerateOptions, rng: &mut StdRng) -> Result<u32> {
    let v = logits.to_vec1::<f64>()?;
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
    let mut probs: Vec<(usize, f64)> = v
        .iter()
        .enumerate()
        .map(|(i, x)| (i, ((x - m) / opts.temperature).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= z);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Nucleus: the smallest set of most likely tokens whose mass reaches top_p.
    let mut kept = Vec::new();
    let mut mass = 0.0;
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
            return Ok(*i as u32);
        }
    }
    Ok(kept.last().map_or(0, |p| p.0 as u32))
}
