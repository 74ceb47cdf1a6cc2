//! Training a medGAN model: split, autoencoder pre-training, the GAN loop and checkpoints.
//!
//! Every random draw after initialisation (split, shuffles, batches, noise) comes from ChaCha8
//! streams keyed by `config.seed`, whose positions the checkpoints record, so a resumed run
//! continues bit for bit where the interrupted one stopped (on the same device).

mod autoencoder;
mod batch;
pub mod checkpoint;
mod device;
mod gan;
pub mod memory;
pub mod metrics;
mod optim;
pub mod profile;
pub mod quality;
mod trace;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::{ConfigError, TrainConfig};
use crate::data::{DataError, PatientMatrix};
use crate::model::{MedganModel, ModelError};

pub use checkpoint::latest_checkpoint;
pub use device::{DeviceError, parse_device};
pub use profile::{Profile, ProfilePart};
use quality::QualityProbe;
pub use quality::{QUALITY_FILE, QualityPoint};
pub use trace::{TraceDifference, compare_traces, write_trace};

/// File name of the held-out (validation) patients inside the run folder.
pub const HOLDOUT_FILE: &str = "holdout.medgan.safetensors";
/// File name of the training patients inside the run folder.
pub const TRAIN_FILE: &str = "train.medgan.safetensors";
/// File name of the resolved configuration inside the run folder.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the final model inside the run folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// Folder of the checkpoints inside the run folder.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// ChaCha8 stream of the seed that splits patients into training and validation.
const SPLIT_STREAM: u64 = 1;
/// ChaCha8 stream of the seed for shuffles, batches and noise during training.
const TRAINING_STREAM: u64 = 2;
/// Fewest patients on either side of the split: batch norm and the minibatch mean need two.
const MIN_PATIENTS_PER_SIDE: usize = 2;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Receives `config.toml`, the split matrices, `checkpoints/` and `model.safetensors`.
    pub run_dir: PathBuf,
    pub device: Device,
    /// A checkpoint to continue from, written by an earlier run with the same data and seed.
    pub resume: Option<PathBuf>,
    /// Draw progress bars on stderr (only when it is a terminal).
    pub progress: bool,
    /// Refuse to start when the memory estimate exceeds this many bytes; `None`: the
    /// machine's available memory, or no check when that cannot be read.
    pub max_memory: Option<u64>,
}

/// The two training phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Autoencoder,
    Gan,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Autoencoder => "autoencoder",
            Phase::Gan => "gan",
        })
    }
}

/// One autoencoder pre-training epoch, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoencoderEpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean of the batch losses (without the L2 term), as medGAN reports it.
    pub loss: f64,
    /// Mean loss over every held-out patient.
    pub validation_loss: f64,
    pub duration: Duration,
}

/// One GAN epoch, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct GanEpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean discriminator loss over the epoch's discriminator updates (without the L2 term).
    pub discriminator_loss: f64,
    /// Mean generator loss over the epoch's generator updates (without the L2 term).
    pub generator_loss: f64,
    /// Share of held-out real and generated records the discriminator classifies right.
    pub validation_accuracy: f64,
    /// Discriminator AUC, held-out real records against as many generated ones (0.5: the
    /// discriminator cannot tell them apart).
    pub validation_auc: f64,
    pub duration: Duration,
}

/// What a run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub model: MedganModel,
    /// Wall time of each phase, including earlier runs this one resumed.
    pub autoencoder_time: Duration,
    pub gan_time: Duration,
    pub train_patients: usize,
    pub holdout_patients: usize,
    /// The epochs this run trained (not those of a resumed run).
    pub autoencoder_history: Vec<AutoencoderEpochStats>,
    pub gan_history: Vec<GanEpochStats>,
    /// Where this run's time went, per phase and part of a step.
    pub profile: Profile,
}

/// Why training could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{patients} patients are too few to train: validation and training each need at \
         least {MIN_PATIENTS_PER_SIDE}"
    )]
    TooFewPatients { patients: usize },
    #[error("{phase} epoch {epoch}, step {step}: the {loss} loss is {value}, training stopped")]
    NonFinite {
        phase: Phase,
        epoch: usize,
        step: usize,
        loss: &'static str,
        value: f32,
    },
    #[error("{}: cannot resume: {why}", path.display())]
    Resume { path: PathBuf, why: String },
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
}

/// The model, its three optimisers, the training random stream and how far training got.
pub(crate) struct TrainingState {
    pub(crate) model: MedganModel,
    pub(crate) autoencoder_optimiser: optim::Adam,
    pub(crate) discriminator_optimiser: optim::Adam,
    pub(crate) generator_optimiser: optim::Adam,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) autoencoder_epochs: usize,
    pub(crate) gan_epochs: usize,
    pub(crate) autoencoder_time: Duration,
    pub(crate) gan_time: Duration,
    /// Time per part of a step in this run (not in a run it resumed).
    pub(crate) profile: Profile,
}

