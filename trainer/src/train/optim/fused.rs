//! Adam's update as one in-place pass over CPU storage, without temporary tensors.
//!
//! The tensor formulation allocates a dozen tensors the size of every weight per update, and on
//! the CPU that allocation (page faults on fresh memory) dominated autoencoder pre-training.
//! The pass evaluates exactly the f32 expressions candle evaluates for the tensor formulation
//! (`x * f` is candle's `affine(f, 0)`, i.e. `x * f + 0`), in the same order, so both give the
//! same bits.
//!
//! candle lends a tensor's storage mutably only inside an in-place operation on that tensor,
//! and an update writes three (weights and both moments): the pass runs inside three nested
//! in-place operations, each lending its slice to the next. One pass instead of one per
//! tensor reads the weights and the gradient once (the three passes it replaces were a sixth
//! of an autoencoder step).

use std::sync::Mutex;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Tensor, bail};

use crate::config::OptimiserConfig;
use crate::model::parallel::{block_len, run_jobs, threads_for, with_wide_vectors};

/// Fewest values per thread: below this waking a second thread costs more than it saves (a
/// pass over 100,000 values takes about 20 microseconds).
const MIN_VALUES_PER_THREAD: usize = 1 << 18;

/// The per-value update, given the step's constants:
/// `g' = g + w * l2`, `m = m * beta1 + g' * (1 - beta1)`, `v = v * beta2 + g'^2 * (1 - beta2)`,
/// `w = w - m / (sqrt(v) + eps) * step`.
#[derive(Clone, Copy)]
struct Update {
    beta1: f32,
    rest1: f32,
    beta2: f32,
    rest2: f32,
    l2: f32,
    step: f32,
    eps: f32,
}

impl Update {
    #[inline(always)]
    fn apply(&self, w: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        let grad = g + (*w * self.l2 + 0.0);
        *m = (*m * self.beta1 + 0.0) + (grad * self.rest1 + 0.0);
        *v = (*v * self.beta2 + 0.0) + (grad * grad * self.rest2 + 0.0);
        let update = *m / (v.sqrt() * 1.0 + self.eps);
        *w -= update * self.step + 0.0;
    }

    /// The update over whole slices of one length, split between threads when large.
    fn apply_all(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) -> Result<()> {
        if m.len() != w.len() || v.len() != w.len() || g.len() != w.len() {
            bail!(
                "adam: weights of {} values with moments of {} and {} and a gradient of {}",
                w.len(),
                m.len(),
                v.len(),
                g.len()
            );
        }
        let threads = threads_for(w.len(), MIN_VALUES_PER_THREAD);
        let block = block_len(w.len(), threads, 2, 16);
        let blocks = w
            .chunks_mut(block)
            .zip(m.chunks_mut(block))
            .zip(v.chunks_mut(block).zip(g.chunks(block)));
        run_jobs(blocks, threads, |((w, m), (v, g))| {
            // A square root and a division per value: eight at a time where the CPU can.
            with_wide_vectors(|| {
                let values = w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut().zip(g));
                for ((w, m), (v, &g)) in values {
                    self.apply(w, m, v, g);
                }
            })
        });
        Ok(())
    }
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
    let update = Update {
        beta1: config.beta1 as f32,
        rest1: (1.0 - config.beta1) as f32,
        beta2: config.beta2 as f32,
        rest2: (1.0 - config.beta2) as f32,
        l2: config.l2_scale as f32,
        step: step_size as f32,
        eps: config.epsilon as f32,
    };
    weights.inplace_op2(
        grad,
        &LendWeights {
            first,
            second,
            update,
        },
    )
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

/// The slice a nested operation lends to the next, taken once.
fn take<'a>(slot: &Mutex<Option<&'a mut [f32]>>, op: &str) -> Result<&'a mut [f32]> {
    match slot.lock().ok().and_then(|mut slot| slot.take()) {
        Some(values) => Ok(values),
        None => bail!("{op}: ran twice"),
    }
}

/// The outer operation: in place in the weights, reading the gradient; lends both to
/// [`LendFirst`] on the first moment.
struct LendWeights<'a> {
    first: &'a Tensor,
    second: &'a Tensor,
    update: Update,
}

impl InplaceOp2 for LendWeights<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        weights: &mut CpuStorage,
        weights_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<()> {
        let weights = values_mut(weights, weights_layout, self.name())?;
        let grad = values(grad, grad_layout, self.name())?;
        self.first.inplace_op1(&LendFirst {
            second: self.second,
            update: self.update,
            weights: Mutex::new(Some(weights)),
            grad,
        })
    }
}

/// In place in the first moment; lends it, the weights and the gradient to [`UpdateAll`] on
/// the second moment.
struct LendFirst<'a> {
    second: &'a Tensor,
    update: Update,
    weights: Mutex<Option<&'a mut [f32]>>,
    grad: &'a [f32],
}

impl InplaceOp1 for LendFirst<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(&self, first: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let first = values_mut(first, layout, self.name())?;
        self.second.inplace_op1(&UpdateAll {
            update: self.update,
            weights: Mutex::new(Some(take(&self.weights, self.name())?)),
            first: Mutex::new(Some(first)),
            grad: self.grad,
        })
    }
}

/// The innermost operation, in place in the second moment, with every slice at hand.
struct UpdateAll<'a> {
    update: Update,
    weights: Mutex<Option<&'a mut [f32]>>,
    first: Mutex<Option<&'a mut [f32]>>,
    grad: &'a [f32],
}

impl InplaceOp1 for UpdateAll<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(&self, second: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let second = values_mut(second, layout, self.name())?;
        let weights = take(&self.weights, self.name())?;
        let first = take(&self.first, self.name())?;
        self.update.apply_all(weights, first, second, self.grad)
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
