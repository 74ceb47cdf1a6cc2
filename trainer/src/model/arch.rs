//! The shape of a medGAN model: layer widths and activations, shared by training and export.

use medgan_sample::DataType;
use serde::{Deserialize, Serialize};

/// Layer widths and the data type: everything needed to rebuild the networks from their weights.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub data_type: DataType,
    /// Number of codes: the width of a record.
    pub n_features: usize,
    /// Width of the generator's standard-normal noise.
    pub noise_dim: usize,
    /// Encoder layer widths; the last is the embedding the generator must produce.
    pub embedding_dims: Vec<usize>,
    /// Generator block widths; every block is residual, so each equals `noise_dim` and the last
    /// equals the embedding width.
    pub generator_dims: Vec<usize>,
    /// Discriminator hidden widths, before the single sigmoid output.
    pub discriminator_dims: Vec<usize>,
    /// Batch-norm epsilon added to the variance.
    pub batch_norm_eps: f64,
}

impl Architecture {
    /// Width of the latent space the generator maps into and the decoder reads.
    pub fn embedding_dim(&self) -> usize {
        *self.embedding_dims.last().unwrap_or(&self.n_features)
    }
}
