//! Training benchmark: epoch times, peak memory and the per-part profile of a short medGAN run
//! on a real dataset (UCI Diabetes by default), as one JSON line on stdout for
//! `trainer/bench/run.sh`, which sets them beside the PyTorch reference.
//!
//! `cargo run --release -p medgan-train --example bench_train -- --ae-epochs 2 --gan-epochs 2`;
//! `--trace FILE` instead records a few steps for the reference to replay. The datasets come
//! from `$MEDGAN_DATA_DIR` (default `../shared/data`).

use std::path::PathBuf;

use clap::Parser;
use medgan_train::config::TrainConfig;
use medgan_train::data::{EmptyPatients, InputArgs, PatientMatrix, load_input};
use medgan_train::train::memory::peak_resident;
use medgan_train::train::{RunOptions, compare_traces, parse_device, run, write_trace};

/// As in the `medgan-train` binary: candle allocates fresh tensors at every step, and glibc's
/// allocator hands large ones back to the kernel and faults in zeroed pages each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// `uci` (UCI Diabetes, 71,517 x 915) or `mimic` (the MIMIC-III demo).
    #[arg(long, default_value = "uci")]
    dataset: String,
    #[arg(long, default_value_t = 2)]
    ae_epochs: usize,
    #[arg(long, default_value_t = 2)]
    gan_epochs: usize,
    /// CPU threads for the training operations.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Keep the run folder here (the PyTorch reference reads its training split).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Write a trace of 20 autoencoder steps and 4 GAN steps here instead of timing epochs.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Compare two traces (from two devices, say) instead: exits non-zero when a loss differs
    /// by more than `--tolerance` relative, or a final weight by more than it absolute.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare_traces: Option<Vec<PathBuf>>,
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
}

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
    medgan_train::allocator::keep_freed_pages();
    let args = Args::parse();
    // candle's own CPU products (the few the dense layers do not route through
    // `model::product`) size their rayon parallelism from RAYON_NUM_THREADS; one thread, as
    // in the `medgan-train` binary.
    // SAFETY: before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", "1")
    };
    medgan_train::model::set_cpu_threads(args.threads);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    if let Some([a, b]) = args.compare_traces.as_deref() {
        let difference = compare_traces(a, b)?;
        println!(
            "largest loss difference {:.3e} ({}), largest weight difference {:.3e} ({})",
            difference.loss.1, difference.loss.0, difference.tensor.1, difference.tensor.0
        );
        if difference.loss.1 > args.tolerance || difference.tensor.1 > args.tolerance {
            anyhow::bail!("the traces differ by more than {}", args.tolerance);
        }
        return Ok(());
    }
    let data = load(&args.dataset)?;
    let device = parse_device(&args.device)?;
    let mut config = TrainConfig::default();
    if let Some(path) = &args.trace {
        write_trace(&data, &config, &device, path, 20, 4)?;
        eprintln!("trace written to {}", path.display());
        return Ok(());
    }
    config.autoencoder.epochs = args.ae_epochs;
    config.training.epochs = args.gan_epochs;
    config.training.checkpoint_every = 0;
    config.training.quality_every = 0;
    let scratch = tempfile::tempdir()?;
    let run_dir = args.keep.clone().unwrap_or_else(|| scratch.path().into());
    let options = RunOptions {
        run_dir: run_dir.clone(),
        device,
        resume: None,
        progress: false,
        max_memory: None,
    };
    let outcome = run(&data, &config, &options)?;
    eprint!("{}", outcome.profile.table());
    let seconds = |d: std::time::Duration| d.as_secs_f64();
    let profile: Vec<_> = outcome
        .profile
        .parts()
        .iter()
        .map(|part| {
            serde_json::json!({
                "label": part.label,
                "total_s": seconds(part.total),
                "cpu_s": seconds(part.cpu),
                "calls": part.calls,
            })
        })
        .collect();
    let report = serde_json::json!({
        "implementation": "medgan-train (candle)",
        "dataset": args.dataset,
        "patients": data.n_patients(),
        "codes": data.n_codes(),
        "train_patients": outcome.train_patients,
        "threads": args.threads,
        "autoencoder_epoch_s": outcome.autoencoder_history.iter()
            .map(|e| seconds(e.duration)).collect::<Vec<_>>(),
        "gan_epoch_s": outcome.gan_history.iter()
            .map(|e| seconds(e.duration)).collect::<Vec<_>>(),
        "peak_rss_mb": peak_resident().map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
        "run_dir": args.keep.as_ref().map(|p| p.display().to_string()),
        "profile": profile,
    });
    println!("{report}");
    Ok(())
}
