"""An independent PyTorch implementation of EAP-IG's `evaluate_graph` (METHOD.md §8) at block
granularity for a llama-architecture GGUF, to check rlq's `evaluate` sample by sample.

EAP-IG's construction, rewritten here: an activation-difference matrix [T, n_sources, d] starts
at the ablated values (zero, or the corrupted run's outputs); every source, as the clean
forward produces it, subtracts its output; each destination adds the columns of the sources
whose edge to it is outside the circuit. So destination v reads H_v − Σ_{u→v∉C} (O_u − Ô_u)
with O_u from this very (intervened) run. The metric is −NLL of the target tokens.

    python benches/circuit_torch.py MODEL.gguf CASE.json --dtype f64
CASE.json: {"edges": ["input->a0<q>", …], "ablation": "zero",
            "samples": [{"id": 0, "tokens": [...], "start": k, "targets": [...],
                         "rlq_metric": m}, …]}
Prints one line per sample and the largest difference; exit status 1 above --tol. Run by
scripts/crosscheck-circuit.sh (never by the tests). The GGUF loader is eap_torch.py's.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from eap_torch import load, rmsnorm, rope  # noqa: E402


def names(L):
    src = ["input"] + [n for l in range(L) for n in (f"a{l}", f"m{l}")]
    src_order = [0] + [o for l in range(L) for o in (2 * l + 1, 2 * l + 2)]
    dst, dst_order = [], []
    for l in range(L):
        for kind in "qkv":
            dst.append(f"a{l}<{kind}>")
            dst_order.append(2 * l + 1)
        dst.append(f"m{l}")
        dst_order.append(2 * l + 2)
    dst.append("logits")
    dst_order.append(2 * L + 1)
    return src, src_order, dst, dst_order


def out_of_graph_matrix(L, edges):
    """[n_src, n_dst]: 1 for a real edge not in the circuit (EAP-IG's `1 - in_graph`)."""
    src, so, dst, do = names(L)
    inside = set(edges)
    m = torch.zeros(len(src), len(dst))
    for i, (s, a) in enumerate(zip(src, so)):
        for j, (d, b) in enumerate(zip(dst, do)):
            if a < b and f"{s}->{d}" not in inside:
                m[i, j] = 1.0
    unknown = inside - {f"{s}->{d}" for s, a in zip(src, so) for d, b in zip(dst, do) if a < b}
    if unknown:
        sys.exit(f"edges not in a block graph of {L} layers: {sorted(unknown)[:5]}")
    return m


def forward(cfg, w, ids, diff=None, out_of_graph=None, record=None):
    """The llama forward. With `diff` ([T, n_src, d]) and `out_of_graph`, every destination adds
    its out-of-graph columns of diff, and every source subtracts itself from diff as it is
    produced. With `record` (a list), the sources are appended to it."""
    L, d, H, K, eps = cfg["L"], cfg["d"], cfg["H"], cfg["K"], cfg["eps"]
    dh = d // H
    T = len(ids)
    dtype = w["token_embd.weight"].dtype
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
    n_src = 1 + 2 * L

    def produced(i, o):
        if record is not None:
            record.append(o)
        if diff is not None:
            diff[:, i] -= o

    def dest_input(h, j, prev):
        if diff is None:
            return h
        col = out_of_graph[:prev, j].to(dtype)
        return h + torch.einsum("tsd,s->td", diff[:, :prev], col)

    h = w["token_embd.weight"][torch.tensor(ids)]
    produced(0, h)
    for l in range(L):
        p = f"blk.{l}."
        g = w[p + "attn_norm.weight"]
        prev = 1 + 2 * l  # sources before layer l's attention
        xq = rmsnorm(dest_input(h, 4 * l, prev), g, eps)
        xk = rmsnorm(dest_input(h, 4 * l + 1, prev), g, eps)
        xv = rmsnorm(dest_input(h, 4 * l + 2, prev), g, eps)
        q = (xq @ w[p + "attn_q.weight"].T).reshape(T, H, dh).transpose(0, 1)
        k = (xk @ w[p + "attn_k.weight"].T).reshape(T, K, dh).transpose(0, 1)
        v = (xv @ w[p + "attn_v.weight"].T).reshape(T, K, dh).transpose(0, 1)
        q, k = rope(q, cfg["theta"]), rope(k, cfg["theta"])
        k = k.repeat_interleave(H // K, 0)
        v = v.repeat_interleave(H // K, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / dh**0.5 + mask, -1)
        a = (att @ v).transpose(0, 1).reshape(T, H * dh) @ w[p + "attn_output.weight"].T
        produced(1 + 2 * l, a)
        h = h + a
        xm = rmsnorm(dest_input(h, 4 * l + 3, prev + 1), w[p + "ffn_norm.weight"], eps)
        m = (torch.nn.functional.silu(xm @ w[p + "ffn_gate.weight"].T) * (xm @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        produced(2 + 2 * l, m)
        h = h + m
    xf = rmsnorm(dest_input(h, 4 * L, n_src), w["output_norm.weight"], eps)
    return xf @ w["output.weight"].T


def metric(logits, start, targets):
    lp = torch.log_softmax(logits[start : start + len(targets)].double(), -1)
    return lp[torch.arange(len(targets)), torch.tensor(targets)].mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("case")
    ap.add_argument("--dtype", default="f64", choices=["f32", "f64"])
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.float64
    cfg, w = load(a.model, dtype)
    case = json.load(open(a.case))
    if case.get("ablation", "zero") not in ("zero", "corrupt"):
        sys.exit("this reference does zero and corrupt ablation")
    L = cfg["L"]
    oog = out_of_graph_matrix(L, case["edges"])
    n_src = 1 + 2 * L
    print(f"circuit of {len(case['edges'])} edges, {int(oog.sum())} ablated, {a.dtype}")
    worst = 0.0
    with torch.no_grad():
        for s in case["samples"]:
            T = len(s["tokens"])
            diff = torch.zeros(T, n_src, cfg["d"], dtype=dtype)
            if case.get("ablation") == "corrupt":
                rec = []
                forward(cfg, w, s["corrupt"], record=rec)
                diff += torch.stack(rec, 1)
            logits = forward(cfg, w, s["tokens"], diff=diff, out_of_graph=oog)
            ours = metric(logits, s["start"], s["targets"])
            plain = metric(forward(cfg, w, s["tokens"]), s["start"], s["targets"])
            d = abs(ours - s["rlq_metric"])
            worst = max(worst, d / max(1.0, abs(ours)))
            print(f"sample {s['id']}: torch {ours:.12f}  rlq {s['rlq_metric']:.12f}  "
                  f"|Δ| {d:.2e}   (plain model {plain:.6f})")
    print(f"largest relative difference: {worst:.2e} (tolerance {a.tol:.0e})")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
