//! `medgan-sample`: draw synthetic patient records from a model bundle into a Parquet file.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{ArgAction, ArgGroup, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use medgan_sample::export::DEFAULT_PART_ROWS;
use medgan_sample::writer::{DEFAULT_ROW_GROUP_SIZE, check_output_path};
use medgan_sample::{
    Bundle, Compression, CountDraw, DEFAULT_BATCH_SIZE, Device, ExportOptions, Format, Labels,
    Layout, Sampler, SamplerOptions, Shard, Target, parse_row_range,
};
use tracing_subscriber::EnvFilter;

/// Draw synthetic patient records from a medGAN model bundle into Parquet, Arrow or CSV.
///
/// Each patient is a row numbered by `patient_id`, its global row index. Row `i` depends only
/// on the model, the seed and `i`: the same command writes the same bytes whatever the batch
/// size or thread count, and `--shard K/N` (or `--rows START..END`) runs write exactly the
/// rows of the whole request, split across processes or machines.
///
/// Layouts: wide (`patient_id`, then one column per code: Boolean for binary models, Int32 for
/// count models), long (`patient_id`, `code`, and `count` for count models: one row per code
/// present) and list (`patient_id`, `codes`: a list of the codes present).
///
/// ONNX Runtime (1.31 or newer) is loaded at run time from --ort-lib, else $ORT_DYLIB_PATH,
/// $MEDGAN_ORT_LIB, `libonnxruntime.so*` beside this executable (or in `lib/`), else the
/// `onnxruntime` Python package (`pip install onnxruntime`).
#[derive(Debug, Parser)]
#[command(name = "medgan-sample", version, max_term_width = 100)]
#[command(group(ArgGroup::new("which_rows").required(true).args(["num_rows", "row_range"])))]
#[command(group(ArgGroup::new("target").required(true).args(["output", "partitioned"])))]
struct Args {
    /// Model bundle folder (holding manifest.json). Default: the model embedded in this build.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,

    /// Number of patients in the request (rows 0..N, or split by --shard).
    #[arg(short = 'n', long = "num-rows", value_name = "N")]
    num_rows: Option<u64>,

    /// Write only rows START..END (end exclusive) of the seed's sequence.
    #[arg(long = "rows", value_name = "START..END", value_parser = parse_row_range)]
    row_range: Option<Range<u64>>,

    /// Write shard K of N (K from 0) of the -n rows: N contiguous ranges that together are
    /// exactly the rows a single run writes.
    #[arg(long, value_name = "K/N", requires = "num_rows")]
    shard: Option<Shard>,

    /// Seed of the random streams; the same seed gives the same records.
    #[arg(long, value_name = "S")]
    seed: u64,

    /// Output file, or `-` for stdout. A file is written under a temporary name beside it and
    /// renamed when complete.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Write a partitioned dataset into this new or empty folder: part-00000.parquet, ...,
    /// then _manifest.json and _SUCCESS.
    #[arg(long, value_name = "DIR")]
    partitioned: Option<PathBuf>,

    /// Patients per part file of --partitioned.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_PART_ROWS, requires = "partitioned",
          value_parser = at_least_one::<u64>)]
    part_rows: u64,

    /// Output format. Default: from the file extension (.parquet, .arrow/.feather, .arrows,
    /// .csv), else parquet; `-o -` needs it.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatArg>,

    /// Table layout.
    #[arg(long, value_enum, value_name = "LAYOUT", default_value_t = LayoutArg::Wide)]
    layout: LayoutArg,

    /// A CSV file of `code,label` rows: adds a `label` column to the long layout (null for
    /// codes it does not name).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,

    /// Parquet compression: zstd, zstd:LEVEL (1-22), snappy or none. Default zstd:3.
    #[arg(long, value_name = "C")]
    compression: Option<Compression>,

    /// Rename code columns to names strict engines accept (`250.83` -> `c_250_83`), the
    /// mapping to the codes kept in the file metadata (`medgan.column_codes`).
    #[arg(long)]
    spark_safe_names: bool,

    /// Rows per model run. Changes speed and memory, never the records.
    #[arg(long, value_name = "B", default_value_t = DEFAULT_BATCH_SIZE,
          value_parser = at_least_one::<usize>)]
    batch_size: usize,

    /// Rows of the output table per Parquet row group; memory use grows with this, not with N.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_ROW_GROUP_SIZE,
          value_parser = at_least_one::<usize>)]
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
          value_parser = at_least_one::<usize>)]
    threads: Option<usize>,

    /// The ONNX Runtime shared library, or a folder holding it.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,

    /// Where ONNX Runtime runs the model: cpu, or cuda (needs a GPU build of ONNX Runtime,
    /// e.g. the onnxruntime-gpu package; refused with a clear error otherwise).
    #[arg(long, value_enum, value_name = "DEVICE", default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Errors only: no progress bar, no summary.
    #[arg(short, long)]
    quiet: bool,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Parquet,
    /// Arrow IPC file.
    Arrow,
    /// Arrow IPC stream.
    ArrowStream,
    Csv,
}

/// `--layout` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LayoutArg {
    /// patient_id, then one column per code.
    Wide,
    /// patient_id, code (and count): one row per code present.
    Long,
    /// patient_id, codes: the list of codes present.
    List,
}

