//! Adam's update as three in-place passes over CPU storage, without temporary tensors.
//!
//! The tensor formulation allocates a dozen tensors the size of every weight per update, and on
//! the CPU that allocation (page faults on fresh memory) dominated autoencoder pre-training.
//! Each pass here evaluates exactly the f32 expressions candle evaluates for the tensor
//! formulation (`x * f` is candle's `affine(f, 0)`, i.e. `x * f + 0`), in the same order, so
//! both give the same bits.

use candle_core::{CpuStorage, InplaceOp3, Layout, Result, Tensor, bail};

use crate::config::OptimiserConfig;
use crate::model::parallel::{block_len, run_jobs, threads_for};

/// `m = m * beta1 + (g + w * l2) * (1 - beta1)`, in place in `m`; sources `g`, `w`.
struct FirstMoment {
    beta: f32,
    rest: f32,
    l2: f32,
}

/// `v = v * beta2 + (g + w * l2)^2 * (1 - beta2)`, in place in `v`; sources `g`, `w`.
struct SecondMoment {
    beta: f32,
    rest: f32,
    l2: f32,
}

/// `w = w - m / (sqrt(v) + eps) * step`, in place in `w`; sources `m`, `v`.
struct WeightUpdate {
    step: f32,
    eps: f32,
}

/// Updates `weights`, `first` and `second` in place from `grad` (all contiguous f32 of one
/// shape, each its own storage).
pub(super) fn step(
    weights: &Tensor,
    first: &Tensor,
    second: &Tensor,
    grad: &Tensor,
    config: &OptimiserConfig,
    step_size: f64,
) -> Result<()> {
    let l2 = config.l2_scale as f32;
    first.inplace_op3(
        grad,
        weights,
        &FirstMoment {
            beta: config.beta1 as f32,
            rest: (1.0 - config.beta1) as f32,
            l2,
        },
    )?;
    second.inplace_op3(
        grad,
        weights,
        &SecondMoment {
            beta: config.beta2 as f32,
            rest: (1.0 - config.beta2) as f32,
            l2,
        },
    )?;
    let update = WeightUpdate {
        step: step_size as f32,
        eps: config.epsilon as f32,
    };
    weights.inplace_op3(first, second, &update)
}

/// The contiguous f32 values of a storage, or an error naming the op.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => Ok(&values[start..end]),
        _ => bail!("{op}: needs contiguous f32 tensors"),
    }
}

fn values_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => Ok(&mut values[start..end]),
        _ => bail!("{op}: needs contiguous f32 tensors"),
    }
}

/// Fewest values per thread in a pass: below this waking a second thread costs more than it
/// saves (a pass over 100,000 values takes about 15 microseconds).
const MIN_VALUES_PER_THREAD: usize = 1 << 18;

/// Runs `update(dst, a, b)` over three equally long slices, in blocks split between threads.
fn zip3(
    op: &str,
    dst: (&mut CpuStorage, &Layout),
    a: (&CpuStorage, &Layout),
    b: (&CpuStorage, &Layout),
    update: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Result<()> {
    let dst = values_mut(dst.0, dst.1, op)?;
    let a = values(a.0, a.1, op)?;
    let b = values(b.0, b.1, op)?;
    if a.len() != dst.len() || b.len() != dst.len() {
        bail!(
            "{op}: operands of {}, {} and {} values",
            dst.len(),
            a.len(),
            b.len()
        );
    }
    let threads = threads_for(dst.len(), MIN_VALUES_PER_THREAD);
    let block = block_len(dst.len(), threads, 2, 16);
    let blocks = dst
        .chunks_mut(block)
        .zip(a.chunks(block))
        .zip(b.chunks(block));
    run_jobs(blocks, threads, |((dst, a), b)| {
        for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
            *d = update(*d, x, y);
        }
    });
    Ok(())
}

