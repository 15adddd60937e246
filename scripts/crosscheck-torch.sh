#!/usr/bin/env bash
# Cross-check rlq's EAP scores against the independent PyTorch implementation of METHOD.md
# (benches/eap_torch.py) on exact token inputs, f64 on both sides. Needs the bench venv
# (created here if missing); never run by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/smollm2-135m-instruct.q4_1.gguf
scripts/fetch-models.sh >/dev/null
venv="${RLQ_BENCH_VENV:-$HOME/.cache/rlq-bench-venv}"
if ! "$venv/bin/python" -c "import torch, gguf, numpy" 2>/dev/null; then
  python3 -m venv "$venv"; "$venv/bin/pip" install --quiet torch gguf numpy
fi
# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" + "The capital"
ids=1,4093,198,1780,314,260,3575,282,4649,47,2,198,1,520,9531,198,504,3575
start=15; targets=504,3575,282
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for dtype in f64 f32; do
  cargo run --quiet --example bench_eap -- scores "$model" --dtype $dtype --ids "$ids" --start $start --targets $targets --out "$tmp/rlq.json"
  "$venv/bin/python" benches/eap_torch.py scores "$model" --dtype $dtype --ids "$ids" --start $start --targets $targets --out "$tmp/torch.json"
  python3 - "$tmp/rlq.json" "$tmp/torch.json" $dtype <<'PY'
import json, sys
r, t = (json.load(open(p)) for p in sys.argv[1:3])
rs, ts = r["scores"], t["scores"]
assert set(rs) == set(ts), "edge sets differ"
scale = max(abs(v) for v in ts.values())
worst = max(abs(rs[k] - ts[k]) for k in ts)
print(f"{sys.argv[3]}: {len(ts)} edges; loss rlq {r['loss']:.10f} torch {t['loss']:.10f}; "
      f"max |diff| {worst:.3e} = {worst/scale:.2e} of the largest |score|")
PY
done
