#!/usr/bin/env bash
# Installs what building, testing and running the toolkit needs on a fresh Debian machine:
# protoc (candle-onnx's build), rustfmt and clippy, ONNX Runtime 1.31 (from the PyPI wheel,
# which the sampler finds on its own), pyarrow and DuckDB (the independent readers the tests
# check our output with), and PySpark with a Java runtime (the Spark fan-out test).
# Safe to run again: each step is skipped when already done.
set -euo pipefail

ORT_VERSION=1.31.1
PYSPARK_VERSION=4.0.1

say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_install() {
  $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$@" >/dev/null; }
}

if ! command -v protoc >/dev/null 2>&1; then
  say "installing protobuf-compiler (protoc)"
  apt_install protobuf-compiler
fi

# Spark (the fan-out test) runs on Java 17 or newer.
java_major() {
  local major
  major=$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1)
  echo "${major:-0}"
}
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  say "installing openjdk-17-jre-headless (Java for Spark)"
  if ! { [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; } ||
    ! apt_install openjdk-17-jre-headless; then
    say "warning: no Java 17 or newer, and openjdk-17-jre-headless could not be installed:" \
      "the Spark test will fail until \`java -version\` says 17 or newer"
  fi
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
have_pyspark=$("$PYTHON" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null || true)
if [ "$have_pyspark" != "$PYSPARK_VERSION" ]; then
  # A 400 MB source package (Spark's jars): about 40 s from PyPI.
  say "installing pyspark==$PYSPARK_VERSION from PyPI"
  "$PYTHON" -m pip install -q --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
fi

data_dir=${MEDGAN_DATA_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/../shared/data"}
if [ ! -d "$data_dir" ]; then
  say "warning: no datasets at $data_dir (set MEDGAN_DATA_DIR); the tests need them"
fi
say "ready"
