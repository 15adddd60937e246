#!/usr/bin/env bash
# Benchmark of issue 3: one 128-token sample (forward + backward + all 3691 scores) on
# SmolLM2-135M, rlq vs an independent PyTorch implementation of METHOD.md, same machine, same run.
# rlq runs twice per round: weights kept quantized (the default) and dense f32 (`weights dense`);
# both compute with the same f32 weight values. Rounds alternate the implementations so that
# background load hits them alike; the ratios use each one's median over the rounds.
# Installs torch/gguf/numpy into a private venv (never needed by the tests).
#   scripts/bench-eap.sh [TOKENS] [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens="${1:-128}"; threads="${2:-2}"; rounds="${3:-3}"
model=models/smollm2-135m-instruct.q4_1.gguf
scripts/fetch-models.sh >/dev/null
venv="${RLQ_BENCH_VENV:-$HOME/.cache/rlq-bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, gguf, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch gguf numpy
fi
# The dev profile already compiles every dependency (candle included) at opt-level 3.
cargo build --quiet --example bench_eap
bin="${CARGO_TARGET_DIR:-target}/debug/examples/bench_eap"
echo "machine: $(nproc) cores; threads: $threads; tokens: $tokens; rounds: $rounds"
results=()
for r in $(seq "$rounds"); do
  for w in quantized dense; do
    results+=("$(RAYON_NUM_THREADS=$threads "$bin" bench "$model" --tokens "$tokens" --weights "$w")")
    echo "${results[-1]}"
  done
  results+=("$("$venv/bin/python" benches/eap_torch.py bench "$model" --tokens "$tokens" --threads "$threads")")
  echo "${results[-1]}"
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
def med(impl, key, weights=None):
    xs = [r[key] for r in runs if r["impl"] == impl and r.get("weights", weights) == weights]
    return statistics.median(xs)
t_sps, t_mem = med("pytorch", "samples_per_s"), med("pytorch", "peak_rss_mib")
for w in ("quantized", "dense"):
    sps, mem = med("rlq", "samples_per_s", w), med("rlq", "peak_rss_mib", w)
    print(f"rlq ({w} weights): {sps:.3f} samples/s, {mem:.0f} MiB; pytorch: {t_sps:.3f} samples/s, {t_mem:.0f} MiB")
    print(f"  throughput rlq/pytorch = {sps / t_sps:.2f}x (target >= 1.5x); "
          f"peak memory rlq/pytorch = {mem / t_mem:.2f} (target <= 0.5)")
PY
