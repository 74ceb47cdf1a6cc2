//! One epoch of adversarial training as medGAN runs it, and the held-out discriminator scores.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use candle_core::{Device, Result as CandleResult, Tensor};
use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use super::batch as batches;
use super::metrics::{discriminator_accuracy, discriminator_auc};
use super::profile::{Profile, Stopwatch};
use super::{GanEpochStats, Phase, TrainError, TrainingState, finite};
use crate::data::PatientMatrix;
use crate::model::SparseRecords;
use crate::model::autoencoder::LOG_EPS;
use crate::model::layers::normal_tensor;

/// Batch size and update counts of one epoch.
pub(crate) struct Settings {
    pub(crate) batch_size: usize,
    pub(crate) discriminator_steps: usize,
    pub(crate) generator_steps: usize,
}

/// `-mean(log(y_real + eps)) - mean(log(1 - y_fake + eps))`, medGAN's `loss_d`.
pub(crate) fn discriminator_loss(real: &Tensor, fake: &Tensor) -> CandleResult<Tensor> {
    let real_term = (real + LOG_EPS)?.log()?.mean_all()?;
    let fake_term = (fake.affine(-1.0, 1.0)? + LOG_EPS)?.log()?.mean_all()?;
    (real_term + fake_term)?.neg()
}

/// `-mean(log(y_fake + eps))`, medGAN's `loss_g` (the non-saturating generator loss).
pub(crate) fn generator_loss(fake: &Tensor) -> CandleResult<Tensor> {
    (fake + LOG_EPS)?.log()?.mean_all()?.neg()
}

/// `ceil(n_train / batch)` steps; each step takes `discriminator_steps` discriminator updates,
/// each on a fresh batch drawn without replacement (`np.random.choice(replace=False)`), then
/// `generator_steps` generator updates.
pub(crate) fn run_epoch(
    state: &mut TrainingState,
    train: &PatientMatrix,
    holdout: &PatientMatrix,
    settings: &Settings,
    epoch: usize,
    buffer: &mut Vec<f32>,
) -> std::result::Result<GanEpochStats, TrainError> {
    let started = Instant::now();
    let device = state.model.device().clone();
    let noise_dim = state.model.architecture().noise_dim;
    let batch = settings.batch_size;
    let steps = train.n_patients().div_ceil(batch);
    let (mut d_sum, mut d_count, mut g_sum, mut g_count) = (0.0f64, 0usize, 0.0f64, 0usize);
    // The epoch's random draws come from a thread of their own, a few steps ahead, in the
    // order the loop below would draw them: the same stream, so the same bits, but drawn
    // while the step before is busy with products (it was a twentieth of an epoch, on one core
    // while the other waited). The stream comes back with the thread.
    let rng = std::mem::replace(&mut state.rng, ChaCha8Rng::seed_from_u64(0));
    let outcome: std::result::Result<_, TrainError> = std::thread::scope(|scope| {
        let (sender, draws) = sync_channel(DRAWS_AHEAD);
        let drawing = std::thread::Builder::new()
            .name("medgan-draws".into())
            .spawn_scoped(scope, || {
                draw_epoch(rng, train, settings, steps, noise_dim, &device, sender)
            })
            .map_err(|error| {
                TrainError::Candle(candle_core::Error::Msg(format!(
                    "cannot start the thread that draws training batches: {error}"
                )))
            })?;
        let mut train_steps = || -> std::result::Result<(), TrainError> {
            for step in 1..=steps {
                for _ in 0..settings.discriminator_steps {
                    let Draw { real, noise } = next_draw(&mut state.profile, &draws)?;
                    let real = real.ok_or_else(|| out_of_order("a real batch"))?;
                    let value = discriminator_step(state, &real, &noise)?;
                    let value = finite(value, Phase::Gan, epoch, step, "discriminator")?;
                    d_sum += value as f64;
                    d_count += 1;
                }
                for _ in 0..settings.generator_steps {
                    let Draw { noise, .. } = next_draw(&mut state.profile, &draws)?;
                    let value = generator_step(state, &noise)?;
                    let value = finite(value, Phase::Gan, epoch, step, "generator")?;
                    g_sum += value as f64;
                    g_count += 1;
                }
            }
            Ok(())
        };
        let trained = train_steps();
        drop(draws);
        let rng = drawing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((rng, trained))
    });
    // The stream goes back into the state even when a step failed (a checkpoint may follow).
    let (rng, trained) = outcome?;
    state.rng = rng;
    trained?;
    let (validation_accuracy, validation_auc) = {
        let started = Stopwatch::start();
        let scores = validate(state, holdout, batch, buffer);
        state.profile.add_since("gan: validation", &started);
        scores?
    };
    Ok(GanEpochStats {
        epoch,
        discriminator_loss: d_sum / d_count.max(1) as f64,
        generator_loss: g_sum / g_count.max(1) as f64,
        validation_accuracy,
        validation_auc,
        duration: started.elapsed(),
    })
}

