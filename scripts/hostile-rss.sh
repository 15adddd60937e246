#!/usr/bin/env bash
# Peak RSS of each hostile-input test of tests/model_load.rs, run alone (one process per test),
# beside the test binary's own floor (`--list`). Issue 13 asks that no hostile header make rlq
# allocate what the header claims: each of these files claims tensors of up to 2^80 bytes or
# 10^12 layers. Usage: scripts/hostile-rss.sh  (writes benches/results/hostile-rss.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rlq/target}"
scripts/fetch-models.sh >/dev/null
bin=$(cargo test --test model --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/model-[^"]*"' | head -1 | cut -d'"' -f4)
out=benches/results/hostile-rss.txt
{
  echo "# peak RSS per hostile-input test (one process each), $(date -u +%F), commit $(git rev-parse --short HEAD)"
  /usr/bin/time -f "binary floor (--list): %M KB" "$bin" --list 2>&1 >/dev/null
  for t in $("$bin" --list 2>/dev/null | sed -n 's/^\(model_load::\(hostile\|bad\)_[a-z0-9_]*\): test$/\1/p'); do
    /usr/bin/time -f "$t: %M KB peak, %e s" "$bin" --exact "$t" --test-threads 1 2>&1 >/dev/null \
      | grep ' KB peak' || echo "$t: FAILED"
  done
} | tee "$out"
