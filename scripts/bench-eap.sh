#!/usr/bin/env bash
# Benchmark of issue 3: one 128-token sample (forward + backward + all 3691 scores) on
# SmolLM2-135M, rlq vs an independent PyTorch implementation of METHOD.md, same machine, same run.
# rlq runs twice per round: weights kept quantized (the default) and dense f32 (`weights dense`);
# both compute with the same f32 weight values. Each round also times the path users take: the
# `patch` verb over a 9-row table of the same shape (exact ids, loss nll), piped into `rlq` with
# `:time on`, so the whole statement counts (preparing, the first samples' warm-up, the graph).
# Rounds alternate the implementations so that background load hits them alike; the ratios use
# each one's median over the rounds.
# Installs torch/gguf/numpy into a private venv (never needed by the tests); RLQ_BENCH_TORCH=0
# skips PyTorch (kernel and verb only).
#   scripts/bench-eap.sh [TOKENS] [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens="${1:-128}"; threads="${2:-2}"; rounds="${3:-3}"
model=models/smollm2-135m-instruct.q4_1.gguf
scripts/fetch-models.sh >/dev/null
torch="${RLQ_BENCH_TORCH:-1}"
venv="${RLQ_BENCH_VENV:-$HOME/.cache/rlq-bench-venv}"
if [ "$torch" != 0 ] && { [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, gguf, numpy" 2>/dev/null; }; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch gguf numpy
fi
# The dev profile already compiles every dependency (candle included) at opt-level 3.
cargo build --quiet --example bench_eap --bin rlq
bin="${CARGO_TARGET_DIR:-target}/debug/examples/bench_eap"
rlq="${CARGO_TARGET_DIR:-target}/debug/rlq"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
# The verb's samples: prompt ⌊n/2⌋+1 ids, answer the rest plus one, so the model reads n tokens
# and the loss covers the same positions as the kernel's.
python3 - "$work/samples.jsonl" "$tokens" <<'PY'
import json, random, sys
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
with open(path, "w") as f:
    for _ in range(9):
        ids = [rng.randrange(49152) for _ in range(n)]
        f.write(json.dumps({"prompt_ids": ids[: n // 2 + 1], "answer_ids": ids[n // 2 + 1 :] + [0]}) + "\n")
PY
verb() {
  printf ':time on\nlet m = load "%s"\nlet t = read "%s"\nlet g = patch m on t loss nll\n' \
    "$model" "$work/samples.jsonl" | RAYON_NUM_THREADS=$threads "$rlq" 2>/dev/null |
  python3 -c '
import json, re, sys
last = [l for l in sys.stdin if l.startswith("time:")][-1]
v, unit = re.match(r"time: ([0-9.]+)(\w+)", last).groups()
s = float(v) * {"s": 1, "ms": 1e-3, "µs": 1e-6}[unit]
print(json.dumps({"impl": "rlq-verb", "samples_per_s": 9 / s}))'
}
echo "machine: $(nproc) cores; threads: $threads; tokens: $tokens; rounds: $rounds"
results=()
for r in $(seq "$rounds"); do
  for w in quantized dense; do
    results+=("$(RAYON_NUM_THREADS=$threads "$bin" bench "$model" --tokens "$tokens" --weights "$w")")
    echo "${results[-1]}"
  done
  results+=("$(verb)")
  echo "${results[-1]}"
  if [ "$torch" != 0 ]; then
    results+=("$("$venv/bin/python" benches/eap_torch.py bench "$model" --tokens "$tokens" --threads "$threads")")
    echo "${results[-1]}"
  fi
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
def med(impl, key, weights=None):
    xs = [r[key] for r in runs if r["impl"] == impl and r.get("weights", weights) == weights]
    return statistics.median(xs) if xs else float("nan")
k_sps, v_sps = med("rlq", "samples_per_s", "quantized"), med("rlq-verb", "samples_per_s")
print(f"rlq kernel (quantized): {k_sps:.3f} samples/s; the patch verb over 9 samples: {v_sps:.3f} "
      f"samples/s; verb/kernel = {v_sps / k_sps:.2f}")
if not any(r["impl"] == "pytorch" for r in runs):
    sys.exit(0)
t_sps, t_mem = med("pytorch", "samples_per_s"), med("pytorch", "peak_rss_mib")
print(f"the patch verb/pytorch = {v_sps / t_sps:.2f}x")
for w in ("quantized", "dense"):
    sps, mem = med("rlq", "samples_per_s", w), med("rlq", "peak_rss_mib", w)
    print(f"rlq ({w} weights): {sps:.3f} samples/s, {mem:.0f} MiB; pytorch: {t_sps:.3f} samples/s, {t_mem:.0f} MiB")
    print(f"  throughput rlq/pytorch = {sps / t_sps:.2f}x (target >= 1.5x); "
          f"peak memory rlq/pytorch = {mem / t_mem:.2f} (target <= 0.5)")
PY
