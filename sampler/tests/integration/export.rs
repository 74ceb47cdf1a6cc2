//! Exports: exact sharding, layouts, formats, metadata, safe names and partitioned datasets.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use medgan_sample::export::format::{Compression, Format};
use medgan_sample::export::{DATASET_MANIFEST, SUCCESS_FILE};
use medgan_sample::layout::Shaper;
use medgan_sample::{
    ExportOptions, Labels, Layout, Sampler, SamplerOptions, Shard, Target, export,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sha2::{Digest, Sha256};

use crate::common::{chain, collect, options, sampler};

/// Every batch of a file in `format`, read with the Arrow readers (CSV needs the schema).
pub fn read_any(path: &Path, format: Format, schema: &SchemaRef) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    let batches: Result<Vec<_>, _> = match format {
        Format::Parquet => ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect(),
        Format::ArrowFile => arrow_ipc::reader::FileReader::try_new(file, None)
            .unwrap()
            .collect(),
        Format::ArrowStream => arrow_ipc::reader::StreamReader::try_new(file, None)
            .unwrap()
            .collect(),
        Format::Csv => arrow_csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .build(file)
            .unwrap()
            .collect(),
    };
    batches.unwrap()
}

/// The columns of `batches` concatenated: equal columns mean equal rows, row for row.
pub fn columns(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<ArrayRef> {
    let bare: Vec<RecordBatch> = batches
        .iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
        .collect();
    arrow_select::concat::concat_batches(schema, &bare)
        .unwrap()
        .columns()
        .to_vec()
}

fn shaper(sampler: &Sampler, layout: Layout, labels: Option<&Labels>) -> Shaper {
    Shaper::new(
        sampler.features(),
        sampler.data_type(),
        layout,
        labels,
        false,
    )
    .unwrap()
}

/// The rows a layout should hold, shaped in memory from the sampler's own batches.
fn expected(sampler: &Sampler, rows: Range<u64>, shaper: &Shaper) -> Vec<ArrayRef> {
    let shaped: Vec<RecordBatch> = collect(sampler, rows)
        .iter()
        .map(|b| shaper.shape(b).unwrap())
        .collect();
    columns(&shaper.schema(), &shaped)
}

fn write(sampler: &Sampler, rows: Range<u64>, path: &Path, options: &ExportOptions) {
    export(
        sampler,
        rows,
        &Target::File(path.to_path_buf()),
        options,
        |_| {},
    )
    .unwrap_or_else(|error| panic!("{}", chain(&error)));
}

fn with_threads(seed: u64, batch_size: usize, threads: usize) -> SamplerOptions {
    SamplerOptions {
        threads: Some(threads),
        ..options(seed, batch_size)
    }
}

#[test]
fn shards_concatenated_are_the_single_run_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let total = 2_345u64;
    for name in ["binary", "count"] {
        for layout in [Layout::Wide, Layout::Long] {
            let whole = sampler(name, options(31, 4096));
            let opts = ExportOptions {
                layout,
                ..ExportOptions::default()
            };
            let single = dir.path().join(format!("{name}-single.parquet"));
            write(&whole, 0..total, &single, &opts);
            let schema = shaper(&whole, layout, None).schema();
            let reference = columns(&schema, &read_any(&single, Format::Parquet, &schema));
            assert_eq!(
                reference,
                expected(&whole, 0..total, &shaper(&whole, layout, None))
            );
            for count in [1u64, 3, 7] {
                let mut batches = Vec::new();
                for index in 0..count {
                    let shard = Shard { index, count };
                    // Every shard runs with its own batch size and thread count.
                    let part_sampler = sampler(
                        name,
                        with_threads(31, 50 + 97 * index as usize, 1 + index as usize % 2),
                    );
                    let path = dir.path().join(format!("{name}-{count}-{index}.parquet"));
                    let shard_options = ExportOptions {
                        request: Some((total, shard)),
                        ..opts.clone()
                    };
                    write(&part_sampler, shard.rows(total), &path, &shard_options);
                    batches.extend(read_any(&path, Format::Parquet, &schema));
                }
                assert!(
                    columns(&schema, &batches) == reference,
                    "{name} {layout:?}: {count} shards differ from the single run"
                );
            }
        }
    }
}

