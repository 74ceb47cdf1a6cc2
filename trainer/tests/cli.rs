//! The `medgan-train` binary as a user meets it: its help and its refusals.
//!
//! Being an integration test of this package also makes `cargo test` build the binary, which
//! the end-to-end tests in `tests/` run.

use std::process::Command;

fn medgan_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medgan-train"))
}

#[test]
fn help_lists_every_command() {
    let output = medgan_train().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["prepare", "train", "export", "evaluate"] {
        assert!(
            help.contains(command),
            "--help does not mention `{command}`:\n{help}"
        );
    }
}

#[test]
fn prepare_refuses_an_output_it_could_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("codes.csv");
    std::fs::write(&input, "patient,code\np1,250\n").unwrap();
    let output = dir.path().join("prepared.bin");
    let result = medgan_train()
        .args(["prepare", "--input"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("prepared.bin") && stderr.contains(".medgan.safetensors"),
        "{stderr}"
    );
    assert!(!output.exists());
}

#[test]
fn train_refuses_a_run_folder_holding_another_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("codes.csv");
    std::fs::write(&input, "patient,code\np1,250\np2,401\n").unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::write(run_dir.join("config.toml"), "seed = 1\n").unwrap();
    let result = medgan_train()
        .args(["train", "--input"])
        .arg(&input)
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("already holds a training run"), "{stderr}");
}

#[test]
fn train_refuses_a_run_over_the_memory_limit_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("codes.csv");
    std::fs::write(
        &input,
        "patient,code\np1,250\np2,401\np3,250\np4,401\np5,250\n",
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let result = medgan_train()
        .args(["train", "--max-memory", "1MiB", "--input"])
        .arg(&input)
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("training needs about")
            && stderr.contains("but the limit is 1.0 MiB (--max-memory)"),
        "{stderr}"
    );
    assert!(!run_dir.join("config.toml").exists());
}

#[test]
fn train_refuses_a_memory_size_it_cannot_read() {
    let result = medgan_train()
        .args(["train", "--input", "x.csv", "--max-memory", "2 parsecs"])
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("--max-memory") && stderr.contains("unknown unit"),
        "{stderr}"
    );
}
