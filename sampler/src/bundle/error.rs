//! Why a model bundle could not be opened: one clause per layer, read as a sentence by a chain.

use thiserror::Error;

use super::manifest::MANIFEST_FILE;

/// A bundle that cannot be used. Its `source` chain names the file and what is wrong with it, so
/// `format!("{:#}", anyhow::Error::from(error))` reads as one sentence:
/// "cannot open model bundle models/x: manifest.json: missing field `features` at line 3 column 1".
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle at `location` exists in name but cannot be used.
    #[error("cannot open model bundle {location}")]
    Open {
        location: String,
        #[source]
        problem: BundleProblem,
    },
    /// `Bundle::embedded_default` in a build that embedded no model.
    #[error(
        "this build of medgan-sample has no embedded default model (models/DEFAULT was absent \
         when it was built); name a bundle folder instead (--model DIR)"
    )]
    NoEmbeddedDefault,
}

/// What is wrong inside a bundle, naming the file at fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleProblem {
    #[error("no such folder")]
    NoFolder,
    #[error("{file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{MANIFEST_FILE}: format version {found} is newer than this sampler reads \
         (it knows versions {known}); use a newer medgan-sample"
    )]
    NewerFormat { found: u32, known: String },
    /// The manifest parses but contradicts itself or the sampler's contract.
    #[error("{MANIFEST_FILE}: {0}")]
    Invalid(String),
    #[error("{file}: the file has {actual} bytes but the manifest lists {expected}")]
    Size {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{file}: sha256 is {actual} but the manifest lists {expected}")]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
}

impl BundleProblem {
    pub(crate) fn at(self, location: impl Into<String>) -> BundleError {
        BundleError::Open {
            location: location.into(),
            problem: self,
        }
    }
}
