//! The `manifest.json` of a model bundle: what the trainer writes and the sampler checks.

use serde::{Deserialize, Serialize};

/// The bundle format this build writes. Readers accept this version and older ones.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside a bundle folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Name of the noise input of the generator and of the fused sampling graph.
pub const NOISE_INPUT: &str = "noise";
/// Name of the generator's output and of the decoder's input.
pub const EMBEDDING_TENSOR: &str = "embedding";
/// Name of the decoder's output and of the fused sampling graph's output.
pub const RECORDS_OUTPUT: &str = "records";
/// Name of the symbolic batch dimension in every graph.
pub const BATCH_DIM: &str = "batch";

/// Whether records are presence flags or counts; decides the output activation and column type.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// 0/1 per code; the model outputs probabilities.
    Binary,
    /// Non-negative counts per code; the model outputs expected counts.
    Count,
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataType::Binary => "binary",
            DataType::Count => "count",
        })
    }
}

/// The whole manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub producer: Producer,
    pub data_type: DataType,
    /// Width of the standard-normal noise the generator takes.
    pub noise_dim: usize,
    /// Code names in model output order: column `j` of every record is `features[j]`.
    pub features: Vec<String>,
    pub graphs: Graphs,
    /// Every other file of the bundle, with its size and checksum.
    pub files: Vec<FileEntry>,
    pub training_data: DataSummary,
    pub training_run: RunSummary,
}

/// The program that wrote the bundle.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    pub name: String,
    pub version: String,
}

/// The three ONNX graphs of a bundle.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Graphs {
    /// Noise `[batch, noise_dim]` to records `[batch, features]`: generator and decoder fused.
    pub sampler: OnnxGraph,
    /// Noise to embedding `[batch, embedding_dim]`.
    pub generator: OnnxGraph,
    /// Embedding to records.
    pub decoder: OnnxGraph,
}

/// One ONNX file and its single input and output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnnxGraph {
    /// Path relative to the bundle folder.
    pub file: String,
    pub opset: i64,
    pub input: TensorSpec,
    pub output: TensorSpec,
}

/// Name and shape of a graph input or output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<Dim>,
}

/// A dimension: fixed, or symbolic by name (the batch).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

/// Size and sha256 (lower-case hex) of one bundle file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the bundle folder.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What the model was trained on.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSummary {
    /// Patients the GAN was trained on (after the validation split).
    pub patients: usize,
    pub codes: usize,
    /// Share of non-zero cells in the training matrix.
    pub density: f64,
    /// Where the data came from, as the user named it.
    pub source: String,
}

/// How the model was trained.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSummary {
    pub autoencoder_epochs: usize,
    pub gan_epochs: usize,
    pub seed: u64,
    /// The resolved training configuration, as saved with the run.
    pub config: serde_json::Value,
}

impl Manifest {
    /// The file entry for `path`, if the manifest lists it.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|entry| entry.path == path)
    }
}