#[test]
fn every_format_and_layout_reads_back_and_repeats_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let labels = Labels::from_pairs([("D_250".to_owned(), "Diabetes mellitus".to_owned())]);
    for name in ["binary", "count"] {
        let a = sampler(name, with_threads(9, 100, 1));
        let b = sampler(name, with_threads(9, 999, 2));
        for format in [
            Format::Parquet,
            Format::ArrowFile,
            Format::ArrowStream,
            Format::Csv,
        ] {
            for layout in [Layout::Wide, Layout::Long, Layout::List] {
                if format == Format::Csv && layout == Layout::List {
                    continue;
                }
                let labels = (layout == Layout::Long && name == "binary").then_some(&labels);
                let opts = ExportOptions {
                    format,
                    layout,
                    labels: labels.cloned(),
                    compression: Compression::Snappy,
                    row_group_size: 700,
                    ..ExportOptions::default()
                };
                let first = dir.path().join(format!("a.{}", format.extension()));
                let second = dir.path().join(format!("b.{}", format.extension()));
                write(&a, 10..2_010, &first, &opts);
                write(&b, 10..2_010, &second, &opts);
                let what = format!("{name} {format:?} {layout:?}");
                assert!(
                    std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(),
                    "{what}: batch size or threads changed the bytes"
                );
                let shaper = shaper(&a, layout, labels);
                let schema = shaper.schema();
                let read = read_any(&first, format, &schema);
                assert_eq!(read[0].schema().fields(), schema.fields(), "{what}");
                assert!(
                    columns(&schema, &read) == expected(&a, 10..2_010, &shaper),
                    "{what}: rows differ"
                );
            }
        }
    }
}

#[test]
fn long_and_list_layouts_hold_exactly_the_wide_cells() {
    let sampler = sampler("binary", options(4, 512));
    let wide = collect(&sampler, 0..1_000);
    let present: usize = wide
        .iter()
        .flat_map(|b| b.columns()[1..].iter().map(|c| c.as_boolean().true_count()))
        .sum();
    let long = expected(&sampler, 0..1_000, &shaper(&sampler, Layout::Long, None));
    assert_eq!(long[0].len(), present);
    assert!(present > 0);
    let codes = long[1].as_string::<i32>();
    assert!(
        codes
            .iter()
            .all(|c| sampler.features().iter().any(|f| Some(f.as_str()) == c))
    );
    let list = expected(&sampler, 0..1_000, &shaper(&sampler, Layout::List, None));
    assert_eq!(list[0].len(), 1_000);
    assert_eq!(list[1].as_list::<i32>().values().len(), present);
}

