//! Building blocks of the networks: dense layers, batch norm and seeded initialisation.
//!
//! candle's CPU `randn` cannot be seeded, so every initial value and every noise draw comes from
//! our own ChaCha8 stream into a `Vec<f32>`: same seed, same bits.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, Var};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::activation::{Kind, activate};
use super::parallel::{block_len, run_jobs, threads_for};
use super::product::contiguous_f32;

/// Element-wise non-linearity of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    /// The activation's element-wise kind.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Activation::Relu => Kind::Relu,
            Activation::Tanh => Kind::Tanh,
            Activation::Sigmoid => Kind::Sigmoid,
        }
    }

    pub(crate) fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => activate(Kind::Relu, xs),
            Activation::Tanh => activate(Kind::Tanh, xs),
            Activation::Sigmoid => activate(Kind::Sigmoid, xs),
        }
    }
}

/// Uniform values in `[-limit, limit)`, drawn in order from `rng`.
fn uniform(rng: &mut ChaCha8Rng, count: usize, limit: f64) -> Vec<f32> {
    (0..count)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * limit) as f32)
        .collect()
}

/// Glorot/Xavier uniform values for a tensor with the given fans.
///
/// medGAN creates every variable with `tf.get_variable` and no initializer, which means
/// `glorot_uniform` for weights *and* biases (a bias of width `n` has both fans equal to `n`).
pub(crate) fn glorot_uniform(
    rng: &mut ChaCha8Rng,
    fan_in: usize,
    fan_out: usize,
    count: usize,
) -> Vec<f32> {
    uniform(rng, count, (6.0 / (fan_in + fan_out) as f64).sqrt())
}

/// A `[rows, cols]` tensor of standard-normal draws from `rng`.
pub(crate) fn normal_tensor(
    rng: &mut ChaCha8Rng,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Result<Tensor> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Tensor::from_vec(values, (rows, cols), device)
}

/// `v` (`[width]` or `[1, width]`) as `[rows, width]`.
///
/// On the CPU this is `ones[rows, 1] @ v`: the same values, but the gradient back to `v` is then
/// a matrix product, where candle's CPU backend would sum the broadcast rows with one integer
/// division per element (a fifth of a GAN epoch before this). Other devices broadcast.
pub(crate) fn repeat_rows(v: &Tensor, rows: usize) -> Result<Tensor> {
    let width = v.elem_count();
    let v = v.reshape((1, width))?;
    if v.device().is_cpu() {
        Tensor::ones((rows, 1), v.dtype(), v.device())?.matmul(&v)
    } else {
        v.broadcast_as((rows, width))
    }
}

/// Mean over the rows, `[1, width]`: on the CPU as `ones[1, rows] @ xs / rows`, for the reason
/// given at [`repeat_rows`]; elsewhere `mean_keepdim(0)`.
pub(crate) fn row_mean(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() {
        let rows = xs.dim(0)?;
        Tensor::ones((1, rows), xs.dtype(), xs.device())?.matmul(xs)? / rows as f64
    } else {
        xs.mean_keepdim(0)
    }
}

/// `xs + v` for a row `v` repeated over the rows of `xs`.
pub(crate) fn add_rows(xs: &Tensor, v: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() {
        xs + repeat_rows(v, xs.dim(0)?)?
    } else {
        xs.broadcast_add(v)
    }
}

/// `y = x W^T + b`, with `W` stored `[out, in]` as candle and our weight names expect.
pub(crate) struct Dense {
    pub(crate) weight: Var,
    pub(crate) bias: Option<Var>,
}

