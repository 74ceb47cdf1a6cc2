//! Trains one autoencoder and one GAN epoch on a generated 1,000,000 x 10,000 matrix at 0.1%
//! density and compares the peak resident memory with the estimate and a 2 GB budget.
//!
//! `cargo run --release -p medgan-train --example bench_scale -- --help` lists the options;
//! the defaults are the benchmark, one epoch each, on every core. Patients carry
//! 5 to 15 codes (10 on average), drawn with a Zipf-like skew as real diagnoses are. The peak
//! resident set (`VmHWM`) is printed for each stretch between two log lines, then reset, so
//! the split, each phase and the final save show their own peaks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use medgan_sample::DataType;
use medgan_train::config::TrainConfig;
use medgan_train::data::PatientMatrix;
use medgan_train::train::memory::{DataShape, MemoryEstimate, Size, parse_size, peak_resident};
use medgan_train::train::{RunOptions, run};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// As in the `medgan-train` binary: candle allocates fresh tensors at every step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trains one autoencoder and one GAN epoch on a generated 1,000,000 x 10,000 matrix at 0.1%
/// density, and compares the peak resident memory with the estimate and a budget.
#[derive(Parser)]
struct Settings {
    /// Patients in the generated matrix.
    #[arg(long, default_value_t = 1_000_000)]
    patients: usize,
    /// Codes in the generated matrix.
    #[arg(long, default_value_t = 10_000)]
    codes: usize,
    /// Average codes per patient (each draws this many, plus or minus 5).
    #[arg(long, default_value_t = 10)]
    per_patient: usize,
    /// GAN batch size [default: the trainer's].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Autoencoder batch size [default: the trainer's].
    #[arg(long)]
    ae_batch_size: Option<usize>,
    #[arg(long, default_value_t = 1)]
    ae_epochs: usize,
    #[arg(long, default_value_t = 1)]
    gan_epochs: usize,
    /// CPU threads for the training operations [default: the machine's cores].
    #[arg(long)]
    threads: Option<usize>,
    /// The memory budget (2GB, 512MiB, ...): training refuses to start above it.
    #[arg(long, default_value = "2GB", value_parser = parse_size)]
    budget: u64,
}

fn settings() -> anyhow::Result<Settings> {
    let settings = Settings::parse();
    if settings.per_patient < 5 || settings.per_patient * 3 > settings.codes {
        bail!("--per-patient must be at least 5 and at most a third of --codes");
    }
    Ok(settings)
}

/// A seeded binary matrix: each patient draws `per_patient +- 5` distinct codes, code `j`
/// with weight `1 / (j + 10)`, so a few codes are common and most are rare.
fn generate(settings: &Settings) -> anyhow::Result<PatientMatrix> {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut cumulative = Vec::with_capacity(settings.codes);
    let mut total = 0.0f64;
    for code in 0..settings.codes {
        total += 1.0 / (code as f64 + 10.0);
        cumulative.push(total);
    }
    let spread = 5;
    let mut indptr = Vec::with_capacity(settings.patients + 1);
    let mut indices = Vec::with_capacity(settings.patients * settings.per_patient);
    indptr.push(0u64);
    let mut row = Vec::new();
    for _ in 0..settings.patients {
        let wanted =
            rng.random_range(settings.per_patient - spread..=settings.per_patient + spread);
        row.clear();
        while row.len() < wanted {
            let u = rng.random::<f64>() * total;
            let code = cumulative
                .partition_point(|&c| c < u)
                .min(settings.codes - 1) as u32;
            if !row.contains(&code) {
                row.push(code);
            }
        }
        row.sort_unstable();
        indices.extend_from_slice(&row);
        indptr.push(indices.len() as u64);
    }
    let values = vec![1u32; indices.len()];
    let codes = (0..settings.codes).map(|c| format!("C{c:05}")).collect();
    let ids = (0..settings.patients).map(|p| format!("P{p:07}")).collect();
    Ok(PatientMatrix::from_csr(
        DataType::Binary,
        codes,
        ids,
        indptr,
        indices,
        values,
    )?)
}

/// Highest `VmHWM` seen before a reset: the whole run's peak.
static OVERALL_PEAK: AtomicU64 = AtomicU64::new(0);

