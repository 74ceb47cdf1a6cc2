//! The shipped default model: embedded in `medgan-sample`, usable from a binary copied alone.

use std::process::Command;

use medgan_e2e::{binary, data_dir, python, run_ok, workspace_root};
use medgan_sample::bundle::Bundle;
use medgan_train::data::{InputArgs, load_input};
use medgan_train::publish::real_prevalence;

/// Reads the sampled file with pyarrow; prints row count, column names and column means.
const PYARROW_MEANS: &str = r#"
import json, sys
import pyarrow.compute as pc
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
means = {n: pc.mean(pc.cast(table.column(n), "int64")).as_py() for n in table.column_names[1:]}
print(json.dumps({"rows": table.num_rows, "columns": table.column_names, "means": means}))
"#;

#[test]
fn shipped_default_model_samples_from_a_lone_binary() {
    let default_name = std::fs::read_to_string(workspace_root().join("models/DEFAULT"))
        .expect("models/DEFAULT names the shipped default bundle");
    let bundle_dir = workspace_root().join("models").join(default_name.trim());
    let bundle = Bundle::open(&bundle_dir).unwrap();

    // The model's vocabulary is exactly the codes of the data it was trained on.
    let csv = data_dir().join("uci-diabetes-130-us/diabetic_data.csv");
    let mut args = InputArgs::for_input(&csv);
    args.patient_col = Some("patient_nbr".into());
    args.code_col = vec!["diag_1".into(), "diag_2".into(), "diag_3".into()];
    args.missing = vec!["?".into()];
    args.empty_patients = medgan_train::data::EmptyPatients::Drop;
    let (real, _) = load_input(&args).unwrap();
    assert_eq!(bundle.manifest().features, real.codes());

    // A copy of the sampler alone in an empty folder still has the model.
    let lonely = tempfile::tempdir().unwrap();
    let sampler = lonely.path().join("medgan-sample");
    std::fs::copy(binary("medgan-sample"), &sampler).unwrap();
    let parquet = lonely.path().join("patients.parquet");
    run_ok(
        Command::new(&sampler)
            .current_dir(lonely.path())
            .args(["-n", "5000", "--seed", "3", "-q", "-o"])
            .arg(&parquet),
    );
    let summary: serde_json::Value =
        serde_json::from_str(&python(PYARROW_MEANS, &[parquet.as_path()])).unwrap();
    assert_eq!(summary["rows"], 5000);
    assert_eq!(
        summary["columns"].as_array().unwrap().len(),
        1 + real.n_codes()
    );

    // The most frequent real codes are frequent in the synthetic patients too.
    let prevalence = real_prevalence(&real);
    let mut order: Vec<usize> = (0..real.n_codes()).collect();
    order.sort_by(|&a, &b| prevalence[b].total_cmp(&prevalence[a]));
    let synthetic = |col: usize| summary["means"][&real.codes()[col]].as_f64().unwrap();
    for &col in &order[..5] {
        let (code, real_p, synthetic_p) = (&real.codes()[col], prevalence[col], synthetic(col));
        assert!(
            synthetic_p > real_p / 3.0 && synthetic_p < real_p * 3.0,
            "code {code}: real prevalence {real_p:.3}, synthetic {synthetic_p:.3}"
        );
    }
}
