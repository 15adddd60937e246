#!/usr/bin/env bash
# Issue 10's HF check: a `tune` checkpoint folder loads in transformers
# (AutoModelForCausalLM.from_pretrained, AutoTokenizer) and gives the same next-token logits as
# rlq on the same tokens. Uses the bench venv (torch, transformers); never needed by the tests.
#   scripts/check-hf-load.sh CHECKPOINT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
ck="$1"
venv="${RLQ_TUNE_VENV:-$HOME/.cache/rlq-tune-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch transformers
fi
cargo build --quiet --bin rlq
bin="${CARGO_TARGET_DIR:-target}/debug/rlq"
text="Tom has 12 apples and gets 7 more. How many apples does Tom have now?"
"$bin" --format csv -e "let t = load \"$ck\"
logits t \"$text\" top 5" > /tmp/rlq-logits.csv
"$venv/bin/python" - "$ck" "$text" /tmp/rlq-logits.csv <<'PY'
import csv, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
ck, text, rlq_csv = sys.argv[1:]
tok = AutoTokenizer.from_pretrained(ck)
model = AutoModelForCausalLM.from_pretrained(ck, torch_dtype=torch.float32).eval()
ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
with torch.no_grad():
    last = model(ids).logits[0, -1]
rows = list(csv.DictReader(open(rlq_csv)))
print(f"transformers {__import__('transformers').__version__}: {ids.shape[1]} tokens")
worst = 0.0
for r in rows:
    tid = int(r.get("token_id") or r.get("id"))
    ours = float(r["logit"])
    theirs = float(last[tid])
    worst = max(worst, abs(ours - theirs))
    print(f"token {tid:6d} {r.get('piece', ''):>12}  rlq {ours:10.5f}  hf {theirs:10.5f}")
top_hf = torch.topk(last, len(rows)).indices.tolist()
top_rlq = [int(r.get("token_id") or r.get("id")) for r in rows]
print(f"max |Δlogit| over rlq's top {len(rows)}: {worst:.2e}; same top tokens: {top_hf == top_rlq}")
sys.exit(0 if worst < 1e-3 and top_hf == top_rlq else 1)
PY
