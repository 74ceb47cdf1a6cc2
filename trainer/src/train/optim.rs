//! Adam as TensorFlow's `AdamOptimizer` (which medGAN uses), with medGAN's L2 penalty folded in.
//!
//! TensorFlow's update differs from the textbook one in where epsilon goes:
//! `lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`, `w -= lr_t * m / (sqrt(v) + eps)`.
//! medGAN adds `l2_scale * sum(w^2) / 2` over the trained tensors to each loss; its gradient,
//! `l2_scale * w`, is added to each tensor's gradient here instead of building it into the graph.
//!
//! medGAN's `variable_scope(regularizer=...)` covers every variable it creates, biases and
//! batch-norm scale/shift included; as a term of a loss it only moves the tensors that loss
//! trains, so the penalised tensors are exactly each optimiser's own:
//! - autoencoder: `encoder.layers.*.{weight,bias}`, `decoder.layers.*.{weight,bias}`;
//! - discriminator: `discriminator.layers.*.{weight,bias}`;
//! - generator: `generator.blocks.*.linear.weight`, `generator.blocks.*.bn.{weight,bias}` and
//!   `decoder.layers.*.{weight,bias}` (never the running statistics).

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::config::OptimiserConfig;

mod fused;

/// One optimiser: its tensors, their moments and the number of updates so far.
pub(crate) struct Adam {
    params: Vec<(String, Var)>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    steps: u64,
    config: OptimiserConfig,
}

impl Adam {
    pub(crate) fn new(params: Vec<(String, Var)>, config: &OptimiserConfig) -> Result<Self> {
        let zeros = |params: &[(String, Var)]| -> Result<Vec<Tensor>> {
            params.iter().map(|(_, var)| var.zeros_like()).collect()
        };
        Ok(Self {
            first_moments: zeros(&params)?,
            second_moments: zeros(&params)?,
            params,
            steps: 0,
            config: config.clone(),
        })
    }

    /// Updates every tensor from its gradient plus the L2 term; a tensor without a gradient
    /// (not reached by the loss) still feels the L2 pull, as it would in medGAN's summed loss.
    ///
    /// On the CPU the moments and weights are updated in place by three fused passes
    /// ([`fused`]), which compute the same f32 operations in the same order as the tensor
    /// formulation of the other devices but allocate nothing.
    pub(crate) fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = &self.config;
        self.steps += 1;
        let t = self.steps as f64;
        let step_size = c.learning_rate * (1.0 - c.beta2.powf(t)).sqrt() / (1.0 - c.beta1.powf(t));
        for (i, (_, var)) in self.params.iter().enumerate() {
            let weights = var.as_tensor();
            if weights.device().is_cpu() {
                let grad = match grads.get(weights) {
                    Some(grad) => grad.contiguous()?,
                    None => weights.zeros_like()?,
                };
                fused::step(
                    weights,
                    &self.first_moments[i],
                    &self.second_moments[i],
                    &grad,
                    c,
                    step_size,
                )?;
                continue;
            }
            let decay = weights.affine(c.l2_scale, 0.0)?;
            let grad = match grads.get(weights) {
                Some(grad) => (grad + decay)?,
                None => decay,
            };
            let m = ((&self.first_moments[i] * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
            let v = ((&self.second_moments[i] * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let update = (&m / (v.sqrt()? + c.epsilon)?)?;
            var.set(&(weights - (update * step_size)?)?)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
        }
        Ok(())
    }

    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// Moments as `{prefix}.m.{name}` and `{prefix}.v.{name}`, for a checkpoint written at
    /// once: they share storage with the moments, which the CPU update changes in place.
    pub(crate) fn state_tensors(&self, prefix: &str) -> BTreeMap<String, Tensor> {
        let mut state = BTreeMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            state.insert(format!("{prefix}.m.{name}"), self.first_moments[i].clone());
            state.insert(format!("{prefix}.v.{name}"), self.second_moments[i].clone());
        }
        state
    }

    /// Restores what [`Adam::state_tensors`] saved, with the update count.
    pub(crate) fn restore(
        &mut self,
        prefix: &str,
        tensors: &HashMap<String, Tensor>,
        steps: u64,
    ) -> std::result::Result<(), String> {
        for (i, (name, var)) in self.params.iter().enumerate() {
            for (kind, slot) in [
                ("m", &mut self.first_moments[i]),
                ("v", &mut self.second_moments[i]),
            ] {
                let key = format!("{prefix}.{kind}.{name}");
                let saved = tensors
                    .get(&key)
                    .ok_or_else(|| format!("missing tensor `{key}`"))?;
                if saved.dims() != var.dims() {
                    return Err(format!("tensor `{key}` has shape {:?}", saved.dims()));
                }
                // A copy: the CPU update writes into the moments in place.
                *slot = saved
                    .to_device(var.device())
                    .and_then(|t| t.copy())
                    .map_err(|e| format!("tensor `{key}`: {e}"))?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_steps_match_tensorflow_formula() {
        let device = Device::Cpu;
        let w = Var::new(&[1.0f32, -2.0], &device).unwrap();
        let config = OptimiserConfig {
            learning_rate: 0.1,
            l2_scale: 0.5,
            ..OptimiserConfig::default()
        };
        let mut adam = Adam::new(vec![("w".into(), w.clone())], &config).unwrap();
        // loss = sum(3 * w) -> gradient 3, plus L2 gradient 0.5 * w.
        let mut expect = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            let loss = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap();
            adam.step(&loss.backward().unwrap()).unwrap();
            let lr_t = 0.1 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
            for j in 0..2 {
                let g = 3.0 + 0.5 * expect[j];
                m[j] = 0.9 * m[j] + 0.1 * g;
                v[j] = 0.999 * v[j] + 0.001 * g * g;
                expect[j] -= lr_t * m[j] / (v[j].sqrt() + 1e-8);
            }
        }
        let got = w.to_vec1::<f32>().unwrap();
        for j in 0..2 {
            assert!(
                (got[j] as f64 - expect[j]).abs() < 1e-5,
                "{got:?} vs {expect:?}"
            );
        }
        assert_eq!(adam.steps(), 3);
        assert_eq!(adam.state_tensors("opt").len(), 2);
    }
}
