//! Model bundle export: fold batch norm, write the ONNX graphs, check them, write the bundle.
//!
//! The export works on plain inputs (an [`Architecture`], a weight map under the stable names of
//! `docs/ARCHITECTURE.md` and a [`ReferenceForward`] that runs the trained networks), so it does
//! not depend on the training code.

mod bundle;
mod card;
pub mod fold;
pub mod onnx;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::Tensor;
use medgan_sample::bundle::manifest::{DataSummary, RunSummary};

use crate::model::Architecture;

pub use bundle::write_bundle;
pub use card::{CARD_SAMPLE_ROWS, CARD_SEED, CARD_TOP_CODES};

/// File name of the fused noise-to-records graph inside a bundle.
pub const SAMPLER_FILE: &str = "sampler.onnx";
/// File name of the noise-to-embedding graph inside a bundle.
pub const GENERATOR_FILE: &str = "generator.onnx";
/// File name of the embedding-to-records graph inside a bundle.
pub const DECODER_FILE: &str = "decoder.onnx";
/// File name of all weights (batch-norm statistics included) inside a bundle.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the resolved training configuration inside a bundle.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the human-readable model card inside a bundle.
pub const CARD_FILE: &str = "MODEL_CARD.md";

/// Name written into the manifest's `producer` and into every ONNX file.
pub const PRODUCER_NAME: &str = "medgan-train";
/// Version written next to [`PRODUCER_NAME`].
pub const PRODUCER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a bundle is made from, apart from the reference forward pass.
#[derive(Debug)]
pub struct ExportInput<'a> {
    pub architecture: &'a Architecture,
    /// All weights under their stable names, f32, batch-norm statistics after burn-in.
    pub weights: &'a BTreeMap<String, Tensor>,
    /// Code names in model output order.
    pub features: &'a [String],
    pub training_data: DataSummary,
    pub training_run: RunSummary,
    /// The resolved training configuration as TOML, copied verbatim into the bundle.
    pub config_toml: &'a str,
    pub card: CardInfo,
}

/// What the model card says beyond the manifest.
#[derive(Debug, Clone)]
pub struct CardInfo {
    /// The exact command line that trained the model.
    pub command: String,
    /// Wall time of the whole training run.
    pub training_time: Duration,
    /// Credit and licence text of the training data, copied verbatim.
    pub data_credit: String,
    /// Per code, in feature order: the share of training patients with the code (binary data)
    /// or its mean count per patient (count data).
    pub real_prevalence: Vec<f64>,
    /// Markdown appended to the card as it is, e.g. the headline of an evaluation report;
    /// empty for none.
    pub appendix: String,
}

/// The trained networks as the trainer runs them, the yardstick the exported graphs must match.
///
/// Both take and return f32 CPU tensors `[batch, width]`, in inference mode (batch norm on its
/// running statistics).
pub trait ReferenceForward {
    /// Noise `[batch, noise_dim]` to embedding `[batch, embedding_dim]`.
    fn generator(&self, noise: &Tensor) -> candle_core::Result<Tensor>;
    /// Embedding `[batch, embedding_dim]` to records `[batch, features]`.
    fn decoder(&self, embedding: &Tensor) -> candle_core::Result<Tensor>;
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("weight `{name}` is missing from the weight map")]
    MissingWeight { name: String },
    #[error("weight `{name}` has shape {found:?}, expected {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("weight `{name}` is {found:?}, expected f32")]
    WeightDtype {
        name: String,
        found: candle_core::DType,
    },
    #[error("architecture cannot be exported: {0}")]
    Architecture(String),
    #[error("export input is inconsistent: {0}")]
    Input(String),
    #[error("{context}: {source}")]
    Candle {
        context: String,
        source: candle_core::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise the weights to {WEIGHTS_FILE}: {source}")]
    Weights {
        source: safetensors::SafeTensorError,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} already exists; pass overwrite to replace it", path.display())]
    OutputExists { path: PathBuf },
    #[error("refusing to replace {}: it is not a model bundle (no manifest.json)", path.display())]
    NotABundle { path: PathBuf },
    #[error(
        "{graph} disagrees with the reference forward at batch {batch}: max abs difference \
         {max_abs_diff:e}, allowed {tolerance:e}"
    )]
    GraphMismatch {
        graph: String,
        batch: usize,
        max_abs_diff: f32,
        tolerance: f32,
    },
    #[error(
        "{graph} gives rows that depend on their batch: 5 rows alone and inside a batch of \
         {batch} differ by up to {max_abs_diff:e}"
    )]
    BatchDependence {
        graph: String,
        batch: usize,
        max_abs_diff: f32,
    },
}

impl ExportError {
    /// Wraps a candle error with what export was doing at the time.
    pub(crate) fn candle(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| ExportError::Candle { context, source }
    }

    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ExportError::Io { path, source }
    }
}

#[cfg(test)]
pub(crate) mod testing;
