//! A few training steps recorded with their inputs and results, so that another
//! implementation of medGAN (the PyTorch reference in `trainer/bench`) can replay them and
//! show that it computes the same numbers.
//!
//! The trace holds the initial tensors (`init.<name>`), each autoencoder batch
//! (`ae.batch.<k>`, dense) with its loss (`ae.loss.<k>`), each GAN step's real batches
//! (`gan.real.<s>.<d>`), noise (`gan.noise.<s>.d<d>`, `gan.noise.<s>.g`) and losses
//! (`gan.loss.<s>.d<d>`, `gan.loss.<s>.g`), and the tensors after each sequence
//! (`ae.after.<name>`, `gan.after.<name>`). Both sequences start from the initial tensors with
//! fresh optimisers. The metadata key `config` holds the hyperparameters as JSON.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::seq::index;

use super::autoencoder::autoencoder_step;
use super::batch;
use super::gan::{RealBatch, discriminator_step, generator_step};
use super::{TrainError, TrainingState};
use crate::config::TrainConfig;
use crate::data::PatientMatrix;
use crate::model::layers::normal_tensor;
use crate::model::{MedganModel, write_safetensors};

/// Records `autoencoder_steps` autoencoder updates and `gan_steps` GAN steps (each with the
/// configured discriminator updates and one generator update) on `data` into `path`.
pub fn write_trace(
    data: &PatientMatrix,
    config: &TrainConfig,
    device: &Device,
    path: &Path,
    autoencoder_steps: usize,
    gan_steps: usize,
) -> Result<(), TrainError> {
    config.validate()?;
    let mut tensors = BTreeMap::new();
    let fresh_state = || -> Result<TrainingState, TrainError> {
        let arch = config.architecture(data.n_codes(), data.data_type());
        let mut model = MedganModel::new(&arch, device, config.seed)?;
        model.set_batch_norm_decay(config.generator.batch_norm_decay);
        TrainingState::new(model, config)
    };
    let mut buffer = Vec::new();
    let patients = data.n_patients();

    let mut state = fresh_state()?;
    for (name, tensor) in state.model.named_tensors() {
        tensors.insert(format!("init.{name}"), tensor);
    }
    let ae_batch = config.autoencoder.batch_size.min(patients);
    for k in 0..autoencoder_steps {
        let rows = index::sample(&mut state.rng, patients, ae_batch).into_vec();
        tensors.insert(
            format!("ae.batch.{k}"),
            batch::dense(data, &rows, &mut buffer, device)?,
        );
        let loss = autoencoder_step(&mut state, data, &rows, &mut buffer)?;
        tensors.insert(format!("ae.loss.{k}"), scalar(loss, device)?);
    }
    for (name, tensor) in state.model.named_tensors() {
        if name.starts_with("encoder.") || name.starts_with("decoder.") {
            tensors.insert(format!("ae.after.{name}"), tensor);
        }
    }

    let mut state = fresh_state()?;
    let gan_batch = config.training.batch_size.min(patients);
    let noise_dim = state.model.architecture().noise_dim;
    for s in 0..gan_steps {
        for d in 0..config.training.discriminator_steps {
            let rows = index::sample(&mut state.rng, patients, gan_batch).into_vec();
            tensors.insert(
                format!("gan.real.{s}.{d}"),
                batch::dense(data, &rows, &mut buffer, device)?,
            );
            let real = RealBatch::new(data, &rows, &mut buffer, device)?;
            let noise = normal_tensor(&mut state.rng, gan_batch, noise_dim, device)?;
            let loss = discriminator_step(&mut state, &real, &noise)?;
            tensors.insert(format!("gan.noise.{s}.d{d}"), noise);
            tensors.insert(format!("gan.loss.{s}.d{d}"), scalar(loss, device)?);
        }
        let noise = normal_tensor(&mut state.rng, gan_batch, noise_dim, device)?;
        let loss = generator_step(&mut state, &noise)?;
        tensors.insert(format!("gan.noise.{s}.g"), noise);
        tensors.insert(format!("gan.loss.{s}.g"), scalar(loss, device)?);
    }
    for (name, tensor) in state.model.named_tensors() {
        tensors.insert(format!("gan.after.{name}"), tensor);
    }

    let optimiser = &config.optimiser;
    let hyperparameters = serde_json::json!({
        "learning_rate": optimiser.learning_rate,
        "beta1": optimiser.beta1,
        "beta2": optimiser.beta2,
        "epsilon": optimiser.epsilon,
        "l2_scale": optimiser.l2_scale,
        "batch_norm_eps": config.generator.batch_norm_eps,
        "batch_norm_decay": config.generator.batch_norm_decay,
        "discriminator_steps": config.training.discriminator_steps,
        "data_type": data.data_type().to_string(),
    });
    let metadata = HashMap::from([("config".to_string(), hyperparameters.to_string())]);
    write_safetensors(path, &tensors, metadata)?;
    Ok(())
}

