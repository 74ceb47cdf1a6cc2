//! Reading patient records into the sparse patient x code matrix medGAN trains on.

pub mod matrix;

use std::path::PathBuf;

pub use matrix::PatientMatrix;

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
}
