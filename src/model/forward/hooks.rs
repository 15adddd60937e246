//! Where the hooked forward reads component outputs (sources) and where it lets a caller perturb
//! a private copy of the residual stream (destinations), in one fixed order.
//!
//! Sources, stacked as `[n_sources, seq, d_model]`: `input`, then per layer `a{l}` (one slot, or
//! one per head at head granularity), then `m{l}`.
//! Destinations, stacked the same way: per layer `a{l}<q>` (1 or n_heads slots), `a{l}<k>`,
//! `a{l}<v>` (1, n_kv_heads or n_heads slots each), `m{l}`; then `logits`.

/// How finely attention is split into nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// The paper's: one node per attention block.
    Block,
    /// One source per attention head; q destinations per head, k/v per KV head (under GQA the
    /// query heads of one group share their k and v destinations).
    Head,
    /// As `Head`, but k/v destinations per *query* head, as EAP-IG and MIB count them: query
    /// head h reads its group's k/v projection from its own residual copy, so `a{l}.h{h}<k>` is
    /// the path through head h's use of that key. The grouped k/v score of a KV head is the sum
    /// of its query heads' ungrouped scores (the copies are equal at the clean point).
    HeadUngrouped,
}

impl Granularity {
    /// The name in graph metadata and messages (`granularity head kv ungrouped` in the language).
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Block => "block",
            Granularity::Head => "head",
            Granularity::HeadUngrouped => "head_ungrouped",
        }
    }

    /// Attention split into one source per head.
    pub fn per_head(self) -> bool {
        matches!(self, Granularity::Head | Granularity::HeadUngrouped)
    }
}

/// What a destination slot feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestKind {
    Q,
    K,
    V,
    Mlp,
    Logits,
}

impl DestKind {
    pub fn name(self) -> &'static str {
        match self {
            DestKind::Q => "q",
            DestKind::K => "k",
            DestKind::V => "v",
            DestKind::Mlp => "mlp",
            DestKind::Logits => "logits",
        }
    }
}

/// What a source slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Embed,
    Attn,
    Head,
    Mlp,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Embed => "embed",
            SourceKind::Attn => "attn",
            SourceKind::Head => "head",
            SourceKind::Mlp => "mlp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceSlot {
    pub name: String,
    /// -1 for `input`.
    pub layer: i64,
    pub kind: SourceKind,
    /// Position in the residual order input, a0, m0, a1, m1, … (input = 0, a{l} = 2l+1,
    /// m{l} = 2l+2): a source feeds every destination whose `order` is larger.
    pub order: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestSlot {
    pub name: String,
    /// n_layers for `logits`.
    pub layer: i64,
    pub kind: DestKind,
    /// q/k/v of layer l read the residual at order 2l+1, m{l} at 2l+2, logits at 2L+1.
    pub order: usize,
}

/// The slot layout for one model shape and granularity.
#[derive(Debug, Clone, PartialEq)]
pub struct HookLayout {
    pub granularity: Granularity,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub sources: Vec<SourceSlot>,
    pub dests: Vec<DestSlot>,
}

impl HookLayout {
    pub fn new(
        granularity: Granularity,
        n_layers: usize,
        n_heads: usize,
        n_kv_heads: usize,
    ) -> Self {
        let mut sources = vec![SourceSlot {
            name: "input".into(),
            layer: -1,
            kind: SourceKind::Embed,
            order: 0,
        }];
        let mut dests = Vec::new();
        for l in 0..n_layers {
            let li = l as i64;
            let attn_order = 2 * l + 1;
            let mlp_order = 2 * l + 2;
            match granularity {
                Granularity::Block => {
                    sources.push(SourceSlot {
                        name: format!("a{l}"),
                        layer: li,
                        kind: SourceKind::Attn,
                        order: attn_order,
                    });
                    for kind in [DestKind::Q, DestKind::K, DestKind::V] {
                        dests.push(DestSlot {
                            name: format!("a{l}<{}>", kind.name()),
                            layer: li,
                            kind,
                            order: attn_order,
                        });
                    }
                }
                Granularity::Head | Granularity::HeadUngrouped => {
                    let n_kv = if granularity == Granularity::Head {
                        n_kv_heads
                    } else {
                        n_heads
                    };
                    for h in 0..n_heads {
                        sources.push(SourceSlot {
                            name: format!("a{l}.h{h}"),
                            layer: li,
                            kind: SourceKind::Head,
                            order: attn_order,
                        });
                    }
                    for (kind, n) in [
                        (DestKind::Q, n_heads),
                        (DestKind::K, n_kv),
                        (DestKind::V, n_kv),
                    ] {
                        for h in 0..n {
                            dests.push(DestSlot {
                                name: format!("a{l}.h{h}<{}>", kind.name()),
                                layer: li,
                                kind,
                                order: attn_order,
                            });
                        }
                    }
                }
            }
            sources.push(SourceSlot {
                name: format!("m{l}"),
                layer: li,
                kind: SourceKind::Mlp,
                order: mlp_order,
            });
            dests.push(DestSlot {
                name: format!("m{l}"),
                layer: li,
                kind: DestKind::Mlp,
                order: mlp_order,
            });
        }
        dests.push(DestSlot {
            name: "logits".into(),
            layer: n_layers as i64,
            kind: DestKind::Logits,
            order: 2 * n_layers + 1,
        });
        Self {
            granularity,
            n_layers,
            n_heads,
            n_kv_heads,
            sources,
            dests,
        }
    }

