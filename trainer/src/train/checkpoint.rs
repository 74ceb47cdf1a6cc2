//! Checkpoints: everything an exact resume needs, in one safetensors file.
//!
//! Tensors: every model tensor under its stable name (batch-norm running statistics included)
//! and each optimiser's moments as `optimiser.{autoencoder,discriminator,generator}.{m,v}.NAME`.
//! Metadata: the architecture, seed, split sizes, epochs done per phase, each optimiser's
//! update count, the training random stream's word position and the phase timings.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CHECKPOINT_DIR, TrainError, TrainingState};
use crate::config::TrainConfig;
use crate::model::{Architecture, read_safetensors, write_safetensors};

const CHECKPOINT_FORMAT: &str = "medgan-checkpoint";
const CHECKPOINT_VERSION: &str = "1";
const EXTENSION: &str = ".safetensors";
/// File-name prefixes; they sort in phase order, and the zero-padded epochs within a phase.
const AUTOENCODER_PREFIX: &str = "ae-epoch-";
const GAN_PREFIX: &str = "gan-epoch-";

const AUTOENCODER_OPTIMISER: &str = "optimiser.autoencoder";
const DISCRIMINATOR_OPTIMISER: &str = "optimiser.discriminator";
const GENERATOR_OPTIMISER: &str = "optimiser.generator";

/// Writes the state into `run_dir/checkpoints/`, named after the phase and epoch, then removes
/// the oldest checkpoints beyond `training.checkpoint_keep`.
pub(crate) fn save_in(
    run_dir: &Path,
    state: &TrainingState,
    config: &TrainConfig,
    (train_patients, holdout_patients): (usize, usize),
) -> Result<PathBuf, TrainError> {
    let dir = run_dir.join(CHECKPOINT_DIR);
    let name = if state.gan_epochs > 0 {
        format!("{GAN_PREFIX}{:06}{EXTENSION}", state.gan_epochs)
    } else {
        format!(
            "{AUTOENCODER_PREFIX}{:06}{EXTENSION}",
            state.autoencoder_epochs
        )
    };
    let path = dir.join(name);
    let mut tensors: BTreeMap<_, _> = state.model.named_tensors();
    tensors.extend(
        state
            .autoencoder_optimiser
            .state_tensors(AUTOENCODER_OPTIMISER),
    );
    tensors.extend(
        state
            .discriminator_optimiser
            .state_tensors(DISCRIMINATOR_OPTIMISER),
    );
    tensors.extend(state.generator_optimiser.state_tensors(GENERATOR_OPTIMISER));
    let entries = [
        ("format", CHECKPOINT_FORMAT.to_string()),
        ("version", CHECKPOINT_VERSION.to_string()),
        ("architecture", state.model.architecture_json()),
        ("config", config.to_toml_string()?),
        ("seed", config.seed.to_string()),
        ("train_patients", train_patients.to_string()),
        ("holdout_patients", holdout_patients.to_string()),
        ("autoencoder_epochs", state.autoencoder_epochs.to_string()),
        ("gan_epochs", state.gan_epochs.to_string()),
        (
            "autoencoder_steps",
            state.autoencoder_optimiser.steps().to_string(),
        ),
        (
            "discriminator_steps",
            state.discriminator_optimiser.steps().to_string(),
        ),
        (
            "generator_steps",
            state.generator_optimiser.steps().to_string(),
        ),
        ("rng_word_pos", state.rng.get_word_pos().to_string()),
        (
            "autoencoder_nanos",
            state.autoencoder_time.as_nanos().to_string(),
        ),
        ("gan_nanos", state.gan_time.as_nanos().to_string()),
    ];
    let metadata = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<HashMap<_, _>>();
    write_safetensors(&path, &tensors, metadata)?;
    tracing::debug!("wrote checkpoint {}", path.display());
    prune(&dir, config.training.checkpoint_keep)?;
    Ok(path)
}

/// Loads a checkpoint into `state`, refusing one from another architecture, seed or split.
pub(crate) fn restore(
    path: &Path,
    state: &mut TrainingState,
    config: &TrainConfig,
    (train_patients, holdout_patients): (usize, usize),
) -> Result<(), TrainError> {
    let refuse = |why: String| TrainError::Resume {
        path: path.to_path_buf(),
        why,
    };
    let (tensors, metadata) = read_safetensors(path, state.model.device())?;
    let field = |key: &str| {
        metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| refuse(format!("no `{key}` metadata")))
    };
    let number = |key: &str| -> Result<u128, TrainError> {
        field(key)?
            .parse::<u128>()
            .map_err(|e| refuse(format!("`{key}` metadata: {e}")))
    };
    if field("format")? != CHECKPOINT_FORMAT || field("version")? != CHECKPOINT_VERSION {
        return Err(refuse(format!(
            "not a version {CHECKPOINT_VERSION} medGAN checkpoint"
        )));
    }
    let saved: Architecture = serde_json::from_str(field("architecture")?)
        .map_err(|e| refuse(format!("`architecture` metadata: {e}")))?;
    if &saved != state.model.architecture() {
        return Err(refuse(format!(
            "it was trained with {saved:?}, this run has {:?}",
            state.model.architecture()
        )));
    }
    let expect = [
        ("seed", config.seed as u128),
        ("train_patients", train_patients as u128),
        ("holdout_patients", holdout_patients as u128),
    ];
    for (key, value) in expect {
        let stored = number(key)?;
        if stored != value {
            return Err(refuse(format!(
                "its {key} is {stored}, this run's is {value}"
            )));
        }
    }
    state.model.assign(&tensors).map_err(&refuse)?;
    let optimisers = [
        (AUTOENCODER_OPTIMISER, "autoencoder_steps"),
        (DISCRIMINATOR_OPTIMISER, "discriminator_steps"),
        (GENERATOR_OPTIMISER, "generator_steps"),
    ];
    for (prefix, steps_key) in optimisers {
        let steps = number(steps_key)? as u64;
        let optimiser = match prefix {
            AUTOENCODER_OPTIMISER => &mut state.autoencoder_optimiser,
            DISCRIMINATOR_OPTIMISER => &mut state.discriminator_optimiser,
            _ => &mut state.generator_optimiser,
        };
        optimiser
            .restore(prefix, &tensors, steps)
            .map_err(&refuse)?;
    }
    state.rng.set_word_pos(number("rng_word_pos")?);
    state.autoencoder_epochs = number("autoencoder_epochs")? as usize;
    state.gan_epochs = number("gan_epochs")? as usize;
    state.autoencoder_time = Duration::from_nanos(number("autoencoder_nanos")? as u64);
    state.gan_time = Duration::from_nanos(number("gan_nanos")? as u64);
    Ok(())
}

/// The newest checkpoint of a run folder (GAN after autoencoder, later epochs first), if any.
pub fn latest_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    checkpoints(&run_dir.join(CHECKPOINT_DIR)).ok()?.pop()
}

/// Checkpoint files of a folder, oldest first.
fn checkpoints(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let io = |source| TrainError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ours = name.starts_with(AUTOENCODER_PREFIX) || name.starts_with(GAN_PREFIX);
        if ours && name.ends_with(EXTENSION) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn prune(dir: &Path, keep: usize) -> Result<(), TrainError> {
    if keep == 0 {
        return Ok(());
    }
    let found = checkpoints(dir)?;
    let excess = found.len().saturating_sub(keep);
    for old in &found[..excess] {
        std::fs::remove_file(old).map_err(|source| TrainError::Io {
            path: old.clone(),
            source,
        })?;
    }
    Ok(())
}
