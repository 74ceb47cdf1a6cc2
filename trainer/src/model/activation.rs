//! ReLU, tanh and sigmoid on the CPU, each forward and backward pass one loop over the tensor.
//!
//! candle computes these with generic element-wise kernels: its ReLU derivative alone is a
//! comparison, a conversion and a product, each a pass that allocates a tensor, and its tanh
//! calls the C library's `tanhf`, one call per element (ours vectorise, see [`super::math`]).
//! medGAN runs them on every hidden layer in every step, so here each activation is one
//! custom operation whose backward pass reads the saved output: `y > 0` for ReLU, `1 - y^2`
//! for tanh and `y (1 - y)` for the sigmoid. Large tensors are split between the threads of
//! [`super::parallel`].

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::math::{sigmoid, tanh};
use super::parallel::map_blocks;
use super::product::{LinearWithBias, contiguous_f32, linear, linear_then};

/// Fewest elements per thread for a pass that calls `exp` per element (sigmoid, tanh): below
/// this waking a second thread costs more than it saves.
const MIN_EXP_ELEMENTS_PER_THREAD: usize = 1 << 15;
/// The same for the cheap passes (ReLU, every backward pass), a few elements a nanosecond.
const MIN_ELEMENTS_PER_THREAD: usize = 1 << 18;

/// Which activation an operation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Relu,
    Tanh,
    Sigmoid,
}

impl Kind {
    pub(super) fn value(self, x: f32) -> f32 {
        match self {
            Kind::Relu => x.max(0.0),
            Kind::Tanh => tanh(x),
            Kind::Sigmoid => sigmoid(x),
        }
    }

    /// The derivative at the input whose output is `y`, times the upstream gradient `g`.
    pub(super) fn chain(self, y: f32, g: f32) -> f32 {
        match self {
            Kind::Relu => {
                if y > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            Kind::Tanh => g * (1.0 - y * y),
            Kind::Sigmoid => g * y * (1.0 - y),
        }
    }
}

/// `kind` applied to every element of `xs`, differentiable.
pub(crate) fn activate(kind: Kind, xs: &Tensor) -> Result<Tensor> {
    if !xs.device().is_cpu() {
        return match kind {
            Kind::Relu => xs.relu(),
            Kind::Tanh => xs.tanh(),
            Kind::Sigmoid => candle_nn::ops::sigmoid(xs),
        };
    }
    xs.contiguous()?.apply_op1(Activate(kind))
}

/// `sigmoid(x W^T + b)`, the binary decoder's output layer, differentiable. On the CPU it is one
/// operation: the product's output becomes the probabilities in place, and the backward pass
/// turns their gradient into the logits' without a logits tensor in the graph (whose gradient
/// candle would zero and add, at the size of a whole batch of records).
pub(crate) fn linear_sigmoid(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !xs.device().is_cpu() {
        return activate(Kind::Sigmoid, &linear(xs, weight, Some(bias))?);
    }
    xs.apply_op3(weight, bias, LinearSigmoid)
}

struct Activate(Kind);

impl CustomOp1 for Activate {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Relu => "medgan-relu",
            Kind::Tanh => "medgan-tanh",
            Kind::Sigmoid => "medgan-sigmoid",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = contiguous(storage, layout)?;
        let kind = self.0;
        let min_per_thread = match kind {
            Kind::Relu => MIN_ELEMENTS_PER_THREAD,
            Kind::Tanh | Kind::Sigmoid => MIN_EXP_ELEMENTS_PER_THREAD,
        };
        let out = map_blocks(xs.len(), 1, min_per_thread, |range| {
            xs[range].iter().map(move |&x| kind.value(x))
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _xs: &Tensor, ys: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(ys.apply_op2_no_bwd(&grad, &Chain(self.0))?))
    }
}

struct LinearSigmoid;

impl CustomOp3 for LinearSigmoid {
    fn name(&self) -> &'static str {
        "medgan-linear-sigmoid"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let bias = contiguous_f32(bias, bias_layout, "a bias")?;
        linear_then(xs, xs_layout, weight, weight_layout, bias, |row| {
            row.iter_mut().for_each(|y| *y = Kind::Sigmoid.value(*y));
        })
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let logits_grad = ys.apply_op2_no_bwd(&grad.contiguous()?, &Chain(Kind::Sigmoid))?;
        LinearWithBias.bwd(xs, weight, bias, ys, &logits_grad)
    }
}

