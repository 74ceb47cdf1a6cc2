//! One epoch of adversarial training as medGAN runs it, and the held-out discriminator scores.

use std::sync::mpsc::{SyncSender, sync_channel};
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
    /// Draw batches and noise on a thread of their own, a few updates ahead (CPU tensors
    /// only: other devices' tensors are made on the training thread).
    pub(crate) draw_ahead: bool,
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
    let drawer = Drawer {
        rng: std::mem::replace(&mut state.rng, ChaCha8Rng::seed_from_u64(0)),
        train,
        batch,
        noise_dim,
        device: device.clone(),
        buffer: Vec::new(),
    };
    let (rng, sums) = if settings.draw_ahead {
        // The draws come from a thread of their own, a few steps ahead, in the order the loop
        // would draw them: the same stream, so the same bits, but drawn while the step before
        // is busy with products (on the CPU they were a twentieth of an epoch, on one core
        // while the other waited).
        std::thread::scope(|scope| {
            let (sender, receiver) = sync_channel(DRAWS_AHEAD);
            let drawing = std::thread::Builder::new()
                .name("medgan-draws".into())
                .spawn_scoped(scope, || drawer.draw_epoch(settings, steps, sender))
                .map_err(|error| {
                    message(format!(
                        "cannot start the thread that draws training batches: {error}"
                    ))
                })?;
            let next = |profile: &mut Profile, _real: bool| match profile
                .time("gan: random draws (waited for)", || receiver.recv())
            {
                Ok(draw) => Ok(draw?),
                Err(_) => Err(message("the thread drawing training batches stopped early")),
            };
            let sums = train_steps(state, next, settings, epoch, steps);
            // The receiver is gone: a drawing thread still sending stops, and hands back the
            // stream.
            let rng = drawing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok::<_, TrainError>((rng, sums))
        })?
    } else {
        let mut drawer = drawer;
        let next = |profile: &mut Profile, real: bool| {
            Ok(profile.time("gan: random draws", || drawer.draw(real))?)
        };
        let sums = train_steps(state, next, settings, epoch, steps);
        (drawer.rng, sums)
    };
    // The stream goes back into the state even when a step failed (a checkpoint may follow).
    state.rng = rng;
    let LossSums {
        discriminator: (d_sum, d_count),
        generator: (g_sum, g_count),
    } = sums?;
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

/// Summed losses and update counts of an epoch: (sum, count) for each network.
struct LossSums {
    discriminator: (f64, usize),
    generator: (f64, usize),
}

/// The epoch's updates, each taking its draws from `next(profile, real batch wanted)`.
fn train_steps(
    state: &mut TrainingState,
    mut next: impl FnMut(&mut Profile, bool) -> std::result::Result<Draw, TrainError>,
    settings: &Settings,
    epoch: usize,
    steps: usize,
) -> std::result::Result<LossSums, TrainError> {
    let mut sums = LossSums {
        discriminator: (0.0, 0),
        generator: (0.0, 0),
    };
    for step in 1..=steps {
        for _ in 0..settings.discriminator_steps {
            let Draw { real, noise } = next(&mut state.profile, true)?;
            let real = real.ok_or_else(|| message("a discriminator update drew no real batch"))?;
            let value = discriminator_step(state, &real, &noise)?;
            let value = finite(value, Phase::Gan, epoch, step, "discriminator")?;
            sums.discriminator.0 += value as f64;
            sums.discriminator.1 += 1;
        }
        for _ in 0..settings.generator_steps {
            let Draw { noise, .. } = next(&mut state.profile, false)?;
            let value = generator_step(state, &noise)?;
            let value = finite(value, Phase::Gan, epoch, step, "generator")?;
            sums.generator.0 += value as f64;
            sums.generator.1 += 1;
        }
    }
    Ok(sums)
}

fn message(text: impl Into<String>) -> TrainError {
    TrainError::Candle(candle_core::Error::Msg(text.into()))
}

/// One update's random draws: the real batch of a discriminator update (none for the
/// generator's) and the noise.
struct Draw {
    real: Option<RealBatch>,
    noise: Tensor,
}

/// Makes an epoch's draws from the training stream.
struct Drawer<'a> {
    rng: ChaCha8Rng,
    train: &'a PatientMatrix,
    batch: usize,
    noise_dim: usize,
    device: Device,
    buffer: Vec<f32>,
}

impl Drawer<'_> {
    /// The next update's draws: `real` says whether it takes a real batch (drawn first).
    fn draw(&mut self, real: bool) -> CandleResult<Draw> {
        let real = if real {
            let rows = index::sample(&mut self.rng, self.train.n_patients(), self.batch);
            let rows = rows.into_vec();
            Some(RealBatch::new(
                self.train,
                &rows,
                &mut self.buffer,
                &self.device,
            )?)
        } else {
            None
        };
        let noise = normal_tensor(&mut self.rng, self.batch, self.noise_dim, &self.device)?;
        Ok(Draw { real, noise })
    }

    /// Every draw of an epoch, in the training loop's order, into `sender`; returns the
    /// stream when done, after a failed draw (sent first), or when the loop stops listening.
    fn draw_epoch(
        mut self,
        settings: &Settings,
        steps: usize,
        sender: SyncSender<CandleResult<Draw>>,
    ) -> ChaCha8Rng {
        'epoch: for _ in 0..steps {
            let kinds = std::iter::repeat_n(true, settings.discriminator_steps)
                .chain(std::iter::repeat_n(false, settings.generator_steps));
            for real in kinds {
                let made = self.draw(real);
                let failed = made.is_err();
                if sender.send(made).is_err() || failed {
                    break 'epoch;
                }
            }
        }
        self.rng
    }
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

    /// Draws made ahead on their own thread give the bits of draws made in the loop, and
    /// leave the training stream where the loop would.
    #[test]
    fn drawing_ahead_changes_no_bit() {
        use crate::config::TrainConfig;
        use crate::model::MedganModel;
        let mut config = TrainConfig::default();
        config.autoencoder.embedding_dims = vec![8];
        config.generator.noise_dim = 8;
        config.generator.dims = vec![8, 8];
        config.discriminator.dims = vec![16, 8];
        let data = crate::train::tests::synthetic(120, 12, medgan_sample::DataType::Binary, 3);
        let run = |draw_ahead| {
            let arch = config.architecture(data.n_codes(), data.data_type());
            let model = MedganModel::new(&arch, &Device::Cpu, 7).unwrap();
            let mut state = TrainingState::new(model, &config).unwrap();
            let settings = Settings {
                batch_size: 32,
                discriminator_steps: 2,
                generator_steps: 1,
                draw_ahead,
            };
            run_epoch(&mut state, &data, &data, &settings, 1, &mut Vec::new()).unwrap();
            let weights = crate::train::tests::weights(&state.model);
            (weights, rand::RngExt::random::<u64>(&mut state.rng))
        };
        assert_eq!(run(true), run(false));
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
