#!/usr/bin/env bash
# Benchmark of issue 10: one GRPO step on SmolLM2-135M-Instruct (full fine-tune, dense f32),
# G = 8 answers to each of Q questions, up to T new tokens, through the path users run
# (`rlq run` of a `tune` statement), beside TRL's GRPOTrainer on the same machine in the same run,
# back to back, both from the same HF folder (written by rlq: the start model after 0 updates is
# not a file format rlq writes, so both start from rlq's own step-1 checkpoint at lr 1e-9) and on
# the same Q questions (rlq's `arith`, written to a csv both read; every step uses all of them).
# Reports seconds per step (the second step of two: steady state) and peak RSS of each process,
# their ratios, and the machine's load (`uptime`) before each side: the machine may be shared.
# Writes the report to benches/results/grpo-bench-<date>.txt as well.
# Needs torch/transformers/trl in a private venv (never needed by the tests); installs them
# from PyPI if the venv lacks them.
# MIN_TOKENS = TOKENS makes every answer on both sides exactly TOKENS long (no stop token before:
# rlq's `min_tokens`, HF's `min_new_tokens`), so both steps do the same work whatever the two
# samplers draw.
#   scripts/bench-tune.sh [QUESTIONS] [TOKENS] [THREADS] [MIN_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
questions="${1:-1}"; tokens="${2:-128}"; threads="${3:-2}"; min_tokens="${4:-0}"
scripts/fetch-models.sh >/dev/null
venv="${RLQ_TUNE_VENV:-$HOME/.cache/rlq-tune-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers, trl" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch transformers trl datasets accelerate
fi
# rlq's dense products through MKL (the library torch's CPU build uses), opened at run time
# (RLQ_BLAS, README): PyPI's `mkl` wheel in the same venv. RLQ_BENCH_BLAS=off measures without.
blas="off"
if [ "${RLQ_BENCH_BLAS:-mkl}" != off ]; then
  ls "$venv"/lib/libmkl_rt.so.* >/dev/null 2>&1 || "$venv/bin/pip" install --quiet mkl
  blas="$(ls "$venv"/lib/libmkl_rt.so.* | head -1)"
fi
cargo build --quiet --bin rlq
bin="${CARGO_TARGET_DIR:-target}/debug/rlq"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p benches/results
report="benches/results/grpo-bench-$(date -u +%Y-%m-%d).txt"
say() { echo "$*" | tee -a "$work/report.txt"; }
say "date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
say "threads: $threads; questions/step: $questions; G: 8; max new tokens: $tokens (at least: ${min_tokens}); full fine-tune, f32, CPU"
say "rlq blas: $blas"
say "trl side: $("$venv/bin/python" -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"

# The shared start (an HF folder both read) and the shared questions.
cat > "$work/start.rlq" <<RLQ
let m = load "models/smollm2-135m-instruct.q4_1.gguf"
save (arith $questions seed 1) to "$work/questions.csv"
let log = tune m on (arith 4 seed 9) method grpo steps 1 batch 1 group 2 max_tokens 4 lr 1e-9 to "$work/start"
RLQ
"$bin" run "$work/start.rlq" >/dev/null
start="$work/start/step-000001"

measure() { /usr/bin/time -f '%e %M' "$@" 2> "$work/time.txt" >/dev/null; tail -1 "$work/time.txt"; }

# rlq: two steps, so that the second (steady state) step can be read from the log.
cat > "$work/bench.rlq" <<RLQ
let m = load "$start"
let log = tune m on (read "$work/questions.csv") method grpo steps 2 batch $questions group 8 max_tokens $tokens min_tokens $min_tokens temperature 1 warmup 0 to "$work/rlq-run"
save log to "$work/rlq-log.csv"
RLQ
say "load before rlq: $(uptime)"
rlq_blas=""; [ "$blas" != off ] && rlq_blas="$blas"
read -r rlq_wall rlq_kb < <(RLQ_BLAS="$rlq_blas" RAYON_NUM_THREADS=$threads measure "$bin" run "$work/bench.rlq")
rlq_step=$(python3 -c "import csv;r=list(csv.DictReader(open('$work/rlq-log.csv')));print(r[-1]['seconds'])")
rlq_tokens=$(python3 -c "import csv;r=list(csv.DictReader(open('$work/rlq-log.csv')));print(r[-1]['answer_len'])")
rlq_sample=$(python3 -c "import csv;r=list(csv.DictReader(open('$work/rlq-log.csv')));print(r[-1]['sample_s'])")

say "load before trl: $(uptime)"
read -r trl_wall trl_kb < <(OMP_NUM_THREADS=$threads measure "$venv/bin/python" benches/grpo_trl.py "$start" "$work/questions.csv" "$tokens" "$threads" "$work/trl.json" "$min_tokens")
trl_step=$(python3 -c "import json;print(json.load(open('$work/trl.json'))['step_seconds'])")
trl_tokens=$(python3 -c "import json;print(json.load(open('$work/trl.json'))['completion_len'])")
say "load after both: $(uptime)"

python3 - "$rlq_step" "$rlq_kb" "$rlq_tokens" "$rlq_wall" "$trl_step" "$trl_kb" "$trl_tokens" "$trl_wall" "$rlq_sample" <<'PY' | tee -a "$work/report.txt"
import sys
rs, rk, rt, rw, ts, tk, tt, tw, rsm = map(float, sys.argv[1:])
print(f"rlq: {rs:.1f} s/step (2nd step; sampling {rsm:.1f} s of it), peak RSS {rk/1024:.0f} MiB, mean answer {rt:.1f} tokens, process {rw:.0f} s")
print(f"trl: {ts:.1f} s/step (2nd step), peak RSS {tk/1024:.0f} MiB, mean answer {tt:.1f} tokens, process {tw:.0f} s")
print(f"step throughput rlq/trl: {ts/rs:.2f}x (target >= 1.5)   peak memory rlq/trl: {rk/tk:.2f}x (target <= 0.5)")
print(f"per answer token: rlq {rs/max(rt,1e-9)/8:.3f} s, trl {ts/max(tt,1e-9)/8:.3f} s (answers may stop early: compare lengths)")
PY
cat "$work/report.txt" >> "$report"
echo "---" >> "$report"
echo "report appended to $report"
