//! Integration tests of medgan-sample, as one binary: bundles, sampling, Parquet, the CLI and
//! other engines reading the output (pyarrow, DuckDB, Spark).
//!
//! They run against the fixture bundles in `tests/fixtures` (written by `make_fixture.py`; the
//! Spark test uses the shipped model in `models/`) and find ONNX Runtime the way the binary does
//! (e.g. the `onnxruntime` Python package).

mod bundle;
mod cli;
mod cli_export;
mod common;
mod engines;
mod export;
mod parquet_file;
mod sampling;
mod spark;
