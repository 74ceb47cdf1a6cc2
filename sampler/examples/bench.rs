//! Benchmark of the sampler: ONNX Runtime inference alone, sampling in memory, and the whole
//! export pipeline for each layout and Parquet compression, with rows/s and peak RSS of each.
//!
//! ```sh
//! cargo run --release -p medgan-sample --example bench -- --model DIR -n 1000000 --threads 2
//! ```
//!
//! Peak RSS is the process's high-water mark (`VmHWM`), reset before each stage through
//! `/proc/self/clear_refs` (Linux), so each figure is that stage's own peak. `--json` prints one
//! JSON object per stage for `bench/run.sh`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use medgan_sample::{
    Bundle, Compression, Device, ExportOptions, Format, Layout, Sampler, SamplerOptions, Target,
    export,
};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Debug, Parser)]
struct Args {
    /// Bundle folder; default models/DEFAULT's bundle, else the binary test fixture.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    rows: u64,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = medgan_sample::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Folder for the files written (default: a temporary folder, removed after).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Only these stages (comma-separated names as printed); default all.
    #[arg(long)]
    only: Option<String>,
    /// One JSON object per stage instead of a table.
    #[arg(long)]
    json: bool,
    /// ONNX Runtime's execution provider: cpu or cuda (a GPU build of ONNX Runtime).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn default_model() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = crate_dir.join("../models");
    if let Ok(name) = std::fs::read_to_string(models.join("DEFAULT")) {
        return models.join(name.trim());
    }
    crate_dir.join("tests/fixtures/binary")
}

/// Resets the peak RSS to the current RSS; false where the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident memory in MiB since the last reset.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

struct Stage {
    name: String,
    rows: u64,
    seconds: f64,
    bytes: u64,
    peak_mib: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = args.model.clone().unwrap_or_else(default_model);
    let bundle = Bundle::open(&model)?;
    let sampler = Sampler::new(
        &bundle,
        SamplerOptions {
            seed: 1,
            batch_size: args.batch_size,
            threads: Some(args.threads),
            device: match args.device.as_str() {
                "cpu" => Device::Cpu,
                "cuda" => Device::Cuda,
                other => anyhow::bail!("--device {other}: expected cpu or cuda"),
            },
            ..SamplerOptions::default()
        },
    )?;
    let temp = tempfile::tempdir()?;
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&out_dir)?;
    let wanted = |name: &str| {
        args.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|w| w == name))
    };
    let peak_resets = reset_peak();
    if !args.json {
        eprintln!(
            "model {} ({} codes, noise {}), {} rows, {} threads, batch {}{}",
            model.display(),
            sampler.features().len(),
            bundle.manifest().noise_dim,
            args.rows,
            args.threads,
            args.batch_size,
            if peak_resets {
                ""
            } else {
                " (peak RSS cannot be reset: cumulative)"
            }
        );
    }
    let mut stages = Vec::new();

    if wanted("inference") {
        // One batch of noise, run over and over: ONNX Runtime's share of the work alone.
        let noise_dim = bundle.manifest().noise_dim;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let noise: Vec<f32> = (0..args.batch_size * noise_dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        reset_peak();
        let started = Instant::now();
        let mut done = 0u64;
        while done < args.rows {
            let rows = (args.rows - done).min(args.batch_size as u64) as usize;
            let outputs = sampler.run_model(&noise[..rows * noise_dim])?;
            std::hint::black_box(&outputs);
            done += rows as u64;
        }
        stages.push(stage("inference", done, started, 0));
    }
    if wanted("sample") {
        reset_peak();
        let started = Instant::now();
        let mut done = 0u64;
        for batch in sampler.record_batches(0..args.rows) {
            done += batch?.num_rows() as u64;
        }
        stages.push(stage("sample", done, started, 0));
    }
    let pipelines = [
        (Layout::Wide, Format::Parquet, Compression::Zstd(3)),
        (Layout::Wide, Format::Parquet, Compression::Snappy),
        (Layout::Wide, Format::Parquet, Compression::None),
        (Layout::Long, Format::Parquet, Compression::Zstd(3)),
        (Layout::Long, Format::Parquet, Compression::Snappy),
        (Layout::Long, Format::Parquet, Compression::None),
        (Layout::List, Format::Parquet, Compression::Zstd(3)),
        (Layout::List, Format::Parquet, Compression::Snappy),
        (Layout::List, Format::Parquet, Compression::None),
        (Layout::Wide, Format::ArrowStream, Compression::None),
        (Layout::Long, Format::Csv, Compression::None),
    ];
    for (layout, format, compression) in pipelines {
        let name = match format {
            Format::Parquet => format!("{}-parquet-{compression}", layout.name()),
            _ => format!("{}-{}", layout.name(), format.name()),
        };
        if !wanted(&name) {
            continue;
        }
        let path = out_dir.join(format!("{name}.{}", format.extension()));
        let options = ExportOptions {
            format,
            layout,
            compression,
            ..ExportOptions::default()
        };
        reset_peak();
        let started = Instant::now();
        let summary = export(
            &sampler,
            0..args.rows,
            &Target::File(path.clone()),
            &options,
            |_| {},
        )
        .with_context(|| format!("stage {name}"))?;
        stages.push(stage(&name, summary.patients, started, summary.bytes));
        std::fs::remove_file(&path).ok();
    }

    for stage in &stages {
        let rate = stage.rows as f64 / stage.seconds;
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "impl": "rust", "stage": stage.name, "rows": stage.rows,
                    "seconds": stage.seconds, "rows_per_s": rate, "bytes": stage.bytes,
                    "peak_rss_mib": stage.peak_mib, "threads": args.threads,
                    "batch_size": args.batch_size, "codes": sampler.features().len(),
                })
            );
        } else {
            println!(
                "{:<24} {:>12.0} rows/s  {:>8.2} s  {:>10.1} MiB file  {:>8.1} MiB peak RSS",
                stage.name,
                rate,
                stage.seconds,
                stage.bytes as f64 / 1_048_576.0,
                stage.peak_mib
            );
        }
    }
    Ok(())
}

fn stage(name: &str, rows: u64, started: Instant, bytes: u64) -> Stage {
    Stage {
        name: name.to_owned(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        bytes,
        peak_mib: peak_mib(),
    }
}
