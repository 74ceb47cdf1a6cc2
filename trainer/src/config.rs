//! The training configuration: one serde struct (TOML), every default a named constant.
//!
//! The defaults are medGAN's (Choi et al. 2017, `medgan.py` and its command line). The resolved
//! configuration is saved next to every run as `config.toml`.

use std::path::{Path, PathBuf};

use medgan_sample::DataType;
use serde::{Deserialize, Serialize};

use crate::model::Architecture;

/// Seed of every random draw of a run: initial weights, split, batches and noise.
pub const DEFAULT_SEED: u64 = 1234;
/// Share of patients held out for validation (medGAN: 10%).
pub const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

/// Encoder widths; the last is the embedding (medGAN `--embed_size` 128, no extra layers).
pub const DEFAULT_EMBEDDING_DIMS: [usize; 1] = [128];
/// Autoencoder pre-training epochs (medGAN `--n_pretrain_epoch`).
pub const DEFAULT_AUTOENCODER_EPOCHS: usize = 100;
/// Autoencoder pre-training batch size (medGAN `--n_pretrain_batch_size`).
pub const DEFAULT_AUTOENCODER_BATCH_SIZE: usize = 100;

/// Width of the generator's noise (medGAN `--noise_size`).
pub const DEFAULT_NOISE_DIM: usize = 128;
/// Generator block widths: medGAN's `--generator_size (128, 128)` plus the embedding block.
pub const DEFAULT_GENERATOR_DIMS: [usize; 3] = [128, 128, 128];
/// Batch-norm running statistics: `running = decay * running + (1 - decay) * batch`.
pub const DEFAULT_BATCH_NORM_DECAY: f64 = 0.99;
/// Batch-norm epsilon (TensorFlow's `batch_norm` default, which medGAN keeps).
pub const DEFAULT_BATCH_NORM_EPS: f64 = 1e-3;

/// Discriminator hidden widths before the sigmoid output (medGAN `--discriminator_size`).
pub const DEFAULT_DISCRIMINATOR_DIMS: [usize; 2] = [256, 128];

/// Adam learning rate (TensorFlow's `AdamOptimizer` default).
pub const DEFAULT_LEARNING_RATE: f64 = 1e-3;
/// Adam first-moment decay.
pub const DEFAULT_BETA1: f64 = 0.9;
/// Adam second-moment decay.
pub const DEFAULT_BETA2: f64 = 0.999;
/// Adam epsilon, added to the square root of the second moment.
pub const DEFAULT_ADAM_EPSILON: f64 = 1e-8;
/// L2 penalty `scale * sum(w^2) / 2` on every trained tensor (medGAN `--L2`).
pub const DEFAULT_L2_SCALE: f64 = 1e-3;

/// GAN epochs (medGAN `--n_epoch`).
pub const DEFAULT_GAN_EPOCHS: usize = 1000;
/// GAN batch size (medGAN `--batch_size`).
pub const DEFAULT_GAN_BATCH_SIZE: usize = 1000;
/// Discriminator updates per step (medGAN `--n_discriminator_update`).
pub const DEFAULT_DISCRIMINATOR_STEPS: usize = 2;
/// Generator updates per step (medGAN `--n_generator_update`).
pub const DEFAULT_GENERATOR_STEPS: usize = 1;
/// Write a checkpoint every this many epochs of either phase; 0 writes only the last one.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 10;
/// Checkpoints kept on disk (the oldest are removed); 0 keeps them all.
pub const DEFAULT_CHECKPOINT_KEEP: usize = 3;
/// Measure the quality curve (dimension-wise r, codes generated) every this many GAN epochs;
/// 0 turns it off.
pub const DEFAULT_QUALITY_EVERY: usize = 10;
/// Synthetic records drawn for each point of the quality curve.
pub const DEFAULT_QUALITY_ROWS: usize = 1000;

/// Everything a training run needs besides the data and where to write.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub seed: u64,
    /// Share of patients held out for validation, in (0, 1).
    pub validation_split: f64,
    pub autoencoder: AutoencoderConfig,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
    pub optimiser: OptimiserConfig,
    pub training: GanTrainingConfig,
}

/// The autoencoder and its pre-training.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderConfig {
    /// Encoder widths; the decoder mirrors them back to the number of codes.
    pub embedding_dims: Vec<usize>,
    pub epochs: usize,
    pub batch_size: usize,
}

/// The residual generator.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    pub noise_dim: usize,
    /// Block widths; each must equal `noise_dim` (residual) and the last the embedding width.
    pub dims: Vec<usize>,
    pub batch_norm_decay: f64,
    pub batch_norm_eps: f64,
}

