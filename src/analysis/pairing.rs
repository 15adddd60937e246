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
