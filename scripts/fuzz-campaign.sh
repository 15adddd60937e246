#!/usr/bin/env bash
# A long fuzz campaign of the language (tests/lang_fuzz.rs), outside CI: one proptest run per
# seed, each bounded by a wall-clock timeout so a hang shows as rc 124 instead of stalling the
# campaign. Usage: scripts/fuzz-campaign.sh [minutes 65] [cases per property 20000] [first seed 1]
# Writes one line per seed (seed, cases, rc, seconds) and a total to benches/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-65}"; cases="${2:-20000}"; seed="${3:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rlq/target}"
bin=$(cargo test --test lang --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/lang-[^"]*"' | head -1 | cut -d'"' -f4)
[ -x "$bin" ] || { echo "could not build tests/lang_fuzz.rs" >&2; exit 1; }
log="benches/results/fuzz-campaign-$(date -u +%Y%m%d).txt"
mkdir -p benches/results
{
  echo "# fuzz campaign: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $(nproc) cores"
  echo "# PROPTEST_CASES=$cases per property (6 properties + 2 fixed tests), timeout 1800 s per seed"
  echo "seed cases rc seconds"
} > "$log"
end=$(( $(date +%s) + minutes * 60 )); runs=0; failed=0
while [ "$(date +%s)" -lt "$end" ]; do
  t0=$(date +%s)
  PROPTEST_CASES=$cases PROPTEST_RNG_SEED=$seed timeout 1800 "$bin" lang_fuzz:: --test-threads 1 \
    > "/tmp/fuzz-seed-$seed.log" 2>&1
  rc=$?
  echo "$seed $cases $rc $(( $(date +%s) - t0 ))" >> "$log"
  runs=$((runs + 1)); [ $rc -eq 0 ] || { failed=$((failed + 1)); cp "/tmp/fuzz-seed-$seed.log" "benches/results/fuzz-failure-seed-$seed.log"; }
  seed=$((seed + 1))
done
echo "# total: $runs seeds, $failed failed, $(( runs * cases * 6 )) generated programs (6 properties x cases x seeds; token_soup runs 2 programs per case)" >> "$log"
echo "# finished $(date -u +%FT%TZ)" >> "$log"
