//! Batch-norm folding: turns the generator and decoder weights into plain dense layers.
//!
//! In inference mode batch norm is an affine map per output unit, so it merges into the linear
//! layer before it: with `s = gamma / sqrt(var + eps)`,
//! `BN(x W^T) = x (W * s)^T + (beta - mean * s)`, `W * s` scaling each output row.
//! The exported graphs then need only Gemm, Add and activations.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use medgan_sample::DataType;

use super::ExportError;
use crate::model::Architecture;

/// The non-linearity after a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    /// The ONNX operator that computes this activation.
    pub fn onnx_op(self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
        }
    }

    /// Applies the activation with candle.
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }
}

/// `y = act(x W^T + b)`, plus `x` when `residual`: one exported layer.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    /// Name prefix of the layer's initializers and nodes, e.g. `generator.blocks.0.folded`.
    pub prefix: String,
    /// `[out, in]`, f32, on the CPU.
    pub weight: Tensor,
    /// `[out]`, f32, on the CPU.
    pub bias: Tensor,
    pub activation: Activation,
    pub residual: bool,
}

impl DenseLayer {
    /// Name of the weight initializer in the ONNX graphs, which holds the weight transposed to
    /// `[in, out]` (see `onnx.rs` for why).
    pub fn transposed_weight_name(&self) -> String {
        format!("{}.weight.transposed", self.prefix)
    }

    /// Name of the bias initializer in the ONNX graphs.
    pub fn bias_name(&self) -> String {
        format!("{}.bias", self.prefix)
    }

    /// Input and output width.
    pub fn dims(&self) -> (usize, usize) {
        let (out_dim, in_dim) = self.weight.dims2().unwrap_or((0, 0));
        (in_dim, out_dim)
    }

    /// Runs the layer on `[batch, in]` input.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let linear = x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        let activated = self.activation.apply(&linear)?;
        if self.residual {
            activated + x
        } else {
            Ok(activated)
        }
    }
}

/// The two halves of the sampling path as plain dense layers.
#[derive(Debug, Clone)]
pub struct FoldedNetworks {
    /// Noise to embedding, batch norm folded in.
    pub generator: Vec<DenseLayer>,
    /// Embedding to records.
    pub decoder: Vec<DenseLayer>,
}

/// Folds one batch norm into the bias-free linear layer before it; returns `(weight, bias)`.
///
/// Computed in f64 and rounded once to f32, so the folded layer is as close to the unfolded one
/// as f32 allows.
pub fn fold_batch_norm(
    weight: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let f64s = |t: &Tensor| t.to_dtype(DType::F64);
    let scale = f64s(gamma)?.broadcast_div(&(f64s(running_var)? + eps)?.sqrt()?)?;
    let folded_weight = f64s(weight)?.broadcast_mul(&scale.unsqueeze(1)?)?;
    let folded_bias = (f64s(beta)? - f64s(running_mean)?.mul(&scale)?)?;
    Ok((
        folded_weight.to_dtype(DType::F32)?,
        folded_bias.to_dtype(DType::F32)?,
    ))
}

/// Reads the generator and decoder out of `weights`, checks every shape against `arch`, and
/// folds the generator's batch norms.
pub fn fold_networks(
    arch: &Architecture,
    weights: &BTreeMap<String, Tensor>,
) -> Result<FoldedNetworks, ExportError> {
    Ok(FoldedNetworks {
        generator: fold_generator(arch, weights)?,
        decoder: decoder_layers(arch, weights)?,
    })
}

fn fold_generator(
    arch: &Architecture,
    weights: &BTreeMap<String, Tensor>,
) -> Result<Vec<DenseLayer>, ExportError> {
    if arch.generator_dims.is_empty() {
        return Err(ExportError::Architecture(
            "the generator has no blocks".into(),
        ));
    }
    if arch.generator_dims.last() != Some(&arch.embedding_dim()) {
        return Err(ExportError::Architecture(format!(
            "the last generator block is {} wide but the embedding is {}",
            arch.generator_dims.last().unwrap_or(&0),
            arch.embedding_dim()
        )));
    }
    let last_activation = match arch.data_type {
        DataType::Binary => Activation::Tanh,
        DataType::Count => Activation::Relu,
    };
    let mut in_dim = arch.noise_dim;
    let mut layers = Vec::with_capacity(arch.generator_dims.len());
    for (i, &out_dim) in arch.generator_dims.iter().enumerate() {
        if out_dim != in_dim {
            return Err(ExportError::Architecture(format!(
                "generator block {i} maps {in_dim} to {out_dim} units, but a residual block \
                 must keep its width"
            )));
        }
        let block = format!("generator.blocks.{i}");
        let weight = expect(
            weights,
            &format!("{block}.linear.weight"),
            &[out_dim, in_dim],
        )?;
        let bn = |part: &str| expect(weights, &format!("{block}.bn.{part}"), &[out_dim]);
        let (gamma, beta) = (bn("weight")?, bn("bias")?);
        let (mean, var) = (bn("running_mean")?, bn("running_var")?);
        let (weight, bias) =
            fold_batch_norm(&weight, &gamma, &beta, &mean, &var, arch.batch_norm_eps).map_err(
                ExportError::candle(format!("cannot fold the batch norm of {block}")),
            )?;
        let is_last = i + 1 == arch.generator_dims.len();
        layers.push(DenseLayer {
            prefix: format!("{block}.folded"),
            weight,
            bias,
            activation: if is_last {
                last_activation
            } else {
                Activation::Relu
            },
            residual: true,
        });
        in_dim = out_dim;
    }
    Ok(layers)
}

