#!/usr/bin/env bash
# Benchmark of issue 3: one 128-token sample (forward + backward + all 3691 scores) on
# SmolLM2-135M, rlq vs an independent PyTorch implementation of METHOD.md, same machine, same run.
# Installs torch/gguf/numpy into a private venv (never needed by the tests).
#   scripts/bench-eap.sh [TOKENS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens="${1:-128}"; threads="${2:-2}"
model=models/smollm2-135m-instruct.q4_1.gguf
scripts/fetch-models.sh >/dev/null
venv="${RLQ_BENCH_VENV:-$HOME/.cache/rlq-bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, gguf, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch gguf numpy
fi
# The dev profile already compiles every dependency (candle included) at opt-level 3.
cargo build --quiet --example bench_eap
bench() { cargo run --quiet --example bench_eap -- "$@"; }
echo "machine: $(nproc) cores; threads: $threads; tokens: $tokens"
rlq=$(RAYON_NUM_THREADS=$threads bench bench "$model" --tokens "$tokens")
torch=$("$venv/bin/python" benches/eap_torch.py bench "$model" --tokens "$tokens" --threads "$threads")
echo "$rlq"; echo "$torch"
python3 - "$rlq" "$torch" <<'PY'
import json, sys
r, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"throughput rlq/pytorch = {r['samples_per_s']/t['samples_per_s']:.2f}x (target >= 1.5x)")
print(f"peak memory rlq/pytorch = {r['peak_rss_mib']/t['peak_rss_mib']:.2f} (target <= 0.5)")
PY
