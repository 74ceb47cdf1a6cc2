//! End to end on real data: prepare the MIMIC-III demo, train briefly, export, sample, read back.

use std::path::Path;
use std::process::Command;

use medgan_e2e::{binary, data_dir, python, run_failing, run_ok};
use medgan_sample::bundle::Bundle;
use medgan_train::data::PatientMatrix;

/// Reads a Parquet file with pyarrow and prints its shape, column types and column means as JSON.
const PYARROW_SUMMARY: &str = r#"
import json, sys
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
cols = table.column_names
means = {}
for name in cols[1:]:
    col = table.column(name).to_pylist()
    means[name] = sum(int(v) for v in col) / max(len(col), 1)
print(json.dumps({
    "rows": table.num_rows,
    "columns": cols,
    "types": sorted({str(f.type) for f in table.schema}),
    "nulls": sum(table.column(c).null_count for c in cols),
    "ids": table.column(cols[0]).to_pylist()[:3],
    "means": means,
}))
"#;

fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let vx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let vy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

#[test]
fn mimic_demo_end_to_end() {
    let mimic = data_dir().join("mimic-iii-demo");
    let work = tempfile::tempdir().unwrap();
    let prepared = work.path().join("mimic.medgan.safetensors");
    let run_dir = work.path().join("run");
    let bundle_dir = work.path().join("bundle");
    let parquet = work.path().join("synthetic.parquet");

    // 1. prepare: the demo's documented shape (SOURCE.md: 100 patients x 581 full ICD-9 codes).
    let out = run_ok(
        Command::new(binary("medgan-train"))
            .args(["prepare", "--input"])
            .arg(&mimic)
            .arg("-o")
            .arg(&prepared),
    );
    let matrix = PatientMatrix::load(&prepared).unwrap();
    assert_eq!((matrix.n_patients(), matrix.n_codes()), (100, 581));
    assert!(
        (matrix.density() - 0.0256).abs() < 5e-4,
        "density {}",
        matrix.density()
    );
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        printed.contains("100") && printed.contains("581"),
        "summary: {printed}"
    );

    // 2. train briefly (100 patients train in seconds) and export the bundle.
    run_ok(
        Command::new(binary("medgan-train"))
            .args(["train", "--input"])
            .arg(&prepared)
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--bundle")
            .arg(&bundle_dir)
            .args([
                "--seed",
                "5",
                "--ae-epochs",
                "200",
                "--gan-epochs",
                "300",
                "--quiet",
            ]),
    );
    let bundle = Bundle::open(&bundle_dir).unwrap();
    // The quality curve: one row per 10 GAN epochs, dimension-wise r improving over training.
    let curve = std::fs::read_to_string(run_dir.join("quality.csv")).unwrap();
    let rows: Vec<Vec<&str>> = curve
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 30, "quality.csv:\n{curve}");
    let r_at = |row: &Vec<&str>| row[1].parse::<f64>().unwrap();
    assert!(r_at(&rows[29]) > r_at(&rows[0]), "quality.csv:\n{curve}");
    assert_eq!(bundle.manifest().features, matrix.codes());

    // 3. sample 2,000 synthetic patients.
    run_ok(
        Command::new(binary("medgan-sample"))
            .arg("--model")
            .arg(&bundle_dir)
            .args(["-n", "2000", "--seed", "11", "-o"])
            .arg(&parquet),
    );

    // 4. read back with pyarrow, an independent reader.
    let summary: serde_json::Value =
        serde_json::from_str(&python(PYARROW_SUMMARY, &[parquet.as_path()])).unwrap();
    assert_eq!(summary["rows"], 2000);
    let columns: Vec<String> = serde_json::from_value(summary["columns"].clone()).unwrap();
    assert_eq!(columns[0], "patient_id");
    assert_eq!(&columns[1..], matrix.codes());
    assert_eq!(summary["types"], serde_json::json!(["bool", "int64"]));
    assert_eq!(summary["nulls"], 0);
    assert_eq!(summary["ids"], serde_json::json!([0, 1, 2]));

    // Prevalences: the synthetic ones follow the real training patients' ones.
    let train = PatientMatrix::load(&run_dir.join("train.medgan.safetensors")).unwrap();
    let real: Vec<f64> = train
        .patients_per_code()
        .iter()
        .map(|&c| c as f64 / train.n_patients() as f64)
        .collect();
    let synthetic: Vec<f64> = train
        .codes()
        .iter()
        .map(|code| summary["means"][code].as_f64().unwrap())
        .collect();
    let r = pearson(&real, &synthetic);
    let mean_abs: f64 = real
        .iter()
        .zip(&synthetic)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / real.len() as f64;
    assert!(
        r > 0.6,
        "prevalence correlation {r:.3} (mean abs difference {mean_abs:.4})"
    );
    assert!(
        mean_abs < 0.03,
        "mean abs prevalence difference {mean_abs:.4} (r {r:.3})"
    );
}

#[test]
fn bad_input_is_refused_with_the_file_named() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let output = work.path().join("never.medgan.safetensors");
    let stderr = run_failing(
        Command::new(binary("medgan-train"))
            .args(["prepare", "--input"])
            .arg(&empty)
            .args(["--patient-col", "p", "--code-col", "c", "-o"])
            .arg(&output),
    );
    assert!(stderr.contains("empty.csv"), "stderr: {stderr}");
    assert!(
        !Path::new(&output).exists(),
        "a rejected input must write nothing"
    );
}

/// Reads a count-model Parquet with pyarrow: column types, the smallest value, mean per code.
const PYARROW_COUNTS: &str = r#"
import json, sys
import pyarrow.compute as pc
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
codes = table.column_names[1:]
print(json.dumps({
    "rows": table.num_rows,
    "types": sorted({str(table.schema.field(c).type) for c in codes}),
    "min": min(pc.min(table.column(c)).as_py() for c in codes),
    "total": sum(pc.sum(table.column(c)).as_py() for c in codes) / table.num_rows,
}))
"#;

#[test]
fn synthea_counts_end_to_end() {
    let conditions = data_dir().join("synthea-1000/conditions.csv");
    let work = tempfile::tempdir().unwrap();
    let (run_dir, bundle_dir) = (work.path().join("run"), work.path().join("bundle"));
    let parquet = work.path().join("counts.parquet");
    run_ok(
        Command::new(binary("medgan-train"))
            .args(["train", "--input"])
            .arg(&conditions)
            .args(["--data-type", "count", "--run-dir"])
            .arg(&run_dir)
            .arg("--bundle")
            .arg(&bundle_dir)
            .args([
                "--seed",
                "3",
                "--ae-epochs",
                "30",
                "--gan-epochs",
                "20",
                "--quiet",
            ]),
    );
    let bundle = Bundle::open(&bundle_dir).unwrap();
    assert_eq!(bundle.manifest().data_type, medgan_sample::DataType::Count);
    run_ok(
        Command::new(binary("medgan-sample"))
            .arg("--model")
            .arg(&bundle_dir)
            .args(["-n", "999", "--seed", "4", "-q", "-o"])
            .arg(&parquet),
    );
    let summary: serde_json::Value =
        serde_json::from_str(&python(PYARROW_COUNTS, &[parquet.as_path()])).unwrap();
    assert_eq!(summary["rows"], 999);
    assert_eq!(summary["types"], serde_json::json!(["int32"]));
    assert!(summary["min"].as_i64().unwrap() >= 0, "{summary}");
    assert!(
        summary["total"].as_f64().unwrap() > 0.0,
        "all-zero output: {summary}"
    );
}
