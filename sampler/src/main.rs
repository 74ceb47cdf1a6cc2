//! `medgan-sample`: draw synthetic patient records from a model bundle into a Parquet file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{ArgAction, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use medgan_sample::writer::{DEFAULT_ROW_GROUP_SIZE, check_output_path};
use medgan_sample::{Bundle, CountDraw, DEFAULT_BATCH_SIZE, Sampler, SamplerOptions};
use tracing_subscriber::EnvFilter;

/// Draw synthetic patient records from a medGAN model bundle into a Parquet file.
///
/// Each row is one synthetic patient: `patient_id` (the row number), then one column per code
/// of the model's vocabulary, Boolean for binary models and Int32 for count models. Row `i`
/// depends only on the model, the seed and `i`: the same command writes the same file, byte
/// for byte, whatever the batch size.
///
/// ONNX Runtime (1.31 or newer) is loaded at run time from --ort-lib, else $ORT_DYLIB_PATH,
/// $MEDGAN_ORT_LIB, `libonnxruntime.so*` beside this executable (or in `lib/`), else the
/// `onnxruntime` Python package (`pip install onnxruntime`).
#[derive(Debug, Parser)]
#[command(name = "medgan-sample", version, max_term_width = 100)]
struct Args {
    /// Model bundle folder (holding manifest.json). Default: the model embedded in this build.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,

    /// Number of records to write.
    #[arg(short = 'n', long = "rows", value_name = "N")]
    rows: u64,

    /// Seed of the random streams; the same seed gives the same records.
    #[arg(long, value_name = "S")]
    seed: u64,

    /// Output Parquet file; written to a temporary file beside it and renamed when complete.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,

    /// Rows per model run. Changes speed and memory, never the records.
    #[arg(long, value_name = "B", default_value_t = DEFAULT_BATCH_SIZE,
          value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    batch_size: usize,

    /// Rows per Parquet row group; memory use grows with this, not with N.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_ROW_GROUP_SIZE,
          value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    row_group_size: usize,

    /// Binary models: a code is present when its probability is at least T (deterministic),
    /// instead of a Bernoulli draw from the probability.
    #[arg(long, value_name = "T")]
    threshold: Option<f32>,

    /// Count models: how expected counts become integers.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Counts::Round)]
    counts: Counts,

    /// ONNX Runtime intra-op threads (default: one per core).
    #[arg(long, value_name = "K",
          value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    threads: Option<usize>,

    /// The ONNX Runtime shared library, or a folder holding it.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Errors only: no progress bar, no summary.
    #[arg(short, long)]
    quiet: bool,
}

/// How count models turn expected counts into integers.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Counts {
    /// Round to the nearest integer; negative outputs count as 0.
    Round,
    /// A Poisson draw with the expected count as mean.
    Poisson,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(args: &Args) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    // Everything that can be checked cheaply is checked before the model is loaded.
    check_output_path(&args.output)?;
    if args.rows > i64::MAX as u64 {
        anyhow::bail!(
            "-n {} is more rows than patient_id can number ({})",
            args.rows,
            i64::MAX
        );
    }
    let bundle = match &args.model {
        Some(dir) => Bundle::open(dir)?,
        None => Bundle::embedded_default()?,
    };
    tracing::info!(model = bundle.location(), manifest_sha256 = bundle.manifest_sha256(),
        data_type = %bundle.data_type(), codes = bundle.manifest().features.len(), "opened bundle");
    let options = SamplerOptions {
        seed: args.seed,
        batch_size: args.batch_size,
        threshold: args.threshold,
        counts: match args.counts {
            Counts::Round => CountDraw::Round,
            Counts::Poisson => CountDraw::Poisson,
        },
        threads: args.threads,
        ort_library: args.ort_lib.clone(),
    };
    let sampler = Sampler::new(&bundle, options)
        .with_context(|| format!("cannot sample from {}", bundle.location()))?;
    tracing::info!(library = %sampler.ort_library().display(), draw = sampler.draw_description(),
        batch_size = args.batch_size, "ready to sample");

    let progress = progress_bar(args);
    let written = medgan_sample::sample_to_parquet(
        &sampler,
        args.rows,
        &args.output,
        args.row_group_size,
        |rows| progress.set_position(rows),
    );
    progress.finish_and_clear();
    let summary = written?;

    if !args.quiet {
        let elapsed = started.elapsed();
        eprintln!(
            "Wrote {} rows x {} columns (patient_id and {} {} codes, {} draws, seed {}) to {}: \
             {} in {} row groups, in {} ({} rows/s). Model {} (manifest sha256 {}).",
            summary.rows,
            summary.columns,
            sampler.features().len(),
            sampler.data_type(),
            sampler.draw_description(),
            args.seed,
            args.output.display(),
            human_bytes(summary.bytes),
            summary.row_groups,
            human_duration(elapsed),
            rate(summary.rows, elapsed),
            bundle.location(),
            &bundle.manifest_sha256()[..12],
        );
    }
    Ok(())
}

fn progress_bar(args: &Args) -> ProgressBar {
    let bar = ProgressBar::new(args.rows);
    if args.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows \
             ({per_sec}, {eta})",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
    }
    bar
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn human_duration(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}

fn rate(rows: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return "n/a".to_owned();
    }
    format!("{:.0}", rows as f64 / seconds)
}
