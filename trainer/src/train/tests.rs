//! Tests of whole runs: determinism, resume, small data, failures and a real dataset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use medgan_sample::DataType;
use rand::{RngExt, SeedableRng};

use super::*;

/// Two groups of patients with different typical codes, so there is something to learn.
pub(crate) fn synthetic(
    patients: usize,
    codes: usize,
    data_type: DataType,
    seed: u64,
) -> PatientMatrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut indptr, mut indices, mut values) = (vec![0u64], Vec::new(), Vec::new());
    for patient in 0..patients {
        let group = patient % 2;
        for code in 0..codes {
            let likely = (code % 2 == group) && code < codes / 2 + 2;
            let p = if likely { 0.6 } else { 0.05 };
            if rng.random::<f64>() < p {
                indices.push(code as u32);
                values.push(match data_type {
                    DataType::Binary => 1,
                    DataType::Count => rng.random_range(1..4u32),
                });
            }
        }
        indptr.push(indices.len() as u64);
    }
    PatientMatrix::from_csr(
        data_type,
        (0..codes).map(|c| format!("c{c}")).collect(),
        (0..patients).map(|p| format!("p{p}")).collect(),
        indptr,
        indices,
        values,
    )
    .unwrap()
}

fn tiny_config() -> TrainConfig {
    let mut config = TrainConfig::default();
    config.autoencoder.embedding_dims = vec![8];
    config.autoencoder.epochs = 2;
    config.autoencoder.batch_size = 16;
    config.generator.noise_dim = 8;
    config.generator.dims = vec![8, 8, 8];
    config.discriminator.dims = vec![16, 8];
    config.training.epochs = 2;
    config.training.batch_size = 32;
    config.training.checkpoint_every = 1;
    config.training.checkpoint_keep = 0;
    config
}

fn options(run_dir: PathBuf, resume: Option<PathBuf>) -> RunOptions {
    RunOptions {
        run_dir,
        device: Device::Cpu,
        resume,
        progress: false,
        max_memory: None,
    }
}

pub(crate) fn weights(model: &MedganModel) -> BTreeMap<String, Vec<f32>> {
    model
        .named_tensors()
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn same_seed_same_data_same_bits_and_run_folder_is_complete() {
    let data = synthetic(120, 20, DataType::Binary, 1);
    let config = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let first = run(&data, &config, &options(dir.path().join("a"), None)).unwrap();
    let second = run(&data, &config, &options(dir.path().join("b"), None)).unwrap();
    assert_eq!(weights(&first.model), weights(&second.model));
    assert_eq!(first.autoencoder_history, {
        let mut h = second.autoencoder_history.clone();
        for (a, b) in h.iter_mut().zip(&first.autoencoder_history) {
            a.duration = b.duration;
        }
        h
    });
    assert_eq!((first.train_patients, first.holdout_patients), (108, 12));
    let a = dir.path().join("a");
    let holdout = PatientMatrix::load(&a.join(HOLDOUT_FILE)).unwrap();
    let train = PatientMatrix::load(&a.join(TRAIN_FILE)).unwrap();
    assert_eq!(holdout.n_patients() + train.n_patients(), 120);
    assert!(
        holdout
            .patient_ids()
            .iter()
            .all(|id| !train.patient_ids().contains(id))
    );
    let saved = TrainConfig::from_toml_file(&a.join(CONFIG_FILE)).unwrap();
    assert_eq!(saved, config);
    let model = MedganModel::load(
        &a.join(MODEL_FILE),
        first.model.architecture(),
        &Device::Cpu,
    );
    assert_eq!(weights(&model.unwrap()), weights(&first.model));
    assert_eq!(
        latest_checkpoint(&a).unwrap().file_name().unwrap(),
        "gan-epoch-000002.safetensors"
    );
    let stats = &first.gan_history[1];
    assert!((0.0..=1.0).contains(&stats.validation_auc));
    assert!((0.0..=1.0).contains(&stats.validation_accuracy));
    assert!(stats.discriminator_loss.is_finite() && stats.generator_loss.is_finite());

    let mut other = config.clone();
    other.seed += 1;
    let third = run(&data, &other, &options(dir.path().join("c"), None)).unwrap();
    assert_ne!(weights(&first.model), weights(&third.model));
}

#[test]
fn resume_continues_bit_for_bit() {
    let data = synthetic(90, 16, DataType::Count, 2);
    let config = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let straight = run(&data, &config, &options(dir.path().join("straight"), None)).unwrap();
    let checkpoints = dir.path().join("straight").join(CHECKPOINT_DIR);
    // From the middle of pre-training, and from the middle of the GAN phase.
    for (name, file) in [
        ("mid-ae", "ae-epoch-000001"),
        ("mid-gan", "gan-epoch-000001"),
    ] {
        let from = checkpoints.join(format!("{file}.safetensors"));
        let resumed = run(&data, &config, &options(dir.path().join(name), Some(from))).unwrap();
        assert_eq!(weights(&resumed.model), weights(&straight.model), "{name}");
    }
    // Two epochs, stop, then resume with the full schedule.
    let mut short = config.clone();
    short.training.epochs = 1;
    run(&data, &short, &options(dir.path().join("short"), None)).unwrap();
    let last = latest_checkpoint(&dir.path().join("short")).unwrap();
    let resumed = run(
        &data,
        &config,
        &options(dir.path().join("long"), Some(last)),
    )
    .unwrap();
    assert_eq!(weights(&resumed.model), weights(&straight.model));
    assert_eq!(resumed.gan_history.len(), 1);

    let mut other = config.clone();
    other.seed = 99;
    let from = checkpoints.join("gan-epoch-000001.safetensors");
    let err = run(&data, &other, &options(dir.path().join("x"), Some(from))).unwrap_err();
    assert!(err.to_string().contains("cannot resume"), "{err}");
}

#[test]
fn fifty_patients_train_with_default_batch_sizes() {
    let data = synthetic(50, 12, DataType::Binary, 3);
    let mut config = tiny_config();
    config.autoencoder.batch_size = 100;
    config.training.batch_size = 1000;
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(&data, &config, &options(dir.path().to_path_buf(), None)).unwrap();
    assert_eq!(outcome.train_patients, 45);
    assert_eq!(outcome.gan_history.len(), 2);
    assert!(
        outcome
            .gan_history
            .iter()
            .all(|s| s.generator_loss.is_finite())
    );
}

#[test]
fn too_few_patients_is_an_error_not_a_panic() {
    let data = synthetic(3, 5, DataType::Binary, 4);
    let dir = tempfile::tempdir().unwrap();
    let err = run(
        &data,
        &tiny_config(),
        &options(dir.path().to_path_buf(), None),
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::TooFewPatients { patients: 3 }),
        "{err}"
    );
}