/// The backward pass of [`Activate`]: `(y, g)` to `f'(x) g`.
struct Chain(Kind);

impl CustomOp2 for Chain {
    fn name(&self) -> &'static str {
        "medgan-activation-gradient"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        ys_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if ys_layout.shape() != grad_layout.shape() {
            candle_core::bail!(
                "an activation's gradient {:?} does not match its output {:?}",
                grad_layout.dims(),
                ys_layout.dims()
            );
        }
        let ys = contiguous(ys, ys_layout)?;
        let grad = contiguous(grad, grad_layout)?;
        let kind = self.0;
        let out = map_blocks(ys.len(), 1, MIN_ELEMENTS_PER_THREAD, |range| {
            let (ys, grad) = (&ys[range.clone()], &grad[range]);
            ys.iter().zip(grad).map(move |(&y, &g)| kind.chain(y, g))
        });
        Ok((CpuStorage::F32(out), ys_layout.shape().clone()))
    }
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    contiguous_f32(storage, layout, "an activation's operand")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::export::testing::max_abs_diff;
    use crate::model::layers::normal_tensor;
    use crate::model::parallel::set_cpu_threads;

    /// Values and gradients equal candle's own activations, through a downstream function
    /// whose gradient differs per element, on a tensor large enough to be split.
    #[test]
    fn equals_candle_values_and_gradients() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let rows = 2 * MIN_ELEMENTS_PER_THREAD / 64 + 3;
        let xs = (normal_tensor(&mut rng, rows, 64, &device).unwrap() * 3.0).unwrap();
        let xs = Var::from_tensor(&xs).unwrap();
        let weights = normal_tensor(&mut rng, rows, 64, &device).unwrap();
        set_cpu_threads(2);
        for kind in [Kind::Relu, Kind::Tanh, Kind::Sigmoid] {
            let plain = match kind {
                Kind::Relu => xs.relu().unwrap(),
                Kind::Tanh => xs.tanh().unwrap(),
                Kind::Sigmoid => candle_nn::ops::sigmoid(&xs).unwrap(),
            };
            let ours = activate(kind, &xs).unwrap();
            assert!(max_abs_diff(&ours, &plain) < 1e-6, "{kind:?} values");
            let loss = |ys: &Tensor| (ys * &weights).unwrap().sum_all().unwrap();
            let ours = loss(&ours).backward().unwrap();
            let plain = loss(&plain).backward().unwrap();
            let (ours, plain) = (ours.get(&xs).unwrap(), plain.get(&xs).unwrap());
            assert!(max_abs_diff(ours, plain) < 1e-5, "{kind:?} gradients");
        }
    }

    #[test]
    fn linear_sigmoid_equals_the_two_steps_with_gradients() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let var = |rng: &mut ChaCha8Rng, rows, cols| {
            Var::from_tensor(&normal_tensor(rng, rows, cols, &device).unwrap()).unwrap()
        };
        let (xs, weight) = (var(&mut rng, 9, 6), var(&mut rng, 5, 6));
        let bias = Var::from_tensor(
            &normal_tensor(&mut rng, 1, 5, &device)
                .unwrap()
                .reshape(5)
                .unwrap(),
        )
        .unwrap();
        let targets = normal_tensor(&mut rng, 9, 5, &device).unwrap();
        let loss = |ys: &Tensor| (ys * &targets).unwrap().sqr().unwrap().sum_all().unwrap();
        let fused = linear_sigmoid(&xs, &weight, &bias).unwrap();
        let plain = xs
            .matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let plain = candle_nn::ops::sigmoid(&plain).unwrap();
        assert!(max_abs_diff(&fused, &plain) < 1e-6);
        let (fused, plain) = (
            loss(&fused).backward().unwrap(),
            loss(&plain).backward().unwrap(),
        );
        for (var, what) in [(&xs, "records"), (&weight, "weight"), (&bias, "bias")] {
            let difference = max_abs_diff(fused.get(var).unwrap(), plain.get(var).unwrap());
            assert!(difference < 1e-5, "{what}: {difference}");
        }
    }

    #[test]
    fn same_bits_on_one_and_two_threads() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let xs = normal_tensor(
            &mut rng,
            3 * MIN_EXP_ELEMENTS_PER_THREAD / 100 + 1,
            100,
            &device,
        )
        .unwrap();
        let run = |threads| {
            set_cpu_threads(threads);
            activate(Kind::Sigmoid, &xs)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(run(1), run(2));
    }
}
