//! Picking circuits from scored edges (METHOD.md §8): the top n, a threshold, EAP-IG's greedy
//! growth from `logits`, and pruning of dangling nodes (no path from `input` or to `logits`).
//!
//! Edges are indices into `layout.edges()`; `keys[e]` is the ranking key of edge e (|score| or
//! the signed score), `None` for an edge the graph does not hold. Ties go to the lower index,
//! so every choice is deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::model::hooks::{DestKind, HookLayout, SourceKind};

/// Which source nodes each destination slot feeds (the node reading that residual copy), and
/// which destination slots feed each source node.
pub struct Topology {
    pub dest_feeds: Vec<Vec<usize>>,
    pub source_inputs: Vec<Vec<usize>>,
}

impl Topology {
    pub fn new(layout: &HookLayout) -> Self {
        let mut dest_feeds = vec![Vec::new(); layout.n_dests()];
        let mut source_inputs = vec![Vec::new(); layout.n_sources()];
        for l in 0..layout.n_layers as i64 {
            let srcs = |k: SourceKind| -> Vec<usize> {
                (0..layout.n_sources())
                    .filter(|&s| layout.sources[s].layer == l && layout.sources[s].kind == k)
                    .collect()
            };
            let dsts = |k: DestKind| -> Vec<usize> {
                (0..layout.n_dests())
                    .filter(|&d| layout.dests[d].layer == l && layout.dests[d].kind == k)
                    .collect()
            };
            let mut attn = srcs(SourceKind::Attn);
            attn.extend(srcs(SourceKind::Head));
            let mlp = srcs(SourceKind::Mlp);
            // q slot i feeds attention node i; k/v slot j feeds the heads sharing kv head j (one
            // slot per layer at block granularity feeds the whole block).
            for kind in [DestKind::Q, DestKind::K, DestKind::V] {
                let ds = dsts(kind);
                let per = attn.len() / ds.len().max(1);
                for (j, &d) in ds.iter().enumerate() {
                    dest_feeds[d] = attn[j * per..((j + 1) * per).min(attn.len())].to_vec();
                }
            }
            for d in dsts(DestKind::Mlp) {
                dest_feeds[d] = mlp.clone();
            }
        }
        for (d, feeds) in dest_feeds.iter().enumerate() {
            for &s in feeds {
                source_inputs[s].push(d);
            }
        }
        Self {
            dest_feeds,
            source_inputs,
        }
    }
}

/// Drop every kept edge that lies on no path from `input` to `logits` through kept edges (EAP-IG's
/// `prune` at its fixed point: a node stays only with an incoming and an outgoing edge).
pub fn prune(layout: &HookLayout, keep: &mut [bool]) {
    let edges = layout.edges();
    let topo = Topology::new(layout);
    let max_order = 2 * layout.n_layers + 1;
    // Forward: sources reachable from input; a destination is reached by a kept edge from a
    // reachable source, and a source by any destination that feeds it. Edges only go to a
    // higher residual order, so one sweep by order is enough.
    let mut reach_src = vec![false; layout.n_sources()];
    let mut reach_dst = vec![false; layout.n_dests()];
    reach_src[0] = true;
    let mut into: Vec<Vec<usize>> = vec![Vec::new(); layout.n_dests()];
    let mut out_of: Vec<Vec<usize>> = vec![Vec::new(); layout.n_sources()];
    for (e, &(s, d)) in edges.iter().enumerate() {
        if keep[e] {
            into[d].push(s);
            out_of[s].push(d);
        }
    }
    for order in 1..=max_order {
        for d in (0..layout.n_dests()).filter(|&d| layout.dests[d].order == order) {
            reach_dst[d] = into[d].iter().any(|&s| reach_src[s]);
        }
        for s in (0..layout.n_sources()).filter(|&s| layout.sources[s].order == order) {
            reach_src[s] = topo.source_inputs[s].iter().any(|&d| reach_dst[d]);
        }
    }
    // Backward: destinations that lead to logits.
    let mut live_src = vec![false; layout.n_sources()];
    let mut live_dst = vec![false; layout.n_dests()];
    live_dst[layout.dest_logits()] = true;
    for order in (0..max_order).rev() {
        for s in (0..layout.n_sources()).filter(|&s| layout.sources[s].order == order) {
            live_src[s] = out_of[s].iter().any(|&d| live_dst[d]);
        }
        for d in (0..layout.n_dests()).filter(|&d| layout.dests[d].order == order) {
            live_dst[d] = topo.dest_feeds[d].iter().any(|&s| live_src[s]);
        }
    }
    for (e, &(s, d)) in edges.iter().enumerate() {
        if keep[e] && !(reach_src[s] && live_dst[d]) {
            keep[e] = false;
        }
    }
}

/// The `n` edges with the largest keys.
pub fn top_n(keys: &[Option<f64>], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).filter(|&e| keys[e].is_some()).collect();
    order.sort_by(|&a, &b| by_key(keys, b, a));
    order.truncate(n);
    order
}

