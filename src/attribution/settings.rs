//! Are two graphs' settings the same? The one comparison over [`GraphMeta`] that `patch … resume`,
//! `merge` of shards and `compare` all use, so none of them can silently mix scores taken under
//! different settings.

use super::eap::{Sample, SampleLoss};
use super::graph::GraphMeta;

/// What the two graphs are about to become, which decides what may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `a` is the partial graph, `b` this run (its metadata lists every sample it will score):
    /// everything must match, and every sample of the partial graph must be one of this run's,
    /// with the same tokens.
    Resume,
    /// Two shards of one graph: everything must match and no sample may be in both.
    Merge,
    /// Base against tuned: the models (and so their depths and the answers scored) may differ;
    /// every other setting that changes a score must match.
    Compare,
}

impl Purpose {
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Purpose::Resume => ("the partial graph", "this run"),
            Purpose::Merge => ("the first shard", "this shard"),
            Purpose::Compare => ("base", "tuned"),
        }
    }
}

/// How many sample ids a difference lists before it says "and n more".
const LISTED: usize = 5;

/// Every setting in which `a` and `b` differ, one line each (`loss: nll in the partial graph,
/// self_entropy in this run`); empty when they may be combined for `purpose`.
pub fn differences(a: &GraphMeta, b: &GraphMeta, purpose: Purpose) -> Vec<String> {
    let (la, lb) = purpose.labels();
    let mut out = Vec::new();
    let field = |out: &mut Vec<String>, name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name}: {x} in {la}, {y} in {lb}"));
        }
    };
    let shown = |s: &str| {
        if s.is_empty() {
            "(unknown)".to_string()
        } else {
            s.to_string()
        }
    };
    if purpose != Purpose::Compare {
        // The weights decide; a path may be spelled two ways. Without both hashes, the path.
        if !a.model_hash.is_empty() && !b.model_hash.is_empty() {
            if a.model_hash != b.model_hash {
                out.push(format!(
                    "model: {} (weights {}) in {la}, {} (weights {}) in {lb}",
                    shown(&a.model),
                    short(&a.model_hash),
                    shown(&b.model),
                    short(&b.model_hash)
                ));
            }
        } else {
            field(&mut out, "model", shown(&a.model), shown(&b.model));
        }
        field(
            &mut out,
            "layers",
            a.n_layers.to_string(),
            b.n_layers.to_string(),
        );
    }
    field(&mut out, "loss", shown(&a.loss), shown(&b.loss));
    field(&mut out, "method", shown(&a.method), shown(&b.method));
    field(&mut out, "steps", opt(a.steps), opt(b.steps));
    field(
        &mut out,
        "granularity",
        shown(&a.granularity),
        shown(&b.granularity),
    );
    field(
        &mut out,
        "T_cut rule",
        shown(&a.t_cut_rule),
        shown(&b.t_cut_rule),
    );
    field(&mut out, "T_cut", opt(a.t_cut), opt(b.t_cut));
    let positions = |p: &Option<super::graph::AnswerPositions>| {
        p.as_ref()
            .map_or("none (the first T_cut)".to_string(), |p| p.to_string())
    };
    field(
        &mut out,
        "positions",
        positions(&a.answer_positions),
        positions(&b.answer_positions),
    );
    field(&mut out, "dtype", shown(&a.dtype), shown(&b.dtype));
    if purpose != Purpose::Compare {
        // Per-position scores sum to the edge scores, so a comparison may mix them; a resume or
        // a merge would leave some samples without their positions.
        field(
            &mut out,
            "per_position",
            a.per_position.to_string(),
            b.per_position.to_string(),
        );
    }
    field(&mut out, "ablation", shown(&a.ablation), shown(&b.ablation));
    field(
        &mut out,
        "chat template",
        a.chat.to_string(),
        b.chat.to_string(),
    );
    match purpose {
        Purpose::Resume => out.extend(resume_samples(a, b)),
        Purpose::Merge => out.extend(overlapping_samples(a, b)),
        Purpose::Compare => {}
    }
    out
}

/// The partial graph's samples must all be among this run's, each with the same tokens.
fn resume_samples(partial: &GraphMeta, run: &GraphMeta) -> Vec<String> {
    let here: std::collections::HashMap<i64, &str> = run
        .prompt_ids
        .iter()
        .copied()
        .zip(run.sample_hashes.iter().map(String::as_str))
        .collect();
    let mut foreign = Vec::new();
    let mut changed = Vec::new();
    for (i, id) in partial.prompt_ids.iter().enumerate() {
        match here.get(id) {
            None => foreign.push(*id),
            Some(h) => match partial.sample_hashes.get(i) {
                Some(p) if p == h => {}
                // No hash saved: the tokens cannot be checked, which is a difference too.
                _ => changed.push(*id),
            },
        }
    }
    let mut out = Vec::new();
    if !foreign.is_empty() {
        out.push(format!(
            "samples: prompt_id {} in the partial graph but not among this run's samples",
            listed(&foreign)
        ));
    }
    if !changed.is_empty() {
        out.push(format!(
            "sample tokens: prompt_id {} scored other tokens (prompt, answer, T_cut or corrupted \
             input) in the partial graph",
            listed(&changed)
        ));
    }
    out
}

