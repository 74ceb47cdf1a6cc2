//! The binary's export options: shards, row ranges, stdout, layouts, labels and refusals.

use std::path::Path;
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use medgan_sample::Format;

use crate::common::{fixture, open, options, sampler};
use crate::export::{columns, read_any};

fn run(args: &[&str]) -> Output {
    let model = fixture("binary");
    Command::new(env!("CARGO_BIN_EXE_medgan-sample"))
        .args(["--model", model.to_str().unwrap(), "--seed", "3", "-q"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Vec<u8> {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    output.stdout
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn shards_and_row_ranges_from_the_command_line_tile_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single.parquet");
    ok(&["-n", "1000", "-o", path(&single)]);
    let schema = sampler("binary", options(3, 10)).schema();
    let reference = columns(&schema, &read_any(&single, Format::Parquet, &schema));
    let mut shards = Vec::new();
    for (index, batch_size) in ["7", "300", "4096"].iter().enumerate() {
        let out = dir.path().join(format!("shard-{index}.parquet"));
        let shard = format!("{index}/3");
        ok(&[
            "-n",
            "1000",
            "--shard",
            &shard,
            "--batch-size",
            batch_size,
            "-o",
            path(&out),
        ]);
        shards.extend(read_any(&out, Format::Parquet, &schema));
    }
    assert!(
        columns(&schema, &shards) == reference,
        "3 shards differ from one run"
    );

    let range = dir.path().join("range.parquet");
    ok(&["--rows", "333..666", "-o", path(&range)]);
    let middle = read_any(&range, Format::Parquet, &schema);
    let ids = columns(&schema, &middle)[0].clone();
    let ids = ids.as_primitive::<arrow_array::types::Int64Type>();
    assert_eq!(ids.values().to_vec(), (333..666).collect::<Vec<i64>>());
    let expected: Vec<_> = reference.iter().map(|c| c.slice(333, 333)).collect();
    assert!(
        columns(&schema, &middle) == expected,
        "--rows 333..666 differs"
    );
}

#[test]
fn stdout_gets_the_same_bytes_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    for (format, extension) in [
        ("csv", "csv"),
        ("arrow-stream", "arrows"),
        ("parquet", "parquet"),
    ] {
        let file = dir.path().join(format!("out.{extension}"));
        ok(&["-n", "777", "--layout", "long", "-o", path(&file)]);
        let piped = ok(&[
            "-n", "777", "--layout", "long", "-o", "-", "--format", format,
        ]);
        assert!(
            piped == std::fs::read(&file).unwrap(),
            "{format}: stdout differs from the file"
        );
    }
}

#[test]
fn labels_join_the_long_layout() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        "code,label\nD_250,Diabetes mellitus\nD_401,Hypertension\n",
    )
    .unwrap();
    let out = dir.path().join("long.csv");
    ok(&[
        "-n",
        "200",
        "--layout",
        "long",
        "--labels",
        path(&labels),
        "-o",
        path(&out),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("patient_id,code,label"));
    let mut seen = 0;
    for line in lines {
        let fields: Vec<&str> = line.splitn(3, ',').collect();
        match fields[1] {
            "D_250" => assert_eq!(fields[2], "Diabetes mellitus"),
            "D_401" => assert_eq!(fields[2], "Hypertension"),
            other => {
                assert!(
                    open("binary")
                        .manifest()
                        .features
                        .iter()
                        .any(|f| f == other)
                );
                assert_eq!(fields[2], "", "{line}");
            }
        }
        seen += 1;
    }
    assert!(seen > 200, "only {seen} long rows for 200 patients");
}

#[test]
fn export_options_that_cannot_work_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    let out = path(&out);
    let cases: [(&[&str], &str); 7] = [
        (&["-n", "5", "-o", "-"], "-o - (stdout) needs --format"),
        (
            &["-n", "5", "-o", out, "--compression", "gzip"],
            "`gzip` is not a compression",
        ),
        (
            &["-n", "5", "-o", "x.csv", "--compression", "snappy"],
            "applies to Parquet only",
        ),
        (
            &["-n", "5", "--shard", "3/3", "-o", out],
            "K must be below N",
        ),
        (&["--rows", "9..3", "-o", out], "ends before it starts"),
        (&["-o", out], "--num-rows"),
        (
            &["-n", "5", "--layout", "list", "-o", "x.csv"],
            "CSV cannot hold",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: `{expected}` not in {stderr}"
        );
    }
    assert!(!Path::new(out).exists());
}