    /// Slots per attention source at this granularity.
    pub fn attn_sources_per_layer(&self) -> usize {
        match self.granularity {
            Granularity::Block => 1,
            Granularity::Head | Granularity::HeadUngrouped => self.n_heads,
        }
    }
    /// (q slots, k slots, v slots) per layer.
    pub fn qkv_slots(&self) -> (usize, usize, usize) {
        match self.granularity {
            Granularity::Block => (1, 1, 1),
            Granularity::Head => (self.n_heads, self.n_kv_heads, self.n_kv_heads),
            Granularity::HeadUngrouped => (self.n_heads, self.n_heads, self.n_heads),
        }
    }
    /// Destination slots per layer (q + k + v + mlp).
    fn dests_per_layer(&self) -> usize {
        let (q, k, v) = self.qkv_slots();
        q + k + v + 1
    }
    /// First destination slot of layer `l` (its q slots come first, then k, v, mlp).
    pub fn dest_layer_start(&self, l: usize) -> usize {
        l * self.dests_per_layer()
    }
    pub fn dest_logits(&self) -> usize {
        self.dests.len() - 1
    }
    pub fn n_sources(&self) -> usize {
        self.sources.len()
    }
    pub fn n_dests(&self) -> usize {
        self.dests.len()
    }
    /// Real edges as (source slot, destination slot), source-major: every source feeds every
    /// destination later in the residual order.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (si, s) in self.sources.iter().enumerate() {
            for (di, d) in self.dests.iter().enumerate() {
                if s.order < d.order {
                    out.push((si, di));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_edge_count_matches_method_formula() {
        for l in [1usize, 2, 24, 28, 30, 32] {
            let lay = HookLayout::new(Granularity::Block, l, 4, 2);
            assert_eq!(lay.edges().len(), 4 * l * l + 3 * l + 1, "L={l}");
            assert_eq!(lay.n_sources(), 1 + 2 * l);
            assert_eq!(lay.n_dests(), 4 * l + 1);
        }
    }

    #[test]
    fn block_edges_follow_residual_order() {
        let lay = HookLayout::new(Granularity::Block, 2, 4, 2);
        let names: Vec<String> = lay
            .edges()
            .iter()
            .map(|&(s, d)| format!("{}->{}", lay.sources[s].name, lay.dests[d].name))
            .collect();
        assert!(names.contains(&"input->a0<q>".to_string()));
        assert!(names.contains(&"a0->m0".to_string()));
        assert!(names.contains(&"m1->logits".to_string()));
        assert!(!names.contains(&"a0->a0<q>".to_string()));
        assert!(!names.contains(&"m0->m0".to_string()));
        assert!(!names.contains(&"a1->a0<k>".to_string()));
    }

    #[test]
    fn head_layout_counts() {
        let (l, h, k) = (3usize, 4usize, 2usize);
        let lay = HookLayout::new(Granularity::Head, l, h, k);
        assert_eq!(lay.n_sources(), 1 + l * (h + 1));
        assert_eq!(lay.n_dests(), l * (h + 2 * k + 1) + 1);
        assert_eq!(lay.dests[lay.dest_layer_start(1)].name, "a1.h0<q>");
        assert_eq!(lay.dests[lay.dest_layer_start(1) + h].name, "a1.h0<k>");
        assert_eq!(lay.dests[lay.dest_layer_start(1) + h + 2 * k].name, "m1");
    }
}
