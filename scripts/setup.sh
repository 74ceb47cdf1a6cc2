#!/usr/bin/env bash
# Installs what building, testing and running the toolkit needs on a fresh Debian machine:
# protoc (candle-onnx's build), rustfmt and clippy, ONNX Runtime 1.31 (from the PyPI wheel,
# which the sampler finds on its own), and pyarrow and DuckDB (the independent readers the tests
# check our output with).
# Safe to run again: each step is skipped when already done.
set -euo pipefail

ORT_VERSION=1.31.1

say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v protoc >/dev/null 2>&1; then
  say "installing protobuf-compiler (protoc)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -q protobuf-compiler >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q protobuf-compiler >/dev/null; }
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || say "rustup could not add rustfmt/clippy"
fi

PYTHON=${PYTHON:-python3}
have_ort=$("$PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || true)
if [ "$have_ort" != "$ORT_VERSION" ] || ! "$PYTHON" -c 'import pyarrow, duckdb' 2>/dev/null; then
  say "installing onnxruntime==$ORT_VERSION, pyarrow and duckdb from PyPI"
  "$PYTHON" -m pip install -q --disable-pip-version-check "onnxruntime==$ORT_VERSION" pyarrow duckdb
fi

data_dir=${MEDGAN_DATA_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/../shared/data"}
if [ ! -d "$data_dir" ]; then
  say "warning: no datasets at $data_dir (set MEDGAN_DATA_DIR); the tests need them"
fi
say "ready"