impl TrainingState {
    fn new(model: MedganModel, config: &TrainConfig) -> Result<Self, TrainError> {
        let optimiser = &config.optimiser;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(TRAINING_STREAM);
        Ok(Self {
            autoencoder_optimiser: optim::Adam::new(model.autoencoder_parameters(), optimiser)?,
            discriminator_optimiser: optim::Adam::new(model.discriminator_parameters(), optimiser)?,
            generator_optimiser: optim::Adam::new(model.generator_parameters(), optimiser)?,
            model,
            rng,
            autoencoder_epochs: 0,
            gan_epochs: 0,
            autoencoder_time: Duration::ZERO,
            gan_time: Duration::ZERO,
            profile: Profile::default(),
        })
    }
}

/// Trains medGAN on `data` as `config` says, writing into `options.run_dir`.
pub fn run(
    data: &PatientMatrix,
    config: &TrainConfig,
    options: &RunOptions,
) -> Result<TrainOutcome, TrainError> {
    // Every step's operations then split their work without waiting for a thread to wake.
    crate::model::on_cpu_threads(|| run_on_this_thread(data, config, options))
}

fn run_on_this_thread(
    data: &PatientMatrix,
    config: &TrainConfig,
    options: &RunOptions,
) -> Result<TrainOutcome, TrainError> {
    config.validate()?;
    check_memory(data, config, options)?;
    let (train, holdout) = split(data, config)?;
    let run_dir = &options.run_dir;
    create_dir(&run_dir.join(CHECKPOINT_DIR))?;
    write_file(&run_dir.join(CONFIG_FILE), &config.to_toml_string()?)?;
    train.save(&run_dir.join(TRAIN_FILE))?;
    holdout.save(&run_dir.join(HOLDOUT_FILE))?;
    tracing::info!(
        train = train.n_patients(),
        holdout = holdout.n_patients(),
        codes = data.n_codes(),
        "split {} patients into {} for training and {} for validation",
        data.n_patients(),
        train.n_patients(),
        holdout.n_patients()
    );

    let arch = config.architecture(data.n_codes(), data.data_type());
    let mut model = MedganModel::new(&arch, &options.device, config.seed)?;
    model.set_batch_norm_decay(config.generator.batch_norm_decay);
    let mut state = TrainingState::new(model, config)?;
    let counts = (train.n_patients(), holdout.n_patients());
    if let Some(path) = &options.resume {
        checkpoint::restore(path, &mut state, config, counts)?;
        tracing::info!(
            autoencoder_epochs = state.autoencoder_epochs,
            gan_epochs = state.gan_epochs,
            "resumed from {}",
            path.display()
        );
    }

    let batch_size = clamp_batch("autoencoder", config.autoencoder.batch_size, &train);
    let mut buffer = Vec::new();
    let mut autoencoder_history = Vec::new();
    // (autoencoder epochs, GAN epochs) of the newest checkpoint written by this run.
    let mut saved_at = None;
    let bar = progress_bar(options.progress, config.autoencoder.epochs, "autoencoder");
    bar.set_position(state.autoencoder_epochs as u64);
    while state.autoencoder_epochs < config.autoencoder.epochs {
        let epoch = state.autoencoder_epochs + 1;
        let stats =
            autoencoder::run_epoch(&mut state, &train, &holdout, batch_size, epoch, &mut buffer)?;
        state.autoencoder_epochs = epoch;
        state.autoencoder_time += stats.duration;
        bar.suspend(|| {
            tracing::info!(
                phase = "autoencoder",
                epoch,
                "autoencoder epoch {epoch}/{}: loss {:.4}, validation loss {:.4} ({:.2}s)",
                config.autoencoder.epochs,
                stats.loss,
                stats.validation_loss,
                stats.duration.as_secs_f64()
            )
        });
        bar.inc(1);
        autoencoder_history.push(stats);
        if is_due(epoch, config) {
            checkpoint::save_in(run_dir, &state, config, counts)?;
            saved_at = Some((state.autoencoder_epochs, state.gan_epochs));
        }
    }
    bar.finish_and_clear();

    let batch_size = clamp_batch("gan", config.training.batch_size, &train);
    let quality = (config.training.quality_every > 0)
        .then(|| {
            let fresh = options.resume.is_none();
            let rows = config.training.quality_rows;
            QualityProbe::new(&train, &state.model, rows, config.seed, run_dir, fresh)
        })
        .transpose()?;
    let mut gan_history = Vec::new();
    let bar = progress_bar(options.progress, config.training.epochs, "gan");
    bar.set_position(state.gan_epochs as u64);
    while state.gan_epochs < config.training.epochs {
        let epoch = state.gan_epochs + 1;
        let settings = gan::Settings {
            batch_size,
            discriminator_steps: config.training.discriminator_steps,
            generator_steps: config.training.generator_steps,
            draw_ahead: options.device.is_cpu(),
        };
        let stats = gan::run_epoch(&mut state, &train, &holdout, &settings, epoch, &mut buffer)?;
        state.gan_epochs = epoch;
        state.gan_time += stats.duration;
        bar.suspend(|| {
            tracing::info!(
                phase = "gan",
                epoch,
                "gan epoch {epoch}/{}: discriminator loss {:.4}, generator loss {:.4}, \
                 validation accuracy {:.3}, AUC {:.3} (0.5 = indistinguishable) ({:.2}s)",
                config.training.epochs,
                stats.discriminator_loss,
                stats.generator_loss,
                stats.validation_accuracy,
                stats.validation_auc,
                stats.duration.as_secs_f64()
            )
        });
        bar.inc(1);
        gan_history.push(stats);
        let last = epoch == config.training.epochs;
        if let Some(probe) = quality.as_ref()
            && (epoch % config.training.quality_every == 0 || last)
        {
            let point = probe.measure(&state.model, epoch)?;
            bar.suspend(|| {
                tracing::info!(
                    phase = "gan",
                    epoch,
                    "quality at epoch {epoch}: dimension-wise r {}; {} codes appear in {} \
                     synthetic records ({} in the training data)",
                    point
                        .dimension_wise_r
                        .map_or("undefined".into(), |r| format!("{r:.3}")),
                    point.codes_generated,
                    config.training.quality_rows,
                    point.codes_in_real
                )
            });
        }
        if is_due(epoch, config) {
            checkpoint::save_in(run_dir, &state, config, counts)?;
            saved_at = Some((state.autoencoder_epochs, state.gan_epochs));
        }
    }
    bar.finish_and_clear();

    // The last checkpoint, unless the cadence just wrote it.
    if saved_at != Some((state.autoencoder_epochs, state.gan_epochs)) {
        checkpoint::save_in(run_dir, &state, config, counts)?;
    }
    state.model.save(&run_dir.join(MODEL_FILE))?;
    Ok(TrainOutcome {
        model: state.model,
        autoencoder_time: state.autoencoder_time,
        gan_time: state.gan_time,
        train_patients: train.n_patients(),
        holdout_patients: holdout.n_patients(),
        autoencoder_history,
        gan_history,
        profile: state.profile,
    })
}

