//! Spark fans one request out over tasks, each running the binary on its shard, and reads the
//! parts back as exactly one run's rows: `tests/engines/spark_fanout.py` on a local Spark, with
//! the shipped ICD-9 model (codes such as `250.01`, hence `--spark-safe-names`). Needs Java 17+
//! and `pyspark` for `$MEDGAN_PYTHON` (default `python3`); without them the test fails and says
//! to run `./scripts/setup.sh`.

use std::path::Path;
use std::process::Command;

const ROWS: u64 = 20_000;
const SHARDS: u64 = 4;

#[test]
fn spark_tasks_write_the_shards_of_one_run() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = workspace.join("models/uci-diabetes-icd9");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engines/spark_fanout.py");
    let dir = tempfile::tempdir().unwrap();
    let python = std::env::var("MEDGAN_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_medgan-sample"))
        .arg(dir.path())
        .args(["--rows", &ROWS.to_string(), "--shards", &SHARDS.to_string()])
        .arg("--model")
        .arg(&model)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `{python}` (run ./scripts/setup.sh, or set $MEDGAN_PYTHON): {error}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "{stderr}the Spark test needs Java 17+, pyspark and pyarrow: run ./scripts/setup.sh"
        ),
        _ => panic!("the Spark fan-out check failed:\n{stdout}{stderr}"),
    }
    let codes = medgan_sample::Bundle::open(&model)
        .unwrap()
        .manifest()
        .features
        .len();
    print!("{stdout}");
    let summary = format!("{SHARDS} tasks wrote {ROWS} rows x {} columns", codes + 1);
    assert!(stdout.contains(&summary), "{stdout}");
    assert!(stdout.contains("the dataset equals one run"), "{stdout}");
    let parts = std::fs::read_dir(dir.path().join("dataset"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".parquet")
        })
        .count();
    assert_eq!(parts as u64, SHARDS);
}
