//! Helpers shared by the integration tests: fixture paths, samplers and row comparison.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_schema::DataType;
use medgan_sample::{Bundle, Sampler, SamplerOptions};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn open(name: &str) -> Bundle {
    Bundle::open(fixture(name)).unwrap_or_else(|error| panic!("{}", chain(&error)))
}

pub fn sampler(name: &str, options: SamplerOptions) -> Sampler {
    Sampler::new(&open(name), options).unwrap_or_else(|error| panic!("{}", chain(&error)))
}

pub fn options(seed: u64, batch_size: usize) -> SamplerOptions {
    SamplerOptions {
        seed,
        batch_size,
        ..SamplerOptions::default()
    }
}

/// An error and its sources joined as the binary prints them.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// Copies a fixture bundle into `dest` so a test can tamper with it.
pub fn copy_fixture(name: &str, dest: &Path) {
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

/// Every row of `batches` as integers (booleans as 0/1), patient id first.
pub fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<i64>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| match column.data_type() {
                    DataType::Int64 => column.as_primitive::<Int64Type>().value(row),
                    DataType::Int32 => i64::from(column.as_primitive::<Int32Type>().value(row)),
                    DataType::Boolean => i64::from(column.as_boolean().value(row)),
                    other => panic!("unexpected column type {other}"),
                })
                .collect();
            rows.push(values);
        }
    }
    rows
}

pub fn collect(sampler: &Sampler, rows: std::ops::Range<u64>) -> Vec<RecordBatch> {
    sampler
        .record_batches(rows)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|error| panic!("{}", chain(&error)))
}
