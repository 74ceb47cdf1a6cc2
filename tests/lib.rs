//! Helpers for the end-to-end tests: where the datasets and the built binaries are, running them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared datasets: `$MEDGAN_DATA_DIR`, or `../shared/data` beside the workspace.
///
/// Panics (failing the test, never skipping it) when the folder is missing, since a run without
/// the real data would prove nothing.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("MEDGAN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    assert!(
        dir.is_dir(),
        "the shared datasets are missing at {} (set MEDGAN_DATA_DIR to their folder)",
        dir.display()
    );
    dir
}

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a binary built in the same profile as the running test.
///
/// Test executables live in `target/<profile>/deps/`; the binaries one folder up.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable sits in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run the tests with `cargo test --release --workspace`",
        path.display()
    );
    path
}

/// Runs a command and returns its output, failing the test with both streams if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the command can be started");
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a command that must fail, and returns its standard error.
pub fn run_failing(command: &mut Command) -> String {
    let output = command.output().expect("the command can be started");
    assert!(
        !output.status.success(),
        "{command:?} succeeded but should have failed\nstdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a Python snippet (pyarrow, the independent reader) and returns its standard output.
pub fn python(script: &str, args: &[&Path]) -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = run_ok(Command::new(python).arg("-c").arg(script).args(args));
    String::from_utf8(output.stdout).expect("python prints UTF-8")
}