/// Logs the memory estimate, and refuses a run it says cannot fit in the limit.
fn check_memory(
    data: &PatientMatrix,
    config: &TrainConfig,
    options: &RunOptions,
) -> Result<(), TrainError> {
    let estimate = memory::MemoryEstimate::new(&memory::DataShape::of(data), config);
    let Some(limit) = memory::MemoryLimit::resolve(options.max_memory) else {
        tracing::info!("training needs {estimate}; the available memory is unknown");
        return Ok(());
    };
    tracing::info!(
        estimate_bytes = estimate.total(),
        limit_bytes = limit.bytes(),
        "training needs {estimate} of {}",
        memory::Size(limit.bytes())
    );
    Ok(estimate.check(limit)?)
}

/// Seeded split: the held-out share of patients (at least two each side), both sides kept in
/// the original row order.
fn split(
    data: &PatientMatrix,
    config: &TrainConfig,
) -> Result<(PatientMatrix, PatientMatrix), TrainError> {
    let patients = data.n_patients();
    let wanted = (patients as f64 * config.validation_split).round() as usize;
    let holdout_count = wanted.max(MIN_PATIENTS_PER_SIDE);
    if patients < holdout_count + MIN_PATIENTS_PER_SIDE {
        return Err(TrainError::TooFewPatients { patients });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(SPLIT_STREAM);
    let mut order: Vec<usize> = (0..patients).collect();
    order.shuffle(&mut rng);
    let (holdout, train) = order.split_at_mut(holdout_count);
    holdout.sort_unstable();
    train.sort_unstable();
    Ok((data.select_rows(train), data.select_rows(holdout)))
}

/// The configured batch size, or every training patient when there are fewer.
fn clamp_batch(phase: &str, configured: usize, train: &PatientMatrix) -> usize {
    let patients = train.n_patients();
    if configured > patients {
        tracing::warn!(
            "{phase} batch size {configured} exceeds the {patients} training patients; \
             using batches of {patients}"
        );
        patients
    } else {
        configured
    }
}

fn is_due(epoch: usize, config: &TrainConfig) -> bool {
    let every = config.training.checkpoint_every;
    every > 0 && epoch > 0 && epoch.is_multiple_of(every)
}

/// Checks a loss value read back from the device.
pub(crate) fn finite(
    value: f32,
    phase: Phase,
    epoch: usize,
    step: usize,
    loss: &'static str,
) -> Result<f32, TrainError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TrainError::NonFinite {
            phase,
            epoch,
            step,
            loss,
            value,
        })
    }
}

fn progress_bar(enabled: bool, epochs: usize, label: &'static str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(epochs as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>11} [{bar:40}] {pos}/{len} epochs ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label);
    bar
}

fn create_dir(path: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), TrainError> {
    std::fs::write(path, text).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
