//! One epoch of autoencoder pre-training, and the held-out reconstruction loss.

use std::time::Instant;

use rand::seq::SliceRandom;

use super::profile::Stopwatch;
use super::{AutoencoderEpochStats, Phase, TrainError, TrainingState, batch, finite};
use crate::data::PatientMatrix;
use crate::model::MedganModel;

/// Held-out patients scored per forward pass; a row's loss does not depend on its batch.
pub(crate) const VALIDATION_CHUNK: usize = 1024;

/// Shuffles the training patients and takes one Adam step per batch of `batch_size`.
///
/// medGAN computes its batch count as `int(ceil(N) / B)` (a misplaced bracket), which drops the
/// last partial batch; here every patient is seen each epoch, the last batch being smaller.
pub(crate) fn run_epoch(
    state: &mut TrainingState,
    train: &PatientMatrix,
    holdout: &PatientMatrix,
    batch_size: usize,
    epoch: usize,
    buffer: &mut Vec<f32>,
) -> Result<AutoencoderEpochStats, TrainError> {
    let started = Instant::now();
    let mut order: Vec<usize> = (0..train.n_patients()).collect();
    order.shuffle(&mut state.rng);
    let mut loss_sum = 0.0f64;
    let mut batches = 0usize;
    for (step, rows) in order.chunks(batch_size).enumerate() {
        let value = autoencoder_step(state, train, rows, buffer)?;
        let value = finite(value, Phase::Autoencoder, epoch, step + 1, "reconstruction")?;
        loss_sum += value as f64;
        batches += 1;
    }
    let started_validation = Stopwatch::start();
    let validation_loss = validation_loss(&state.model, holdout, buffer);
    state
        .profile
        .add_since("autoencoder: validation", &started_validation);
    let validation_loss = validation_loss?;
    Ok(AutoencoderEpochStats {
        epoch,
        loss: loss_sum / batches.max(1) as f64,
        validation_loss,
        duration: started.elapsed(),
    })
}

/// One Adam step on the reconstruction loss of the training patients `rows`; returns the loss.
pub(crate) fn autoencoder_step(
    state: &mut TrainingState,
    train: &PatientMatrix,
    rows: &[usize],
    buffer: &mut Vec<f32>,
) -> candle_core::Result<f32> {
    let TrainingState { model, profile, .. } = state;
    let device = model.device().clone();
    let (records, sparse) = profile.time("autoencoder: batch", || {
        let records = batch::dense(train, rows, buffer, &device)?;
        let sparse = batch::use_sparse(&device)
            .then(|| batch::sparse(train, rows, &device))
            .transpose()?;
        Ok::<_, candle_core::Error>((records, sparse))
    })?;
    let (loss, value) = profile.time("autoencoder: forward and loss", || {
        let autoencoder = &model.autoencoder;
        let loss = match &sparse {
            Some(sparse) => autoencoder
                .reconstruction_loss_per_row_sparse(sparse, &records)?
                .mean_all()?,
            None => autoencoder.reconstruction_loss(&records)?,
        };
        let value = loss.to_scalar::<f32>()?;
        Ok::<_, candle_core::Error>((loss, value))
    })?;
    let grads = profile.time("autoencoder: backward", || loss.backward())?;
    let optimiser = &mut state.autoencoder_optimiser;
    state
        .profile
        .time("autoencoder: adam", || optimiser.step(&grads))?;
    Ok(value)
}

/// Mean reconstruction loss over every held-out patient (medGAN averages batch losses over
/// whole batches only; here no patient is left out).
pub(crate) fn validation_loss(
    model: &MedganModel,
    holdout: &PatientMatrix,
    buffer: &mut Vec<f32>,
) -> Result<f64, TrainError> {
    let rows: Vec<usize> = (0..holdout.n_patients()).collect();
    let mut total = 0.0f64;
    for chunk in rows.chunks(VALIDATION_CHUNK) {
        let device = model.device();
        let records = batch::dense(holdout, chunk, buffer, device)?;
        let per_row = if batch::use_sparse(device) {
            let sparse = batch::sparse(holdout, chunk, device)?;
            model
                .autoencoder
                .reconstruction_loss_per_row_sparse(&sparse, &records)?
        } else {
            model.autoencoder.reconstruction_loss_per_row(&records)?
        };
        total += per_row.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(total / rows.len().max(1) as f64)
}
