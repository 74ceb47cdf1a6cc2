//! medGAN's discriminator with minibatch averaging: is a record real, seen beside its batch?

use candle_core::{Device, Result, Tensor};
use rand_chacha::ChaCha8Rng;

use super::layers::{Activation, Dense, add_rows, row_mean};
use super::minibatch::{minibatch_linear, sparse_linear};
use super::product::linear;
use super::sparse::SparseRecords;

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
        self.forward_with(records, Learns::Everything)
    }

    /// [`Self::forward`] with the weights cut from the graph: gradients reach the records but
    /// no discriminator weight, which the generator's update never changes anyway.
    pub(crate) fn forward_frozen(&self, records: &Tensor) -> Result<Tensor> {
        self.forward_with(records, Learns::Records)
    }

    /// [`Self::forward`] for records that are constants (generated ones, in the
    /// discriminator's update): gradients reach the weights only.
    pub(crate) fn forward_constant(&self, records: &Tensor) -> Result<Tensor> {
        self.forward_with(records, Learns::Weights)
    }

    /// [`Self::forward`] for a sparse batch: `x W^T` gathers weight columns and the batch
    /// mean comes with the batch.
    pub(crate) fn forward_sparse(&self, records: &SparseRecords) -> Result<Tensor> {
        check_batch(records.rows())?;
        let first = &self.layers[0];
        if let (true, Some(bias)) = (first.weight.device().is_cpu(), &first.bias) {
            let first = sparse_linear(records.cells(), &first.weight, bias, true)?;
            return self.after_first(first, Learns::Weights);
        }
        let n_features = records.width();
        let weight = self.layers[0].weight.as_tensor();
        let own = records.matmul_t(&weight.narrow(1, 0, n_features)?)?;
        let mean_weight = weight.narrow(1, n_features, n_features)?;
        let bias = self.layers[0].bias.as_ref().map(|bias| bias.as_tensor());
        let shared = linear(records.column_mean(), &mean_weight, bias)?;
        self.after_first(add_rows(&own, &shared)?, Learns::Weights)
    }

    fn forward_with(&self, records: &Tensor, learns: Learns) -> Result<Tensor> {
        let n_features = records.dim(1)?;
        check_batch(records.dim(0)?)?;
        let (weight, bias) = params(&self.layers[0], learns);
        // Constant records get no gradient; frozen weights came detached from `params`.
        let records = match learns {
            Learns::Weights => records.detach(),
            Learns::Everything | Learns::Records => records.clone(),
        };
        if let (true, Some(bias)) = (records.device().is_cpu(), &bias) {
            let first = minibatch_linear(&records, &weight, bias)?;
            return self.after_first(first, learns);
        }
        let own_weight = weight.narrow(1, 0, n_features)?;
        let mean_weight = weight.narrow(1, n_features, n_features)?;
        let own = linear(&records, &own_weight, None)?;
        // The batch-mean half and the bias are one row, added to every row's own half.
        let shared = linear(&row_mean(&records)?, &mean_weight, bias.as_ref())?;
        self.after_first(add_rows(&own, &shared)?, learns)
    }

    /// The first layer's activation (its bias is in `first`), then the other layers.
    fn after_first(&self, first: Tensor, learns: Learns) -> Result<Tensor> {
        let mut xs = first;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                let (weight, bias) = params(layer, learns);
                xs = linear(&xs, &weight, bias.as_ref())?;
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

/// Which side of the discriminator's products a backward pass needs gradients for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Learns {
    Everything,
    /// The records are constants: weights only.
    Weights,
    /// The weights are frozen: records only.
    Records,
}

fn check_batch(batch: usize) -> Result<()> {
    if batch < 2 {
        return Err(candle_core::Error::Msg(format!(
            "the discriminator's minibatch mean needs at least 2 rows, got {batch}"
        )));
    }
    Ok(())
}

/// A layer's weight and bias, tracked by autograd or, when frozen, detached from it.
fn params(layer: &Dense, learns: Learns) -> (Tensor, Option<Tensor>) {
    let pick = |var: &candle_core::Var| {
        if learns == Learns::Records {
            var.as_detached_tensor()
        } else {
            var.as_tensor().clone()
        }
    };
    (pick(&layer.weight), layer.bias.as_ref().map(pick))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::max_abs_diff;
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

        // The frozen and sparse variants score the same.
        let frozen = disc
            .forward_frozen(&records)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(frozen, got);
        let constant = disc.forward_constant(&records).unwrap();
        for (g, c) in got.iter().zip(constant.to_vec1::<f32>().unwrap()) {
            assert!((g - c).abs() < 1e-6, "{got:?} vs {constant}");
        }
        let rows: [(&[u32], &[u32]); 3] = [(&[0, 2], &[1, 1]), (&[2], &[1]), (&[0, 1], &[1, 1])];
        let sparse = SparseRecords::new(rows, 3, &device).unwrap();
        let from_sparse = disc
            .forward_sparse(&sparse)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (g, s) in got.iter().zip(&from_sparse) {
            assert!((g - s).abs() < 1e-6, "{got:?} vs {from_sparse:?}");
        }
    }

    #[test]
    fn frozen_weights_and_constant_records_get_no_gradient() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let disc = Discriminator::new(3, &[4], &mut rng, &device).unwrap();
        let records =
            candle_core::Var::new(&[[0.2f32, 0.9, 0.1], [0.7, 0.3, 0.4]], &device).unwrap();
        let tracked = disc
            .forward(&records)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let frozen = disc
            .forward_frozen(&records)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let constant = disc
            .forward_constant(&records)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for layer in &disc.layers {
            assert!(tracked.get(&layer.weight).is_some());
            assert!(frozen.get(&layer.weight).is_none());
            // Constant records: the same weight gradients as the full graph.
            let want = tracked.get(&layer.weight).unwrap();
            let got = constant.get(&layer.weight).unwrap();
            assert!(max_abs_diff(want, got) < 1e-6);
            let (want, got) = (layer.bias.as_ref().unwrap(), layer.bias.as_ref().unwrap());
            assert_eq!(
                tracked.get(want).unwrap().to_vec1::<f32>().unwrap(),
                constant.get(got).unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert!(constant.get(&records).is_none());
        assert_eq!(
            tracked.get(&records).unwrap().to_vec2::<f32>().unwrap(),
            frozen.get(&records).unwrap().to_vec2::<f32>().unwrap()
        );
    }
}