/// Steps' draws made ahead of the training loop.
const DRAWS_AHEAD: usize = 2;

/// One update's random draws: the real batch of a discriminator update (none for the
/// generator's) and the noise.
struct Draw {
    real: Option<RealBatch>,
    noise: Tensor,
}

/// The error for a draw that does not fit the update it came to (a bug in [`draw_epoch`]).
fn out_of_order(missing: &str) -> TrainError {
    TrainError::Candle(candle_core::Error::Msg(format!(
        "the drawing thread sent a discriminator update no {missing}"
    )))
}

/// The next draw from the drawing thread, the wait charged to the profile.
fn next_draw(
    profile: &mut Profile,
    draws: &Receiver<CandleResult<Draw>>,
) -> std::result::Result<Draw, TrainError> {
    match profile.time("gan: random draws (waited for)", || draws.recv()) {
        Ok(draw) => Ok(draw?),
        Err(_) => Err(TrainError::Candle(candle_core::Error::Msg(
            "the thread drawing training batches stopped early".into(),
        ))),
    }
}

/// Draws every batch and noise block of an epoch from `rng`, in the training loop's order, into
/// `sender`; returns the stream when done or when the loop stops listening.
fn draw_epoch(
    mut rng: ChaCha8Rng,
    train: &PatientMatrix,
    settings: &Settings,
    steps: usize,
    noise_dim: usize,
    device: &Device,
    sender: SyncSender<CandleResult<Draw>>,
) -> ChaCha8Rng {
    let batch = settings.batch_size;
    let mut buffer = Vec::new();
    let mut draw = |real: bool| -> CandleResult<Draw> {
        let real = if real {
            let rows = index::sample(&mut rng, train.n_patients(), batch).into_vec();
            Some(RealBatch::new(train, &rows, &mut buffer, device)?)
        } else {
            None
        };
        let noise = normal_tensor(&mut rng, batch, noise_dim, device)?;
        Ok(Draw { real, noise })
    };
    'epoch: for _ in 0..steps {
        let kinds = std::iter::repeat_n(true, settings.discriminator_steps)
            .chain(std::iter::repeat_n(false, settings.generator_steps));
        for real in kinds {
            let made = draw(real);
            let failed = made.is_err();
            if sender.send(made).is_err() || failed {
                break 'epoch;
            }
        }
    }
    rng
}

/// A batch of real records in the form the device's first layer reads.
pub(crate) enum RealBatch {
    /// On the CPU the discriminator gathers weight columns for each patient's codes.
    Sparse(SparseRecords),
    Dense(Tensor),
}

impl RealBatch {
    pub(crate) fn new(
        matrix: &PatientMatrix,
        rows: &[usize],
        buffer: &mut Vec<f32>,
        device: &Device,
    ) -> CandleResult<Self> {
        Ok(if batches::use_sparse(device) {
            Self::Sparse(batches::sparse(matrix, rows, device)?)
        } else {
            Self::Dense(batches::dense(matrix, rows, buffer, device)?)
        })
    }
}

/// One discriminator update on `real` against records generated from `noise`; returns the loss.
///
/// As in medGAN, the discriminator sees generated records with the generator's batch norm in
/// inference mode (running statistics, `bn_train: False`).
pub(crate) fn discriminator_step(
    state: &mut TrainingState,
    real: &RealBatch,
    noise: &Tensor,
) -> CandleResult<f32> {
    let TrainingState { model, profile, .. } = state;
    let real_scores = profile.time("gan: discriminator forward, real", || match real {
        RealBatch::Sparse(records) => model.discriminator.forward_sparse(records),
        RealBatch::Dense(records) => model.discriminator.forward_constant(records),
    })?;
    let fake = profile.time("gan: generate (discriminator step)", || {
        Ok::<_, candle_core::Error>(model.sample(noise)?.detach())
    })?;
    let fake_scores = profile.time("gan: discriminator forward, generated", || {
        model.discriminator.forward_constant(&fake)
    })?;
    let (loss, value) = profile.time("gan: discriminator loss", || {
        let loss = discriminator_loss(&real_scores, &fake_scores)?;
        let value = loss.to_scalar::<f32>()?;
        Ok::<_, candle_core::Error>((loss, value))
    })?;
    let grads = profile.time("gan: discriminator backward", || loss.backward())?;
    let optimiser = &mut state.discriminator_optimiser;
    state
        .profile
        .time("gan: discriminator adam", || optimiser.step(&grads))?;
    Ok(value)
}