/// The edges whose key is at least `t`.
pub fn threshold(keys: &[Option<f64>], t: f64) -> Vec<usize> {
    (0..keys.len())
        .filter(|&e| keys[e].is_some_and(|k| k >= t))
        .collect()
}

/// EAP-IG's greedy circuit of `n` edges: start with the edges into `logits`; repeatedly take the
/// candidate with the largest key, and when its source node is new, make the edges into that
/// node's destinations candidates too. Stops early when no candidate is left.
pub fn greedy(layout: &HookLayout, keys: &[Option<f64>], n: usize) -> Vec<usize> {
    let edges = layout.edges();
    let topo = Topology::new(layout);
    let mut into: Vec<Vec<usize>> = vec![Vec::new(); layout.n_dests()];
    for (e, &(_, d)) in edges.iter().enumerate() {
        if keys[e].is_some() {
            into[d].push(e);
        }
    }
    let mut heap = BinaryHeap::new();
    let mut opened = vec![false; layout.n_dests()];
    let mut node_in = vec![false; layout.n_sources()];
    let mut open = |d: usize, heap: &mut BinaryHeap<Candidate>| {
        if !opened[d] {
            opened[d] = true;
            for &e in &into[d] {
                heap.push(Candidate {
                    key: keys[e].unwrap_or(f64::NEG_INFINITY),
                    edge: e,
                });
            }
        }
    };
    open(layout.dest_logits(), &mut heap);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some(c) = heap.pop() else { break };
        out.push(c.edge);
        let s = edges[c.edge].0;
        if !node_in[s] {
            node_in[s] = true;
            for &d in &topo.source_inputs[s] {
                open(d, &mut heap);
            }
        }
    }
    out
}

fn by_key(keys: &[Option<f64>], a: usize, b: usize) -> Ordering {
    let ka = keys[a].unwrap_or(f64::NEG_INFINITY);
    let kb = keys[b].unwrap_or(f64::NEG_INFINITY);
    // Larger key first; on a tie the lower index counts as larger.
    ka.total_cmp(&kb).then(b.cmp(&a))
}

struct Candidate {
    key: f64,
    edge: usize,
}
impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.total_cmp(&o.key).then(o.edge.cmp(&self.edge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hooks::Granularity;

    fn index(lay: &HookLayout, name: &str) -> usize {
        lay.edges()
            .iter()
            .position(|&(s, d)| format!("{}->{}", lay.sources[s].name, lay.dests[d].name) == name)
            .unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn prune_keeps_paths_and_drops_dangling_edges() {
        let lay = HookLayout::new(Granularity::Block, 2, 4, 2);
        let n = lay.edges().len();
        let on = |names: &[&str]| {
            let mut k = vec![false; n];
            for nm in names {
                k[index(&lay, nm)] = true;
            }
            k
        };
        // input->a0<v>->…a0->logits is a path; m0 has no input (a dangling source), a1 gets
        // input but feeds nothing.
        let mut keep = on(&["input->a0<v>", "a0->logits", "m0->logits", "input->a1<q>"]);
        prune(&lay, &mut keep);
        assert_eq!(keep, on(&["input->a0<v>", "a0->logits"]));
        // Pruning is idempotent and keeps a full graph whole.
        let mut full = vec![true; n];
        prune(&lay, &mut full);
        assert!(full.iter().all(|&k| k));
    }

    #[test]
    fn prune_at_head_granularity_follows_kv_groups() {
        // 4 heads over 2 kv heads: kv head 1 feeds heads 2 and 3.
        let lay = HookLayout::new(Granularity::Head, 1, 4, 2);
        let n = lay.edges().len();
        let mut keep = vec![false; n];
        keep[index(&lay, "input->a0.h1<k>")] = true;
        keep[index(&lay, "a0.h3->logits")] = true;
        keep[index(&lay, "a0.h0->logits")] = true;
        let mut k2 = keep.clone();
        prune(&lay, &mut k2);
        let kept: Vec<usize> = (0..n).filter(|&e| k2[e]).collect();
        assert_eq!(
            kept,
            vec![index(&lay, "input->a0.h1<k>"), index(&lay, "a0.h3->logits")]
        );
    }

    #[test]
    fn greedy_grows_from_logits() {
        let lay = HookLayout::new(Granularity::Block, 2, 4, 2);
        let n = lay.edges().len();
        let mut keys = vec![Some(0.0); n];
        // The strongest edge overall does not reach logits until its destination is open.
        keys[index(&lay, "input->m0")] = Some(10.0);
        keys[index(&lay, "m0->logits")] = Some(1.0);
        keys[index(&lay, "a1->logits")] = Some(2.0);
        let g = greedy(&lay, &keys, 3);
        assert_eq!(
            g,
            vec![
                index(&lay, "a1->logits"),
                index(&lay, "m0->logits"),
                index(&lay, "input->m0")
            ]
        );
        assert_eq!(top_n(&keys, 1), vec![index(&lay, "input->m0")]);
        assert_eq!(threshold(&keys, 1.5).len(), 2);
    }
}