/// The minibatch-averaging discriminator.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiscriminatorConfig {
    /// Hidden widths before the single sigmoid output.
    pub dims: Vec<usize>,
}

/// Adam and the L2 penalty, shared by the three optimisers (autoencoder, discriminator,
/// generator with decoder), each with its own state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptimiserConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub l2_scale: f64,
}

/// The adversarial phase.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GanTrainingConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub discriminator_steps: usize,
    pub generator_steps: usize,
    pub checkpoint_every: usize,
    pub checkpoint_keep: usize,
    pub quality_every: usize,
    pub quality_rows: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            validation_split: DEFAULT_VALIDATION_SPLIT,
            autoencoder: AutoencoderConfig::default(),
            generator: GeneratorConfig::default(),
            discriminator: DiscriminatorConfig::default(),
            optimiser: OptimiserConfig::default(),
            training: GanTrainingConfig::default(),
        }
    }
}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        Self {
            embedding_dims: DEFAULT_EMBEDDING_DIMS.to_vec(),
            epochs: DEFAULT_AUTOENCODER_EPOCHS,
            batch_size: DEFAULT_AUTOENCODER_BATCH_SIZE,
        }
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            noise_dim: DEFAULT_NOISE_DIM,
            dims: DEFAULT_GENERATOR_DIMS.to_vec(),
            batch_norm_decay: DEFAULT_BATCH_NORM_DECAY,
            batch_norm_eps: DEFAULT_BATCH_NORM_EPS,
        }
    }
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            dims: DEFAULT_DISCRIMINATOR_DIMS.to_vec(),
        }
    }
}

impl Default for OptimiserConfig {
    fn default() -> Self {
        Self {
            learning_rate: DEFAULT_LEARNING_RATE,
            beta1: DEFAULT_BETA1,
            beta2: DEFAULT_BETA2,
            epsilon: DEFAULT_ADAM_EPSILON,
            l2_scale: DEFAULT_L2_SCALE,
        }
    }
}

impl Default for GanTrainingConfig {
    fn default() -> Self {
        Self {
            epochs: DEFAULT_GAN_EPOCHS,
            batch_size: DEFAULT_GAN_BATCH_SIZE,
            discriminator_steps: DEFAULT_DISCRIMINATOR_STEPS,
            generator_steps: DEFAULT_GENERATOR_STEPS,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_keep: DEFAULT_CHECKPOINT_KEEP,
            quality_every: DEFAULT_QUALITY_EVERY,
            quality_rows: DEFAULT_QUALITY_ROWS,
        }
    }
}

/// Why a configuration could not be read or is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot write the training config as toml: {0}")]
    Write(#[from] toml::ser::Error),
    #[error("`{field}` = {value}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: String,
    },
}

