//! Faithfulness curves (METHOD.md §8; MIB's circuit track, auto-circuit's AUC): for each
//! fraction p of a graph's edges, the circuit of its top ⌊p·E⌋ edges (optionally pruned) is
//! evaluated and normalised, f = (m(C) − m(∅)) / (m(N) − m(∅)), a ratio of dataset means; a
//! baseline of k seeded random rankings goes beside it.

use std::collections::HashMap;

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::evaluate::{evaluate, AblationValues};
use super::prune::{prune, top_n};
use super::{graph_edge_index, Circuit, CircuitError, Result};
use crate::attribution::{Graph, Sample};
use crate::model::hooked::HookedTransformer;
use crate::model::hooks::HookLayout;

/// MIB's grid of edge fractions.
pub const MIB_GRID: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// How edges are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// By |score| (MIB's and EAP-IG's default).
    Abs,
    /// By signed score: the edges that most raise the loss when removed come first.
    Signed,
}

impl Ranking {
    pub fn key(self, score: f64) -> f64 {
        match self {
            Ranking::Abs => score.abs(),
            Ranking::Signed => score,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FaithOptions {
    pub ranking: Ranking,
    /// Edge fractions in (0, 1].
    pub at: Vec<f64>,
    /// Random rankings for the baseline (0: none).
    pub random: usize,
    pub seed: u64,
    /// Prune each circuit's dangling edges before evaluating it (as MIB does).
    pub prune: bool,
}

impl Default for FaithOptions {
    fn default() -> Self {
        Self {
            ranking: Ranking::Abs,
            at: MIB_GRID.to_vec(),
            random: 0,
            seed: 0,
            prune: true,
        }
    }
}

/// The random rankings at one point: one value per ranking.
#[derive(Debug, Clone)]
pub struct RandomPoint {
    pub f: Vec<f64>,
    pub metric: Vec<f64>,
    pub n_edges: Vec<usize>,
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

impl RandomPoint {
    pub fn f_mean(&self) -> f64 {
        mean(&self.f)
    }
    /// Sample standard deviation (n − 1); 0 for one ranking.
    pub fn f_sd(&self) -> f64 {
        let n = self.f.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.f_mean();
        (self.f.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
    pub fn metric_mean(&self) -> f64 {
        mean(&self.metric)
    }
    pub fn n_edges_mean(&self) -> f64 {
        self.n_edges.iter().sum::<usize>() as f64 / self.n_edges.len().max(1) as f64
    }
}

#[derive(Debug, Clone)]
pub struct CurvePoint {
    pub p: f64,
    /// Edges taken from the ranking, ⌊p·E⌋.
    pub n_top: usize,
    /// Edges of the evaluated circuit (after pruning).
    pub n_edges: usize,
    pub metric: f64,
    pub f: f64,
    pub random: Option<RandomPoint>,
}

#[derive(Debug, Clone)]
pub struct Curve {
    pub points: Vec<CurvePoint>,
    /// m(N), the plain model, and m(∅), the empty circuit.
    pub full: f64,
    pub empty: f64,
    /// Edges of the ranked graph (E).
    pub graph_edges: usize,
    /// Stopped by an interrupt: the points done are kept.
    pub stopped: bool,
}

/// The curve of `graph` on `samples`. `on_progress(points done, points)`.
#[allow(clippy::too_many_arguments)]
pub fn faithfulness(
    tf: &HookedTransformer,
    layout: &HookLayout,
    graph: &Graph,
    samples: &[Sample],
    values: &AblationValues,
    opts: &FaithOptions,
    on_progress: &mut dyn FnMut(usize, usize),
    interrupted: &dyn Fn() -> bool,
) -> Result<Curve> {
    if let Some(p) = opts.at.iter().find(|p| !(**p > 0.0 && **p <= 1.0)) {
        return Err(CircuitError::Invalid(format!(
            "edge fractions lie in (0, 1]; got {p}"
        )));
    }
    let n_layout = layout.edges().len();
    let index = graph_edge_index(graph, layout)?;
    let mean_scores = graph.mean_scores();
    let mut keys: Vec<Option<f64>> = vec![None; n_layout];
    for (&i, &s) in index.iter().zip(&mean_scores) {
        keys[i] = Some(opts.ranking.key(s));
    }
    let randoms: Vec<Vec<Option<f64>>> = (0..opts.random)
        .map(|r| {
            let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(r as u64));
            let mut k = vec![None; n_layout];
            for &i in &index {
                k[i] = Some(rng.gen::<f64>());
            }
            k
        })
        .collect();

    // One evaluation per distinct circuit (p = 1 gives the same circuit for every ranking).
    let mut memo: HashMap<Circuit, f64> = HashMap::new();
    let mut eval = |c: Circuit| -> Result<f64> {
        if let Some(&m) = memo.get(&c) {
            return Ok(m);
        }
        let m = evaluate(tf, layout, &c, samples, values, &mut |_, _| {}, interrupted)?.mean();
        memo.insert(c, m);
        Ok(m)
    };
    let full = eval(Circuit::full(n_layout))?;
    let empty = eval(Circuit::empty(n_layout))?;
    let norm = |m: f64| (m - empty) / (full - empty);
    let circuit_at = |keys: &[Option<f64>], n: usize| -> Circuit {
        let mut c = Circuit::of(n_layout, top_n(keys, n));
        if opts.prune {
            prune(layout, &mut c.keep);
        }
        c
    };

    let e = index.len();
    let mut points = Vec::with_capacity(opts.at.len());
    let mut stopped = false;
    let mut at = opts.at.clone();
    at.sort_by(f64::total_cmp);
    at.dedup();
    on_progress(0, at.len());
    for (i, &p) in at.iter().enumerate() {
        // As MIB: int(p · E).
        let n_top = (p * e as f64) as usize;
        let point = (|| -> Result<CurvePoint> {
            let c = circuit_at(&keys, n_top);
            let n_edges = c.n_edges();
            let metric = eval(c)?;
            let random = if randoms.is_empty() {
                None
            } else {
                let mut rp = RandomPoint {
                    f: Vec::new(),
                    metric: Vec::new(),
                    n_edges: Vec::new(),
                };
                for rk in &randoms {
                    let c = circuit_at(rk, n_top);
                    rp.n_edges.push(c.n_edges());
                    let m = eval(c)?;
                    rp.metric.push(m);
                    rp.f.push(norm(m));
                }
                Some(rp)
            };
            Ok(CurvePoint {
                p,
                n_top,
                n_edges,
                metric,
                f: norm(metric),
                random,
            })
        })();
        match point {
            Ok(pt) => points.push(pt),
            Err(CircuitError::Interrupted) => {
                stopped = true;
                break;
            }
            Err(err) => return Err(err),
        }
        on_progress(i + 1, at.len());
    }
    Ok(Curve {
        points,
        full,
        empty,
        graph_edges: e,
        stopped,
    })
}

/// One curve's areas: CPR (trapezoid of f over p), CMD (of |1 − f| over p), both MIB's, and
/// auto-circuit's AUC (trapezoid of f − f(∅) over log10 of the edge count, with f(∅) = 0 at 0
/// edges, segments touching 0 edges skipped; unlike auto-circuit, not clamped to ≥ 1e-3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub cpr: f64,
    pub cmd: f64,
    pub auc: f64,
}

/// The areas of the points `(p, n_edges, f)`, in any order.
pub fn summary(points: &[(f64, f64, f64)]) -> Summary {
    let mut by_p = points.to_vec();
    by_p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut cpr, mut cmd) = (0.0, 0.0);
    for w in by_p.windows(2) {
        let (a, b) = (w[0], w[1]);
        cpr += (b.0 - a.0) * (a.2 + b.2) / 2.0;
        cmd += (b.0 - a.0) * ((1.0 - a.2).abs() + (1.0 - b.2).abs()) / 2.0;
    }
    let mut by_n = points.to_vec();
    by_n.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut auc = 0.0;
    for w in by_n.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.1 > 0.0 && b.1 > 0.0 {
            auc += (b.1.log10() - a.1.log10()) * (a.2 + b.2) / 2.0;
        }
    }
    Summary { cpr, cmd, auc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_of_known_curves() {
        // f = 1 everywhere: CPR is the span of p, CMD 0; AUC the span of log10 n.
        let pts = [(0.1, 10.0, 1.0), (0.5, 100.0, 1.0), (1.0, 1000.0, 1.0)];
        let s = summary(&pts);
        assert!((s.cpr - 0.9).abs() < 1e-15 && s.cmd == 0.0);
        assert!((s.auc - 2.0).abs() < 1e-15);
        // f = p (a straight line): CPR = (1 − 0.01)/2 over [0.1, 1] → ∫p dp = (1 − 0.01)/2.
        let pts = [(0.1, 1.0, 0.1), (1.0, 10.0, 1.0)];
        let s = summary(&pts);
        assert!((s.cpr - 0.495).abs() < 1e-15, "{}", s.cpr);
        assert!((s.cmd - 0.405).abs() < 1e-15, "{}", s.cmd);
        assert!((s.auc - 0.55).abs() < 1e-15, "{}", s.auc);
        // A point at 0 edges adds no log segment.
        let pts = [(0.001, 0.0, 0.0), (1.0, 10.0, 1.0)];
        assert_eq!(summary(&pts).auc, 0.0);
    }
}
