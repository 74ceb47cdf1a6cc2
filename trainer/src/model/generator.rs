//! medGAN's residual generator: noise to an embedding the decoder turns into records.

use candle_core::{Device, Result, Tensor};
use medgan_sample::DataType;
use rand_chacha::ChaCha8Rng;

use super::layers::{Activation, BatchNorm, Dense};

/// `x + activation(bn(x W^T))`: a linear layer without bias, batch norm and a skip connection.
pub(crate) struct ResidualBlock {
    pub(crate) linear: Dense,
    pub(crate) bn: BatchNorm,
    activation: Activation,
}

impl ResidualBlock {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let hidden = self.bn.forward(&self.linear.forward(xs)?, train)?;
        self.activation.apply(&hidden)? + xs
    }
}

/// ReLU blocks, then a last block with tanh (binary) or ReLU (count), as medGAN.
pub(crate) struct Generator {
    pub(crate) blocks: Vec<ResidualBlock>,
}

impl Generator {
    pub(crate) fn new(
        noise_dim: usize,
        dims: &[usize],
        data_type: DataType,
        bn_eps: f64,
        bn_decay: f64,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let last = dims.len().saturating_sub(1);
        let mut width = noise_dim;
        let mut blocks = Vec::with_capacity(dims.len());
        for (i, &dim) in dims.iter().enumerate() {
            let activation = match (i == last, data_type) {
                (true, DataType::Binary) => Activation::Tanh,
                _ => Activation::Relu,
            };
            blocks.push(ResidualBlock {
                linear: Dense::new(width, dim, false, rng, device)?,
                bn: BatchNorm::new(dim, bn_eps, bn_decay, device)?,
                activation,
            });
            width = dim;
        }
        Ok(Self { blocks })
    }

    /// Noise `[batch, noise_dim]` to embeddings; `train` uses batch statistics and moves the
    /// running ones, otherwise the running statistics are used.
    pub(crate) fn forward(&self, noise: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = noise.clone();
        for block in &self.blocks {
            xs = block.forward(&xs, train)?;
        }
        Ok(xs)
    }
}
