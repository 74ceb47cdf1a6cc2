//! medGAN's autoencoder: records to a dense embedding and back, and its reconstruction loss.

use candle_core::{Device, Result, Tensor};
use medgan_sample::DataType;
use rand_chacha::ChaCha8Rng;

use super::activation::linear_sigmoid;
use super::cross_entropy::sigmoid_cross_entropy;
use super::layers::{Activation, Dense, add_rows};
use super::minibatch::sparse_linear;
use super::sparse::SparseRecords;

/// Added inside every logarithm, as medGAN does, so that saturated outputs stay finite.
pub(crate) const LOG_EPS: f64 = 1e-12;

/// Encoder `n_features -> embedding_dims...`, decoder mirroring it back to `n_features`.
pub(crate) struct Autoencoder {
    pub(crate) encoder: Vec<Dense>,
    pub(crate) decoder: Vec<Dense>,
    /// tanh for binary data, ReLU for counts (medGAN's `aeActivation`).
    hidden: Activation,
    /// Sigmoid (probabilities) for binary data, ReLU (counts) for counts.
    output: Activation,
    data_type: DataType,
}

impl Autoencoder {
    pub(crate) fn new(
        n_features: usize,
        embedding_dims: &[usize],
        data_type: DataType,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let mut encoder = Vec::with_capacity(embedding_dims.len());
        let mut width = n_features;
        for &dim in embedding_dims {
            encoder.push(Dense::new(width, dim, true, rng, device)?);
            width = dim;
        }
        // Mirror: hidden widths in reverse (without the embedding itself), then the records.
        let mut decoder = Vec::with_capacity(embedding_dims.len());
        let hidden = embedding_dims[..embedding_dims.len().saturating_sub(1)]
            .iter()
            .rev();
        for &dim in hidden.chain(std::iter::once(&n_features)) {
            decoder.push(Dense::new(width, dim, true, rng, device)?);
            width = dim;
        }
        let (hidden, output) = match data_type {
            DataType::Binary => (Activation::Tanh, Activation::Sigmoid),
            DataType::Count => (Activation::Relu, Activation::Relu),
        };
        Ok(Self {
            encoder,
            decoder,
            hidden,
            output,
            data_type,
        })
    }

    /// Records `[batch, n_features]` to embeddings; every encoder layer is activated.
    pub(crate) fn encode(&self, records: &Tensor) -> Result<Tensor> {
        let mut xs = records.clone();
        for layer in &self.encoder {
            xs = self.hidden.apply(&layer.forward(&xs)?)?;
        }
        Ok(xs)
    }

    /// [`Self::encode`] for a sparse batch: the first layer gathers weight columns.
    pub(crate) fn encode_sparse(&self, records: &SparseRecords) -> Result<Tensor> {
        let first = &self.encoder[0];
        let mut xs = match &first.bias {
            Some(bias) if first.weight.device().is_cpu() => {
                sparse_linear(records.cells(), &first.weight, bias, false)?
            }
            Some(bias) => add_rows(&records.matmul_t(first.weight.as_tensor())?, bias)?,
            None => records.matmul_t(first.weight.as_tensor())?,
        };
        xs = self.hidden.apply(&xs)?;
        for layer in &self.encoder[1..] {
            xs = self.hidden.apply(&layer.forward(&xs)?)?;
        }
        Ok(xs)
    }

    /// Embeddings to probabilities (binary) or non-negative counts.
    pub(crate) fn decode(&self, embedding: &Tensor) -> Result<Tensor> {
        let mut xs = embedding.clone();
        let last = self.decoder.len() - 1;
        for (i, layer) in self.decoder.iter().enumerate() {
            xs = match (i == last, self.output, &layer.bias) {
                (true, Activation::Sigmoid, Some(bias)) => {
                    linear_sigmoid(&xs, &layer.weight, bias)?
                }
                (true, output, _) => output.apply(&layer.forward(&xs)?)?,
                (false, ..) => self.hidden.apply(&layer.forward(&xs)?)?,
            };
        }
        Ok(xs)
    }

    /// Per-record reconstruction loss `[batch]`: binary cross-entropy summed over codes, or the
    /// mean squared error over codes for counts.
    pub(crate) fn reconstruction_loss_per_row(&self, records: &Tensor) -> Result<Tensor> {
        let reconstructed = self.decode(&self.encode(records)?)?;
        per_row_loss(self.data_type, records, &reconstructed)
    }

    /// [`Self::reconstruction_loss_per_row`] with the encoder reading the sparse form of the
    /// same batch (`dense` is `records` densified, the loss target).
    pub(crate) fn reconstruction_loss_per_row_sparse(
        &self,
        records: &SparseRecords,
        dense: &Tensor,
    ) -> Result<Tensor> {
        let embedding = self.encode_sparse(records)?;
        match self.data_type {
            // The output sigmoid and the loss in one pass (see `cross_entropy`).
            DataType::Binary => sigmoid_cross_entropy(&self.decode_logits(&embedding)?, dense),
            DataType::Count => per_row_loss(self.data_type, dense, &self.decode(&embedding)?),
        }
    }

