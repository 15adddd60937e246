#!/usr/bin/env bash
# Builds rlq and the CPU-vs-CUDA parity test with `--features cuda` on a machine with no GPU and
# no system CUDA (x86-64; CUDA 13.0 from PyPI), and packs them into .gpu/ (git-ignored) for a GPU
# machine without a Rust toolchain, where scripts/gpu/run-parity.sh runs them. Never used by CI.
# Usage: scripts/gpu/build-cuda.sh [checkout]     (writes into <checkout>/.gpu/)
set -euo pipefail
SRC=$(cd "${1:-.}" && pwd)
DEST=${DEST:-$SRC/.gpu}
PFX=$HOME/.cache/rlq/cuda13
# 1. CUDA 13.0 toolkit pieces from PyPI (13.0 exactly: its nvcc writes PTX ISA 9.0, which the
#    remote's driver 580 / CUDA 13.0 can JIT; a newer nvcc's PTX would be refused).
if [ ! -x "$PFX/nvidia/cu13/bin/nvcc" ]; then
  pip install --no-deps --target "$PFX" nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.88 \
    nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
fi
CU=$PFX/nvidia/cu13
# 2. Toolkit layout nvcc.profile and cudarc's build.rs expect: targets/x86_64-linux/{include,lib},
#    lib64, unversioned .so names for -l, and a libcuda stub (the driver is not on PyPI) whose
#    entry points return CUDA_ERROR_NO_DEVICE; soname libcuda.so.1 so the real driver loads there.
mkdir -p "$CU/targets/x86_64-linux" "$CU/lib/stubs"
ln -sfn ../../include "$CU/targets/x86_64-linux/include"
ln -sfn ../../lib "$CU/targets/x86_64-linux/lib"
ln -sfn lib "$CU/lib64"
for f in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13; do
  ln -sfn "$f" "$CU/lib/${f%%.so*}.so"
done
CUDARC=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.10 | head -1)
grep -A1 'extern "C" {' "$CUDARC/src/driver/sys/mod.rs" | grep -o 'fn cu[A-Za-z0-9_]*' | sed 's/fn //' \
  | sort -u | sed 's/.*/int &(void){return 100;}/' > "$CU/lib/stubs/cuda_stub.c"
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$CU/lib/stubs/libcuda.so" "$CU/lib/stubs/cuda_stub.c"
ln -sfn libcuda.so "$CU/lib/stubs/libcuda.so.1"
# 3. Environment: cudaforge (candle-kernels' build.rs) finds nvcc on PATH and needs the compute
#    capability without a GPU; cudarc (dynamic-linking, as candle enables it) takes the CUDA
#    version from CUDARC_CUDA_VERSION and its link search paths from CUDA_HOME.
export CUDA_HOME=$CU PATH=$CU/bin:$PATH CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rlq/target-cuda}
cd "$SRC"
touch src/lib.rs src/main.rs
cargo build -j2 --features cuda --bin rlq
BIN=$(cargo test -j2 --features cuda --test model --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="model" and m.get("executable"): print(m["executable"])' | tail -1)
echo "test binary: $BIN"
# 4. Package (xz; the remote has xz). The test binary keeps its symbols for backtraces.
mkdir -p "$DEST"
xz -T2 -9 -c "$BIN" > "$DEST/cuda_parity.xz"
strip -o "$DEST/rlq.tmp" "$CARGO_TARGET_DIR/debug/rlq" && xz -T2 -9 -c "$DEST/rlq.tmp" > "$DEST/rlq.xz" && rm "$DEST/rlq.tmp"
(cd "$DEST" && sha256sum cuda_parity.xz rlq.xz > SHA256SUMS)
ls -la "$DEST"