fn key_values(path: &Path) -> Vec<(String, String)> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let pairs = reader.metadata().file_metadata().key_value_metadata();
    pairs
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn metadata_names_model_seed_rows_and_version_and_safe_names_map_back() {
    let dir = tempfile::tempdir().unwrap();
    let sampler = sampler("binary", options(12, 256));
    let path = dir.path().join("safe.parquet");
    let opts = ExportOptions {
        spark_safe_names: true,
        request: Some((900, Shard { index: 1, count: 3 })),
        ..ExportOptions::default()
    };
    write(&sampler, 300..600, &path, &opts);
    let pairs = key_values(&path);
    assert_eq!(
        value(&pairs, "medgan.manifest_sha256"),
        Some(sampler.manifest_sha256())
    );
    assert_eq!(value(&pairs, "medgan.seed"), Some("12"));
    assert_eq!(value(&pairs, "medgan.row_start"), Some("300"));
    assert_eq!(value(&pairs, "medgan.row_end"), Some("600"));
    assert_eq!(value(&pairs, "medgan.shard"), Some("1/3"));
    assert_eq!(value(&pairs, "medgan.request_rows"), Some("900"));
    assert_eq!(
        value(&pairs, "medgan.sampler_version"),
        Some(env!("CARGO_PKG_VERSION"))
    );

    let mapping: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(value(&pairs, "medgan.column_codes").unwrap()).unwrap();
    let schema = read_any(&path, Format::Parquet, &sampler.schema())[0].schema();
    let names: Vec<&String> = schema.fields().iter().skip(1).map(|f| f.name()).collect();
    assert_eq!(names.len(), sampler.features().len());
    for (name, code) in names.iter().zip(sampler.features()) {
        assert!(name.starts_with("c_") && name.bytes().all(|b| !b.is_ascii_uppercase()));
        assert_eq!(mapping[name.as_str()], code.as_str());
    }

    let ipc = dir.path().join("meta.arrow");
    write(
        &sampler,
        300..600,
        &ipc,
        &ExportOptions {
            format: Format::ArrowFile,
            ..opts
        },
    );
    let reader = arrow_ipc::reader::FileReader::try_new(File::open(&ipc).unwrap(), None).unwrap();
    let metadata = reader.schema().metadata().clone();
    assert_eq!(metadata["medgan.seed"], "12");
    assert_eq!(
        metadata["medgan.manifest_sha256"],
        sampler.manifest_sha256()
    );
}

#[test]
fn a_partitioned_dataset_lists_its_parts_and_ends_with_success() {
    let dir = tempfile::tempdir().unwrap();
    let sampler = sampler("count", options(2, 300));
    let data = dir.path().join("dataset");
    let target = Target::Partitioned {
        dir: data.clone(),
        part_rows: 400,
    };
    let summary = export(
        &sampler,
        0..1_000,
        &target,
        &ExportOptions::default(),
        |_| {},
    )
    .unwrap_or_else(|error| panic!("{}", chain(&error)));
    assert_eq!(summary.parts.len(), 3);
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            SUCCESS_FILE,
            DATASET_MANIFEST,
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet"
        ]
    );
    assert!(std::fs::read(data.join(SUCCESS_FILE)).unwrap().is_empty());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join(DATASET_MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["patients"], 1_000);
    assert_eq!(manifest["seed"], 2);
    let mut batches = Vec::new();
    for (index, part) in manifest["parts"].as_array().unwrap().iter().enumerate() {
        let path = data.join(part["file"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(part["sha256"], hex::encode(Sha256::digest(&bytes)));
        assert_eq!(part["bytes"], bytes.len() as u64);
        assert_eq!(part["row_start"], 400 * index as u64);
        batches.extend(read_any(&path, Format::Parquet, &sampler.schema()));
    }
    let schema = sampler.schema();
    assert!(columns(&schema, &batches) == columns(&schema, &collect(&sampler, 0..1_000)));

    let error = export(&sampler, 0..10, &target, &ExportOptions::default(), |_| {}).unwrap_err();
    assert!(
        chain(&error).contains("the folder is not empty"),
        "{}",
        chain(&error)
    );
}

#[test]
fn options_that_do_not_fit_are_refused_before_sampling() {
    let sampler = sampler("binary", options(0, 10));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.csv");
    let list_csv = ExportOptions {
        format: Format::Csv,
        layout: Layout::List,
        ..ExportOptions::default()
    };
    let labelled_wide = ExportOptions {
        labels: Some(Labels::default()),
        ..ExportOptions::default()
    };
    for (opts, expected) in [
        (list_csv, "CSV cannot hold"),
        (labelled_wide, "long layout only"),
    ] {
        let error =
            export(&sampler, 0..10, &Target::File(path.clone()), &opts, |_| {}).unwrap_err();
        assert!(chain(&error).contains(expected), "{}", chain(&error));
        assert!(!path.exists());
    }
}
