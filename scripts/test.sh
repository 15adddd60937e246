#!/usr/bin/env bash
# The test command: fetch the default real model if missing, then every test, optimized
# dependencies (see Cargo.toml's dev profile), no GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh >/dev/null
# The optional CBLAS path (RLQ_BLAS; model::kernels::blas) is tested against MKL from PyPI's
# `mkl` wheel, kept in its own venv beside the target dir. Every other test runs without it.
blas_venv="${RLQ_BLAS_VENV:-$HOME/.cache/rlq-blas-venv}"
if ! ls "$blas_venv"/lib/libmkl_rt.so.* >/dev/null 2>&1; then
  python3 -m venv "$blas_venv" && "$blas_venv/bin/pip" install --quiet mkl \
    || echo "scripts/test.sh: could not install mkl: the CBLAS test will not run" >&2
fi
RLQ_TEST_BLAS="$(ls "$blas_venv"/lib/libmkl_rt.so.* 2>/dev/null | head -1)"
export RLQ_TEST_BLAS
cargo test --all-targets "$@"
cargo test --doc "$@"
