#!/usr/bin/env python3
"""Check that a graph JSON written by `rlq export … to "x.json"` is what EAP-IG reads.

Usage: check_eap_ig_json.py FILE [--eap-ig SRC_DIR]

1. Always: the layout EAP-IG's `Graph.to_json` writes and `Graph.from_json` reads (hannamw/EAP-IG,
   src/eap/graph.py), checked here from its description, not its code: `cfg` with n_layers,
   n_heads, parallel_attn_mlp (false) and d_model; `nodes` = exactly the nodes of the full graph
   `Graph.from_model(cfg)` builds (input, a{l}.h{h}, m{l}, logits), each {"in_graph": bool};
   `edges` = exactly its edges, each {"score": float, "in_graph": bool}, named parent->child
   with <q|k|v> when the child is a head.
2. With --eap-ig (EAP-IG's `src` folder): EAP-IG's own `Graph.from_json` loads the file, and
   its edge scores and in_graph flags equal the file's. transformer_lens and einops are only
   imported by graph.py, not used by from_json with a dict cfg: stand-ins are installed when
   they are missing.

Prints one line `ok: …` and exits 0, or names the first difference and exits 1.
"""

import json
import math
import sys
import types


def expected_names(n_layers, n_heads):
    """Node and edge names of EAP-IG's full graph for a sequential (non-parallel) model."""
    nodes = ["input"]
    edges = []
    residual = ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        mlp = f"m{layer}"
        nodes += heads + [mlp]
        for parent in residual:
            for head in heads:
                for port in "qkv":
                    edges.append(f"{parent}->{head}<{port}>")
        residual += heads
        for parent in residual:
            edges.append(f"{parent}->{mlp}")
        residual.append(mlp)
    nodes.append("logits")
    for parent in residual:
        edges.append(f"{parent}->logits")
    return nodes, edges


def fail(msg):
    print(f"not EAP-IG's layout: {msg}")
    sys.exit(1)


def check_layout(d):
    for key in ("cfg", "nodes", "edges"):
        if key not in d:
            fail(f"missing `{key}`")
    cfg = d["cfg"]
    for key in ("n_layers", "n_heads", "d_model"):
        if not isinstance(cfg.get(key), int) or isinstance(cfg.get(key), bool):
            fail(f"cfg.{key} is not an integer: {cfg.get(key)!r}")
    if cfg.get("parallel_attn_mlp") is not False:
        fail("cfg.parallel_attn_mlp must be false (rlq's graph: attention feeds its MLP)")
    nodes, edges = expected_names(cfg["n_layers"], cfg["n_heads"])
    if set(d["nodes"]) != set(nodes):
        extra = sorted(set(d["nodes"]) - set(nodes))[:3]
        missing = sorted(set(nodes) - set(d["nodes"]))[:3]
        fail(f"node names differ (extra {extra}, missing {missing})")
    for name, info in d["nodes"].items():
        if not isinstance(info.get("in_graph"), bool):
            fail(f"node {name}: in_graph is not a bool")
    if set(d["edges"]) != set(edges) or len(d["edges"]) != len(edges):
        extra = sorted(set(d["edges"]) - set(edges))[:3]
        missing = sorted(set(edges) - set(d["edges"]))[:3]
        fail(f"edge names differ (extra {extra}, missing {missing})")
    for name, info in d["edges"].items():
        s = info.get("score")
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
            fail(f"edge {name}: score {s!r} is not a finite number")
        if not isinstance(info.get("in_graph"), bool):
            fail(f"edge {name}: in_graph is not a bool")
    return len(edges)


def check_with_eap_ig(path, d, src):
    for missing in ("transformer_lens", "einops"):
        try:
            __import__(missing)
        except ImportError:
            stub = types.ModuleType(missing)
            if missing == "transformer_lens":
                stub.HookedTransformer = type("HookedTransformer", (), {})
                stub.HookedTransformerConfig = type("HookedTransformerConfig", (), {})
            else:
                stub.einsum = None
            sys.modules[missing] = stub
    sys.path.insert(0, src)
    from eap.graph import Graph  # noqa: E402

    g = Graph.from_json(path)
    if len(g.edges) != len(d["edges"]):
        fail(f"EAP-IG built {len(g.edges)} edges, the file has {len(d['edges'])}")
    worst = 0.0
    for name, info in d["edges"].items():
        e = g.edges[name]
        if bool(e.in_graph) != info["in_graph"]:
            fail(f"EAP-IG reads in_graph {bool(e.in_graph)} for {name}")
        s = float(e.score)
        # EAP-IG keeps scores in a float32 tensor: compare at its precision.
        worst = max(worst, abs(s - info["score"]) / max(abs(info["score"]), 1e-30))
    if worst > 1e-6:
        fail(f"EAP-IG's float32 scores differ from the file's by {worst:.2e} relative")
    return int(g.count_included_edges())


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    path = args[0]
    with open(path) as f:
        d = json.load(f)
    n = check_layout(d)
    in_graph = sum(1 for e in d["edges"].values() if e["in_graph"])
    msg = f"ok: {n} edges, {in_graph} in_graph, layout as EAP-IG's Graph.to_json"
    if "--eap-ig" in args:
        counted = check_with_eap_ig(path, d, args[args.index("--eap-ig") + 1])
        if counted != in_graph:
            fail(f"EAP-IG counts {counted} included edges, the file {in_graph}")
        msg += "; EAP-IG's Graph.from_json reads it back (scores to float32, in_graph exact)"
    print(msg)


if __name__ == "__main__":
    main()
