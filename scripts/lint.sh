#!/usr/bin/env bash
# The checks every submission passes before it is committed: formatting and clippy with
# warnings as errors. CI checks formatting only: clippy would compile every dependency a second
# time (check mode) next to the release build the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
