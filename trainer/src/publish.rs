//! Turning a trained model into a bundle: batch-norm burn-in, then the verified export.

use std::path::Path;
use std::time::Duration;

use candle_core::{Device, Tensor};
use medgan_sample::DataType;
use medgan_sample::Manifest;
use medgan_sample::bundle::manifest::{DataSummary, RunSummary};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::PatientMatrix;
use crate::export::{CardInfo, ExportError, ExportInput, ReferenceForward, write_bundle};
use crate::model::MedganModel;

/// Generator batches run in training mode before export, as medGAN's sampler does, so that the
/// running statistics follow the final generator (each batch moves them 1% of the way).
pub const DEFAULT_BURN_IN_BATCHES: usize = 500;
/// Rows per burn-in batch (the GAN's default batch size).
pub const BURN_IN_BATCH_SIZE: usize = 1000;
/// Seed of the burn-in noise; fixed so that the same run always exports the same bundle.
pub const BURN_IN_SEED: u64 = 0x6d65_6467_616e;

/// File in a run folder recording how the run was made, read back by `export`.
pub const RUN_RECORD_FILE: &str = "run.json";

/// How a training run was made: what the model card and manifest say about it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// The command line that trained the model, shell-quoted.
    pub command: String,
    /// The input as the user named it.
    pub source: String,
    pub autoencoder_epochs: usize,
    pub gan_epochs: usize,
    pub autoencoder_seconds: f64,
    pub gan_seconds: f64,
}

impl RunRecord {
    pub fn training_time(&self) -> Duration {
        Duration::from_secs_f64(self.autoencoder_seconds + self.gan_seconds)
    }
}

/// What else the export needs to know.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub burn_in_batches: usize,
    /// Credit and licence of the training data, copied into the model card.
    pub data_credit: String,
    /// Replace an existing bundle at the destination.
    pub overwrite: bool,
    /// Markdown appended to the model card (e.g. evaluation headline numbers); empty for none.
    pub card_appendix: String,
}

/// The trained model as the export's yardstick: inference mode, on the CPU.
struct Reference<'a>(&'a MedganModel);

impl ReferenceForward for Reference<'_> {
    fn generator(&self, noise: &Tensor) -> candle_core::Result<Tensor> {
        let on_device = noise.to_device(self.0.device())?;
        self.0
            .generate_embedding(&on_device, false)?
            .to_device(&Device::Cpu)
    }

    fn decoder(&self, embedding: &Tensor) -> candle_core::Result<Tensor> {
        let on_device = embedding.to_device(self.0.device())?;
        self.0.decode(&on_device)?.to_device(&Device::Cpu)
    }
}

/// Per code, the share of patients having it (binary) or its mean count (count data).
pub fn real_prevalence(data: &PatientMatrix) -> Vec<f64> {
    let patients = data.n_patients().max(1) as f64;
    let mut totals = vec![0f64; data.n_codes()];
    for patient in 0..data.n_patients() {
        let (cols, vals) = data.row(patient);
        for (&col, &val) in cols.iter().zip(vals) {
            totals[col as usize] += match data.data_type() {
                DataType::Binary => 1.0,
                DataType::Count => val as f64,
            };
        }
    }
    totals.into_iter().map(|total| total / patients).collect()
}

/// Refreshes the batch-norm statistics of `model` and writes its verified bundle to `out_dir`.
pub fn publish(
    model: &MedganModel,
    config: &TrainConfig,
    train: &PatientMatrix,
    record: &RunRecord,
    options: &PublishOptions,
    out_dir: &Path,
) -> Result<Manifest, ExportError> {
    model
        .refresh_batch_norm(options.burn_in_batches, BURN_IN_BATCH_SIZE, BURN_IN_SEED)
        .map_err(ExportError::candle("batch-norm burn-in"))?;
    let weights = model.named_tensors();
    let config_toml = config
        .to_toml_string()
        .map_err(|e| ExportError::Input(e.to_string()))?;
    let config_json =
        serde_json::to_value(config).map_err(|e| ExportError::Input(e.to_string()))?;
    let input = ExportInput {
        architecture: model.architecture(),
        weights: &weights,
        features: train.codes(),
        training_data: DataSummary {
            patients: train.n_patients(),
            codes: train.n_codes(),
            density: train.density(),
            source: record.source.clone(),
        },
        training_run: RunSummary {
            autoencoder_epochs: record.autoencoder_epochs,
            gan_epochs: record.gan_epochs,
            seed: config.seed,
            config: config_json,
        },
        config_toml: &config_toml,
        card: CardInfo {
            command: record.command.clone(),
            training_time: record.training_time(),
            data_credit: options.data_credit.clone(),
            real_prevalence: real_prevalence(train),
            appendix: options.card_appendix.clone(),
        },
    };
    write_bundle(&input, &Reference(model), out_dir, options.overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prevalence_is_share_for_binary_and_mean_for_counts() {
        let codes = vec!["a".to_string(), "b".to_string()];
        let ids = vec!["p".to_string(), "q".to_string()];
        let binary = PatientMatrix::from_csr(
            DataType::Binary,
            codes.clone(),
            ids.clone(),
            vec![0, 2, 3],
            vec![0, 1, 1],
            vec![1, 1, 1],
        )
        .unwrap();
        assert_eq!(real_prevalence(&binary), vec![0.5, 1.0]);
        let counts = PatientMatrix::from_csr(
            DataType::Count,
            codes,
            ids,
            vec![0, 1, 2],
            vec![1, 1],
            vec![3, 4],
        )
        .unwrap();
        assert_eq!(real_prevalence(&counts), vec![0.0, 3.5]);
    }
}
