//! The `medgan-train` command line: prepare data, train medGAN, export a bundle.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use medgan_train::config::TrainConfig;
use medgan_train::data::args::PREPARED_SUFFIX;
use medgan_train::data::{InputArgs, PatientMatrix, load_input};
use medgan_train::evaluate::{self, EvaluateArgs};
use medgan_train::model::MedganModel;
use medgan_train::publish::{
    DEFAULT_BURN_IN_BATCHES, PublishOptions, RUN_RECORD_FILE, RunRecord, publish,
};
use medgan_train::train::{self, RunOptions, memory, parse_device};

/// Train medGAN on patient records and export a model bundle for `medgan-sample`.
///
/// Typical use: `medgan-train train --input DATA --run-dir runs/mine` trains with medGAN's
/// defaults and writes the bundle to runs/mine/bundle; `medgan-train prepare` checks and
/// converts data once, so that later runs read it in a blink.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors, no progress bars
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read patient data, print what was read and save it as a prepared matrix
    Prepare(PrepareArgs),
    /// Pre-train the autoencoder, train the GAN, then export the bundle
    Train(Box<TrainArgs>),
    /// Export the bundle of a finished training run
    Export(ExportArgs),
    /// Measure how real and how private synthetic patients are, against real training and
    /// held-out patients; writes report.json, report.md and plots
    Evaluate(EvaluateArgs),
}