/// The decoder mirrors the encoder: embedding widths in reverse, then the features.
fn decoder_layers(
    arch: &Architecture,
    weights: &BTreeMap<String, Tensor>,
) -> Result<Vec<DenseLayer>, ExportError> {
    if arch.embedding_dims.is_empty() {
        return Err(ExportError::Architecture(
            "the autoencoder has no layers".into(),
        ));
    }
    let mut widths: Vec<usize> = arch.embedding_dims.iter().rev().copied().collect();
    widths.push(arch.n_features);
    let (hidden, last) = match arch.data_type {
        DataType::Binary => (Activation::Tanh, Activation::Sigmoid),
        DataType::Count => (Activation::Relu, Activation::Relu),
    };
    let mut layers = Vec::with_capacity(widths.len() - 1);
    for (i, pair) in widths.windows(2).enumerate() {
        let (in_dim, out_dim) = (pair[0], pair[1]);
        let prefix = format!("decoder.layers.{i}");
        let weight = expect(weights, &format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = expect(weights, &format!("{prefix}.bias"), &[out_dim])?;
        let is_last = i + 2 == widths.len();
        layers.push(DenseLayer {
            prefix,
            weight,
            bias,
            activation: if is_last { last } else { hidden },
            residual: false,
        });
    }
    Ok(layers)
}

/// The weight `name` as an f32 CPU tensor of shape `dims`.
fn expect(
    weights: &BTreeMap<String, Tensor>,
    name: &str,
    dims: &[usize],
) -> Result<Tensor, ExportError> {
    let tensor = weights
        .get(name)
        .ok_or_else(|| ExportError::MissingWeight {
            name: name.to_string(),
        })?;
    if tensor.dims() != dims {
        return Err(ExportError::WeightShape {
            name: name.to_string(),
            expected: dims.to_vec(),
            found: tensor.dims().to_vec(),
        });
    }
    if tensor.dtype() != DType::F32 {
        return Err(ExportError::WeightDtype {
            name: name.to_string(),
            found: tensor.dtype(),
        });
    }
    tensor
        .to_device(&Device::Cpu)
        .map_err(ExportError::candle(format!(
            "cannot copy weight `{name}` to the cpu"
        )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::{max_abs_diff, random_weights, test_architecture, uniform};

    #[test]
    fn folded_layer_equals_linear_then_batch_norm() {
        let (rows, in_dim, out_dim, eps) = (64, 12, 9, 1e-3);
        let x = uniform(1, &[rows, in_dim], -2.0, 2.0);
        let weight = uniform(2, &[out_dim, in_dim], -0.5, 0.5);
        let gamma = uniform(3, &[out_dim], 0.5, 2.0);
        let beta = uniform(4, &[out_dim], -1.0, 1.0);
        let mean = uniform(5, &[out_dim], -0.8, 0.8);
        let var = uniform(6, &[out_dim], 0.05, 3.0);

        let linear = x.matmul(&weight.t().unwrap()).unwrap();
        let normalised = linear
            .broadcast_sub(&mean)
            .unwrap()
            .broadcast_div(&(var.clone() + eps).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&gamma)
            .unwrap()
            .broadcast_add(&beta)
            .unwrap();

        let (w, b) = fold_batch_norm(&weight, &gamma, &beta, &mean, &var, eps).unwrap();
        let folded = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let diff = max_abs_diff(&folded, &normalised);
        assert!(
            diff < 1e-5,
            "folded and unfolded batch norm differ by {diff}"
        );
        // The statistics are far from the identity, so folding must have changed the weights.
        assert!(max_abs_diff(&w, &weight) > 1e-2);
    }

    #[test]
    fn folding_picks_activations_by_data_type() {
        for data_type in [DataType::Binary, DataType::Count] {
            let arch = test_architecture(data_type, 10, 6, &[6, 6], &[8, 6]);
            let weights = random_weights(&arch, 7);
            let nets = fold_networks(&arch, &weights).unwrap();
            let generator: Vec<_> = nets.generator.iter().map(|l| l.activation).collect();
            let decoder: Vec<_> = nets.decoder.iter().map(|l| l.activation).collect();
            let (dims, last_dims) = (nets.decoder[0].dims(), nets.decoder[1].dims());
            assert_eq!((dims, last_dims), ((6, 8), (8, 10)));
            match data_type {
                DataType::Binary => {
                    assert_eq!(generator, [Activation::Relu, Activation::Tanh]);
                    assert_eq!(decoder, [Activation::Tanh, Activation::Sigmoid]);
                }
                DataType::Count => {
                    assert_eq!(generator, [Activation::Relu, Activation::Relu]);
                    assert_eq!(decoder, [Activation::Relu, Activation::Relu]);
                }
            }
        }
    }

    #[test]
    fn missing_or_misshapen_weights_are_named() {
        let arch = test_architecture(DataType::Binary, 10, 6, &[6], &[6]);
        let mut weights = random_weights(&arch, 8);
        weights.remove("generator.blocks.0.bn.running_var");
        let err = fold_networks(&arch, &weights).unwrap_err().to_string();
        assert!(err.contains("generator.blocks.0.bn.running_var"), "{err}");

        let mut weights = random_weights(&arch, 8);
        weights.insert(
            "decoder.layers.0.weight".into(),
            uniform(9, &[10, 5], 0.0, 1.0),
        );
        let err = fold_networks(&arch, &weights).unwrap_err().to_string();
        assert!(
            err.contains("decoder.layers.0.weight") && err.contains("[10, 6]"),
            "{err}"
        );
    }

    #[test]
    fn a_block_that_changes_width_is_refused() {
        let arch = test_architecture(DataType::Binary, 10, 6, &[8], &[8]);
        let err = fold_networks(&arch, &random_weights(&arch, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("residual"), "{err}");
    }
}
