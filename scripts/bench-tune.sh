#!/usr/bin/env bash
# Benchmark of issue 10: one GRPO step on SmolLM2-135M-Instruct (full fine-tune, dense f32),
# G = 8 answers to each of B questions, up to T new tokens, through the path users run
# (`rlq run` of a `tune` statement), beside TRL's GRPOTrainer on the same machine in the same run,
# both from the same HF folder (written by rlq: the start model after 0 updates is not a file
# format rlq writes, so both start from rlq's own step-1 checkpoint).
# Reports seconds per step and peak RSS of each, and their ratios.
# Installs torch/transformers/trl into a private venv (never needed by the tests).
#   scripts/bench-tune.sh [QUESTIONS] [TOKENS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
questions="${1:-1}"; tokens="${2:-128}"; threads="${3:-2}"
scripts/fetch-models.sh >/dev/null
venv="${RLQ_TUNE_VENV:-$HOME/.cache/rlq-tune-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers, trl" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch transformers trl datasets accelerate
fi
cargo build --quiet --bin rlq
bin="${CARGO_TARGET_DIR:-target}/debug/rlq"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores; threads: $threads; questions/step: $questions; G: 8; max new tokens: $tokens"

# The shared start: rlq's checkpoint after one tiny step (an HF folder both read).
"$bin" -e "let m = load \"models/smollm2-135m-instruct.q4_1.gguf\"" \
  -e "tune m on (arith 4 seed 9) method grpo steps 1 batch 1 group 2 max_tokens 4 lr 1e-9 to \"$work/start\"" >/dev/null
start="$work/start/step-000001"

measure() { /usr/bin/time -f '%e %M' "$@" 2> "$work/time.txt" >/dev/null; tail -1 "$work/time.txt"; }

# rlq: two steps, so that the second (steady state) step can be read from the log.
cat > "$work/bench.rlq" <<RLQ
let m = load "$start"
let log = tune m on (arith 16 seed 1) method grpo steps 2 batch $questions group 8 max_tokens $tokens temperature 1 warmup 0 to "$work/rlq-run"
save log to "$work/rlq-log.csv"
RLQ
read -r rlq_wall rlq_kb < <(RAYON_NUM_THREADS=$threads measure "$bin" run "$work/bench.rlq")
rlq_step=$(python3 -c "import csv;r=list(csv.DictReader(open('$work/rlq-log.csv')));print(r[-1]['seconds'])")
rlq_tokens=$(python3 -c "import csv;r=list(csv.DictReader(open('$work/rlq-log.csv')));print(r[-1]['answer_len'])")

read -r trl_wall trl_kb < <(OMP_NUM_THREADS=$threads measure "$venv/bin/python" benches/grpo_trl.py "$start" "$questions" "$tokens" "$threads" "$work/trl.json")
trl_step=$(python3 -c "import json;print(json.load(open('$work/trl.json'))['step_seconds'])")
trl_tokens=$(python3 -c "import json;print(json.load(open('$work/trl.json'))['completion_len'])")

python3 - "$rlq_step" "$rlq_kb" "$rlq_tokens" "$trl_step" "$trl_kb" "$trl_tokens" <<'PY'
import sys
rs, rk, rt, ts, tk, tt = map(float, sys.argv[1:])
print(f"rlq: {rs:.1f} s/step, peak RSS {rk/1024:.0f} MiB, mean answer {rt:.1f} tokens")
print(f"trl: {ts:.1f} s/step, peak RSS {tk/1024:.0f} MiB, mean answer {tt:.1f} tokens")
print(f"throughput rlq/trl: {ts/rs:.2f}x   peak memory rlq/trl: {rk/tk:.2f}x")
PY
