//! Reading patient records into the sparse patient x code matrix medGAN trains on.
//!
//! Readers (`long`, `mimic`, `wide`) turn a file into (patient, code, count) cells that
//! `builder` assembles into a [`PatientMatrix`]; `args` is the command-line face of all of them.

pub mod args;
pub mod builder;
pub mod icd9;
pub mod long;
pub mod matrix;
pub mod mimic;
mod parquet_input;
#[cfg(test)]
mod real_data_tests;
pub mod summary;
mod table;
pub mod wide;

use std::path::{Path, PathBuf};

pub use args::{InputArgs, InputFormat, load_input};
pub use builder::{BuildOptions, EmptyPatients, MatrixBuilder};
pub use icd9::CodeMapping;
pub use matrix::PatientMatrix;
pub use summary::{ReadSummary, SkipReason};

/// Environment variable naming the folder of shared real data sets.
pub const DATA_DIR_ENV: &str = "MEDGAN_DATA_DIR";

/// The folder of shared real data sets: `$MEDGAN_DATA_DIR`, else `shared/data` beside the
/// workspace root (the workspace's sibling folder `shared`).
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

/// `relative` inside [`data_dir`], or a message naming the path and [`DATA_DIR_ENV`] if it is
/// not there (tests turn it into a failure, never a skip).
pub fn data_path(relative: &str) -> Result<PathBuf, String> {
    let path = data_dir().join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "shared data {} not found; set {DATA_DIR_ENV} to the folder holding {relative}",
            path.display()
        ))
    }
}

/// Why patient data could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a prepared patient matrix: {why}", path.display())]
    NotAMatrixFile { path: PathBuf, why: String },
    #[error("inconsistent patient matrix: {0}")]
    InvalidMatrix(String),
    #[error("{}: file is empty (0 bytes)", path.display())]
    EmptyFile { path: PathBuf },
    #[error("{}: header only, no data rows", path.display())]
    NoDataRows { path: PathBuf },
    #[error("{}: no column `{column}` (columns present: {})", path.display(), present.join(", "))]
    MissingColumn {
        path: PathBuf,
        column: String,
        present: Vec<String>,
    },
    #[error("{}: line {line}, column {column}: {why}", path.display())]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        why: String,
    },
    #[error("{}: line {line}, column {column}: invalid UTF-8", path.display())]
    InvalidUtf8 {
        path: PathBuf,
        line: u64,
        column: String,
    },
    #[error("{}: line {line}: {why}", path.display())]
    BadRecord {
        path: PathBuf,
        line: u64,
        why: String,
    },
    #[error("{}: {why}", path.display())]
    Parquet { path: PathBuf, why: String },
    #[error(
        "{}: no {table} table (looked for {table}.csv or {table}.csv.gz, any case)",
        dir.display()
    )]
    MissingTable { dir: PathBuf, table: String },
    #[error("count of code `{code}` for patient `{patient}` overflows 32 bits")]
    CountOverflow { patient: String, code: String },
    #[error("{0}")]
    BadOptions(String),
}

/// Shorthand for the results of this module.
pub type DataResult<T> = Result<T, DataError>;