impl TrainConfig {
    /// Reads a TOML file; missing fields take their defaults, unknown ones are refused.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string(self)?)
    }

    /// The network shapes for data with `n_features` codes.
    pub fn architecture(&self, n_features: usize, data_type: DataType) -> Architecture {
        Architecture {
            data_type,
            n_features,
            noise_dim: self.generator.noise_dim,
            embedding_dims: self.autoencoder.embedding_dims.clone(),
            generator_dims: self.generator.dims.clone(),
            discriminator_dims: self.discriminator.dims.clone(),
            batch_norm_eps: self.generator.batch_norm_eps,
        }
    }

    /// Checks every field, so that a bad value fails before the first epoch.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, value: String, why: &str| {
            Err(ConfigError::Invalid {
                field,
                value,
                why: why.to_string(),
            })
        };
        let split = self.validation_split;
        if !(split > 0.0 && split < 1.0) {
            return invalid("validation_split", split.to_string(), "must lie in (0, 1)");
        }
        let ae = &self.autoencoder;
        if ae.embedding_dims.is_empty() || ae.embedding_dims.contains(&0) {
            return invalid(
                "autoencoder.embedding_dims",
                format!("{:?}", ae.embedding_dims),
                "needs at least one layer, every width positive",
            );
        }
        if ae.batch_size == 0 {
            return invalid("autoencoder.batch_size", "0".into(), "must be positive");
        }
        let generator = &self.generator;
        if generator.noise_dim == 0 {
            return invalid("generator.noise_dim", "0".into(), "must be positive");
        }
        let embedding = *ae.embedding_dims.last().unwrap_or(&0);
        if generator.dims.is_empty()
            || generator.dims.iter().any(|&d| d != generator.noise_dim)
            || generator.noise_dim != embedding
        {
            return invalid(
                "generator.dims",
                format!("{:?}", generator.dims),
                &format!(
                    "every block is residual, so each width must equal `generator.noise_dim` \
                     ({}) and the embedding width ({embedding})",
                    generator.noise_dim
                ),
            );
        }
        let decay = generator.batch_norm_decay;
        if !(0.0..1.0).contains(&decay) {
            return invalid(
                "generator.batch_norm_decay",
                decay.to_string(),
                "must lie in [0, 1)",
            );
        }
        let eps = generator.batch_norm_eps;
        if !(eps.is_finite() && eps > 0.0) {
            return invalid(
                "generator.batch_norm_eps",
                eps.to_string(),
                "must be positive",
            );
        }
        if self.discriminator.dims.contains(&0) {
            return invalid(
                "discriminator.dims",
                format!("{:?}", self.discriminator.dims),
                "every width must be positive",
            );
        }
        self.validate_optimiser()?;
        let training = &self.training;
        if training.quality_every > 0 && training.quality_rows == 0 {
            return invalid(
                "training.quality_rows",
                "0".into(),
                "must be positive while training.quality_every is on",
            );
        }
        if training.batch_size < 2 {
            return invalid(
                "training.batch_size",
                training.batch_size.to_string(),
                "must be at least 2 for batch norm and the minibatch mean",
            );
        }
        if training.discriminator_steps == 0 {
            return invalid(
                "training.discriminator_steps",
                "0".into(),
                "must be positive",
            );
        }
        if training.generator_steps == 0 {
            return invalid("training.generator_steps", "0".into(), "must be positive");
        }
        Ok(())
    }

    fn validate_optimiser(&self) -> Result<(), ConfigError> {
        let optimiser = &self.optimiser;
        let checks: [(&'static str, f64, bool, &str); 5] = [
            (
                "optimiser.learning_rate",
                optimiser.learning_rate,
                optimiser.learning_rate > 0.0,
                "must be positive",
            ),
            (
                "optimiser.beta1",
                optimiser.beta1,
                (0.0..1.0).contains(&optimiser.beta1),
                "must lie in [0, 1)",
            ),
            (
                "optimiser.beta2",
                optimiser.beta2,
                (0.0..1.0).contains(&optimiser.beta2),
                "must lie in [0, 1)",
            ),
            (
                "optimiser.epsilon",
                optimiser.epsilon,
                optimiser.epsilon > 0.0,
                "must be positive",
            ),
            (
                "optimiser.l2_scale",
                optimiser.l2_scale,
                optimiser.l2_scale >= 0.0,
                "must not be negative",
            ),
        ];
        for (field, value, ok, why) in checks {
            if !ok || !value.is_finite() {
                return Err(ConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    why: why.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = TrainConfig::default();
        config.validate().unwrap();
        let text = config.to_toml_string().unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn partial_toml_takes_defaults_and_unknown_fields_are_refused() {
        let config: TrainConfig = toml::from_str("seed = 7\n[training]\nepochs = 3\n").unwrap();
        assert_eq!(config.seed, 7);
        assert_eq!(config.training.epochs, 3);
        assert_eq!(config.training.batch_size, DEFAULT_GAN_BATCH_SIZE);
        assert!(toml::from_str::<TrainConfig>("[training]\nepoch = 3\n").is_err());
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[generator]\nnoise = 1\n").unwrap();
        let err = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
    }

    #[test]
    fn residual_widths_must_match() {
        let mut config = TrainConfig::default();
        config.generator.dims = vec![128, 64];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("`generator.dims` = [128, 64]"), "{err}");
        let mut config = TrainConfig::default();
        config.autoencoder.embedding_dims = vec![256, 64];
        assert!(config.validate().is_err());
    }

    #[test]
    fn bad_numbers_are_refused() {
        let cases: [fn(&mut TrainConfig); 6] = [
            |c| c.validation_split = 1.0,
            |c| c.training.batch_size = 1,
            |c| c.optimiser.learning_rate = 0.0,
            |c| c.optimiser.beta2 = f64::NAN,
            |c| c.generator.batch_norm_decay = 1.0,
            |c| c.autoencoder.batch_size = 0,
        ];
        for (i, spoil) in cases.iter().enumerate() {
            let mut config = TrainConfig::default();
            spoil(&mut config);
            assert!(config.validate().is_err(), "case {i} passed");
        }
    }

    #[test]
    fn architecture_carries_the_widths() {
        let arch = TrainConfig::default().architecture(915, DataType::Binary);
        assert_eq!(arch.embedding_dim(), 128);
        assert_eq!(arch.generator_dims, vec![128, 128, 128]);
        assert_eq!(arch.discriminator_dims, vec![256, 128]);
        assert_eq!(arch.batch_norm_eps, DEFAULT_BATCH_NORM_EPS);
    }
}
