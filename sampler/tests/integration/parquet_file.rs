//! The Parquet writer: read back, deterministic bytes, bounded row groups, no partial files.

use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use medgan_sample::writer::{CREATED_BY, ParquetOptions};
use medgan_sample::{SampleError, sample_to_parquet, write_parquet};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::common::{chain, collect, options, rows_of, sampler};

fn read_back(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    reader.collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
fn a_written_file_reads_back_as_the_sampled_batches() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["binary", "count"] {
        let path = dir.path().join(format!("{name}.parquet"));
        let sampler = sampler(name, options(21, 1000));
        let summary = sample_to_parquet(&sampler, 2_500, &path, 1_000, |_| {})
            .unwrap_or_else(|error| panic!("{}", chain(&error)));
        assert_eq!(
            (summary.rows, summary.columns, summary.row_groups),
            (2_500, sampler.features().len() + 1, 3)
        );
        assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());

        let batches = read_back(&path);
        assert_eq!(batches[0].schema(), sampler.schema(), "{name}");
        assert_eq!(
            rows_of(&batches),
            rows_of(&collect(&sampler, 0..2_500)),
            "{name}"
        );

        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata().file_metadata();
        assert_eq!(metadata.created_by(), Some(CREATED_BY));
        let pairs = metadata.key_value_metadata().unwrap();
        let value = |key: &str| {
            pairs
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
        };
        assert_eq!(value("medgan.seed").as_deref(), Some("21"));
        assert_eq!(value("medgan.rows").as_deref(), Some("2500"));
        assert_eq!(
            value("medgan.manifest_sha256").as_deref(),
            Some(sampler.manifest_sha256())
        );
    }
}

#[test]
fn the_same_model_seed_and_rows_give_the_same_bytes_whatever_the_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, seed: u64, batch_size: usize| {
        let path = dir
            .path()
            .join(format!("{name}-{seed}-{batch_size}.parquet"));
        let sampler = sampler(name, options(seed, batch_size));
        sample_to_parquet(&sampler, 5_000, &path, 2_000, |_| {}).unwrap();
        std::fs::read(path).unwrap()
    };
    for name in ["binary", "count"] {
        let first = write(name, 3, 700);
        assert_eq!(first, write(name, 3, 700), "{name}: a second run differs");
        for batch_size in [7, 1024, 4096] {
            assert!(
                first == write(name, 3, batch_size),
                "{name}: batch size {batch_size}"
            );
        }
        assert_ne!(
            first,
            write(name, 4, 700),
            "{name}: another seed gives the same file"
        );
    }
}

#[test]
fn zero_rows_write_a_valid_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    let summary =
        sample_to_parquet(&sampler("count", options(0, 10)), 0, &path, 10, |_| {}).unwrap();
    assert_eq!(summary.rows, 0);
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    assert_eq!(reader.schema().fields().len(), 11);
}

#[test]
fn a_failed_run_leaves_no_file_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let sampler = sampler("binary", options(1, 100));
    let failing = || {
        sampler
            .record_batches(0..300)
            .chain(std::iter::once(Err(SampleError::Options(
                "injected failure".to_owned(),
            ))))
    };
    let options = ParquetOptions {
        row_group_size: 100,
        metadata: Vec::new(),
    };

    let fresh = dir.path().join("fresh.parquet");
    let error = write_parquet(&fresh, sampler.schema(), failing(), &options, |_| {}).unwrap_err();
    assert!(
        chain(&error).contains("injected failure"),
        "{}",
        chain(&error)
    );
    assert!(!fresh.exists());

    let existing = dir.path().join("existing.parquet");
    std::fs::write(&existing, b"the previous results").unwrap();
    write_parquet(&existing, sampler.schema(), failing(), &options, |_| {}).unwrap_err();
    assert_eq!(std::fs::read(&existing).unwrap(), b"the previous results");

    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["existing.parquet"],
        "temporary files were left behind"
    );
}
