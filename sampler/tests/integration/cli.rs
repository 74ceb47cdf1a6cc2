//! The `medgan-sample` binary: success, its summary, and clear failures on bad input.

use std::path::Path;
use std::process::{Command, Output};

use medgan_sample::Bundle;

use crate::common::{copy_fixture, fixture};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medgan-sample"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_run_writes_the_file_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let model = fixture("count");
    let output = run(&[
        "--model",
        path(&model),
        "-n",
        "1234",
        "--seed",
        "5",
        "-o",
        path(&out),
        "--batch-size",
        "100",
        "--threads",
        "1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("Wrote 1234 rows x 11 columns"), "{text}");
    assert!(text.contains("rows/s"), "{text}");
    assert!(output.stdout.is_empty(), "data or chatter on stdout");
    let written = std::fs::read(&out).unwrap();
    assert!(!written.is_empty());

    let quiet = run(&[
        "--model",
        path(&model),
        "-n",
        "1234",
        "--seed",
        "5",
        "-o",
        path(&out),
        "-q",
    ]);
    assert!(
        quiet.status.success() && quiet.stderr.is_empty(),
        "{}",
        stderr(&quiet)
    );
    assert!(
        std::fs::read(&out).unwrap() == written,
        "batch size changed the file"
    );
}

fn fails_with(args: &[&str], expected: &str) {
    let output = run(args);
    assert!(!output.status.success(), "succeeded: {args:?}");
    let text = stderr(&output);
    assert!(text.contains(expected), "`{expected}` not in: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let out = path(&out);
    let model = fixture("binary");
    let model = path(&model);
    fails_with(
        &[
            "--model",
            "/nonexistent/bundle",
            "-n",
            "5",
            "--seed",
            "1",
            "-o",
            out,
        ],
        "cannot open model bundle /nonexistent/bundle: no such folder",
    );
    fails_with(
        &["--model", model, "-n", "five", "--seed", "1", "-o", out],
        "invalid value 'five'",
    );
    fails_with(
        &[
            "--model",
            model,
            "-n",
            "5",
            "--seed",
            "1",
            "-o",
            "/nonexistent/dir/x.parquet",
        ],
        "the folder /nonexistent/dir does not exist",
    );
    // A good request, spoiled by one extra option each time.
    let good = ["--model", model, "-n", "5", "--seed", "1", "-o", out];
    for (extra, expected) in [
        (["--threshold", "2"], "threshold 2 is not a probability"),
        (
            ["--batch-size", "0"],
            "invalid value '0' for '--batch-size <B>': must be at least 1",
        ),
        (
            ["--threads", "0"],
            "invalid value '0' for '--threads <K>': must be at least 1",
        ),
        (
            ["--row-group-size", "many"],
            "invalid value 'many' for '--row-group-size <R>': expected a whole number",
        ),
        (
            ["--ort-lib", "/nonexistent/libonnxruntime.so"],
            "library named by --ort-lib does not exist: /nonexistent/libonnxruntime.so",
        ),
    ] {
        fails_with(&[&good[..], &extra[..]].concat(), expected);
    }
    assert!(!Path::new(out).exists());

    let tampered = tempfile::tempdir().unwrap();
    copy_fixture("binary", tampered.path());
    std::fs::write(tampered.path().join("config.toml"), "seed = 1000000000\n").unwrap();
    let keep = dir.path().join("keep.parquet");
    std::fs::write(&keep, b"old").unwrap();
    fails_with(
        &[
            "--model",
            path(tampered.path()),
            "-n",
            "5",
            "--seed",
            "1",
            "-o",
            path(&keep),
        ],
        "config.toml: the file has",
    );
    assert_eq!(std::fs::read(&keep).unwrap(), b"old");
}

#[test]
fn without_model_the_embedded_default_is_used_or_its_absence_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("default.parquet");
    let output = run(&["-n", "10", "--seed", "1", "-o", path(&out)]);
    match Bundle::embedded_default_source() {
        Some(_) => {
            assert!(output.status.success(), "{}", stderr(&output));
            assert!(out.exists());
        }
        None => {
            assert!(!output.status.success());
            assert!(
                stderr(&output).contains("no embedded default model"),
                "{}",
                stderr(&output)
            );
        }
    }
}

#[test]
fn cuda_from_a_library_without_it_is_refused_and_writes_nothing() {
    let library = medgan_sample::locate_onnxruntime(None)
        .unwrap_or_else(|error| panic!("no ONNX Runtime for the tests: {error}"));
    let folder = library.parent().unwrap_or(Path::new("."));
    let has_cuda = folder.join("libonnxruntime_providers_cuda.so").exists();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu.parquet");
    let model = fixture("binary");
    let args = [
        "--model",
        path(&model),
        "-n",
        "50",
        "--seed",
        "1",
        "-o",
        path(&out),
        "--device",
        "cuda",
    ];
    if has_cuda {
        // A GPU build: either it runs, or (no GPU here) it says CUDA is what failed.
        let output = run(&args);
        assert!(
            output.status.success() || stderr(&output).contains("CUDA"),
            "{}",
            stderr(&output)
        );
        return;
    }
    fails_with(&args, "has no CUDA execution provider (a CPU-only build)");
    fails_with(&args, "--device cpu");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let output = run(&[&args[..8], &["--device", "cpu"][..]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.exists());
}
