//! medGAN's discriminator with minibatch averaging: is a record real, seen beside its batch?

use candle_core::{Device, Result, Tensor};
use rand_chacha::ChaCha8Rng;

use super::layers::{Activation, Dense};

/// ReLU layers on `[x, mean(x over the batch)]`, then one sigmoid unit.
pub(crate) struct Discriminator {
    pub(crate) layers: Vec<Dense>,
}

impl Discriminator {
    pub(crate) fn new(
        n_features: usize,
        hidden_dims: &[usize],
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let mut width = 2 * n_features;
        let mut layers = Vec::with_capacity(hidden_dims.len() + 1);
        for &dim in hidden_dims.iter().chain(std::iter::once(&1)) {
            layers.push(Dense::new(width, dim, true, rng, device)?);
            width = dim;
        }
        Ok(Self { layers })
    }

    /// Probability `[batch]` that each record is real.
    ///
    /// The first layer's weight `[h, 2F]` is applied as two halves, `x W_x^T + mean(x) W_m^T`,
    /// which equals multiplying the concatenation but does the batch-mean half once per batch
    /// instead of once per row.
    pub(crate) fn forward(&self, records: &Tensor) -> Result<Tensor> {
        let n_features = records.dim(1)?;
        let batch = records.dim(0)?;
        if batch < 2 {
            return Err(candle_core::Error::Msg(format!(
                "the discriminator's minibatch mean needs at least 2 rows, got {batch}"
            )));
        }
        let first = &self.layers[0];
        let weight = first.weight.as_tensor();
        let own = records.matmul(&weight.narrow(1, 0, n_features)?.t()?)?;
        let mean = records.mean_keepdim(0)?;
        let shared = mean.matmul(&weight.narrow(1, n_features, n_features)?.t()?)?;
        let mut xs = own.broadcast_add(&shared)?;
        if let Some(bias) = &first.bias {
            xs = xs.broadcast_add(bias)?;
        }
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                xs = layer.forward(&xs)?;
            }
            let activation = if i == last {
                Activation::Sigmoid
            } else {
                Activation::Relu
            };
            xs = activation.apply(&xs)?;
        }
        xs.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn split_first_layer_equals_concatenated_input() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let disc = Discriminator::new(3, &[4], &mut rng, &device).unwrap();
        let records = Tensor::new(
            &[[1f32, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]],
            &device,
        )
        .unwrap();
        let got = disc.forward(&records).unwrap().to_vec1::<f32>().unwrap();
        // Reference: concatenate [x, batch mean] explicitly and run the dense layers.
        let mean = records
            .mean_keepdim(0)
            .unwrap()
            .broadcast_as((3, 3))
            .unwrap();
        let mut xs = Tensor::cat(&[&records, &mean], 1).unwrap();
        xs = disc.layers[0].forward(&xs).unwrap().relu().unwrap();
        xs = disc.layers[1].forward(&xs).unwrap();
        let want = candle_nn::ops::sigmoid(&xs)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // The batch matters: the same record scores differently beside other records.
        let alone = disc.forward(&records.narrow(0, 0, 2).unwrap()).unwrap();
        let alone = alone.to_vec1::<f32>().unwrap();
        assert!((alone[0] - got[0]).abs() > 1e-7);
        assert!(disc.forward(&records.narrow(0, 0, 1).unwrap()).is_err());
    }
}
