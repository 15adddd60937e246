#!/usr/bin/env bash
# Issue 11's check of `evaluate` against an independent implementation of EAP-IG's
# evaluate_graph (benches/circuit_torch.py), sample by sample, on the real SmolLM2 at exact
# token ids: rlq scores a graph, keeps a pruned top-n circuit, exports it and evaluates it under
# zero (or corrupt: each row's corrupted prompt) ablation; PyTorch evaluates the exported edge
# set on the same tokens. f64 on both sides. Never run by the tests.
# Log: benches/results/circuit-crosscheck-ABLATION.txt when run with --log.
#   scripts/crosscheck-circuit.sh [N_EDGES] [--log|--no-log] [zero|corrupt]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
ablation="${3:-zero}"
model=models/smollm2-135m-instruct.q4_1.gguf
venv="${RLQ_TUNE_VENV:-$HOME/.cache/rlq-tune-venv}"
py="$venv/bin/python"
# gguf (the loader benches/eap_torch.py uses) beside the venv's torch, in a private folder.
pylib="${TMPDIR:-/tmp}/rlq-circuit-pylib"
if ! PYTHONPATH="$pylib" "$py" -c "import torch, gguf, numpy" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --target "$pylib" --no-deps gguf
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Three chat-formatted prompts with answers, as exact ids (no template applied by rlq), each
# with a corrupted prompt that changes one content token.
cat > "$tmp/qs.jsonl" <<'JSON'
{"prompt_id": 0, "prompt_ids": [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198], "answer_ids": [504, 3575, 282, 4649, 314], "corrupt_ids": [1, 4093, 198, 1780, 314, 260, 3575, 282, 5227, 47, 2, 198, 1, 520, 9531, 198]}
{"prompt_id": 1, "prompt_ids": [1, 4093, 198, 1780, 314, 216, 34, 1232, 216, 37, 47, 2, 198, 1, 520, 9531, 198], "answer_ids": [34, 1232, 216, 37, 314], "corrupt_ids": [1, 4093, 198, 1780, 314, 216, 36, 1232, 216, 37, 47, 2, 198, 1, 520, 9531, 198]}
{"prompt_id": 2, "prompt_ids": [1, 4093, 198, 23, 3437, 260, 6341, 282, 1345, 30, 2, 198, 1, 520, 9531, 198], "answer_ids": [504, 6341, 282, 1345, 314], "corrupt_ids": [1, 4093, 198, 23, 3437, 260, 4649, 282, 1345, 30, 2, 198, 1, 520, 9531, 198]}
JSON
t_cut=3
cargo build --quiet --bin rlq
bin="${CARGO_TARGET_DIR:-target}/debug/rlq"
"$bin" --format csv -e "let m = load \"$model\"
let qs = read \"$tmp/qs.jsonl\"
let g = patch m on qs t_cut $t_cut dtype f64
let c = circuit g top $n prune true
export c to \"$tmp/c.json\"
evaluate m on qs circuit c ablation $ablation dtype f64" > "$tmp/rlq.csv"
"$py" - "$tmp" "$t_cut" "$ablation" <<'PY'
import csv, json, sys
tmp, t_cut, ablation = sys.argv[1], int(sys.argv[2]), sys.argv[3]
edges = list(json.load(open(f"{tmp}/c.json"))["edges"].keys())
rlq = {int(r["prompt_id"]): float(r["metric"]) for r in csv.DictReader(open(f"{tmp}/rlq.csv"))}
samples = []
for line in open(f"{tmp}/qs.jsonl"):
    q = json.loads(line)
    p, a = q["prompt_ids"], q["answer_ids"]
    samples.append({"id": q["prompt_id"], "tokens": p + a[: t_cut - 1], "start": len(p) - 1,
                    "targets": a[:t_cut], "rlq_metric": rlq[q["prompt_id"]],
                    "corrupt": q["corrupt_ids"] + a[: t_cut - 1]})
json.dump({"edges": edges, "ablation": ablation, "samples": samples},
          open(f"{tmp}/case.json", "w"))
PY
run() { PYTHONPATH="$pylib" "$py" benches/circuit_torch.py "$model" "$tmp/case.json" --dtype f64; }
if [ "${2:-}" = "--log" ]; then
  { echo "# scripts/crosscheck-circuit.sh $n --log $ablation ($(date -u +%F))"; run; } |
    tee "benches/results/circuit-crosscheck-$ablation.txt"
else
  run
fi
