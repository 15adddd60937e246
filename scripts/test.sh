#!/usr/bin/env bash
# The test command: fetch the default real model if missing, then every test, optimized
# dependencies (see Cargo.toml's dev profile), no GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh >/dev/null
cargo test --all-targets "$@"
cargo test --doc "$@"
