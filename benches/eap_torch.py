"""An independent PyTorch implementation of METHOD.md (block granularity, zero-ablation EAP,
self-entropy loss on given answer tokens) for a llama-architecture GGUF.

Used two ways, never by the tests:
  * benchmark: `python benches/eap_torch.py bench MODEL.gguf --tokens 128` prints samples/s and
    peak RSS for one sample (forward + backward + all scores), to compare with rlq in one run;
  * cross-check: `python benches/eap_torch.py scores MODEL.gguf --ids 1,2,3 --start K
    --targets 4,5 --out scores.json` writes {edge name: score} computed here, for comparison
    with rlq's table on the same exact tokens.
Installed by scripts/bench-eap.sh (torch, gguf, numpy in a private venv).
"""

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(v).decode()
    return v.tolist()[0] if hasattr(v, "tolist") else v


def load(path, dtype):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"this reference handles llama GGUFs only, got {arch}")
    cfg = dict(
        L=int(field(r, "llama.block_count")),
        d=int(field(r, "llama.embedding_length")),
        H=int(field(r, "llama.attention.head_count")),
        K=int(field(r, "llama.attention.head_count_kv")),
        eps=float(field(r, "llama.attention.layer_norm_rms_epsilon")),
        theta=float(field(r, "llama.rope.freq_base")),
    )
    w = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type)
        a = np.asarray(a, dtype=np.float64).reshape(list(reversed([int(x) for x in t.shape])))
        w[t.name] = torch.tensor(a, dtype=dtype)
    # llama.cpp stores q/k rows interleaved per rotary pair; undo it to the half-split layout.
    def unpermute(m, heads):
        out, inp = m.shape
        return m.reshape(heads, out // heads // 2, 2, inp).transpose(1, 2).reshape(out, inp)

    for l in range(cfg["L"]):
        w[f"blk.{l}.attn_q.weight"] = unpermute(w[f"blk.{l}.attn_q.weight"], cfg["H"])
        w[f"blk.{l}.attn_k.weight"] = unpermute(w[f"blk.{l}.attn_k.weight"], cfg["K"])
    if "output.weight" not in w:
        w["output.weight"] = w["token_embd.weight"]
    return cfg, w


def rmsnorm(x, g, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g


def rope(x, theta):
    # x: [heads, T, dh], half-split rotation
    h, T, dh = x.shape
    inv = 1.0 / theta ** (torch.arange(0, dh // 2, dtype=torch.float64) * 2 / dh)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    a, b = x[..., : dh // 2], x[..., dh // 2 :]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)


def edge_scores(cfg, w, ids, start, targets):
    """All block-granularity scores S[u,v] = -sum O_u * dL/dH_v for one sample."""
    L, d, H, K, eps = cfg["L"], cfg["d"], cfg["H"], cfg["K"], cfg["eps"]
    dh = d // H
    T = len(ids)
    dtype = w["token_embd.weight"].dtype
    n_dst = 4 * L + 1
    delta = torch.zeros(n_dst, T, d, dtype=dtype, requires_grad=True)
    srcs = []
    h = w["token_embd.weight"][torch.tensor(ids)]
    srcs.append(h)
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
    for l in range(L):
        p = f"blk.{l}."
        g = w[p + "attn_norm.weight"]
        xq = rmsnorm(h + delta[4 * l], g, eps)
        xk = rmsnorm(h + delta[4 * l + 1], g, eps)
        xv = rmsnorm(h + delta[4 * l + 2], g, eps)
        q = (xq @ w[p + "attn_q.weight"].T).reshape(T, H, dh).transpose(0, 1)
        k = (xk @ w[p + "attn_k.weight"].T).reshape(T, K, dh).transpose(0, 1)
        v = (xv @ w[p + "attn_v.weight"].T).reshape(T, K, dh).transpose(0, 1)
        q, k = rope(q, cfg["theta"]), rope(k, cfg["theta"])
        k = k.repeat_interleave(H // K, 0)
        v = v.repeat_interleave(H // K, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / dh**0.5 + mask, -1)
        z = (att @ v).transpose(0, 1).reshape(T, H * dh)
        a = z @ w[p + "attn_output.weight"].T
        srcs.append(a)
        h = h + a
        xm = rmsnorm(h + delta[4 * l + 3], w[p + "ffn_norm.weight"], eps)
        gate = xm @ w[p + "ffn_gate.weight"].T
        up = xm @ w[p + "ffn_up.weight"].T
        m = (torch.nn.functional.silu(gate) * up) @ w[p + "ffn_down.weight"].T
        srcs.append(m)
        h = h + m
    xf = rmsnorm(h + delta[4 * L], w["output_norm.weight"], eps)
    logits = xf @ w["output.weight"].T
    lp = torch.log_softmax(logits[start : start + len(targets)], -1)
    loss = -lp[torch.arange(len(targets)), torch.tensor(targets)].mean()
    loss.backward()
    O = torch.stack([s.detach() for s in srcs]).reshape(len(srcs), -1).double()
    G = delta.grad.reshape(n_dst, -1).double()
    S = -(O @ G.T)
    # names and the mask of real edges
    src_names = ["input"] + [n for l in range(L) for n in (f"a{l}", f"m{l}")]
    src_order = [0] + [o for l in range(L) for o in (2 * l + 1, 2 * l + 2)]
    dst_names, dst_order = [], []
    for l in range(L):
        for kind in ("q", "k", "v"):
            dst_names.append(f"a{l}<{kind}>")
            dst_order.append(2 * l + 1)
        dst_names.append(f"m{l}")
        dst_order.append(2 * l + 2)
    dst_names.append("logits")
    dst_order.append(2 * L + 1)
    out = {}
    for i, (sn, so) in enumerate(zip(src_names, src_order)):
        for j, (dn, do) in enumerate(zip(dst_names, dst_order)):
            if so < do:
                out[f"{sn}->{dn}"] = S[i, j].item()
    return out, loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bench", "scores"])
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    ap.add_argument("--ids")
    ap.add_argument("--start", type=int)
    ap.add_argument("--targets")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "f32" else torch.float64
    cfg, w = load(a.model, dtype)
    if a.mode == "bench":
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, 49152, (a.tokens,), generator=g).tolist()
        start, targets = a.tokens // 2, ids[a.tokens // 2 + 1 :] + [0]
        edge_scores(cfg, w, ids, start, targets)  # warm-up
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            edge_scores(cfg, w, ids, start, targets)
        dt = (time.perf_counter() - t0) / a.repeats
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"impl": "pytorch", "samples_per_s": 1 / dt, "peak_rss_mib": peak}))
    else:
        ids = [int(x) for x in a.ids.split(",")]
        targets = [int(x) for x in a.targets.split(",")]
        scores, loss = edge_scores(cfg, w, ids, a.start, targets)
        with open(a.out, "w") as f:
            json.dump({"loss": loss, "scores": scores}, f)


if __name__ == "__main__":
    main()