/// The largest differences between two traces of the same steps (on two devices, say).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceDifference {
    /// Largest `|a - b| / max(1, |a|)` over the recorded losses, with the loss's name.
    pub loss: (String, f64),
    /// Largest `|a - b|` over every entry of the tensors after training, with the name.
    pub tensor: (String, f64),
}

/// Compares the losses and final tensors of two traces written by [`write_trace`] with the
/// same data, configuration and step counts.
pub fn compare_traces(a: &Path, b: &Path) -> Result<TraceDifference, TrainError> {
    let device = Device::Cpu;
    let (a_tensors, _) = crate::model::read_safetensors(a, &device)?;
    let (b_tensors, _) = crate::model::read_safetensors(b, &device)?;
    let mut loss = (String::new(), 0.0f64);
    let mut tensor = (String::new(), 0.0f64);
    for (name, a_value) in &a_tensors {
        let is_loss = name.starts_with("ae.loss.") || name.starts_with("gan.loss.");
        if !is_loss && !name.contains(".after.") {
            continue;
        }
        let bad = |why: String| {
            TrainError::Model(crate::model::ModelError::BadFile {
                path: b.to_path_buf(),
                why,
            })
        };
        let b_value = b_tensors
            .get(name)
            .ok_or_else(|| bad(format!("the trace has no `{name}`")))?;
        if b_value.dims() != a_value.dims() {
            return Err(bad(format!(
                "`{name}` has shape {:?}, the other trace {:?}",
                b_value.dims(),
                a_value.dims()
            )));
        }
        let a_values = a_value.flatten_all()?.to_vec1::<f32>()?;
        let b_values = b_value.flatten_all()?.to_vec1::<f32>()?;
        let worst = a_values
            .iter()
            .zip(&b_values)
            .map(|(&x, &y)| {
                let diff = (x as f64 - y as f64).abs();
                if is_loss {
                    diff / (x as f64).abs().max(1.0)
                } else {
                    diff
                }
            })
            .fold(0.0f64, f64::max);
        let slot = if is_loss { &mut loss } else { &mut tensor };
        if worst > slot.1 || slot.0.is_empty() {
            *slot = (name.clone(), worst);
        }
    }
    Ok(TraceDifference { loss, tensor })
}

fn scalar(value: f32, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::new(&[value], device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::read_safetensors;

    #[test]
    fn trace_holds_inputs_losses_and_results() {
        let data = crate::train::tests::synthetic(40, 12, medgan_sample::DataType::Binary, 3);
        let mut config = TrainConfig::default();
        config.autoencoder.batch_size = 8;
        config.training.batch_size = 10;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.safetensors");
        write_trace(&data, &config, &Device::Cpu, &path, 2, 1).unwrap();
        let (tensors, metadata) = read_safetensors(&path, &Device::Cpu).unwrap();
        assert_eq!(tensors["ae.batch.1"].dims(), &[8, data.n_codes()]);
        assert_eq!(tensors["gan.real.0.1"].dims(), &[10, data.n_codes()]);
        assert_eq!(tensors["gan.noise.0.g"].dims()[0], 10);
        assert!(tensors.contains_key("gan.loss.0.d1"));
        assert!(tensors.contains_key("gan.after.generator.blocks.0.bn.running_mean"));
        // Training moved the weights away from where both sequences started.
        let init = &tensors["init.decoder.layers.0.weight"];
        for after in [
            "ae.after.decoder.layers.0.weight",
            "gan.after.decoder.layers.0.weight",
        ] {
            let moved = (init - &tensors[after]).unwrap().abs().unwrap();
            let moved = moved.max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(moved > 0.0, "{after} did not move");
        }
        // The discriminator trains in the GAN sequence only.
        assert!(!tensors.contains_key("ae.after.discriminator.layers.0.weight"));
        let recorded: serde_json::Value = serde_json::from_str(&metadata["config"]).unwrap();
        assert_eq!(recorded["discriminator_steps"], 2);
        // The losses recorded are the finite values the steps returned.
        let loss = tensors["ae.loss.0"].to_vec1::<f32>().unwrap()[0];
        assert!(loss.is_finite() && loss > 0.0);

        // The same steps again give the same trace; another seed does not.
        let again = dir.path().join("again.safetensors");
        write_trace(&data, &config, &Device::Cpu, &again, 2, 1).unwrap();
        let same = compare_traces(&path, &again).unwrap();
        assert_eq!((same.loss.1, same.tensor.1), (0.0, 0.0));
        config.seed += 1;
        let other = dir.path().join("other.safetensors");
        write_trace(&data, &config, &Device::Cpu, &other, 2, 1).unwrap();
        let differ = compare_traces(&path, &other).unwrap();
        assert!(differ.loss.1 > 1e-3 && differ.tensor.1 > 1e-3, "{differ:?}");
    }
}
