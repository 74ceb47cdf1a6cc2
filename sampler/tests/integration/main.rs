//! Integration tests of medgan-sample, as one binary: bundles, sampling, Parquet and the CLI.
//!
//! They run against the fixture bundles in `tests/fixtures` (written by `make_fixture.py`) and
//! find ONNX Runtime the way the binary does (e.g. the `onnxruntime` Python package).

mod bundle;
mod cli;
mod cli_export;
mod common;
mod engines;
mod export;
mod parquet_file;
mod sampling;
