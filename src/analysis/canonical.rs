//! Canonical order and structure of the block graph (METHOD.md §1): node order for display and
//! grouping, and the dense (1+2L)×(4L+1) source × destination rectangle.

/// Sort key of a node name: layer, then position within the layer, then head.
/// Sources: `input` < `a0` (< `a0.h0` < `a0.h1` …) < `m0` < `a1` …
/// Destinations: `a0<q>` < `a0<k>` < `a0<v>` < `m0` < `a1<q>` … < `logits`.
/// Unknown names sort last, by name.
pub fn node_order(name: &str) -> (i64, u8, i64, String) {
    let unknown = (i64::MAX, u8::MAX, 0, name.to_string());
    if name == "input" {
        return (-1, 0, 0, String::new());
    }
    if name == "logits" {
        return (i64::MAX - 1, 0, 0, String::new());
    }
    let (base, port) = match name.split_once('<') {
        Some((b, rest)) => (b, rest.strip_suffix('>').unwrap_or(rest)),
        None => (name, ""),
    };
    let (block, head) = match base.split_once(".h") {
        Some((b, h)) => match h.parse::<i64>() {
            Ok(h) => (b, h),
            Err(_) => return unknown,
        },
        None => (base, -1),
    };
    let Some(letter) = block.chars().next() else {
        return unknown;
    };
    let Ok(layer) = block[1..].parse::<i64>() else {
        return unknown;
    };
    let rank = match (letter, port) {
        ('a', "q") => 0,
        ('a', "k") => 1,
        ('a', "v") => 2,
        ('a', "") => 3,
        ('m', "") => 4,
        _ => return unknown,
    };
    (layer, rank, head, String::new())
}

/// Display order of node kinds (sources then destinations).
pub fn kind_order(kind: &str) -> usize {
    ["embed", "attn", "head", "q", "k", "v", "mlp", "logits"]
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

/// One node of the dense block-graph rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNode {
    pub name: String,
    pub layer: i64,
    pub kind: &'static str,
}

/// The 1 + 2L sources of a block graph with `n_layers` layers, in canonical order.
pub fn block_sources(n_layers: usize) -> Vec<DenseNode> {
    let mut out = vec![DenseNode {
        name: "input".into(),
        layer: -1,
        kind: "embed",
    }];
    for l in 0..n_layers as i64 {
        out.push(DenseNode {
            name: format!("a{l}"),
            layer: l,
            kind: "attn",
        });
        out.push(DenseNode {
            name: format!("m{l}"),
            layer: l,
            kind: "mlp",
        });
    }
    out
}

/// The 4L + 1 destinations of a block graph with `n_layers` layers, in canonical order.
pub fn block_destinations(n_layers: usize) -> Vec<DenseNode> {
    let mut out = Vec::new();
    for l in 0..n_layers as i64 {
        for port in ["q", "k", "v"] {
            out.push(DenseNode {
                name: format!("a{l}<{port}>"),
                layer: l,
                kind: port,
            });
        }
        out.push(DenseNode {
            name: format!("m{l}"),
            layer: l,
            kind: "mlp",
        });
    }
    out.push(DenseNode {
        name: "logits".into(),
        layer: n_layers as i64,
        kind: "logits",
    });
    out
}
