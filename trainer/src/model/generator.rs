//! medGAN's residual generator: noise to an embedding the decoder turns into records.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};
use medgan_sample::DataType;
use rand_chacha::ChaCha8Rng;

use super::activation::Kind;
use super::layers::{Activation, BatchNorm, Dense};
use super::product::{Operand, contiguous_f32, multiply_then};

/// `x + activation(bn(x W^T))`: a linear layer without bias, batch norm and a skip connection.
pub(crate) struct ResidualBlock {
    pub(crate) linear: Dense,
    pub(crate) bn: BatchNorm,
    activation: Activation,
}

impl ResidualBlock {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if xs.device().is_cpu() {
            if !train {
                return self.forward_inference_cpu(xs);
            }
            let hidden = self.linear.forward(xs)?;
            return self
                .bn
                .forward_train_activated(&hidden, self.activation.kind())?
                + xs;
        }
        let hidden = self.bn.forward(&self.linear.forward(xs)?, train)?;
        self.activation.apply(&hidden)? + xs
    }

    /// Inference mode on the CPU as one operation: the product, then batch norm with the
    /// running statistics, the activation and the skip connection applied to each block of
    /// rows as it is written. The same operations in the same order as the tensor form, which
    /// took five passes over the batch (and a tensor each) besides the product. It has no
    /// backward pass; training mode never comes here.
    fn forward_inference_cpu(&self, xs: &Tensor) -> Result<Tensor> {
        let bn = &self.bn;
        let scale = bn
            .weight
            .broadcast_div(&(bn.running_var.as_tensor() + bn.eps)?.sqrt()?)?;
        let op = ResidualInference {
            mean: bn.running_mean.as_tensor().to_vec1()?,
            scale: scale.to_vec1()?,
            shift: bn.bias.as_tensor().to_vec1()?,
            activation: self.activation.kind(),
        };
        xs.contiguous()?
            .apply_op2(&self.linear.weight.as_detached_tensor(), op)
    }
}

/// `x + activation((x W^T - mean) * scale + shift)` for `x` `[batch, width]` and `W`
/// `[width, width]`: a residual block with batch norm in inference mode.
struct ResidualInference {
    mean: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    activation: Kind,
}

impl CustomOp2 for ResidualInference {
    fn name(&self) -> &'static str {
        "medgan-residual-inference"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let inputs = contiguous_f32(xs, xs_layout, "a residual block's input")?;
        let (&[_, width], &[outputs, weight_width]) = (xs_layout.dims(), weight_layout.dims())
        else {
            candle_core::bail!("a residual block's input and weight must be matrices");
        };
        if outputs != width || weight_width != width || self.mean.len() != width {
            candle_core::bail!(
                "a residual block of weight {outputs}x{weight_width} cannot add its input of width {width}"
            );
        }
        let xs = Operand::new(xs, xs_layout, false)?;
        let weight = Operand::new(weight, weight_layout, true)?;
        let kind = self.activation;
        multiply_then(xs, weight, |first_row, block| {
            let rows = block.chunks_exact_mut(width.max(1));
            let input_rows = inputs[first_row * width..].chunks_exact(width.max(1));
            for (row, input) in rows.zip(input_rows) {
                for (j, (y, &x)) in row.iter_mut().zip(input).enumerate() {
                    let normalised = (*y - self.mean[j]) * self.scale[j] + self.shift[j];
                    *y = kind.value(normalised) + x;
                }
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::normal_tensor;
    use crate::model::parallel::set_cpu_threads;
    use rand::SeedableRng;

    /// The fused inference block gives the bits of the tensor formulation, split between
    /// threads or not, and refuses a backward pass rather than giving a wrong one.
    #[test]
    fn inference_block_equals_the_tensor_formulation() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        for activation in [Activation::Relu, Activation::Tanh] {
            let block = ResidualBlock {
                linear: Dense::new(128, 128, false, &mut rng, &device).unwrap(),
                bn: BatchNorm::new(128, 1e-3, 0.99, &device).unwrap(),
                activation,
            };
            let stats = |rng: &mut ChaCha8Rng, shift: f64| {
                (normal_tensor(rng, 1, 128, &device).unwrap() + shift)
                    .unwrap()
                    .reshape(128)
                    .unwrap()
            };
            block.bn.running_mean.set(&stats(&mut rng, 0.0)).unwrap();
            block
                .bn
                .running_var
                .set(&(stats(&mut rng, 0.0).abs().unwrap() + 0.1).unwrap())
                .unwrap();
            block.bn.weight.set(&stats(&mut rng, 1.0)).unwrap();
            block.bn.bias.set(&stats(&mut rng, 0.0)).unwrap();
            let xs = normal_tensor(&mut rng, 1000, 128, &device).unwrap();
            let hidden = block
                .bn
                .forward(&block.linear.forward(&xs).unwrap(), false)
                .unwrap();
            let want = (activation.apply(&hidden).unwrap() + &xs).unwrap();
            let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for threads in [1, 2] {
                set_cpu_threads(threads);
                let got = block.forward(&xs, false).unwrap();
                assert_eq!(
                    values(&got),
                    values(&want),
                    "{activation:?}, {threads} threads"
                );
            }
            set_cpu_threads(1);
            let tracked = candle_core::Var::from_tensor(&xs).unwrap();
            let out = block.forward(&tracked, false).unwrap();
            assert!(out.sum_all().unwrap().backward().is_err());
        }
    }
}
