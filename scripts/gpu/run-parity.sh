#!/usr/bin/env bash
# rlq CUDA check, on the GPU machine, from the repo root:  bash scripts/gpu/run-parity.sh
# (with .gpu/ from scripts/gpu/build-cuda.sh next to it).
# Unpacks the prebuilt test binary (built elsewhere with --features cuda, CUDA 13.0, sm_90a PTX
# embedded), finds the CUDA 13 libraries it links (libcuda.so.1, libcudart.so.13,
# libcublas.so.13 + libcublasLt.so.13, libcurand.so.10), runs the parity test with the GPU
# required, and writes everything to $OUT/log (peak nvidia-smi memory samples to $OUT/smi_mem.txt).
# Exit status: the test's (0 = all parity checks passed). Budget: well under 4 minutes.
set -u -o pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.gpu" && pwd)
OUT=${OUT:-$PWD/.gpu-out}
mkdir -p "$OUT"
W=$(mktemp -d /tmp/rlq-gpu.XXXXXX)

main() {
  local t0=$SECONDS rc
  echo "== $(date -u +%FT%TZ) host $(uname -r), $(nproc) cpus, $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.used,memory.total --format=csv 2>&1 | head -3
  nvidia-smi 2>/dev/null | grep -m1 "CUDA Version" || true

  echo "== unpack"
  (cd "$HERE" && sha256sum -c --quiet SHA256SUMS) || echo "WARNING: checksum mismatch in $HERE"
  for f in cuda_parity rlq; do
    if [ -f "$HERE/$f.xz" ]; then xz -dc "$HERE/$f.xz" > "$W/$f" && chmod +x "$W/$f"; fi
  done
  ls -la "$W"

  echo "== CUDA libraries"
  local cands="/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64"
  local py sp s d
  for py in python3 /opt/torch/.venv/bin/python3; do
    sp=$("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) || continue
    for s in $sp; do
      for d in "$s"/nvidia/cu13/lib "$s"/nvidia/*/lib; do [ -d "$d" ] && cands="$cands $d"; done
    done
  done
  local lib found extra=""
  for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
    if ldconfig -p 2>/dev/null | grep -q " $lib "; then echo "$lib: via ldconfig"; continue; fi
    found=""
    for d in $cands; do [ -e "$d/$lib" ] && { found=$d; break; }; done
    if [ -z "$found" ]; then
      found=$(timeout 30 find / -xdev -name "$lib" -not -path "*/stubs/*" 2>/dev/null | head -1)
      found=${found%/*}
    fi
    if [ -n "$found" ]; then
      echo "$lib: $found"
      case ":$extra:" in *":$found:"*) ;; *) extra="$extra:$found" ;; esac
    else
      echo "$lib: NOT FOUND"
    fi
  done
  export LD_LIBRARY_PATH="${extra#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$W/cuda_parity" | grep -E "cuda|cublas|curand|not found"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || true

  echo "== cuda_parity (RLQ_REQUIRE_CUDA=1)"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/smi_mem.txt" 2>/dev/null &
  local smi=$!
  RLQ_REQUIRE_CUDA=1 RUST_BACKTRACE=1 timeout 190 "$W/cuda_parity" cuda_parity:: --nocapture --test-threads=1
  rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  echo "nvidia-smi memory.used peak during the test: $(sort -n "$OUT/smi_mem.txt" 2>/dev/null | tail -1) MiB (sampled every 200 ms)"
  [ "$rc" = 124 ] && echo "TIMED OUT after 190 s"

  if [ -x "$W/rlq" ]; then
    echo "== rlq --features cuda binary starts"
    timeout 20 "$W/rlq" --version 2>&1 | head -3 || true
  fi
  echo "== done in $((SECONDS - t0)) s, cuda_parity exit status $rc"
  return "$rc"
}

main 2>&1 | tee "$OUT/log"
rc=${PIPESTATUS[0]}
rm -rf "$W"
exit "$rc"