/// `--device` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    // Everything that can be checked cheaply is checked before the model is loaded.
    let rows = rows_to_write(args)?;
    let target = target(args)?;
    let format = format(args, &target)?;
    if args.compression.is_some() && format != Format::Parquet {
        anyhow::bail!(
            "--compression applies to Parquet only, not to {} output",
            format.name()
        );
    }
    let labels = match &args.labels {
        Some(path) => Some(Labels::read(path)?),
        None => None,
    };
    let export_options = ExportOptions {
        format,
        layout: match args.layout {
            LayoutArg::Wide => Layout::Wide,
            LayoutArg::Long => Layout::Long,
            LayoutArg::List => Layout::List,
        },
        labels,
        compression: args.compression.unwrap_or_default(),
        row_group_size: args.row_group_size,
        spark_safe_names: args.spark_safe_names,
        request: args.shard.zip(args.num_rows).map(|(shard, n)| (n, shard)),
    };
    medgan_sample::export::check_options(&export_options)?;

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
        device: match args.device {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda,
        },
    };
    let sampler = Sampler::new(&bundle, options)
        .with_context(|| format!("cannot sample from {}", bundle.location()))?;
    tracing::info!(library = %sampler.ort_library().display(), draw = sampler.draw_description(),
        batch_size = args.batch_size, rows = ?rows, "ready to sample");

    let progress = progress_bar(args, rows.end - rows.start);
    let written = medgan_sample::export(&sampler, rows.clone(), &target, &export_options, |n| {
        progress.set_position(n)
    });
    progress.finish_and_clear();
    let summary = written?;

    if !args.quiet {
        let elapsed = started.elapsed();
        let place = match &target {
            Target::File(path) => path.display().to_string(),
            Target::Stdout => "stdout".to_owned(),
            Target::Partitioned { dir, .. } => {
                format!("{} ({} parts)", dir.display(), summary.parts.len())
            }
        };
        eprintln!(
            "Wrote {} rows x {} columns ({} layout, {} {}, patients {}..{} of {} {} codes, {} \
             draws, seed {}) to {}: {}{}, in {} ({} patients/s, {} rows/s). Model {} \
             (manifest sha256 {}).",
            summary.rows,
            summary.columns,
            export_options.layout.name(),
            format.name(),
            if format == Format::Parquet {
                export_options.compression.to_string()
            } else {
                String::new()
            },
            rows.start,
            rows.end,
            sampler.features().len(),
            sampler.data_type(),
            sampler.draw_description(),
            args.seed,
            place,
            human_bytes(summary.bytes),
            if format == Format::Parquet {
                format!(" in {} row groups", summary.row_groups)
            } else {
                String::new()
            },
            human_duration(elapsed),
            rate(summary.patients, elapsed),
            rate(summary.rows, elapsed),
            bundle.location(),
            &bundle.manifest_sha256()[..12],
        );
    }
    Ok(())
}

/// Reads a count that must be at least 1, in words (clap's own range check would name
/// 18446744073709551615 as the upper bound).
fn at_least_one<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| "expected a whole number of at least 1".to_owned())?;
    if value == 0 {
        return Err("must be at least 1".to_owned());
    }
    T::try_from(value).map_err(|_| format!("{value} is too large for this machine"))
}

/// The global rows this run writes: `0..N`, shard K of `0..N`, or `--rows`.
fn rows_to_write(args: &Args) -> anyhow::Result<Range<u64>> {
    let rows = match (args.num_rows, &args.row_range, args.shard) {
        (_, Some(range), _) => range.clone(),
        (Some(n), None, Some(shard)) => shard.rows(n),
        (Some(n), None, None) => 0..n,
        (None, None, _) => anyhow::bail!("name the rows with -n N or --rows START..END"),
    };
    medgan_sample::rows::check_patient_ids(rows.clone())?;
    Ok(rows)
}

fn target(args: &Args) -> anyhow::Result<Target> {
    Ok(match (&args.output, &args.partitioned) {
        (Some(path), _) if path.as_os_str() == "-" => Target::Stdout,
        (Some(path), _) => {
            check_output_path(path)?;
            Target::File(path.clone())
        }
        (None, Some(dir)) => Target::Partitioned {
            dir: dir.clone(),
            part_rows: args.part_rows,
        },
        (None, None) => anyhow::bail!("name the output with -o FILE, -o - or --partitioned DIR"),
    })
}

fn format(args: &Args, target: &Target) -> anyhow::Result<Format> {
    if let Some(format) = args.format {
        return Ok(match format {
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Arrow => Format::ArrowFile,
            FormatArg::ArrowStream => Format::ArrowStream,
            FormatArg::Csv => Format::Csv,
        });
    }
    match target {
        Target::File(path) => Ok(Format::from_path(path).unwrap_or(Format::Parquet)),
        Target::Partitioned { .. } => Ok(Format::Parquet),
        Target::Stdout => {
            anyhow::bail!("-o - (stdout) needs --format: csv, arrow-stream, parquet or arrow")
        }
    }
}

fn progress_bar(args: &Args, rows: u64) -> ProgressBar {
    let bar = ProgressBar::new(rows);
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
