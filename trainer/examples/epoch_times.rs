//! Measures autoencoder and GAN epoch times on a real dataset (UCI Diabetes by default).
//!
//! `cargo run --release -p medgan-train --example epoch_times -- [uci|mimic] [ae_epochs]
//! [gan_epochs]`. The CSV readers here are deliberately minimal stand-ins for the data module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use medgan_sample::DataType;
use medgan_train::config::TrainConfig;
use medgan_train::data::PatientMatrix;
use medgan_train::train::{RunOptions, run};

/// As in the `medgan-train` binary: candle allocates fresh tensors at every step, and glibc's
/// allocator hands large ones back to the kernel and faults in zeroed pages each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn data_dir() -> PathBuf {
    std::env::var_os("MEDGAN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// Patient -> set of codes from one CSV, given the patient column and the code columns.
fn read_codes(file: &str, patient_col: &str, code_cols: &[&str]) -> anyhow::Result<PatientMatrix> {
    let path = data_dir().join(file);
    let mut reader = csv::Reader::from_path(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (set MEDGAN_DATA_DIR)", path.display()))?;
    let headers = reader.headers()?.clone();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow::anyhow!("{}: no column `{name}`", path.display()))
    };
    let patient = find(patient_col)?;
    let columns = code_cols
        .iter()
        .map(|c| find(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in reader.records() {
        let record = record?;
        let codes = rows.entry(record[patient].to_string()).or_default();
        for &c in &columns {
            let code = &record[c];
            if !code.is_empty() && code != "?" {
                codes.insert(code.to_string());
            }
        }
    }
    let vocabulary: Vec<String> = rows
        .values()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
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
    Ok(PatientMatrix::from_csr(
        DataType::Binary,
        vocabulary,
        ids,
        indptr,
        indices,
        values,
    )?)
}

fn main() -> anyhow::Result<()> {
    // candle 0.11.1's CPU matmul sizes its rayon parallelism from RAYON_NUM_THREADS (not
    // CANDLE_NUM_THREADS), and without it parses /proc/cpuinfo on every product. One thread is
    // fastest for these small products: more spin, and collapse under other load.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: the first statement of main, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", "1")
        };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("uci");
    let epochs = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let data = match which {
        "uci" => read_codes(
            "uci-diabetes-130-us/diabetic_data.csv",
            "patient_nbr",
            &["diag_1", "diag_2", "diag_3"],
        )?,
        "mimic" => read_codes(
            "mimic-iii-demo/DIAGNOSES_ICD.csv",
            "subject_id",
            &["icd9_code"],
        )?,
        other => anyhow::bail!("unknown dataset `{other}`: expected `uci` or `mimic`"),
    };
    let mut config = TrainConfig::default();
    config.autoencoder.epochs = epochs(1, 2)?;
    config.training.epochs = epochs(2, 2)?;
    config.training.checkpoint_every = 0;
    let device = medgan_train::train::parse_device(
        &std::env::var("MEDGAN_DEVICE").unwrap_or_else(|_| "cpu".into()),
    )?;
    let run_dir = tempfile::tempdir()?;
    let options = RunOptions {
        run_dir: run_dir.path().to_path_buf(),
        device,
        resume: None,
        progress: false,
    };
    let started = Instant::now();
    let outcome = run(&data, &config, &options)?;
    let per = |total: std::time::Duration, n: usize| total.as_secs_f64() / n.max(1) as f64;
    println!(
        "{which}: {} patients x {} codes ({} train): autoencoder epoch {:.2}s, gan epoch {:.2}s, \
         total {:.1}s",
        data.n_patients(),
        data.n_codes(),
        outcome.train_patients,
        per(outcome.autoencoder_time, config.autoencoder.epochs),
        per(outcome.gan_time, config.training.epochs),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