    /// [`Self::decode`] without the last layer's activation.
    fn decode_logits(&self, embedding: &Tensor) -> Result<Tensor> {
        let mut xs = embedding.clone();
        let last = self.decoder.len() - 1;
        for (i, layer) in self.decoder.iter().enumerate() {
            xs = layer.forward(&xs)?;
            if i < last {
                xs = self.hidden.apply(&xs)?;
            }
        }
        Ok(xs)
    }

    /// Batch loss as medGAN: the mean over records of [`Self::reconstruction_loss_per_row`].
    pub(crate) fn reconstruction_loss(&self, records: &Tensor) -> Result<Tensor> {
        self.reconstruction_loss_per_row(records)?.mean_all()
    }
}

/// Reconstruction loss of each row of `target` against `output`, as medGAN writes it.
///
/// medGAN's count loss is `reduce_mean((x - x')^2)` over every cell; the mean over rows of the
/// per-row mean over codes equals it exactly.
pub(crate) fn per_row_loss(
    data_type: DataType,
    target: &Tensor,
    output: &Tensor,
) -> Result<Tensor> {
    match data_type {
        DataType::Binary => {
            let log_p = (output + LOG_EPS)?.log()?;
            let log_not_p = (output.affine(-1.0, 1.0)? + LOG_EPS)?.log()?;
            let not_target = target.affine(-1.0, 1.0)?;
            let log_likelihood = ((target * log_p)? + (not_target * log_not_p)?)?;
            log_likelihood.sum(1)?.neg()
        }
        DataType::Count => (target - output)?.sqr()?.mean(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_loss_matches_hand_computation() {
        let device = Device::Cpu;
        let target = Tensor::new(&[[1f32, 0.0], [0.0, 0.0]], &device).unwrap();
        let output = Tensor::new(&[[0.8f32, 0.3], [0.5, 0.1]], &device).unwrap();
        let rows = per_row_loss(DataType::Binary, &target, &output)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let row0 = -(0.8f32.ln() + 0.7f32.ln());
        let row1 = -(0.5f32.ln() + 0.9f32.ln());
        assert!((rows[0] - row0).abs() < 1e-5, "{rows:?}");
        assert!((rows[1] - row1).abs() < 1e-5, "{rows:?}");
        // A saturated output stays finite thanks to the epsilon.
        let saturated = Tensor::new(&[[0f32, 1.0]], &device).unwrap();
        let flipped = Tensor::new(&[[1f32, 0.0]], &device).unwrap();
        let loss = per_row_loss(DataType::Binary, &flipped, &saturated)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(loss.is_finite() && loss > 50.0, "{loss}");
    }

    #[test]
    fn sparse_encoder_matches_dense_loss_and_gradients() {
        use rand::SeedableRng;
        let device = Device::Cpu;
        for data_type in [DataType::Binary, DataType::Count] {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let ae = Autoencoder::new(7, &[5, 3], data_type, &mut rng, &device).unwrap();
            let counts: &[u32] = match data_type {
                DataType::Binary => &[1, 1, 1],
                DataType::Count => &[2, 1, 3],
            };
            let rows: [(&[u32], &[u32]); 3] =
                [(&[0, 4, 6], counts), (&[], &[]), (&[2], &counts[..1])];
            let sparse = SparseRecords::new(rows, 7, &device).unwrap();
            let dense = sparse.to_dense().unwrap();
            let plain = ae.reconstruction_loss_per_row(&dense).unwrap();
            let fast = ae
                .reconstruction_loss_per_row_sparse(&sparse, &dense)
                .unwrap();
            let (p, f) = (
                plain.to_vec1::<f32>().unwrap(),
                fast.to_vec1::<f32>().unwrap(),
            );
            for (a, b) in p.iter().zip(&f) {
                assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{p:?} vs {f:?}");
            }
            let plain = plain.mean_all().unwrap().backward().unwrap();
            let fast = fast.mean_all().unwrap().backward().unwrap();
            for layer in ae.encoder.iter().chain(&ae.decoder) {
                let a = plain.get(&layer.weight).unwrap().flatten_all().unwrap();
                let b = fast.get(&layer.weight).unwrap().flatten_all().unwrap();
                let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-5, "{data_type:?}: {a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn count_loss_is_mean_squared_error() {
        let device = Device::Cpu;
        let target = Tensor::new(&[[2f32, 0.0, 1.0]], &device).unwrap();
        let output = Tensor::new(&[[1f32, 0.5, 1.0]], &device).unwrap();
        let loss = per_row_loss(DataType::Count, &target, &output)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!((loss - 1.25 / 3.0).abs() < 1e-6);
    }
}