fn overlapping_samples(a: &GraphMeta, b: &GraphMeta) -> Vec<String> {
    let first: std::collections::HashSet<i64> = a.prompt_ids.iter().copied().collect();
    let both: Vec<i64> = b
        .prompt_ids
        .iter()
        .copied()
        .filter(|p| first.contains(p))
        .collect();
    if both.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "samples: prompt_id {} in both shards (shards must hold disjoint samples)",
        listed(&both)
    )]
}

fn listed(ids: &[i64]) -> String {
    let mut s: Vec<String> = ids.iter().take(LISTED).map(|i| i.to_string()).collect();
    if ids.len() > LISTED {
        s.push(format!("and {} more", ids.len() - LISTED));
    }
    s.join(", ")
}

fn opt(v: Option<usize>) -> String {
    v.map_or("none".to_string(), |v| v.to_string())
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A hash of exactly what one sample scores: its input tokens, its corrupted input, its loss
/// (kind, positions, targets). Two runs with equal hashes fed the model the same thing.
pub fn sample_hash(s: &Sample) -> String {
    let mut h = blake3::Hasher::new();
    let ids = |h: &mut blake3::Hasher, tag: &[u8], v: &[u32]| {
        h.update(tag);
        h.update(&(v.len() as u64).to_le_bytes());
        for t in v {
            h.update(&t.to_le_bytes());
        }
    };
    ids(&mut h, b"tokens", &s.tokens);
    match &s.corrupt {
        Some(c) => ids(&mut h, b"corrupt", c),
        None => {
            h.update(b"no corrupt");
        }
    }
    let n = |h: &mut blake3::Hasher, v: usize| {
        h.update(&(v as u64).to_le_bytes());
    };
    match &s.loss {
        SampleLoss::Tokens { start, targets } => {
            n(&mut h, *start);
            ids(&mut h, b"targets", targets);
        }
        SampleLoss::LogitDiff {
            position,
            target,
            wrong,
        } => {
            h.update(b"logit_diff");
            n(&mut h, *position);
            ids(&mut h, b"pair", &[*target, *wrong]);
        }
        SampleLoss::Picked { positions, targets } => {
            h.update(b"picked");
            h.update(&(positions.len() as u64).to_le_bytes());
            for p in positions {
                n(&mut h, *p);
            }
            ids(&mut h, b"targets", targets);
        }
        SampleLoss::Kl { start, len } => {
            h.update(b"kl");
            n(&mut h, *start);
            n(&mut h, *len);
        }
    }
    h.finalize().to_hex()[..16].to_string()
}

/// `zero`, `corrupt` or `mixed`: how the samples' edges are ablated.
pub fn ablation_of(samples: &[Sample]) -> &'static str {
    let corrupt = samples.iter().filter(|s| s.corrupt.is_some()).count();
    match corrupt {
        0 => "zero",
        c if c == samples.len() => "corrupt",
        _ => "mixed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> GraphMeta {
        GraphMeta {
            model: "m.gguf".into(),
            model_hash: "abc".into(),
            n_layers: 2,
            loss: "self_entropy".into(),
            method: "eap".into(),
            granularity: "block".into(),
            t_cut: Some(8),
            t_cut_rule: "fixed 8".into(),
            dtype: "f32".into(),
            ablation: "zero".into(),
            chat: true,
            prompt_ids: vec![1, 2],
            sample_hashes: vec!["h1".into(), "h2".into()],
            ..GraphMeta::default()
        }
    }

    #[test]
    fn every_difference_is_listed() {
        let a = meta();
        assert!(differences(&a, &a, Purpose::Resume).is_empty());
        let mut b = meta();
        b.t_cut = Some(4);
        b.t_cut_rule = "fixed 4".into();
        b.method = "eap_ig".into();
        b.steps = Some(5);
        b.sample_hashes[1] = "other".into();
        let d = differences(&a, &b, Purpose::Resume);
        assert_eq!(d.len(), 5, "{d:?}");
        assert!(d
            .iter()
            .any(|l| l.starts_with("T_cut: 8 in the partial graph, 4")));
        assert!(d
            .iter()
            .any(|l| l.contains("prompt_id 2 scored other tokens")));
        // comparing two models: the model may differ, the settings may not
        b.model_hash = "zzz".into();
        let c = differences(&a, &b, Purpose::Compare);
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c.iter().all(|l| !l.starts_with("model")));
        // chosen answer positions against the first T_cut: refused for every purpose
        let mut p = meta();
        p.answer_positions = Some(crate::attribution::AnswerPositions::Indices(vec![0, 2]));
        for purpose in [Purpose::Resume, Purpose::Merge, Purpose::Compare] {
            let d = differences(&a, &p, purpose);
            assert!(
                d.iter()
                    .any(|l| l.starts_with("positions: none (the first T_cut) in ")
                        && l.ends_with(&format!(", [0, 2] in {}", purpose.labels().1))),
                "{purpose:?}: {d:?}"
            );
        }
        // shards: disjoint samples only
        let m = differences(&a, &a, Purpose::Merge);
        assert_eq!(
            m,
            vec!["samples: prompt_id 1, 2 in both shards (shards must hold disjoint samples)"]
        );
    }
}