impl Dense {
    pub(crate) fn new(
        inputs: usize,
        outputs: usize,
        with_bias: bool,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let weight = glorot_uniform(rng, inputs, outputs, inputs * outputs);
        let weight = Var::from_vec(weight, (outputs, inputs), device)?;
        let bias = if with_bias {
            let values = glorot_uniform(rng, outputs, outputs, outputs);
            Some(Var::from_vec(values, outputs, device)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(|bias| bias.as_tensor());
        super::product::linear(xs, &self.weight, bias)
    }
}

/// Batch normalisation as TensorFlow's `batch_norm(scale=True)` that medGAN uses.
///
/// Training mode normalises with the batch mean and biased variance and moves the running
/// statistics: `running = decay * running + (1 - decay) * batch`. Inference mode uses the
/// running statistics: `y = gamma * (x - mean) / sqrt(var + eps) + beta`.
pub(crate) struct BatchNorm {
    pub(crate) weight: Var,
    pub(crate) bias: Var,
    /// Kept as `Var` only for in-place updates through `&self`; never given to an optimiser.
    pub(crate) running_mean: Var,
    pub(crate) running_var: Var,
    pub(crate) eps: f64,
    pub(crate) decay: f64,
}

impl BatchNorm {
    pub(crate) fn new(width: usize, eps: f64, decay: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: Var::ones(width, DType::F32, device)?,
            bias: Var::zeros(width, DType::F32, device)?,
            running_mean: Var::zeros(width, DType::F32, device)?,
            running_var: Var::ones(width, DType::F32, device)?,
            eps,
            decay,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            let scale = self
                .weight
                .broadcast_div(&(self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
            return xs
                .broadcast_sub(&self.running_mean)?
                .broadcast_mul(&scale)?
                .broadcast_add(&self.bias);
        }
        if xs.dim(0)? < 2 {
            return Err(candle_core::Error::Msg(format!(
                "batch norm in training mode needs at least 2 rows, got {}",
                xs.dim(0)?
            )));
        }
        let rows = xs.dim(0)?;
        let mean = row_mean(xs)?;
        let centred = (xs - repeat_rows(&mean, rows)?)?;
        let var = row_mean(&centred.sqr()?)?;
        let keep = self.decay;
        let moved_mean = ((self.running_mean.as_tensor() * keep)?
            + (mean.detach().squeeze(0)? * (1.0 - keep))?)?;
        let moved_var =
            ((self.running_var.as_tensor() * keep)? + (var.detach().squeeze(0)? * (1.0 - keep))?)?;
        self.running_mean.set(&moved_mean)?;
        self.running_var.set(&moved_var)?;
        let scaled = (centred / repeat_rows(&(var + self.eps)?.sqrt()?, rows)?)?;
        add_rows(&(scaled * repeat_rows(&self.weight, rows)?)?, &self.bias)
    }

    /// `activation(forward(xs, train = true))` on the CPU as one operation, forward and
    /// backward; other devices take the tensor form.
    ///
    /// The tensor form is a dozen candle operations forward and their gradients backward,
    /// each a pass over the batch and a tensor, on a `[batch, 128]` matrix whose passes cost
    /// less than starting them. Here the forward pass is three loops (the column means, the
    /// variances, then normalisation, scale, shift and activation) and the backward pass
    /// batch norm's closed-form gradient:
    /// `dx = (dn - mean(dn) - n mean(dn n)) / sqrt(var + eps)` with `dn = gamma g'` and `n`
    /// the normalised input. The sums run in another order than the tensor form's, so the
    /// results agree within rounding, not to the bit.
    pub(crate) fn forward_train_activated(&self, xs: &Tensor, kind: Kind) -> Result<Tensor> {
        if !xs.device().is_cpu() {
            return activate(kind, &self.forward(xs, true)?);
        }
        let rows = xs.dim(0)?;
        if rows < 2 {
            return Err(candle_core::Error::Msg(format!(
                "batch norm in training mode needs at least 2 rows, got {rows}"
            )));
        }
        let statistics = Arc::new(Mutex::new(None));
        let op = BatchNormActivation {
            eps: self.eps as f32,
            kind,
            saved: Arc::clone(&statistics),
        };
        let ys = xs
            .contiguous()?
            .apply_op3(self.weight.as_tensor(), self.bias.as_tensor(), op)?;
        let kept = statistics.lock().ok().and_then(|saved| {
            let saved = saved.as_ref()?;
            Some((saved.mean.clone(), saved.var.clone()))
        });
        let Some((mean, var)) = kept else {
            candle_core::bail!("batch norm's forward pass kept no statistics");
        };
        let width = mean.len();
        let (mean, var) = (
            Tensor::from_vec(mean, width, xs.device())?,
            Tensor::from_vec(var, width, xs.device())?,
        );
        let keep = self.decay;
        let moved_mean = ((self.running_mean.as_tensor() * keep)? + (mean * (1.0 - keep))?)?;
        let moved_var = ((self.running_var.as_tensor() * keep)? + (var * (1.0 - keep))?)?;
        self.running_mean.set(&moved_mean)?;
        self.running_var.set(&moved_var)?;
        Ok(ys)
    }
}

/// Calls `work(first_row, a, b)` on blocks of whole rows (of `width` values) of two matrices of
/// one shape, split between threads when they are large enough.
fn for_each_row_block(
    a: &mut [f32],
    b: &mut [f32],
    width: usize,
    work: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    const MIN_VALUES_PER_THREAD: usize = 1 << 15;
    let threads = threads_for(a.len(), MIN_VALUES_PER_THREAD);
    let block = block_len(a.len(), threads, 2, width.max(1));
    let blocks = a.chunks_mut(block).zip(b.chunks_mut(block)).enumerate();
    run_jobs(blocks, threads, |(i, (a, b))| {
        work(i * block / width.max(1), a, b)
    });
}

/// What the forward pass of [`BatchNormActivation`] keeps: the batch statistics for the
/// running ones (taken by the caller), and for the backward pass the normalised input and
/// `1 / sqrt(var + eps)` per column.
struct Saved {
    mean: Vec<f32>,
    var: Vec<f32>,
    normalised: Vec<f32>,
    inverse_std: Vec<f32>,
}

/// `activation(gamma (x - mean) / sqrt(var + eps) + beta)` over the columns of `x`, with the
/// batch's mean and biased variance; differentiable in `x`, `gamma` and `beta`.
struct BatchNormActivation {
    eps: f32,
    kind: Kind,
    saved: Arc<Mutex<Option<Saved>>>,
}

impl CustomOp3 for BatchNormActivation {
    fn name(&self) -> &'static str {
        "medgan-batch-norm-activation"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[rows, width] = xs_layout.dims() else {
            candle_core::bail!("batch norm's input must be a matrix");
        };
        let xs = contiguous_f32(xs, xs_layout, "batch norm's input")?;
        let gamma = contiguous_f32(gamma, gamma_layout, "batch norm's scale")?;
        let beta = contiguous_f32(beta, beta_layout, "batch norm's shift")?;
        if gamma.len() != width || beta.len() != width || rows == 0 {
            candle_core::bail!(
                "batch norm over {width} columns got {} scales and {} shifts",
                gamma.len(),
                beta.len()
            );
        }
        let count = rows as f32;
        let mut mean = vec![0f32; width];
        for row in xs.chunks_exact(width) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x);
        }
        mean.iter_mut().for_each(|m| *m /= count);
        let mut var = vec![0f32; width];
        for row in xs.chunks_exact(width) {
            for ((v, &x), &m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (x - m) * (x - m);
            }
        }
        var.iter_mut().for_each(|v| *v /= count);
        let inverse_std: Vec<f32> = var.iter().map(|&v| 1.0 / (v + self.eps).sqrt()).collect();
        let (mut normalised, mut out) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
        let kind = self.kind;
        for_each_row_block(
            &mut normalised,
            &mut out,
            width,
            |first_row, normalised, out| {
                let xs = &xs[first_row * width..];
                let rows = normalised
                    .chunks_exact_mut(width)
                    .zip(out.chunks_exact_mut(width));
                for ((n_row, y_row), x_row) in rows.zip(xs.chunks_exact(width)) {
                    let columns = mean.iter().zip(&inverse_std).zip(gamma.iter().zip(beta));
                    for (((n, y), &x), ((&m, &s), (&g, &b))) in n_row
                        .iter_mut()
                        .zip(y_row.iter_mut())
                        .zip(x_row)
                        .zip(columns)
                    {
                        *n = (x - m) * s;
                        *y = kind.value(*n * g + b);
                    }
                }
            },
        );
        if let Ok(mut saved) = self.saved.lock() {
            *saved = Some(Saved {
                mean,
                var,
                normalised,
                inverse_std,
            });
        }
        Ok((CpuStorage::F32(out), xs_layout.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().ok();
        let Some(Some(Saved {
            normalised,
            inverse_std,
            ..
        })) = saved.as_deref()
        else {
            candle_core::bail!("batch norm's backward pass ran before its forward pass");
        };
        let (rows, width) = xs.dims2()?;
        let ys = ys.flatten_all()?.to_vec1::<f32>()?;
        let grad = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let gamma_values = gamma.to_vec1::<f32>()?;
        // g' = f'(bn) g, then the sums over the batch of g' and g' n.
        let kind = self.kind;
        let shifted: Vec<f32> = ys
            .iter()
            .zip(&grad)
            .map(|(&y, &g)| kind.chain(y, g))
            .collect();
        let (mut sum, mut sum_normalised) = (vec![0f32; width], vec![0f32; width]);
        for (d_row, n_row) in shifted
            .chunks_exact(width)
            .zip(normalised.chunks_exact(width))
        {
            let sums = sum.iter_mut().zip(sum_normalised.iter_mut());
            for ((s, sn), (&d, &n)) in sums.zip(d_row.iter().zip(n_row)) {
                *s += d;
                *sn += d * n;
            }
        }
        let count = rows as f32;
        let mean_d: Vec<f32> = sum.iter().map(|&s| s / count).collect();
        let mean_dn: Vec<f32> = sum_normalised.iter().map(|&s| s / count).collect();
        let factor: Vec<f32> = gamma_values
            .iter()
            .zip(inverse_std)
            .map(|(&g, &s)| g * s)
            .collect();
        let mut grad_xs = vec![0f32; ys.len()];
        for ((out_row, d_row), n_row) in grad_xs
            .chunks_exact_mut(width)
            .zip(shifted.chunks_exact(width))
            .zip(normalised.chunks_exact(width))
        {
            let columns = factor.iter().zip(mean_d.iter().zip(&mean_dn));
            for (((o, &d), &n), (&f, (&md, &mdn))) in
                out_row.iter_mut().zip(d_row).zip(n_row).zip(columns)
            {
                *o = f * (d - md - n * mdn);
            }
        }
        let device = xs.device();
        Ok((
            Some(Tensor::from_vec(grad_xs, (rows, width), device)?),
            Some(Tensor::from_vec(sum_normalised, width, device)?),
            Some(Tensor::from_vec(sum, width, device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::max_abs_diff;
    use rand::SeedableRng;

    #[test]
    fn batch_norm_train_uses_batch_stats_and_moves_running_ones() {
        let device = Device::Cpu;
        let bn = BatchNorm::new(2, 1e-3, 0.9, &device).unwrap();
        bn.weight
            .set(&Tensor::new(&[2f32, 1.0], &device).unwrap())
            .unwrap();
        bn.bias
            .set(&Tensor::new(&[0.5f32, 0.0], &device).unwrap())
            .unwrap();
        let xs = Tensor::new(&[[1f32, 10.0], [3.0, 10.0]], &device).unwrap();
        let ys = bn.forward(&xs, true).unwrap().to_vec2::<f32>().unwrap();
        // column 0: mean 2, biased var 1 -> (x - 2) / sqrt(1.001) * 2 + 0.5
        let z = 1.0 / 1.001f32.sqrt();
        assert!((ys[0][0] - (0.5 - 2.0 * z)).abs() < 1e-5);
        assert!((ys[1][0] - (0.5 + 2.0 * z)).abs() < 1e-5);
        assert!(ys[0][1].abs() < 1e-6 && ys[1][1].abs() < 1e-6);
        let mean = bn.running_mean.to_vec1::<f32>().unwrap();
        let var = bn.running_var.to_vec1::<f32>().unwrap();
        assert!((mean[0] - 0.2).abs() < 1e-6 && (mean[1] - 1.0).abs() < 1e-6);
        assert!((var[0] - 1.0).abs() < 1e-6 && (var[1] - 0.9).abs() < 1e-6);
        // Inference mode: the running statistics, no update.
        let eval = bn.forward(&xs, false).unwrap().to_vec2::<f32>().unwrap();
        let expect = 2.0 * (1.0 - 0.2) / (1.0f32 + 1e-3).sqrt() + 0.5;
        assert!((eval[0][0] - expect).abs() < 1e-5);
        let expect = (10.0 - 1.0) / (0.9f32 + 1e-3).sqrt();
        assert!((eval[1][1] - expect).abs() < 1e-4);
        assert_eq!(bn.running_mean.to_vec1::<f32>().unwrap(), mean);
        assert!(bn.forward(&xs.narrow(0, 0, 1).unwrap(), true).is_err());
    }

    /// The fused training-mode batch norm and activation: the values, the three gradients and
    /// the running statistics of the tensor form.
    #[test]
    fn fused_training_batch_norm_equals_the_tensor_form() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        for kind in [Kind::Relu, Kind::Tanh] {
            let (plain, fused) = (
                BatchNorm::new(64, 1e-3, 0.9, &device).unwrap(),
                BatchNorm::new(64, 1e-3, 0.9, &device).unwrap(),
            );
            let gamma = (normal_tensor(&mut rng, 1, 64, &device).unwrap() + 1.0)
                .unwrap()
                .reshape(64)
                .unwrap();
            let beta = normal_tensor(&mut rng, 1, 64, &device)
                .unwrap()
                .reshape(64)
                .unwrap();
            for bn in [&plain, &fused] {
                bn.weight.set(&gamma).unwrap();
                bn.bias.set(&beta).unwrap();
            }
            let xs = (normal_tensor(&mut rng, 300, 64, &device).unwrap() * 3.0).unwrap();
            let xs = Var::from_tensor(&(xs + 0.5).unwrap()).unwrap();
            let weights = normal_tensor(&mut rng, 300, 64, &device).unwrap();
            let loss = |ys: &Tensor| (ys * &weights).unwrap().sum_all().unwrap();
            let want = activate(kind, &plain.forward(&xs, true).unwrap()).unwrap();
            let got = fused.forward_train_activated(&xs, kind).unwrap();
            assert!(max_abs_diff(&got, &want) < 1e-5, "{kind:?} values");
            let (want, got) = (
                loss(&want).backward().unwrap(),
                loss(&got).backward().unwrap(),
            );
            for (var, what) in [
                (&xs, "input"),
                (&plain.weight, "scale"),
                (&plain.bias, "shift"),
            ] {
                let other = match what {
                    "input" => &xs,
                    "scale" => &fused.weight,
                    _ => &fused.bias,
                };
                let difference = max_abs_diff(want.get(var).unwrap(), got.get(other).unwrap());
                assert!(difference < 1e-4, "{kind:?} {what} gradient: {difference}");
            }
            for (a, b) in [
                (&plain.running_mean, &fused.running_mean),
                (&plain.running_var, &fused.running_var),
            ] {
                assert!(max_abs_diff(a, b) < 1e-5, "{kind:?} running statistics");
            }
        }
        let bn = BatchNorm::new(3, 1e-3, 0.9, &device).unwrap();
        let one_row = Tensor::new(&[[1f32, 2.0, 3.0]], &device).unwrap();
        assert!(bn.forward_train_activated(&one_row, Kind::Relu).is_err());
    }

    #[test]
    fn row_helpers_equal_broadcasting_with_gradients() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let xs = Var::from_tensor(&normal_tensor(&mut rng, 5, 3, &device).unwrap()).unwrap();
        let v = Var::from_tensor(&normal_tensor(&mut rng, 1, 3, &device).unwrap()).unwrap();
        let loss = |ys: Tensor| ys.tanh().unwrap().sum_all().unwrap();
        let fast = loss(
            (add_rows(&xs, &v).unwrap() * row_mean(&xs).unwrap().broadcast_as((5, 3)).unwrap())
                .unwrap(),
        );
        let plain = loss(
            (xs.broadcast_add(&v).unwrap() * xs.mean_keepdim(0).unwrap().broadcast_as((5, 3)))
                .unwrap(),
        );
        let close = |a: &Tensor, b: &Tensor| {
            assert!(max_abs_diff(a, b) < 1e-5);
        };
        close(&fast, &plain);
        let (fast, plain) = (fast.backward().unwrap(), plain.backward().unwrap());
        close(fast.get(&xs).unwrap(), plain.get(&xs).unwrap());
        close(fast.get(&v).unwrap(), plain.get(&v).unwrap());
        assert_eq!(
            repeat_rows(&Tensor::new(&[1f32, 2.0], &device).unwrap(), 2)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            vec![vec![1.0, 2.0], vec![1.0, 2.0]]
        );
    }

    #[test]
    fn glorot_stays_in_bounds_and_repeats() {
        let draw = || {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            glorot_uniform(&mut rng, 10, 20, 1000)
        };
        let values = draw();
        let limit = (6.0f32 / 30.0).sqrt();
        assert!(values.iter().all(|v| v.abs() <= limit));
        assert!(values.iter().any(|v| v.abs() > limit * 0.9));
        assert_eq!(values, draw());
    }
}
