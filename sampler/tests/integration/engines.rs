//! Other engines read what the sampler writes: pyarrow and DuckDB, through
//! `tests/engines/check_engines.py`, against figures computed here. Needs Python 3 with
//! `pyarrow` and `duckdb` (`pip install pyarrow duckdb`); without them the test fails and says
//! so. `$MEDGAN_PYTHON` names the interpreter (default `python3`).

use std::ops::Range;
use std::path::Path;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use medgan_sample::export::format::Format;
use medgan_sample::names::spark_safe_names;
use medgan_sample::{ExportOptions, Labels, Layout, Sampler, Target, export};
use serde_json::{Value, json};

use crate::common::{chain, collect, options, sampler};

/// Table rows, sum of patient ids over them, cells present, patients with the first code.
fn figures(sampler: &Sampler, rows: Range<u64>, layout: Layout) -> (u64, i64, u64, u64) {
    let (mut patients, mut patient_ids, mut cells, mut cell_ids, mut first) = (0, 0, 0, 0, 0);
    for batch in collect(sampler, rows) {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            patients += 1;
            patient_ids += id;
            for (code, column) in batch.columns()[1..].iter().enumerate() {
                let present = match column.as_boolean_opt() {
                    Some(flags) => flags.value(row),
                    None => {
                        column
                            .as_primitive::<arrow_array::types::Int32Type>()
                            .value(row)
                            != 0
                    }
                };
                if present {
                    cells += 1;
                    cell_ids += id;
                    first += u64::from(code == 0);
                }
            }
        }
    }
    match layout {
        Layout::Long => (cells, cell_ids, cells, first),
        _ => (patients, patient_ids, cells, first),
    }
}

struct Case {
    name: &'static str,
    model: &'static str,
    format: Format,
    layout: Layout,
    safe: bool,
    labels: bool,
    partitioned: bool,
}

#[test]
fn pyarrow_and_duckdb_read_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let case = |name, model, format, layout| Case {
        name,
        model,
        format,
        layout,
        safe: false,
        labels: false,
        partitioned: false,
    };
    let cases = [
        case("wide.parquet", "binary", Format::Parquet, Layout::Wide),
        Case {
            safe: true,
            ..case("safe.parquet", "binary", Format::Parquet, Layout::Wide)
        },
        Case {
            labels: true,
            ..case("long.parquet", "binary", Format::Parquet, Layout::Long)
        },
        case("count-long.parquet", "count", Format::Parquet, Layout::Long),
        case("list.parquet", "binary", Format::Parquet, Layout::List),
        Case {
            partitioned: true,
            ..case("dataset", "count", Format::Parquet, Layout::Wide)
        },
        case("wide.arrow", "binary", Format::ArrowFile, Layout::Wide),
        case("long.arrows", "binary", Format::ArrowStream, Layout::Long),
        case("wide.csv", "count", Format::Csv, Layout::Wide),
        case("long.csv", "binary", Format::Csv, Layout::Long),
    ];
    let rows = 100..1_100u64;
    let mut specs = Vec::new();
    for case in &cases {
        let sampler = sampler(case.model, options(77, 256));
        let first_code = sampler.features()[0].clone();
        let labels = Labels::from_pairs([(first_code.clone(), "the first, \"quoted\"".into())]);
        let opts = ExportOptions {
            format: case.format,
            layout: case.layout,
            labels: case.labels.then(|| labels.clone()),
            spark_safe_names: case.safe,
            row_group_size: 300,
            ..ExportOptions::default()
        };
        let path = dir.path().join(case.name);
        let target = if case.partitioned {
            Target::Partitioned {
                dir: path.clone(),
                part_rows: 300,
            }
        } else {
            Target::File(path.clone())
        };
        export(&sampler, rows.clone(), &target, &opts, |_| {})
            .unwrap_or_else(|error| panic!("{}: {}", case.name, chain(&error)));
        let shaper = medgan_sample::layout::Shaper::new(
            sampler.features(),
            sampler.data_type(),
            case.layout,
            opts.labels.as_ref(),
            case.safe,
        )
        .unwrap();
        let columns: Vec<String> = shaper
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let code_column = if case.safe {
            spark_safe_names(sampler.features())[0].clone()
        } else {
            first_code.clone()
        };
        let (table_rows, id_sum, cells, code_cells) = figures(&sampler, rows.clone(), case.layout);
        specs.push(json!({
            "name": case.name, "path": path, "format": case.format.name(),
            "layout": case.layout.name(), "partitioned": case.partitioned,
            "rows": table_rows, "id_sum": id_sum, "cells": cells, "columns": columns,
            "code": first_code, "code_column": code_column, "code_cells": code_cells,
            "label": "the first, \"quoted\"",
            "seed": (case.format.keeps_metadata() && !case.partitioned).then_some(77),
        }));
    }
    let spec_path = dir.path().join("specs.json");
    std::fs::write(&spec_path, Value::Array(specs).to_string()).unwrap();
    run_checker(&spec_path);
}

fn run_checker(specs: &Path) {
    let python = std::env::var("MEDGAN_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engines/check_engines.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(specs)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `{python}` (set $MEDGAN_PYTHON to a Python 3 with pyarrow and \
                 duckdb): {error}"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => {
            panic!("{stderr}the engine test needs `pip install pyarrow duckdb` for `{python}`")
        }
        _ => panic!("pyarrow or DuckDB disagree with the sampler:\n{stderr}"),
    }
}