#[derive(Args, Debug)]
struct PrepareArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Where to write the prepared matrix (must end in .medgan.safetensors)
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Training configuration (TOML); options below override it, medGAN's defaults fill the rest
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Folder for the resolved config, the train/holdout split, checkpoints and the weights
    #[arg(long, value_name = "DIR", default_value = "runs/medgan")]
    run_dir: PathBuf,
    /// Where to write the bundle [default: RUN_DIR/bundle]
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Train only; export later with `medgan-train export`
    #[arg(long, conflicts_with = "bundle")]
    no_export: bool,
    /// Continue from a checkpoint of an earlier run (same data, seed and architecture)
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,
    /// Reuse a run folder that already holds a run, and replace an existing bundle
    #[arg(long)]
    force: bool,
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`)
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    device: String,
    /// CPU threads for the training operations (products, activations, losses, the optimiser)
    /// [default: the machine's cores]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print where the time went, per phase and per part of a training step, at the end
    #[arg(long)]
    profile: bool,
    /// Refuse to start when training is estimated to need more memory than SIZE (2GB, 512MiB,
    /// 1.5G) [default: the machine's available memory]
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    max_memory: Option<u64>,
    #[command(flatten)]
    overrides: ConfigOverrides,
    #[command(flatten)]
    card: CardArgs,
}

/// Options that override single values of the training configuration.
#[derive(Args, Debug)]
struct ConfigOverrides {
    /// Seed of the split, the initial weights, the batches and the noise
    #[arg(long)]
    seed: Option<u64>,
    /// Autoencoder pre-training epochs [config default: 100]
    #[arg(long, value_name = "N")]
    ae_epochs: Option<usize>,
    /// GAN training epochs [config default: 1000]
    #[arg(long, value_name = "N")]
    gan_epochs: Option<usize>,
    /// Autoencoder batch size [config default: 100]
    #[arg(long, value_name = "N")]
    ae_batch_size: Option<usize>,
    /// GAN batch size [config default: 1000]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Adam learning rate of every phase [config default: 0.001]
    #[arg(long, value_name = "RATE")]
    learning_rate: Option<f64>,
    /// Share of patients held out for validation [config default: 0.1]
    #[arg(long, value_name = "SHARE")]
    validation_split: Option<f64>,
    /// Write a GAN checkpoint every N epochs [config default: 10]
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Every K GAN epochs, log the dimension-wise r and the number of codes generated on a
    /// sample, and append them to RUN_DIR/quality.csv; 0 turns it off [config default: 10]
    #[arg(long, value_name = "K")]
    quality_every: Option<usize>,
}

impl ConfigOverrides {
    fn apply(&self, config: &mut TrainConfig) {
        fn set<T: Copy>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        set(&mut config.seed, self.seed);
        set(&mut config.autoencoder.epochs, self.ae_epochs);
        set(&mut config.training.epochs, self.gan_epochs);
        set(&mut config.autoencoder.batch_size, self.ae_batch_size);
        set(&mut config.training.batch_size, self.batch_size);
        set(&mut config.training.checkpoint_every, self.checkpoint_every);
        set(&mut config.training.quality_every, self.quality_every);
        set(&mut config.optimiser.learning_rate, self.learning_rate);
        set(&mut config.validation_split, self.validation_split);
    }
}

/// What goes into the model card beyond the training facts.
#[derive(Args, Debug)]
struct CardArgs {
    /// Credit and licence of the training data for the model card (text, or @FILE)
    #[arg(long, value_name = "TEXT", default_value = "")]
    data_credit: String,
    /// Generator batches run in training mode before export to refresh batch-norm statistics
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BURN_IN_BATCHES)]
    burn_in_batches: usize,
    /// Markdown file appended to the model card, e.g. headline numbers of `evaluate`
    #[arg(long, value_name = "FILE")]
    card_appendix: Option<PathBuf>,
}

impl CardArgs {
    fn publish_options(&self, overwrite: bool) -> anyhow::Result<PublishOptions> {
        let data_credit = match self.data_credit.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the data credit from {file}"))?,
            None => self.data_credit.clone(),
        };
        let card_appendix = match &self.card_appendix {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the card appendix {}", file.display()))?,
            None => String::new(),
        };
        Ok(PublishOptions {
            burn_in_batches: self.burn_in_batches,
            data_credit,
            overwrite,
            card_appendix,
        })
    }
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Run folder written by `medgan-train train` (its --run-dir)
    #[arg(long, value_name = "DIR", visible_alias = "run-dir")]
    run: PathBuf,
    /// Where to write the bundle
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Replace an existing bundle
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    card: CardArgs,
}

/// candle allocates fresh tensors at every step; glibc's allocator hands large ones back to the
/// kernel and faults in zeroed pages each time, mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    medgan_train::allocator::keep_freed_pages();
    // candle's CPU matmul sizes its rayon parallelism from RAYON_NUM_THREADS and otherwise
    // reads /proc/cpuinfo on every product; one thread is fastest for medGAN's small products
    // (two threads spin against each other and collapse under load).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: the first statement of main, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", "1")
        };
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match &cli.command {
        Command::Prepare(args) => prepare(args),
        Command::Train(args) => train_command(args, cli.quiet),
        Command::Export(args) => export_command(args),
        Command::Evaluate(args) => evaluate::run_cli(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `outer: inner`, without repeating a cause that the
/// message before it already ends with (most of our errors quote their source, so anyhow's
/// `{:#}` printed "No such file or directory" twice).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}

fn prepare(args: &PrepareArgs) -> anyhow::Result<()> {
    let name = args
        .output
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    if !name.ends_with(PREPARED_SUFFIX) {
        bail!(
            "{}: a prepared matrix must end in {PREPARED_SUFFIX}, so that --input recognises it",
            args.output.display()
        );
    }
    let (matrix, summary) = load_input(&args.input)?;
    matrix.save(&args.output)?;
    println!("{summary}");
    println!("wrote {}", args.output.display());
    Ok(())
}

fn train_command(args: &TrainArgs, quiet: bool) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => TrainConfig::from_toml_file(path)?,
        None => TrainConfig::default(),
    };
    args.overrides.apply(&mut config);
    config
        .validate()
        .context("invalid training configuration")?;
    let device = parse_device(&args.device)?;
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(threads) => threads,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    medgan_train::model::set_cpu_threads(threads);
    let bundle_dir = args
        .bundle
        .clone()
        .unwrap_or_else(|| args.run_dir.join("bundle"));
    check_run_dir(&args.run_dir, args.resume.is_some() || args.force)?;
    let publish_options = args.card.publish_options(args.force)?;
    if !args.no_export && bundle_dir.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it",
            bundle_dir.display()
        );
    }

    let (data, summary) = load_input(&args.input)?;
    tracing::info!("{summary}");
    tracing::debug!(?config, ?device, "resolved configuration");
    let options = RunOptions {
        run_dir: args.run_dir.clone(),
        device,
        resume: args.resume.clone(),
        progress: !quiet,
        max_memory: args.max_memory,
    };
    let outcome = train::run(&data, &config, &options)?;
    if args.profile {
        eprint!("{}", outcome.profile.table());
    }
    let record = RunRecord {
        command: shell_command_line(),
        source: args.input.input.display().to_string(),
        autoencoder_epochs: config.autoencoder.epochs,
        gan_epochs: config.training.epochs,
        autoencoder_seconds: outcome.autoencoder_time.as_secs_f64(),
        gan_seconds: outcome.gan_time.as_secs_f64(),
    };
    let record_path = args.run_dir.join(RUN_RECORD_FILE);
    let record_json = serde_json::to_string_pretty(&record).context("cannot encode run record")?;
    std::fs::write(&record_path, record_json + "\n")
        .with_context(|| format!("cannot write {}", record_path.display()))?;
    tracing::info!(
        autoencoder_s = format!("{:.1}", record.autoencoder_seconds),
        gan_s = format!("{:.1}", record.gan_seconds),
        "training finished"
    );
    if args.no_export {
        return Ok(());
    }
    let train_data = PatientMatrix::load(&args.run_dir.join(train::TRAIN_FILE))?;
    let manifest = publish(
        &outcome.model,
        &config,
        &train_data,
        &record,
        &publish_options,
        &bundle_dir,
    )
    .with_context(|| format!("cannot export the bundle to {}", bundle_dir.display()))?;
    println!(
        "bundle {}: {} codes ({}), trained on {} patients; sample with \
         `medgan-sample --model {} -n 1000 --seed 1 -o synthetic.parquet`",
        bundle_dir.display(),
        manifest.features.len(),
        manifest.data_type,
        manifest.training_data.patients,
        bundle_dir.display()
    );
    Ok(())
}