impl InplaceOp3 for FirstMoment {
    fn name(&self) -> &'static str {
        "adam-first-moment"
    }

    fn cpu_fwd(
        &self,
        m: &mut CpuStorage,
        m_l: &Layout,
        g: &CpuStorage,
        g_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<()> {
        zip3(self.name(), (m, m_l), (g, g_l), (w, w_l), |m, g, w| {
            let grad = g + (w * self.l2 + 0.0);
            (m * self.beta + 0.0) + (grad * self.rest + 0.0)
        })
    }
}

impl InplaceOp3 for SecondMoment {
    fn name(&self) -> &'static str {
        "adam-second-moment"
    }

    fn cpu_fwd(
        &self,
        v: &mut CpuStorage,
        v_l: &Layout,
        g: &CpuStorage,
        g_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<()> {
        zip3(self.name(), (v, v_l), (g, g_l), (w, w_l), |v, g, w| {
            let grad = g + (w * self.l2 + 0.0);
            (v * self.beta + 0.0) + (grad * grad * self.rest + 0.0)
        })
    }
}

impl InplaceOp3 for WeightUpdate {
    fn name(&self) -> &'static str {
        "adam-weight-update"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        w_l: &Layout,
        m: &CpuStorage,
        m_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> Result<()> {
        zip3(self.name(), (w, w_l), (m, m_l), (v, v_l), |w, m, v| {
            let update = m / (v.sqrt() * 1.0 + self.eps);
            w - (update * self.step + 0.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Adam;
    use crate::config::OptimiserConfig;
    use candle_core::backprop::GradStore;
    use candle_core::{Device, Tensor, Var};

    /// The tensor formulation the fused passes replace, written out.
    fn plain_step(
        w: &Tensor,
        m: &Tensor,
        v: &Tensor,
        g: &Tensor,
        c: &OptimiserConfig,
        step: f64,
    ) -> (Tensor, Tensor, Tensor) {
        let grad = (g + w.affine(c.l2_scale, 0.0).unwrap()).unwrap();
        let m = ((m * c.beta1).unwrap() + (&grad * (1.0 - c.beta1)).unwrap()).unwrap();
        let v =
            ((v * c.beta2).unwrap() + (grad.sqr().unwrap() * (1.0 - c.beta2)).unwrap()).unwrap();
        let update = (&m / (v.sqrt().unwrap() + c.epsilon).unwrap()).unwrap();
        let w = (w - (update * step).unwrap()).unwrap();
        (w, m, v)
    }

    #[test]
    fn fused_passes_give_the_bits_of_the_tensor_formulation() {
        let device = Device::Cpu;
        let values =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin() * 3.0).collect() };
        let n = 257;
        let w0 = Tensor::from_vec(values(n, 0.37), n, &device).unwrap();
        let config = OptimiserConfig::default();
        let var = Var::from_tensor(&w0).unwrap();
        let mut adam = Adam::new(vec![("w".into(), var.clone())], &config).unwrap();
        let (mut w, mut m, mut v) = (
            w0.copy().unwrap(),
            w0.zeros_like().unwrap(),
            w0.zeros_like().unwrap(),
        );
        for t in 1..=4 {
            let g = Tensor::from_vec(values(n, 0.11 * t as f32), n, &device).unwrap();
            // A loss whose gradient with respect to the weights is `g`.
            let loss = (var.as_tensor() * &g).unwrap().sum_all().unwrap();
            let grads: GradStore = loss.backward().unwrap();
            adam.step(&grads).unwrap();
            let tf = t as f64;
            let step = config.learning_rate * (1.0 - config.beta2.powf(tf)).sqrt()
                / (1.0 - config.beta1.powf(tf));
            (w, m, v) = plain_step(&w, &m, &v, &g, &config, step);
            assert_eq!(
                var.as_tensor().to_vec1::<f32>().unwrap(),
                w.to_vec1::<f32>().unwrap(),
                "step {t}"
            );
        }
        let state = adam.state_tensors("o");
        assert_eq!(
            state["o.m.w"].to_vec1::<f32>().unwrap(),
            m.to_vec1::<f32>().unwrap()
        );
        assert_eq!(
            state["o.v.w"].to_vec1::<f32>().unwrap(),
            v.to_vec1::<f32>().unwrap()
        );
    }
}
