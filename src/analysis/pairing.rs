//! Are two graphs comparable? Same prompts (for paired statistics), same edges (for per-edge views).

use std::collections::{HashMap, HashSet};

use super::error::{AnalysisError, Result};
use super::matrix::ScoreMatrix;

/// Both graphs must be scored on the same prompt_id set for paired statistics.
pub fn check_same_prompts(base: &ScoreMatrix, tuned: &ScoreMatrix) -> Result<()> {
    // prompt_ids are sorted and distinct, so equal sets are equal vectors.
    if base.prompt_ids == tuned.prompt_ids {
        return Ok(());
    }
    let b: HashSet<i64> = base.prompt_ids.iter().copied().collect();
    let t: HashSet<i64> = tuned.prompt_ids.iter().copied().collect();
    let only_b: Vec<i64> = base
        .prompt_ids
        .iter()
        .filter(|p| !t.contains(p))
        .copied()
        .collect();
    let only_t: Vec<i64> = tuned
        .prompt_ids
        .iter()
        .filter(|p| !b.contains(p))
        .copied()
        .collect();
    let example = match (only_b.first(), only_t.first()) {
        (Some(p), _) => format!("prompt_id {p} only in base"),
        (None, Some(p)) => format!("prompt_id {p} only in tuned"),
        (None, None) => "none".into(),
    };
    Err(AnalysisError::PromptMismatch {
        only_in_base: only_b.len(),
        only_in_tuned: only_t.len(),
        example,
    })
}

/// Both graphs must have the same (src, dst) set for per-edge views. Returns, for each of
/// `base`'s edges, its index in `tuned`.
pub fn match_edges(base: &ScoreMatrix, tuned: &ScoreMatrix) -> Result<Vec<usize>> {
    let tuned_index: HashMap<(&str, &str), usize> = tuned
        .edges
        .iter()
        .enumerate()
        .map(|(i, e)| ((e.src.as_str(), e.dst.as_str()), i))
        .collect();
    let mapping: Vec<Option<usize>> = base
        .edges
        .iter()
        .map(|e| tuned_index.get(&(e.src.as_str(), e.dst.as_str())).copied())
        .collect();
    let only_b: Vec<usize> = (0..mapping.len())
        .filter(|&i| mapping[i].is_none())
        .collect();
    if only_b.is_empty() && base.n_edges() == tuned.n_edges() {
        return Ok(mapping.into_iter().flatten().collect());
    }
    let base_names: HashSet<(&str, &str)> = base
        .edges
        .iter()
        .map(|e| (e.src.as_str(), e.dst.as_str()))
        .collect();
    let only_t: Vec<usize> = (0..tuned.n_edges())
        .filter(|&i| {
            let e = &tuned.edges[i];
            !base_names.contains(&(e.src.as_str(), e.dst.as_str()))
        })
        .collect();
    let example = match (only_b.first(), only_t.first()) {
        (Some(&i), _) => format!("{} only in base", base.edges[i].name()),
        (None, Some(&i)) => format!("{} only in tuned", tuned.edges[i].name()),
        (None, None) => "none".into(),
    };
    let layers = |m: &ScoreMatrix| m.max_dst_layer().unwrap_or(-1);
    Err(AnalysisError::EdgeMismatch {
        only_in_base: only_b.len(),
        only_in_tuned: only_t.len(),
        example,
        base_layers: layers(base),
        tuned_layers: layers(tuned),
    })
}

/// Both graphs must have scored the same tokens for every prompt: each prompt_id's sample hash
/// (of its input, corrupted input and loss targets) equal in both. This is the check behind the
/// same-token control of issue 10 (each model scored on the other's answer tokens), which
/// separates "different circuits" from "different texts". A prompt in one graph only, or with
/// no hash (a graph saved before hashes were kept), differs too: its tokens cannot be checked.
/// Ids and hashes are parallel slices, as in `GraphMeta`.
pub fn check_same_tokens(
    base_ids: &[i64],
    base_hashes: &[String],
    tuned_ids: &[i64],
    tuned_hashes: &[String],
) -> Result<()> {
    let known = |ids: &[i64], hashes: &[String]| -> HashMap<i64, Option<String>> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| (id, hashes.get(i).filter(|h| !h.is_empty()).cloned()))
            .collect()
    };
    let (b, t) = (known(base_ids, base_hashes), known(tuned_ids, tuned_hashes));
    let mut differ: Vec<i64> = b
        .iter()
        .filter(|(id, h)| match (h, t.get(id)) {
            (Some(hb), Some(Some(ht))) => hb != ht,
            _ => true,
        })
        .map(|(id, _)| *id)
        .chain(t.keys().filter(|id| !b.contains_key(id)).copied())
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    differ.sort_unstable();
    const LISTED: usize = 10;
    let mut listed: Vec<String> = differ.iter().take(LISTED).map(i64::to_string).collect();
    if differ.len() > LISTED {
        listed.push(format!("and {} more", differ.len() - LISTED));
    }
    Err(AnalysisError::TokenMismatch {
        count: differ.len(),
        prompt_ids: listed.join(", "),
    })
}