/// After every log line, prints the peak resident set since the previous one and resets it.
struct PeakPerLogLine {
    started: Instant,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PeakPerLogLine {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let peak = overall_peak();
        eprintln!(
            "    [{:7.1}s] peak resident since the previous line: {}",
            self.started.elapsed().as_secs_f64(),
            peak.map_or("unknown".into(), mebibytes)
        );
        reset_peak();
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The peak since the last reset, folded into [`OVERALL_PEAK`].
fn overall_peak() -> Option<u64> {
    let peak = peak_resident()?;
    OVERALL_PEAK.fetch_max(peak, Ordering::Relaxed);
    Some(peak)
}

/// Sets `VmHWM` back to the current resident set (Linux 4.0 and later).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    // As in the `medgan-train` binary: one matmul thread is fastest for medGAN's products.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: the first statement of main, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", "1")
        };
    }
    let settings = settings()?;
    let threads = settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    medgan_train::model::set_cpu_threads(threads.max(1));
    let started = Instant::now();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(PeakPerLogLine { started })
        .init();

    let data = generate(&settings)?;
    let generated = started.elapsed().as_secs_f64();
    println!(
        "generated {} patients x {} codes, {} non-zero ({:.3}% dense) in {generated:.1}s; \
         peak so far {}",
        data.n_patients(),
        data.n_codes(),
        data.nnz(),
        100.0 * data.density(),
        overall_peak().map_or("unknown".into(), |b| Size(b).to_string())
    );
    let mut config = TrainConfig::default();
    config.autoencoder.epochs = settings.ae_epochs;
    config.training.epochs = settings.gan_epochs;
    config.training.checkpoint_every = 0;
    if let Some(batch) = settings.batch_size {
        config.training.batch_size = batch;
    }
    if let Some(batch) = settings.ae_batch_size {
        config.autoencoder.batch_size = batch;
    }
    let estimate = MemoryEstimate::new(&DataShape::of(&data), &config);
    let run_dir = tempfile::tempdir()?;
    let options = RunOptions {
        run_dir: run_dir.path().to_path_buf(),
        device: candle_core::Device::Cpu,
        resume: None,
        progress: false,
        max_memory: Some(settings.budget),
    };
    let trained = Instant::now();
    let outcome = run(&data, &config, &options)?;
    let total = trained.elapsed().as_secs_f64();
    let ae = outcome.autoencoder_time.as_secs_f64();
    let gan = outcome.gan_time.as_secs_f64();
    let ae_steps = outcome
        .train_patients
        .div_ceil(config.autoencoder.batch_size);
    let gan_steps = outcome.train_patients.div_ceil(config.training.batch_size);
    println!(
        "autoencoder: {} epoch(s) in {ae:.1}s, {ae_steps} steps of {} each ({:.1} steps/s)",
        config.autoencoder.epochs,
        config.autoencoder.batch_size,
        (ae_steps * config.autoencoder.epochs) as f64 / ae.max(f64::MIN_POSITIVE)
    );
    println!(
        "gan: {} epoch(s) in {gan:.1}s, {gan_steps} steps of {} x ({} discriminator + {} \
         generator) updates each ({:.2} steps/s)",
        config.training.epochs,
        config.training.batch_size,
        config.training.discriminator_steps,
        config.training.generator_steps,
        (gan_steps * config.training.epochs) as f64 / gan.max(f64::MIN_POSITIVE)
    );
    println!(
        "run: {total:.1}s in all (split, files and checkpoint {:.1}s)",
        total - ae - gan
    );
    println!("estimate: {estimate}");
    println!(
        "    overhead {}, data {}, model {}",
        mebibytes(estimate.overhead),
        mebibytes(estimate.data),
        mebibytes(estimate.model)
    );
    for (transient, bytes) in &estimate.transients {
        println!("    {transient}: {}", mebibytes(*bytes));
    }
    overall_peak().context("cannot read VmHWM in /proc/self/status")?;
    let peak = OVERALL_PEAK.load(Ordering::Relaxed);
    println!(
        "peak resident {} ({}) against a budget of {} ({} bytes): {}",
        Size(peak),
        mebibytes(peak),
        Size(settings.budget),
        settings.budget,
        if peak <= settings.budget {
            "within"
        } else {
            "OVER"
        }
    );
    Ok(())
}
