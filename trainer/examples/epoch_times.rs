//! Measures autoencoder and GAN epoch times on a real dataset (UCI Diabetes by default).
//!
//! `cargo run --release -p medgan-train --example epoch_times -- [uci|mimic] [ae_epochs]
//! [gan_epochs]`; the datasets come from `$MEDGAN_DATA_DIR` (default `../shared/data`).

use std::time::Instant;

use medgan_train::config::TrainConfig;
use medgan_train::data::{EmptyPatients, InputArgs, PatientMatrix, load_input};
use medgan_train::train::{RunOptions, run};

/// As in the `medgan-train` binary: candle allocates fresh tensors at every step, and glibc's
/// allocator hands large ones back to the kernel and faults in zeroed pages each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One of the shared datasets, read by the trainer's own data module.
fn load(which: &str) -> anyhow::Result<PatientMatrix> {
    let dir = medgan_train::data::data_dir();
    let mut args = match which {
        "uci" => {
            let mut args = InputArgs::for_input(dir.join("uci-diabetes-130-us/diabetic_data.csv"));
            args.patient_col = Some("patient_nbr".into());
            args.code_col = vec!["diag_1".into(), "diag_2".into(), "diag_3".into()];
            args.missing = vec!["?".into()];
            args
        }
        "mimic" => InputArgs::for_input(dir.join("mimic-iii-demo")),
        other => anyhow::bail!("unknown dataset `{other}`: expected `uci` or `mimic`"),
    };
    args.empty_patients = EmptyPatients::Drop;
    Ok(load_input(&args)?.0)
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
    let data = load(which)?;
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