#[test]
fn exploding_losses_stop_with_phase_epoch_and_step() {
    let data = synthetic(60, 10, DataType::Count, 5);
    let mut config = tiny_config();
    config.optimiser.learning_rate = 1e30;
    let dir = tempfile::tempdir().unwrap();
    let err = run(&data, &config, &options(dir.path().to_path_buf(), None)).unwrap_err();
    let TrainError::NonFinite {
        phase, epoch, step, ..
    } = &err
    else {
        panic!("expected a non-finite loss error, got {err}");
    };
    assert_eq!((*phase, *epoch), (Phase::Autoencoder, 1));
    assert!(*step >= 2, "{err}");
    assert!(
        err.to_string().starts_with("autoencoder epoch 1, step"),
        "{err}"
    );
}

#[test]
fn a_run_over_the_memory_limit_is_refused_before_any_file_is_written() {
    let data = synthetic(60, 20, DataType::Binary, 4);
    let config = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let estimate = memory::MemoryEstimate::new(&memory::DataShape::of(&data), &config);
    let mut opts = options(dir.path().join("run"), None);
    opts.max_memory = Some(estimate.total() - 1);
    let err = run(&data, &config, &opts).unwrap_err();
    assert!(matches!(err, TrainError::Memory(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains(&estimate.to_string()), "{message}");
    assert!(!dir.path().join("run").exists());
    opts.max_memory = Some(estimate.total());
    run(&data, &config, &opts).unwrap();
}

#[test]
fn invalid_config_fails_before_any_file_is_written() {
    let data = synthetic(20, 5, DataType::Binary, 6);
    let mut config = tiny_config();
    config.generator.dims = vec![8, 4];
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    assert!(matches!(
        run(&data, &config, &options(run_dir.clone(), None)),
        Err(TrainError::Config(_))
    ));
    assert!(!run_dir.exists());
}

/// MIMIC-III demo diagnoses as a binary patient x ICD-9 code matrix (test-only reader).
fn mimic_demo() -> PatientMatrix {
    let root = std::env::var_os("MEDGAN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let path = root.join("mimic-iii-demo/DIAGNOSES_ICD.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set MEDGAN_DATA_DIR to the shared data folder)",
            path.display()
        )
    });
    let mut rows: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        let (patient, code) = (&record[1], &record[4]);
        let codes = rows.entry(patient.to_string()).or_default();
        if !code.is_empty() {
            codes.insert(code.to_string());
        }
    }
    let vocabulary: Vec<String> = rows
        .values()
        .flatten()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let column: BTreeMap<&String, u32> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, c)| (c, i as u32))
        .collect();
    let (mut indptr, mut indices) = (vec![0u64], Vec::new());
    for codes in rows.values() {
        indices.extend(codes.iter().map(|c| column[c]));
        indptr.push(indices.len() as u64);
    }
    let values = vec![1; indices.len()];
    let ids = rows.keys().cloned().collect();
    PatientMatrix::from_csr(DataType::Binary, vocabulary, ids, indptr, indices, values).unwrap()
}

#[test]
fn autoencoder_learns_on_the_mimic_demo() {
    let data = mimic_demo();
    assert_eq!(data.n_patients(), 100);
    let mut config = TrainConfig::default();
    config.autoencoder.epochs = 20;
    config.autoencoder.batch_size = 10;
    config.training.epochs = 3;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let outcome = run(&data, &config, &options(dir.path().to_path_buf(), None)).unwrap();
    let history = &outcome.autoencoder_history;
    let (first, last) = (&history[0], &history[history.len() - 1]);
    assert!(
        last.loss < 0.5 * first.loss,
        "{} -> {}",
        first.loss,
        last.loss
    );
    eprintln!(
        "mimic demo: {} patients x {} codes, ae epoch {:.1} ms, gan epoch {:.1} ms, total {:.2}s",
        data.n_patients(),
        data.n_codes(),
        outcome.autoencoder_time.as_secs_f64() * 1e3 / history.len() as f64,
        outcome.gan_time.as_secs_f64() * 1e3 / outcome.gan_history.len() as f64,
        started.elapsed().as_secs_f64()
    );
}