/// Refuses to train into a folder holding another run, unless resuming or forced.
fn check_run_dir(run_dir: &Path, reuse: bool) -> anyhow::Result<()> {
    if !reuse && run_dir.join(train::CONFIG_FILE).exists() {
        bail!(
            "{} already holds a training run; pass --resume CHECKPOINT to continue it or \
             --force to start over there",
            run_dir.display()
        );
    }
    Ok(())
}

fn export_command(args: &ExportArgs) -> anyhow::Result<()> {
    let run = &args.run;
    let config = TrainConfig::from_toml_file(&run.join(train::CONFIG_FILE))
        .with_context(|| format!("{} is not a finished training run", run.display()))?;
    let record_path = run.join(RUN_RECORD_FILE);
    let record: RunRecord = serde_json::from_str(
        &std::fs::read_to_string(&record_path)
            .with_context(|| format!("cannot read {}", record_path.display()))?,
    )
    .with_context(|| format!("{}: not a run record", record_path.display()))?;
    let train_data = PatientMatrix::load(&run.join(train::TRAIN_FILE))?;
    let arch = config.architecture(train_data.n_codes(), train_data.data_type());
    let model = MedganModel::load(
        &run.join(train::MODEL_FILE),
        &arch,
        &candle_core::Device::Cpu,
    )?;
    let options = args.card.publish_options(args.force)?;
    let manifest = publish(
        &model,
        &config,
        &train_data,
        &record,
        &options,
        &args.output,
    )
    .with_context(|| format!("cannot export the bundle to {}", args.output.display()))?;
    println!(
        "bundle {}: {} codes ({}), {} files checked",
        args.output.display(),
        manifest.features.len(),
        manifest.data_type,
        manifest.files.len()
    );
    Ok(())
}

/// The command line as typed, each argument quoted where a shell would need it.
fn shell_command_line() -> String {
    let quote = |arg: String| {
        let plain = arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c));
        if plain && !arg.is_empty() {
            arg
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    std::iter::once(program)
        .chain(args.map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, one_line};

    #[test]
    fn export_takes_the_run_folder_under_trains_name_too() {
        for flag in ["--run", "--run-dir"] {
            let cli = Cli::try_parse_from(["medgan-train", "export", flag, "runs/a", "-o", "b"])
                .unwrap_or_else(|e| panic!("{flag}: {e}"));
            let Command::Export(export) = cli.command else {
                panic!("{flag}: parsed as {:?}", cli.command);
            };
            assert_eq!(export.run, std::path::Path::new("runs/a"));
        }
    }

    #[test]
    fn causes_are_joined_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoting = anyhow::Error::new(medgan_train::data::DataError::Io {
            path: "nope.csv".into(),
            source: io,
        });
        assert_eq!(one_line(&quoting), "nope.csv: no such file");
        let layered = anyhow::anyhow!("inner reason").context("cannot read the credit");
        assert_eq!(one_line(&layered), "cannot read the credit: inner reason");
    }
}