/// One generator (and decoder) update on records generated from `noise`; returns the loss.
///
/// The generator's batch norm runs in training mode, which also moves its running statistics.
pub(crate) fn generator_step(state: &mut TrainingState, noise: &Tensor) -> CandleResult<f32> {
    let TrainingState { model, profile, .. } = state;
    let fake = profile.time("gan: generate (generator step)", || {
        model.decode(&model.generate_embedding(noise, true)?)
    })?;
    // The generator's loss trains no discriminator weight: cut them from the graph.
    let scores = profile.time("gan: discriminator forward (generator step)", || {
        model.discriminator.forward_frozen(&fake)
    })?;
    let (loss, value) = profile.time("gan: generator loss", || {
        let loss = generator_loss(&scores)?;
        let value = loss.to_scalar::<f32>()?;
        Ok::<_, candle_core::Error>((loss, value))
    })?;
    let grads = profile.time("gan: generator backward", || loss.backward())?;
    let optimiser = &mut state.generator_optimiser;
    state
        .profile
        .time("gan: generator adam", || optimiser.step(&grads))?;
    Ok(value)
}

/// Scores every held-out patient against as many generated records, batch by batch (the
/// minibatch mean makes a score depend on its batch), and pools the scores.
///
/// medGAN draws `n_train / batch` random validation batches instead; pooling every held-out
/// patient once gives the same expectation with less noise. A trailing batch of one joins the
/// previous batch, since a minibatch mean over one record is the record itself.
fn validate(
    state: &mut TrainingState,
    holdout: &PatientMatrix,
    batch: usize,
    buffer: &mut Vec<f32>,
) -> std::result::Result<(f64, f64), TrainError> {
    let device = state.model.device().clone();
    let noise_dim = state.model.architecture().noise_dim;
    let mut real_scores = Vec::with_capacity(holdout.n_patients());
    let mut fake_scores = Vec::with_capacity(holdout.n_patients());
    let rows: Vec<usize> = (0..holdout.n_patients()).collect();
    for chunk in batches_without_singletons(&rows, batch) {
        let real = if batches::use_sparse(&device) {
            let real = batches::sparse(holdout, chunk, &device)?;
            state.model.discriminator.forward_sparse(&real)?
        } else {
            let real = batches::dense(holdout, chunk, buffer, &device)?;
            state.model.discriminate(&real)?
        };
        let noise = normal_tensor(&mut state.rng, chunk.len(), noise_dim, &device)?;
        let fake = state.model.sample(&noise)?;
        real_scores.extend(real.to_vec1::<f32>()?);
        fake_scores.extend(state.model.discriminate(&fake)?.to_vec1::<f32>()?);
    }
    Ok((
        discriminator_accuracy(&real_scores, &fake_scores),
        discriminator_auc(&real_scores, &fake_scores),
    ))
}

/// Consecutive batches of `size`, the last one absorbing a remainder of a single row.
pub(crate) fn batches_without_singletons(rows: &[usize], size: usize) -> Vec<&[usize]> {
    let mut batches: Vec<&[usize]> = rows.chunks(size.max(2)).collect();
    if batches.len() >= 2 && batches[batches.len() - 1].len() == 1 {
        let start = rows.len() - batches[batches.len() - 2].len() - 1;
        batches.pop();
        batches.pop();
        batches.push(&rows[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn losses_match_hand_computation() {
        let device = Device::Cpu;
        let real = Tensor::new(&[0.9f32, 0.6], &device).unwrap();
        let fake = Tensor::new(&[0.2f32, 0.5, 0.0], &device).unwrap();
        let d = discriminator_loss(&real, &fake)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = -(0.9f64.ln() + 0.6f64.ln()) / 2.0 - (0.8f64.ln() + 0.5f64.ln() + 0.0) / 3.0;
        assert!((d as f64 - want).abs() < 1e-5, "{d} vs {want}");
        let g = generator_loss(&fake).unwrap().to_scalar::<f32>().unwrap();
        let want = -(0.2f64.ln() + 0.5f64.ln() + 1e-12f64.ln()) / 3.0;
        assert!((g as f64 - want).abs() < 1e-3, "{g} vs {want}");
    }

    #[test]
    fn no_batch_of_one() {
        let rows: Vec<usize> = (0..7).collect();
        let sizes = |size| -> Vec<usize> {
            batches_without_singletons(&rows, size)
                .iter()
                .map(|b| b.len())
                .collect()
        };
        assert_eq!(sizes(3), vec![3, 4]);
        assert_eq!(sizes(2), vec![2, 2, 3]);
        assert_eq!(sizes(7), vec![7]);
        assert_eq!(sizes(10), vec![7]);
        let flat: Vec<usize> = batches_without_singletons(&rows, 3).concat();
        assert_eq!(flat, rows);
    }
}
